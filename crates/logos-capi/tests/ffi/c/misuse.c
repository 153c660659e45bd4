/*
 * Everything an application can do wrong, and the API's answers: calls before start and after
 * cleanup, NULL and invalid UTF-8 arguments, bad params_json, conversions of the RFC's
 * {name,value,type} arguments, deadlines, cleanup under a call in flight, repeated
 * initialize/cleanup cycles, many threads at once, and event floods that outrun the
 * application (reported to the listener as "lagged: N events ...").
 *
 * Usage: misuse MODULES_DIR   (modules calc, chat, greeter and probe)
 * Prints "pid <module> <pid>" for module processes, "PASS" at the end; exits 1 on the first
 * failed check.
 */
#include "logos_core.h"

#include <errno.h>
#include <pthread.h>
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

#define STARTS(s, prefix) (strncmp((s), (prefix), strlen(prefix)) == 0)
#define LAST_IS(prefix) STARTS(logos_core_last_error(), prefix)

static const char *modules;

struct outcome {
    pthread_mutex_t lock;
    int calls;
    int ok;
    int failed;
    int limits;
    long dropped;
    char message[4096];
};

#define OUTCOME_INIT {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, {0}}

static void on_result(int result, const char *message, void *user_data) {
    struct outcome *o = user_data;
    pthread_mutex_lock(&o->lock);
    o->calls++;
    if (result == 1) o->ok++; else o->failed++;
    if (result == 0 && STARTS(message, "lagged: ")) {
        o->limits++;
        o->dropped += strtol(message + strlen("lagged: "), NULL, 10);
    }
    snprintf(o->message, sizeof o->message, "%s", message);
    pthread_mutex_unlock(&o->lock);
}

