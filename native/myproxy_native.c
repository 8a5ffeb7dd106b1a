/*
 * myproxy_native: what Node 20 cannot do itself, in one N-API addon (libc and N-API only,
 * NAPI_VERSION 8, context-aware: every Node environment has its own state).
 *
 * Unix sockets and peers (this file):
 *  - listenUnix(name, abstract, backlog, mode) -> fd
 *      AF_UNIX listener with the exact address length (Node 20 / libuv < 1.48
 *      pads abstract names with NULs to 108 bytes), stale socket file
 *      replacement, chmod of the socket file, SO_PASSCRED.
 *  - connectUnix(name, abstract) -> fd
 *      non-blocking AF_UNIX stream connect with the exact address length.
 *  - peerCredentials(fd) -> { pid, uid, gid } | null
 *      SO_PEERCRED of a connected AF_UNIX socket.
 *  - peerPidfd(fd) -> pidfd | null
 *      SO_PEERPIDFD of a connected AF_UNIX socket (Linux >= 6.5).
 *  - pidfdOpen(pid) -> pidfd | null
 *      pidfd_open(2), the fallback for kernels without SO_PEERPIDFD.
 *  - peerIdentity(fd, out, usePeerPidfd) -> 0 | 1 | 2
 *      the three above in one call, as an accepted connection needs them.
 *  - getXattr(path, name) -> Buffer | null
 *      lgetxattr(2) with a 4096-byte value buffer.
 *  - closeFd(fd), dupFd(fd) -> fd, recvAvailable(fd, max) -> Buffer | null, fdQuiet(fd) -> boolean
 *  - fdLimit() -> the soft RLIMIT_NOFILE; openFdCount() -> open fds of the process
 *  - addonTestFail(point), addonLivePumps(): failure injection and leak checks for tests
 * The byte pump (pump.c): pumpStart, pumpResume, pumpClose, pumpAbort, pumpStalledMs, pumpInfo.
 * The response tracker for the JavaScript relay (tracker-binding.c): tracker*.
 * Inet listeners, datagrams, the event loop's counters (sockets.c): listenInet, datagramListen,
 * datagramClose, connectDatagram, sendOn, loopMetrics.
 *
 * Failures throw a JS Error whose `code` is the errno name ("EACCES", ...),
 * whose `syscall` is the failing call, and whose message looks like
 *   bind("/run/x.sock"): Permission denied
 * (abstract names are shown as "@name").
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#include "napi-util.h"
#include "pump.h"

#define SUN_PATH_SIZE (sizeof(((struct sockaddr_un *)0)->sun_path))

/* Longest name accepted: a path needs its terminating NUL inside sun_path,
 * an abstract name needs the leading NUL. Both leave 107 bytes. */
#define MAX_NAME_LEN (SUN_PATH_SIZE - 1)

/* Room for a displayed name: every byte may become "\xNN", plus '@'. */
#define DISPLAY_SIZE (MAX_NAME_LEN * 4 + 8)

/* ------------------------------------------------------------------ */
/* socket names                                                        */

struct unix_name {
    const uint8_t *bytes;
    size_t len;
    bool abstract;
    /* NUL-terminated copy of a path name (unused for abstract names). */
    char path[SUN_PATH_SIZE];
    /* Printable form for messages: "/run/x.sock" or "@name". */
    char display[DISPLAY_SIZE];
};

static void make_display(struct unix_name *n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t len = n->len > MAX_NAME_LEN ? MAX_NAME_LEN : n->len;

    if (n->abstract)
        n->display[o++] = '@';
    for (size_t i = 0; i < len; i++) {
        uint8_t c = n->bytes[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            n->display[o++] = (char)c;
        } else {
            n->display[o++] = '\\';
            n->display[o++] = 'x';
            n->display[o++] = hex[c >> 4];
            n->display[o++] = hex[c & 0xf];
        }
    }
    if (len < n->len) {
        memcpy(n->display + o, "...", 3);
        o += 3;
    }
    n->display[o] = '\0';
}

/* Fills addr and returns the exact address length. */
static socklen_t make_addr(const struct unix_name *n, struct sockaddr_un *addr)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (n->abstract) {
        addr->sun_path[0] = '\0';
        memcpy(addr->sun_path + 1, n->bytes, n->len);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n->len);
    }
    memcpy(addr->sun_path, n->bytes, n->len);
    addr->sun_path[n->len] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->len + 1);
}

