//! Access decisions: may module A call module B?
//!
//! Owns the rule of DESIGN.md §5: a module may call what its `dependencies` and `permissions`
//! name; configuration may grant more pairs and deny any pair, and a deny beats everything.
//! Configuration may also restrict a module to an explicit list of callers (the reference
//! implementation's access policy, `restrictions: {target: {allowedCallers: [...]}}`): that
//! list replaces the manifest rules and grants for calls to it; denies still win.
//! Every [`Decision`] carries the rule that decided it and a reason naming both modules, ready
//! for a log line. Pure: never mints tokens (`capability.rs`), never logs and never looks at
//! connections; the caller's identity must already come from its own connection.
//!
//! Built-in modules (`core`, `capability_module`) are callable by every module unless denied,
//! because the RFC flow starts with `capability_module.requestModule` and a module cannot list
//! built-ins it may not know about.

use crate::error::Error;
use crate::manifest::{Manifest, ModuleName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which rule decided a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A configured deny names the pair. Beats every other rule.
    Denied,
    /// A module calling itself.
    SameModule,
    /// The target is a built-in module.
    BuiltIn,
    /// The target is one of the caller's `dependencies`.
    Dependency,
    /// The target is in the caller's `permissions`.
    Permission,
    /// A configured grant names the pair, or the target is restricted to a list of callers
    /// that names the caller.
    Granted,
    /// The target is restricted to a list of callers that does not name the caller.
    Restricted,
    /// Nothing allows the pair.
    NotListed,
}

impl Rule {
    /// Whether this rule allows the call.
    pub fn allows(self) -> bool {
        !matches!(self, Rule::Denied | Rule::Restricted | Rule::NotListed)
    }
}

/// The outcome of [`Policy::allows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    caller: ModuleName,
    target: String,
    rule: Rule,
}

impl Decision {
    /// Whether the call may go ahead.
    pub fn is_allowed(&self) -> bool {
        self.rule.allows()
    }

    /// The rule that decided.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The calling module.
    pub fn caller(&self) -> &ModuleName {
        &self.caller
    }

    /// The called module, as asked for.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `Ok(())` when allowed.
    ///
    /// # Errors
    ///
    /// [`Error::Denied`] carrying both names and the reason.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_allowed() {
            return Ok(());
        }
        let reason = self.to_string();
        Err(Error::Denied {
            caller: self.caller.into_string(),
            target: self.target,
            reason,
        })
    }
}

/// The reason, naming both modules, e.g. `greeter may call calc: calc is a dependency of
/// greeter`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.caller, &self.target);
        match self.rule {
            Rule::Denied => write!(
                f,
                "{a} may not call {b}: denied by configuration (deny {a} -> {b}); remove the deny to allow it"
            ),
            Rule::SameModule => write!(f, "{a} may call {b}: a module may call itself"),
            Rule::BuiltIn => write!(
                f,
                "{a} may call {b}: {b} is a built-in module every module may call"
            ),
            Rule::Dependency => write!(f, "{a} may call {b}: {b} is a dependency of {a}"),
            Rule::Permission => write!(f, "{a} may call {b}: {a}'s permissions name {b}"),
            Rule::Granted => write!(f, "{a} may call {b}: granted by configuration"),
            Rule::Restricted => write!(
                f,
                "{a} may not call {b}: the access policy restricts {b} to the callers it lists and {a} is not one of them; add {a:?} to the allowedCallers of {b} to allow it"
            ),
            Rule::NotListed => write!(
                f,
                "{a} may not call {b}: {b} is neither a dependency nor a permission of {a} and no grant names the pair; add {b:?} to the \"permissions\" in {a}'s metadata.json or grant it in the configuration"
            ),
        }
    }
}

/// The access policy: manifest rules plus configured grants and denies.
///
/// # Examples
///
/// ```
/// # use logos_core::policy::Policy;
/// # use logos_core::manifest::ModuleName;
/// # fn demo(greeter: &logos_core::manifest::Manifest) -> Result<(), logos_core::Error> {
/// let policy = Policy::new()
///     .with_grant("greeter".parse()?, "wallet".parse()?)
///     .with_deny("greeter".parse()?, "kv".parse()?);
/// let decision = policy.allows(greeter, "wallet");
/// assert!(decision.is_allowed());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Policy {
    grants: BTreeSet<(ModuleName, ModuleName)>,
    denies: BTreeSet<(ModuleName, ModuleName)>,
    /// Target → the only callers it accepts.
    restrictions: BTreeMap<ModuleName, BTreeSet<ModuleName>>,
}

impl Policy {
    /// A policy with no grants and no denies: only the manifest rules apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also allows `caller` to call `target`.
    pub fn with_grant(mut self, caller: ModuleName, target: ModuleName) -> Self {
        self.grants.insert((caller, target));
        self
    }

    /// Forbids `caller` to call `target`, whatever else allows it.
    pub fn with_deny(mut self, caller: ModuleName, target: ModuleName) -> Self {
        self.denies.insert((caller, target));
        self
    }

    /// Lets only `allowed_callers` call `target`, whatever their metadata and the grants say
    /// (denies still win; an empty list shuts `target` off from every other module). Replaces
    /// an earlier restriction of `target`. Built-in targets are not restricted by this: the
    /// builder refuses such a restriction.
    pub fn with_restriction(
        mut self,
        target: ModuleName,
        allowed_callers: impl IntoIterator<Item = ModuleName>,
    ) -> Self {
        self.restrictions
            .insert(target, allowed_callers.into_iter().collect());
        self
    }