static int calls_of(struct outcome *o) {
    pthread_mutex_lock(&o->lock);
    int n = o->calls;
    pthread_mutex_unlock(&o->lock);
    return n;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void pump_until(struct outcome *o, int want) {
    long deadline = now_ms() + 15000;
    while (calls_of(o) < want && now_ms() < deadline) {
        logos_core_process_events();
        usleep(5 * 1000);
    }
}

static char *call(const char *plugin, const char *method, const char *params) {
    return logos_core_call_plugin_method(plugin, method, params, 10000);
}

/* Waits (15 s at most) until `core.stats` shows a call in flight: the caller has exactly one
   running, so that one has reached its module. */
static void wait_for_a_call_in_flight(void) {
    long deadline = now_ms() + 15000;
    for (;;) {
        char *stats = call("core", "stats", "[]");
        int running = stats != NULL && strstr(stats, "\"inFlight\":1") != NULL;
        logos_core_free_string(stats);
        if (running) return;
        CHECK(now_ms() < deadline, "no call got in flight");
        usleep(5 * 1000);
    }
}

/* Waits (15 s at most) until `o` got its callback without delivering any here: the thread
   running logos_core_exec() delivered it, so exec is running. */
static void wait_for_exec_to_deliver(struct outcome *o) {
    long deadline = now_ms() + 15000;
    while (calls_of(o) < 1) {
        CHECK(now_ms() < deadline, "exec delivered nothing");
        usleep(2 * 1000);
    }
}

/* plugin.method(params) must return exactly `want` (JSON text). */
static void expect(const char *plugin, const char *method, const char *params, const char *want) {
    char *got = call(plugin, method, params);
    CHECK(got != NULL && strcmp(got, want) == 0, "%s.%s(%s) = %s, want %s", plugin, method, params,
          got ? got : "(null)", want);
    logos_core_free_string(got);
}

static void start_core(void) {
    CHECK(logos_core_initialize() == 1, "initialize");
    CHECK(logos_core_set_plugins_dir(modules) == 1, "set_plugins_dir");
    CHECK(logos_core_start() == 1, "start");
}

static void before_start(void) {
    CHECK(logos_core_load_plugin("calc") == 0, "load before start");
    CHECK(LAST_IS("unavailable: the core is not started"), "code before start");
    CHECK(logos_core_unload_plugin("calc") == 0, "unload before start");
    CHECK(logos_core_get_loaded_plugins() == NULL, "loaded before start");
    CHECK(logos_core_get_known_plugins() == NULL, "known before start");
    CHECK(logos_core_process_plugin(modules) == NULL, "process_plugin before start");
    CHECK(logos_core_get_token("client") == NULL, "token before start");
    CHECK(logos_core_get_runtime_dir() == NULL, "runtime dir before start");
    CHECK(call("calc", "add", "[1,2]") == NULL, "sync call before start");
    CHECK(logos_core_exec() == -1, "exec before start");
    CHECK(LAST_IS("unavailable: "), "exec code");

    struct outcome o = OUTCOME_INIT;
    CHECK(logos_core_call_plugin_method_async("calc", "add", "[1,2]", on_result, &o) == 0,
          "async call before start");
    CHECK(logos_core_register_event_listener("calc", "x", on_result, &o) == 0, "listen");
    CHECK(logos_core_load_plugin_async("calc", on_result, &o) == 0, "load_async");
    CHECK(o.calls == 0, "callback outside process_events");
    CHECK(logos_core_process_events() == 3, "three failure callbacks");
    CHECK(o.calls == 3 && o.failed == 3 && STARTS(o.message, "unavailable: "), "failures %d %s",
          o.calls, o.message);
    /* The last error is per call: a success clears it. */
    CHECK(logos_core_initialize() == 1 && logos_core_last_error()[0] == '\0', "cleared");
    logos_core_cleanup();
    logos_core_cleanup();
}

static void null_and_utf8(void) {
    const char *bad = "ca\xff\xfelc";
    CHECK(logos_core_set_plugins_dir(NULL) == 0, "NULL dir");
    CHECK(LAST_IS("invalid_args: plugins_dir is NULL"), "NULL dir code");
    CHECK(logos_core_add_plugins_dir(NULL) == 0, "NULL add dir");
    CHECK(logos_core_set_host_binary(NULL) == 0, "NULL host");
    CHECK(logos_core_set_plugins_dir(bad) == 0, "bad utf8 dir");
    CHECK(LAST_IS("invalid_args: plugins_dir is not valid UTF-8 (bad byte at offset 2)"), "utf8");
    CHECK(logos_core_set_plugins_dir("/nonexistent/logos") == 0, "missing dir");
    CHECK(logos_core_set_host_binary("/nonexistent/logos_host") == 0, "missing host");
    CHECK(logos_core_init(-1, NULL) == 1, "init(-1, NULL)");

    start_core();
    CHECK(logos_core_set_plugins_dir(modules) == 0, "set dir after start");
    CHECK(LAST_IS("invalid_args: logos_core_set_plugins_dir must be called before"), "code");
    CHECK(logos_core_load_plugin(NULL) == 0 && LAST_IS("invalid_args: plugin_name is NULL"), "-");
    CHECK(logos_core_load_plugin(bad) == 0 && LAST_IS("invalid_args: plugin_name is not valid"),
          "utf8 name");
    CHECK(logos_core_unload_plugin(NULL) == 0, "unload NULL");
    CHECK(logos_core_process_plugin(NULL) == NULL, "process NULL");
    CHECK(logos_core_get_token(NULL) == NULL, "token NULL");
    CHECK(logos_core_get_token(bad) == NULL, "token utf8");
    CHECK(call(NULL, "add", "[]") == NULL && LAST_IS("invalid_args: plugin_name is NULL"), "-");
    CHECK(call("calc", NULL, "[]") == NULL && LAST_IS("invalid_args: method_name is NULL"), "-");
    CHECK(call("calc", "add", NULL) == NULL && LAST_IS("invalid_args: params_json is NULL"), "-");
    CHECK(call("calc", "add", bad) == NULL && LAST_IS("invalid_args: params_json is not"), "-");
    CHECK(call("calc", "add", "{") == NULL && LAST_IS("invalid_args: invalid params_json: not"),
          "bad json");
    CHECK(call("calc", "add", "\"x\"") == NULL, "not an array");
    CHECK(logos_core_load_plugin("nosuchmodule") == 0 && LAST_IS("unknown_module: "), "unknown");
    CHECK(logos_core_unload_plugin("calc") == 0 && LAST_IS("not_loaded: "), "unload not loaded");
    /* A token for a name that is no module: an error, not a hang. */
    CHECK(logos_core_get_token("nosuchmodule") == NULL && LAST_IS("unknown_module: "), "token");

    /* The reference names: the same answers to the same mistakes. */
    CHECK(logos_core_load_module(NULL, true) == 0 && LAST_IS("invalid_args: module_name is NULL"),
          "load_module NULL");
    CHECK(logos_core_load_module(bad, false) == 0 && LAST_IS("invalid_args: module_name is not"),
          "load_module utf8");
    CHECK(logos_core_unload_module(NULL, true) == 0, "unload_module NULL");
    CHECK(logos_core_get_module_dependencies(NULL, true) == NULL, "dependencies NULL");
    CHECK(logos_core_get_module_dependents(bad, false) == NULL, "dependents utf8");
    CHECK(logos_core_process_module(NULL) == NULL, "process_module NULL");
    logos_core_add_modules_dir(NULL);
    CHECK(LAST_IS("invalid_args: modules_dir is NULL"), "add_modules_dir NULL");
    logos_core_add_modules_dir(bad);
    CHECK(LAST_IS("invalid_args: modules_dir is not valid UTF-8"), "add_modules_dir utf8");
    logos_core_set_persistence_base_path(NULL);
    CHECK(LAST_IS("invalid_args: path is NULL"), "persistence NULL");
    logos_core_set_module_transports(bad, "[]");
    CHECK(LAST_IS("invalid_args: module_name is not valid UTF-8"), "transports utf8");
    logos_core_set_module_transports("Not A Name", "[]");
    CHECK(LAST_IS("invalid_args: "), "transports for a bad name");
    logos_core_set_module_transports("calc", bad);
    CHECK(LAST_IS("invalid_args: transport_set_json is not valid UTF-8"), "transports set utf8");
    logos_core_set_access_policy(bad);
    CHECK(LAST_IS("invalid_args: policy_json is not valid UTF-8"), "policy utf8");
    logos_core_set_access_policy("{\"mode\":\"enforce\"}");
    CHECK(LAST_IS("invalid_args: logos_core_set_access_policy must be called before"),
          "policy after start");
    logos_core_refresh_modules();
    CHECK(logos_core_last_error()[0] == '\0', "refresh: %s", logos_core_last_error());

    struct outcome o = OUTCOME_INIT;
    CHECK(logos_core_call_plugin_method_async(NULL, "m", "[]", on_result, &o) == 0, "async NULL");
    CHECK(logos_core_call_plugin_method_async("calc", bad, "[]", on_result, &o) == 0, "async utf8");
    CHECK(logos_core_call_plugin_method_async("calc", "add", "[", on_result, &o) == 0, "json");
    CHECK(logos_core_register_event_listener(NULL, "e", on_result, &o) == 0, "listen NULL");
    CHECK(logos_core_register_event_listener("calc", bad, on_result, &o) == 0, "listen utf8");
    CHECK(logos_core_register_event_listener("nosuch", "e", on_result, &o) == 0, "listen unknown");
    CHECK(logos_core_load_plugin_async(NULL, on_result, &o) == 0, "load_async NULL");
    /* NULL callbacks: refused or fire-and-forget, never a crash. */
    CHECK(logos_core_register_event_listener("calc", "e", NULL, NULL) == 0, "listen NULL cb");
    CHECK(LAST_IS("invalid_args: callback is NULL"), "NULL cb code");
    CHECK(logos_core_call_plugin_method_async(NULL, NULL, NULL, NULL, NULL) == 0, "all NULL");
    pump_until(&o, 7);
    CHECK(o.calls == 7 && o.failed == 7, "7 failures, got %d/%d", o.calls, o.failed);
    CHECK(logos_core_process_events() == 0, "nothing more");

    logos_core_free_string(NULL);
    logos_core_free_list(NULL);
    logos_core_free(NULL);
    logos_core_cleanup();
}

static void arguments_and_results(void) {
    start_core();
    CHECK(logos_core_load_plugin("calc") == 1 && logos_core_load_plugin("probe") == 1, "load");
    expect("calc", "add", "[2, 3]", "5");
    expect("calc", "add",
           "[{\"name\":\"a\",\"value\":\"2\",\"type\":\"int\"},"
           "{\"name\":\"b\",\"value\":40,\"type\":\"qint64\"}]",
           "42");
    expect("probe", "echo", "[{\"name\":\"v\",\"value\":\"2.5\",\"type\":\"qreal\"}]", "2.5");
    expect("probe", "echo", "[{\"name\":\"v\",\"value\":\"true\",\"type\":\"bool\"}]", "true");
    expect("probe", "echo", "[{\"name\":\"v\",\"value\":\"x\",\"type\":\"QString\"}]", "\"x\"");
    expect("probe", "echo", "[{\"a\":[1,null]}]", "{\"a\":[1,null]}");
    CHECK(call("probe", "echo", "[{\"name\":\"v\",\"value\":7,\"type\":\"QString\"}]") == NULL,
          "7 as a string");
    CHECK(LAST_IS("invalid_args: invalid params_json: element 0: value 7 is not a string"), "-");
    CHECK(call("calc", "add", "[{\"name\":\"a\",\"value\":\"two\",\"type\":\"int\"}, 1]") == NULL,
          "two as int");
    CHECK(call("calc", "div", "[1, 0]") == NULL && LAST_IS("method_failed: "), "div by zero");
    CHECK(call("calc", "nope", "[]") == NULL && LAST_IS("unknown_method: "), "unknown method");
    CHECK(call("calc", "add", "[1]") == NULL && LAST_IS("invalid_args: "), "missing argument");

    /* A deadline of our own. */
    long t0 = now_ms();
    CHECK(logos_core_call_plugin_method("probe", "sleep", "[3000]", 200) == NULL, "deadline");
    CHECK(LAST_IS("timeout: probe.sleep did not answer within 200 ms"), "timeout code");
    CHECK(now_ms() - t0 < 2000, "the deadline took %ld ms", now_ms() - t0);

    /* Registering by path: the module's dir, its metadata.json or its library file. */
    char path[4096];
    snprintf(path, sizeof path, "%s/chat/libchat.so", modules);
    char *name = logos_core_process_plugin(path);
    CHECK(name != NULL && strcmp(name, "chat") == 0, "process_plugin(%s)", path);
    logos_core_free_string(name);
    snprintf(path, sizeof path, "%s/calc/libcalc.so", modules);
    name = logos_core_process_plugin(path);
    CHECK(name == NULL && LAST_IS("invalid_args: module calc is loaded"), "calc is loaded");
    logos_core_free_string(name);
    CHECK(logos_core_add_plugins_dir(modules) == 1, "add_plugins_dir after start");

    /* Cleanup under a call in flight: its callback still comes, exactly once. */
    struct outcome o = OUTCOME_INIT;
    CHECK(logos_core_call_plugin_method_async("probe", "sleep", "[5000]", on_result, &o) == 1,
          "sleep");
    wait_for_a_call_in_flight();
    t0 = now_ms();
    logos_core_cleanup();
    CHECK(now_ms() - t0 < 8000, "cleanup took %ld ms", now_ms() - t0);
    pump_until(&o, 1);
    /* Cleanup has returned, so the core's tasks are gone: anything they were to deliver is
       queued by now, and a second callback would come out here. */
    logos_core_process_events();
    /* The module finishes in-flight calls within its stop grace, or the call fails. */
    CHECK(o.calls == 1 && ((o.ok == 1 && strcmp(o.message, "5000") == 0) ||
                           (o.failed == 1 && STARTS(o.message, "unavailable: "))),
          "%d %s", o.calls, o.message);
}

static void *run_exec(void *arg) {
    *(int *)arg = logos_core_exec();
    return NULL;
}

static int gone(long pid) {
    return pid > 1 && kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

static long module_pid(const char *name) {
    char params[128];
    snprintf(params, sizeof params, "[\"%s\"]", name);
    char *info = call("core", "moduleInfo", params);
    CHECK(info != NULL, "moduleInfo");
    const char *p = strstr(info, "\"pid\":");
    CHECK(p != NULL, "pid in %s", info);
    long pid = strtol(p + 6, NULL, 10);
    logos_core_free_string(info);
    CHECK(pid > 1, "pid %ld", pid);
    printf("pid %s %ld\n", name, pid);
    fflush(stdout);
    return pid;
}

/* initialize -> start -> use -> cleanup, three times; cleanup also ends an exec running in
   another thread. */
static void cycles(void) {
    for (int i = 0; i < 3; i++) {
        start_core();
        CHECK(logos_core_load_plugin("calc") == 1, "load in cycle %d", i);
        expect("calc", "mul", "[6, 7]", "42");
        long pid = module_pid("calc");
        int exec_result = -2;
        struct outcome running = OUTCOME_INIT;
        CHECK(logos_core_call_plugin_method_async("calc", "add", "[1, 1]", on_result, &running) ==
                  1,
              "a call for exec to deliver");
        pthread_t t;
        CHECK(pthread_create(&t, NULL, run_exec, &exec_result) == 0, "thread");
        wait_for_exec_to_deliver(&running);
        logos_core_cleanup();
        pthread_join(t, NULL);
        CHECK(exec_result == 0, "exec returned %d after cleanup", exec_result);
        CHECK(gone(pid), "calc %ld outlived cleanup in cycle %d", pid, i);
        CHECK(logos_core_load_plugin("calc") == 0, "after cleanup");
    }
}

struct worker {
    int id;
    int ok;
    int failed;
    int bad_code;
    int until_failure;
    struct outcome async;
};

static void *sync_worker(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < 50 || w->until_failure; i++) {
        char params[64], want[64];
        snprintf(params, sizeof params, "[%d, %d]", i, w->id);
        snprintf(want, sizeof want, "%d", i + w->id);
        char *got = call("calc", "add", params);
        if (got != NULL && strcmp(got, want) == 0) {
            __atomic_add_fetch(&w->ok, 1, __ATOMIC_SEQ_CST);
        } else if (got == NULL) {
            w->failed++;
            if (!LAST_IS("unavailable: ")) {
                w->bad_code++;
                fprintf(stderr, "worker %d: %s\n", w->id, logos_core_last_error());
            }
            if (w->until_failure) break;
        } else {
            w->bad_code++;
        }
        logos_core_free_string(got);
        char **l = logos_core_get_loaded_plugins();
        logos_core_free_list(l);
    }
    return NULL;
}

static void *async_worker(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < 50; i++) {
        if (logos_core_call_plugin_method_async("calc", "add", "[1, 1]", on_result, &w->async) != 1)
            w->failed++;
    }
    long deadline = now_ms() + 15000;
    while (calls_of(&w->async) < 50 && now_ms() < deadline) {
        logos_core_process_events();
        usleep(2000);
    }
    return NULL;
}

