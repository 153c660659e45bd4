//! `core`: the RFC's Core Manager, served by the core over the protocol.
//!
//! Methods: `getLoadedPlugins`, `getKnownPlugins`, `loadPlugin(name)`,
//! `unloadPlugin(name, cascade?)`, `reloadPlugin(name, hot?)`, `processPlugin(path)`,
//! `getPluginMethods(name)`, plus `listModules`, `moduleInfo(name)`, `stats`, `faults` and
//! `shutdown` for operators. Who may call what is decided before a call gets here
//! (`conn::route_call` asks `policy.rs`: reading is open to every module, changing what runs
//! needs `"core"` in the caller's permissions, a configured deny shuts a module out). A
//! module sees the stderr lines of its own crashes only; operators see everyone's.

use crate::builtin::{at_most, bool_arg, name_arg, text_arg};
use crate::conn::Caller;
use crate::error::Error;
use crate::registry::{ModuleInfo, State};
use crate::state::Inner;
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
    let m = |name: &str| format!("core.{name}");
    match method {
        "getLoadedPlugins" => {
            at_most(&args, 0, &m(method))?;
            let names = inner
                .registry()
                .infos(&inner.settings)
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
                    .registry()
                    .known()
                    .keys()
                    .map(|k| Value::from(k.as_str()))
                    .collect(),
            ))
        }
        "loadPlugin" => {
            at_most(&args, 1, &m(method))?;
            let name = name_arg(&args, 0, "name", &m(method))?.to_owned();
            crate::supervisor::load(inner, &[name.as_str()])
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| fault_for(caller, e))
        }
        "unloadPlugin" => {
            at_most(&args, 2, &m(method))?;
            let name = name_arg(&args, 0, "name", &m(method))?.to_owned();
            let cascade = bool_arg(&args, 1, "cascade", &m(method))?;
            crate::supervisor::unload(inner, &name, cascade)
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| e.to_fault())
        }
        "reloadPlugin" => {
            at_most(&args, 2, &m(method))?;
            let name = name_arg(&args, 0, "name", &m(method))?.to_owned();
            if bool_arg(&args, 1, "hot", &m(method))? {
                return crate::supervisor::reload_hot(inner, &name)
                    .await
                    .map(|r| swap_report(&r))
                    .map_err(|e| fault_for(caller, e));
            }
            crate::supervisor::reload(inner, &name)
                .await
                .map(|()| Value::Bool(true))
                .map_err(|e| fault_for(caller, e))
        }
        "processPlugin" => {
            at_most(&args, 1, &m(method))?;
            let path = text_arg(&args, 0, "path", &m(method))?;
            process_plugin(inner, path).await
        }
        "getPluginMethods" => {
            at_most(&args, 1, &m(method))?;
            let name = name_arg(&args, 0, "name", &m(method))?;
            interface(inner, name).map_err(|e| e.to_fault())
        }
        "listModules" => {
            at_most(&args, 0, &m(method))?;
            Ok(Value::List(
                inner
                    .registry()
                    .infos(&inner.settings)
                    .iter()
                    .map(|i| info_value(i, may_read_stderr(caller, &i.name)))
                    .collect(),
            ))
        }
        "moduleInfo" => {
            at_most(&args, 1, &m(method))?;
            let name = name_arg(&args, 0, "name", &m(method))?;
            module_info(inner, name, may_read_stderr(caller, name)).map_err(|e| e.to_fault())
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
        "remoteGrant" | "remoteList" | "remoteRevoke" | "remoteInfo" => {
            if !caller.is_operator() {
                return Err(Fault::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "core.{method} is for operators only; a module never manages remote credentials"
                    ),
                ));
            }
            remote_method(inner, method, &args)
        }
        "getTraces" => {
            at_most(&args, 1, &m(method))?;
            crate::spans::get_traces(&inner.spans, &args)
        }
        "getSpans" => {
            at_most(&args, 1, &m(method))?;
            crate::spans::get_spans(&inner.spans, &args)
        }
        "faults" => Ok(Value::List(
            inner
                .registry()
                .faults()
                .iter()
                .map(|f| Value::from(f.as_str()))
                .collect(),
        )),
        "shutdown" => {
            let inner = Arc::clone(inner);
            tokio::spawn(async move {
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

/// `remoteGrant(module, expires?, allow?, addresses?)` → `{"document", "module", "issuedAt",
/// "expiresAt"}`; `remoteList()`; `remoteRevoke(module)` → bool; `remoteInfo()` →
/// `{"listen", "pin"}`. Operators only.
fn remote_method(inner: &Inner, method: &str, args: &[Value]) -> Result<Value, Fault> {
    let m = format!("core.{method}");
    let texts = |i: usize, what: &str| -> Result<Vec<String>, Fault> {
        match args.get(i) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::List(l)) => l
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        Fault::new(
                            ErrorCode::InvalidArgs,
                            format!("{m}: {what} must be a list of text"),
                        )
                    })
                })
                .collect(),
            Some(_) => Err(Fault::new(
                ErrorCode::InvalidArgs,
                format!("{m}: {what} must be a list of text"),
            )),
        }
    };
    let time = |t: Option<std::time::SystemTime>| {
        t.map_or(Value::Null, |t| Value::from(crate::operators::rfc3339(t)))
    };
    match method {
        "remoteGrant" => {
            at_most(args, 4, &m)?;
            let module = name_arg(args, 0, "module", &m)?;
            let now = std::time::SystemTime::now();
            let expires_at = match args.get(1) {
                None | Some(Value::Null) => None,
                Some(Value::Text(t)) => Some(
                    crate::operators::parse_expiry(t, now)
                        .map_err(|e| Fault::new(ErrorCode::InvalidArgs, e))?,
                ),
                Some(_) => {
                    return Err(Fault::new(
                        ErrorCode::InvalidArgs,
                        format!("{m}: expires must be text such as 30d or 2026-12-31"),
                    ));
                }
            };
            let g = crate::remote::grant(
                inner,
                module,
                expires_at,
                texts(2, "allow")?,
                texts(3, "addresses")?,
            )
            .map_err(|e| e.to_fault())?;
            Ok(Value::Map(BTreeMap::from([
                ("document".to_owned(), Value::from(g.document)),
                ("module".to_owned(), Value::from(g.info.module)),
                ("issuedAt".to_owned(), time(Some(g.info.issued_at))),
                ("expiresAt".to_owned(), time(g.info.expires_at)),
            ])))
        }
        "remoteRevoke" => {
            at_most(args, 1, &m)?;
            let module = name_arg(args, 0, "module", &m)?;
            crate::remote::revoke(inner, module)
                .map(Value::Bool)
                .map_err(|e| e.to_fault())
        }
        "remoteList" => {
            at_most(args, 0, &m)?;
            let remote = crate::remote::get(inner).map_err(|e| e.to_fault())?;
            let registry = inner.registry();
            Ok(Value::List(
                remote
                    .store
                    .list()
                    .into_iter()
                    .map(|c| {
                        let rec = registry.record(&c.module).filter(|r| r.remote().is_some());
                        let state = rec.map_or("never connected", |r| r.state().as_str());
                        let live = c.revoked_at.is_none();
                        BTreeMap::from([
                            ("module".to_owned(), Value::from(c.module.as_str())),
                            ("issuedAt".to_owned(), time(Some(c.issued_at))),
                            ("expiresAt".to_owned(), time(c.expires_at)),
                            ("revokedAt".to_owned(), time(c.revoked_at)),
                            (
                                "allow".to_owned(),
                                Value::List(
                                    c.allow.iter().map(|a| Value::from(a.as_str())).collect(),
                                ),
                            ),
                            (
                                "state".to_owned(),
                                Value::from(if live { state } else { "revoked" }),
                            ),
                            (
                                "peer".to_owned(),
                                rec.and_then(|r| r.remote())
                                    .filter(|_| live)
                                    .map_or(Value::Null, |p| Value::from(p.addr.as_str())),
                            ),
                        ])
                    })
                    .map(Value::Map)
                    .collect(),
            ))
        }
        _ => {
            at_most(args, 0, &m)?;
            let remote = crate::remote::get(inner).map_err(|e| e.to_fault())?;
            Ok(Value::Map(BTreeMap::from([
                ("listen".to_owned(), Value::from(remote.addr.to_string())),
                ("pin".to_owned(), Value::from(remote.pin.to_string())),
            ])))
        }
    }
}

