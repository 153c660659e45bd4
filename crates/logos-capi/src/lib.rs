//! `liblogos_core`: the RFC's C API over the logos-core runtime.
//!
//! Every function here checks its arguments, converts them, calls `handle.rs`, and returns an
//! int, a pointer, or nothing; nothing else lives in this file. Each body runs inside
//! [`error::guard`], which catches panics and records the thread's last error. The header
//! `include/logos_core.h` is generated from this file by cbindgen (`cbindgen.toml`) and a test
//! fails when the checked-in copy differs; docs/c-api.md is the guide for application authors.
//!
//! Two name sets live here: the RFC's (`…_plugins_dir`, `…_load_plugin`, …, first) and the
//! reference implementation's 2026 header (`…_modules_dir`, `…_load_module(name, bool)`, …,
//! after them), each with the signature its header declares; docs/c-api.md maps one onto the
//! other.
//!
//! Files: `handle.rs` the core and its runtime; `callback.rs` the queue drained by
//! `logos_core_process_events`/`logos_core_exec`; `strings.rs` C strings, lists and the
//! callback pointer pair (the only other file with `unsafe`); `params.rs` JSON arguments and
//! results; `host.rs` finding `logos_host`; `error.rs` errors and the last error;
//! `introspect.rs` dependency walks, module table and stats as the reference shapes them;
//! `access_policy.rs` and `transports.rs` the reference's policy and transport documents.

mod access_policy;
mod callback;
mod error;
mod handle;
mod host;
mod introspect;
mod params;
mod strings;
mod transports;

use crate::callback::{QUEUE, Reply};
use crate::error::{Error, guard, set_last_error};
use crate::strings::{Callback, arg};
use std::ffi::{c_char, c_int, c_void};
use std::ptr;

/// Called with the outcome of an asynchronous call, or with each event of a listener.
///
/// `result` is 1 on success (`message` is the method's return value, or the event, as JSON) and
/// 0 on failure (`message` is `"<error code>: <explanation>"`, e.g. `"unknown_method: …"`). A
/// listener also gets 0 with `"lagged: N events of …"` when N events were dropped because the
/// application did not drain callbacks in time.
/// `message` is valid only during the call: copy it to keep it. `user_data` is the pointer given
/// when the callback was registered. Callbacks run only inside `logos_core_process_events()` or
/// `logos_core_exec()`, on the thread that called them; they may call any `logos_core_*`
/// function but must not unwind (throw, longjmp) out of the callback.
pub type AsyncCallback =
    Option<unsafe extern "C" fn(result: c_int, message: *const c_char, user_data: *mut c_void)>;

/// Creates the library's global state. Optional: every function that needs it creates it.
/// Calling it again, even while started, does nothing. After `logos_core_cleanup()` it starts
/// afresh. Returns 1.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_initialize() -> c_int {
    guard("logos_core_initialize", 0, || {
        handle::initialize();
        Ok(1)
    })
}

/// Same as `logos_core_initialize()`, for applications written against the reference
/// implementation. `argc` and `argv` are accepted and not read (NULL is fine). Returns 1.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_init(argc: c_int, argv: *mut *mut c_char) -> c_int {
    let _ = (argc, argv);
    guard("logos_core_init", 0, || {
        handle::initialize();
        Ok(1)
    })
}

/// Uses `plugins_dir` as the only modules directory (each module is `<dir>/<name>/metadata.json`
/// with its library). Must be called before `logos_core_start()`.
/// Returns 1, or 0 if `plugins_dir` is NULL, not UTF-8 or not a directory, or the core is
/// started (see `logos_core_last_error()`).
///
/// # Safety
/// `plugins_dir` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_set_plugins_dir(plugins_dir: *const c_char) -> c_int {
    guard("logos_core_set_plugins_dir", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let dir = unsafe { arg(plugins_dir, "plugins_dir") }?;
        handle::set_modules_dir(dir)?;
        Ok(1)
    })
}

