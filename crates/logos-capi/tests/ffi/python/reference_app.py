"""The reference implementation's 2026 C API names from Python, with nothing but ctypes.

Usage: python3 reference_app.py LIBLOGOS_CORE_SO MODULES_DIR LATER_DIR DATA_DIR

MODULES_DIR holds calc, chat, greeter and probe; LATER_DIR holds kv, installed into MODULES_DIR
while the core runs and removed again. Declares each function with the reference header's
signature (bool arguments as c_bool, void results as None), checks the JSON documents
structurally, and the access policy on real module-to-module calls. Prints "pid <module> <pid>"
for each module process and "PASS" at the end; exits 1 with a message on the first failed
check.
"""

import ctypes
import json
import os
import shutil
import sys
import time

STRS = ctypes.POINTER(ctypes.c_char_p)


def load(path):
    lib = ctypes.CDLL(path)
    b, s, v = ctypes.c_bool, ctypes.c_char_p, ctypes.c_void_p
    sigs = {
        # The reference header's 2026 declarations. Owned results come back as raw pointers
        # so that they can be freed.
        "logos_core_init": (None, [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]),
        "logos_core_add_modules_dir": (None, [s]),
        "logos_core_start": (None, []),
        "logos_core_cleanup": (None, []),
        "logos_core_get_loaded_modules": (STRS, []),
        "logos_core_get_known_modules": (STRS, []),
        "logos_core_load_module": (ctypes.c_int, [s, b]),
        "logos_core_unload_module": (ctypes.c_int, [s, b]),
        "logos_core_get_module_dependencies": (STRS, [s, b]),
        "logos_core_get_module_dependents": (STRS, [s, b]),
        "logos_core_get_modules_info": (v, []),
        "logos_core_process_module": (v, [s]),
        "logos_core_get_token": (v, [s]),
        "logos_core_get_module_stats": (v, []),
        "logos_core_set_persistence_base_path": (None, [s]),
        "logos_core_set_module_transports": (None, [s, s]),
        "logos_core_set_access_policy": (None, [s]),
        "logos_core_refresh_modules": (None, []),
        # Ours, for checking.
        "logos_core_last_error": (s, []),
        "logos_core_call_plugin_method": (v, [s, s, s, ctypes.c_int]),
        "logos_core_free_string": (None, [v]),
        "logos_core_free_list": (None, [STRS]),
    }
    for name, (restype, argtypes) in sigs.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
    return lib


