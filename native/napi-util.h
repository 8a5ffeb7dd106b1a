/*
 * Helpers shared by every N-API entry point of the addon: argument parsing with one set of error
 * messages, coded JS errors, and the per-environment state (the addon is context-aware: Node
 * worker threads each get their own state, nothing is static).
 */
#ifndef MYPROXY_NAPI_UTIL_H
#define MYPROXY_NAPI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

/* Size of the read buffer every pump of one environment shares (one thread: never concurrent). */
#define ADDON_SCRATCH_SIZE (64 * 1024)

/* Test-only failure injection points (see addonTestFail in myproxy_native.c). */
enum addon_fail_point {
    FAIL_NONE = 0,
    FAIL_CLOSE_HANDLE_SCOPE = 1, /* the handle scope of the close callback cannot be opened */
};

/* State of the addon in one Node environment (the main thread or a worker). */
struct addon_env {
    char scratch[ADDON_SCRATCH_SIZE];
    /* A failure to simulate once (enum addon_fail_point); tests only. */
    int fail_next;
    /* Pumps alive in this environment (for tests and leak checks). */
    int live_pumps;
    /*
     * The async context every pump and stream watch of this environment calls JavaScript in (made
     * on first use): one for all, instead of one per session (an object, a handle and a context
     * each, for async_hooks, which nothing here uses).
     */
    napi_async_context async_context;
    bool async_context_made;
    napi_env env;
    /*
     * Where pumps put an intercepted packet for JavaScript, which copies it out at once
     * (pumpInbox(); without one, or for a bigger packet, each packet is a new Buffer, which costs
     * more than the copy).
     */
    napi_ref inbox_ref;
    uint8_t *inbox;
    size_t inbox_len;
};

/* The environment's state; NULL (with a JS error thrown) if it cannot be had. */
struct addon_env *addon_env_get(napi_env env);
/* Creates the environment's state at module init; false on failure. */
bool addon_env_init(napi_env env);
/* The environment's shared async context for napi_make_callback() (NULL if it cannot be made). */
napi_async_context addon_async_context(struct addon_env *st);
/* True (and clears it) when the failure `point` was requested for this environment. */
bool addon_env_should_fail(struct addon_env *st, int point);

/* Errors. Each returns false so that `return throw_...` reads naturally in a bool helper. */
bool throw_coded(napi_env env, const char *code, const char *syscall, const char *message);
bool throw_type(napi_env env, const char *message);
bool throw_range(napi_env env, const char *message);
const char *errno_name(int err);
const char *errno_text(int err, char *buf, size_t size);

/* Arguments: `want` at least; the array gets undefined for missing ones past `want`. */
bool get_args(napi_env env, napi_callback_info info, size_t want, size_t max, napi_value *argv, size_t *argc);
bool get_bool(napi_env env, napi_value v, const char *what, bool *out);
bool get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out);
bool get_fd(napi_env env, napi_value v, int *fd);
/* A Uint8Array (data, len), or undefined/null as (NULL, 0). */
bool get_optional_bytes(napi_env env, napi_value v, const char *what, const uint8_t **data, size_t *len);
/* A Float64Array's storage (for counters shared with JavaScript), or undefined/null as NULL. */
bool get_optional_f64(napi_env env, napi_value v, const char *what, size_t min_len, double **data);
bool get_function(napi_env env, napi_value v, const char *what);
bool is_nullish(napi_env env, napi_value v);

napi_value make_int(napi_env env, int32_t value);
napi_value make_double(napi_env env, double value);
napi_value make_bool(napi_env env, bool value);
napi_value make_undefined(napi_env env);
napi_value make_null(napi_env env);

#endif