/* ------------------------------------------------------------------ */
/* throwing                                                            */

/* Throws `syscall("name"): <strerror(err)>` (or `syscall(): ...`). */
static void throw_errno(napi_env env, int err, const char *syscall,
                        const struct unix_name *n)
{
    char text[256], message[DISPLAY_SIZE + 400];
    const char *desc = errno_text(err, text, sizeof(text));

    if (n != NULL)
        snprintf(message, sizeof(message), "%s(\"%s\"): %s", syscall, n->display, desc);
    else
        snprintf(message, sizeof(message), "%s(): %s", syscall, desc);
    throw_coded(env, errno_name(err), syscall, message);
}

/* Throws `syscall(fd N): <strerror(err)>`. */
static void throw_errno_fd(napi_env env, int err, const char *syscall, int fd)
{
    char text[256], message[400];

    snprintf(message, sizeof(message), "%s(fd %d): %s", syscall, fd,
             errno_text(err, text, sizeof(text)));
    throw_coded(env, errno_name(err), syscall, message);
}

/*
 * Reads (name: Uint8Array, abstract: boolean) into *n. Throws on invalid
 * input: ENAMETOOLONG when the name does not fit into sun_path, EINVAL for an
 * empty name or a path containing a NUL byte.
 */
static bool get_name(napi_env env, napi_value js_name, napi_value js_abstract,
                     const char *syscall, struct unix_name *n)
{
    bool is_typed = false;
    napi_typedarray_type type;
    size_t length;
    void *data = NULL;

    memset(n, 0, sizeof(*n));
    if (!get_bool(env, js_abstract, "abstract", &n->abstract))
        return false;
    if (napi_is_typedarray(env, js_name, &is_typed) != napi_ok || !is_typed ||
        napi_get_typedarray_info(env, js_name, &type, &length, &data, NULL, NULL) != napi_ok ||
        type != napi_uint8_array) {
        throw_type(env, "name must be a Buffer or Uint8Array");
        return false;
    }
    n->bytes = data;
    n->len = length;
    make_display(n);

    if (n->len == 0) {
        /* An empty abstract name would mean autobind; an empty path is invalid. */
        throw_errno(env, EINVAL, syscall, n);
        return false;
    }
    if (n->len > MAX_NAME_LEN) {
        char text[256], message[DISPLAY_SIZE + 400];
        snprintf(message, sizeof(message), "%s(\"%s\"): %s (%zu bytes, at most %zu allowed)",
                 syscall, n->display, errno_text(ENAMETOOLONG, text, sizeof(text)),
                 n->len, (size_t)MAX_NAME_LEN);
        throw_coded(env, "ENAMETOOLONG", syscall, message);
        return false;
    }
    if (!n->abstract) {
        if (memchr(n->bytes, '\0', n->len) != NULL) {
            char message[DISPLAY_SIZE + 100];
            snprintf(message, sizeof(message),
                     "%s(\"%s\"): Invalid argument (path contains a NUL byte)",
                     syscall, n->display);
            throw_coded(env, "EINVAL", syscall, message);
            return false;
        }
        memcpy(n->path, n->bytes, n->len);
        n->path[n->len] = '\0';
    }
    return true;
}

static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