/// Adds a modules directory (searched after the ones before it). Before `logos_core_start()`
/// it is remembered; once started, every module in it that is not loaded is registered at once
/// (like `logos_core_process_plugin()` on each). Returns 1, or 0 on error (see
/// `logos_core_last_error()`; once started, the modules that could be registered are).
///
/// # Safety
/// `plugins_dir` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_add_plugins_dir(plugins_dir: *const c_char) -> c_int {
    guard("logos_core_add_plugins_dir", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let dir = unsafe { arg(plugins_dir, "plugins_dir") }?;
        handle::add_modules_dir(dir)?;
        Ok(1)
    })
}

/// Uses `path` as the `logos_host` executable that runs library modules. Must be called before
/// `logos_core_start()`. Without it: `$LOGOS_HOST`, `$LOGOS_HOST_PATH`, `logos_host` beside
/// this library (or in its parent or `../bin`), `../bin/logos_host` next to a modules dir,
/// beside the executable, then `PATH`. Returns 1, or 0 on error.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_set_host_binary(path: *const c_char) -> c_int {
    guard("logos_core_set_host_binary", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let path = unsafe { arg(path, "path") }?;
        handle::set_host_binary(path)?;
        Ok(1)
    })
}

/// Starts the core: its threads, the private runtime dir (`$LOGOS_RUNTIME_DIR`, else a new
/// temp dir), module discovery and the built-in `core` and `capability_module`. Modules are
/// loaded with `logos_core_load_plugin()`. Returns 1 (also when already started), or 0 on error.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_start() -> c_int {
    guard("logos_core_start", 0, || {
        handle::start()?;
        Ok(1)
    })
}

/// Runs the event loop: delivers callbacks on this thread as they arrive and blocks until
/// `logos_core_cleanup()` (from a callback or another thread), `logos_core_exit()`, or the core
/// being stopped from outside (`logoscore stop`). Returns the code given to `logos_core_exit()`,
/// 0 otherwise, or -1 if the core is not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_exec() -> c_int {
    guard("logos_core_exec", -1, handle::exec)
}

/// Makes the running `logos_core_exec()` return `code` (or the next one, if none is running;
/// `logos_core_cleanup()` forgets the request). Callable from any thread and from callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_exit(code: c_int) {
    guard("logos_core_exit", (), || {
        QUEUE.request_exit(code);
        Ok(())
    });
}

/// Stops every module (dependents first, each within its grace period), shuts the core's
/// threads down, removes the private runtime dir and forgets all settings. A running
/// `logos_core_exec()` returns. Event listeners end: their queued callbacks are dropped and
/// none runs afterwards. Calls still in flight fail with `unavailable`; their callbacks (and
/// those of finished calls not yet delivered) stay queued for `logos_core_process_events()`. Safe to call when not started and more than
/// once; `logos_core_initialize()`/`logos_core_start()` work again afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_cleanup() {
    guard("logos_core_cleanup", (), || {
        handle::cleanup();
        Ok(())
    });
}

/// Names of the loaded modules, as a NULL-terminated array. Release it with
/// `logos_core_free_list()`. NULL if the core is not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_loaded_plugins() -> *mut *mut c_char {
    guard("logos_core_get_loaded_plugins", ptr::null_mut(), || {
        strings::to_c_list(&handle::loaded()?)
    })
}

/// Names of every known module (discovered or registered, loaded or not), as a NULL-terminated
/// array. Release it with `logos_core_free_list()`. NULL if the core is not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_known_plugins() -> *mut *mut c_char {
    guard("logos_core_get_known_plugins", ptr::null_mut(), || {
        strings::to_c_list(&handle::known()?)
    })
}

/// Loads `plugin_name` and its dependencies; returns when all are ready. Returns 1 on success,
/// 0 on failure (see `logos_core_last_error()`, e.g. `"unknown_module: …"`).
///
/// # Safety
/// `plugin_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_load_plugin(plugin_name: *const c_char) -> c_int {
    guard("logos_core_load_plugin", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(plugin_name, "plugin_name") }?;
        handle::load(name)?;
        Ok(1)
    })
}

