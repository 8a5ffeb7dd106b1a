/*
 * Sockets Node cannot make the way myproxy needs them, and the event loop's own counters:
 *
 *  - listenInet(address, port, datagram, backlog) -> fd
 *      a TCP listener or a bound UDP socket on a numeric address ('' = every address: [::]
 *      dual-stack), bound synchronously so that a config error names its line.
 *  - datagramListen(fd, onDatagram) -> handle, datagramClose(handle)
 *      receives datagrams on Node's loop (uv_poll); onDatagram(bytes, uid, truncated), where uid is
 *      the sender's (SCM_CREDENTIALS on a Unix socket with SO_PASSCRED) or -1.
 *  - connectDatagram(family, type, address, port) -> fd
 *      a connected, non-blocking datagram (or seqpacket) socket: family 'unix' (address = path or
 *      '\0'-led abstract name bytes), 'inet' (numeric IPv4/IPv6). Node cannot send AF_UNIX datagrams.
 *  - sendOn(fd, bytes) -> bytes sent (one send(), MSG_NOSIGNAL | MSG_DONTWAIT)
 *  - streamWatch(fd, onData) -> handle, streamWatchRead(handle, on), streamUnwatch(handle)
 *      reads a stream socket on Node's loop (uv_poll) without a net.Socket, while `on`: onData(bytes) for what
 *      arrived, onData(null, null) at its end, onData(null, code) after an error; the fd stays the
 *      caller's (a backend's login socket, handed to the byte pump afterwards).
 *  - acceptWatch(fd, refusal, onAccept) -> handle, acceptWatchRun(handle, on), acceptUnwatch(handle)
 *      accepts a listener's connections on Node's loop (uv_poll) as bare non-blocking fds:
 *      onAccept(fd, null, false) for each; onAccept(-1, code, false) when one was refused for want
 *      of descriptors (sent `refusal` from a reserve descriptor); onAccept(-1, code, true) when
 *      accepting halted (acceptWatchRun(handle, true) starts it again)
 *  - loopMetrics() -> [iterations, events]: uv_metrics_info of Node's loop
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "napi-util.h"
#include "pump.h"

/* Datagrams longer than this are cut (and reported as truncated). */
#define MAX_DATAGRAM 65536

static void throw_sys(napi_env env, int err, const char *syscall)
{
    char text[256], message[320];
    snprintf(message, sizeof(message), "%s(): %s", syscall, errno_text(err, text, sizeof(text)));
    throw_coded(env, errno_name(err), syscall, message);
}

/* A numeric IPv4 or IPv6 address ('' = the IPv6 wildcard) and port as a sockaddr. */
static bool inet_address(napi_env env, napi_value js_address, int64_t port, struct sockaddr_storage *ss,
                         socklen_t *len)
{
    char text[INET6_ADDRSTRLEN + 1];
    size_t n;
    if (napi_get_value_string_utf8(env, js_address, text, sizeof(text), &n) != napi_ok) {
        throw_type(env, "address must be a string");
        return false;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (n == 0) {
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_any;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return true;
    }
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return true;
    }
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return true;
    }
    throw_coded(env, "EINVAL", NULL, "not a numeric IP address");
    return false;
}