static int new_stream_socket(void)
{
    return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* ------------------------------------------------------------------ */
/* listenUnix                                                          */

/* Outcome of probing an existing socket file with connect(). */
enum probe_result {
    PROBE_STALE,   /* nobody listens: the file may be replaced */
    PROBE_IN_USE,  /* a process accepts (or queues) connections on it */
    PROBE_ERROR,   /* could not tell; errno is set */
};

static enum probe_result probe_socket(const struct unix_name *n, int type)
{
    struct sockaddr_un addr;
    socklen_t len = make_addr(n, &addr);
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc, err;

    if (fd < 0)
        return PROBE_ERROR;
    rc = connect(fd, (struct sockaddr *)&addr, len);
    err = errno;
    close(fd);
    if (rc == 0)
        return PROBE_IN_USE;
    switch (err) {
    case ECONNREFUSED:
    case ENOENT:
        return PROBE_STALE;
    case EINPROGRESS:
    case EAGAIN: /* listener alive, backlog full */
        return PROBE_IN_USE;
    default:
        errno = err;
        return PROBE_ERROR;
    }
}

/*
 * Binds fd to a path. On EADDRINUSE replaces a stale socket file (one that
 * refuses connections); never removes anything that is not a socket, nor a
 * socket somebody is listening on. Throws and returns false on failure.
 */
static bool bind_path(napi_env env, int fd, const struct unix_name *n, int type)
{
    struct sockaddr_un addr;
    socklen_t len = make_addr(n, &addr);
    char message[DISPLAY_SIZE + 400];

    for (int attempt = 0;; attempt++) {
        struct stat st;
        enum probe_result probe;

        if (bind(fd, (struct sockaddr *)&addr, len) == 0)
            return true;
        if (errno != EADDRINUSE || attempt >= 2) {
            throw_errno(env, errno, "bind", n);
            return false;
        }

        if (lstat(n->path, &st) != 0) {
            if (errno == ENOENT)
                continue; /* vanished meanwhile: just try again */
            throw_errno(env, errno, "lstat", n);
            return false;
        }
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(message, sizeof(message),
                     "bind(\"%s\"): File exists and is not a socket", n->display);
            throw_coded(env, "EEXIST", "bind", message);
            return false;
        }

        probe = probe_socket(n, type);
        if (probe == PROBE_IN_USE) {
            snprintf(message, sizeof(message),
                     "bind(\"%s\"): Address already in use: the socket is in use by another process",
                     n->display);
            throw_coded(env, "EADDRINUSE", "bind", message);
            return false;
        }
        if (probe == PROBE_ERROR) {
            char text[256];
            snprintf(message, sizeof(message),
                     "bind(\"%s\"): Address already in use (probing the existing socket failed: %s)",
                     n->display, errno_text(errno, text, sizeof(text)));
            throw_coded(env, "EADDRINUSE", "bind", message);
            return false;
        }

        /* Stale: remove the leftover socket file and bind again. */
        if (unlink(n->path) != 0 && errno != ENOENT) {
            throw_errno(env, errno, "unlink", n);
            return false;
        }
    }
}

/*
 * listenUnix(name, abstract, backlog, mode [, datagram]) -> fd. With `datagram` true: a bound
 * SOCK_DGRAM socket (the control protocol's), not listening.
 */
static napi_value js_listen_unix(napi_env env, napi_callback_info info)
{
    napi_value argv[5];
    struct unix_name n;
    int64_t backlog, mode;
    int fd, one = 1;
    bool bound_path = false, datagram = false;
    const char *syscall = "listen";
    size_t argc;

    if (!get_args(env, info, 4, 5, argv, &argc) ||
        !get_name(env, argv[0], argv[1], "bind", &n) ||
        !get_int(env, argv[2], "backlog", INT32_MIN, INT32_MAX, &backlog) ||
        !get_int(env, argv[3], "mode", 0, 07777, &mode) ||
        (argc > 4 && !is_nullish(env, argv[4]) && !get_bool(env, argv[4], "datagram", &datagram)))
        return NULL;

    int type = datagram ? SOCK_DGRAM : SOCK_STREAM;
    fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_errno(env, errno, "socket", NULL);
        return NULL;
    }

    if (n.abstract) {
        struct sockaddr_un addr;
        socklen_t len = make_addr(&n, &addr);
        if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
            throw_errno(env, errno, "bind", &n);
            close_keep_errno(fd);
            return NULL;
        }
    } else {
        if (!bind_path(env, fd, &n, type)) {
            close(fd);
            return NULL;
        }
        bound_path = true;
        if (chmod(n.path, (mode_t)mode) != 0) {
            syscall = "chmod";
            goto fail;
        }
    }

    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
        syscall = "setsockopt";
        goto fail;
    }
    if (!datagram && listen(fd, (int)backlog) != 0) {
        syscall = "listen";
        goto fail;
    }
    return make_int(env, fd);

fail:
    throw_errno(env, errno, syscall, &n);
    close_keep_errno(fd);
    if (bound_path)
        unlink(n.path); /* we created it; do not leave a stale file behind */
    return NULL;
}

/* ------------------------------------------------------------------ */
/* connectUnix                                                         */

