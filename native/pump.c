/*
 * The native byte pump: after login, the relay between a client and its backend runs here, in C,
 * on Node's own libuv loop (uv_poll_t watchers on the main thread: no threads, no locks), so no
 * JavaScript runs and no object is allocated per packet. JavaScript hands over two socket fds
 * (duplicates of the ones its net.Sockets owned, or a backend's bare fd that no net.Socket ever
 * had) and hears from the pump only for what it asked:
 * the end of the pair, a command it wants to see (interception), a session that became
 * untracked, and (only in event mode) each finished response.
 *
 * Tracking: every byte that passes goes through the response tracker (tracker.c), which follows
 * commands and responses and adds to the per-server counters JavaScript shares with us
 * (a Float64Array read at scrape time). It never changes a byte.
 *
 * Writes use send(MSG_NOSIGNAL): a peer that went away gives EPIPE, never a SIGPIPE.
 *
 * Flow control: data read from one side is written to the other at once; whatever the kernel does
 * not take is kept in that side's `pending` buffer, and the source is not read again until that
 * buffer has been written. So a slow reader never makes us buffer more than one read.
 *
 * End of stream: the MySQL protocol has no use for half-closed connections. When either side
 * closes or fails, we stop reading, read what the failed side still has for us (a server that
 * sends an ERR and closes at once must not lose the ERR), deliver what is owed to the side that is
 * still there, and close both (close() sends the FIN after the data already queued in the kernel).
 *
 * Handles: JavaScript holds a small `pump_ref`, not the pump. The pump clears it when it is freed
 * and the ref's finalizer clears the pump's pointer to it, so a handle used after the pump is gone
 * finds NULL instead of freed memory.
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

#include "napi-util.h"
#include "pump.h"
#include "tracker.h"

enum { CLIENT = 0, SERVER = 1 };

/* At most this many reads per readiness event, so one busy pair cannot starve the loop. */
#define MAX_READS_PER_EVENT 8
/* What the salvage of a failed peer reads at most (its last packets; not a whole result). */
#define MAX_SALVAGE (1024 * 1024)
/*
 * After the server went away, the client still gets its last packets, then a FIN; what it keeps
 * sending (the rest of a packet the server refused) is read and dropped for this long, so that
 * closing does not reset its connection before it has read the server's error.
 */
#define LINGER_MS 2000

/* Events for JavaScript's onEvent(type, ...). */
enum { EV_CLOSE = 0, EV_INTERCEPT = 1, EV_UNTRACKED = 2, EV_RESPONSE = 3 };

struct pump;

struct pump_ref {
    struct pump *pump;
};

struct local_reply {
    struct local_reply *next;
    size_t len;
    char data[];
};

struct endpoint {
    uv_poll_t poll;
    struct pump *pump;
    int index;
    int fd;
    int events;    /* what the poll currently waits for (0 = stopped) */
    bool dead;     /* failed or closed: nothing more is read from it or written to it */
    bool salvaged; /* its remaining input was read after it failed */
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
    struct addon_env *st;
    struct pump_ref *ref;
    napi_ref on_event;
    napi_ref stats_ref;  /* keeps the shared counters alive */
    napi_ref stats2_ref;
    napi_ref record_ref; /* event mode: where a finished response is written for JavaScript */
    double *record;
    struct tracker trk;
    bool draining;  /* an end was seen: no more reads, deliver what is owed, then finish */
    bool server_cut; /* do_close() ended the server side: none of its bytes go out any more */
    bool lingering; /* the server is gone, the client had its last bytes and a FIN: drop its input */
    /* Made when needed (rarely: a server that went away), not carried by every idle pair. */
    uv_timer_t *linger_timer;
    bool finishing; /* handles are being closed */
    bool fds_owned; /* close the fds when done (false only when setup failed: the caller closes) */
    bool untracked_reported;
    /*
     * Pooling: when the client leaves (its end, an error, or pumpRelease() after an intercepted
     * COM_QUIT) while the server owes nothing and no transaction is open, the server fd is not
     * closed but handed back to JavaScript with the close event.
     */
    bool keep_server;
    bool release_unsafe; /* bytes the tracker never saw went to the server: it cannot be reused */
    bool released;       /* finishing with the server fd kept for JavaScript */

    /*
     * Interception (client -> server). The tracker stops at a command JavaScript wants to see; the
     * packet (and whatever follows it) is held here, handed to JavaScript once complete, and the
     * client is not read again until JavaScript answers with pumpResume().
     */
    bool intercepting; /* a packet is held: wait for it to complete / for pumpResume */
    bool delivered;    /* the held packet was handed to JavaScript */
    bool delivered_truncated; /* ... only its head */
    size_t deliver_len; /* bytes of `held` the delivered packet takes */
    size_t max_hold;   /* a bigger intercepted packet is delivered truncated and its rest dropped */
    size_t discard_left;   /* bytes of a truncated packet still to drop */
    bool discard_continued; /* ... followed by a continuation packet */
    char *held;        /* client bytes not forwarded: an undecided packet, or the intercepted one + rest */
    size_t held_len;
    size_t held_cap;
    /* Local replies queued behind responses in flight, oldest first. */
    struct local_reply *replies_head, *replies_tail;
    int open_handles;
    const char *reason;

    /*
     * Re-entrancy: JavaScript runs inside the pump's callbacks (and Node drains the microtask
     * queue there), so a call into the pump can arrive while the pump is in the middle of a read.
     * Such calls are recorded here and carried out when the outermost activation settles.
     */
    int depth;
    bool abort_requested;
    bool close_requested;
    char *close_bytes;
    size_t close_len;
    bool resume_requested;
    bool resume_held; /* the held packet goes to the server as it is */
    bool release_requested;
    char *resume_server, *resume_client;
    size_t resume_server_len, resume_client_len;
};

static void update_polls(struct pump *p);
static void client_input(struct pump *p, const char *data, size_t len);
static void server_input(struct pump *p, const char *data, size_t len);

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