/* listenInet(address, port, datagram, backlog [, device [, reuse]]) -> fd */
static napi_value js_listen_inet(napi_env env, napi_callback_info info)
{
    napi_value argv[6];
    int64_t port, backlog;
    bool datagram, reuse = false;
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, zero = 0;
    size_t argc;
    char device[64] = "";
    size_t device_len = 0;

    if (!get_args(env, info, 4, 6, argv, &argc) || !get_int(env, argv[1], "port", 0, 65535, &port) ||
        !get_bool(env, argv[2], "datagram", &datagram) || !get_int(env, argv[3], "backlog", 1, INT32_MAX, &backlog) ||
        !inet_address(env, argv[0], port, &ss, &len))
        return NULL;
    if (argc > 4 && !is_nullish(env, argv[4]) &&
        napi_get_value_string_utf8(env, argv[4], device, sizeof(device), &device_len) != napi_ok) {
        throw_type(env, "device must be a string");
        return NULL;
    }
    if (argc > 5 && !is_nullish(env, argv[5]) && !get_bool(env, argv[5], "reuse", &reuse))
        return NULL;
    int fd = socket(ss.ss_family, (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_sys(env, errno, "socket");
        return NULL;
    }
    const char *syscall = "setsockopt";
    if ((!datagram || reuse) && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        goto fail;
    if (device_len > 0 && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, (socklen_t)device_len) != 0)
        goto fail;
    if (ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0)
        goto fail;
    syscall = "bind";
    if (bind(fd, (struct sockaddr *)&ss, len) != 0)
        goto fail;
    syscall = "listen";
    if (!datagram && listen(fd, (int)backlog) != 0)
        goto fail;
    return make_int(env, fd);
fail: {
    int err = errno;
    close(fd);
    throw_sys(env, err, syscall);
    return NULL;
}
}

/* joinMulticast(fd, group): IP_ADD_MEMBERSHIP / IPV6_ADD_MEMBERSHIP on any interface. */
static napi_value js_join_multicast(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    int fd;
    struct sockaddr_storage ss;
    socklen_t len;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_fd(env, argv[0], &fd) || !inet_address(env, argv[1], 0, &ss, &len))
        return NULL;
    int rc;
    if (ss.ss_family == AF_INET) {
        struct ip_mreq m;
        memset(&m, 0, sizeof(m));
        m.imr_multiaddr = ((struct sockaddr_in *)&ss)->sin_addr;
        m.imr_interface.s_addr = htonl(INADDR_ANY);
        rc = setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m));
    } else {
        struct ipv6_mreq m;
        memset(&m, 0, sizeof(m));
        m.ipv6mr_multiaddr = ((struct sockaddr_in6 *)&ss)->sin6_addr;
        m.ipv6mr_interface = ((struct sockaddr_in6 *)&ss)->sin6_scope_id;
        rc = setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &m, sizeof(m));
    }
    if (rc != 0) {
        throw_sys(env, errno, "setsockopt");
        return NULL;
    }
    return make_undefined(env);
}

/* ------------------------------------------------------------------ */
/* receiving datagrams                                                 */

struct receiver {
    uv_poll_t poll;
    napi_env env;
    napi_ref callback;
    napi_async_context async_context;
    int fd;
    bool closing;
    char buf[MAX_DATAGRAM];
};

static void receiver_closed(uv_handle_t *handle)
{
    struct receiver *r = handle->data;
    napi_delete_reference(r->env, r->callback);
    napi_async_destroy(r->env, r->async_context);
    close(r->fd);
    free(r);
}

static void receiver_stop(struct receiver *r)
{
    if (r->closing)
        return;
    r->closing = true;
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, receiver_closed);
}

static void on_datagram(uv_poll_t *handle, int status, int events)
{
    struct receiver *r = handle->data;
    (void)events;
    if (r->closing)
        return;
    if (status < 0)
        return; /* a socket error (ICMP): nothing to read; keep listening */
    for (int i = 0; i < 64 && !r->closing; i++) {
        char control[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = { r->buf, sizeof(r->buf) };
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = recvmsg(r->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN, or an error the next datagram may not have */
        }
        int64_t uid = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                uid = cred.uid;
            } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                /* Descriptors sent to us: never kept. */
                int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int k = 0; k < count; k++) {
                    int passed;
                    memcpy(&passed, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
                    close(passed);
                }
            }
        }
        napi_handle_scope scope;
        if (napi_open_handle_scope(r->env, &scope) != napi_ok)
            return;
        napi_value callback, global, argv[3], result, exception;
        void *data;
        if (napi_get_reference_value(r->env, r->callback, &callback) == napi_ok && callback != NULL &&
            napi_get_global(r->env, &global) == napi_ok &&
            napi_create_buffer_copy(r->env, (size_t)n, r->buf, &data, &argv[0]) == napi_ok &&
            napi_create_double(r->env, (double)uid, &argv[1]) == napi_ok &&
            napi_get_boolean(r->env, (msg.msg_flags & MSG_TRUNC) != 0, &argv[2]) == napi_ok) {
            if (napi_make_callback(r->env, r->async_context, global, callback, 3, argv, &result) != napi_ok &&
                napi_get_and_clear_last_exception(r->env, &exception) == napi_ok)
                napi_fatal_exception(r->env, exception);
        }
        napi_close_handle_scope(r->env, scope);
    }
}

static void receiver_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    struct receiver **slot = data;
    if (*slot != NULL)
        receiver_stop(*slot);
    free(slot);
}