static napi_value js_connect_unix(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    struct unix_name n;
    struct sockaddr_un addr;
    socklen_t len;
    int fd;

    if (!get_args(env, info, 2, 2, argv, NULL) ||
        !get_name(env, argv[0], argv[1], "connect", &n))
        return NULL;

    fd = new_stream_socket();
    if (fd < 0) {
        throw_errno(env, errno, "socket", NULL);
        return NULL;
    }
    len = make_addr(&n, &addr);
    if (connect(fd, (struct sockaddr *)&addr, len) != 0 && errno != EINPROGRESS) {
        throw_errno(env, errno, "connect", &n);
        close_keep_errno(fd);
        return NULL;
    }
    return make_int(env, fd);
}

/* 1 if fd is an AF_UNIX socket, 0 if another kind, -1 (JS error thrown) if getsockname fails. */
static int is_unix_socket(napi_env env, int fd)
{
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);

    memset(&ss, 0, sizeof(ss));
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) != 0) {
        throw_errno_fd(env, errno, "getsockname", fd);
        return -1;
    }
    return ss.ss_family == AF_UNIX;
}

/* ------------------------------------------------------------------ */
/* peerCredentials                                                     */

static bool set_uint32(napi_env env, napi_value obj, const char *key, uint32_t value)
{
    napi_value v;
    return napi_create_uint32(env, value, &v) == napi_ok &&
           napi_set_named_property(env, obj, key, v) == napi_ok;
}

static napi_value js_peer_credentials(napi_env env, napi_callback_info info)
{
    napi_value argv[1], result, pid;
    struct ucred cred;
    socklen_t cred_len = sizeof(cred);
    int fd;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_fd(env, argv[0], &fd))
        return NULL;

    /* SO_PEERCRED "succeeds" on TCP sockets with pid 0 / uid -1: skip them. */
    switch (is_unix_socket(env, fd)) {
    case -1:
        return NULL;
    case 0:
        return make_null(env);
    }

    memset(&cred, 0, sizeof(cred));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
        throw_errno_fd(env, errno, "getsockopt", fd);
        return NULL;
    }
    if (cred.pid == 0) /* not connected, or a peer without credentials */
        return make_null(env);

    if (napi_create_object(env, &result) != napi_ok ||
        napi_create_int32(env, (int32_t)cred.pid, &pid) != napi_ok ||
        napi_set_named_property(env, result, "pid", pid) != napi_ok ||
        !set_uint32(env, result, "uid", (uint32_t)cred.uid) ||
        !set_uint32(env, result, "gid", (uint32_t)cred.gid))
        return NULL;
    return result;
}

/* ------------------------------------------------------------------ */
/* peerPidfd, pidfdOpen                                                */

/* Older headers (glibc < 2.39) lack the option; the value is the same on every architecture. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/*
 * A pidfd of the process at the other end of a connected AF_UNIX socket
 * (close-on-exec, as every pidfd). null when the fd is not AF_UNIX or the
 * kernel knows no live peer process (ENODATA, ESRCH, EINVAL: the peer has
 * already exited on kernels that refuse pidfds of exited processes; newer
 * kernels hand out such a pidfd, whose fdinfo then shows "Pid: -1").
 * Throws ENOPROTOOPT on kernels older than 6.5.
 */
static napi_value js_peer_pidfd(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd, pidfd = -1;
    socklen_t pidfd_len = sizeof(pidfd);

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_fd(env, argv[0], &fd))
        return NULL;

    switch (is_unix_socket(env, fd)) {
    case -1:
        return NULL;
    case 0:
        return make_null(env);
    }

    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pidfd_len) != 0) {
        if (errno == ENODATA || errno == ESRCH || errno == EINVAL)
            return make_null(env);
        throw_errno_fd(env, errno, "getsockopt", fd);
        return NULL;
    }
    if (pidfd < 0 || pidfd_len != sizeof(pidfd)) {
        /* Cannot happen; never leak a descriptor if it does. */
        if (pidfd >= 0)
            close(pidfd);
        return make_null(env);
    }
    return make_int(env, pidfd);
}

/*
 * pidfd_open(pid, 0): null when there is no such process (ESRCH) or the
 * kernel has no pidfds (ENOSYS); throws on other errors (EMFILE, ...).
 */
static napi_value js_pidfd_open(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int64_t pid;
    long pidfd;

    if (!get_args(env, info, 1, 1, argv, NULL) ||
        !get_int(env, argv[0], "pid", 1, INT32_MAX, &pid))
        return NULL;
    pidfd = syscall(SYS_pidfd_open, (pid_t)pid, 0u);
    if (pidfd < 0) {
        if (errno == ESRCH || errno == ENOSYS)
            return make_null(env);
        throw_errno(env, errno, "pidfd_open", NULL);
        return NULL;
    }
    return make_int(env, (int32_t)pidfd);
}