/// Same as `logos_core_load_plugin()` (which always loads dependencies first), for
/// applications written against the reference implementation's later header.
///
/// # Safety
/// `plugin_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_load_plugin_with_dependencies(
    plugin_name: *const c_char,
) -> c_int {
    guard("logos_core_load_plugin_with_dependencies", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(plugin_name, "plugin_name") }?;
        handle::load(name)?;
        Ok(1)
    })
}

/// Loads `plugin_name` in the background; `callback` gets `(1, "true")` or `(0, "<code>: …")`,
/// exactly once, from `logos_core_process_events()`/`logos_core_exec()`. Returns 1 if the load
/// was started, 0 if it was refused (the callback then gets the failure too). `callback` may be
/// NULL.
///
/// # Safety
/// `plugin_name` is NULL or a NUL-terminated string valid for the call; `callback` is NULL or a
/// function that accepts `user_data` when it is called later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_load_plugin_async(
    plugin_name: *const c_char,
    callback: AsyncCallback,
    user_data: *mut c_void,
) -> c_int {
    let reply = Reply::new(Callback::new(callback, user_data), "loading a module");
    guard("logos_core_load_plugin_async", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = match unsafe { arg(plugin_name, "plugin_name") } {
            Ok(n) => n,
            Err(e) => {
                reply.fail(&e);
                return Err(e);
            }
        };
        handle::load_async(name, reply)?;
        Ok(1)
    })
}

/// Unloads `plugin_name` (stops its process). Fails while loaded modules depend on it: unload
/// those first, or use `logos_core_unload_plugin_with_dependents()`. Returns 1 on success, 0 on
/// failure.
///
/// # Safety
/// `plugin_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_unload_plugin(plugin_name: *const c_char) -> c_int {
    guard("logos_core_unload_plugin", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(plugin_name, "plugin_name") }?;
        handle::unload(name, false)?;
        Ok(1)
    })
}

/// Unloads `plugin_name` and, first, every loaded module that depends on it (leaves first).
/// Returns 1 on success, 0 on failure.
///
/// # Safety
/// `plugin_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_unload_plugin_with_dependents(
    plugin_name: *const c_char,
) -> c_int {
    guard("logos_core_unload_plugin_with_dependents", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(plugin_name, "plugin_name") }?;
        handle::unload(name, true)?;
        Ok(1)
    })
}

/// Registers the module at `plugin_path` without loading it: its directory, its
/// `metadata.json`, or its library file (the metadata beside it is read). Returns the module's
/// name (release with `logos_core_free_string()`), or NULL on failure.
///
/// # Safety
/// `plugin_path` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_process_plugin(plugin_path: *const c_char) -> *mut c_char {
    guard("logos_core_process_plugin", ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let path = unsafe { arg(plugin_path, "plugin_path") }?;
        strings::to_c(&handle::process_plugin(path)?)
    })
}

/// The token for `key`. `"client"` (or `"core"`) gives the client token (hex) of the core's
/// control socket `<runtime dir>/core.sock`, with which another process (e.g. `logoscore`) may
/// talk to this core. Module tokens are never handed out (they bind one caller to one target
/// and live between modules): a module name fails with `unauthorized`. Release the result with
/// `logos_core_free_string()`; NULL on failure.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_get_token(key: *const c_char) -> *mut c_char {
    guard("logos_core_get_token", ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let key = unsafe { arg(key, "key") }?;
        strings::to_c(&handle::token(key)?)
    })
}

/// The core's runtime dir (holds `core.sock` and `client.token`; `logoscore --runtime-dir DIR`
/// talks to this core). Release with `logos_core_free_string()`; NULL if not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_runtime_dir() -> *mut c_char {
    guard("logos_core_get_runtime_dir", ptr::null_mut(), || {
        strings::to_c(&handle::runtime_dir()?)
    })
}

