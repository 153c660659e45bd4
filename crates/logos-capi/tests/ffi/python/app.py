"""The RFC's application sequence from Python, with nothing but ctypes.

Usage: python3 app.py LIBLOGOS_CORE_SO MODULES_DIR

Sets the plugins dir, starts the core, loads chat, calls chat.send asynchronously with a Python
callback, receives the chatMessage event through logos_core_process_events(), makes a
synchronous call, unloads chat and cleans up. Prints "pid <module> <pid>" for each module
process and "PASS" at the end; exits 1 with a message on the first failed check.
"""

import ctypes
import json
import os
import sys
import threading
import time

AsyncCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def load(path):
    lib = ctypes.CDLL(path)
    sigs = {
        "logos_core_initialize": (ctypes.c_int, []),
        "logos_core_set_plugins_dir": (ctypes.c_int, [ctypes.c_char_p]),
        "logos_core_start": (ctypes.c_int, []),
        "logos_core_cleanup": (None, []),
        # Owned results come back as raw pointers so that we can free them.
        "logos_core_get_loaded_plugins": (ctypes.POINTER(ctypes.c_char_p), []),
        "logos_core_get_known_plugins": (ctypes.POINTER(ctypes.c_char_p), []),
        "logos_core_load_plugin": (ctypes.c_int, [ctypes.c_char_p]),
        "logos_core_unload_plugin": (ctypes.c_int, [ctypes.c_char_p]),
        "logos_core_call_plugin_method_async": (
            ctypes.c_int,
            [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, AsyncCallback, ctypes.c_void_p],
        ),
        "logos_core_call_plugin_method": (
            ctypes.c_void_p,
            [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int],
        ),
        "logos_core_register_event_listener": (
            ctypes.c_int,
            [ctypes.c_char_p, ctypes.c_char_p, AsyncCallback, ctypes.c_void_p],
        ),
        "logos_core_process_events": (ctypes.c_int, []),
        "logos_core_last_error": (ctypes.c_char_p, []),
        "logos_core_free_string": (None, [ctypes.c_void_p]),
        "logos_core_free_list": (None, [ctypes.POINTER(ctypes.c_char_p)]),
    }
    for name, (restype, argtypes) in sigs.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
    return lib


def main():
    lib_path, modules = sys.argv[1], sys.argv[2]
    lib = load(lib_path)

    def check(cond, what):
        if not cond:
            err = lib.logos_core_last_error().decode()
            print(f"FAIL: {what} (last error: {err})", file=sys.stderr)
            sys.exit(1)

    def names(listing):
        check(bool(listing), "a list came back NULL")
        out, i = [], 0
        while listing[i] is not None:
            out.append(listing[i].decode())
            i += 1
        lib.logos_core_free_list(listing)
        return out

    def call(plugin, method, params):
        p = lib.logos_core_call_plugin_method(
            plugin.encode(), method.encode(), json.dumps(params).encode(), 5000
        )
        check(p, f"{plugin}.{method}")
        text = ctypes.string_at(p).decode()
        lib.logos_core_free_string(p)
        return json.loads(text)

    def pump_until(cond):
        deadline = time.monotonic() + 10
        while not cond() and time.monotonic() < deadline:
            lib.logos_core_process_events()
            time.sleep(0.01)

    check(lib.logos_core_initialize() == 1, "initialize")
    check(lib.logos_core_set_plugins_dir(modules.encode()) == 1, "set_plugins_dir")
    check(lib.logos_core_start() == 1, "start")
    check("chat" in names(lib.logos_core_get_known_plugins()), "chat is known")
    check(lib.logos_core_load_plugin(b"chat") == 1, "load chat")
    check(names(lib.logos_core_get_loaded_plugins()) == ["chat"], "loaded")
    chat_pid = call("core", "moduleInfo", ["chat"])["pid"]
    print(f"pid chat {chat_pid}", flush=True)

    results, events = [], []
    thread = {"id": None}

    def on_result(result, message, _user_data):
        thread["id"] = os.getpid(), threading.get_ident()
        results.append((result, message.decode()))

    def on_event(result, message, _user_data):
        events.append((result, json.loads(message.decode())))

    # Keep the ctypes callbacks alive as long as the library may call them.
    result_cb, event_cb = AsyncCallback(on_result), AsyncCallback(on_event)

    check(lib.logos_core_register_event_listener(b"chat", b"chatMessage", event_cb, None) == 1,
          "listener")
    params = [
        {"name": "nick", "value": "guido", "type": "string"},
        {"name": "message", "value": "hello from Python", "type": "QString"},
    ]
    check(lib.logos_core_call_plugin_method_async(
        b"chat", b"send", json.dumps(params).encode(), result_cb, None) == 1, "call_async")
    # Once chat's history holds the message, send has run and chat has answered it (before
    # the history call that saw it), and still no callback has run.
    deadline = time.monotonic() + 10
    while not any(m["message"] == "hello from Python" for m in call("chat", "history", [])):
        check(time.monotonic() < deadline, "chat never got the message")
        time.sleep(0.01)
    check(not results and not events, "a callback ran outside process_events")
    pump_until(lambda: results and events)
    check(results == [(1, "null")], f"send result {results}")
    check(thread["id"] == (os.getpid(), threading.get_ident()),
          "the callback ran on another thread")
    check(len(events) == 1 and events[0][0] == 1, f"events {events}")
    event = events[0][1]
    check(event["event"] == "chatMessage" and event["data"][1:] == ["guido", "hello from Python"],
          f"event {event}")
    print("event", json.dumps(event))

    # Errors come back as "<code>: ...".
    results.clear()
    check(lib.logos_core_call_plugin_method_async(b"chat", b"nope", b"[]", result_cb, None) == 1,
          "call_async nope")
    pump_until(lambda: results)
    check(results and results[0][0] == 0 and results[0][1].startswith("unknown_method: "),
          f"unknown method {results}")
    results.clear()
    check(lib.logos_core_call_plugin_method_async(None, b"send", b"[]", result_cb, None) == 0,
          "NULL plugin accepted")
    pump_until(lambda: results)
    check(results and results[0][1].startswith("invalid_args: plugin_name is NULL"),
          f"NULL plugin {results}")

    history = call("chat", "history", [])
    check([m["message"] for m in history] == ["hello from Python"], f"history {history}")

    check(lib.logos_core_unload_plugin(b"chat") == 1, "unload chat")
    check(names(lib.logos_core_get_loaded_plugins()) == [], "still loaded")
    check(lib.logos_core_load_plugin(b"chat") == 1, "load chat again")
    chat_pid = call("core", "moduleInfo", ["chat"])["pid"]
    print(f"pid chat {chat_pid}", flush=True)
    lib.logos_core_cleanup()
    try:
        os.kill(chat_pid, 0)
        check(False, f"chat {chat_pid} outlived cleanup")
    except ProcessLookupError:
        pass
    check(lib.logos_core_load_plugin(b"chat") == 0, "load after cleanup")
    check(lib.logos_core_last_error().decode().startswith("unavailable: "), "code after cleanup")
    print("PASS")


if __name__ == "__main__":
    main()