static void *error_worker(void *arg) {
    int *ok = arg;
    /* A fresh thread has no last error; its own failure does not touch other threads'. */
    *ok = logos_core_last_error()[0] == '\0';
    *ok = *ok && logos_core_get_token(NULL) == NULL && LAST_IS("invalid_args: key is NULL");
    return NULL;
}

static void threads(void) {
    start_core();
    CHECK(logos_core_load_plugin("calc") == 1, "load calc");
    struct worker w[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        memset(&w[i], 0, sizeof w[i]);
        pthread_mutex_init(&w[i].async.lock, NULL);
        w[i].id = i;
        CHECK(pthread_create(&t[i], NULL, i < 4 ? sync_worker : async_worker, &w[i]) == 0, "-");
    }
    for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        CHECK(w[i].ok == 50 && w[i].bad_code == 0, "worker %d: %d ok", i, w[i].ok);
    for (int i = 4; i < 6; i++)
        CHECK(w[i].async.ok == 50 && strcmp(w[i].async.message, "2") == 0, "async %d: %d", i,
              w[i].async.ok);

    CHECK(logos_core_load_plugin(NULL) == 0, "set an error on this thread");
    int ok = 0;
    pthread_t e;
    pthread_create(&e, NULL, error_worker, &ok);
    pthread_join(e, NULL);
    CHECK(ok, "last error is per thread");
    CHECK(LAST_IS("invalid_args: plugin_name is NULL"), "this thread's error changed");

    /* Cleanup while four threads call: every call succeeds or fails with unavailable. */
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].until_failure = 1;
        pthread_create(&t[i], NULL, sync_worker, &w[i]);
    }
    /* Cleanup only once every worker's calls are going through. */
    long deadline = now_ms() + 15000;
    for (int i = 0; i < 4; i++) {
        while (__atomic_load_n(&w[i].ok, __ATOMIC_SEQ_CST) == 0) {
            CHECK(now_ms() < deadline, "worker %d made no call", i);
            usleep(2 * 1000);
        }
    }
    logos_core_cleanup();
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].failed == 1 && w[i].bad_code == 0,
              "worker %d under cleanup: %d ok %d failed %d bad", i, w[i].ok, w[i].failed,
              w[i].bad_code);
    }
}

