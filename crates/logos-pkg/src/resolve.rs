//! Dependency resolution over registry indexes with PubGrub (the `pubgrub` crate): picks
//! one version of each module so every range holds, preferring the highest, honouring pins
//! and what is installed; when none exists it returns PubGrub's derivation, the chain of
//! reasons (`calc 2.0.0 depends on kv >=2, kv 2.0.0 depends on …`).
//!
//! Semver ranges (`^1.2`, `~1`, `>=1, <3`, `=1.0.0`, `*`) become PubGrub `Ranges` by
//! [`ranges`]. Pre-release versions are left out unless a request names one exactly.
//! Pure: never does I/O.

use crate::error::{Error, Result};
use pubgrub::{
    DefaultStringReporter, OfflineDependencyProvider, PubGrubError, Ranges, Reporter as _,
};
use semver::{Comparator, Op, Version, VersionReq};
use std::collections::BTreeMap;

/// The name of the virtual root package in reports.
const ROOT: &str = "the request";

/// A version offered by some registry, with its dependencies.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Module name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Its dependencies.
    pub dependencies: BTreeMap<String, VersionReq>,
}

/// Resolves `requests` against `candidates`; `pins` fix a module's version.
///
/// # Errors
/// [`Error::Conflict`] with PubGrub's report.
pub fn resolve(
    requests: &[(String, VersionReq)],
    candidates: &[Candidate],
    pins: &BTreeMap<String, Version>,
) -> Result<BTreeMap<String, Version>> {
    let mut p = OfflineDependencyProvider::<String, Ranges<Version>>::new();
    let exact_pre = |name: &str, v: &Version| {
        requests.iter().any(|(n, r)| {
            n == name
                && r.comparators.len() == 1
                && r.comparators[0].op == Op::Exact
                && r.comparators[0].pre == v.pre
        })
    };
    for c in candidates {
        if !c.version.pre.is_empty() && !exact_pre(&c.name, &c.version) {
            continue;
        }
        if let Some(pin) = pins.get(&c.name)
            && *pin != c.version
        {
            continue;
        }
        let deps: Vec<(String, Ranges<Version>)> = c
            .dependencies
            .iter()
            .map(|(n, r)| (n.clone(), ranges(r)))
            .collect();
        p.add_dependencies(c.name.clone(), c.version.clone(), deps);
    }
    let root_deps: Vec<(String, Ranges<Version>)> = requests
        .iter()
        .map(|(n, r)| (n.clone(), ranges(r)))
        .collect();
    p.add_dependencies(ROOT.to_owned(), Version::new(0, 0, 0), root_deps);
    let request = requests
        .iter()
        .map(|(n, r)| {
            if *r == VersionReq::STAR {
                n.clone()
            } else {
                format!("{n}@{r}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    match pubgrub::resolve(&p, ROOT.to_owned(), Version::new(0, 0, 0)) {
        Ok(sol) => Ok(sol.into_iter().filter(|(n, _)| n != ROOT).collect()),
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            let report = DefaultStringReporter::report(&tree)
                .replace(&format!("{ROOT} 0.0.0"), ROOT)
                .replace(&format!("{ROOT} 0.0.0"), ROOT);
            let pinned = if pins.is_empty() {
                String::new()
            } else {
                format!(
                    "\n(pinned: {}; `logoscore unpin NAME` frees one)",
                    pins.iter()
                        .map(|(n, v)| format!("{n}@{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Err(Error::Conflict {
                request,
                report: format!("{report}{pinned}"),
            })
        }
        Err(e) => Err(Error::Conflict {
            request,
            report: e.to_string(),
        }),
    }
}

/// A semver range as PubGrub ranges (the intersection of its comparators).
pub fn ranges(req: &VersionReq) -> Ranges<Version> {
    req.comparators
        .iter()
        .fold(Ranges::full(), |acc, c| acc.intersection(&comparator(c)))
}

fn comparator(c: &Comparator) -> Ranges<Version> {
    let (maj, min, pat) = (c.major, c.minor, c.patch);
    let v = |a, b, d| Version::new(a, b, d);
    let lower = {
        let mut l = v(maj, min.unwrap_or(0), pat.unwrap_or(0));
        l.pre = c.pre.clone();
        l
    };
    // The first version past the precision given (`1` → 2.0.0, `1.2` → 1.3.0, `1.2.3` → 1.2.4).
    let next = match (min, pat) {
        (None, _) => v(maj + 1, 0, 0),
        (Some(m), None) => v(maj, m + 1, 0),
        (Some(m), Some(p)) => v(maj, m, p + 1),
    };
    match c.op {
        Op::Exact | Op::Wildcard => match (min, pat) {
            (Some(_), Some(_)) => Ranges::singleton(lower),
            _ => Ranges::between(lower, next),
        },
        Op::Greater => match (min, pat) {
            (Some(_), Some(_)) => Ranges::strictly_higher_than(lower),
            _ => Ranges::higher_than(next),
        },
        Op::GreaterEq => Ranges::higher_than(lower),
        Op::Less => Ranges::strictly_lower_than(lower),
        Op::LessEq => match (min, pat) {
            (Some(_), Some(_)) => Ranges::lower_than(lower),
            _ => Ranges::strictly_lower_than(next),
        },
        Op::Tilde => match min {
            None => Ranges::between(lower, v(maj + 1, 0, 0)),
            Some(m) => Ranges::between(lower, v(maj, m + 1, 0)),
        },
        Op::Caret => {
            let upper = match (maj, min, pat) {
                (0, None, _) => v(1, 0, 0),
                (0, Some(0), None) => v(0, 1, 0),
                (0, Some(0), Some(p)) => v(0, 0, p + 1),
                (0, Some(m), _) => v(0, m + 1, 0),
                (a, _, _) => v(a + 1, 0, 0),
            };
            Ranges::between(lower, upper)
        }
        _ => Ranges::full(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> VersionReq {
        VersionReq::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn ver(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ranges_agree_with_semver() {
        let reqs = [
            "^1.2.3", "^0.2.3", "^0.0.3", "^1.2", "^1", "^0", "^0.0", "~1.2.3", "~1.2", "~1",
            "=1.2.3", "=1.2", "=1", ">1.2.3", ">1.2", ">1", ">=1.2", "<1.2.3", "<1.2", "<=1.2.3",
            "<=1.2", "<=1", "1.*", "1.2.*", "*", ">=1, <3", "1.2.3",
        ];
        let versions = [
            "0.0.0", "0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0",
            "1.2.2", "1.2.3", "1.2.4", "1.3.0", "1.9.9", "2.0.0", "2.5.0", "3.0.0",
        ];
        for r in reqs {
            let (sr, pr) = (req(r), ranges(&req(r)));
            for v in versions {
                assert_eq!(sr.matches(&ver(v)), pr.contains(&ver(v)), "{r} vs {v}");
            }
        }
    }

    #[test]
    fn picks_the_highest_that_fits() {
        let c = |n: &str, v: &str, deps: &[(&str, &str)]| Candidate {
            name: n.into(),
            version: ver(v),
            dependencies: deps
                .iter()
                .map(|(a, b)| ((*a).to_owned(), req(b)))
                .collect(),
        };
        let cands = vec![
            c("app", "1.0.0", &[("lib", "^1")]),
            c("lib", "1.0.0", &[]),
            c("lib", "1.4.0", &[]),
            c("lib", "2.0.0", &[]),
        ];
        let sol = resolve(
            &[("app".into(), VersionReq::STAR)],
            &cands,
            &BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sol["lib"], ver("1.4.0"));
        let pins = BTreeMap::from([("lib".to_owned(), ver("1.0.0"))]);
        let sol = resolve(&[("app".into(), VersionReq::STAR)], &cands, &pins)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sol["lib"], ver("1.0.0"));
    }

    #[test]
    fn a_conflict_names_the_chain() {
        let c = |n: &str, v: &str, deps: &[(&str, &str)]| Candidate {
            name: n.into(),
            version: ver(v),
            dependencies: deps
                .iter()
                .map(|(a, b)| ((*a).to_owned(), req(b)))
                .collect(),
        };
        let cands = vec![
            c("wallet", "1.0.0", &[("crypto", "^2")]),
            c("chat", "1.0.0", &[("net", "^1")]),
            c("net", "1.0.0", &[("crypto", "^1")]),
            c("crypto", "1.0.0", &[]),
            c("crypto", "2.0.0", &[]),
        ];
        let err = resolve(
            &[
                ("wallet".into(), VersionReq::STAR),
                ("chat".into(), VersionReq::STAR),
            ],
            &cands,
            &BTreeMap::new(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for part in ["wallet", "chat", "net", "crypto"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        assert!(err.contains("depends on"), "{err}");
    }
}