/* Calls onEvent(argv...) in a handle scope; false if that cannot be done (the env is going away). */
static bool call_js(struct pump *p, size_t argc, napi_value *argv)
{
    napi_value callback, global, result, exception;
    if (p->on_event == NULL || napi_get_reference_value(p->env, p->on_event, &callback) != napi_ok ||
        callback == NULL || napi_get_global(p->env, &global) != napi_ok)
        return false;
    /* make_callback runs the microtask queue afterwards, like any libuv-driven callback. */
    if (napi_make_callback(p->env, addon_async_context(p->st), global, callback, argc, argv, &result) != napi_ok &&
        napi_get_and_clear_last_exception(p->env, &exception) == napi_ok)
        napi_fatal_exception(p->env, exception);
    return true;
}

static void free_pump(struct pump *p)
{
    napi_env env = p->env;
    for (int i = 0; i < 2; i++) {
        if (p->fds_owned)
            close(p->ep[i].fd);
        free_pending(&p->ep[i]);
    }
    free(p->held);
    free(p->close_bytes);
    free(p->resume_server);
    free(p->resume_client);
    for (struct local_reply *r = p->replies_head; r != NULL;) {
        struct local_reply *next = r->next;
        free(r);
        r = next;
    }
    trk_free(&p->trk);
    if (p->on_event != NULL)
        napi_delete_reference(env, p->on_event);
    if (p->stats_ref != NULL)
        napi_delete_reference(env, p->stats_ref);
    if (p->stats2_ref != NULL)
        napi_delete_reference(env, p->stats2_ref);
    if (p->record_ref != NULL)
        napi_delete_reference(env, p->record_ref);
    if (p->ref != NULL)
        p->ref->pump = NULL; /* the JS handle now finds nothing instead of freed memory */
    p->st->live_pumps--;
    free(p);
}

static void pump_handle_closed(struct pump *p)
{
    napi_env env = p->env;
    napi_handle_scope scope;

    if (--p->open_handles > 0)
        return;

    /* The fds are closed before JavaScript hears of it, so a count of open fds is right then. A
     * released server fd is JavaScript's from here on. */
    int kept = -1;
    for (int i = 0; i < 2 && p->fds_owned; i++) {
        if (i == SERVER && p->released)
            kept = p->ep[i].fd;
        else
            close(p->ep[i].fd);
    }
    p->fds_owned = false;

    bool fail = addon_env_should_fail(p->st, FAIL_CLOSE_HANDLE_SCOPE);
    if (!fail && napi_open_handle_scope(env, &scope) == napi_ok) {
        napi_value argv[5];
        if (napi_create_int32(env, EV_CLOSE, &argv[0]) == napi_ok &&
            napi_create_string_utf8(env, p->reason, NAPI_AUTO_LENGTH, &argv[1]) == napi_ok &&
            napi_create_double(env, p->ep[CLIENT].bytes_read, &argv[2]) == napi_ok &&
            napi_create_double(env, p->ep[SERVER].bytes_read, &argv[3]) == napi_ok &&
            napi_create_int32(env, kept, &argv[4]) == napi_ok) {
            if (!call_js(p, 5, argv) && kept >= 0)
                close(kept);
        } else if (kept >= 0) {
            close(kept);
        }
        napi_close_handle_scope(env, scope);
    } else if (kept >= 0) {
        close(kept);
    }
    free_pump(p);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct endpoint *e = handle->data;
    pump_handle_closed(e->pump);
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct pump *p = handle->data;
    free(p->linger_timer);
    p->linger_timer = NULL;
    pump_handle_closed(p);
}

/* Stop watching both sockets and close them; JS hears about it once every handle is closed. */
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
    if (p->linger_timer != NULL) {
        uv_timer_stop(p->linger_timer);
        uv_close((uv_handle_t *)p->linger_timer, on_timer_closed);
    }
}

/*
 * The server connection can outlive this session: pooling is on, the server owes nothing, no
 * transaction is open, and every byte that went to it passed the tracker. A held packet is allowed
 * only when it is the delivered one (an intercepted COM_QUIT) and nothing came after it.
 */
static bool can_release(const struct pump *p)
{
    const struct endpoint *server = &p->ep[SERVER];
    return p->keep_server && !p->release_unsafe && !p->server_cut && !server->dead && server->pending == NULL &&
           p->replies_head == NULL && p->discard_left == 0 && !p->discard_continued && trk_reusable(&p->trk) &&
           (p->held_len == 0 || (p->intercepting && p->delivered && p->deliver_len == p->held_len));
}

/* Finish the pair keeping the server fd for JavaScript (the client side is closed). */
static void release_server(struct pump *p, const char *reason)
{
    p->released = true;
    finish(p, reason);
}

static void on_linger_timeout(uv_timer_t *timer)
{
    struct pump *p = timer->data;
    finish(p, p->reason);
}

/* The server is gone and the client has everything: FIN to the client, drop its input a while. */
static bool start_linger(struct pump *p)
{
    struct endpoint *client = &p->ep[CLIENT];
    uv_timer_t *timer = malloc(sizeof(*timer));
    if (timer == NULL || uv_timer_init(client->poll.loop, timer) != 0) {
        free(timer);
        return false;
    }
    timer->data = p;
    p->linger_timer = timer;
    p->open_handles++;
    shutdown(client->fd, SHUT_WR);
    p->lingering = true;
    uv_timer_start(timer, on_linger_timeout, LINGER_MS, 0);
    return true;
}