/// Calls `method` of `plugin_name` with the arguments in `params_json`, a JSON array of plain
/// JSON values (`["general", 2]`) or of `{"name": N, "value": V, "type": T}` objects (`type`:
/// string, int, bool, double or their Qt spellings QString, qint64, qreal…; arguments are
/// positional). `callback` gets, exactly once, `(1, <return value as JSON>)` or
/// `(0, "<code>: …")` (e.g. `"unknown_method: …"`), from `logos_core_process_events()` or
/// `logos_core_exec()`. Returns 1 if the call was sent, 0 if it was refused (NULL or bad
/// arguments, core not started); the callback gets that failure too. `callback` may be NULL.
///
/// # Safety
/// The strings are NULL or NUL-terminated strings valid for the call; `callback` is NULL or a
/// function that accepts `user_data` when it is called later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_call_plugin_method_async(
    plugin_name: *const c_char,
    method_name: *const c_char,
    params_json: *const c_char,
    callback: AsyncCallback,
    user_data: *mut c_void,
) -> c_int {
    let mut reply = Reply::new(Callback::new(callback, user_data), "the call");
    guard("logos_core_call_plugin_method_async", 0, || {
        // SAFETY: the caller passes NULL or valid C strings (# Safety).
        let checked = unsafe { call_args(plugin_name, method_name, params_json) };
        let (plugin, method, args) = match checked {
            Ok(c) => c,
            Err(e) => {
                reply.fail(&e);
                return Err(e);
            }
        };
        reply.set_what(format!("the call {plugin}.{method}"));
        handle::call_async(plugin, method, args, reply)?;
        Ok(1)
    })
}

/// Like `logos_core_call_plugin_method_async()`, but waits for the result on this thread, at
/// most `timeout_ms` milliseconds (0 or less: the core's call timeout, 30 s). Returns the
/// method's return value as JSON (release with `logos_core_free_string()`), or NULL on failure
/// with `logos_core_last_error()` = `"<code>: …"` (`"timeout: …"` when the deadline passed).
///
/// # Safety
/// The strings are NULL or NUL-terminated strings valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_call_plugin_method(
    plugin_name: *const c_char,
    method_name: *const c_char,
    params_json: *const c_char,
    timeout_ms: c_int,
) -> *mut c_char {
    guard("logos_core_call_plugin_method", ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or valid C strings (# Safety).
        let (plugin, method, args) = unsafe { call_args(plugin_name, method_name, params_json) }?;
        let value = handle::call(plugin, method, args, i64::from(timeout_ms))?;
        strings::to_c(&params::result_json(&value))
    })
}

/// Checks and converts the arguments of a call.
///
/// # Safety
/// Each pointer is NULL or a NUL-terminated string valid for `'a`.
unsafe fn call_args<'a>(
    plugin_name: *const c_char,
    method_name: *const c_char,
    params_json: *const c_char,
) -> Result<(&'a str, &'a str, Vec<logos::Value>), Error> {
    // SAFETY: forwarded from the caller's guarantee.
    let (plugin, method, params) = unsafe {
        (
            arg(plugin_name, "plugin_name")?,
            arg(method_name, "method_name")?,
            arg(params_json, "params_json")?,
        )
    };
    Ok((plugin, method, params::parse(params)?))
}

/// Calls `callback` with `(1, {"event": NAME, "data": [..]})` for every `event_name` event of
/// `plugin_name` (an empty `event_name`: every event of it), until `logos_core_cleanup()`. The
/// module may be loaded later; the listener survives its restarts. Events wait for delivery
/// in a bounded queue (4096 events and 16 MiB per core); when the application does not call
/// `logos_core_process_events()` often enough, events that do not fit are dropped and the
/// listener gets one `(0, "lagged: N events of PLUGIN.EVENT were dropped …")` just before the
/// next event that fits. Returns 1, or 0 if refused (NULL or bad arguments, unknown module,
/// core not started), in which case `callback` (if not NULL) also gets `(0, "<code>: …")`.
/// No callback of the listener runs once `logos_core_cleanup()` has started: events still
/// queued then are dropped, so `user_data` may be freed when cleanup returns.
///
/// # Safety
/// The strings are NULL or NUL-terminated strings valid for the call; `callback` is NULL or a
/// function that accepts `user_data` whenever it is called until cleanup.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_register_event_listener(
    plugin_name: *const c_char,
    event_name: *const c_char,
    callback: AsyncCallback,
    user_data: *mut c_void,
) -> c_int {
    let cb = Callback::new(callback, user_data);
    guard("logos_core_register_event_listener", 0, || {
        // SAFETY: the caller passes NULL or valid C strings (# Safety).
        let checked = unsafe {
            (
                arg(plugin_name, "plugin_name"),
                arg(event_name, "event_name"),
            )
        };
        let outcome = match (checked, cb) {
            (_, None) => Err(Error::Null { name: "callback" }),
            ((Ok(plugin), Ok(event)), Some(cb)) => handle::listen(plugin, event, cb),
            ((Err(e), _) | (_, Err(e)), Some(_)) => Err(e),
        };
        if let (Err(e), Some(cb)) = (&outcome, cb) {
            QUEUE.listener_failed(cb, e);
        }
        outcome.map(|()| 1)
    })
}