def main():
    lib_path, modules, later, data = sys.argv[1:5]
    lib = load(lib_path)

    def last_error():
        return lib.logos_core_last_error().decode()

    def check(cond, what):
        if not cond:
            print(f"FAIL: {what} (last error: {last_error()})", file=sys.stderr)
            sys.exit(1)

    def names(listing):
        check(bool(listing), "a list came back NULL")
        out, i = [], 0
        while listing[i] is not None:
            out.append(listing[i].decode())
            i += 1
        lib.logos_core_free_list(listing)
        return out

    def text(p):
        check(p, "a string came back NULL")
        t = ctypes.string_at(p).decode()
        lib.logos_core_free_string(p)
        return t

    def call(target, method, params):
        p = lib.logos_core_call_plugin_method(
            target.encode(), method.encode(), json.dumps(params).encode(), 10000
        )
        return json.loads(text(p)) if p else None

    # Settings before start: void functions report through the last error.
    lib.logos_core_set_access_policy(b'{"version": 1, "mode": "observe"}')
    check(last_error().startswith('invalid_args: invalid policy_json: "mode" "observe"'),
          "observe mode")
    policy = {"version": 1, "mode": "enforce",
              "restrictions": {"chat": {"allowedCallers": ["probe"]}}}
    lib.logos_core_set_access_policy(json.dumps(policy).encode())
    check(last_error() == "", "policy")
    lib.logos_core_set_module_transports(b"kv", b'[{"protocol": "tcp", "port": 0}]')
    check("transport tcp cannot be served" in last_error(), "tcp transport")
    lib.logos_core_set_module_transports(b"kv", b"[]")
    check(last_error() == "", "empty transport set")
    lib.logos_core_set_persistence_base_path(data.encode())
    check(last_error() == "", "persistence path")

    argv = (ctypes.c_char_p * 2)(b"reference_app.py", None)
    lib.logos_core_init(1, argv)
    lib.logos_core_add_modules_dir(modules.encode())
    check(last_error() == "", "add_modules_dir")
    lib.logos_core_start()
    check(last_error() == "", "start")

    check(sorted(names(lib.logos_core_get_known_modules())) ==
          ["calc", "chat", "greeter", "probe", "relay"], "known")
    check(lib.logos_core_load_module(b"greeter", False) == 0, "greeter without dependencies")
    check(last_error().startswith("not_loaded: greeter needs calc, chat"), "missing deps")
    check(lib.logos_core_load_module(b"greeter", True) == 1, "greeter")
    check(lib.logos_core_load_module(b"greeter", True) == 1, "already loaded is success")
    check(names(lib.logos_core_get_loaded_modules()) == ["calc", "chat", "greeter"], "loaded")
    check(names(lib.logos_core_get_module_dependencies(b"greeter", True)) == ["calc", "chat"],
          "dependencies")
    check(names(lib.logos_core_get_module_dependents(b"chat", False)) == ["greeter"],
          "dependents")
    check(names(lib.logos_core_get_module_dependencies(b"ghost", False)) == [], "unknown")
    check(last_error().startswith("unknown_module: "), "unknown's error")

    info = {m["name"]: m for m in json.loads(text(lib.logos_core_get_modules_info()))}
    check(sorted(info) == ["calc", "chat", "greeter", "probe", "relay"], f"info {sorted(info)}")
    g = info["greeter"]
    check(set(g) >= {"name", "path", "loaded", "loaded_at", "dependencies", "dependents",
                     "metadata"}, f"greeter's fields {sorted(g)}")
    check(g["loaded"] is True and g["dependencies"] == ["calc", "chat"] and g["dependents"] == [],
          f"greeter {g}")
    check(abs(g["loaded_at"] - time.time()) < 120, f"loaded_at {g['loaded_at']}")
    check(g["metadata"]["name"] == "greeter" and g["metadata"]["dependencies"] ==
          {"calc": "^1", "chat": "^1"}, f"metadata {g['metadata']}")
    check(os.path.isfile(g["path"]), f"path {g['path']}")
    check(info["probe"]["loaded"] is False and info["probe"]["loaded_at"] == 0, "probe row")
    check(info["calc"]["dependents"] == ["greeter"], "calc's dependents")

    stats = {m["name"]: m for m in json.loads(text(lib.logos_core_get_module_stats()))}
    check(sorted(stats) == ["calc", "chat", "greeter"], f"stats {sorted(stats)}")
    for name, st in stats.items():
        check(st["memory_mb"] > 0 and st["cpu_percent"] >= 0 and st["cpu_time_seconds"] >= 0,
              f"stats of {name}: {st}")
        print(f"pid {name} {st['pid']}", flush=True)

    # chat may be called by probe only: greeter (which depends on chat) is refused.
    check(call("greeter", "greet", ["ada"]) is None and
          "greeter may not call chat" in last_error(), "greeter.greet")
    check(call("greeter", "sum", [2, 3]) == 5, "greeter.sum (calc is unrestricted)")
    check(lib.logos_core_load_module(b"probe", False) == 1, "probe")
    print(f"pid probe {call('probe', 'pid', [])}", flush=True)
    check(set(call("probe", "requestToken", ["chat"])) == {"$bytes"}, "probe may call chat")

    check(lib.logos_core_unload_module(b"chat", False) == 0, "chat under greeter")
    check(lib.logos_core_unload_module(b"chat", True) == 1, "chat and greeter")
    check(names(lib.logos_core_get_loaded_modules()) == ["calc", "probe"], "after cascade")

    # A module installed while the core runs, then removed.
    shutil.move(os.path.join(later, "kv"), os.path.join(modules, "kv"))
    lib.logos_core_refresh_modules()
    check(last_error() == "", "refresh")
    check("kv" in names(lib.logos_core_get_known_modules()), "kv known")
    check(lib.logos_core_load_module(b"kv", True) == 1, "kv")
    print(f"pid kv {call('core', 'moduleInfo', ['kv'])['pid']}", flush=True)
    shutil.move(os.path.join(modules, "kv"), os.path.join(later, "kv"))
    lib.logos_core_refresh_modules()
    check("kv" in names(lib.logos_core_get_known_modules()), "loaded kv stays known")
    check(lib.logos_core_unload_module(b"kv", False) == 1, "unload kv")
    lib.logos_core_refresh_modules()
    check("kv" not in names(lib.logos_core_get_known_modules()), "kv forgotten")

    name = lib.logos_core_process_module(os.path.join(later, "kv").encode())
    check(text(name) == "kv", "process_module")
    token = text(lib.logos_core_get_token(b"client"))
    check(len(token) == 64, "client token")

    lib.logos_core_cleanup()
    check(not lib.logos_core_get_loaded_modules(), "after cleanup")
    check(last_error().startswith("unavailable: "), "code after cleanup")
    print("PASS")


if __name__ == "__main__":
    main()
