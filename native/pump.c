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
    /* Loop time (ms) since which `pending` has been waiting without progress (0: nothing pending). */
    uint64_t stalled_since;
};

struct pump {
    struct endpoint ep[2];
    napi_env env;
    napi_ref on_close;
    napi_async_context async_context;
    bool draining;  /* an end was seen: no more reads, flush what is pending, then finish */
    bool finishing; /* handles are being closed */
    bool fds_owned; /* close the fds when done (false only when setup failed: the caller closes) */

    /*
     * Command interception (client -> server). The pump follows the client's packet boundaries
     * (a 4-byte header: 3-byte length, sequence id) without copying anything. A command packet
     * (sequence id 0, not a continuation of a 16 MiB packet) whose first payload byte is in
     * `intercept` is not forwarded: it is held, handed to JavaScript once complete, and the
     * client is not read again until JavaScript answers with pumpResume().
     */
    uint8_t intercept[32];  /* bit set of command bytes */
    bool has_intercepts;
    napi_ref on_intercept;
    size_t c2s_left;        /* payload bytes of the current client packet still to come */
    bool c2s_continued;     /* the current client packet continues a 0xFFFFFF one */
    bool intercepting;      /* a packet is held: wait for it to complete / for pumpResume */
    bool delivered;         /* the held packet was handed to JavaScript */
    char *held;             /* client bytes not forwarded: a partial header, or the held packet + rest */
    size_t held_len;
    size_t held_cap;
    int open_handles;
    const char *reason;
};

static void update_polls(struct pump *p);

static void free_pending(struct endpoint *e)
{
    free(e->pending);
    e->pending = NULL;
    e->pending_len = e->pending_off = 0;
    e->stalled_since = 0;
}

/* The loop's cached time: cheap, and what a stall is measured in. */
static uint64_t loop_now(const struct endpoint *e)
{
    return uv_now(e->poll.loop);
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
    free(p->held);
    p->held = NULL;

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
    if (p->on_intercept != NULL)
        napi_delete_reference(env, p->on_intercept);
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
        else
            e->stalled_since = loop_now(e); /* progress: the stall starts again */
    }
    return true;
}

/* Send `len` bytes to `dst`; keep what the socket does not take. False (after finish()) on error. */
static bool append_pending(struct pump *p, struct endpoint *dst, const char *data, size_t len);

static bool forward(struct pump *p, struct endpoint *dst, const char *data, size_t len)
{
    if (dst->pending != NULL)
        return append_pending(p, dst, data, len); /* keep the order behind what is queued */
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
        dst->stalled_since = loop_now(dst);
    }
    return true;
}

/* Queue `data` behind the bytes already pending for `dst`. */
static bool append_pending(struct pump *p, struct endpoint *dst, const char *data, size_t len)
{
    if (len == 0)
        return true;
    size_t have = dst->pending_len - dst->pending_off;
    char *grown = malloc(have + len);
    if (grown == NULL) {
        finish(p, "out-of-memory");
        return false;
    }
    memcpy(grown, dst->pending + dst->pending_off, have);
    memcpy(grown + have, data, len);
    free(dst->pending);
    dst->pending = grown;
    dst->pending_len = have + len;
    dst->pending_off = 0;
    return true;
}

static bool hold(struct pump *p, const char *data, size_t len)
{
    if (p->held_len + len > p->held_cap) {
        size_t cap = p->held_cap == 0 ? 256 : p->held_cap;
        while (cap < p->held_len + len)
            cap *= 2;
        char *grown = realloc(p->held, cap);
        if (grown == NULL) {
            finish(p, "out-of-memory");
            return false;
        }
        p->held = grown;
        p->held_cap = cap;
    }
    memcpy(p->held + p->held_len, data, len);
    p->held_len += len;
    return true;
}

static inline bool intercepted(const struct pump *p, uint8_t command)
{
    return (p->intercept[command >> 3] >> (command & 7)) & 1;
}

/* An intercepted command must fit in this (INIT_DB and CHANGE_USER are small). */
#define MAX_INTERCEPTED_PACKET (64 * 1024)

static void deliver_intercepted(struct pump *p);

/*
 * Client bytes (data, len) -> server, except an intercepted command packet and what follows it,
 * and a header that is not complete yet (both are held). `data` may point into `p->held`.
 */
