//! Ordering modules by their dependencies: what to start for a load, what to stop for an
//! unload, and in which order to shut everything down.
//!
//! Owns the dependency graph view over a set of manifests, semver checks on dependency ranges,
//! and cycle detection that names the chain. Everything here is pure: it takes manifests and
//! the set of loaded modules and returns plans or errors. Never starts a process, opens a file
//! or a socket, or changes a module's state; the supervisor carries the plans out.
//!
//! Built-in modules (`core`, `capability_module`) are always running: a dependency on one is
//! satisfied whatever its range, and they are never part of a plan.
//!
//! Edges of loaded modules come from the known manifests. If a module was rediscovered with
//! different dependencies while loaded, the current metadata is what counts; a loaded module
//! missing from `known` is treated as having no dependencies.

use crate::error::Error;
use crate::manifest::Manifest;
use crate::name::ModuleName;
use semver::{Version, VersionReq};
use std::borrow::Borrow;
use std::collections::btree_map;
use std::collections::{BTreeMap, BTreeSet};

/// The loaded modules and the version each runs. [`Resolver::plan_load`] accepts any map keyed
/// by something that borrows as `str` (e.g. `BTreeMap<String, Version>`) as well.
#[cfg(test)]
pub type Loaded = BTreeMap<ModuleName, Version>;

/// What a load must start, dependencies first.
///
/// Each layer's modules depend only on loaded modules and on earlier layers, so a layer can be
/// started in parallel once the previous one is ready. Each module appears once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartPlan {
    layers: Vec<Vec<ModuleName>>,
}

impl StartPlan {
    /// The layers, first to start first; names sorted within a layer.
    #[cfg(test)]
    pub fn layers(&self) -> &[Vec<ModuleName>] {
        &self.layers
    }

    /// Every module of the plan, in a valid start order.
    pub fn modules(&self) -> impl Iterator<Item = &ModuleName> {
        self.layers.iter().flatten()
    }

    /// Whether nothing needs starting (everything requested is already loaded).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// How many modules the plan starts.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.layers.iter().map(Vec::len).sum()
    }
}

impl IntoIterator for StartPlan {
    type Item = Vec<ModuleName>;
    type IntoIter = std::vec::IntoIter<Vec<ModuleName>>;

    /// The layers, first to start first.
    fn into_iter(self) -> Self::IntoIter {
        self.layers.into_iter()
    }
}

/// A dependency graph over the known manifests.
#[derive(Debug, Clone)]
pub struct Resolver<'a> {
    known: &'a BTreeMap<String, Manifest>,
}

/// DFS colouring for the cycle search.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    OnPath,
    Done,
}

impl<'a> Resolver<'a> {
    /// A resolver over `known`, the registry's manifests by name. It borrows the map rather
    /// than indexing the manifests again: a load or unload plans over every known module,
    /// and copying that set cost each start more than the plan itself.
    pub fn new(known: &'a BTreeMap<String, Manifest>) -> Self {
        Self { known }
    }

