/*
 * Event listeners at the edges of their life (issue 10, items 8 and 12):
 *
 * - after_cleanup: events queued for a listener when logos_core_cleanup() runs are dropped
 *   with it; no listener callback runs after cleanup (its user_data may be gone), while the
 *   callback of a call that cleanup interrupted still arrives, exactly once.
 * - byte_budget: an application that does not call logos_core_process_events() while large
 *   events arrive holds at most the byte budget of them (16 MiB); the rest are dropped and the
 *   listener gets one "lagged: N events of SOURCE.EVENT were dropped ..." callback (result 0)
 *   just before the next event that gets through.
 *
 * Usage: listeners MODULES_DIR   (modules chat and probe)
 * Prints "pid <module> <pid>" for module processes, "PASS" at the end; exits 1 on the first
 * failed check.
 */
#include "logos_core.h"

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

/* The budget the library documents for events waiting for delivery, per core. */
#define EVENT_BYTES (16L * 1024 * 1024)
/* Each large message: 1 MiB of text. */
#define BIG (1024L * 1024)
#define BIG_SENDS 40

static const char *modules;

/* What one listener saw. `alive` is cleared when the application "frees" it. */
struct seen {
    int alive;
    int events;
    int failures;
    int lagged;
    long lagged_events;
    long event_bytes;
    int after_free;
    char last[256];
};

static void on_event(int result, const char *message, void *user_data) {
    struct seen *s = user_data;
    if (!s->alive) {
        /* Would be a use after free in a real application. */
        s->after_free++;
        return;
    }
    if (result == 1) {
        s->events++;
        s->event_bytes += (long)strlen(message);
    } else if (STARTS(message, "lagged: ")) {
        s->lagged++;
        s->lagged_events += strtol(message + strlen("lagged: "), NULL, 10);
    } else {
        s->failures++;
    }
    snprintf(s->last, sizeof s->last, "%s", message);
}

struct reply {
    int calls;
    int result;
    char message[512];
};

