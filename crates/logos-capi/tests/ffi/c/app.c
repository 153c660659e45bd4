/*
 * The RFC's "C++ Applications" sequence, in C, against include/logos_core.h:
 * set the plugins dir, start, load chat, call a method, receive an event through
 * logos_core_process_events(), unload, cleanup; plus the synchronous call, exec/exit, tokens
 * and the checks that nothing is left behind.
 *
 * Usage: app MODULES_DIR
 * Prints "pid <module> <pid>" for each module process it saw and "PASS" at the end; exits 1
 * with a message on the first failed check.
 */
#include "logos_core.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, " (last error: %s)\n", logos_core_last_error());               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

struct outcome {
    int calls;
    int result;
    char message[8192];
};

static void on_result(int result, const char *message, void *user_data) {
    struct outcome *o = user_data;
    o->calls++;
    o->result = result;
    snprintf(o->message, sizeof o->message, "%s", message);
}

static void exit_with_seven(int result, const char *message, void *user_data) {
    on_result(result, message, user_data);
    logos_core_exit(7);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Pumps callbacks until *count reaches want or 10 s pass. */
static void pump_until(const int *count, int want) {
    long deadline = now_ms() + 10000;
    while (*count < want && now_ms() < deadline) {
        logos_core_process_events();
        usleep(10 * 1000);
    }
}

static int contains(char **list, const char *name) {
    for (char **p = list; p && *p; p++) {
        if (strcmp(*p, name) == 0) return 1;
    }
    return 0;
}

/* The pid of a loaded module, from core.moduleInfo. */
static long module_pid(const char *name) {
    char params[128];
    snprintf(params, sizeof params, "[\"%s\"]", name);
    char *info = logos_core_call_plugin_method("core", "moduleInfo", params, 5000);
    CHECK(info != NULL, "core.moduleInfo(%s)", name);
    const char *p = strstr(info, "\"pid\":");
    CHECK(p != NULL, "no pid in %s", info);
    long pid = strtol(p + 6, NULL, 10);
    logos_core_free_string(info);
    CHECK(pid > 0, "pid %ld", pid);
    printf("pid %s %ld\n", name, pid);
    fflush(stdout);
    return pid;
}

static int gone(long pid) {
    return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: app MODULES_DIR");
    const char *modules = argv[1];

    /* 1. Initialize and point the core at the modules. */
    CHECK(logos_core_init(argc, argv) == 1, "init");
    CHECK(logos_core_set_plugins_dir(modules) == 1, "set_plugins_dir(%s)", modules);

    /* 2. Start the core. */
    CHECK(logos_core_start() == 1, "start");
    char **known = logos_core_get_known_plugins();
    CHECK(known != NULL && contains(known, "chat") && contains(known, "calc"), "known plugins");
    logos_core_free_list(known);

    /* 3. Load chat. */
    CHECK(logos_core_load_plugin("chat") == 1, "load chat");
    char **loaded = logos_core_get_loaded_plugins();
    CHECK(loaded != NULL && contains(loaded, "chat") && !contains(loaded, "calc"), "loaded");
    logos_core_free_list(loaded);
    long chat_pid = module_pid("chat");

    /* 4. Listen to chatMessage and call chat.send in the RFC's {name,value,type} form. */
    struct outcome event = {0}, sent = {0};
    CHECK(logos_core_register_event_listener("chat", "chatMessage", on_result, &event) == 1,
          "listener");
    CHECK(logos_core_call_plugin_method_async(
              "chat", "send",
              "[{\"name\":\"nick\",\"value\":\"ada\",\"type\":\"QString\"},"
              "{\"name\":\"message\",\"value\":\"hello from C\",\"type\":\"string\"}]",
              on_result, &sent) == 1,
          "call_async");
    /* Callbacks wait for process_events: nothing arrives on its own. Once chat's history holds
       the message, send has run and chat has answered it (before the history call that saw
       it), and still no callback has run. */
    long deadline = now_ms() + 10000;
    for (;;) {
        char *history = logos_core_call_plugin_method("chat", "history", "[]", 10000);
        int sent_there = history != NULL && strstr(history, "\"hello from C\"") != NULL;
        logos_core_free_string(history);
        if (sent_there) break;
        CHECK(now_ms() < deadline, "chat never got the message");
        usleep(10 * 1000);
    }
    CHECK(sent.calls == 0 && event.calls == 0, "a callback ran outside process_events");
    pump_until(&sent.calls, 1);
    pump_until(&event.calls, 1);
    CHECK(sent.calls == 1 && sent.result == 1 && strcmp(sent.message, "null") == 0,
          "send result %d %d %s", sent.calls, sent.result, sent.message);
    CHECK(event.calls == 1 && event.result == 1, "event %d %d", event.calls, event.result);
    CHECK(strstr(event.message, "\"event\":\"chatMessage\"") != NULL &&
              strstr(event.message, "\"data\":[") != NULL &&
              strstr(event.message, "\"hello from C\"") != NULL,
          "event message %s", event.message);
    printf("event %s\n", event.message);

    /* 5. Errors arrive as "<code>: ...". */
    struct outcome bad = {0};
    CHECK(logos_core_call_plugin_method_async("chat", "nope", "[]", on_result, &bad) == 1,
          "call_async nope");
    pump_until(&bad.calls, 1);
    CHECK(bad.calls == 1 && bad.result == 0 && strncmp(bad.message, "unknown_method: ", 16) == 0,
          "unknown method: %s", bad.message);

    /* 6. The synchronous call. */
    char *history = logos_core_call_plugin_method("chat", "history", "[10]", 5000);
    CHECK(history != NULL && strstr(history, "\"hello from C\"") != NULL, "history %s",
          history ? history : "(null)");
    logos_core_free_string(history);
    CHECK(logos_core_call_plugin_method("chat", "history", "[\"x\"]", 5000) == NULL, "bad args");
    CHECK(strncmp(logos_core_last_error(), "invalid_args: ", 14) == 0, "code of bad args");

    /* 7. exec delivers callbacks and returns the code given to logos_core_exit. */
    struct outcome via_exec = {0};
    CHECK(logos_core_call_plugin_method_async("chat", "history", "[1]", exit_with_seven,
                                              &via_exec) == 1,
          "call_async history");
    CHECK(logos_core_exec() == 7, "exec");
    CHECK(via_exec.calls == 1 && via_exec.result == 1, "exec delivered %d", via_exec.calls);

    /* 8. Tokens: the client token, never a module's. */
    char *token = logos_core_get_token("client");
    CHECK(token != NULL && strlen(token) == 64, "client token");
    logos_core_free_string(token);
    CHECK(logos_core_get_token("chat") == NULL, "module token handed out");
    CHECK(strncmp(logos_core_last_error(), "unauthorized: ", 14) == 0, "module token code");
    char *dir = logos_core_get_runtime_dir();
    CHECK(dir != NULL && access(dir, F_OK) == 0, "runtime dir");
    char runtime_dir[4096];
    snprintf(runtime_dir, sizeof runtime_dir, "%s", dir);
    logos_core_free_string(dir);

    /* 9. Unload chat: its process ends. */
    CHECK(logos_core_unload_plugin("chat") == 1, "unload chat");
    loaded = logos_core_get_loaded_plugins();
    CHECK(loaded != NULL && !contains(loaded, "chat"), "chat still loaded");
    logos_core_free_list(loaded);
    CHECK(gone(chat_pid), "chat process %ld outlived unload", chat_pid);

    /* 10. Cleanup stops what is still loaded and removes the runtime dir. */
    CHECK(logos_core_load_plugin("calc") == 1, "load calc");
    long calc_pid = module_pid("calc");
    logos_core_cleanup();
    CHECK(gone(calc_pid), "calc process %ld outlived cleanup", calc_pid);
    CHECK(access(runtime_dir, F_OK) != 0, "runtime dir %s left behind", runtime_dir);

    /* 11. After cleanup, calls fail cleanly. */
    CHECK(logos_core_load_plugin("chat") == 0, "load after cleanup");
    CHECK(strncmp(logos_core_last_error(), "unavailable: ", 13) == 0, "code after cleanup");
    CHECK(logos_core_get_loaded_plugins() == NULL, "list after cleanup");
    logos_core_process_events();

    printf("PASS\n");
    return 0;
}
