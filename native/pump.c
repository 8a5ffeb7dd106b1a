/*
 * The native byte pump: after login, the relay between a client and its backend runs here, in C,
 * on Node's own libuv loop (uv_poll_t watchers on the main thread: no threads, no locks), so no
 * JavaScript runs and no object is allocated per packet. JavaScript hands over two socket fds
 * (duplicates of the ones its net.Sockets owned) and is called back once, when the pair is done.
 *
 * Writes use send(MSG_NOSIGNAL): a peer that went away must give EPIPE, never a SIGPIPE.
 *
 * Flow control: data read from one side is written to the other at once; whatever the kernel does
 * not take is kept in that side's `pending` buffer, and the source is not read again until that
 * buffer has been written. So a slow reader never makes us buffer more than one read.
 *
 * End of stream: the MySQL protocol has no use for half-closed connections. When either side
 * closes (or fails), we stop reading, deliver what is still pending towards the other side, and
 * close both (close() sends the FIN after the data already queued in the kernel).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "pump.h"

enum { CLIENT = 0, SERVER = 1 };

/* At most this many reads per readiness event, so one busy pair cannot starve the loop. */
#define MAX_READS_PER_EVENT 8
#define SCRATCH_SIZE (64 * 1024)

static char scratch[SCRATCH_SIZE];

struct pump;

struct endpoint {
    uv_poll_t poll;
    struct pump *pump;
    int index;
    int fd;
    int events; /* what the poll currently waits for (0 = stopped) */
    /* Bytes read from the other endpoint that this one's socket has not taken yet. */
    char *pending;
    size_t pending_len;
    size_t pending_off;
    double bytes_read; /* bytes received from this endpoint */
};

struct pump {
    struct endpoint ep[2];
    napi_env env;
    napi_ref on_close;
    napi_async_context async_context;
    bool draining;  /* an end was seen: no more reads, flush what is pending, then finish */
    bool finishing; /* handles are being closed */
    bool fds_owned; /* close the fds when done (false only when setup failed: the caller closes) */
    int open_handles;
    const char *reason;
};

static void update_polls(struct pump *p);

static void free_pending(struct endpoint *e)
{
    free(e->pending);
    e->pending = NULL;
    e->pending_len = e->pending_off = 0;
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct endpoint *e = handle->data;
    struct pump *p = e->pump;
    napi_env env = p->env;
    napi_handle_scope scope;
    napi_value callback, global, argv[3], result, exception;

    if (--p->open_handles > 0)
        return;

    for (int i = 0; i < 2; i++) {
        if (p->fds_owned)
            close(p->ep[i].fd);
        free_pending(&p->ep[i]);
    }

    if (p->on_close != NULL && napi_open_handle_scope(env, &scope) == napi_ok) {
        if (napi_get_reference_value(env, p->on_close, &callback) == napi_ok && callback != NULL &&
            napi_get_global(env, &global) == napi_ok &&
            napi_create_string_utf8(env, p->reason, NAPI_AUTO_LENGTH, &argv[0]) == napi_ok &&
            napi_create_double(env, p->ep[CLIENT].bytes_read, &argv[1]) == napi_ok &&
            napi_create_double(env, p->ep[SERVER].bytes_read, &argv[2]) == napi_ok) {
            /* make_callback runs the microtask queue afterwards, like any libuv-driven callback.
             * The JS side never throws here; if it did, it is an uncaught exception as usual. */
            if (napi_make_callback(env, p->async_context, global, callback, 3, argv, &result) != napi_ok &&
                napi_get_and_clear_last_exception(env, &exception) == napi_ok)
                napi_fatal_exception(env, exception);
        }
        napi_close_handle_scope(env, scope);
    }
    if (p->on_close != NULL) {
        napi_delete_reference(env, p->on_close);
        napi_async_destroy(env, p->async_context);
    }
    free(p);
}

/* Stop watching both sockets and close them; JS hears about it once both watchers are closed. */
static void finish(struct pump *p, const char *reason)
{
    if (p->finishing)
        return;
    p->finishing = true;
    p->reason = reason;
    for (int i = 0; i < 2; i++) {
        uv_poll_stop(&p->ep[i].poll);
        uv_close((uv_handle_t *)&p->ep[i].poll, on_handle_closed);
    }
}

/* Write what is pending towards endpoint `e`. Returns false (after finish()) on a socket error. */
static bool flush(struct pump *p, struct endpoint *e)
{
    while (e->pending != NULL) {
        ssize_t n = send(e->fd, e->pending + e->pending_off, e->pending_len - e->pending_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            finish(p, e->index == CLIENT ? "client-error" : "server-error");
            return false;
        }
        e->pending_off += (size_t)n;
        if (e->pending_off == e->pending_len)
            free_pending(e);
    }
    return true;
}

