//! `core`: the RFC's Core Manager, served by the core over the protocol.
//!
//! Methods: `getLoadedPlugins`, `getKnownPlugins`, `loadPlugin(name)`,
//! `unloadPlugin(name, cascade?)`, `reloadPlugin(name)`, `processPlugin(path)`,
//! `getPluginMethods(name)`, plus `listModules`, `moduleInfo(name)`, `stats`, `faults` and
//! `shutdown` for operators. Reading is open to every module; changing what runs needs `"core"` in the
//! caller's permissions (operators always may).

use crate::builtin::{at_most, bool_arg, text_arg};
use crate::conn::Caller;
use crate::core::Inner;
use crate::error::Error;
use crate::registry::{ModuleInfo, State};
use logos_session::Fault;
use logos_wire::{ErrorCode, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Serves one call to `core`.
pub(crate) async fn handle(
    inner: &Arc<Inner>,
    caller: &Caller,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, Fault> {
    let mutating = matches!(
        method,
        "loadPlugin" | "unloadPlugin" | "reloadPlugin" | "processPlugin" | "shutdown"
    );
    if mutating {
        may_change(inner, caller, method)?;
    }
    let m = |name: &str| format!("core.{name}");
    match method {
        "getLoadedPlugins" => {
            at_most(&args, 0, &m(method))?;
            let names = crate::supervisor::infos(inner)
                .into_iter()
                .filter(|i| i.state.is_loaded())
                .map(|i| Value::from(i.name))
                .collect();
            Ok(Value::List(names))
        }
        "getKnownPlugins" => {
            at_most(&args, 0, &m(method))?;
            Ok(Value::List(
                inner
                    .modules()
                    .known
                    .keys()
                    .map(|k| Value::from(k.as_str()))
                    .collect(),
            ))
        }
        "loadPlugin" => {
            at_most(&args, 1, &m(method))?;
            let name = text_arg(&args, 0, "name", &m(method))?.to_owned();
            let _ops = inner.ops.lock().await;
            crate::supervisor::load(inner, &[name.as_str()])
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| e.to_fault())
        }
        "unloadPlugin" => {
            at_most(&args, 2, &m(method))?;
            let name = text_arg(&args, 0, "name", &m(method))?.to_owned();
            let cascade = bool_arg(&args, 1, "cascade", &m(method))?;
            let _ops = inner.ops.lock().await;
            crate::supervisor::unload(inner, &name, cascade)
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| e.to_fault())
        }
        "reloadPlugin" => {
            at_most(&args, 1, &m(method))?;
            let name = text_arg(&args, 0, "name", &m(method))?.to_owned();
            let _ops = inner.ops.lock().await;
            crate::supervisor::reload(inner, &name)
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| e.to_fault())
        }
        "processPlugin" => {
            at_most(&args, 1, &m(method))?;
            let path = text_arg(&args, 0, "path", &m(method))?;
            process_plugin(inner, path)
        }
        "getPluginMethods" => {
            at_most(&args, 1, &m(method))?;
            let name = text_arg(&args, 0, "name", &m(method))?;
            interface(inner, name).map_err(|e| e.to_fault())
        }
        "listModules" => {
            at_most(&args, 0, &m(method))?;
            Ok(Value::List(
                crate::supervisor::infos(inner)
                    .iter()
                    .map(info_value)
                    .collect(),
            ))
        }
        "moduleInfo" => {
            at_most(&args, 1, &m(method))?;
            let name = text_arg(&args, 0, "name", &m(method))?;
            module_info(inner, name).map_err(|e| e.to_fault())
        }
        "stats" => {
            at_most(&args, 0, &m(method))?;
            let modules = crate::stats::collect(inner).await;
            Ok(Value::Map(BTreeMap::from([
                ("core".to_owned(), crate::stats::core_value()),
                (
                    "modules".to_owned(),
                    Value::List(modules.iter().map(crate::stats::module_value).collect()),
                ),
            ])))
        }
        "faults" => Ok(Value::List(
            inner
                .modules()
                .faults
                .iter()
                .map(|f| Value::from(f.as_str()))
                .collect(),
        )),
        "shutdown" => {
            let inner = Arc::clone(inner);
            tokio::spawn(async move {
                let _ops = inner.ops.lock().await;
                crate::supervisor::shutdown(&inner).await;
            });
            Ok(Value::Null)
        }
        _ => Err(Fault::new(
            ErrorCode::UnknownMethod,
            format!(
                "core has no method {method:?} (it has: getLoadedPlugins, getKnownPlugins, loadPlugin, unloadPlugin, reloadPlugin, processPlugin, getPluginMethods, listModules, moduleInfo, stats, faults, shutdown)"
            ),
        )),
    }
}

fn may_change(inner: &Inner, caller: &Caller, method: &str) -> Result<(), Fault> {
    let Caller::Module(me) = caller else {
        return Ok(());
    };
    let allowed = inner
        .modules()
        .known
        .get(me)
        .is_some_and(|m| m.permissions.iter().any(|p| p.as_str() == "core"));
    if allowed {
        Ok(())
    } else {
        tracing::warn!(caller = %me, "denied: {me} may not call core.{method}");
        Err(Fault::new(
            ErrorCode::Unauthorized,
            format!("module {me} may not call core.{method}: add \"core\" to its permissions"),
        ))
    }
}