/* datagramListen(fd, onDatagram) -> handle. The receiver owns the fd from now on. */
static napi_value js_datagram_listen(napi_env env, napi_callback_info info)
{
    napi_value argv[2], handle, resource, name;
    int fd;
    uv_loop_t *loop;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_fd(env, argv[0], &fd) || !get_function(env, argv[1], "onDatagram"))
        return NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
        throw_coded(env, "ERR_SOCKET", NULL, "no event loop");
        return NULL;
    }
    struct receiver *r = calloc(1, sizeof(*r));
    struct receiver **slot = calloc(1, sizeof(*slot));
    if (r == NULL || slot == NULL) {
        free(r);
        free(slot);
        throw_coded(env, "ENOMEM", NULL, "out of memory");
        return NULL;
    }
    r->env = env;
    r->fd = fd;
    r->poll.data = r;
    if (uv_poll_init(loop, &r->poll, fd) != 0) {
        free(r);
        free(slot);
        throw_coded(env, "ERR_SOCKET", NULL, "uv_poll_init failed");
        return NULL;
    }
    *slot = r;
    if (napi_create_reference(env, argv[1], 1, &r->callback) != napi_ok ||
        napi_create_object(env, &resource) != napi_ok ||
        napi_create_string_utf8(env, "myproxy.datagram", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_async_init(env, resource, name, &r->async_context) != napi_ok ||
        napi_create_external(env, slot, receiver_finalize, NULL, &handle) != napi_ok ||
        uv_poll_start(&r->poll, UV_READABLE, on_datagram) != 0) {
        throw_coded(env, "ERR_SOCKET", NULL, "cannot start receiving");
        return NULL;
    }
    return handle;
}

/* datagramClose(handle): stop receiving and close the socket (a no-op when done already). */
static napi_value js_datagram_close(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    void *data = NULL;
    if (!get_args(env, info, 1, 1, argv, NULL) || napi_get_value_external(env, argv[0], &data) != napi_ok) {
        throw_type(env, "handle must be a datagram handle");
        return NULL;
    }
    struct receiver **slot = data;
    if (*slot != NULL) {
        receiver_stop(*slot);
        *slot = NULL;
    }
    return make_undefined(env);
}

/* ------------------------------------------------------------------ */
/* reading a stream socket                                             */

/*
 * A backend's login is three or four small packets; a net.Socket for them costs more than
 * everything else the login does in JavaScript (its construction, the stream machinery per read,
 * and tearing it down for the pump). This reads the socket directly. The watch never owns the fd.
 */
struct stream_watch {
    uv_poll_t poll;
    napi_env env;
    napi_ref callback;
    struct stream_watch **slot; /* the JS handle's pointer to us, cleared when we are freed */
    int fd;
    bool reading;  /* the poll is started */
    bool finished; /* the end or an error was reported: nothing more is read */
    bool closing;
};

static void stream_watch_closed(uv_handle_t *handle)
{
    struct stream_watch *w = handle->data;
    if (w->slot != NULL)
        *w->slot = NULL;
    free(w);
}

static void stream_watch_close(struct stream_watch *w)
{
    if (w->closing)
        return;
    w->closing = true;
    if (w->callback != NULL)
        napi_delete_reference(w->env, w->callback);
    w->callback = NULL;
    /* uv_close() stops the poll at once, so a pump may watch the fd right after this. */
    uv_close((uv_handle_t *)&w->poll, stream_watch_closed);
}

/* Calls onData(bytes | null, code | null); false when JavaScript is gone. */
static bool stream_watch_report(struct stream_watch *w, const char *data, size_t len, const char *code)
{
    struct addon_env *st = addon_env_get(w->env);
    napi_handle_scope scope;
    bool ok = false;
    if (st == NULL || w->callback == NULL || napi_open_handle_scope(w->env, &scope) != napi_ok)
        return false;
    napi_value callback, global, argv[2], result, exception;
    void *copy;
    if (napi_get_reference_value(w->env, w->callback, &callback) == napi_ok && callback != NULL &&
        napi_get_global(w->env, &global) == napi_ok &&
        (data != NULL ? napi_create_buffer_copy(w->env, len, data, &copy, &argv[0]) : napi_get_null(w->env, &argv[0])) ==
            napi_ok &&
        (code != NULL ? napi_create_string_utf8(w->env, code, NAPI_AUTO_LENGTH, &argv[1])
                      : napi_get_null(w->env, &argv[1])) == napi_ok) {
        ok = true;
        if (napi_make_callback(w->env, addon_async_context(st), global, callback, 2, argv, &result) != napi_ok &&
            napi_get_and_clear_last_exception(w->env, &exception) == napi_ok)
            napi_fatal_exception(w->env, exception);
    }
    napi_close_handle_scope(w->env, scope);
    return ok;
}