/*
 * peerIdentity(fd, out, usePeerPidfd) -> what peerCredentials() and then peerPidfd() (or, with
 * usePeerPidfd false, pidfdOpen()) tell about an accepted socket, in one call: one getsockname()
 * instead of two, and no object made. Returns 0 when the fd is not AF_UNIX or the kernel knows no
 * peer credentials. Otherwise writes pid, uid, gid and the pidfd (-1: none) into `out` (a
 * Float64Array of 4) and returns 1, or 2 when the kernel does not know SO_PEERPIDFD (ENOPROTOOPT:
 * the pidfd then comes from pidfd_open(pid), and the caller should not ask for SO_PEERPIDFD again).
 * As with peerPidfd(), a peer that SO_PEERPIDFD says is gone gets no pidfd_open() fallback (the
 * PID may already belong to another process). Throws on other failures (EMFILE, ...).
 */
static napi_value js_peer_identity(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    struct ucred cred;
    socklen_t cred_len = sizeof(cred);
    double *out;
    bool use_peer_pidfd;
    int fd, pidfd = -1, status = 1;

    if (!get_args(env, info, 3, 3, argv, NULL) || !get_fd(env, argv[0], &fd) ||
        !get_optional_f64(env, argv[1], "out", 4, &out) || !get_bool(env, argv[2], "usePeerPidfd", &use_peer_pidfd))
        return NULL;
    if (out == NULL) {
        throw_type(env, "out must be a Float64Array of 4");
        return NULL;
    }

    switch (is_unix_socket(env, fd)) {
    case -1:
        return NULL;
    case 0:
        return make_int(env, 0);
    }
    memset(&cred, 0, sizeof(cred));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
        throw_errno_fd(env, errno, "getsockopt", fd);
        return NULL;
    }
    if (cred.pid == 0) /* not connected, or a peer without credentials */
        return make_int(env, 0);

    if (use_peer_pidfd) {
        socklen_t pidfd_len = sizeof(pidfd);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pidfd_len) != 0) {
            pidfd = -1;
            if (errno == ENOPROTOOPT) {
                status = 2;
                use_peer_pidfd = false;
            } else if (errno != ENODATA && errno != ESRCH && errno != EINVAL) {
                throw_errno_fd(env, errno, "getsockopt", fd);
                return NULL;
            }
        } else if (pidfd < 0 || pidfd_len != sizeof(pidfd)) {
            /* Cannot happen; never leak a descriptor if it does. */
            if (pidfd >= 0)
                close(pidfd);
            pidfd = -1;
        }
    }
    if (!use_peer_pidfd) {
        long r = syscall(SYS_pidfd_open, cred.pid, 0u);
        if (r < 0 && errno != ESRCH && errno != ENOSYS) {
            throw_errno(env, errno, "pidfd_open", NULL);
            return NULL;
        }
        pidfd = r < 0 ? -1 : (int)r;
    }
    out[0] = (double)cred.pid;
    out[1] = (double)cred.uid;
    out[2] = (double)cred.gid;
    out[3] = (double)pidfd;
    return make_int(env, status);
}

/* ------------------------------------------------------------------ */
/* getXattr                                                            */

/* Largest value getXattr() returns; a longer one fails with ERANGE. */
#define XATTR_VALUE_MAX 4096

/*
 * Copies a string or Uint8Array argument into buf as a C string. Throws
 * ENAMETOOLONG when it does not fit and EINVAL when it contains a NUL byte.
 */
static bool get_c_string(napi_env env, napi_value v, const char *what,
                         char *buf, size_t size, size_t *out_len)
{
    napi_valuetype t;
    bool is_typed = false;
    size_t len = 0;
    char message[120];

    if (napi_typeof(env, v, &t) == napi_ok && t == napi_string) {
        if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
            return false;
        if (len >= size)
            goto too_long;
        if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok)
            return false;
    } else if (napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed) {
        napi_typedarray_type type;
        void *data = NULL;
        if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok ||
            type != napi_uint8_array)
            goto bad_type;
        if (len >= size)
            goto too_long;
        if (len > 0)
            memcpy(buf, data, len);
        buf[len] = '\0';
    } else {
        goto bad_type;
    }
    if (memchr(buf, '\0', len) != NULL) {
        snprintf(message, sizeof(message), "%s contains a NUL byte", what);
        throw_coded(env, "EINVAL", NULL, message);
        return false;
    }
    *out_len = len;
    return true;