/// Delivers the callbacks queued so far, on this thread, and returns without waiting. Returns
/// how many were delivered. Call it regularly (e.g. every 10–50 ms from a timer) when not
/// using `logos_core_exec()`. Works in every state, also before start and after cleanup.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_process_events() -> c_int {
    guard("logos_core_process_events", 0, || {
        Ok(c_int::try_from(QUEUE.process()).unwrap_or(c_int::MAX))
    })
}

/// This thread's last error: `"<code>: <explanation>"` from the most recent failed
/// `logos_core_*` call on this thread, or `""` if that call succeeded. Never NULL. The string
/// belongs to the library and stays valid until the next `logos_core_*` call on this thread:
/// copy it to keep it; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// Releases a string returned by this library. NULL is ignored. (Strings are allocated with
/// `malloc`, so `free()` works too.)
///
/// # Safety
/// `s` is NULL or a string returned by this library, not yet released.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_free_string(s: *mut c_char) {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { strings::free_string(s) }
}

/// Same as `logos_core_free_string()`.
///
/// # Safety
/// `s` is NULL or a string returned by this library, not yet released.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_free(s: *mut c_char) {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { strings::free_string(s) }
}

/// Releases a list returned by this library and every string in it. NULL is ignored.
///
/// # Safety
/// `list` is NULL or a list returned by this library, not yet released (nor any string in it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_free_list(list: *mut *mut c_char) {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe { strings::free_list(list) }
}

// ---------------------------------------------------------------------------------------------
// The reference implementation's 2026 names (its `logos_core.h`): same signatures; the
// functions it declares `void` report failures through `logos_core_last_error()` only.
// ---------------------------------------------------------------------------------------------

/// Adds a modules directory to scan (several may be added; adding one twice does nothing
/// more). Before `logos_core_start()` it is remembered; once started, the modules in it that
/// are not loaded are registered at once, and `logos_core_refresh_modules()` scans it again.
/// On failure (NULL, not UTF-8, not a directory, a module with bad metadata)
/// `logos_core_last_error()` says why; otherwise it is `""`.
///
/// # Safety
/// `modules_dir` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_add_modules_dir(modules_dir: *const c_char) {
    guard("logos_core_add_modules_dir", (), || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let dir = unsafe { arg(modules_dir, "modules_dir") }?;
        handle::add_modules_dir(dir)
    });
}

/// Names of the loaded modules, as a NULL-terminated array (same as
/// `logos_core_get_loaded_plugins()`). Release it with `logos_core_free_list()`. NULL if the
/// core is not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_loaded_modules() -> *mut *mut c_char {
    guard("logos_core_get_loaded_modules", ptr::null_mut(), || {
        strings::to_c_list(&handle::loaded()?)
    })
}

/// Names of every known module, as a NULL-terminated array (same as
/// `logos_core_get_known_plugins()`). Release it with `logos_core_free_list()`. NULL if the
/// core is not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_known_modules() -> *mut *mut c_char {
    guard("logos_core_get_known_modules", ptr::null_mut(), || {
        strings::to_c_list(&handle::known()?)
    })
}