    /// The manifest of `name`, if known.
    pub fn manifest(&self, name: &str) -> Option<&'a Manifest> {
        self.known.get(name)
    }

    /// Plans loading `requested`: their dependency closure minus what is already loaded, in
    /// layers of modules that can start together.
    ///
    /// Requested modules that are loaded already (or are built-ins) are skipped, so the plan
    /// may be empty. Dependencies of loaded modules are not revisited: they are running.
    ///
    /// # Errors
    ///
    /// Before anything starts, the first problem found in a deterministic walk (requested
    /// order, then dependencies by name):
    /// - [`Error::UnknownModule`]: a requested module is neither known nor loaded;
    /// - [`Error::MissingDependency`]: a dependency is not known, e.g.
    ///   `greeter -> calc: calc is not a known module (known: chat, kv)`;
    /// - [`Error::VersionMismatch`]: a dependency's known (or, if loaded, running) version is
    ///   outside the declared range, e.g. `greeter -> calc (^2.0): only 1.4.0 is known`;
    /// - [`Error::DependencyCycle`]: e.g. `a -> b -> c -> a`.
    pub fn plan_load<K: Borrow<str> + Ord>(
        &self,
        loaded: &BTreeMap<K, Version>,
        requested: &[impl AsRef<str>],
    ) -> Result<StartPlan, Error> {
        let mut marks: BTreeMap<&'a str, Mark> = BTreeMap::new();
        // Post-order: every module after all of its unloaded dependencies.
        let mut order: Vec<&'a Manifest> = Vec::new();

        for root in requested {
            let root = root.as_ref();
            if ModuleName::RESERVED.contains(&root) || loaded.contains_key(root) {
                continue;
            }
            let Some(manifest) = self.known.get(root) else {
                return Err(Error::UnknownModule {
                    // Requests come from outside: never echo an unbounded string.
                    name: root.chars().take(80).collect(),
                    known: self.known.keys().cloned().collect(),
                    suggestion: None,
                });
            };
            if marks.contains_key(manifest.name.as_str()) {
                continue;
            }
            self.walk(manifest, loaded, &mut marks, &mut order)?;
        }

        // Layer = 1 + the deepest unloaded dependency; post-order makes every dependency's
        // layer known before its dependents'.
        let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
        let mut layers: Vec<Vec<ModuleName>> = Vec::new();
        for m in order {
            let layer = m
                .dependencies
                .keys()
                .filter_map(|d| layer_of.get(d.as_str()))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            layer_of.insert(m.name.as_str(), layer);
            if layers.len() <= layer {
                layers.resize_with(layer + 1, Vec::new);
            }
            layers[layer].push(m.name.clone());
        }
        for layer in &mut layers {
            layer.sort();
        }
        Ok(StartPlan { layers })
    }

    /// Iterative depth-first walk from `root` (deep chains cannot overflow the stack).
    fn walk<K: Borrow<str> + Ord>(
        &self,
        root: &'a Manifest,
        loaded: &BTreeMap<K, Version>,
        marks: &mut BTreeMap<&'a str, Mark>,
        order: &mut Vec<&'a Manifest>,
    ) -> Result<(), Error> {
        type Frame<'m> = (&'m Manifest, btree_map::Iter<'m, ModuleName, VersionReq>);
        let mut stack: Vec<Frame<'a>> = vec![(root, root.dependencies.iter())];
        marks.insert(root.name.as_str(), Mark::OnPath);

        while let Some((current, deps)) = stack.last_mut() {
            let current: &'a Manifest = current;
            let Some((dep, req)) = deps.next() else {
                marks.insert(current.name.as_str(), Mark::Done);
                order.push(current);
                stack.pop();
                continue;
            };
            if dep.is_reserved() {
                continue;
            }
            let chain = || {
                stack
                    .iter()
                    .map(|(m, _)| m.name.clone())
                    .chain(std::iter::once(dep.clone()))
                    .collect::<Vec<_>>()
            };
            if let Some(running) = loaded.get(dep.as_str()) {
                if !req.matches(running) {
                    return Err(Error::VersionMismatch {
                        chain: chain(),
                        required: req.clone(),
                        found: running.clone(),
                        loaded: true,
                    });
                }
                continue;
            }
            let Some(next) = self.known.get(dep.as_str()) else {
                return Err(Error::MissingDependency {
                    chain: chain(),
                    known: self
                        .known
                        .values()
                        .filter(|m| m.name != current.name)
                        .map(|m| m.name.clone())
                        .collect(),
                });
            };
            if !req.matches(&next.version) {
                return Err(Error::VersionMismatch {
                    chain: chain(),
                    required: req.clone(),
                    found: next.version.clone(),
                    loaded: false,
                });
            }
            match marks.get(next.name.as_str()) {
                Some(Mark::Done) => {}
                Some(Mark::OnPath) => {
                    let start = stack
                        .iter()
                        .position(|(m, _)| m.name == next.name)
                        .unwrap_or(0);
                    let cycle = stack[start..]
                        .iter()
                        .map(|(m, _)| m.name.clone())
                        .chain(std::iter::once(next.name.clone()))
                        .collect();
                    return Err(Error::DependencyCycle { chain: cycle });
                }
                None => {
                    marks.insert(next.name.as_str(), Mark::OnPath);
                    stack.push((next, next.dependencies.iter()));
                }
            }
        }
        Ok(())
    }

    /// The modules among `loaded` whose dependencies name `name` directly, sorted.
    pub fn dependents(&self, loaded: &[impl AsRef<str>], name: &str) -> Vec<ModuleName> {
        let mut out: Vec<ModuleName> = loaded
            .iter()
            .filter_map(|l| self.manifest(l.as_ref()))
            .filter(|m| m.name != name && m.depends_on(name))
            .map(|m| m.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Plans unloading `name`: the modules to stop, dependents before their dependencies.
    ///
    /// Without `cascade` the plan is `[name]` and loaded dependents are an error; with it, the
    /// plan holds every loaded module that depends on `name` directly or transitively, leaves
    /// first, and `name` last.
    ///
    /// # Errors
    ///
    /// [`Error::BuiltIn`] for `core` and `capability_module`, [`Error::NotLoaded`] if `name` is
    /// not loaded, [`Error::HasDependents`] (naming the direct dependents) without `cascade`.
    pub fn plan_unload(
        &self,
        loaded: &[impl AsRef<str>],
        name: &str,
        cascade: bool,
    ) -> Result<Vec<ModuleName>, Error> {
        if ModuleName::RESERVED.contains(&name) {
            return Err(Error::BuiltIn {
                name: ModuleName::new(name)?,
                action: "unloaded",
            });
        }
        if !loaded.iter().any(|l| l.as_ref() == name) {
            return Err(Error::NotLoaded {
                name: name.chars().take(80).collect(),
            });
        }
        let name = ModuleName::new(name)?;
        let direct = self.dependents(loaded, name.as_str());
        if direct.is_empty() {
            return Ok(vec![name]);
        }
        if !cascade {
            return Err(Error::HasDependents {
                name: name.into_string(),
                dependents: direct.into_iter().map(ModuleName::into_string).collect(),
            });
        }
        let mut set: BTreeSet<ModuleName> = BTreeSet::from([name]);
        let mut todo = direct;
        while let Some(d) = todo.pop() {
            if set.insert(d.clone()) {
                todo.extend(self.dependents(loaded, d.as_str()));
            }
        }
        Ok(self.stop_layers(&set).into_iter().flatten().collect())
    }

    /// Layers to stop every loaded module in: each layer holds modules no remaining module
    /// depends on, so a layer can stop in parallel. Never fails; should the loaded set contain
    /// a cycle (metadata changed while loaded), its members form a last layer by name.
    ///
    /// Names in `loaded` that are not valid module names are left out (no such module can
    /// have been loaded).
    pub fn shutdown_layers(&self, loaded: &[impl AsRef<str>]) -> Vec<Vec<ModuleName>> {
        let set: BTreeSet<ModuleName> = loaded
            .iter()
            .filter_map(|l| ModuleName::new(l.as_ref()).ok())
            .collect();
        self.stop_layers(&set)
    }

    /// Every loaded module in a safe stop order (reverse topological: dependents first).
    #[cfg(test)]
    pub fn shutdown_order(&self, loaded: &[impl AsRef<str>]) -> Vec<ModuleName> {
        self.shutdown_layers(loaded).into_iter().flatten().collect()
    }

    /// Reverse-topological layers of `set`, considering only edges inside it.
    fn stop_layers(&self, set: &BTreeSet<ModuleName>) -> Vec<Vec<ModuleName>> {
        // How many modules of the set still running depend on each module.
        let mut users: BTreeMap<&ModuleName, usize> = set.iter().map(|n| (n, 0)).collect();
        for n in set {
            for dep in self.deps_within(n, set) {
                if let Some(count) = users.get_mut(dep) {
                    *count += 1;
                }
            }
        }
        let mut layers = Vec::new();
        let mut remaining: BTreeSet<&ModuleName> = set.iter().collect();
        while !remaining.is_empty() {
            let layer: Vec<&ModuleName> = remaining
                .iter()
                .copied()
                .filter(|n| users.get(n).copied().unwrap_or(0) == 0)
                .collect();
            if layer.is_empty() {
                // A cycle: stop what is left together rather than never.
                layers.push(remaining.iter().map(|n| (*n).clone()).collect());
                break;
            }
            for n in &layer {
                remaining.remove(*n);
                for dep in self.deps_within(n, set) {
                    if let Some(count) = users.get_mut(dep) {
                        *count = count.saturating_sub(1);
                    }
                }
            }
            layers.push(layer.into_iter().cloned().collect());
        }
        layers
    }

    /// Dependencies of `name` that are members of `set`.
    fn deps_within<'s>(
        &self,
        name: &ModuleName,
        set: &'s BTreeSet<ModuleName>,
    ) -> impl Iterator<Item = &'s ModuleName> {
        let deps = self.manifest(name.as_str()).map(|m| &m.dependencies);
        set.iter()
            .filter(move |s| deps.is_some_and(|d| d.contains_key(s.as_str())) && *s != name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn m(name: &str, version: &str, deps: &[(&str, &str)]) -> Manifest {
        Manifest::for_test(name, version, deps)
    }

    /// The message of loading `name` from nothing loaded (empty when the plan succeeds).
    fn load_error(known: &[Manifest], name: &str) -> String {
        Resolver::new(&by_name(known))
            .plan_load(&Loaded::new(), &[name])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// Manifests by name, as the registry keeps them.
    fn by_name(known: &[Manifest]) -> BTreeMap<String, Manifest> {
        known
            .iter()
            .map(|m| (m.name.as_str().to_owned(), m.clone()))
            .collect()
    }

    fn n(s: &str) -> ModuleName {
        match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    fn layers(plan: &StartPlan) -> Vec<Vec<&str>> {
        plan.layers()
            .iter()
            .map(|l| l.iter().map(ModuleName::as_str).collect())
            .collect()
    }

    fn loaded(pairs: &[(&str, &str)]) -> Loaded {
        pairs
            .iter()
            .map(|(name, v)| (n(name), Version::parse(v).unwrap_or_else(|e| panic!("{e}"))))
            .collect()
    }

    /// greeter -> {calc, chat}; chat -> kv; calc -> kv.
    fn diamond() -> Vec<Manifest> {
        vec![
            m("greeter", "1.0.0", &[("calc", "^1.2"), ("chat", "*")]),
            m("calc", "1.4.0", &[("kv", "*")]),
            m("chat", "0.3.0", &[("kv", "*")]),
            m("kv", "2.0.0", &[]),
        ]
    }

    #[test]
    fn diamond_plans_in_layers_with_shared_dep_once() -> TestResult {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let plan = r.plan_load(&Loaded::new(), &["greeter"])?;
        assert_eq!(
            layers(&plan),
            vec![vec!["kv"], vec!["calc", "chat"], vec!["greeter"]]
        );
        assert_eq!(plan.len(), 4);
        // Plain string maps work as the loaded set too.
        let by_string: BTreeMap<String, Version> =
            BTreeMap::from([("kv".to_owned(), Version::new(2, 0, 0))]);
        let plan = r.plan_load(&by_string, &[String::from("greeter")])?;
        assert_eq!(
            plan.into_iter().collect::<Vec<_>>(),
            vec![vec![n("calc"), n("chat")], vec![n("greeter")]]
        );
        Ok(())
    }

    #[test]
    fn loaded_modules_are_left_out() -> TestResult {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let plan = r.plan_load(&loaded(&[("kv", "2.0.0"), ("calc", "1.4.0")]), &["greeter"])?;
        assert_eq!(layers(&plan), vec![vec!["chat"], vec!["greeter"]]);
        let plan = r.plan_load(
            &loaded(&[
                ("kv", "2.0.0"),
                ("calc", "1.4.0"),
                ("chat", "0.3.0"),
                ("greeter", "1.0.0"),
            ]),
            &["greeter"],
        )?;
        assert!(plan.is_empty());
        Ok(())
    }

    #[test]
    fn several_requests_share_the_closure() -> TestResult {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let plan = r.plan_load(&Loaded::new(), &["calc", "chat", "calc"])?;
        assert_eq!(layers(&plan), vec![vec!["kv"], vec!["calc", "chat"]]);
        Ok(())
    }

    #[test]
    fn builtins_satisfy_dependencies_and_are_never_planned() -> TestResult {
        let known = vec![m(
            "a",
            "1.0.0",
            &[("core", "^9"), ("capability_module", "*")],
        )];
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let plan = r.plan_load(&Loaded::new(), &["a", "core"])?;
        assert_eq!(layers(&plan), vec![vec!["a"]]);
        Ok(())
    }

    #[test]
    fn unknown_request() {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let e = r.plan_load(&Loaded::new(), &["wallet"]);
        assert!(matches!(e, Err(Error::UnknownModule { ref name, .. }) if name == "wallet"));
    }

    #[test]
    fn missing_dependency_names_the_chain() {
        let known = vec![
            m("greeter", "1.0.0", &[("calc", "*")]),
            m("chat", "1.0.0", &[]),
            m("kv", "1.0.0", &[]),
        ];
        let msg = load_error(&known, "greeter");
        assert!(
            msg.starts_with("greeter -> calc: calc is not a known module (known: chat, kv)"),
            "{msg}"
        );
    }

    #[test]
    fn missing_dependency_deep_in_the_chain() {
        let known = vec![
            m("app", "1.0.0", &[("greeter", "*")]),
            m("greeter", "1.0.0", &[("calc", "*")]),
        ];
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let e = r.plan_load(&Loaded::new(), &["app"]);
        match e {
            Err(Error::MissingDependency { chain, .. }) => {
                assert_eq!(chain, vec![n("app"), n("greeter"), n("calc")]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_mismatch_known_and_loaded() {
        let known = vec![
            m("greeter", "1.0.0", &[("calc", "^2.0")]),
            m("calc", "1.4.0", &[]),
        ];
        let msg = load_error(&known, "greeter");
        assert!(
            msg.starts_with("greeter -> calc (^2.0): only 1.4.0 is known"),
            "{msg}"
        );

        let known = vec![
            m("greeter", "1.0.0", &[("calc", "^1.5")]),
            m("calc", "1.6.0", &[]),
        ];
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let e = r.plan_load(&loaded(&[("calc", "1.4.0")]), &["greeter"]);
        assert!(
            matches!(e, Err(Error::VersionMismatch { loaded: true, ref found, .. }) if *found == Version::new(1, 4, 0)),
            "{e:?}"
        );
    }

    #[test]
    fn cycle_is_named() {
        let known = vec![
            m("a", "1.0.0", &[("b", "*")]),
            m("b", "1.0.0", &[("c", "*")]),
            m("c", "1.0.0", &[("a", "*")]),
        ];
        let msg = load_error(&known, "a");
        assert!(
            msg.starts_with("dependency cycle a -> b -> c -> a"),
            "{msg}"
        );
    }

    #[test]
    fn cycle_below_the_root_excludes_the_tail() {
        let known = vec![
            m("top", "1.0.0", &[("a", "*")]),
            m("a", "1.0.0", &[("b", "*")]),
            m("b", "1.0.0", &[("a", "*")]),
        ];
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        match r.plan_load(&Loaded::new(), &["top"]) {
            Err(Error::DependencyCycle { chain }) => {
                assert_eq!(chain, vec![n("a"), n("b"), n("a")]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_chain_does_not_overflow() -> TestResult {
        let names: Vec<String> = (0..20_000).map(|i| format!("m{i}")).collect();
        let known: Vec<Manifest> = names
            .iter()
            .enumerate()
            .map(|(i, name)| match names.get(i + 1) {
                Some(next) => m(name, "1.0.0", &[(next.as_str(), "*")]),
                None => m(name, "1.0.0", &[]),
            })
            .collect();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let plan = r.plan_load(&Loaded::new(), &["m0"])?;
        assert_eq!(plan.layers().len(), 20_000);
        Ok(())
    }

    #[test]
    fn dependents_and_unload_plans() -> TestResult {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let all = ["greeter", "calc", "chat", "kv"];
        assert_eq!(r.dependents(&all, "kv"), vec![n("calc"), n("chat")]);
        assert_eq!(r.dependents(&["kv", "calc"], "kv"), vec![n("calc")]);
        assert_eq!(r.plan_unload(&all, "greeter", false)?, vec![n("greeter")]);
        match r.plan_unload(&all, "kv", false) {
            Err(e @ Error::HasDependents { .. }) => {
                assert!(
                    e.to_string()
                        .starts_with("cannot unload kv: loaded modules depend on it (calc, chat)")
                );
            }
            other => panic!("{other:?}"),
        }
        let plan = r.plan_unload(&all, "kv", true)?;
        assert_eq!(plan, vec![n("greeter"), n("calc"), n("chat"), n("kv")]);
        let plan = r.plan_unload(&all, "calc", true)?;
        assert_eq!(plan, vec![n("greeter"), n("calc")]);
        assert!(matches!(
            r.plan_unload(&all, "wallet", true),
            Err(Error::NotLoaded { .. })
        ));
        assert!(matches!(
            r.plan_unload(&all, "core", true),
            Err(Error::BuiltIn { .. })
        ));
        Ok(())
    }

    #[test]
    fn shutdown_is_reverse_topological() {
        let known = diamond();
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        let all = ["kv", "chat", "greeter", "calc"];
        assert_eq!(
            r.shutdown_layers(&all),
            vec![
                vec![n("greeter")],
                vec![n("calc"), n("chat")],
                vec![n("kv")]
            ]
        );
        let some = ["calc", "kv", "ghost", "../bad"];
        assert_eq!(
            r.shutdown_order(&some),
            vec![n("calc"), n("ghost"), n("kv")]
        );
    }

    #[test]
    fn shutdown_survives_a_cycle() {
        let known = vec![
            m("a", "1.0.0", &[("b", "*")]),
            m("b", "1.0.0", &[("a", "*")]),
            m("c", "1.0.0", &[("a", "*")]),
        ];
        let known_map = by_name(&known);
        let r = Resolver::new(&known_map);
        assert_eq!(
            r.shutdown_layers(&["a", "b", "c"]),
            vec![vec![n("c")], vec![n("a"), n("b")]]
        );
    }

    /// Random DAGs: module i may depend only on modules with a larger index.
    fn dag() -> impl Strategy<Value = Vec<Manifest>> {
        (1usize..24)
            .prop_flat_map(|count| {
                proptest::collection::vec(proptest::collection::vec(any::<bool>(), count), count)
            })
            .prop_map(|adj| {
                let count = adj.len();
                (0..count)
                    .map(|i| {
                        let deps: Vec<String> = (i + 1..count)
                            .filter(|&j| adj[i][j])
                            .map(|j| format!("m{j}"))
                            .collect();
                        let deps: Vec<(&str, &str)> =
                            deps.iter().map(|d| (d.as_str(), "*")).collect();
                        m(&format!("m{i}"), "1.0.0", &deps)
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn plans_respect_dependencies(known in dag(), pick in any::<proptest::sample::Index>(), loaded_mask in any::<u32>()) {
            let known_map = by_name(&known);
            let r = Resolver::new(&known_map);
            let root = &known[pick.index(known.len())].name;
            // Load a dependency-closed random subset first (closed: i loaded ⇒ deps loaded).
            let mut pre = Loaded::new();
            for mf in known.iter().rev() {
                let i: usize = mf.name.as_str()[1..].parse().unwrap_or(0);
                if loaded_mask & (1 << (i % 32)) != 0 && mf.dependencies.keys().all(|d| pre.contains_key(d.as_str())) {
                    pre.insert(mf.name.clone(), mf.version.clone());
                }
            }
            let plan = r.plan_load(&pre, &[root.as_str()]);
            prop_assert!(plan.is_ok());
            let plan = plan.unwrap_or_default();
            let mut position = BTreeMap::new();
            for (li, layer) in plan.layers().iter().enumerate() {
                prop_assert!(!layer.is_empty());
                for name in layer {
                    prop_assert!(position.insert(name.clone(), li).is_none(), "{} twice", name);
                    prop_assert!(!pre.contains_key(name.as_str()));
                }
            }
            for (name, li) in &position {
                for dep in r.manifest(name.as_str()).map(|m| m.dependencies.keys().collect::<Vec<_>>()).unwrap_or_default() {
                    match position.get(dep) {
                        Some(dl) => prop_assert!(dl < li, "{} before its dependency {}", name, dep),
                        None => prop_assert!(pre.contains_key(dep.as_str()), "{} missing", dep),
                    }
                }
            }
            if !pre.contains_key(root.as_str()) {
                prop_assert!(position.contains_key(root));
            }

            // Shutdown of everything: no module stops before one of its dependents.
            let all: Vec<&str> = known.iter().map(|m| m.name.as_str()).collect();
            let order = r.shutdown_order(&all);
            prop_assert_eq!(order.len(), known.len());
            let at: BTreeMap<_, _> = order.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
            for mf in &known {
                for dep in mf.dependencies.keys() {
                    prop_assert!(at[&mf.name] < at[dep]);
                }
            }
        }

        #[test]
        fn cycles_are_always_reported(len in 1usize..10) {
            let known: Vec<Manifest> = (0..len)
                .map(|i| {
                    let next = format!("c{}", (i + 1) % len);
                    m(&format!("c{i}"), "1.0.0", &[(next.as_str(), "*")])
                })
                .collect();
            let known_map = by_name(&known);
            let r = Resolver::new(&known_map);
            match r.plan_load(&Loaded::new(), &["c0"]) {
                Err(Error::DependencyCycle { chain }) => {
                    prop_assert_eq!(chain.len(), len + 1);
                    prop_assert_eq!(chain.first(), chain.last());
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