bad_type:
    snprintf(message, sizeof(message), "%s must be a string or Uint8Array", what);
    throw_type(env, message);
    return false;
too_long:
    snprintf(message, sizeof(message), "%s is too long (%zu bytes, at most %zu allowed)",
             what, len, size - 1);
    throw_coded(env, "ENAMETOOLONG", NULL, message);
    return false;
}

/* Printable form of a C string for messages: non-printable bytes become \xNN. */
static void display_bytes(const char *s, size_t len, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < len && o + 8 < size; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xf];
        }
    }
    out[o] = '\0';
}

/*
 * lgetxattr(path, name): the value as a Buffer (at most 4096 bytes), or null
 * when the attribute or the file does not exist or the file system has no
 * extended attributes (ENODATA, ENOENT, ENOTSUP). Throws with the errno name
 * as code otherwise (ERANGE: value longer than 4096 bytes; EACCES, ...).
 */
static napi_value js_get_xattr(napi_env env, napi_callback_info info)
{
    napi_value argv[2], result;
    char path[PATH_MAX], name[XATTR_NAME_MAX + 1];
    char value[XATTR_VALUE_MAX];
    size_t path_len, name_len;
    ssize_t n;
    void *data = NULL;

    if (!get_args(env, info, 2, 2, argv, NULL) ||
        !get_c_string(env, argv[0], "path", path, sizeof(path), &path_len) ||
        !get_c_string(env, argv[1], "name", name, sizeof(name), &name_len))
        return NULL;

    n = lgetxattr(path, name, value, sizeof(value));
    if (n < 0) {
        int err = errno;
        char text[256], shown_path[512], shown_name[512], message[1400];
        if (err == ENODATA || err == ENOTSUP || err == ENOENT)
            return make_null(env);
        display_bytes(path, path_len, shown_path, sizeof(shown_path));
        display_bytes(name, name_len, shown_name, sizeof(shown_name));
        snprintf(message, sizeof(message), "lgetxattr(\"%s\", \"%s\"): %s", shown_path,
                 shown_name, errno_text(err, text, sizeof(text)));
        throw_coded(env, errno_name(err), "lgetxattr", message);
        return NULL;
    }
    if (napi_create_buffer_copy(env, (size_t)n, value, &data, &result) != napi_ok)
        return NULL;
    return result;
}

/* ------------------------------------------------------------------ */
/* closeFd                                                             */

static napi_value js_close_fd(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_fd(env, argv[0], &fd))
        return NULL;
    /* On Linux the fd is released even when close() reports EINTR. */
    if (close(fd) != 0 && errno != EINTR) {
        throw_errno_fd(env, errno, "close", fd);
        return NULL;
    }
    return make_undefined(env);
}

/*
 * fdQuiet(fd) -> true when the socket has nothing to read and its peer has not closed or failed:
 * a parked server connection is handed out only then (a server that closed it, or sent anything
 * while nobody asked, must not be given to a client).
 */
static napi_value js_fd_quiet(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_fd(env, argv[0], &fd))
        return NULL;
    struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP, .revents = 0 };
    int n;
    do
        n = poll(&pfd, 1, 0);
    while (n < 0 && errno == EINTR);
    return make_bool(env, n == 0);
}

/* ------------------------------------------------------------------ */
/* dupFd                                                               */

/* A close-on-exec duplicate, so a socket can outlive the libuv handle that owned the original. */
static napi_value js_dup_fd(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int fd, copy;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_fd(env, argv[0], &fd))
        return NULL;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) {
        throw_errno_fd(env, errno, "fcntl", fd);
        return NULL;
    }
    return make_int(env, copy);
}

/* ------------------------------------------------------------------ */
/* file descriptors                                                    */

/*
 * recvAvailable(fd, max) -> Buffer | null: what a socket has for us now, without waiting (up to
 * `max` bytes; null when nothing). Reads what a peer sent before it went away (the JavaScript
 * relay's salvage of a backend's last packet).
 */