static int contains(char **list, const char *name) {
    for (char **p = list; p && *p; p++)
        if (strcmp(*p, name) == 0) return 1;
    return 0;
}

static void *stop_from_outside(void *arg) {
    /* Once exec runs (it delivered this callback)... */
    wait_for_exec_to_deliver(arg);
    /* ...what `logoscore stop` does over the control socket. */
    logos_core_free_string(call("core", "shutdown", "[]"));
    return NULL;
}

/* Dependents block a plain unload; the _with_dependents variant unloads them first. A core
   stopped from outside ends exec. */
static void dependents_and_external_stop(void) {
    start_core();
    CHECK(logos_core_load_plugin_with_dependencies("greeter") == 1, "load greeter");
    char **loaded = logos_core_get_loaded_plugins();
    CHECK(contains(loaded, "greeter") && contains(loaded, "calc") && contains(loaded, "chat"),
          "greeter and its dependencies");
    logos_core_free_list(loaded);
    CHECK(logos_core_unload_plugin("calc") == 0, "unload calc under greeter");
    CHECK(LAST_IS("method_failed: cannot unload calc: loaded modules depend on it (greeter)"),
          "dependents code");
    CHECK(logos_core_unload_plugin_with_dependents("calc") == 1, "cascade");
    loaded = logos_core_get_loaded_plugins();
    CHECK(!contains(loaded, "greeter") && !contains(loaded, "calc") && contains(loaded, "chat"),
          "after cascade");
    logos_core_free_list(loaded);

    struct outcome running = OUTCOME_INIT;
    CHECK(logos_core_call_plugin_method_async("calc", "add", "[1, 1]", on_result, &running) == 1,
          "a call for exec to deliver");
    pthread_t t;
    pthread_create(&t, NULL, stop_from_outside, &running);
    long t0 = now_ms();
    CHECK(logos_core_exec() == 0, "exec after an external stop");
    pthread_join(t, NULL);
    CHECK(now_ms() - t0 < 10000, "exec returned after %ld ms", now_ms() - t0);
    CHECK(logos_core_load_plugin("calc") == 0 && LAST_IS("unavailable: "), "stopped core");
    CHECK(logos_core_exec() == 0, "exec on a stopped core returns at once");
    logos_core_cleanup();
}

