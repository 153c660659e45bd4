//! Access decisions: may module A call module B?
//!
//! Owns the rule of DESIGN.md §5: a module may call what its `dependencies` and `permissions`
//! name; configuration may grant more pairs and deny any pair, and a deny beats everything.
//! Configuration may also restrict a module to an explicit list of callers (the reference
//! implementation's access policy, `restrictions: {target: {allowedCallers: [...]}}`): that
//! list replaces the manifest rules and grants for calls to it; denies still win.
//! Every [`Decision`] carries the rule that decided it and a reason naming both modules, ready
//! for a log line. Pure: never mints tokens (`token.rs`), never logs and never looks at
//! connections; the caller's identity must already come from its own connection.
//!
//! Built-in modules (`core`, `capability_module`) are callable by every module unless denied,
//! because the RFC flow starts with `capability_module.requestModule` and a module cannot list
//! built-ins it may not know about. The methods of `core` that change what runs
//! ([`CORE_MUTATING`]) are the exception: they need `"core"` in the caller's permissions or a
//! configured grant of the pair. Calls from modules to the built-ins go through
//! [`Policy::allows_call`], so a configured deny of a built-in takes effect like any other.
//!
//! Also owns what a permission may name ([`check_permissions`]): a module found in the modules
//! dirs or a built-in. Anything else is a typo that would silently grant nothing, so loading
//! refuses it.

use crate::manifest::{Location, Manifest, ManifestError, ManifestFault};
use crate::name::{CORE_MODULE, ModuleName};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Methods of the built-in `core` that change what runs. A module may call them only with
/// `"core"` in its permissions or a configured grant naming it and `core`; operators always
/// may.
pub const CORE_MUTATING: [&str; 5] = [
    "loadPlugin",
    "unloadPlugin",
    "reloadPlugin",
    "processPlugin",
    "shutdown",
];

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
    /// A method of `core` that changes what runs ([`CORE_MUTATING`]), and neither the
    /// caller's permissions nor a grant name `core`.
    CoreUnpermitted,
}

impl Rule {
    /// Whether this rule allows the call.
    pub fn allows(self) -> bool {
        !matches!(
            self,
            Rule::Denied | Rule::Restricted | Rule::NotListed | Rule::CoreUnpermitted
        )
    }
}

/// The outcome of [`Policy::allows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    caller: ModuleName,
    target: String,
    /// The method, when the decision was about one ([`Policy::allows_call`]).
    method: Option<String>,
    rule: Rule,
}

impl Decision {
    /// Whether the call may go ahead.
    pub fn is_allowed(&self) -> bool {
        self.rule.allows()
    }