/// Registers a module from a path (a module dir or its metadata.json); returns its name.
async fn process_plugin(inner: &Arc<Inner>, path: &str) -> Result<Value, Fault> {
    let p = std::path::Path::new(path);
    let dir = if p.file_name().is_some_and(|f| f == "metadata.json") {
        p.parent().unwrap_or(p)
    } else {
        p
    };
    let manifest = crate::manifest::Manifest::load(dir)
        .map_err(|e| Fault::new(ErrorCode::InvalidArgs, e.to_string()))?;
    let name = manifest.name.as_str().to_owned();
    match crate::supervisor::register(inner, manifest).await {
        Ok(Ok(name)) => Ok(Value::from(name)),
        Ok(Err(state)) => {
            let what = if state.is_loaded() {
                "loaded"
            } else {
                state.as_str()
            };
            Err(Fault::new(
                ErrorCode::InvalidArgs,
                format!("module {name} is {what}; unload it before replacing its metadata"),
            ))
        }
        Err(e) => Err(e.to_fault()),
    }
}

/// The interface a loaded module registered.
pub(crate) fn interface(inner: &Inner, name: &str) -> Result<Value, Error> {
    crate::name::check_name_len(name)?;
    let registry = inner.registry();
    if !registry.is_known(name) {
        return Err(registry.unknown(name));
    }
    match registry.record(name) {
        Some(r) if r.state() == State::Ready => Ok(r.interface().cloned().unwrap_or(Value::Null)),
        _ => Err(Error::NotLoaded {
            name: name.to_owned(),
        }),
    }
}