static void on_stream_readable(uv_poll_t *handle, int status, int events)
{
    struct stream_watch *w = handle->data;
    struct addon_env *st = addon_env_get(w->env);
    (void)events;
    if (st == NULL)
        return;
    /* A few reads per wake-up at most, and none once JavaScript stopped reading. */
    for (int i = 0; i < 8 && w->reading && !w->closing; i++) {
        ssize_t n = status < 0 ? -1 : recv(w->fd, st->scratch, sizeof(st->scratch), MSG_DONTWAIT);
        if (n < 0 && status >= 0 && errno == EINTR)
            continue;
        if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            int err = status < 0 ? -status : errno;
            w->finished = true;
            w->reading = false;
            uv_poll_stop(&w->poll);
            stream_watch_report(w, NULL, 0, n == 0 ? NULL : errno_name(err));
            return;
        }
        if (!stream_watch_report(w, st->scratch, (size_t)n, NULL))
            return;
        /* A short read emptied the socket: another recv() would only say EAGAIN (the poll is
         * level-triggered, so anything that arrives meanwhile wakes us again). */
        if ((size_t)n < sizeof(st->scratch))
            return;
    }
}

static void stream_watch_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    struct stream_watch **slot = data;
    if (*slot != NULL) {
        (*slot)->slot = NULL;
        stream_watch_close(*slot);
    }
    free(slot);
}

static bool get_stream_watch(napi_env env, napi_value v, struct stream_watch ***out)
{
    void *data = NULL;
    if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL)
        return throw_type(env, "handle must be a stream watch handle");
    *out = data;
    return true;
}

/* streamWatch(fd, onData) -> handle; nothing is read before streamWatchRead(handle, true). */
static napi_value js_stream_watch(napi_env env, napi_callback_info info)
{
    napi_value argv[2], handle;
    int fd;
    uv_loop_t *loop;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_fd(env, argv[0], &fd) || !get_function(env, argv[1], "onData"))
        return NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
        throw_coded(env, "ERR_SOCKET", NULL, "no event loop");
        return NULL;
    }
    struct stream_watch *w = calloc(1, sizeof(*w));
    struct stream_watch **slot = calloc(1, sizeof(*slot));
    if (w == NULL || slot == NULL) {
        free(w);
        free(slot);
        throw_coded(env, "ENOMEM", NULL, "out of memory");
        return NULL;
    }
    w->env = env;
    w->fd = fd;
    w->poll.data = w;
    if (uv_poll_init(loop, &w->poll, fd) != 0) {
        free(w);
        free(slot);
        throw_coded(env, "ERR_SOCKET", NULL, "uv_poll_init failed");
        return NULL;
    }
    if (napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok ||
        napi_create_external(env, slot, stream_watch_finalize, NULL, &handle) != napi_ok) {
        free(slot);
        stream_watch_close(w);
        throw_coded(env, "ERR_SOCKET", NULL, "cannot start reading");
        return NULL;
    }
    *slot = w;
    w->slot = slot;
    return handle;
}

/* streamWatchRead(handle, on): read (again) or pause; a no-op after the end, or once unwatched. */
static napi_value js_stream_watch_read(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    struct stream_watch **slot = NULL;
    bool on;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_stream_watch(env, argv[0], &slot) ||
        !get_bool(env, argv[1], "on", &on))
        return NULL;
    struct stream_watch *w = *slot;
    if (w == NULL || w->closing || w->finished || w->reading == on)
        return make_undefined(env);
    if (on ? uv_poll_start(&w->poll, UV_READABLE, on_stream_readable) : uv_poll_stop(&w->poll)) {
        throw_coded(env, "ERR_SOCKET", NULL, "cannot change reading");
        return NULL;
    }
    w->reading = on;
    return make_undefined(env);
}

