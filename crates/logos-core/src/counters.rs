//! [`Counters`]: what only the core sees, counted for observers (`Core::stats`, Prometheus).
//!
//! Owns two tables: access denials by (caller, target), and calls the core answered for a
//! module that never served them (it was not ready, or its connection closed with the call
//! in flight) by (module, method, outcome); and four numbers: module processes started in a
//! spare host and the cold way, and heartbeats seen on a page and answered to a ping. Every label is bounded: callers and targets are
//! known modules (anything else counts as `other`), methods are names from the module's
//! interface (anything else is `other`), and outcomes are error codes. Never decides
//! anything and never does I/O; each update takes one short lock.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The label for anything outside a bounded set (an unknown target, a method the interface
/// does not name).
pub const OTHER: &str = "other";

/// Most entries a table keeps; past it new keys count under `other` (a safety net: the keys
/// are bounded by the known modules and their interfaces already).
const MAX_KEYS: usize = 16_384;

/// Counters kept by the core itself.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    denials: Mutex<BTreeMap<(String, String), u64>>,
    refused: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// Module processes that sent their `hello`: in a spare host, and the cold way.
    starts_spare: AtomicU64,
    starts_cold: AtomicU64,
    /// Heartbeats of local modules: counts seen moving on a heartbeat page, pings answered.
    beats_page: AtomicU64,
    beats_ping: AtomicU64,
}

/// How a heartbeat came (`supervisor/heartbeat.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The module's count moved on its heartbeat page.
    Page,
    /// The module answered a ping.
    Ping,
}

fn bump<K: Ord>(table: &mut BTreeMap<K, u64>, key: K, fallback: impl FnOnce() -> K) {
    let key = if table.len() >= MAX_KEYS && !table.contains_key(&key) {
        fallback()
    } else {
        key
    };
    *table.entry(key).or_insert(0) += 1;
}

impl Counters {
    /// A module process sent its `hello`, started in a spare host or the cold way.
    pub fn started(&self, from_spare: bool) {
        let n = if from_spare {
            &self.starts_spare
        } else {
            &self.starts_cold
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// `(in a spare, cold)` module process starts so far.
    pub fn starts(&self) -> (u64, u64) {
        (
            self.starts_spare.load(Ordering::Relaxed),
            self.starts_cold.load(Ordering::Relaxed),
        )
    }

    /// A local module's heartbeat came `way`.
    pub fn beat(&self, way: Way) {
        let n = match way {
            Way::Page => &self.beats_page,
            Way::Ping => &self.beats_ping,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// `(on a page, by ping)` heartbeats of local modules so far.
    pub fn beats(&self) -> (u64, u64) {
        (
            self.beats_page.load(Ordering::Relaxed),
            self.beats_ping.load(Ordering::Relaxed),
        )
    }

    /// `caller` was refused access to `target` (both known modules, or `other`).
    pub fn denied(&self, caller: &str, target: &str) {
        bump(
            &mut self.denials.lock(),
            (caller.to_owned(), target.to_owned()),
            || (OTHER.to_owned(), OTHER.to_owned()),
        );
    }

    /// The core answered a call to `module.method` with `outcome` without the module serving
    /// it. `method` must already be folded to the interface.
    pub fn refused(&self, module: &str, method: &str, outcome: &'static str) {
        bump(
            &mut self.refused.lock(),
            (module.to_owned(), method.to_owned(), outcome),
            || (OTHER.to_owned(), OTHER.to_owned(), outcome),
        );
    }

    /// `((caller, target), count)` of every denial so far.
    pub fn denials(&self) -> Vec<((String, String), u64)> {
        self.denials
            .lock()
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// `((method, outcome), count)` of the calls refused on behalf of `module`.
    pub fn refused_for(&self, module: &str) -> Vec<((String, String), u64)> {
        self.refused
            .lock()
            .iter()
            .filter(|((m, _, _), _)| m == module)
            .map(|((_, method, outcome), n)| ((method.clone(), (*outcome).to_owned()), *n))
            .collect()
    }
}

/// `method` if `interface` (`{"methods": [{"name"}…]}`) names it, else [`OTHER`].
pub(crate) fn fold_method<'a>(interface: Option<&logos_wire::Value>, method: &'a str) -> &'a str {
    let named = interface
        .and_then(|i| i.get("methods"))
        .and_then(logos_wire::Value::as_list)
        .is_some_and(|ms| {
            ms.iter()
                .any(|m| m.get("name").and_then(logos_wire::Value::as_str) == Some(method))
        });
    if named { method } else { OTHER }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logos_wire::Value;

    #[test]
    fn tables_count_and_stay_bounded() {
        let c = Counters::default();
        c.denied("a", "b");
        c.denied("a", "b");
        assert_eq!(c.denials(), vec![(("a".into(), "b".into()), 2)]);
        for i in 0..MAX_KEYS + 10 {
            c.refused("m", &format!("x{i}"), "unavailable");
        }
        let rows = c.refused_for("m");
        assert_eq!(rows.len(), MAX_KEYS);
        assert_eq!(
            c.refused_for(OTHER),
            vec![((OTHER.into(), "unavailable".into()), 10)]
        );
    }

    #[test]
    fn methods_outside_the_interface_fold_into_other() {
        let iface = Value::Map(
            [(
                "methods".to_owned(),
                Value::List(vec![Value::Map(
                    [("name".to_owned(), Value::from("add"))].into(),
                )]),
            )]
            .into(),
        );
        assert_eq!(fold_method(Some(&iface), "add"), "add");
        assert_eq!(fold_method(Some(&iface), "nope"), OTHER);
        assert_eq!(fold_method(None, "add"), OTHER);
    }
}
