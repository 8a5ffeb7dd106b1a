/* Shared N-API helpers: see napi-util.h. */

#define _GNU_SOURCE

#include "napi-util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* per-environment state                                               */

static void addon_env_free(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    free(data);
}

/*
 * Runs while the environment is still usable: cleanup hooks run in reverse order of registration,
 * so this one (registered at module init) runs before N-API's own, which frees the instance data.
 */
static void addon_env_cleanup(void *arg)
{
    struct addon_env *st = arg;
    if (st->async_context_made)
        napi_async_destroy(st->env, st->async_context);
    st->async_context_made = false;
    if (st->inbox_ref != NULL)
        napi_delete_reference(st->env, st->inbox_ref);
    st->inbox_ref = NULL;
    st->inbox = NULL;
    st->inbox_len = 0;
}

bool addon_env_init(napi_env env)
{
    struct addon_env *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return false;
    st->env = env;
    if (napi_set_instance_data(env, st, addon_env_free, NULL) != napi_ok) {
        free(st);
        return false;
    }
    return napi_add_env_cleanup_hook(env, addon_env_cleanup, st) == napi_ok;
}

napi_async_context addon_async_context(struct addon_env *st)
{
    if (!st->async_context_made) {
        napi_value resource, name;
        if (napi_create_object(st->env, &resource) != napi_ok ||
            napi_create_string_utf8(st->env, "myproxy.native", NAPI_AUTO_LENGTH, &name) != napi_ok ||
            napi_async_init(st->env, resource, name, &st->async_context) != napi_ok)
            return NULL;
        st->async_context_made = true;
    }
    return st->async_context;
}

struct addon_env *addon_env_get(napi_env env)
{
    void *data = NULL;
    if (napi_get_instance_data(env, &data) != napi_ok || data == NULL) {
        napi_throw_error(env, "ERR_ADDON", "native addon state missing");
        return NULL;
    }
    return data;
}

bool addon_env_should_fail(struct addon_env *st, int point)
{
    if (st == NULL || st->fail_next != point || point == FAIL_NONE)
        return false;
    st->fail_next = FAIL_NONE;
    return true;
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

const char *errno_name(int err)
{
    switch (err) {
    case EACCES: return "EACCES";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EAGAIN: return "EAGAIN";
    case EALREADY: return "EALREADY";
    case EBADF: return "EBADF";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EINPROGRESS: return "EINPROGRESS";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case EISCONN: return "EISCONN";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case EMFILE: return "EMFILE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENFILE: return "ENFILE";
    case ENODATA: return "ENODATA";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOSYS: return "ENOSYS";
    case ENOBUFS: return "ENOBUFS";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case ENOTCONN: return "ENOTCONN";
    case ENOTDIR: return "ENOTDIR";
    case ENOTSOCK: return "ENOTSOCK";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EPERM: return "EPERM";
    case EPIPE: return "EPIPE";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EPROTOTYPE: return "EPROTOTYPE";
    case ERANGE: return "ERANGE";
    case EROFS: return "EROFS";
    case ESRCH: return "ESRCH";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: break;
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    {
        const char *name = strerrorname_np(err);
        if (name != NULL)
            return name;
    }
#endif
    return "EUNKNOWN";
}

/* Thread-safe strerror (the addon may run in worker threads). */
const char *errno_text(int err, char *buf, size_t size)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, buf, size); /* GNU variant: returns the text */
#else
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "Unknown error %d", err);
    return buf;
#endif
}

/* Throws Error(message) with .code and (optionally) .syscall. */
bool throw_coded(napi_env env, const char *code, const char *syscall, const char *message)
{
    napi_value js_code, js_msg, js_syscall, error;

    if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
        napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_msg) != napi_ok ||
        napi_create_error(env, js_code, js_msg, &error) != napi_ok) {
        napi_throw_error(env, code, message);
        return false;
    }
    if (syscall != NULL && napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall) == napi_ok)
        napi_set_named_property(env, error, "syscall", js_syscall);
    napi_throw(env, error);
    return false;
}

bool throw_type(napi_env env, const char *message)
{
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
}

bool throw_range(napi_env env, const char *message)
{
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
}

/* ------------------------------------------------------------------ */
/* arguments                                                           */