/// Whether `caller` may read the recent stderr lines of module `name`: operators may, a
/// module only its own (another module's stderr may hold its secrets: paths, keys, peers).
fn may_read_stderr(caller: &Caller, name: &str) -> bool {
    match caller {
        Caller::Module(me) => me == name,
        _ => true,
    }
}

/// An error of a lifecycle operation for `caller`: a start failure of another module reaches
/// a module caller without that module's stderr lines.
fn fault_for(caller: &Caller, mut e: Error) -> Fault {
    if let (
        Error::StartFailed {
            module,
            stderr_tail,
            ..
        }
        | Error::StartTimeout {
            module,
            stderr_tail,
            ..
        },
        caller,
    ) = (&mut e, caller)
        && !may_read_stderr(caller, module)
    {
        stderr_tail.clear();
    }
    e.to_fault()
}

/// One module's snapshot; `stderr` (its last exit's stderr lines) is empty unless
/// `show_stderr`.
fn info_value(i: &ModuleInfo, show_stderr: bool) -> Value {
    let mut m = BTreeMap::new();
    m.insert("name".to_owned(), Value::from(i.name.as_str()));
    m.insert("version".to_owned(), Value::from(i.version.as_str()));
    m.insert("state".to_owned(), Value::from(i.state.as_str()));
    m.insert("pid".to_owned(), i.pid.map_or(Value::Null, Value::from));
    m.insert("location".to_owned(), Value::from(i.location.as_str()));
    m.insert(
        "disconnectedSince".to_owned(),
        i.disconnected_since
            .map_or(Value::Null, |t| Value::from(crate::operators::rfc3339(t))),
    );
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
                        .filter(|_| show_stderr)
                        .map(|l| Value::from(l.as_str()))
                        .collect(),
                ),
            );
            Value::Map(x)
        }),
    );
    Value::Map(m)
}