/// Makes sure `module_name` is loaded and returns when it is ready: 1 if it is loaded when
/// this returns (also when it already was), 0 on failure (see `logos_core_last_error()`).
/// With `with_dependencies`, the modules it depends on are loaded first, in dependency
/// order; without, they must be loaded already (else 0 with `not_loaded: … needs …`).
///
/// # Safety
/// `module_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_load_module(
    module_name: *const c_char,
    with_dependencies: bool,
) -> c_int {
    guard("logos_core_load_module", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(module_name, "module_name") }?;
        handle::load_module(name, with_dependencies)?;
        Ok(1)
    })
}

/// Unloads `module_name`; with `with_dependents`, every loaded module that depends on it,
/// directly or not, is unloaded first (leaves first); without, loaded dependents make it fail.
/// Returns 1 on success, 0 on failure (also when it is not loaded).
///
/// # Safety
/// `module_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_unload_module(
    module_name: *const c_char,
    with_dependents: bool,
) -> c_int {
    guard("logos_core_unload_module", 0, || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let name = unsafe { arg(module_name, "module_name") }?;
        handle::unload(name, with_dependents)?;
        Ok(1)
    })
}

/// The modules `module_name` depends on (its metadata's `dependencies`); with `recursive`,
/// the whole closure, breadth first, without the module itself. A NULL-terminated array;
/// release it with `logos_core_free_list()`. An unknown module gives an empty array, with
/// `logos_core_last_error()` saying `unknown_module: …`; NULL if not started or on bad input.
///
/// # Safety
/// `module_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_get_module_dependencies(
    module_name: *const c_char,
    recursive: bool,
) -> *mut *mut c_char {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe {
        relatives(
            "logos_core_get_module_dependencies",
            module_name,
            false,
            recursive,
        )
    }
}

/// The known modules that depend on `module_name`; with `recursive`, the whole closure,
/// breadth first. A NULL-terminated array; release it with `logos_core_free_list()`. An
/// unknown module gives an empty array, with `logos_core_last_error()` saying
/// `unknown_module: …`; NULL if not started or on bad input.
///
/// # Safety
/// `module_name` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_get_module_dependents(
    module_name: *const c_char,
    recursive: bool,
) -> *mut *mut c_char {
    // SAFETY: forwarded from the caller's guarantee.
    unsafe {
        relatives(
            "logos_core_get_module_dependents",
            module_name,
            true,
            recursive,
        )
    }
}

/// The body of `logos_core_get_module_dependencies`/`…_dependents`: an unknown module is an
/// empty list (as the reference answers) and the last error.
///
/// # Safety
/// `module_name` is NULL or a NUL-terminated string valid for the call.
unsafe fn relatives(
    function: &'static str,
    module_name: *const c_char,
    dependents: bool,
    recursive: bool,
) -> *mut *mut c_char {
    let mut unknown = None;
    let list = guard(function, ptr::null_mut(), || {
        // SAFETY: forwarded from the caller's guarantee.
        let name = unsafe { arg(module_name, "module_name") }?;
        match handle::relatives(name, dependents, recursive) {
            Ok(names) => strings::to_c_list(&names),
            Err(e) if e.code() == logos::ErrorCode::UnknownModule => {
                unknown = Some(e.text());
                strings::to_c_list(&[])
            }
            Err(e) => Err(e),
        }
    });
    if let Some(text) = unknown {
        set_last_error(&text);
    }
    list
}

/// Every known module as a JSON array of `{"name", "path" (its library or executable),
/// "loaded", "loaded_at" (unix seconds of the current load, 0 when not loaded),
/// "dependencies", "dependents" (direct ones), "metadata" (its metadata.json), "version",
/// "state"}`. Release with `logos_core_free_string()`; NULL if not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_modules_info() -> *mut c_char {
    guard("logos_core_get_modules_info", ptr::null_mut(), || {
        strings::to_c(&handle::modules_info()?)
    })
}