bool get_args(napi_env env, napi_callback_info info, size_t want, size_t max, napi_value *argv, size_t *argc)
{
    size_t n = max;

    if (napi_get_cb_info(env, info, &n, argv, NULL, NULL) != napi_ok)
        return false;
    if (n < want) {
        char message[80];
        snprintf(message, sizeof(message), "expected %zu arguments, got %zu", want, n);
        return throw_type(env, message);
    }
    if (argc != NULL)
        *argc = n < max ? n : max;
    return true;
}

bool is_nullish(napi_env env, napi_value v)
{
    napi_valuetype t;
    return napi_typeof(env, v, &t) == napi_ok && (t == napi_undefined || t == napi_null);
}

bool get_bool(napi_env env, napi_value v, const char *what, bool *out)
{
    napi_valuetype t;
    char message[80];

    if (napi_typeof(env, v, &t) == napi_ok && t == napi_boolean && napi_get_value_bool(env, v, out) == napi_ok)
        return true;
    snprintf(message, sizeof(message), "%s must be a boolean", what);
    return throw_type(env, message);
}

/* An integral number in [min, max]. */
bool get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out)
{
    napi_valuetype t;
    double d;
    char message[120];

    if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok) {
        snprintf(message, sizeof(message), "%s must be a number", what);
        return throw_type(env, message);
    }
    if (!(d >= (double)min && d <= (double)max) || d != (double)(int64_t)d) {
        snprintf(message, sizeof(message), "%s must be an integer in [%lld, %lld]", what, (long long)min,
                 (long long)max);
        return throw_range(env, message);
    }
    *out = (int64_t)d;
    return true;
}

bool get_fd(napi_env env, napi_value v, int *fd)
{
    int64_t value;

    if (!get_int(env, v, "fd", 0, INT32_MAX, &value))
        return false;
    *fd = (int)value;
    return true;
}

/* The storage of a typed array of `type` (and its length), or false if `v` is not one. */
static bool typed_array(napi_env env, napi_value v, napi_typedarray_type type, void **base, size_t *length)
{
    bool is_typed = false;
    napi_typedarray_type actual;
    return napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed &&
           napi_get_typedarray_info(env, v, &actual, length, base, NULL, NULL) == napi_ok && actual == type;
}

bool get_optional_bytes(napi_env env, napi_value v, const char *what, const uint8_t **data, size_t *len)
{
    char message[120];
    void *base;

    *data = NULL;
    *len = 0;
    if (is_nullish(env, v))
        return true;
    if (typed_array(env, v, napi_uint8_array, &base, len)) {
        *data = base;
        return true;
    }
    snprintf(message, sizeof(message), "%s must be a Uint8Array, null or undefined", what);
    return throw_type(env, message);
}

bool get_optional_f64(napi_env env, napi_value v, const char *what, size_t min_len, double **data)
{
    char message[120];
    void *base;
    size_t length;

    *data = NULL;
    if (is_nullish(env, v))
        return true;
    if (typed_array(env, v, napi_float64_array, &base, &length) && length >= min_len) {
        *data = base;
        return true;
    }
    snprintf(message, sizeof(message), "%s must be a Float64Array of at least %zu elements, null or undefined", what,
             min_len);
    return throw_type(env, message);
}

bool get_function(napi_env env, napi_value v, const char *what)
{
    napi_valuetype t;
    char message[80];

    if (napi_typeof(env, v, &t) == napi_ok && t == napi_function)
        return true;
    snprintf(message, sizeof(message), "%s must be a function", what);
    return throw_type(env, message);
}

/* ------------------------------------------------------------------ */
/* values                                                              */

napi_value make_int(napi_env env, int32_t value)
{
    napi_value result = NULL;
    napi_create_int32(env, value, &result);
    return result;
}

napi_value make_double(napi_env env, double value)
{
    napi_value result = NULL;
    napi_create_double(env, value, &result);
    return result;
}

napi_value make_bool(napi_env env, bool value)
{
    napi_value result = NULL;
    napi_get_boolean(env, value, &result);
    return result;
}

napi_value make_undefined(napi_env env)
{
    napi_value result = NULL;
    napi_get_undefined(env, &result);
    return result;
}

napi_value make_null(napi_env env)
{
    napi_value result = NULL;
    napi_get_null(env, &result);
    return result;
}