/// Registers a module from a path (a module dir or its metadata.json); returns its name.
fn process_plugin(inner: &Inner, path: &str) -> Result<Value, Fault> {
    let p = std::path::Path::new(path);
    let dir = if p.file_name().is_some_and(|f| f == "metadata.json") {
        p.parent().unwrap_or(p)
    } else {
        p
    };
    let manifest = crate::manifest::Manifest::load(dir)
        .map_err(|e| Fault::new(ErrorCode::InvalidArgs, e.to_string()))?;
    let name = manifest.name.as_str().to_owned();
    let mut m = inner.modules();
    if m.state(&name).is_loaded() {
        return Err(Fault::new(
            ErrorCode::InvalidArgs,
            format!("module {name} is loaded; unload it before replacing its metadata"),
        ));
    }
    m.known.insert(name.clone(), manifest);
    Ok(Value::from(name))
}

/// The interface a loaded module registered.
pub(crate) fn interface(inner: &Inner, name: &str) -> Result<Value, Error> {
    let m = inner.modules();
    if !m.known.contains_key(name) {
        drop(m);
        return Err(inner.unknown(name));
    }
    match m.records.get(name) {
        Some(r) if r.state() == State::Ready => Ok(r.interface.clone().unwrap_or(Value::Null)),
        _ => Err(Error::NotLoaded {
            name: name.to_owned(),
        }),
    }
}

fn info_value(i: &ModuleInfo) -> Value {
    let mut m = BTreeMap::new();
    m.insert("name".to_owned(), Value::from(i.name.as_str()));
    m.insert("version".to_owned(), Value::from(i.version.as_str()));
    m.insert("state".to_owned(), Value::from(i.state.as_str()));
    m.insert("pid".to_owned(), i.pid.map_or(Value::Null, Value::from));
    m.insert(
        "uptimeMs".to_owned(),
        i.uptime
            .map_or(Value::Null, |u| Value::from(u.as_millis() as u64)),
    );
    m.insert("restarts".to_owned(), Value::from(i.restarts));
    m.insert(
        "restartPolicy".to_owned(),
        Value::from(i.restart_policy.as_str()),
    );
    m.insert("recentCrashes".to_owned(), Value::from(i.recent_crashes));
    m.insert(
        "nextRestartMs".to_owned(),
        i.next_restart
            .map_or(Value::Null, |d| Value::from(d.as_millis() as u64)),
    );
    m.insert(
        "unhealthy".to_owned(),
        i.unhealthy.as_deref().map_or(Value::Null, Value::from),
    );
    m.insert(
        "lastExit".to_owned(),
        i.last_exit.as_ref().map_or(Value::Null, |e| {
            let mut x = BTreeMap::new();
            x.insert("status".to_owned(), Value::from(e.status_text()));
            x.insert("code".to_owned(), e.code.map_or(Value::Null, Value::from));
            x.insert(
                "signal".to_owned(),
                e.signal.map_or(Value::Null, Value::from),
            );
            x.insert(
                "uptimeMs".to_owned(),
                Value::from(e.uptime.as_millis() as u64),
            );
            x.insert(
                "stderr".to_owned(),
                Value::List(
                    e.stderr_tail
                        .iter()
                        .map(|l| Value::from(l.as_str()))
                        .collect(),
                ),
            );
            Value::Map(x)
        }),
    );
    Value::Map(m)
}

/// Everything about one module: state, metadata, dependencies, dependents, interface.
fn module_info(inner: &Inner, name: &str) -> Result<Value, Error> {
    let info = crate::supervisor::infos(inner)
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| inner.unknown(name))?;
    let mut v = match info_value(&info) {
        Value::Map(m) => m,
        _ => BTreeMap::new(),
    };
    let m = inner.modules();
    if let Some(manifest) = m.known.get(name) {
        v.insert(
            "metadata".to_owned(),
            Value::from_json(manifest.raw.clone()),
        );
        v.insert(
            "dependencies".to_owned(),
            Value::List(
                manifest
                    .dependencies
                    .iter()
                    .map(|(name, req)| Value::from(format!("{name} {req}")))
                    .collect(),
            ),
        );
        let all: Vec<String> = m.known.keys().cloned().collect();
        v.insert(
            "dependents".to_owned(),
            Value::List(
                crate::resolver::Resolver::new(m.known.values())
                    .dependents(&all, name)
                    .into_iter()
                    .map(|n| Value::from(n.into_string()))
                    .collect(),
            ),
        );
    }
    if let Some(r) = m.records.get(name) {
        v.insert(
            "interface".to_owned(),
            r.interface.clone().unwrap_or(Value::Null),
        );
    }
    v.insert(
        "confinement".to_owned(),
        Value::from(crate::sys::confinement(inner.settings.landlock).to_string()),
    );
    Ok(Value::Map(v))
}
