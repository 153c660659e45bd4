//! Access decisions: may module A call module B, and which of B's methods?
//!
//! Owns the rule of DESIGN.md §5: a module may call what its `dependencies` and `permissions`
//! name; configuration may grant more pairs and deny any pair, and a deny beats everything.
//! Since issue 18 decisions are per method: a permission may name methods (`"calc.add"`,
//! `"kv.*"`), and method entries for a dependency narrow it to them; a configured grant may
//! add methods of a target (`methods = [...]`) and a configured deny may take methods away.
//! [`Policy::access`] is what a caller may call of a target, sent with its token to the
//! target, which refuses every other method (`capability.rs`, the SDK's `serve/grant.rs`).
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

use crate::manifest::{Location, Manifest, ManifestError, ManifestFault, Methods};
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
    /// The caller may call the target, but its permissions and grants name other methods.
    MethodNotPermitted,
    /// A configured deny names this method of the target.
    MethodDenied,
    /// The target is protected, the method is not read-only and the caller is not one of
    /// its writers.
    ProtectedWrite,
}

impl Rule {
    /// Whether this rule allows the call.
    pub fn allows(self) -> bool {
        !matches!(
            self,
            Rule::Denied
                | Rule::Restricted
                | Rule::NotListed
                | Rule::CoreUnpermitted
                | Rule::MethodNotPermitted
                | Rule::MethodDenied
                | Rule::ProtectedWrite
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
    /// For [`Rule::MethodNotPermitted`]: the methods the caller may call.
    only: Vec<String>,
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
                "{a} may not call {b}.{m}: it changes what runs, which needs \"{b}\" or \"{b}.{m}\" in the \"permissions\" of {a}'s metadata.json or a grant of {a} -> {b} in the configuration",
                m = self.method.as_deref().unwrap_or("?")
            ),
            Rule::MethodNotPermitted => write!(
                f,
                "{a} may not call {b}.{m}: {a} may call only {list} of {b} (the \"permissions\" in {a}'s metadata.json and the grants name those); add \"{b}.{m}\" to its permissions or grant it with [[grant]] caller = \"{a}\", target = \"{b}\", methods = [\"{m}\"]",
                m = self.method.as_deref().unwrap_or("?"),
                list = if self.only.is_empty() {
                    "no method".to_owned()
                } else {
                    self.only.join(", ")
                },
            ),
            Rule::ProtectedWrite => write!(
                f,
                "{a} may not call {b}.{m}: {b} is protected and only its writers ({list}) may call its methods not marked read-only; an operator adds {a} with [modules.{b}] writers = [..., \"{a}\"]",
                m = self.method.as_deref().unwrap_or("?"),
                list = if self.only.is_empty() {
                    "none".to_owned()
                } else {
                    self.only.join(", ")
                },
            ),
            Rule::MethodDenied => write!(
                f,
                "{a} may not call {b}.{m}: denied by configuration ([[deny]] caller = \"{a}\", target = \"{b}\", methods = [\"{m}\"]); remove it from the deny to allow it",
                m = self.method.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The access policy: manifest rules plus configured grants and denies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Policy {
    /// (caller, target) → the methods granted.
    grants: BTreeMap<(ModuleName, ModuleName), Methods>,
    /// (caller, target) → the methods denied (`All`: the whole pair).
    denies: BTreeMap<(ModuleName, ModuleName), Methods>,
    /// Target → the only callers it accepts.
    restrictions: BTreeMap<ModuleName, BTreeSet<ModuleName>>,
    /// Protected target → the modules that may call its write methods.
    protected: BTreeMap<ModuleName, BTreeSet<ModuleName>>,
}

impl Policy {
    /// A policy with no grants and no denies: only the manifest rules apply.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also allows `caller` to call `target`.
    pub fn with_grant(self, caller: ModuleName, target: ModuleName) -> Self {
        self.with_grant_methods(caller, target, Methods::All)
    }

    /// Also allows `caller` to call `methods` of `target` (widening what its metadata says).
    pub fn with_grant_methods(
        mut self,
        caller: ModuleName,
        target: ModuleName,
        methods: Methods,
    ) -> Self {
        self.grants
            .entry((caller, target))
            .and_modify(|m| m.add(&methods))
            .or_insert(methods);
        self
    }

    /// Forbids `caller` to call `target`, whatever else allows it.
    pub fn with_deny(self, caller: ModuleName, target: ModuleName) -> Self {
        self.with_deny_methods(caller, target, Methods::All)
    }

    /// Forbids `caller` to call `methods` of `target` (narrowing what its metadata says),
    /// whatever else allows them.
    pub fn with_deny_methods(
        mut self,
        caller: ModuleName,
        target: ModuleName,
        methods: Methods,
    ) -> Self {
        self.denies
            .entry((caller, target))
            .and_modify(|m| m.add(&methods))
            .or_insert(methods);
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

    /// Protects `target`: only `writers` may call its methods not marked read-only (the
    /// others may call its read-only methods, as far as the other rules let them). Listing a
    /// writer also grants it the target.
    pub fn with_protected(
        mut self,
        target: ModuleName,
        writers: impl IntoIterator<Item = ModuleName>,
    ) -> Self {
        self.protected.insert(target, writers.into_iter().collect());
        self
    }

    /// The writers of `target` when it is protected.
    pub fn writers(&self, target: &str) -> Option<&BTreeSet<ModuleName>> {
        self.protected
            .iter()
            .find(|(t, _)| t.as_str() == target)
            .map(|(_, w)| w)
    }

    /// Decides whether the module described by `caller` may call `target` at all (some
    /// method of it): what `capability_module.requestModule` asks before minting a token.
    ///
    /// `caller` must be the manifest of the module identified by its connection, never one
    /// named by the module itself. `target` may be any text (it usually comes from a request);
    /// a name no rule lists is simply not allowed.
    pub fn allows(&self, caller: &Manifest, target: &str) -> Decision {
        // Requests come from outside: never keep an unbounded string.
        let target: String = target.chars().take(80).collect();
        let (rule, _) = self.access(caller, &target);
        Decision {
            caller: caller.name.clone(),
            target,
            method: None,
            rule,
            only: Vec::new(),
        }
    }

    /// What `caller` may call of `target`: the rule that lets it (or refuses it) and the
    /// methods. Configured method denies are not subtracted here (see
    /// [`Policy::allows_call`]); a refusing rule comes with `Methods::Only` of nothing.
    pub fn access(&self, caller: &Manifest, target: &str) -> (Rule, Methods) {
        let none = || Methods::Only(BTreeSet::new());
        let pair = (caller.name.clone(), target);
        let key = |map: &BTreeMap<(ModuleName, ModuleName), Methods>| {
            map.iter()
                .find(|((c, t), _)| *c == pair.0 && t.as_str() == pair.1)
                .map(|(_, m)| m.clone())
        };
        if key(&self.denies) == Some(Methods::All) {
            return (Rule::Denied, none());
        }
        if caller.name == target {
            return (Rule::SameModule, Methods::All);
        }
        if ModuleName::RESERVED.contains(&target) {
            return (Rule::BuiltIn, Methods::All);
        }
        if let Some(allowed) = self.restrictions.get(target) {
            return if allowed.contains(&caller.name) {
                (Rule::Granted, Methods::All)
            } else {
                (Rule::Restricted, none())
            };
        }
        let declared = caller
            .access
            .iter()
            .find(|(n, _)| n.as_str() == target)
            .map(|(_, m)| m.clone());
        let (mut rule, mut methods) = match declared {
            Some(m) => (Rule::Permission, m),
            None if caller.dependencies.contains_key(target) => (Rule::Dependency, Methods::All),
            None => (Rule::NotListed, none()),
        };
        let writer = self
            .writers(target)
            .is_some_and(|w| w.contains(&caller.name));
        let granted = match (key(&self.grants), writer) {
            (_, true) => Some(Methods::All),
            (g, false) => g,
        };
        if let Some(granted) = granted {
            if rule == Rule::NotListed {
                rule = Rule::Granted;
            }
            methods.add(&granted);
        }
        (rule, methods)
    }

    /// Decides whether the module described by `caller` may call `method` of `target`: the
    /// rules of [`Policy::allows`], then the methods its permissions and grants name, then
    /// configured method denies; for the methods of `core` that change what runs
    /// ([`CORE_MUTATING`]) `"core"` (or `"core.METHOD"`) in the caller's permissions or a
    /// configured grant of `core` (covering the method) is needed (a deny still beats both).
    pub fn allows_call(&self, caller: &Manifest, target: &str, method: &str) -> Decision {
        let target: String = target.chars().take(80).collect();
        let method: String = method.chars().take(80).collect();
        let (mut rule, methods) = self.access(caller, &target);
        let mut only = Vec::new();
        if rule.allows() {
            if target == CORE_MODULE && CORE_MUTATING.contains(&method.as_str()) {
                let declared = caller
                    .access
                    .iter()
                    .any(|(n, m)| n.as_str() == CORE_MODULE && m.contains(&method));
                let granted = self.grants.iter().any(|((c, t), m)| {
                    *c == caller.name && t.as_str() == CORE_MODULE && m.contains(&method)
                });
                rule = if declared {
                    Rule::Permission
                } else if granted {
                    Rule::Granted
                } else {
                    Rule::CoreUnpermitted
                };
            } else if !methods.contains(&method) {
                rule = Rule::MethodNotPermitted;
                if let Methods::Only(set) = &methods {
                    only = set.iter().cloned().collect();
                }
            }
            let denied = self.denies.iter().any(|((c, t), m)| {
                *c == caller.name && t.as_str() == target && m.contains(&method)
            });
            if denied && rule.allows() {
                rule = Rule::MethodDenied;
            }
        }
        Decision {
            caller: caller.name.clone(),
            target,
            method: Some(method),
            rule,
            only,
        }
    }

    /// Whether `caller` may call `method` of the protected `target` (`read_only`: the
    /// interface marks it so): `None` when it may (not protected, a writer, or read-only),
    /// else the refusal.
    pub fn protected_refusal(
        &self,
        caller: &Manifest,
        target: &str,
        method: &str,
        read_only: bool,
    ) -> Option<Decision> {
        let writers = self.writers(target)?;
        if read_only || writers.contains(&caller.name) || caller.name == target {
            return None;
        }
        Some(Decision {
            caller: caller.name.clone(),
            target: target.chars().take(80).collect(),
            method: Some(method.chars().take(80).collect()),
            rule: Rule::ProtectedWrite,
            only: writers.iter().map(|w| w.as_str().to_owned()).collect(),
        })
    }

    /// What `caller` may call of `target`, whose interface lists `interface` (each method's
    /// name and whether it is read-only), as the target must enforce it: `None` when every
    /// method is allowed, else each allowed method, each refused one with the reason, and the
    /// reason for any other name. Sent to the target with the token (`$grant`).
    pub fn grant_for(
        &self,
        caller: &Manifest,
        target: &str,
        interface: &[(String, bool)],
    ) -> Option<MethodGrant> {
        let (rule, methods) = self.access(caller, target);
        let method_denies = self
            .denies
            .iter()
            .any(|((c, t), _)| *c == caller.name && t.as_str() == target);
        let guarded = self
            .writers(target)
            .is_some_and(|w| !w.contains(&caller.name));
        if rule.allows() && methods == Methods::All && !method_denies && !guarded {
            return None;
        }
        let mut grant = MethodGrant::default();
        for (m, read_only) in interface {
            let d = self.allows_call(caller, target, m);
            let d = match self.protected_refusal(caller, target, m, *read_only) {
                Some(p) if d.is_allowed() => p,
                _ => d,
            };
            if d.is_allowed() {
                grant.allow.push(m.clone());
            } else {
                grant.deny.insert(m.clone(), d.to_string());
            }
        }
        // Methods named by permissions or grants that the interface does not list (an
        // interface not known yet, a method added later): decided by name, never read-only.
        if let Methods::Only(named) = &methods {
            for m in named
                .iter()
                .filter(|m| !interface.iter().any(|(i, _)| i == *m))
            {
                let d = self.allows_call(caller, target, m);
                if d.is_allowed() && self.protected_refusal(caller, target, m, false).is_none() {
                    grant.allow.push(m.clone());
                }
            }
        }
        // "{method}" is no method name, so no grant or deny names it: the target puts the
        // name it was called with in its place. A name outside the interface is no read-only
        // method either.
        let other = self.allows_call(caller, target, "{method}");
        let other = match self.protected_refusal(caller, target, "{method}", false) {
            Some(p) if other.is_allowed() => p,
            _ => other,
        };
        grant.other = (!other.is_allowed()).then(|| other.to_string());
        Some(grant)
    }
}

/// What a target module must enforce for one caller ([`Policy::grant_for`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodGrant {
    /// Methods the caller may call.
    pub allow: Vec<String>,
    /// Methods of the interface it may not, each with the reason naming the rule.
    pub deny: BTreeMap<String, String>,
    /// The reason for any other method name, with `{method}` where the name goes; `None`
    /// when other names may be called (they are not the target's methods anyway).
    pub other: Option<String>,
}

/// Every method of the built-in `core`.
pub const CORE_METHODS: [&str; 14] = [
    "getLoadedPlugins",
    "getKnownPlugins",
    "loadPlugin",
    "unloadPlugin",
    "reloadPlugin",
    "processPlugin",
    "getPluginMethods",
    "listModules",
    "moduleInfo",
    "stats",
    "faults",
    "shutdown",
    "getTraces",
    "getSpans",
];

/// Every method of the built-in `capability_module`.
pub const CAPABILITY_METHODS: [&str; 1] = ["requestModule"];

/// The modules [`check_permissions`] checks a manifest's permissions against: asked one name
/// at a time, so a start looks up what its modules' permissions name and never lists every
/// module the core knows (it did, on every start: a sixth of the core's share of a start in
/// the benchmark's 250 modules).
pub trait KnownModules {
    /// Whether a module of this name was found (in the modules dirs, whether its metadata is
    /// valid or not, or registered by path).
    fn has(&self, module: &str) -> bool;
    /// Every such name, sorted: for the message of a permission that names none of them.
    fn names(&self) -> Vec<String>;
    /// The method names of `module`'s interface, when it has run (`None`: not known yet).
    fn methods(&self, module: &str) -> Option<BTreeSet<String>>;
}

/// Checks that each of `manifest`'s permissions names a module that exists: a built-in
/// (`core`, `capability_module`) or one of `known`; and that each method it names
/// (`"calc.add"`) exists: for the built-ins always, for another module when its interface is
/// known ([`KnownModules::methods`]).
///
/// # Errors
///
/// A [`ManifestError`] with one fault per unknown permission, located at
/// `/permissions/<index>` of the module's `metadata.json`, listing the known names and the
/// closest one.
pub fn check_permissions(
    manifest: &Manifest,
    known: &impl KnownModules,
) -> Result<(), ManifestError> {
    let is_known = |p: &str| ModuleName::RESERVED.contains(&p) || known.has(p);
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
    let all_names = || -> Vec<String> {
        ModuleName::RESERVED
            .iter()
            .map(|s| (*s).to_owned())
            .chain(known.names())
            .collect()
    };
    let builtin_methods = |m: &str| -> Option<BTreeSet<String>> {
        let list: &[&str] = match m {
            CORE_MODULE => &CORE_METHODS,
            crate::name::CAPABILITY_MODULE => &CAPABILITY_METHODS,
            _ => return None,
        };
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    };
    let mut faults = Vec::new();
    for (i, p) in listed {
        let (module, method) = match p.split_once('.') {
            Some((m, method)) => (m, Some(method)),
            None => (p.as_str(), None),
        };
        let at = Location::Field(format!("/permissions/{i}"));
        if !is_known(module) {
            let known = all_names();
            let hint = crate::name::closest(module, &known)
                .map(|c| format!("; did you mean {c:?}?"))
                .unwrap_or_default();
            faults.push(ManifestFault::new(
                manifest.path.clone(),
                at,
                format!(
                    "{p:?} is not a known permission (known: {}); a permission names a module this one may call (a built-in or a module in the modules dirs), or MODULE.METHOD, so fix the name or install that module{hint}",
                    crate::error::list(&known)
                ),
            ));
            continue;
        }
        let Some(method) = method.filter(|m| *m != "*") else {
            continue;
        };
        let methods = builtin_methods(module).or_else(|| known.methods(module));
        if let Some(methods) = methods
            && !methods.contains(method)
        {
            let names: Vec<String> = methods.iter().cloned().collect();
            let hint = crate::name::closest(method, &names)
                .map(|c| format!("; did you mean {module}.{c}?"))
                .unwrap_or_default();
            faults.push(ManifestFault::new(
                manifest.path.clone(),
                at,
                format!(
                    "{p:?} names no method of {module} (it has: {}){hint}",
                    crate::error::list(&names)
                ),
            ));
        }
    }
    match ManifestError::from_faults(manifest.path.clone(), faults) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// [`KnownModules`] from a list of names and the interfaces known.
    struct Listed<'a> {
        modules: &'a BTreeSet<String>,
        interfaces: &'a BTreeMap<String, BTreeSet<String>>,
    }

    impl KnownModules for Listed<'_> {
        fn has(&self, module: &str) -> bool {
            self.modules.contains(module)
        }

        fn names(&self) -> Vec<String> {
            self.modules.iter().cloned().collect()
        }

        fn methods(&self, module: &str) -> Option<BTreeSet<String>> {
            self.interfaces.get(module).cloned()
        }
    }

    fn n(s: &str) -> ModuleName {
        match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    /// What a `permissions` entry does to a manifest.
    fn permit(m: &mut Manifest, target: &str, methods: Methods) {
        m.permissions.insert(n(target));
        m.access.insert(n(target), methods);
    }

    fn greeter() -> Manifest {
        let mut m = Manifest::for_test("greeter", "1.0.0", &[("calc", "^1")]);
        permit(&mut m, "chat", Methods::All);
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
        permit(&mut admin, "core", Methods::All);
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
    fn methods_are_granted_narrowed_and_widened() {
        let mut g = greeter();
        // A method entry for a dependency narrows it.
        permit(&mut g, "calc", Methods::only(["add".to_owned()]));
        permit(&mut g, "core", Methods::only(["unloadPlugin".to_owned()]));
        let p = Policy::new()
            .with_grant_methods(n("greeter"), n("calc"), Methods::only(["sub".to_owned()]))
            .with_grant_methods(n("greeter"), n("kv"), Methods::only(["get".to_owned()]))
            .with_deny_methods(n("greeter"), n("chat"), Methods::only(["send".to_owned()]));
        let rule = |t: &str, m: &str| p.allows_call(&g, t, m).rule();
        assert_eq!(rule("calc", "add"), Rule::Permission);
        assert_eq!(rule("calc", "sub"), Rule::Permission);
        assert_eq!(rule("calc", "mul"), Rule::MethodNotPermitted);
        assert_eq!(rule("kv", "get"), Rule::Granted);
        assert_eq!(rule("kv", "set"), Rule::MethodNotPermitted);
        assert_eq!(rule("chat", "history"), Rule::Permission);
        assert_eq!(rule("chat", "send"), Rule::MethodDenied);
        assert_eq!(rule("core", "unloadPlugin"), Rule::Permission);
        assert_eq!(rule("core", "loadPlugin"), Rule::CoreUnpermitted);
        assert_eq!(rule("core", "listModules"), Rule::BuiltIn);
        let why = p.allows_call(&g, "calc", "mul").to_string();
        assert!(
            why.starts_with(
                "greeter may not call calc.mul: greeter may call only add, sub of calc"
            ),
            "{why}"
        );
        // What calc must enforce for greeter.
        let iface: Vec<(String, bool)> = ["add", "div", "mul", "sub"]
            .map(|m| (m.to_owned(), false))
            .into();
        let grant = p.grant_for(&g, "calc", &iface).unwrap_or_default();
        assert_eq!(grant.allow, ["add", "sub"]);
        assert_eq!(grant.deny.keys().collect::<Vec<_>>(), ["div", "mul"]);
        let other = grant.other.unwrap_or_default();
        assert!(other.contains("calc.{method}"), "{other}");
        // Every method, no method deny: nothing to enforce.
        assert_eq!(p.grant_for(&greeter(), "calc", &iface), None);
        // An interface not known: the named methods are still allowed by name.
        let blind = p.grant_for(&g, "calc", &[]).unwrap_or_default();
        assert_eq!(blind.allow, ["add", "sub"]);
        let chat = p.grant_for(
            &g,
            "chat",
            &[("send".into(), false), ("history".into(), true)],
        );
        assert_eq!(chat.map(|c| c.allow), Some(vec!["history".to_owned()]));
    }

    #[test]
    fn a_protected_module_serves_writes_to_its_writers_only() {
        let mut g = greeter();
        permit(&mut g, "kv", Methods::All);
        let node = Manifest::for_test("node", "1.0.0", &[]);
        let p = Policy::new().with_protected(n("kv"), [n("node")]);
        let iface = [("get".to_owned(), true), ("set".to_owned(), false)];
        let grant = p.grant_for(&g, "kv", &iface).unwrap_or_default();
        assert_eq!(grant.allow, ["get"]);
        let why = &grant.deny["set"];
        assert!(
            why.starts_with(
                "greeter may not call kv.set: kv is protected and only its writers (node)"
            ),
            "{why}"
        );
        assert!(grant.other.is_some_and(|o| o.contains("kv is protected")));
        // The writer is granted kv by being listed, and may write.
        assert_eq!(p.allows(&node, "kv").rule(), Rule::Granted);
        assert_eq!(p.grant_for(&node, "kv", &iface), None);
        // The operator's method deny still beats being a writer.
        let p = p.with_deny_methods(n("node"), n("kv"), Methods::only(["set".to_owned()]));
        let grant = p.grant_for(&node, "kv", &iface).unwrap_or_default();
        assert_eq!(grant.allow, ["get"]);
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
        let none = BTreeMap::new();
        let listed = |interfaces| Listed {
            modules: &modules,
            interfaces,
        };
        let faults = match check_permissions(&g, &listed(&none)) {
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
        assert!(check_permissions(&g, &listed(&none)).is_ok());

        g.raw = serde_json::json!({ "permissions": ["calc.add", "calc.pow", "core.loadPlugin", "core.nope", "chat.anything"] });
        let interfaces =
            BTreeMap::from([("calc".to_owned(), ["add", "sub"].map(String::from).into())]);
        let faults = match check_permissions(&g, &listed(&interfaces)) {
            Err(e) => e.into_faults(),
            Ok(()) => panic!("unknown methods accepted"),
        };
        let pointers: Vec<&str> = faults.iter().filter_map(|f| f.pointer()).collect();
        // chat has not run: its methods are not known yet, so not checked.
        assert_eq!(pointers, ["/permissions/1", "/permissions/3"]);
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