static napi_value js_recv_available(napi_env env, napi_callback_info info)
{
    napi_value argv[2], result;
    int fd;
    int64_t max;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_fd(env, argv[0], &fd) ||
        !get_int(env, argv[1], "max", 1, 64 * 1024 * 1024, &max))
        return NULL;
    char *buf = malloc((size_t)max);
    if (buf == NULL) {
        throw_errno(env, ENOMEM, "malloc", NULL);
        return NULL;
    }
    size_t have = 0;
    while (have < (size_t)max) {
        ssize_t n = recv(fd, buf + have, (size_t)max - have, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    void *data;
    if (have == 0) {
        free(buf);
        return make_null(env);
    }
    if (napi_create_buffer_copy(env, have, buf, &data, &result) != napi_ok)
        result = NULL;
    free(buf);
    return result;
}

/* fdLimit() -> the soft RLIMIT_NOFILE (what accept() and socket() run into). */
static napi_value js_fd_limit(napi_env env, napi_callback_info info)
{
    struct rlimit rl;
    (void)info;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        throw_errno(env, errno, "getrlimit", NULL);
        return NULL;
    }
    return make_double(env, rl.rlim_cur == RLIM_INFINITY ? 1e15 : (double)rl.rlim_cur);
}

/* openFdCount() -> the number of open fds of this process (entries of /proc/self/fd). */
static napi_value js_open_fd_count(napi_env env, napi_callback_info info)
{
    (void)info;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        throw_errno(env, errno, "opendir", NULL);
        return NULL;
    }
    int count = 0;
    struct dirent *d;
    while ((d = readdir(dir)) != NULL)
        if (d->d_name[0] != '.')
            count++;
    closedir(dir);
    return make_int(env, count - 1); /* the directory's own fd */
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

/* addonTestFail(point): make the next occurrence of a failure point fail (tests only). */
static napi_value js_addon_test_fail(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    int64_t point;
    struct addon_env *st = addon_env_get(env);
    if (st == NULL || !get_args(env, info, 1, 1, argv, NULL) || !get_int(env, argv[0], "point", 0, 100, &point))
        return NULL;
    st->fail_next = (int)point;
    return make_undefined(env);
}

/* addonLivePumps() -> pumps of this environment not yet freed. */
static napi_value js_addon_live_pumps(napi_env env, napi_callback_info info)
{
    (void)info;
    struct addon_env *st = addon_env_get(env);
    if (st == NULL)
        return NULL;
    return make_int(env, st->live_pumps);
}

/* ------------------------------------------------------------------ */
/* module                                                              */

NAPI_MODULE_INIT()
{
    napi_property_descriptor props[] = {
        { "listenUnix", NULL, js_listen_unix, NULL, NULL, NULL, napi_enumerable, NULL },
        { "connectUnix", NULL, js_connect_unix, NULL, NULL, NULL, napi_enumerable, NULL },
        { "peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL },
        { "peerPidfd", NULL, js_peer_pidfd, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pidfdOpen", NULL, js_pidfd_open, NULL, NULL, NULL, napi_enumerable, NULL },
        { "peerIdentity", NULL, js_peer_identity, NULL, NULL, NULL, napi_enumerable, NULL },
        { "getXattr", NULL, js_get_xattr, NULL, NULL, NULL, napi_enumerable, NULL },
        { "closeFd", NULL, js_close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
        { "fdQuiet", NULL, js_fd_quiet, NULL, NULL, NULL, napi_enumerable, NULL },
        { "dupFd", NULL, js_dup_fd, NULL, NULL, NULL, napi_enumerable, NULL },
        { "fdLimit", NULL, js_fd_limit, NULL, NULL, NULL, napi_enumerable, NULL },
        { "recvAvailable", NULL, js_recv_available, NULL, NULL, NULL, napi_enumerable, NULL },
        { "openFdCount", NULL, js_open_fd_count, NULL, NULL, NULL, napi_enumerable, NULL },
        { "addonTestFail", NULL, js_addon_test_fail, NULL, NULL, NULL, napi_enumerable, NULL },
        { "addonLivePumps", NULL, js_addon_live_pumps, NULL, NULL, NULL, napi_enumerable, NULL },
    };

    /* Context-aware: each Node environment (main thread, worker) gets its own state. */
    if (!addon_env_init(env))
        return NULL;
    if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok)
        return NULL;
    if (!register_pump(env, exports) || !register_tracker(env, exports) || !register_sockets(env, exports))
        return NULL;
    return exports;
}