/* streamUnwatch(handle): stop for good (the fd is left open); a no-op when done already. */
static napi_value js_stream_unwatch(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    struct stream_watch **slot = NULL;
    if (!get_args(env, info, 1, 1, argv, NULL) || !get_stream_watch(env, argv[0], &slot))
        return NULL;
    if (*slot != NULL) {
        (*slot)->slot = NULL;
        stream_watch_close(*slot);
        *slot = NULL;
    }
    return make_undefined(env);
}

/* ------------------------------------------------------------------ */
/* accepting                                                           */

/*
 * A listener's connections as bare fds: a net.Server would wrap each in a net.Socket whose
 * construction, stream machinery and tear-down (the pump takes the fd) cost more than the rest
 * of a Unix client's login in JavaScript. The acceptor never owns the listening fd.
 *
 * Out of descriptors (EMFILE, ENFILE), the kernel keeps the connection queued and the fd stays
 * readable, so a level-triggered loop would spin. The acceptor keeps one descriptor in reserve
 * (of /dev/null): it frees it, takes the waiting connection, sends it `refusal` (MySQL's
 * "Too many connections") and closes it, then takes the reserve back. Where even that fails,
 * it stops and says so; JavaScript starts it again after a pause.
 */
struct acceptor {
    uv_poll_t poll;
    napi_env env;
    napi_ref callback;
    struct acceptor **slot;
    int fd;
    int reserve; /* -1 when it could not be had */
    bool running;
    bool closing;
    size_t refusal_len;
    uint8_t refusal[64];
};

static void acceptor_closed(uv_handle_t *handle)
{
    struct acceptor *a = handle->data;
    if (a->slot != NULL)
        *a->slot = NULL;
    if (a->reserve >= 0)
        close(a->reserve);
    free(a);
}

static void acceptor_close(struct acceptor *a)
{
    if (a->closing)
        return;
    a->closing = true;
    a->running = false;
    if (a->callback != NULL)
        napi_delete_reference(a->env, a->callback);
    a->callback = NULL;
    uv_close((uv_handle_t *)&a->poll, acceptor_closed);
}

/* onAccept(fd, code, stopped): fd >= 0 a connection; -1 a failure `code` (refused or, with `stopped`, halted). */
static void acceptor_report(struct acceptor *a, int fd, const char *code, bool stopped)
{
    struct addon_env *st = addon_env_get(a->env);
    napi_handle_scope scope;
    if (st == NULL || a->callback == NULL || napi_open_handle_scope(a->env, &scope) != napi_ok) {
        if (fd >= 0)
            close(fd);
        return;
    }
    napi_value callback, global, argv[3], result, exception;
    if (napi_get_reference_value(a->env, a->callback, &callback) == napi_ok && callback != NULL &&
        napi_get_global(a->env, &global) == napi_ok && napi_create_int32(a->env, fd, &argv[0]) == napi_ok &&
        (code != NULL ? napi_create_string_utf8(a->env, code, NAPI_AUTO_LENGTH, &argv[1])
                      : napi_get_null(a->env, &argv[1])) == napi_ok &&
        napi_get_boolean(a->env, stopped, &argv[2]) == napi_ok) {
        if (napi_make_callback(a->env, addon_async_context(st), global, callback, 3, argv, &result) != napi_ok &&
            napi_get_and_clear_last_exception(a->env, &exception) == napi_ok)
            napi_fatal_exception(a->env, exception);
    } else if (fd >= 0) {
        close(fd);
    }
    napi_close_handle_scope(a->env, scope);
}

static void acceptor_halt(struct acceptor *a, int err)
{
    a->running = false;
    uv_poll_stop(&a->poll);
    acceptor_report(a, -1, errno_name(err), true);
}

static void on_acceptable(uv_poll_t *handle, int status, int events)
{
    struct acceptor *a = handle->data;
    (void)events;
    if (status < 0) {
        acceptor_halt(a, -status);
        return;
    }
    /* A bounded batch per wake-up, so one busy listener cannot starve the rest of the loop. */
    for (int i = 0; i < 64 && a->running && !a->closing; i++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            acceptor_report(a, fd, NULL, false);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if ((err == EMFILE || err == ENFILE) && a->reserve >= 0) {
            close(a->reserve);
            a->reserve = -1;
            int refused = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (refused >= 0) {
                (void)send(refused, a->refusal, a->refusal_len, MSG_DONTWAIT | MSG_NOSIGNAL);
                close(refused);
            }
            a->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
            acceptor_report(a, -1, errno_name(err), false);
            continue;
        }
        acceptor_halt(a, err);
        return;
    }
}