/// Everything about one module: state, metadata, dependencies, dependents, interface; the
/// stderr lines of its last exit only if `show_stderr`.
fn module_info(inner: &Inner, name: &str, show_stderr: bool) -> Result<Value, Error> {
    let m = inner.registry();
    let info = m
        .infos(&inner.settings)
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| m.unknown(name))?;
    let mut v = match info_value(&info, show_stderr) {
        Value::Map(m) => m,
        _ => BTreeMap::new(),
    };
    if let Some(manifest) = m.manifest(name) {
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
        let all: Vec<String> = m.known().keys().cloned().collect();
        v.insert(
            "dependents".to_owned(),
            Value::List(
                crate::resolver::Resolver::new(m.known())
                    .dependents(&all, name)
                    .into_iter()
                    .map(|n| Value::from(n.into_string()))
                    .collect(),
            ),
        );
        let paths = |ps: &[std::path::PathBuf]| {
            Value::List(
                ps.iter()
                    .map(|p| Value::from(p.display().to_string()))
                    .collect(),
            )
        };
        v.insert(
            "filesystem".to_owned(),
            Value::Map(
                [
                    ("read".to_owned(), paths(&manifest.filesystem.read)),
                    ("write".to_owned(), paths(&manifest.filesystem.write)),
                ]
                .into(),
            ),
        );
    }
    if let Some(r) = m.record(name) {
        v.insert(
            "interface".to_owned(),
            r.interface().cloned().unwrap_or(Value::Null),
        );
    }
    v.insert(
        "confinement".to_owned(),
        Value::from(crate::sys::confinement(inner.settings.landlock).to_string()),
    );
    v.insert(
        "seccomp".to_owned(),
        Value::from(if crate::sys::seccomp_available() {
            "baseline"
        } else {
            "unavailable"
        }),
    );
    if let Some(manifest) = m.manifest(name) {
        let granted = inner.settings.modules.get(name).is_some_and(|o| o.network);
        v.insert(
            "network".to_owned(),
            Value::from(manifest.network && granted),
        );
    }
    let writers = inner
        .policy()
        .writers(name)
        .map(|w| Value::List(w.iter().map(|n| Value::from(n.as_str())).collect()));
    v.insert("protected".to_owned(), Value::Bool(writers.is_some()));
    if let Some(w) = writers {
        v.insert("writers".to_owned(), w);
    }
    Ok(Value::Map(v))
}

/// `reloadPlugin(name, true)`'s answer: `{"oldPid", "pid", "startMs", "retireMs"}`.
fn swap_report(r: &crate::supervisor::SwapReport) -> Value {
    let ms = |d: std::time::Duration| Value::from(d.as_secs_f64() * 1000.0);
    let pid = |p: Option<u32>| p.map_or(Value::Null, Value::from);
    Value::Map(
        [
            ("oldPid".to_owned(), pid(r.old_pid)),
            ("pid".to_owned(), pid(r.new_pid)),
            ("startMs".to_owned(), ms(r.start)),
            ("retireMs".to_owned(), ms(r.retire)),
        ]
        .into_iter()
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operators_and_the_module_itself_read_its_stderr() {
        let me = Caller::Module("probe".into());
        assert!(may_read_stderr(&me, "probe"));
        assert!(!may_read_stderr(&me, "calc"));
        assert!(may_read_stderr(&Caller::Client, "calc"));
        assert!(may_read_stderr(&Caller::Embedder, "calc"));

        let failed = |module: &str| Error::StartFailed {
            module: module.into(),
            reason: "exited before it became ready".into(),
            status: Some("exit code 7".into()),
            stderr_tail: vec!["SECRET".into()],
        };
        assert!(!fault_for(&me, failed("calc")).message.contains("SECRET"));
        assert!(fault_for(&me, failed("probe")).message.contains("SECRET"));
        assert!(
            fault_for(&Caller::Client, failed("calc"))
                .message
                .contains("SECRET")
        );
        let timeout = Error::StartTimeout {
            module: "calc".into(),
            timeout: std::time::Duration::from_secs(1),
            stderr_tail: vec!["SECRET".into()],
        };
        assert!(!fault_for(&me, timeout).message.contains("SECRET"));
    }
}