    /// Decides whether the module described by `caller` may call `target`.
    ///
    /// `caller` must be the manifest of the module identified by its connection, never one
    /// named by the module itself. `target` may be any text (it usually comes from a request);
    /// a name no rule lists is simply not allowed.
    pub fn allows(&self, caller: &Manifest, target: &str) -> Decision {
        // Requests come from outside: never keep an unbounded string.
        let target: String = target.chars().take(80).collect();
        let rule = self.rule(caller, &target);
        Decision {
            caller: caller.name.clone(),
            target,
            rule,
        }
    }

    fn rule(&self, caller: &Manifest, target: &str) -> Rule {
        let pair = |set: &BTreeSet<(ModuleName, ModuleName)>| {
            set.iter().any(|(c, t)| *c == caller.name && t == target)
        };
        if pair(&self.denies) {
            Rule::Denied
        } else if caller.name == target {
            Rule::SameModule
        } else if ModuleName::RESERVED.contains(&target) {
            Rule::BuiltIn
        } else if let Some(allowed) = self.restrictions.get(target) {
            if allowed.contains(&caller.name) {
                Rule::Granted
            } else {
                Rule::Restricted
            }
        } else if caller.dependencies.contains_key(target) {
            Rule::Dependency
        } else if caller.permissions.contains(target) {
            Rule::Permission
        } else if pair(&self.grants) {
            Rule::Granted
        } else {
            Rule::NotListed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    fn greeter() -> Manifest {
        let mut m = Manifest::for_test("greeter", "1.0.0", &[("calc", "^1")]);
        m.permissions.insert(n("chat"));
        m
    }

    #[test]
    fn manifest_rules() {
        let p = Policy::new();
        let g = greeter();
        for (target, rule) in [
            ("calc", Rule::Dependency),
            ("chat", Rule::Permission),
            ("greeter", Rule::SameModule),
            ("core", Rule::BuiltIn),
            ("capability_module", Rule::BuiltIn),
            ("wallet", Rule::NotListed),
        ] {
            let d = p.allows(&g, target);
            assert_eq!(d.rule(), rule, "{target}");
            assert_eq!(d.is_allowed(), rule.allows());
        }
    }

    #[test]
    fn grants_add_and_deny_beats_everything() {
        let g = greeter();
        let p = Policy::new()
            .with_grant(n("greeter"), n("wallet"))
            .with_grant(n("greeter"), n("kv"))
            .with_deny(n("greeter"), n("kv"))
            .with_deny(n("greeter"), n("calc"))
            .with_deny(n("greeter"), n("core"));
        assert_eq!(p.allows(&g, "wallet").rule(), Rule::Granted);
        assert_eq!(p.allows(&g, "kv").rule(), Rule::Denied);
        assert_eq!(p.allows(&g, "calc").rule(), Rule::Denied);
        assert_eq!(p.allows(&g, "core").rule(), Rule::Denied);
        // Grants are directional.
        let wallet = Manifest::for_test("wallet", "1.0.0", &[]);
        assert_eq!(p.allows(&wallet, "greeter").rule(), Rule::NotListed);
    }

    #[test]
    fn restrictions_replace_the_manifest_rules_of_their_target() {
        let g = greeter();
        let probe = Manifest::for_test("probe", "1.0.0", &[]);
        let p = Policy::new()
            .with_restriction(n("calc"), [n("probe")])
            .with_restriction(n("chat"), [n("greeter")])
            .with_restriction(n("kv"), [])
            .with_deny(n("greeter"), n("chat"));
        // calc is greeter's dependency, but only probe may call it now.
        assert_eq!(p.allows(&g, "calc").rule(), Rule::Restricted);
        assert_eq!(p.allows(&probe, "calc").rule(), Rule::Granted);
        // Listed, but a deny still wins.
        assert_eq!(p.allows(&g, "chat").rule(), Rule::Denied);
        assert_eq!(p.allows(&probe, "kv").rule(), Rule::Restricted);
        // Unrestricted targets and built-ins keep their rules; a module may call itself.
        assert_eq!(p.allows(&probe, "wallet").rule(), Rule::NotListed);
        assert_eq!(p.allows(&g, "core").rule(), Rule::BuiltIn);
        let calc = Manifest::for_test("calc", "1.0.0", &[]);
        assert_eq!(p.allows(&calc, "calc").rule(), Rule::SameModule);
        let reason = p.allows(&g, "calc").to_string();
        assert!(
            reason.starts_with("greeter may not call calc: the access policy restricts calc"),
            "{reason}"
        );
    }

    #[test]
    fn reasons_name_both_modules() {
        let g = greeter();
        let p = Policy::new().with_deny(n("greeter"), n("kv"));
        for target in ["calc", "chat", "kv", "wallet", "core"] {
            let reason = p.allows(&g, target).to_string();
            assert!(reason.starts_with("greeter may"), "{reason}");
            assert!(reason.contains(target), "{reason}");
        }
        let reason = p.allows(&g, "wallet").to_string();
        assert!(
            reason.contains("add \"wallet\" to the \"permissions\""),
            "{reason}"
        );
    }

    #[test]
    fn into_result_maps_to_denied() {
        let g = greeter();
        let p = Policy::new();
        assert!(p.allows(&g, "calc").into_result().is_ok());
        match p.allows(&g, "wallet").into_result() {
            Err(e @ Error::Denied { .. }) => {
                assert_eq!(e.code(), logos_wire::ErrorCode::Unauthorized);
                assert!(
                    e.to_string()
                        .starts_with("call refused: greeter may not call wallet")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