/* Send `len` bytes to `dst`; keep what the socket does not take. False (after finish()) on error. */
static bool forward(struct pump *p, struct endpoint *dst, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(dst->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            finish(p, dst->index == CLIENT ? "client-error" : "server-error");
            return false;
        }
        off += (size_t)n;
    }
    if (off < len) {
        dst->pending = malloc(len - off);
        if (dst->pending == NULL) {
            finish(p, "out-of-memory");
            return false;
        }
        memcpy(dst->pending, data + off, len - off);
        dst->pending_len = len - off;
        dst->pending_off = 0;
    }
    return true;
}

/* Read from `src` and forward to the other endpoint until it would block or must wait. */
static void pump_from(struct pump *p, struct endpoint *src)
{
    struct endpoint *dst = &p->ep[1 - src->index];
    for (int i = 0; i < MAX_READS_PER_EVENT && !p->draining && dst->pending == NULL; i++) {
        ssize_t n = read(src->fd, scratch, sizeof(scratch));
        if (n > 0) {
            src->bytes_read += (double)n;
            if (!forward(p, dst, scratch, (size_t)n))
                return;
            if ((size_t)n < sizeof(scratch))
                return; /* the socket is most likely empty: save a read() that would say EAGAIN */
            continue;
        }
        if (n == 0) {
            p->draining = true;
            p->reason = src->index == CLIENT ? "client" : "server";
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            finish(p, src->index == CLIENT ? "client-error" : "server-error");
        return;
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct endpoint *e = handle->data;
    struct pump *p = e->pump;

    if (p->finishing)
        return;
    if (status < 0) {
        finish(p, e->index == CLIENT ? "client-error" : "server-error");
        return;
    }
    if ((events & UV_WRITABLE) && !flush(p, e))
        return;
    if (events & UV_READABLE) {
        pump_from(p, e);
        if (p->finishing)
            return;
    }
    update_polls(p);
}

/* Watch each socket for what it is needed for now; finish a drained pair. */
static void update_polls(struct pump *p)
{
    if (p->draining) {
        /* Only the data still owed to the side that did not close matters now. */
        const char *reason = p->reason;
        bool owed = false;
        for (int i = 0; i < 2; i++)
            owed |= p->ep[i].pending != NULL;
        if (!owed) {
            finish(p, reason);
            return;
        }
    }
    for (int i = 0; i < 2; i++) {
        struct endpoint *e = &p->ep[i];
        int want = 0;
        if (!p->draining && p->ep[1 - i].pending == NULL)
            want |= UV_READABLE;
        if (e->pending != NULL)
            want |= UV_WRITABLE;
        if (want == e->events)
            continue;
        int rc = want != 0 ? uv_poll_start(&e->poll, want, on_poll) : uv_poll_stop(&e->poll);
        if (rc != 0) {
            finish(p, "poll-error");
            return;
        }
        e->events = want;
    }
}

static bool throw_error(napi_env env, const char *code, const char *message)
{
    napi_throw_error(env, code, message);
    return false;
}

static bool get_fd_arg(napi_env env, napi_value v, int *fd)
{
    int32_t n;
    if (napi_get_value_int32(env, v, &n) != napi_ok || n < 0)
        return throw_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a non-negative integer");
    *fd = n;
    return true;
}

static bool get_bytes_arg(napi_env env, napi_value v, const char **data, size_t *len)
{
    napi_valuetype type;
    bool is_typed = false;
    *data = NULL;
    *len = 0;
    if (napi_typeof(env, v, &type) != napi_ok)
        return false;
    if (type == napi_undefined || type == napi_null)
        return true;
    if (napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed) {
        napi_typedarray_type ttype;
        size_t length, offset;
        void *base;
        napi_value ab;
        if (napi_get_typedarray_info(env, v, &ttype, &length, &base, &ab, &offset) != napi_ok ||
            ttype != napi_uint8_array)
            return throw_error(env, "ERR_INVALID_ARG_TYPE", "bytes must be a Uint8Array");
        *data = base;
        *len = length;
        return true;
    }
    return throw_error(env, "ERR_INVALID_ARG_TYPE", "bytes must be a Uint8Array or undefined");
}

static void pump_handle_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)data;
    (void)hint;
    /* The pump owns itself until its sockets are closed; the JS handle is only a key. */
}

/*
 * pumpStart(clientFd, serverFd, clientFirst, serverFirst, onClose) -> handle
 * `clientFirst` (bytes owed to the server, e.g. received during login) and `serverFirst` (owed to
 * the client) are sent before anything else. onClose(reason, clientBytes, serverBytes) is called
 * once, after both fds are closed.
 */