static void acceptor_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    struct acceptor **slot = data;
    if (*slot != NULL) {
        (*slot)->slot = NULL;
        acceptor_close(*slot);
    }
    free(slot);
}

static bool get_acceptor(napi_env env, napi_value v, struct acceptor ***out)
{
    void *data = NULL;
    if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL)
        return throw_type(env, "handle must be an acceptor handle");
    *out = data;
    return true;
}

/* acceptWatch(listeningFd, refusal, onAccept) -> handle, accepting at once. */
static napi_value js_accept_watch(napi_env env, napi_callback_info info)
{
    napi_value argv[3], handle;
    int fd;
    void *refusal = NULL;
    size_t refusal_len = 0;
    bool is_buffer = false;
    uv_loop_t *loop;
    if (!get_args(env, info, 3, 3, argv, NULL) || !get_fd(env, argv[0], &fd) ||
        !get_function(env, argv[2], "onAccept"))
        return NULL;
    if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
        napi_get_buffer_info(env, argv[1], &refusal, &refusal_len) != napi_ok || refusal_len > 64) {
        throw_type(env, "refusal must be a Buffer of at most 64 bytes");
        return NULL;
    }
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
        throw_coded(env, "ERR_SOCKET", NULL, "no event loop");
        return NULL;
    }
    struct acceptor *a = calloc(1, sizeof(*a));
    struct acceptor **slot = calloc(1, sizeof(*slot));
    if (a == NULL || slot == NULL) {
        free(a);
        free(slot);
        throw_coded(env, "ENOMEM", NULL, "out of memory");
        return NULL;
    }
    a->env = env;
    a->fd = fd;
    a->poll.data = a;
    a->refusal_len = refusal_len;
    memcpy(a->refusal, refusal, refusal_len);
    a->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (uv_poll_init(loop, &a->poll, fd) != 0) {
        if (a->reserve >= 0)
            close(a->reserve);
        free(a);
        free(slot);
        throw_coded(env, "ERR_SOCKET", NULL, "uv_poll_init failed for the listening fd");
        return NULL;
    }
    if (napi_create_reference(env, argv[2], 1, &a->callback) != napi_ok ||
        napi_create_external(env, slot, acceptor_finalize, NULL, &handle) != napi_ok ||
        uv_poll_start(&a->poll, UV_READABLE, on_acceptable) != 0) {
        free(slot);
        acceptor_close(a);
        throw_coded(env, "ERR_SOCKET", NULL, "cannot start accepting");
        return NULL;
    }
    a->running = true;
    *slot = a;
    a->slot = slot;
    return handle;
}

/* acceptWatchRun(handle, on): accept again after a halt, or pause; a no-op once unwatched. */
static napi_value js_accept_watch_run(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    struct acceptor **slot = NULL;
    bool on;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_acceptor(env, argv[0], &slot) || !get_bool(env, argv[1], "on", &on))
        return NULL;
    struct acceptor *a = *slot;
    if (a == NULL || a->closing || a->running == on)
        return make_undefined(env);
    if (on && a->reserve < 0)
        a->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (on ? uv_poll_start(&a->poll, UV_READABLE, on_acceptable) : uv_poll_stop(&a->poll)) {
        throw_coded(env, "ERR_SOCKET", NULL, "cannot change accepting");
        return NULL;
    }
    a->running = on;
    return make_undefined(env);
}

/* acceptUnwatch(handle): stop for good (the listening fd is left open). */
static napi_value js_accept_unwatch(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    struct acceptor **slot = NULL;
    if (!get_args(env, info, 1, 1, argv, NULL) || !get_acceptor(env, argv[0], &slot))
        return NULL;
    if (*slot != NULL) {
        (*slot)->slot = NULL;
        acceptor_close(*slot);
        *slot = NULL;
    }
    return make_undefined(env);
}

/* ------------------------------------------------------------------ */
/* sending                                                             */

