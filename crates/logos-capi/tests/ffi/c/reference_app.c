/*
 * An application written against the reference implementation's 2026 logos_core.h
 * (logos-co/logos-liblogos, src/logos_core/logos_core.h), not against ours: it declares the
 * reference's functions itself, with the reference's signatures (void where the reference
 * says void), and releases what they return with free(), as a C program written from that
 * header must. It links against liblogos_core.so unchanged.
 *
 * To check failures it also declares one function of ours, logos_core_last_error(), and, to
 * see the access policy at work, logos_core_call_plugin_method() (the reference header has no
 * call function); both are marked below.
 *
 * Usage: reference_app MODULES_DIR LATER_DIR OUTSIDE_DIR DATA_DIR
 *   MODULES_DIR  calc, chat, greeter, probe
 *   LATER_DIR    kv, moved into MODULES_DIR and back to show logos_core_refresh_modules()
 *   OUTSIDE_DIR  relay, registered with logos_core_process_module()
 *   DATA_DIR     an empty dir for logos_core_set_persistence_base_path()
 * Prints "pid <module> <pid>" for module processes, "PASS" at the end; exits 1 on the first
 * failed check.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- The reference header's declarations, as it writes them ---- */
void logos_core_init(int argc, char *argv[]);
void logos_core_add_modules_dir(const char* modules_dir);
void logos_core_start();
void logos_core_cleanup();
char** logos_core_get_loaded_modules();
char** logos_core_get_known_modules();
int logos_core_load_module(const char* module_name, bool with_dependencies);
int logos_core_unload_module(const char* module_name, bool with_dependents);
char** logos_core_get_module_dependencies(const char* module_name, bool recursive);
char** logos_core_get_module_dependents(const char* module_name, bool recursive);
char* logos_core_get_modules_info();
char* logos_core_process_module(const char* module_path);
char* logos_core_get_token(const char* key);
char* logos_core_get_module_stats();
void logos_core_set_persistence_base_path(const char* path);
void logos_core_set_module_transports(const char* module_name, const char* transport_set_json);
void logos_core_set_access_policy(const char* policy_json);
void logos_core_refresh_modules();

/* ---- Ours, for checking (not in the reference header) ---- */
const char *logos_core_last_error(void);
char *logos_core_call_plugin_method(const char *plugin_name, const char *method_name,
                                    const char *params_json, int timeout_ms);

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
#define NO_ERROR() (logos_core_last_error()[0] == '\0')

/* A list from the library as "a,b,c", freed the way a reference application frees it. */
static char *joined(char **list) {
    CHECK(list != NULL, "a list came back NULL");
    static char buf[4096];
    buf[0] = '\0';
    for (char **p = list; *p; p++) {
        if (p != list) strncat(buf, ",", sizeof buf - strlen(buf) - 1);
        strncat(buf, *p, sizeof buf - strlen(buf) - 1);
        free(*p);
    }
    free(list);
    return buf;
}