static void on_reply(int result, const char *message, void *user_data) {
    struct reply *r = user_data;
    r->calls++;
    r->result = result;
    snprintf(r->message, sizeof r->message, "%s", message);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void start_core(void) {
    CHECK(logos_core_initialize() == 1, "initialize");
    CHECK(logos_core_set_plugins_dir(modules) == 1, "set_plugins_dir");
    CHECK(logos_core_start() == 1, "start");
}

static void module_pid(const char *name) {
    char params[128];
    snprintf(params, sizeof params, "[\"%s\"]", name);
    char *info = logos_core_call_plugin_method("core", "moduleInfo", params, 5000);
    CHECK(info != NULL, "core.moduleInfo(%s)", name);
    const char *p = strstr(info, "\"pid\":");
    CHECK(p != NULL, "no pid in %s", info);
    printf("pid %s %ld\n", name, strtol(p + 6, NULL, 10));
    fflush(stdout);
    logos_core_free_string(info);
}

/* chat.send(nick, message), synchronously. */
static void chat_send(const char *message) {
    size_t len = strlen(message) + 64;
    char *params = malloc(len);
    CHECK(params != NULL, "malloc");
    snprintf(params, len, "[\"ada\", \"%s\"]", message);
    char *r = logos_core_call_plugin_method("chat", "send", params, 30000);
    CHECK(r != NULL && strcmp(r, "null") == 0, "chat.send = %s", r ? r : "(null)");
    logos_core_free_string(r);
    free(params);
}

/* Events travel chat -> core -> the listener's queue on the library's threads, ahead of the
 * reply of the call that emitted them; one more call lets the last of them reach the queue
 * (or be dropped) before the application looks. */
static void let_events_arrive(void) {
    char *h = logos_core_call_plugin_method("chat", "history", "[1]", 10000);
    CHECK(h != NULL, "chat.history");
    logos_core_free_string(h);
}

static void after_cleanup(void) {
    start_core();
    CHECK(logos_core_load_plugin("chat") == 1 && logos_core_load_plugin("probe") == 1, "load");
    module_pid("chat");
    module_pid("probe");
    struct seen *s = calloc(1, sizeof *s);
    CHECK(s != NULL, "calloc");
    s->alive = 1;
    CHECK(logos_core_register_event_listener("chat", "chatMessage", on_event, s) == 1, "listen");
    for (int i = 0; i < 5; i++) chat_send("queued, never delivered");
    let_events_arrive();
    struct reply sleeping = {0, -1, {0}};
    CHECK(logos_core_call_plugin_method_async("probe", "sleep", "[30000]", on_reply, &sleeping) == 1,
          "call in flight");
    CHECK(s->events == 0, "an event was delivered outside process_events");
    logos_core_cleanup();
    /* The application frees what it gave the listener, as the header allows. */
    s->alive = 0;
    int delivered = 0;
    long deadline = now_ms() + 1000;
    while (now_ms() < deadline) {
        delivered += logos_core_process_events();
        usleep(10 * 1000);
    }
    printf("after cleanup: %d callbacks, %d to a freed listener\n", delivered, s->after_free);
    CHECK(s->after_free == 0, "%d listener callbacks ran after cleanup", s->after_free);
    CHECK(sleeping.calls == 1 && sleeping.result == 0 &&
              STARTS(sleeping.message, "unavailable: "),
          "the interrupted call got %d callbacks: %s", sleeping.calls, sleeping.message);
    CHECK(delivered == 1, "%d callbacks after cleanup, want only the interrupted call's", delivered);
    free(s);
}

static void byte_budget(void) {
    start_core();
    CHECK(logos_core_load_plugin("chat") == 1, "load chat");
    module_pid("chat");
    struct seen s = {1, 0, 0, 0, 0, 0, 0, {0}};
    CHECK(logos_core_register_event_listener("chat", "chatMessage", on_event, &s) == 1, "listen");
    char *big = malloc(BIG + 1);
    CHECK(big != NULL, "malloc");
    memset(big, 'x', BIG);
    big[BIG] = 0;
    /* The application is busy: nothing is delivered while 40 MiB of events arrive. */
    for (int i = 0; i < BIG_SENDS; i++) chat_send(big);
    free(big);
    let_events_arrive();
    int first = logos_core_process_events();
    printf("byte budget: %d events (%ld bytes) were waiting after %d sends of %ld bytes\n",
           s.events, s.event_bytes, BIG_SENDS, BIG);
    CHECK(s.failures == 0 && s.lagged == 0, "unexpected callbacks: %s", s.last);
    CHECK(first == s.events && s.events >= 1, "%d callbacks, %d events", first, s.events);
    CHECK(s.event_bytes <= EVENT_BYTES + BIG + 256, "%ld bytes of events were held",
          s.event_bytes);
    /* Anything still on its way is delivered too, then a small event gets through behind the
     * lagged notice that counts what was dropped. */
    chat_send("small");
    long deadline = now_ms() + 15000;
    while (strstr(s.last, "\"small\"") == NULL && now_ms() < deadline) {
        logos_core_process_events();
        usleep(10 * 1000);
    }
    printf("byte budget: %d events in all, %d lagged notice(s) for %ld events\n", s.events,
           s.lagged, s.lagged_events);
    CHECK(strstr(s.last, "\"small\"") != NULL, "the small event did not arrive: %s", s.last);
    CHECK(s.lagged >= 1, "no lagged notice");
    CHECK(s.events - 1 + s.lagged_events == BIG_SENDS,
          "%d large events delivered and %ld reported dropped, of %d", s.events - 1,
          s.lagged_events, BIG_SENDS);
    logos_core_cleanup();
}

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: listeners MODULES_DIR");
    modules = argv[1];
    after_cleanup();
    byte_budget();
    printf("PASS\n");
    return 0;
}