static void client_to_server(struct pump *p, const char *data, size_t len)
{
    struct endpoint *server = &p->ep[SERVER];
    size_t pos = 0;

    while (pos < len) {
        if (p->c2s_left > 0) {
            size_t n = len - pos < p->c2s_left ? len - pos : p->c2s_left;
            pos += n;
            p->c2s_left -= n;
            continue;
        }
        /* A packet starts at pos: decide before any of it is forwarded. */
        const uint8_t *h = (const uint8_t *)data + pos;
        if (len - pos < 4)
            break;
        size_t plen = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16;
        bool command = !p->c2s_continued && h[3] == 0 && plen > 0;
        if (command && len - pos < 5)
            break;
        if (command && intercepted(p, h[4])) {
            if (plen > MAX_INTERCEPTED_PACKET) {
                finish(p, "client-malformed");
                return;
            }
            if (!forward(p, server, data, pos))
                return;
            p->intercepting = true;
            p->delivered = false;
            /* Keep the packet and everything after it (data may alias p->held). */
            char *rest = malloc(len - pos);
            if (rest == NULL) {
                finish(p, "out-of-memory");
                return;
            }
            memcpy(rest, data + pos, len - pos);
            p->held_len = 0;
            bool ok = hold(p, rest, len - pos);
            free(rest);
            if (ok)
                deliver_intercepted(p);
            return;
        }
        p->c2s_continued = plen == 0xFFFFFF;
        p->c2s_left = plen;
        pos += 4;
    }
    /* [0, pos) is decided; the rest is an incomplete header: keep it for the next read. */
    char partial[5];
    size_t npartial = len - pos;
    memcpy(partial, data + pos, npartial);
    if (!forward(p, server, data, pos))
        return;
    p->held_len = 0;
    hold(p, partial, npartial);
}

/* Hand the held packet to JavaScript once it is complete (called again as more bytes arrive). */
static void deliver_intercepted(struct pump *p)
{
    napi_env env = p->env;
    napi_handle_scope scope;
    napi_value callback, global, argv[1], result, exception;
    void *copy;

    if (p->delivered || p->held_len < 4)
        return;
    const uint8_t *h = (const uint8_t *)p->held;
    size_t total = 4 + ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16);
    if (p->held_len < total)
        return;
    p->delivered = true;
    if (napi_open_handle_scope(env, &scope) != napi_ok) {
        finish(p, "internal-error");
        return;
    }
    if (napi_get_reference_value(env, p->on_intercept, &callback) == napi_ok && callback != NULL &&
        napi_get_global(env, &global) == napi_ok &&
        napi_create_buffer_copy(env, total, p->held, &copy, &argv[0]) == napi_ok) {
        if (napi_make_callback(env, p->async_context, global, callback, 1, argv, &result) != napi_ok &&
            napi_get_and_clear_last_exception(env, &exception) == napi_ok)
            napi_fatal_exception(env, exception);
    } else {
        finish(p, "internal-error");
    }
    napi_close_handle_scope(env, scope);
}