static int listed(char **list, const char *name) {
    char *all = joined(list);
    char *copy = strdup(all);
    int found = 0;
    for (char *t = strtok(copy, ","); t; t = strtok(NULL, ",")) {
        if (strcmp(t, name) == 0) found = 1;
    }
    free(copy);
    return found;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The pid of a running module, from logos_core_get_module_stats(). */
static void print_pid(const char *name) {
    char *stats = logos_core_get_module_stats();
    CHECK(stats != NULL, "stats");
    char key[128];
    snprintf(key, sizeof key, "\"name\":\"%s\",\"pid\":", name);
    char *p = strstr(stats, key);
    CHECK(p != NULL, "no %s in %s", key, stats);
    long pid = strtol(p + strlen(key), NULL, 10);
    CHECK(pid > 0, "pid of %s", name);
    printf("pid %s %ld\n", name, pid);
    fflush(stdout);
    free(stats);
}

/* target.method(params) through our call function: returns the JSON (to free) or NULL. */
static char *call(const char *target, const char *method, const char *params) {
    return logos_core_call_plugin_method(target, method, params, 10000);
}

static void before_start(const char *modules, const char *data) {
    /* Transports: local is what every module has; remote ones do not exist yet. */
    logos_core_set_module_transports("chat", "[{\"protocol\":\"local\"}]");
    CHECK(NO_ERROR(), "a local transport set is accepted");
    logos_core_set_module_transports("chat", NULL);
    CHECK(NO_ERROR(), "NULL clears");
    logos_core_set_module_transports(
        "chat", "[{\"protocol\":\"tcp_ssl\",\"host\":\"0.0.0.0\",\"port\":7443}]");
    CHECK(LAST_IS("invalid_args: invalid transport_set_json: module chat: transport tcp_ssl "
                  "cannot be served: this core has no remote modules yet"),
          "remote transport");
    logos_core_set_module_transports("chat", "[{\"protocol\":\"tcp\",\"port\":99999}]");
    CHECK(LAST_IS("invalid_args: invalid transport_set_json: entry 0: field \"port\""),
          "bad port");
    logos_core_set_module_transports(NULL, "[]");
    CHECK(LAST_IS("invalid_args: module_name is NULL"), "NULL module");

    /* Access policy: only "enforce"; calc may be called by probe alone. */
    logos_core_set_access_policy("{\"version\":1,\"mode\":\"audit\",\"restrictions\":{}}");
    CHECK(LAST_IS("invalid_args: invalid policy_json: \"mode\" \"audit\" is not supported"),
          "audit mode");
    logos_core_set_access_policy(
        "{\"version\":1,\"mode\":\"enforce\",\"restrictions\":{\"calc\":{\"allowedCaller\":[]}}}");
    CHECK(LAST_IS("invalid_args: invalid policy_json: restrictions.calc: unknown key "
                  "\"allowedCaller\""),
          "misspelt key");
    logos_core_set_access_policy(
        "{\"version\":1,\"mode\":\"enforce\",\"restrictions\":{\"calc\":{\"allowedCallers\":"
        "[\"probe\"]}}}");
    CHECK(NO_ERROR(), "policy");

    logos_core_set_persistence_base_path("");
    CHECK(LAST_IS("invalid_args: "), "empty persistence path");
    logos_core_set_persistence_base_path(data);
    CHECK(NO_ERROR(), "persistence path");

    logos_core_add_modules_dir("/nonexistent/modules");
    CHECK(LAST_IS("invalid_args: invalid plugins_dir: \"/nonexistent/modules\" is not a directory"),
          "missing dir");
    logos_core_add_modules_dir(modules);
    CHECK(NO_ERROR(), "add_modules_dir");
    logos_core_add_modules_dir(modules);
    CHECK(NO_ERROR(), "the same dir twice");

    CHECK(logos_core_get_known_modules() == NULL, "known before start");
    CHECK(LAST_IS("unavailable: the core is not started"), "code before start");
    CHECK(logos_core_load_module("calc", true) == 0, "load before start");
}

static void lifecycle(const char *data) {
    CHECK(listed(logos_core_get_known_modules(), "greeter"), "greeter is known");
    CHECK(strcmp(joined(logos_core_get_loaded_modules()), "") == 0, "nothing loaded");

    /* Without its dependencies, greeter cannot load: nothing starts. */
    CHECK(logos_core_load_module("greeter", false) == 0, "greeter without dependencies");
    CHECK(LAST_IS("not_loaded: greeter needs calc, chat loaded first"), "missing dependencies");
    CHECK(strcmp(joined(logos_core_get_loaded_modules()), "") == 0, "still nothing loaded");
    CHECK(logos_core_load_module("chta", true) == 0 && LAST_IS("unknown_module: "), "unknown");
    CHECK(logos_core_load_module(NULL, true) == 0 && LAST_IS("invalid_args: module_name is NULL"),
          "NULL");

    CHECK(logos_core_load_module("greeter", true) == 1, "greeter with dependencies");
    CHECK(strcmp(joined(logos_core_get_loaded_modules()), "calc,chat,greeter") == 0, "loaded");
    /* "Ensure loaded": already loaded is success. */
    CHECK(logos_core_load_module("greeter", true) == 1 && NO_ERROR(), "greeter again");
    CHECK(logos_core_load_module("calc", false) == 1, "calc again");
    print_pid("calc");
    print_pid("chat");
    print_pid("greeter");
    char chat_data[4096];
    snprintf(chat_data, sizeof chat_data, "%s/chat", data);
    CHECK(is_dir(chat_data), "chat's data dir %s is under the persistence path", chat_data);

    CHECK(strcmp(joined(logos_core_get_module_dependencies("greeter", false)), "calc,chat") == 0,
          "greeter's dependencies");
    CHECK(strcmp(joined(logos_core_get_module_dependencies("greeter", true)), "calc,chat") == 0,
          "recursive");
    CHECK(strcmp(joined(logos_core_get_module_dependencies("calc", true)), "") == 0, "calc's");
    CHECK(strcmp(joined(logos_core_get_module_dependents("calc", false)), "greeter") == 0,
          "calc's dependents");
    CHECK(strcmp(joined(logos_core_get_module_dependents("chat", true)), "greeter") == 0,
          "chat's dependents");
    /* Unknown: an empty list, as the reference answers, and the reason. */
    CHECK(strcmp(joined(logos_core_get_module_dependents("nope", true)), "") == 0, "unknown");
    CHECK(LAST_IS("unknown_module: "), "unknown module's error");

    char *info = logos_core_get_modules_info();
    CHECK(info != NULL && info[0] == '[', "modules info");
    CHECK(strstr(info, "{\"dependencies\":[\"calc\",\"chat\"],\"dependents\":[],\"loaded\":true,"
                       "\"loaded_at\":") != NULL,
          "greeter's row: %s", info);
    CHECK(strstr(info, "\"metadata\":{") != NULL && strstr(info, "\"path\":\"/") != NULL &&
              strstr(info, "\"name\":\"probe\"") != NULL,
          "rows: %s", info);
    free(info);

    char *stats = logos_core_get_module_stats();
    CHECK(stats != NULL && strstr(stats, "\"cpu_percent\":") && strstr(stats, "\"memory_mb\":") &&
              strstr(stats, "\"cpu_time_seconds\":"),
          "stats: %s", stats ? stats : "(null)");
    CHECK(strstr(stats, "\"name\":\"probe\"") == NULL, "probe is not running: %s", stats);
    free(stats);

    char *token = logos_core_get_token("client");
    CHECK(token != NULL && strlen(token) == 64, "client token");
    free(token);
    /* Module tokens stay between modules. */
    CHECK(logos_core_get_token("chat") == NULL && LAST_IS("unauthorized: "), "module token");

    /* The access policy at work: greeter depends on calc but may not call it; probe may. */
    char *r = call("greeter", "sum", "[1, 2]");
    CHECK(r == NULL && strstr(logos_core_last_error(), "greeter may not call calc") != NULL,
          "greeter.sum: %s", r ? r : "(null)");
    r = call("greeter", "greet", "[\"ada\"]");
    CHECK(r != NULL && strcmp(r, "\"Hello, ada!\"") == 0, "greeter.greet: %s", r ? r : "(null)");
    free(r);
    CHECK(logos_core_load_module("probe", false) == 1, "probe");
    print_pid("probe");
    r = call("probe", "requestToken", "[\"calc\"]");
    CHECK(r != NULL && STARTS(r, "{\"$bytes\":"), "probe may call calc: %s", r ? r : "(null)");
    free(r);
    r = call("probe", "requestToken", "[\"greeter\"]");
    CHECK(r == NULL && strstr(logos_core_last_error(), "probe may not call greeter") != NULL,
          "probe.requestToken(greeter)");

    /* Unloading: dependents refuse unless they go first. */
    CHECK(logos_core_unload_module("calc", false) == 0, "calc under greeter");
    CHECK(LAST_IS("method_failed: cannot unload calc: loaded modules depend on it (greeter)"),
          "dependents");
    CHECK(logos_core_unload_module("calc", true) == 1, "calc and greeter");
    CHECK(strcmp(joined(logos_core_get_loaded_modules()), "chat,probe") == 0, "left");
    CHECK(logos_core_unload_module("calc", true) == 0 && LAST_IS("not_loaded: "), "not loaded");

    /* Settings are for before start. */
    logos_core_set_access_policy(NULL);
    CHECK(LAST_IS("invalid_args: logos_core_set_access_policy must be called before "
                  "logos_core_start"),
          "policy after start");
    logos_core_set_persistence_base_path(data);
    CHECK(LAST_IS("invalid_args: logos_core_set_persistence_base_path must be called before"),
          "persistence after start");
}

static void registration(const char *modules, const char *later, const char *outside) {
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/relay", outside);
    char *name = logos_core_process_module(from);
    CHECK(name != NULL && strcmp(name, "relay") == 0, "process_module");
    free(name);
    CHECK(listed(logos_core_get_known_modules(), "relay"), "relay is known");
    CHECK(logos_core_process_module("/nonexistent/x") == NULL, "bad path");

    /* A module installed after start becomes known on refresh... */
    CHECK(!listed(logos_core_get_known_modules(), "kv"), "kv not known yet");
    snprintf(from, sizeof from, "%s/kv", later);
    snprintf(to, sizeof to, "%s/kv", modules);
    CHECK(rename(from, to) == 0, "install kv");
    logos_core_refresh_modules();
    CHECK(NO_ERROR(), "refresh");
    CHECK(listed(logos_core_get_known_modules(), "kv"), "kv known after refresh");
    CHECK(logos_core_load_module("kv", true) == 1, "load kv");
    print_pid("kv");
    /* ...and a removed one unknown, once it is unloaded. */
    CHECK(rename(to, from) == 0, "uninstall kv");
    logos_core_refresh_modules();
    CHECK(listed(logos_core_get_known_modules(), "kv"), "a loaded kv stays known");
    CHECK(listed(logos_core_get_loaded_modules(), "kv"), "and loaded");
    CHECK(logos_core_unload_module("kv", false) == 1, "unload kv");
    CHECK(listed(logos_core_get_known_modules(), "kv"), "known until the next refresh");
    logos_core_refresh_modules();
    CHECK(!listed(logos_core_get_known_modules(), "kv"), "kv unknown after refresh");
    CHECK(listed(logos_core_get_known_modules(), "relay"), "relay (still on disk) stays known");
    CHECK(logos_core_load_module("kv", true) == 0 && LAST_IS("unknown_module: "), "kv is gone");
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: reference_app MODULES_DIR LATER_DIR OUTSIDE_DIR DATA_DIR\n");
        return 1;
    }
    logos_core_init(argc, argv);
    before_start(argv[1], argv[4]);
    logos_core_start();
    CHECK(NO_ERROR(), "start");
    lifecycle(argv[4]);
    registration(argv[1], argv[2], argv[3]);
    logos_core_cleanup();
    CHECK(logos_core_get_loaded_modules() == NULL && LAST_IS("unavailable: "), "after cleanup");
    printf("PASS\n");
    return 0;
}