/* connectDatagram(family, type, address, port) -> fd (connected, non-blocking). */
static napi_value js_connect_datagram(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    char family[8], type_name[16];
    size_t n;
    int64_t port;
    struct sockaddr_storage ss;
    socklen_t len;

    if (!get_args(env, info, 4, 4, argv, NULL) ||
        napi_get_value_string_utf8(env, argv[0], family, sizeof(family), &n) != napi_ok ||
        napi_get_value_string_utf8(env, argv[1], type_name, sizeof(type_name), &n) != napi_ok ||
        !get_int(env, argv[3], "port", 0, 65535, &port)) {
        bool pending = false;
        if (napi_is_exception_pending(env, &pending) != napi_ok || !pending)
            throw_type(env, "connectDatagram(family, type, address, port)");
        return NULL;
    }
    int type = strcmp(type_name, "seqpacket") == 0 ? SOCK_SEQPACKET
               : strcmp(type_name, "stream") == 0  ? SOCK_STREAM
                                                   : SOCK_DGRAM;
    memset(&ss, 0, sizeof(ss));
    if (strcmp(family, "unix") == 0) {
        const uint8_t *name;
        size_t name_len;
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        if (!get_optional_bytes(env, argv[2], "address", &name, &name_len))
            return NULL;
        if (name_len == 0 || name_len >= sizeof(un->sun_path)) {
            throw_coded(env, "ENAMETOOLONG", "connect", "bad socket name length");
            return NULL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, name, name_len);
        /* An abstract name (leading NUL) has no terminating NUL: its length is exact. */
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len + (name[0] == 0 ? 0 : 1));
    } else if (!inet_address(env, argv[2], port, &ss, &len)) {
        return NULL;
    }
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_sys(env, errno, "socket");
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        throw_sys(env, err, "connect");
        return NULL;
    }
    return make_int(env, fd);
}

/* sendOn(fd, bytes) -> bytes sent (one non-blocking send). */
static napi_value js_send_on(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    int fd;
    const uint8_t *data;
    size_t len;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_fd(env, argv[0], &fd) ||
        !get_optional_bytes(env, argv[1], "bytes", &data, &len))
        return NULL;
    ssize_t n;
    do
        n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        throw_sys(env, errno, "send");
        return NULL;
    }
    return make_double(env, (double)n);
}

/* ------------------------------------------------------------------ */
/* the event loop                                                      */

/* loopMetrics() -> [iterations, events processed] of Node's libuv loop. */
static napi_value js_loop_metrics(napi_env env, napi_callback_info info)
{
    (void)info;
    uv_loop_t *loop;
    uv_metrics_t m;
    napi_value result;
    memset(&m, 0, sizeof(m));
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_metrics_info(loop, &m) != 0) {
        throw_coded(env, "ERR_SOCKET", NULL, "no loop metrics");
        return NULL;
    }
    if (napi_create_array_with_length(env, 2, &result) != napi_ok ||
        napi_set_element(env, result, 0, make_double(env, (double)m.loop_count)) != napi_ok ||
        napi_set_element(env, result, 1, make_double(env, (double)m.events)) != napi_ok)
        return NULL;
    return result;
}

bool register_sockets(napi_env env, napi_value exports)
{
    napi_property_descriptor props[] = {
        { "listenInet", NULL, js_listen_inet, NULL, NULL, NULL, napi_enumerable, NULL },
        { "joinMulticast", NULL, js_join_multicast, NULL, NULL, NULL, napi_enumerable, NULL },
        { "datagramListen", NULL, js_datagram_listen, NULL, NULL, NULL, napi_enumerable, NULL },
        { "datagramClose", NULL, js_datagram_close, NULL, NULL, NULL, napi_enumerable, NULL },
        { "connectDatagram", NULL, js_connect_datagram, NULL, NULL, NULL, napi_enumerable, NULL },
        { "sendOn", NULL, js_send_on, NULL, NULL, NULL, napi_enumerable, NULL },
        { "streamWatch", NULL, js_stream_watch, NULL, NULL, NULL, napi_enumerable, NULL },
        { "streamWatchRead", NULL, js_stream_watch_read, NULL, NULL, NULL, napi_enumerable, NULL },
        { "streamUnwatch", NULL, js_stream_unwatch, NULL, NULL, NULL, napi_enumerable, NULL },
        { "acceptWatch", NULL, js_accept_watch, NULL, NULL, NULL, napi_enumerable, NULL },
        { "acceptWatchRun", NULL, js_accept_watch_run, NULL, NULL, NULL, napi_enumerable, NULL },
        { "acceptUnwatch", NULL, js_accept_unwatch, NULL, NULL, NULL, napi_enumerable, NULL },
        { "loopMetrics", NULL, js_loop_metrics, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