/* Read from `src` and forward to the other endpoint until it would block or must wait. */
static void pump_from(struct pump *p, struct endpoint *src)
{
    struct endpoint *dst = &p->ep[1 - src->index];
    bool from_client = src->index == CLIENT;
    for (int i = 0; i < MAX_READS_PER_EVENT && !p->draining && dst->pending == NULL; i++) {
        if (from_client && p->intercepting && p->delivered)
            return; /* JavaScript has the held packet: wait for pumpResume() */
        /* A partial header (< 5 bytes) goes in front of the new bytes, so packets are contiguous. */
        size_t prefix = from_client && !p->intercepting ? p->held_len : 0;
        if (prefix > 0)
            memcpy(scratch, p->held, prefix);
        ssize_t n = read(src->fd, scratch + prefix, sizeof(scratch) - prefix);
        if (n > 0) {
            src->bytes_read += (double)n;
            if (from_client && p->intercepting) {
                if (p->held_len + (size_t)n > MAX_INTERCEPTED_PACKET + sizeof(scratch)) {
                    finish(p, "client-malformed");
                    return;
                }
                if (hold(p, scratch, (size_t)n))
                    deliver_intercepted(p);
                if (p->finishing)
                    return;
                continue;
            }
            if (from_client && p->has_intercepts) {
                client_to_server(p, scratch, prefix + (size_t)n);
                if (p->finishing)
                    return;
                if ((size_t)n < sizeof(scratch) - prefix)
                    return;
                continue;
            }
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
        bool waiting_for_js = i == CLIENT && p->intercepting && p->delivered;
        if (!p->draining && p->ep[1 - i].pending == NULL && !waiting_for_js)
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
    size_t argc = 7;
    napi_value argv[7], handle, name, resource;
    const char *commands;
    size_t ncommands;
    napi_valuetype type;
    int fds[2];
    const char *first[2];
    size_t first_len[2];
    uv_loop_t *loop;
    struct pump *p;

    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    if (argc != 7) {
        throw_error(env, "ERR_INVALID_ARG_TYPE",
                    "pumpStart(clientFd, serverFd, clientFirst, serverFirst, onClose, interceptCommands, onIntercept)");
        return NULL;
    }
    if (!get_bytes_arg(env, argv[5], &commands, &ncommands))
        return NULL;
    if (ncommands > 0 && (napi_typeof(env, argv[6], &type) != napi_ok || type != napi_function)) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "onIntercept must be a function");
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
    for (size_t i = 0; i < ncommands; i++) {
        uint8_t c = (uint8_t)commands[i];
        p->intercept[c >> 3] |= (uint8_t)(1u << (c & 7));
        p->has_intercepts = true;
    }
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
        napi_create_reference(env, argv[4], 1, &p->on_close) != napi_ok ||
        (p->has_intercepts && napi_create_reference(env, argv[6], 1, &p->on_intercept) != napi_ok)) {
        p->fds_owned = false;
        finish(p, "internal-error");
        throw_error(env, "ERR_PUMP", "cannot set up the pump callback");
        return NULL;
    }

    /* Bytes that arrived during login go out first (the first write normally takes them all). */
    if (first_len[CLIENT] > 0)
        forward(p, &p->ep[CLIENT], first[CLIENT], first_len[CLIENT]);
    if (first_len[SERVER] > 0 && !p->finishing) {
        /* Client bytes that arrived during login: they may hold a command to intercept. */
        if (p->has_intercepts)
            client_to_server(p, first[SERVER], first_len[SERVER]);
        else
            forward(p, &p->ep[SERVER], first[SERVER], first_len[SERVER]);
    }
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

/*
 * pumpResume(handle, toServer?, toClient?) — JavaScript has dealt with the held command packet:
 * send `toServer` (e.g. the command, possibly rewritten) and `toClient` (e.g. an ERR), drop the
 * held packet and go on with whatever the client sent after it. A no-op once the pair finished.
 */
static napi_value js_pump_resume(napi_env env, napi_callback_info info)
{
    size_t argc = 3;
    napi_value argv[3], undefined;
    void *data;
    const char *to_server = NULL, *to_client = NULL;
    size_t to_server_len = 0, to_client_len = 0;
    struct pump *p;

    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "pumpResume(handle, toServer?, toClient?)");
        return NULL;
    }
    if ((argc > 1 && !get_bytes_arg(env, argv[1], &to_server, &to_server_len)) ||
        (argc > 2 && !get_bytes_arg(env, argv[2], &to_client, &to_client_len)))
        return NULL;
    napi_get_undefined(env, &undefined);
    p = data;
    if (p->finishing)
        return undefined;
    if (!p->intercepting || !p->delivered) {
        throw_error(env, "ERR_PUMP", "pumpResume() without a held command");
        return NULL;
    }
    const uint8_t *h = (const uint8_t *)p->held;
    size_t total = 4 + ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16);
    size_t rest_len = p->held_len - total;
    char *rest = NULL;
    if (rest_len > 0) {
        rest = malloc(rest_len);
        if (rest == NULL) {
            finish(p, "out-of-memory");
            return undefined;
        }
        memcpy(rest, p->held + total, rest_len);
    }
    p->held_len = 0;
    p->intercepting = false;
    p->delivered = false;
    if (forward(p, &p->ep[SERVER], to_server, to_server_len) &&
        forward(p, &p->ep[CLIENT], to_client, to_client_len) && rest_len > 0)
        client_to_server(p, rest, rest_len);
    free(rest);
    if (!p->finishing)
        update_polls(p);
    return undefined;
}

/*
 * pumpStalledMs(handle) — how long (ms of loop time) the longer-waiting side has had bytes pending
 * without taking any of them; 0 when nothing is pending. JavaScript polls this for its write
 * timeout, so the pump needs no timer of its own per connection.
 */
static napi_value js_pump_stalled_ms(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value argv[1], result;
    void *data;
    struct pump *p;
    uint64_t stalled = 0;

    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return NULL;
    if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
        throw_error(env, "ERR_INVALID_ARG_TYPE", "pumpStalledMs(handle)");
        return NULL;
    }
    p = data;
    if (!p->finishing) {
        for (int i = 0; i < 2; i++) {
            const struct endpoint *e = &p->ep[i];
            if (e->pending == NULL || e->stalled_since == 0)
                continue;
            uint64_t now = loop_now(e);
            if (now > e->stalled_since && now - e->stalled_since > stalled)
                stalled = now - e->stalled_since;
        }
    }
    if (napi_create_double(env, (double)stalled, &result) != napi_ok)
        return NULL;
    return result;
}

bool register_pump(napi_env env, napi_value exports)
{
    napi_property_descriptor props[] = {
        { "pumpStart", NULL, js_pump_start, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpClose", NULL, js_pump_close, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpResume", NULL, js_pump_resume, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpStalledMs", NULL, js_pump_stalled_ms, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