/// Same as `logos_core_process_plugin()`: registers the module at `module_path` (its dir, its
/// `metadata.json` or its library file) without loading it and returns its name (release
/// with `logos_core_free_string()`), or NULL on failure.
///
/// # Safety
/// `module_path` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_process_module(module_path: *const c_char) -> *mut c_char {
    guard("logos_core_process_module", ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let path = unsafe { arg(module_path, "module_path") }?;
        strings::to_c(&handle::process_plugin(path)?)
    })
}

/// CPU and memory of every module process, as a JSON array of `{"name", "pid",
/// "cpu_percent" (of one CPU, since the previous call; on the first, since the module became
/// ready), "cpu_time_seconds", "memory_mb" (resident), "threads", "uptime_seconds", "calls",
/// "errors"}`. Release with `logos_core_free_string()`; NULL if not started.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_get_module_stats() -> *mut c_char {
    guard("logos_core_get_module_stats", ptr::null_mut(), || {
        strings::to_c(&handle::module_stats()?)
    })
}

/// Uses `path` as the parent of each module's data dir (`<path>/<module>`, its working
/// directory and `LOGOS_DATA_DIR`), over `$LOGOS_DATA_DIR`. Before `logos_core_start()`
/// only; after it, or for an empty path or one that is not a directory,
/// `logos_core_last_error()` says why.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_set_persistence_base_path(path: *const c_char) {
    guard("logos_core_set_persistence_base_path", (), || {
        // SAFETY: the caller passes NULL or a valid C string (# Safety).
        let path = unsafe { arg(path, "path") }?;
        handle::set_data_dir(path)
    });
}

/// Checks a transport set for `module_name` (a JSON array of `{"protocol", "host", "port",
/// …}`). Every module is reachable through its local socket only (remote modules do not exist
/// yet): a set of nothing but `{"protocol": "local"}` (or NULL, `""`, `[]`) is accepted; any
/// other protocol, and any malformed set, leaves `logos_core_last_error()` saying why.
///
/// # Safety
/// The strings are NULL or NUL-terminated strings valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_set_module_transports(
    module_name: *const c_char,
    transport_set_json: *const c_char,
) {
    guard("logos_core_set_module_transports", (), || {
        // SAFETY: the caller passes NULL or valid C strings (# Safety).
        let name = unsafe { arg(module_name, "module_name") }?;
        logos::ModuleName::new(name)?;
        let set = if transport_set_json.is_null() {
            ""
        } else {
            // SAFETY: not NULL, and valid per the caller (# Safety).
            unsafe { arg(transport_set_json, "transport_set_json") }?
        };
        transports::check(name, set)
    });
}

/// Sets the access policy the core starts with: `{"version": 1, "mode": "enforce",
/// "restrictions": {"<target>": {"allowedCallers": ["<caller>", …]}}}`. Each restriction lets
/// only the listed modules call its target (their dependencies and permissions no longer
/// matter for it); other targets keep the default policy (a module may call its dependencies
/// and permissions). NULL or `""` clears it. Before `logos_core_start()` only. `"enforce"` is
/// the only mode: any other, an unknown key, or a name that is not a module name leaves the
/// policy unchanged and `logos_core_last_error()` saying why.
///
/// # Safety
/// `policy_json` is NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn logos_core_set_access_policy(policy_json: *const c_char) {
    guard("logos_core_set_access_policy", (), || {
        let text = if policy_json.is_null() {
            ""
        } else {
            // SAFETY: not NULL, and valid per the caller (# Safety).
            unsafe { arg(policy_json, "policy_json") }?
        };
        handle::set_restrictions(access_policy::parse(text)?)
    });
}

/// Scans every modules dir again: modules installed since become known, modules whose
/// `metadata.json` is gone become unknown (a loaded one once it is unloaded), and the
/// metadata of modules that are not loaded is read again. If some module cannot be registered
/// (bad metadata), `logos_core_last_error()` lists them; the rest is refreshed.
#[unsafe(no_mangle)]
pub extern "C" fn logos_core_refresh_modules() {
    guard("logos_core_refresh_modules", (), handle::refresh);
}