static napi_value js_pump_start(napi_env env, napi_callback_info info)
{
    size_t argc = 5;
    napi_value argv[5], handle, name, resource;
    napi_valuetype type;
    int fds[2];
    const char *first[2];
    size_t first_len[2];
    uv_loop_t *loop;
    struct pump *p;

    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    if (argc != 5) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "pumpStart(clientFd, serverFd, clientFirst, serverFirst, onClose)");
        return NULL;
    }
    if (!get_fd_arg(env, argv[0], &fds[CLIENT]) || !get_fd_arg(env, argv[1], &fds[SERVER]) ||
        !get_bytes_arg(env, argv[2], &first[SERVER], &first_len[SERVER]) ||
        !get_bytes_arg(env, argv[3], &first[CLIENT], &first_len[CLIENT]))
        return NULL;
    if (napi_typeof(env, argv[4], &type) != napi_ok || type != napi_function) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "onClose must be a function");
        return NULL;
    }
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
        throw_error(env, "ERR_PUMP", "no event loop");
        return NULL;
    }

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        throw_error(env, "ENOMEM", "out of memory");
        return NULL;
    }
    p->env = env;
    p->reason = "closed";
    for (int i = 0; i < 2; i++) {
        p->ep[i].pump = p;
        p->ep[i].index = i;
        p->ep[i].fd = fds[i];
        p->ep[i].poll.data = &p->ep[i];
    }
    /* Checked up front so that no failure can happen after a watcher exists: a throw leaves the
     * fds with the caller, who closes them. */
    if (uv_poll_init(loop, &p->ep[CLIENT].poll, fds[CLIENT]) != 0) {
        free(p);
        throw_error(env, "ERR_PUMP", "uv_poll_init failed for the client fd");
        return NULL;
    }
    if (uv_poll_init(loop, &p->ep[SERVER].poll, fds[SERVER]) != 0) {
        /* Only the client watcher exists: close it; the callback frees p and closes nothing. */
        p->fds_owned = false;
        p->finishing = true;
        p->open_handles = 1;
        uv_close((uv_handle_t *)&p->ep[CLIENT].poll, on_handle_closed);
        throw_error(env, "ERR_PUMP", "uv_poll_init failed for the server fd");
        return NULL;
    }
    p->open_handles = 2;
    p->fds_owned = true;
    if (napi_create_object(env, &resource) != napi_ok ||
        napi_create_string_utf8(env, "myproxy.pump", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_async_init(env, resource, name, &p->async_context) != napi_ok ||
        napi_create_reference(env, argv[4], 1, &p->on_close) != napi_ok) {
        p->fds_owned = false;
        finish(p, "internal-error");
        throw_error(env, "ERR_PUMP", "cannot set up the pump callback");
        return NULL;
    }

    /* Bytes that arrived during login go out first (the first write normally takes them all). */
    for (int i = 0; i < 2 && !p->finishing; i++)
        if (first_len[i] > 0)
            forward(p, &p->ep[i], first[i], first_len[i]);
    if (!p->finishing)
        update_polls(p);

    if (napi_create_external(env, p, pump_handle_finalize, NULL, &handle) != napi_ok)
        return NULL;
    return handle;
}

/*
 * pumpClose(handle, lastClientBytes?) — end the pair now (daemon shutdown). `lastClientBytes`
 * (an ERR packet) is written to the client if its socket takes it without blocking.
 * Calling it after the pair finished is a no-op: JS must stop using the handle after onClose,
 * because the memory behind it is freed then.
 */
static napi_value js_pump_close(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value argv[2], undefined;
    void *data;
    const char *bytes;
    size_t len;
    struct pump *p;

    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "pumpClose(handle, bytes?)");
        return NULL;
    }
    bytes = NULL;
    len = 0;
    if (argc > 1 && !get_bytes_arg(env, argv[1], &bytes, &len))
        return NULL;
    p = data;
    if (!p->finishing) {
        struct endpoint *client = &p->ep[CLIENT];
        if (len > 0 && client->pending == NULL) {
            ssize_t n;
            do
                n = send(client->fd, bytes, len, MSG_NOSIGNAL);
            while (n < 0 && errno == EINTR);
        }
        finish(p, "shutdown");
    }
    napi_get_undefined(env, &undefined);
    return undefined;
}

bool register_pump(napi_env env, napi_value exports)
{
    napi_property_descriptor props[] = {
        { "pumpStart", NULL, js_pump_start, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpClose", NULL, js_pump_close, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