/* Lingering: read and drop what the client still sends; its end (or an error) finishes the pair. */
static void discard_client(struct pump *p)
{
    struct endpoint *client = &p->ep[CLIENT];
    for (int i = 0; i < MAX_READS_PER_EVENT * 4; i++) {
        ssize_t n = read(client->fd, p->st->scratch, ADDON_SCRATCH_SIZE);
        if (n > 0) {
            client->bytes_read += (double)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        finish(p, p->reason);
        return;
    }
}

static const char *error_reason(int index)
{
    return index == CLIENT ? "client-error" : "server-error";
}

/*
 * Endpoint `e` failed: nothing more goes to it; what it still has for us is read and delivered to
 * the other side (by settle(), at the top of the call stack: the read buffer may be in use here),
 * then the pair finishes.
 */
static void endpoint_down(struct pump *p, struct endpoint *e, const char *reason)
{
    if (p->finishing)
        return;
    if (!p->draining) {
        p->draining = true;
        p->reason = reason;
    }
    e->dead = true;
    free_pending(e);
}

/* Write what is pending towards endpoint `e`. Returns false on a socket error (e is then down). */
static bool flush(struct pump *p, struct endpoint *e)
{
    while (e->pending != NULL) {
        ssize_t n = send(e->fd, e->pending + e->pending_off, e->pending_len - e->pending_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            endpoint_down(p, e, error_reason(e->index));
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
    if (have > 0)
        memcpy(grown, dst->pending + dst->pending_off, have);
    memcpy(grown + have, data, len);
    uint64_t since = dst->stalled_since;
    free_pending(dst);
    dst->pending = grown;
    dst->pending_len = have + len;
    dst->pending_off = 0;
    dst->stalled_since = since != 0 ? since : loop_now(dst);
    return true;
}

/* Send `len` bytes to `dst`; keep what the socket does not take. False when the pair must stop. */
static bool forward(struct pump *p, struct endpoint *dst, const char *data, size_t len)
{
    if (len == 0 || dst->dead)
        return !p->finishing;
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
            endpoint_down(p, dst, error_reason(dst->index));
            return !p->finishing;
        }
        off += (size_t)n;
    }
    if (off < len)
        return append_pending(p, dst, data + off, len - off);
    return true;
}

static bool hold(struct pump *p, const char *data, size_t len)
{
    if (len == 0)
        return true;
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
    memmove(p->held + p->held_len, data, len);
    p->held_len += len;
    return true;
}

/* Replace the held bytes with `data` (which may point into `held`). */
static bool hold_only(struct pump *p, const char *data, size_t len)
{
    if (p->held != NULL && data >= p->held && data <= p->held + p->held_len) {
        memmove(p->held, data, len);
        p->held_len = len;
        return true;
    }
    p->held_len = 0;
    return hold(p, data, len);
}

/* ------------------------------------------------------------------ */
/* local replies                                                       */

static void do_close(struct pump *p, const char *bytes, size_t len);

/*
 * The tracker lost the server's grammar: a reply of ours could land inside a server packet or a
 * result set, and the client would wait forever for the rest of a packet it misreads. So the
 * session ends with the reply instead (do_close delivers it only between server packets).
 */
static void close_with_reply(struct pump *p, const char *data, size_t len)
{
    do_close(p, data, len);
    while (p->replies_head != NULL) {
        struct local_reply *r = p->replies_head;
        p->replies_head = r->next;
        free(r);
    }
    p->replies_tail = NULL;
}

/* Write the local replies whose turn has come (after the responses before them). */
static void flush_due_replies(struct pump *p)
{
    if (p->trk.untracked && p->replies_head != NULL) {
        if (!trk_server_at_boundary(&p->trk))
            return; /* after the server packet under way (server_input stops at its end) */
        struct local_reply *r = p->replies_head;
        p->replies_head = r->next;
        close_with_reply(p, r->data, r->len);
        free(r);
        return;
    }
    while (!p->finishing && trk_local_due(&p->trk)) {
        struct local_reply *r = p->replies_head;
        trk_pop_local(&p->trk);
        if (r == NULL)
            continue; /* cannot happen: the tracker and this list are pushed together */
        p->replies_head = r->next;
        if (p->replies_head == NULL)
            p->replies_tail = NULL;
        bool ok = forward(p, &p->ep[CLIENT], r->data, r->len);
        free(r);
        if (!ok)
            return;
    }
}

static bool send_local(struct pump *p, const char *data, size_t len)
{
    if (len == 0)
        return true;
    if (!trk_push_local(&p->trk)) {
        if (!p->trk.untracked)
            return forward(p, &p->ep[CLIENT], data, len); /* nothing in flight: it goes now */
        close_with_reply(p, data, len);
        return false;
    }
    struct local_reply *r = malloc(sizeof(*r) + len);
    if (r == NULL) {
        finish(p, "out-of-memory");
        return false;
    }
    r->next = NULL;
    r->len = len;
    memcpy(r->data, data, len);
    if (p->replies_tail != NULL)
        p->replies_tail->next = r;
    else
        p->replies_head = r;
    p->replies_tail = r;
    return true;
}

/* ------------------------------------------------------------------ */
/* tracker callbacks                                                   */

static void on_untracked(void *ctx, int reason)
{
    struct pump *p = ctx;
    napi_handle_scope scope;
    if (p->untracked_reported || p->finishing)
        return;
    p->untracked_reported = true;
    if (napi_open_handle_scope(p->env, &scope) != napi_ok)
        return;
    napi_value argv[2];
    if (napi_create_int32(p->env, EV_UNTRACKED, &argv[0]) == napi_ok &&
        napi_create_int32(p->env, reason, &argv[1]) == napi_ok)
        call_js(p, 2, argv);
    napi_close_handle_scope(p->env, scope);
}

static void on_record(void *ctx, const struct trk_record *r)
{
    struct pump *p = ctx;
    napi_handle_scope scope;
    if (p->record == NULL || p->finishing)
        return;
    trk_record_to_array(r, p->record);
    if (napi_open_handle_scope(p->env, &scope) != napi_ok)
        return;
    napi_value argv[1];
    if (napi_create_int32(p->env, EV_RESPONSE, &argv[0]) == napi_ok)
        call_js(p, 1, argv);
    napi_close_handle_scope(p->env, scope);
}

/* ------------------------------------------------------------------ */
/* client -> server                                                    */

/* Hand the held packet to JavaScript once it is complete, or truncated once it is too big. */
static void deliver_intercepted(struct pump *p)
{
    napi_handle_scope scope;
    void *copy;
    bool truncated = false;
    size_t len;

    if (!p->intercepting || p->delivered || p->held_len < 4)
        return;
    long total = trk_logical_packet_length((const uint8_t *)p->held, p->held_len);
    if (total >= 0 && (size_t)total <= p->max_hold) {
        len = (size_t)total;
        p->deliver_len = len;
    } else if (total >= 0) {
        /* Complete but too big: JavaScript sees its head; the whole packet is dropped. */
        truncated = true;
        len = p->max_hold;
        p->deliver_len = (size_t)total;
    } else if (p->held_len >= p->max_hold) {
        /* Incomplete and already too big: JavaScript sees its head; the rest is dropped as it comes. */
        truncated = true;
        len = p->max_hold;
        size_t pos = 0;
        for (;;) {
            uint32_t plen = (uint32_t)(uint8_t)p->held[pos] | (uint32_t)(uint8_t)p->held[pos + 1] << 8 |
                            (uint32_t)(uint8_t)p->held[pos + 2] << 16;
            if (p->held_len - pos - 4 < plen) {
                /* inside a physical packet: drop what is here, and the rest of it as it comes */
                p->discard_left = plen - (p->held_len - pos - 4);
                p->discard_continued = plen == 0xFFFFFF;
                p->deliver_len = p->held_len;
                break;
            }
            pos += 4 + plen; /* a whole 0xFFFFFF packet: a continuation follows */
            if (p->held_len - pos < 4) {
                /* the continuation's header is not complete: keep its bytes, drop what is before */
                p->discard_left = 0;
                p->discard_continued = true;
                p->deliver_len = pos;
                break;
            }
        }
    } else {
        return; /* wait for more */
    }
    p->delivered = true;
    p->delivered_truncated = truncated;
    if (napi_open_handle_scope(p->env, &scope) != napi_ok) {
        finish(p, "internal-error");
        return;
    }
    napi_value argv[3];
    /* Through the inbox (JavaScript gets the length), or as a Buffer of its own. */
    bool inbox = p->st->inbox != NULL && len <= p->st->inbox_len;
    if (inbox)
        memcpy(p->st->inbox, p->held, len);
    if (napi_create_int32(p->env, EV_INTERCEPT, &argv[0]) == napi_ok &&
        (inbox ? napi_create_uint32(p->env, (uint32_t)len, &argv[1])
               : napi_create_buffer_copy(p->env, len, p->held, &copy, &argv[1])) == napi_ok &&
        napi_get_boolean(p->env, truncated, &argv[2]) == napi_ok)
        call_js(p, 3, argv);
    else
        finish(p, "internal-error");
    napi_close_handle_scope(p->env, scope);
}

/*
 * Client bytes (data, len): forward what the tracker lets through; an intercepted packet and what
 * follows it, or an undecided packet, are held. `data` may point into `p->held`.
 */
static void client_input(struct pump *p, const char *data, size_t len)
{
    struct endpoint *server = &p->ep[SERVER];
    size_t pos = 0;

    while (pos < len && !p->finishing) {
        if (p->discard_left > 0) {
            size_t n = len - pos < p->discard_left ? len - pos : p->discard_left;
            pos += n;
            p->discard_left -= n;
            continue;
        }
        if (p->discard_continued) {
            if (len - pos < 4)
                break; /* hold the partial header */
            uint32_t plen = (uint32_t)(uint8_t)data[pos] | (uint32_t)(uint8_t)data[pos + 1] << 8 |
                            (uint32_t)(uint8_t)data[pos + 2] << 16;
            p->discard_left = plen;
            p->discard_continued = plen == 0xFFFFFF;
            pos += 4;
            continue;
        }
        int stop;
        size_t n = trk_client(&p->trk, (const uint8_t *)data + pos, len - pos, &stop);
        if (n > 0 && !forward(p, server, data + pos, n))
            return;
        pos += n;
        if (stop == TRK_GO)
            continue;
        if (stop == TRK_HOLD_INTERCEPT) {
            if (!hold_only(p, data + pos, len - pos))
                return;
            p->intercepting = true;
            p->delivered = false;
            deliver_intercepted(p);
            return;
        }
        break; /* TRK_HOLD_MORE */
    }
    /* [pos, len) waits for more bytes (a header or the bytes that decide about a packet). */
    hold_only(p, data + pos, len - pos);
}

/* ------------------------------------------------------------------ */
/* server -> client                                                    */

static void server_input(struct pump *p, const char *data, size_t len)
{
    struct endpoint *client = &p->ep[CLIENT];
    size_t pos = 0;
    while (pos < len && !p->finishing && !p->server_cut) {
        size_t n = trk_server(&p->trk, (const uint8_t *)data + pos, len - pos);
        if (n > 0 && !forward(p, client, data + pos, n))
            return;
        pos += n;
        flush_due_replies(p);
    }
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

static void route_input(struct pump *p, struct endpoint *src, char *buf, size_t prefix, size_t n)
{
    if (src->index == SERVER) {
        server_input(p, buf, n);
        return;
    }
    if (p->intercepting) {
        /* Collecting an intercepted packet (not yet handed over): keep everything. */
        if (hold(p, buf, n))
            deliver_intercepted(p);
        return;
    }
    client_input(p, buf, prefix + n);
}

/* After `src` failed: read what it still has for us and deliver it (bounded). */
static void salvage(struct pump *p, struct endpoint *src)
{
    char *scratch = p->st->scratch;
    size_t total = 0;
    src->salvaged = true;
    while (total < MAX_SALVAGE && !p->finishing) {
        if (src->index == CLIENT && p->intercepting && p->delivered)
            return;
        size_t prefix = src->index == CLIENT && !p->intercepting ? p->held_len : 0;
        if (prefix > 0)
            memcpy(scratch, p->held, prefix);
        ssize_t n = recv(src->fd, scratch + prefix, ADDON_SCRATCH_SIZE - prefix, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        src->bytes_read += (double)n;
        total += (size_t)n;
        route_input(p, src, scratch, prefix, (size_t)n);
    }
}

static void do_close(struct pump *p, const char *bytes, size_t len);
static void do_resume(struct pump *p, bool held, const char *to_server, size_t to_server_len, const char *to_client,
                      size_t to_client_len);

/* Carry out one call that arrived while the pump was busy; false when none is left. */
static void do_release(struct pump *p);

static bool run_deferred(struct pump *p)
{
    if (p->abort_requested) {
        p->abort_requested = false;
        finish(p, p->draining ? p->reason : "shutdown");
        return true;
    }
    if (p->close_requested) {
        char *bytes = p->close_bytes;
        size_t len = p->close_len;
        p->close_requested = false;
        p->close_bytes = NULL;
        p->close_len = 0;
        do_close(p, bytes, len);
        free(bytes);
        return true;
    }
    if (p->release_requested) {
        p->release_requested = false;
        do_release(p);
        return true;
    }
    if (p->resume_requested) {
        char *ts = p->resume_server, *tc = p->resume_client;
        size_t ts_len = p->resume_server_len, tc_len = p->resume_client_len;
        bool held = p->resume_held;
        p->resume_requested = false;
        p->resume_held = false;
        p->resume_server = p->resume_client = NULL;
        p->resume_server_len = p->resume_client_len = 0;
        do_resume(p, held, ts, ts_len, tc, tc_len);
        free(ts);
        free(tc);
        return true;
    }
    return false;
}

/*
 * At the end of the outermost call into the pump: run the calls that came in meanwhile, salvage
 * failed endpoints, then watch what is needed.
 */
static void settle(struct pump *p)
{
    for (;;) {
        if (p->finishing)
            return;
        if (run_deferred(p))
            continue;
        bool salvaged = false;
        for (int i = 0; i < 2 && !p->finishing; i++) {
            if (p->ep[i].dead && !p->ep[i].salvaged) {
                salvage(p, &p->ep[i]);
                salvaged = true;
            }
        }
        if (!salvaged)
            break;
    }
    update_polls(p);
}

/* Read from `src` and forward to the other endpoint until it would block or must wait. */
static void pump_from(struct pump *p, struct endpoint *src)
{
    struct endpoint *dst = &p->ep[1 - src->index];
    char *scratch = p->st->scratch;
    bool from_client = src->index == CLIENT;
    for (int i = 0; i < MAX_READS_PER_EVENT && !p->draining && dst->pending == NULL; i++) {
        if (from_client && p->intercepting && p->delivered)
            return; /* JavaScript has the held packet: wait for pumpResume() */
        /* Undecided bytes go in front of the new ones, so packets are contiguous. */
        size_t prefix = from_client && !p->intercepting ? p->held_len : 0;
        if (prefix >= ADDON_SCRATCH_SIZE / 2) {
            /* cannot happen (the tracker holds a header and at most 256 bytes) */
            finish(p, "internal-error");
            return;
        }
        if (prefix > 0)
            memcpy(scratch, p->held, prefix);
        ssize_t n = read(src->fd, scratch + prefix, ADDON_SCRATCH_SIZE - prefix);
        if (n > 0) {
            src->bytes_read += (double)n;
            if (from_client && p->intercepting) {
                if (hold(p, scratch, (size_t)n))
                    deliver_intercepted(p);
            } else {
                route_input(p, src, scratch, prefix, (size_t)n);
            }
            if (p->finishing)
                return;
            if ((size_t)n < ADDON_SCRATCH_SIZE - prefix)
                return; /* the socket is most likely empty: save a read() that would say EAGAIN */
            continue;
        }
        if (n == 0) {
            /* Undecided client bytes (a header cut short) still go to the server as they are. */
            if (from_client && !p->intercepting && p->held_len > 0) {
                forward(p, dst, p->held, p->held_len);
                p->held_len = 0;
                p->release_unsafe = true;
            }
            /* An orderly close: what is owed to this side no longer matters. */
            if (!p->draining) {
                p->draining = true;
                p->reason = from_client ? "client" : "server";
            }
            src->dead = true;
            src->salvaged = true; /* nothing left to read */
            free_pending(src);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            endpoint_down(p, src, error_reason(src->index));
        return;
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct endpoint *e = handle->data;
    struct pump *p = e->pump;

    if (p->finishing)
        return;
    p->depth++;
    if (p->lingering) {
        if (e->index == CLIENT)
            discard_client(p);
    } else if (status < 0) {
        /* libuv reports POLLERR as an error; there may still be bytes to read (a last ERR). */
        endpoint_down(p, e, error_reason(e->index));
    } else {
        if ((events & UV_WRITABLE) && !e->dead)
            flush(p, e);
        if ((events & UV_READABLE) && !e->dead && !p->finishing)
            pump_from(p, e);
    }
    settle(p);
    p->depth--;
}

/* Watch each socket for what it is needed for now; finish a drained pair. */
static void update_polls(struct pump *p)
{
    if (p->finishing)
        return;
    if (p->draining) {
        /* Only what is owed to a side that is still there matters now. */
        bool owed = false;
        for (int i = 0; i < 2; i++)
            owed |= !p->ep[i].dead && p->ep[i].pending != NULL;
        if (!owed && !p->lingering) {
            if (p->ep[CLIENT].dead && can_release(p)) {
                release_server(p, p->reason);
                return;
            }
            bool server_gone = p->ep[SERVER].dead && !p->ep[CLIENT].dead && strcmp(p->reason, "shutdown") != 0;
            if (!server_gone || !start_linger(p)) {
                finish(p, p->reason);
                return;
            }
        }
    }
    if (p->lingering) {
        struct endpoint *c = &p->ep[CLIENT], *s = &p->ep[SERVER];
        if (s->events != 0 && uv_poll_stop(&s->poll) == 0)
            s->events = 0;
        if (c->events != UV_READABLE) {
            if (uv_poll_start(&c->poll, UV_READABLE, on_poll) != 0) {
                finish(p, "poll-error");
                return;
            }
            c->events = UV_READABLE;
        }
        return;
    }
    for (int i = 0; i < 2; i++) {
        struct endpoint *e = &p->ep[i];
        int want = 0;
        bool waiting_for_js = i == CLIENT && p->intercepting && p->delivered;
        if (!p->draining && !e->dead && p->ep[1 - i].pending == NULL && !waiting_for_js)
            want |= UV_READABLE;
        if (!e->dead && e->pending != NULL)
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

/* ------------------------------------------------------------------ */
/* JavaScript API                                                      */

static void ref_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    struct pump_ref *ref = data;
    if (ref->pump != NULL)
        ref->pump->ref = NULL;
    free(ref);
}

/* The pump behind a handle, or NULL when it is gone (a stale handle is harmless). */
static bool get_pump(napi_env env, napi_value v, struct pump **out)
{
    void *data = NULL;
    if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL)
        return throw_type(env, "handle must be a pump handle");
    *out = ((struct pump_ref *)data)->pump;
    return true;
}

/*
 * pumpStart(clientFd, serverFd, toServerFirst, toClientFirst, config, stats, accountStats, record, onEvent
 *           [, keepServer])
 * keepServer: when the client leaves and the server can be reused, the close event carries the
 * server fd (now JavaScript's) instead of it being closed (pooling; see can_release()).
 * `toServerFirst` (client bytes that arrived during login) and `toClientFirst` (e.g. the login
 * OK) are processed before anything else. `config` is a Uint8Array of TRK_CONFIG_BYTES (see tracker.h)
 * `stats` and `accountStats` the counters of the server and of the client's account
 * (Float64Arrays of TS_LEN, may be null); `record` a
 * Float64Array of TRK_RECORD_LEN for event mode (null otherwise). onEvent(type, ...) as EV_*.
 * If this throws, the fds are still the caller's.
 */
static napi_value js_pump_start(napi_env env, napi_callback_info info)
{
    napi_value argv[10], handle;
    const uint8_t *first[2], *cfg;
    size_t first_len[2], cfg_len;
    double *stats, *stats2, *record;
    int fds[2];
    uv_loop_t *loop;
    struct pump *p = NULL;
    struct pump_ref *ref;
    struct addon_env *st = addon_env_get(env);

    size_t argc = 0;
    bool keep_server = false;
    if (st == NULL || !get_args(env, info, 9, 10, argv, &argc) || !get_fd(env, argv[0], &fds[CLIENT]) ||
        !get_fd(env, argv[1], &fds[SERVER]) ||
        !get_optional_bytes(env, argv[2], "toServerFirst", &first[SERVER], &first_len[SERVER]) ||
        !get_optional_bytes(env, argv[3], "toClientFirst", &first[CLIENT], &first_len[CLIENT]) ||
        !get_optional_bytes(env, argv[4], "config", &cfg, &cfg_len) ||
        !get_optional_f64(env, argv[5], "stats", TS_LEN, &stats) ||
        !get_optional_f64(env, argv[6], "accountStats", TS_LEN, &stats2) ||
        !get_optional_f64(env, argv[7], "record", TRK_RECORD_LEN, &record) || !get_function(env, argv[8], "onEvent"))
        return NULL;
    napi_valuetype keep_type = napi_undefined;
    if (argc > 9 && napi_typeof(env, argv[9], &keep_type) == napi_ok && keep_type != napi_undefined &&
        napi_get_value_bool(env, argv[9], &keep_server) != napi_ok) {
        throw_type(env, "keepServer must be a boolean");
        return NULL;
    }
    if (cfg_len != 0 && cfg_len != TRK_CONFIG_BYTES) {
        throw_type(env, "config must be 48 bytes");
        return NULL;
    }
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
        throw_coded(env, "ERR_PUMP", NULL, "no event loop");
        return NULL;
    }

    p = calloc(1, sizeof(*p));
    ref = calloc(1, sizeof(*ref));
    if (p == NULL || ref == NULL) {
        free(p);
        free(ref);
        throw_coded(env, "ENOMEM", NULL, "out of memory");
        return NULL;
    }
    p->env = env;
    p->st = st;
    p->reason = "closed";
    p->record = record;
    p->keep_server = keep_server;
    struct trk_config tc;
    memset(&tc, 0, sizeof(tc));
    uint32_t max_hold = trk_config_decode(&tc, cfg, cfg_len);
    p->max_hold = max_hold >= 64 ? max_hold : 64 * 1024;
    if (record == NULL)
        tc.flags &= ~(uint32_t)TRK_F_EVENTS;
    tc.stats = stats;
    tc.stats2 = stats2;
    tc.ctx = p;
    tc.on_record = on_record;
    tc.on_untracked = on_untracked;
    trk_init(&p->trk, &tc);

    for (int i = 0; i < 2; i++) {
        p->ep[i].pump = p;
        p->ep[i].index = i;
        p->ep[i].fd = fds[i];
        p->ep[i].poll.data = &p->ep[i];
    }
    st->live_pumps++;
    /* Checked up front so that no failure can happen after a watcher exists: a throw leaves the
     * fds with the caller, who closes them. */
    if (uv_poll_init(loop, &p->ep[CLIENT].poll, fds[CLIENT]) != 0) {
        p->fds_owned = false;
        free_pump(p);
        free(ref);
        throw_coded(env, "ERR_PUMP", NULL, "uv_poll_init failed for the client fd");
        return NULL;
    }
    if (uv_poll_init(loop, &p->ep[SERVER].poll, fds[SERVER]) != 0) {
        /* Only the client watcher exists: close it; the callback frees p and closes nothing. */
        p->fds_owned = false;
        p->finishing = true;
        p->open_handles = 1;
        uv_close((uv_handle_t *)&p->ep[CLIENT].poll, on_handle_closed);
        free(ref);
        throw_coded(env, "ERR_PUMP", NULL, "uv_poll_init failed for the server fd");
        return NULL;
    }
    p->open_handles = 2;
    p->fds_owned = true;
    if (napi_create_reference(env, argv[8], 1, &p->on_event) != napi_ok ||
        (stats != NULL && napi_create_reference(env, argv[5], 1, &p->stats_ref) != napi_ok) ||
        (stats2 != NULL && napi_create_reference(env, argv[6], 1, &p->stats2_ref) != napi_ok) ||
        (record != NULL && napi_create_reference(env, argv[7], 1, &p->record_ref) != napi_ok) ||
        napi_create_external(env, ref, ref_finalize, NULL, &handle) != napi_ok) {
        p->fds_owned = false;
        finish(p, "internal-error");
        free(ref);
        throw_coded(env, "ERR_PUMP", NULL, "cannot set up the pump callback");
        return NULL;
    }
    ref->pump = p;
    p->ref = ref;

    /* Bytes from the login go out first: the login OK (not a response to a command: not tracked),
     * then what the client sent meanwhile (maybe its first command). */
    p->depth++;
    if (first_len[CLIENT] > 0)
        forward(p, &p->ep[CLIENT], (const char *)first[CLIENT], first_len[CLIENT]);
    if (first_len[SERVER] > 0 && !p->finishing)
        client_input(p, (const char *)first[SERVER], first_len[SERVER]);
    settle(p);
    p->depth--;
    return handle;
}

static void do_close(struct pump *p, const char *bytes, size_t len)
{
    struct endpoint *server = &p->ep[SERVER];
    if (p->finishing)
        return;
    if (!p->draining) {
        p->draining = true;
        p->reason = "shutdown";
    }
    /* The server gets nothing more, and nothing more of it goes out. */
    p->server_cut = true;
    server->dead = true;
    server->salvaged = true;
    free_pending(server);
    if (len > 0 && !p->ep[CLIENT].dead && trk_server_at_boundary(&p->trk)) {
        char *copy = malloc(len);
        if (copy != NULL) {
            memcpy(copy, bytes, len);
            if (len >= 4 && trk_in_flight(&p->trk) > 0)
                copy[3] = (char)trk_next_server_seq(&p->trk);
            forward(p, &p->ep[CLIENT], copy, len);
            free(copy);
        }
    }
}

/* Copies `len` bytes (NULL for none); false when out of memory. */
static bool copy_bytes(const uint8_t *data, size_t len, char **out)
{
    *out = NULL;
    if (len == 0)
        return true;
    *out = malloc(len);
    if (*out == NULL)
        return false;
    memcpy(*out, data, len);
    return true;
}

/*
 * pumpClose(handle, lastClientBytes?) — end the pair (daemon shutdown, a node that became
 * unavailable). Nothing more is read; `lastClientBytes` (one ERR packet) is delivered to the client
 * after what is owed to it, if the server stream is between packets (its sequence id is set to
 * follow the response in flight, if any); the pair finishes once it is written. JavaScript bounds
 * that with pumpAbort(). A no-op once the pair is gone.
 */
static napi_value js_pump_close(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    const uint8_t *bytes = NULL;
    size_t len = 0, argc;
    struct pump *p = NULL;

    if (!get_args(env, info, 1, 2, argv, &argc) || !get_pump(env, argv[0], &p) ||
        (argc > 1 && !get_optional_bytes(env, argv[1], "lastClientBytes", &bytes, &len)))
        return NULL;
    if (p == NULL || p->finishing)
        return make_undefined(env);
    if (p->depth > 0) {
        if (!p->close_requested) {
            p->close_requested = true;
            if (!copy_bytes(bytes, len, &p->close_bytes))
                p->close_len = 0;
            else
                p->close_len = len;
        }
        return make_undefined(env);
    }
    p->depth++;
    do_close(p, (const char *)bytes, len);
    settle(p);
    p->depth--;
    return make_undefined(env);
}

/* The client quit (an intercepted COM_QUIT): keep the server if it can be reused, else close both. */
static void do_release(struct pump *p)
{
    if (p->finishing)
        return;
    if (can_release(p)) {
        release_server(p, "client");
        return;
    }
    if (!p->draining) {
        p->draining = true;
        p->reason = "client";
    }
    do_close(p, NULL, 0);
}

/*
 * pumpRelease(handle) — the client has quit: finish the pair, handing the server fd back with the
 * close event when it can be reused (see can_release()), otherwise closing both sides. A no-op
 * once the pair is gone.
 */
static napi_value js_pump_release(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    struct pump *p = NULL;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_pump(env, argv[0], &p))
        return NULL;
    if (p == NULL || p->finishing)
        return make_undefined(env);
    if (p->depth > 0) {
        p->release_requested = true;
        return make_undefined(env);
    }
    p->depth++;
    do_release(p);
    settle(p);
    p->depth--;
    return make_undefined(env);
}

/* pumpAbort(handle) — close both sides now, writing nothing more. A no-op once the pair is gone. */
static napi_value js_pump_abort(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    struct pump *p = NULL;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_pump(env, argv[0], &p))
        return NULL;
    if (p != NULL && !p->finishing) {
        if (p->depth > 0)
            p->abort_requested = true;
        else
            finish(p, p->draining ? p->reason : "shutdown");
    }
    return make_undefined(env);
}

static void do_resume(struct pump *p, bool held, const char *to_server, size_t to_server_len, const char *to_client,
                      size_t to_client_len)
{
    if (p->finishing || !p->intercepting || !p->delivered)
        return;
    if (held) {
        /* The packet as it came: it stays where it is until it has been forwarded (below). */
        to_server = p->held;
        to_server_len = p->deliver_len;
    }
    size_t rest_len = p->held_len - p->deliver_len;
    char *rest = NULL;
    if (rest_len > 0) {
        rest = malloc(rest_len);
        if (rest == NULL) {
            finish(p, "out-of-memory");
            return;
        }
        memcpy(rest, p->held + p->deliver_len, rest_len);
    }
    p->held_len = 0;
    p->deliver_len = 0;
    p->intercepting = false;
    p->delivered = false;
    if (to_server_len > 0) {
        trk_client_forced(&p->trk, (const uint8_t *)to_server, to_server_len);
        forward(p, &p->ep[SERVER], to_server, to_server_len);
    }
    if (!p->finishing && to_client_len > 0)
        send_local(p, to_client, to_client_len);
    if (!p->finishing && rest_len > 0)
        client_input(p, rest, rest_len);
    free(rest);
    if (!p->finishing)
        flush_due_replies(p);
}

/*
 * pumpResume(handle, toServer?, toClient?) — JavaScript has dealt with the held command packet:
 * send `toServer` (e.g. the command, possibly rewritten: tracked as a command; `true`: the held
 * packet as it came, without handing its bytes back) and `toClient` (a local reply, delivered in the
 * order of responses), drop the held packet and go on with whatever the client sent after it. A
 * no-op once the pair is gone.
 */
static napi_value js_pump_resume(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    const uint8_t *to_server = NULL, *to_client = NULL;
    size_t to_server_len = 0, to_client_len = 0, argc;
    struct pump *p = NULL;
    napi_valuetype server_type = napi_undefined;
    bool held = false;

    if (!get_args(env, info, 1, 3, argv, &argc) || !get_pump(env, argv[0], &p))
        return NULL;
    if (argc > 1 && napi_typeof(env, argv[1], &server_type) != napi_ok)
        return NULL;
    if (server_type == napi_boolean ? !get_bool(env, argv[1], "toServer", &held)
                                    : argc > 1 && !get_optional_bytes(env, argv[1], "toServer", &to_server, &to_server_len))
        return NULL;
    if (argc > 2 && !get_optional_bytes(env, argv[2], "toClient", &to_client, &to_client_len))
        return NULL;
    if (p == NULL || p->finishing)
        return make_undefined(env);
    if (!p->intercepting || !p->delivered || p->resume_requested) {
        throw_coded(env, "ERR_PUMP", NULL, "pumpResume() without a held command");
        return NULL;
    }
    if (held && p->delivered_truncated) {
        throw_coded(env, "ERR_PUMP", NULL, "pumpResume(): a truncated command cannot go on as it came");
        return NULL;
    }
    if (p->depth > 0) {
        p->resume_requested = true;
        p->resume_held = held;
        if (!copy_bytes(to_server, to_server_len, &p->resume_server) ||
            !copy_bytes(to_client, to_client_len, &p->resume_client)) {
            p->abort_requested = true;
            return make_undefined(env);
        }
        p->resume_server_len = to_server_len;
        p->resume_client_len = to_client_len;
        return make_undefined(env);
    }
    p->depth++;
    do_resume(p, held, (const char *)to_server, to_server_len, (const char *)to_client, to_client_len);
    settle(p);
    p->depth--;
    return make_undefined(env);
}

/*
 * pumpStalledMs(handle) — how long (ms of loop time) the longer-waiting side has had bytes pending
 * without taking any of them; 0 when nothing is pending; -1 when the pump is gone (JavaScript
 * missed its end: it must treat the session as closed). JavaScript polls this for its write
 * timeout, so the pump needs no timer of its own per connection.
 */
static napi_value js_pump_stalled_ms(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    struct pump *p = NULL;
    uint64_t stalled = 0;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_pump(env, argv[0], &p))
        return NULL;
    if (p == NULL)
        return make_double(env, -1);
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
    return make_double(env, (double)stalled);
}

/*
 * pumpInfo(handle) -> [inFlight, untracked, atBoundary, serverStatus] or null when the pump is gone
 * (tests, logs, and the status flags of a local reply).
 */
static napi_value js_pump_info(napi_env env, napi_callback_info info)
{
    napi_value argv[1], result;
    struct pump *p = NULL;

    if (!get_args(env, info, 1, 1, argv, NULL) || !get_pump(env, argv[0], &p))
        return NULL;
    if (p == NULL)
        return make_null(env);
    if (napi_create_array_with_length(env, 4, &result) != napi_ok ||
        napi_set_element(env, result, 0, make_double(env, trk_in_flight(&p->trk))) != napi_ok ||
        napi_set_element(env, result, 1, make_bool(env, p->trk.untracked)) != napi_ok ||
        napi_set_element(env, result, 2, make_bool(env, trk_server_at_boundary(&p->trk))) != napi_ok ||
        napi_set_element(env, result, 3, make_double(env, p->trk.last_status)) != napi_ok)
        return NULL;
    return result;
}

/*
 * pumpInbox(buffer) — from now on, an intercepted packet that fits is copied into `buffer` and
 * JavaScript gets its length instead of a Buffer of its own (it must copy the bytes out before it
 * returns from the event). Kept alive by the addon for the environment's life.
 */
static napi_value js_pump_inbox(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    const uint8_t *data = NULL;
    size_t len = 0;
    napi_ref ref;
    struct addon_env *st = addon_env_get(env);

    if (st == NULL || !get_args(env, info, 1, 1, argv, NULL) ||
        !get_optional_bytes(env, argv[0], "buffer", &data, &len))
        return NULL;
    if (data == NULL || len == 0) {
        throw_type(env, "buffer must be a non-empty Uint8Array");
        return NULL;
    }
    if (napi_create_reference(env, argv[0], 1, &ref) != napi_ok)
        return NULL;
    if (st->inbox_ref != NULL)
        napi_delete_reference(env, st->inbox_ref);
    st->inbox_ref = ref;
    st->inbox = (uint8_t *)data;
    st->inbox_len = len;
    return make_undefined(env);
}

bool register_pump(napi_env env, napi_value exports)
{
    napi_property_descriptor props[] = {
        { "pumpStart", NULL, js_pump_start, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpClose", NULL, js_pump_close, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpAbort", NULL, js_pump_abort, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpRelease", NULL, js_pump_release, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpResume", NULL, js_pump_resume, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpStalledMs", NULL, js_pump_stalled_ms, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpInfo", NULL, js_pump_info, NULL, NULL, NULL, napi_enumerable, NULL },
        { "pumpInbox", NULL, js_pump_inbox, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