    /// The rule that decided.
    #[cfg(test)]
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The called method, when the decision was about one.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// `Ok(())` when allowed.
    ///
    /// # Errors
    ///
    /// [`Error::Denied`] carrying both names and the reason.
    #[cfg(test)]
    pub fn into_result(self) -> Result<(), crate::Error> {
        if self.is_allowed() {
            return Ok(());
        }
        let reason = self.to_string();
        Err(crate::Error::Denied {
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
            Rule::CoreUnpermitted => write!(
                f,
                "{a} may not call {b}.{}: it changes what runs, which needs \"{b}\" in the \"permissions\" of {a}'s metadata.json or a grant of {a} -> {b} in the configuration",
                self.method.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The access policy: manifest rules plus configured grants and denies.
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
    #[cfg(test)]
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
            method: None,
            rule,
        }
    }

    /// Decides whether the module described by `caller` may call `method` of `target`: the
    /// rules of [`Policy::allows`], and for the methods of `core` that change what runs
    /// ([`CORE_MUTATING`]) `"core"` in the caller's permissions or a configured grant of the
    /// pair (a deny still beats both).
    pub fn allows_call(&self, caller: &Manifest, target: &str, method: &str) -> Decision {
        let mut decision = self.allows(caller, target);
        if decision.target == CORE_MODULE && CORE_MUTATING.contains(&method) {
            decision.rule = if decision.rule == Rule::Denied {
                Rule::Denied
            } else if caller.permissions.iter().any(|p| p.as_str() == CORE_MODULE) {
                Rule::Permission
            } else if self
                .grants
                .iter()
                .any(|(c, t)| *c == caller.name && t.as_str() == CORE_MODULE)
            {
                Rule::Granted
            } else {
                Rule::CoreUnpermitted
            };
        }
        decision.method = Some(method.chars().take(80).collect());
        decision
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
        } else if caller
            .permissions
            .iter()
            .any(|p| permits(p.as_str(), target))
        {
            Rule::Permission
        } else if pair(&self.grants) {
            Rule::Granted
        } else {
            Rule::NotListed
        }
    }
}

/// Whether permission `p` lets its holder call `target`: `p` names `target`, or is one of
/// `target`'s own permissions, `target.<scope>` (`p2p.register`), which the target module
/// checks for itself and which imply calling it.
pub fn permits(p: &str, target: &str) -> bool {
    p == target || scope_of(p).is_some_and(|(module, _)| module == target)
}

/// Splits a scoped permission `module.scope` at its last dot; `None` when the scope is empty
/// or holds anything but ASCII letters, digits, `_` and `-`.
pub fn scope_of(p: &str) -> Option<(&str, &str)> {
    let (module, scope) = p.rsplit_once('.')?;
    let valid = !module.is_empty()
        && !scope.is_empty()
        && scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    valid.then_some((module, scope))
}

/// Checks that each of `manifest`'s permissions names a module that exists: a built-in
/// (`core`, `capability_module`) or one of `modules` (every module found in the modules dirs,
/// whether its metadata is valid or not, plus any registered by path).
///
/// # Errors
///
/// A [`ManifestError`] with one fault per unknown permission, located at
/// `/permissions/<index>` of the module's `metadata.json`, listing the known permission names
/// and the closest one.
pub fn check_permissions(
    manifest: &Manifest,
    modules: &BTreeSet<String>,
) -> Result<(), ManifestError> {
    let is_module = |p: &str| ModuleName::RESERVED.contains(&p) || modules.contains(p);
    // `p2p.register`: a permission the module `p2p` defines and checks itself.
    let is_known = |p: &str| is_module(p) || scope_of(p).is_some_and(|(m, _)| is_module(m));
    // Indices come from the document as written, so the pointer names the right entry.
    let listed: Vec<(usize, String)> = match manifest.raw.get("permissions") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_str().map(|s| (i, s.to_owned())))
            .collect(),
        _ => manifest
            .permissions
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.as_str().to_owned()))
            .collect(),
    };
    let known: Vec<String> = ModuleName::RESERVED
        .iter()
        .map(|s| (*s).to_owned())
        .chain(modules.iter().cloned())
        .collect();
    let faults = listed
        .into_iter()
        .filter(|(_, p)| !is_known(p))
        .map(|(i, p)| {
            let hint = crate::name::closest(&p, &known)
                .map(|c| format!("; did you mean {c:?}?"))
                .unwrap_or_default();
            ManifestFault::new(
                manifest.path.clone(),
                Location::Field(format!("/permissions/{i}")),
                format!(
                    "{p:?} is not a known permission (known: {}); a permission names a module this one may call (a built-in or a module in the modules dirs) or one of that module's own permissions (\"p2p.register\"), so fix the name or install that module{hint}",
                    crate::error::list(&known)
                ),
            )
        })
        .collect();
    match ManifestError::from_faults(manifest.path.clone(), faults) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

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
    fn changing_what_runs_needs_core_in_permissions_or_a_grant() {
        let g = greeter();
        let p = Policy::new();
        assert_eq!(
            p.allows_call(&g, "core", "listModules").rule(),
            Rule::BuiltIn
        );
        assert_eq!(
            p.allows_call(&g, "capability_module", "requestModule")
                .rule(),
            Rule::BuiltIn
        );
        for method in CORE_MUTATING {
            let d = p.allows_call(&g, "core", method);
            assert_eq!(d.rule(), Rule::CoreUnpermitted, "{method}");
            assert!(!d.is_allowed());
            let reason = d.to_string();
            assert!(
                reason.starts_with(&format!("greeter may not call core.{method}:")),
                "{reason}"
            );
            assert!(reason.contains("\"permissions\""), "{reason}");
        }
        let mut admin = greeter();
        admin.permissions.insert(n("core"));
        assert_eq!(
            p.allows_call(&admin, "core", "loadPlugin").rule(),
            Rule::Permission
        );
        let granted = Policy::new().with_grant(n("greeter"), n("core"));
        assert_eq!(
            granted.allows_call(&g, "core", "unloadPlugin").rule(),
            Rule::Granted
        );
        // A deny beats the permission, for reading and changing alike.
        let denied = Policy::new().with_deny(n("greeter"), n("core"));
        for method in ["loadPlugin", "listModules"] {
            assert_eq!(
                denied.allows_call(&admin, "core", method).rule(),
                Rule::Denied
            );
        }
        let d = Policy::new().with_deny(n("greeter"), n("capability_module"));
        assert_eq!(
            d.allows_call(&g, "capability_module", "requestModule")
                .rule(),
            Rule::Denied
        );
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
    fn permissions_must_name_known_modules_or_built_ins() {
        let mut g = greeter();
        g.raw = serde_json::json!({ "permissions": ["chat", "core", "root-everything", "chta"] });
        for p in ["core", "root-everything", "chta"] {
            g.permissions.insert(n(p));
        }
        let modules: BTreeSet<String> = ["calc", "chat", "greeter"].map(String::from).into();
        let faults = match check_permissions(&g, &modules) {
            Err(e) => e.into_faults(),
            Ok(()) => panic!("unknown permissions accepted"),
        };
        let pointers: Vec<&str> = faults.iter().filter_map(|f| f.pointer()).collect();
        assert_eq!(pointers, ["/permissions/2", "/permissions/3"]);
        let first = faults[0].message();
        assert!(
            first.starts_with(
                "\"root-everything\" is not a known permission (known: core, capability_module, calc, chat, greeter)"
            ),
            "{first}"
        );
        assert!(
            faults[1].message().ends_with("did you mean \"chat\"?"),
            "{}",
            faults[1]
        );

        g.raw = serde_json::json!({ "permissions": ["chat", "capability_module"] });
        g.permissions = [n("chat"), n("capability_module")].into();
        assert!(check_permissions(&g, &modules).is_ok());
    }

    #[test]
    fn a_modules_own_permission_names_it_and_lets_its_holder_call_it() {
        let mut g = greeter();
        g.raw =
            serde_json::json!({ "permissions": ["chat.post", "nope.post", "chat.", "chat.a.b"] });
        let modules: BTreeSet<String> = ["calc", "chat", "greeter"].map(String::from).into();
        let faults = match check_permissions(&g, &modules) {
            Err(e) => e.into_faults(),
            Ok(()) => panic!("unknown permissions accepted"),
        };
        let pointers: Vec<&str> = faults.iter().filter_map(|f| f.pointer()).collect();
        // "chat.a.b" is module "chat.a" scope "b": no such module either.
        assert_eq!(
            pointers,
            ["/permissions/1", "/permissions/2", "/permissions/3"]
        );

        g.permissions = [n("chat.post")].into();
        let policy = Policy::default();
        assert!(policy.allows(&g, "chat").is_allowed());
        assert_eq!(policy.allows(&g, "chat").rule(), Rule::Permission);
        assert!(!policy.allows(&g, "kv").is_allowed());
        assert!(permits("p2p.register", "p2p"));
        assert!(!permits("p2p.register", "p2"));
        assert!(!permits("p2p2.register", "p2p"));
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