/* An event flood the application does not drain in time: bounded, and reported as "lagged:". */
static void flood(void) {
    start_core();
    CHECK(logos_core_load_plugin("probe") == 1, "load probe");
    struct outcome o = OUTCOME_INIT;
    CHECK(logos_core_register_event_listener("probe", "", on_result, &o) == 1, "listen to all");
    /* In batches the module's own connection keeps up with: 12000 events reach the core. */
    for (int i = 0; i < 12; i++) {
        char *n = call("probe", "flood", "[1000]");
        CHECK(n != NULL && strcmp(n, "1000") == 0, "flood");
        logos_core_free_string(n);
        usleep(100 * 1000);
    }
    usleep(500 * 1000);
    int last = -1;
    while (calls_of(&o) != last) {
        last = calls_of(&o);
        for (int i = 0; i < 50; i++) {
            logos_core_process_events();
            usleep(2000);
        }
    }
    int delivered = o.ok;
    CHECK(delivered >= 4096 && delivered < 12000, "events delivered: %d", delivered);
    CHECK(o.limits == 0, "a limit notice before anything got through again");
    /* The loss is reported just before the next event that gets through. */
    char *n = call("probe", "flood", "[1]");
    logos_core_free_string(n);
    pump_until(&o, last + 2);
    printf("flood: %d events, then %d lagged notice(s) for %ld\n", delivered, o.limits, o.dropped);
    CHECK(o.limits == 1 && o.ok == delivered + 1, "%d limit notices, %d events", o.limits, o.ok);
    CHECK(delivered + o.dropped == 12000, "%d delivered + %ld reported dropped", delivered,
          o.dropped);
    CHECK(strcmp(o.message, "{\"event\":\"tick\",\"data\":[0]}") == 0, "last %s", o.message);
    logos_core_cleanup();
}

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: misuse MODULES_DIR");
    modules = argv[1];
    before_start();
    null_and_utf8();
    arguments_and_results();
    cycles();
    threads();
    dependents_and_external_stop();
    flood();
    printf("PASS\n");
    return 0;
}
