/*
 * The response tracker (see tracker.h). Grammar references:
 *   https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html
 *   https://mariadb.com/kb/en/result-set-packets/
 */

#include "tracker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds; Prometheus' default buckets, extended downwards for sub-millisecond statements. */
const double trk_duration_bounds[TRK_DURATION_BOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};

#define COM_QUERY 0x03
#define COM_STMT_EXECUTE 0x17

#define SERVER_STATUS_AUTOCOMMIT 0x0002
#define SERVER_STATUS_IN_TRANS 0x0001
#define SERVER_MORE_RESULTS_EXISTS 0x0008
#define SERVER_QUERY_NO_GOOD_INDEX_USED 0x0010
#define SERVER_QUERY_NO_INDEX_USED 0x0020
#define SERVER_STATUS_CURSOR_EXISTS 0x0040
#define SERVER_QUERY_WAS_SLOW 0x0800

#define MAX_PAYLOAD 0xFFFFFFu

/* What shape the response to a command has. */
enum kind {
    K_UNKNOWN = 0, /* not placeable: the session becomes untracked */
    K_GENERIC,     /* OK, ERR, EOF or result sets (with SERVER_MORE_RESULTS_EXISTS chains, LOCAL INFILE) */
    K_NONE,        /* no response at all */
    K_PREPARE,     /* COM_STMT_PREPARE: OK with parameter and column definitions */
    K_FIELD_LIST,  /* column definitions up to an EOF */
    K_FETCH,       /* binary rows up to an EOF */
    K_STATISTICS,  /* one string packet */
    K_STREAM,      /* replication: packets until EOF, ERR or the end of the connection */
};

static const uint8_t command_kind[256] = {
    [0x00] = K_GENERIC,    /* COM_SLEEP: servers answer ERR */
    [0x01] = K_NONE,       /* COM_QUIT */
    [0x02] = K_GENERIC,    /* COM_INIT_DB */
    [0x03] = K_GENERIC,    /* COM_QUERY */
    [0x04] = K_FIELD_LIST, /* COM_FIELD_LIST */
    [0x05] = K_GENERIC,    /* COM_CREATE_DB */
    [0x06] = K_GENERIC,    /* COM_DROP_DB */
    [0x07] = K_GENERIC,    /* COM_REFRESH */
    [0x08] = K_GENERIC,    /* COM_SHUTDOWN */
    [0x09] = K_STATISTICS, /* COM_STATISTICS */
    [0x0a] = K_GENERIC,    /* COM_PROCESS_INFO: a result set */
    [0x0b] = K_GENERIC,    /* COM_CONNECT: ERR */
    [0x0c] = K_GENERIC,    /* COM_PROCESS_KILL */
    [0x0d] = K_GENERIC,    /* COM_DEBUG */
    [0x0e] = K_GENERIC,    /* COM_PING */
    [0x0f] = K_GENERIC,    /* COM_TIME: ERR */
    [0x10] = K_GENERIC,    /* COM_DELAYED_INSERT: ERR */
    [0x11] = K_UNKNOWN,    /* COM_CHANGE_USER: an authentication exchange */
    [0x12] = K_STREAM,     /* COM_BINLOG_DUMP */
    [0x13] = K_STREAM,     /* COM_TABLE_DUMP */
    [0x14] = K_GENERIC,    /* COM_CONNECT_OUT: ERR */
    [0x15] = K_GENERIC,    /* COM_REGISTER_SLAVE */
    [0x16] = K_PREPARE,    /* COM_STMT_PREPARE */
    [0x17] = K_GENERIC,    /* COM_STMT_EXECUTE (binary rows; a cursor ends at its metadata) */
    [0x18] = K_NONE,       /* COM_STMT_SEND_LONG_DATA */
    [0x19] = K_NONE,       /* COM_STMT_CLOSE */
    [0x1a] = K_GENERIC,    /* COM_STMT_RESET */
    [0x1b] = K_GENERIC,    /* COM_SET_OPTION: EOF */
    [0x1c] = K_FETCH,      /* COM_STMT_FETCH */
    [0x1d] = K_GENERIC,    /* COM_DAEMON: ERR */
    [0x1e] = K_STREAM,     /* COM_BINLOG_DUMP_GTID */
    [0x1f] = K_GENERIC,    /* COM_RESET_CONNECTION */
    [0xfa] = K_GENERIC,    /* MariaDB COM_STMT_BULK_EXECUTE */
};

/* Response states of the command at the head of the queue. */
enum state {
    R_FIRST = 0,      /* the first packet of a response, or of the next result in a chain */
    R_COLDEFS,        /* `left` column definitions to come */
    R_COLDEFS_EOF,    /* the EOF after the column definitions (no CLIENT_DEPRECATE_EOF) */
    R_ROWS,           /* rows up to the terminating EOF/OK, or ERR */
    R_FIELD_LIST,     /* column definitions up to EOF */
    R_FETCH_ROWS,     /* binary rows of a cursor fetch */
    R_PREP_PARAMS,    /* `left` parameter definitions */
    R_PREP_PARAMS_EOF,
    R_PREP_COLS,      /* `left` column definitions */
    R_PREP_COLS_EOF,
    R_STREAM,         /* a replication stream */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint32_t read3(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static inline uint16_t read2(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void stat_add(struct tracker *t, int slot, double v)
{
    if (t->cfg.stats != NULL)
        t->cfg.stats[slot] += v;
    if (t->cfg.stats2 != NULL)
        t->cfg.stats2[slot] += v;
}

/* A length-encoded integer at p[*pos] (bounded by n); false if it runs past n or is not an integer. */
static bool lenenc(const uint8_t *p, size_t n, size_t *pos, uint64_t *out)
{
    size_t at = *pos;
    if (at >= n)
        return false;
    uint8_t first = p[at];
    size_t width;
    if (first < 0xfb) {
        *out = first;
        *pos = at + 1;
        return true;
    }
    switch (first) {
    case 0xfc: width = 2; break;
    case 0xfd: width = 3; break;
    case 0xfe: width = 8; break;
    default: return false; /* 0xfb (NULL) and 0xff are not integers */
    }
    if (n - at - 1 < width)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v |= (uint64_t)p[at + 1 + i] << (8 * i);
    *out = v;
    *pos = at + 1 + width;
    return true;
}

/* ------------------------------------------------------------------ */
/* the queue of commands in flight                                     */

static struct trk_inflight *fifo_at(struct tracker *t, uint32_t i)
{
    return &t->fifo[(t->head + i) % t->cap];
}

static bool fifo_push(struct tracker *t, struct trk_inflight e)
{
    if (t->count == t->cap) {
        if (t->cap >= TRK_MAX_IN_FLIGHT)
            return false;
        uint32_t cap = t->cap * 2;
        struct trk_inflight *grown = malloc(sizeof(*grown) * cap);
        if (grown == NULL)
            return false;
        for (uint32_t i = 0; i < t->count; i++)
            grown[i] = *fifo_at(t, i);
        if (t->fifo != t->inline_fifo)
            free(t->fifo);
        t->fifo = grown;
        t->cap = cap;
        t->head = 0;
    }
    *fifo_at(t, t->count) = e;
    t->count++;
    return true;
}

static void fifo_pop(struct tracker *t)
{
    if (t->count == 0)
        return;
    t->head = (t->head + 1) % t->cap;
    t->count--;
}

static struct trk_inflight *fifo_head(struct tracker *t)
{
    return t->count == 0 ? NULL : fifo_at(t, 0);
}

/* ------------------------------------------------------------------ */

static uint32_t config_word(const uint8_t *cfg, size_t len, size_t word)
{
    size_t at = word * 4;
    if (cfg == NULL || at + 4 > len)
        return 0;
    return (uint32_t)cfg[at] | (uint32_t)cfg[at + 1] << 8 | (uint32_t)cfg[at + 2] << 16 | (uint32_t)cfg[at + 3] << 24;
}

uint32_t trk_config_decode(struct trk_config *tc, const uint8_t *cfg, size_t len)
{
    tc->caps = config_word(cfg, len, 0);
    tc->ext_caps = config_word(cfg, len, 1);
    tc->flags = config_word(cfg, len, 2);
    for (size_t w = 0; w < 8; w++) {
        uint32_t bits = config_word(cfg, len, 4 + w);
        for (size_t b = 0; b < 4; b++)
            tc->intercept[w * 4 + b] = (uint8_t)(bits >> (8 * b));
    }
    return config_word(cfg, len, 3);
}

void trk_record_to_array(const struct trk_record *r, double *out)
{
    out[0] = r->command;
    out[1] = r->outcome;
    out[2] = r->error_code;
    out[3] = r->status;
    out[4] = r->status_or;
    out[5] = r->warnings;
    out[6] = r->affected_rows;
    out[7] = r->insert_id;
    out[8] = r->rows;
    out[9] = r->results;
    out[10] = r->duration_us;
    out[11] = r->bytes_in;
    out[12] = r->bytes_out;
}

void trk_init(struct tracker *t, const struct trk_config *cfg)
{
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    t->fifo = t->inline_fifo;
    t->cap = TRK_INLINE_FIFO;
    t->next_serial = 1;
    t->last_status = SERVER_STATUS_AUTOCOMMIT; /* what a session starts with */
}

void trk_free(struct tracker *t)
{
    if (t->fifo != t->inline_fifo)
        free(t->fifo);
    t->fifo = t->inline_fifo;
    t->cap = TRK_INLINE_FIFO;
    t->count = 0;
}

static bool tracking(const struct tracker *t)
{
    return (t->cfg.flags & TRK_F_TRACK) != 0 && !t->untracked;
}

static void go_untracked(struct tracker *t, int reason)
{
    if (t->untracked)
        return;
    t->untracked = true;
    t->c_infile = false;
    t->done_at_packet_end = false;
    /* Drop the responses we were waiting for; local replies stay queued: trk_local_due() now
     * releases them at once (their order can no longer be known). */
    uint32_t n = t->count;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct trk_inflight e = *fifo_at(t, i);
        if (e.local)
            t->fifo[kept++] = e;
    }
    if (t->fifo != t->inline_fifo && kept <= TRK_INLINE_FIFO) {
        memcpy(t->inline_fifo, t->fifo, sizeof(*t->fifo) * kept);
        free(t->fifo);
        t->fifo = t->inline_fifo;
        t->cap = TRK_INLINE_FIFO;
    }
    t->head = 0;
    t->count = kept;
    if (reason == TRK_MALFORMED_PACKET)
        stat_add(t, TS_SERVER_MALFORMED, 1);
    stat_add(t, TS_UNTRACKED, 1);
    if (t->cfg.on_untracked != NULL)
        t->cfg.on_untracked(t->cfg.ctx, reason);
}

/* The head command's response starts (or a new command became the head). */
static void begin_response(struct tracker *t)
{
    struct trk_inflight *h = fifo_head(t);
    memset(&t->cur, 0, sizeof(t->cur));
    t->state = R_FIRST;
    t->left = 0;
    if (h != NULL && !h->local)
        t->cur.command = h->command;
}

static int command_slot(uint8_t command)
{
    return command < 0x20 ? command : 0x20;
}

/* The head's response is complete (called at the end of its last packet). */
static void finish_response(struct tracker *t)
{
    struct trk_inflight *h = fifo_head(t);
    t->done_at_packet_end = false;
    if (h == NULL || h->local)
        return;
    struct trk_record *r = &t->cur;
    double seconds = (double)(now_ns() - h->start_ns) / 1e9;
    r->duration_us = seconds * 1e6;
    r->bytes_in = h->bytes_in;
    bool err = r->outcome == TRK_ERR;

    stat_add(t, TS_COMMANDS, 1);
    if (err)
        stat_add(t, TS_COMMAND_ERRORS, 1);
    stat_add(t, TS_ROWS, r->rows);
    if (h->command == COM_QUERY) {
        /* myproxy's per-server query statistics: COM_QUERY only. */
        stat_add(t, TS_QUERIES, 1);
        stat_add(t, TS_QUERY_WAIT, seconds);
        if (err) {
            stat_add(t, TS_QUERY_ERRORS, 1);
        } else {
            stat_add(t, TS_QUERY_WARNINGS, r->warnings);
            stat_add(t, TS_AFFECTED_ROWS, r->affected_rows);
            if (r->status_or & SERVER_QUERY_NO_GOOD_INDEX_USED)
                stat_add(t, TS_NO_GOOD_INDEX, 1);
            if (r->status_or & SERVER_QUERY_NO_INDEX_USED)
                stat_add(t, TS_NO_INDEX, 1);
            if (r->status_or & SERVER_QUERY_WAS_SLOW)
                stat_add(t, TS_SLOW, 1);
        }
    }
    if (h->command == COM_QUERY || h->command == COM_STMT_EXECUTE) {
        int bucket = 0;
        while (bucket < TRK_DURATION_BOUNDS && seconds > trk_duration_bounds[bucket])
            bucket++;
        stat_add(t, TS_DURATION_BUCKETS + bucket, 1);
        stat_add(t, TS_DURATION_SUM, seconds);
        stat_add(t, TS_DURATION_COUNT, 1);
    }
    if ((t->cfg.flags & TRK_F_EVENTS) && t->cfg.on_record != NULL)
        t->cfg.on_record(t->cfg.ctx, r);
    fifo_pop(t);
    begin_response(t);
}

/* ------------------------------------------------------------------ */
/* client side                                                         */

static void start_command(struct tracker *t, uint8_t command, uint32_t plen)
{
    stat_add(t, TS_COMMAND_COUNTS + command_slot(command), 1);
    if (command == COM_QUERY)
        stat_add(t, TS_CLIENT_QUERIES, 1);
    t->c_in_command = false;
    if (!tracking(t))
        return;
    int kind = command_kind[command];
    if (kind == K_UNKNOWN) {
        go_untracked(t, TRK_UNKNOWN_COMMAND);
        return;
    }
    if (kind == K_NONE) {
        if ((t->cfg.flags & TRK_F_EVENTS) && t->cfg.on_record != NULL) {
            struct trk_record r;
            memset(&r, 0, sizeof(r));
            r.command = command;
            r.outcome = TRK_NO_RESPONSE;
            r.bytes_in = 4.0 + plen;
            t->cfg.on_record(t->cfg.ctx, &r);
        }
        return;
    }
    struct trk_inflight e = { command, false, t->next_serial++, now_ns(), 4.0 + plen };
    bool was_idle = fifo_head(t) == NULL;
    if (!fifo_push(t, e)) {
        go_untracked(t, TRK_TOO_MANY_IN_FLIGHT);
        return;
    }
    t->c_in_command = true;
    t->c_serial = e.serial;
    if (was_idle)
        begin_response(t);
}

/* Bytes of a client packet that continues a command (or uploads its LOCAL INFILE). */
static void add_command_bytes(struct tracker *t, double n)
{
    if (!t->c_in_command || t->count == 0)
        return;
    struct trk_inflight *tail = fifo_at(t, t->count - 1);
    if (!tail->local && tail->serial == t->c_serial)
        tail->bytes_in += n;
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_ident(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           c >= 0x80;
}

bool trk_may_be_kill(const uint8_t *p, size_t n, bool complete)
{
    size_t i = 0;
    for (;;) {
        while (i < n && is_space(p[i]))
            i++;
        if (i + 1 < n && p[i] == '/' && p[i + 1] == '*') {
            /* Executable comments (slash-star-bang, MariaDB's slash-star-M-bang) may hide the statement. */
            if (i + 2 >= n)
                return !complete;
            if (p[i + 2] == '!' || p[i + 2] == 'M')
                return true;
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == '*' && p[j + 1] == '/'))
                j++;
            if (j + 1 >= n)
                return !complete;
            i = j + 2;
            continue;
        }
        if (i < n && (p[i] == '#' || (i + 2 < n && p[i] == '-' && p[i + 1] == '-' && (p[i + 2] <= ' ')))) {
            while (i < n && p[i] != '\n')
                i++;
            if (i >= n)
                return !complete;
            continue;
        }
        break;
    }
    /* The window ends before the first word does: unsure (only after ~250 bytes of comments). */
    if (!complete && n - i < 5)
        return true;
    static const char kill[] = "kill";
    for (int k = 0; k < 4; k++) {
        if (i + (size_t)k >= n)
            return false;
        if ((p[i + k] | 0x20) != kill[k])
            return false;
    }
    return i + 4 == n || !is_ident(p[i + 4]);
}

static inline bool intercepted(const struct tracker *t, uint8_t command)
{
    return (t->cfg.intercept[command >> 3] >> (command & 7)) & 1;
}

static size_t client_bytes(struct tracker *t, const uint8_t *data, size_t len, int *stop, bool forced)
{
    size_t pos = 0;
    *stop = TRK_GO;
    while (pos < len) {
        if (t->c_left > 0) {
            size_t n = len - pos < t->c_left ? len - pos : t->c_left;
            pos += n;
            t->c_left -= (uint32_t)n;
            continue;
        }
        if (len - pos < 4) {
            if (forced) { /* forced bytes are whole packets; a stray tail is counted as data */
                pos = len;
                break;
            }
            *stop = TRK_HOLD_MORE;
            break;
        }
        const uint8_t *h = data + pos;
        uint32_t plen = read3(h);
        bool continuation = t->c_continued;
        bool command;
        if (tracking(t))
            command = !continuation && !t->c_infile;
        else
            command = !continuation && h[3] == 0; /* the rule when responses are not followed */
        if (command) {
            if (plen == 0) {
                stat_add(t, TS_CLIENT_MALFORMED, 1);
                t->c_in_command = false;
                if (tracking(t))
                    go_untracked(t, TRK_EMPTY_COMMAND);
            } else {
                if (len - pos < 5) {
                    if (!forced) {
                        *stop = TRK_HOLD_MORE;
                        break;
                    }
                } else {
                    uint8_t command_byte = h[4];
                    if (!forced && intercepted(t, command_byte)) {
                        *stop = TRK_HOLD_INTERCEPT;
                        break;
                    }
                    if (!forced && command_byte == COM_QUERY && (t->cfg.flags & TRK_F_KILL_FILTER)) {
                        /* The statement follows the command byte. */
                        size_t sql_len = plen - 1;
                        size_t window = sql_len < TRK_KILL_LOOKAHEAD ? sql_len : TRK_KILL_LOOKAHEAD;
                        if (len - pos - 5 < window) {
                            *stop = TRK_HOLD_MORE;
                            break;
                        }
                        if (trk_may_be_kill(h + 5, window, window == sql_len)) {
                            *stop = TRK_HOLD_INTERCEPT;
                            break;
                        }
                    }
                    start_command(t, command_byte, plen);
                }
            }
        } else {
            add_command_bytes(t, 4.0 + plen);
            if (t->c_infile && !continuation && plen == 0)
                t->c_infile = false; /* the empty packet ends a LOCAL INFILE upload */
        }
        stat_add(t, TS_CLIENT_PACKETS, 1);
        t->c_continued = plen == MAX_PAYLOAD;
        t->c_left = plen;
        pos += 4;
    }
    stat_add(t, TS_CLIENT_BYTES, (double)pos);
    return pos;
}

size_t trk_client(struct tracker *t, const uint8_t *data, size_t len, int *stop)
{
    return client_bytes(t, data, len, stop, false);
}

void trk_client_forced(struct tracker *t, const uint8_t *data, size_t len)
{
    int stop;
    client_bytes(t, data, len, &stop, true);
}

/* ------------------------------------------------------------------ */
/* server side: the grammar                                            */

static bool deprecate_eof(const struct tracker *t)
{
    return (t->cfg.caps & TRK_CLIENT_DEPRECATE_EOF) != 0;
}

/* 0xFE ending rows or definitions: an EOF (< 9 bytes), or with CLIENT_DEPRECATE_EOF an OK packet
 * (a text row starting with 0xFE needs an 8-byte length, so its first packet is 0xFFFFFF long). */
static bool is_terminator(const struct tracker *t, uint8_t b, uint32_t plen)
{
    return b == 0xfe && (deprecate_eof(t) ? plen < MAX_PAYLOAD : plen < 9);
}

static bool is_classic_eof(uint8_t b, uint32_t plen)
{
    return b == 0xfe && plen < 9;
}

static void note_status(struct tracker *t, uint16_t status, double warnings)
{
    t->cur.status = status;
    t->cur.status_or |= status;
    t->cur.warnings += warnings;
}

/* An EOF packet: 0xFE, warnings, status. False if malformed (the session goes untracked). */
static bool parse_eof(struct tracker *t, const uint8_t *p, size_t n)
{
    if (n == 1) { /* pre-4.1 EOF */
        note_status(t, 0, 0);
        return true;
    }
    if (n < 5) {
        go_untracked(t, TRK_MALFORMED_PACKET);
        return false;
    }
    note_status(t, read2(p + 3), read2(p + 1));
    t->last_status = read2(p + 3);
    return true;
}

/* An OK packet (0x00, or 0xFE under CLIENT_DEPRECATE_EOF): affected rows, insert id, status, warnings. */
static bool parse_ok(struct tracker *t, const uint8_t *p, size_t n)
{
    size_t pos = 1;
    uint64_t affected, insert_id;
    if (!lenenc(p, n, &pos, &affected) || !lenenc(p, n, &pos, &insert_id) || n - pos < 4) {
        go_untracked(t, TRK_MALFORMED_PACKET);
        return false;
    }
    t->cur.affected_rows += (double)affected;
    if (insert_id != 0)
        t->cur.insert_id = (double)insert_id;
    note_status(t, read2(p + pos), read2(p + pos + 2));
    t->last_status = read2(p + pos);
    return true;
}

/* The packet that ends rows or definitions: EOF, or OK under CLIENT_DEPRECATE_EOF. */
static bool parse_terminator(struct tracker *t, const uint8_t *p, size_t n)
{
    return deprecate_eof(t) ? parse_ok(t, p, n) : parse_eof(t, p, n);
}

static void done(struct tracker *t)
{
    t->done_at_packet_end = true;
}

/* After an OK or terminator: another result follows, or the response is complete. */
static void next_or_done(struct tracker *t)
{
    if (t->cur.status & SERVER_MORE_RESULTS_EXISTS)
        t->state = R_FIRST;
    else
        done(t);
}

static bool is_progress(const struct tracker *t, const uint8_t *p, size_t n)
{
    return (t->cfg.ext_caps & TRK_MARIADB_CLIENT_PROGRESS) && n >= 3 && read2(p + 1) == 0xffff;
}

/* An ERR ends the response (nothing follows an error in a chain). */
static void error(struct tracker *t, const uint8_t *p, size_t n)
{
    t->cur.outcome = TRK_ERR;
    t->cur.error_code = n >= 3 ? read2(p + 1) : 0;
    done(t);
}

static void first_generic(struct tracker *t, const uint8_t *p, size_t n, uint32_t plen, uint8_t command)
{
    if (n == 0) {
        go_untracked(t, TRK_MALFORMED_PACKET);
        return;
    }
    switch (p[0]) {
    case 0x00:
        t->cur.results += 1;
        if (parse_ok(t, p, n))
            next_or_done(t);
        return;
    case 0xff:
        if (!is_progress(t, p, n))
            error(t, p, n);
        return;
    case 0xfe:
        if (!is_terminator(t, p[0], plen)) {
            go_untracked(t, TRK_UNEXPECTED_PACKET);
            return;
        }
        /* EOF as a whole response: COM_SET_OPTION, COM_DEBUG, COM_SHUTDOWN */
        t->cur.results += 1;
        if (parse_terminator(t, p, n))
            next_or_done(t);
        return;
    case 0xfb:
        if (command != COM_QUERY) {
            go_untracked(t, TRK_UNEXPECTED_PACKET);
            return;
        }
        /* LOCAL INFILE request: the client uploads, ending with an empty packet; the OK/ERR
         * for the statement comes after that (or an early ERR). */
        t->c_infile = true;
        return;
    default: {
        size_t pos = 0;
        uint64_t columns;
        if (!lenenc(p, n, &pos, &columns) || columns == 0) {
            go_untracked(t, TRK_MALFORMED_PACKET);
            return;
        }
        t->cur.results += 1;
        if ((t->cfg.ext_caps & TRK_MARIADB_CLIENT_CACHE_METADATA) && pos < n && p[pos] == 0) {
            /* The client has the metadata cached: no column definitions, no EOF after them. */
            t->state = R_ROWS;
            return;
        }
        t->left = columns;
        t->state = R_COLDEFS;
        return;
    }
    }
}

/* A row, or the end of the rows. `more` says whether a chain may continue after it. */
static void row_or_end(struct tracker *t, const uint8_t *p, size_t n, uint32_t plen, bool more)
{
    uint8_t b = n > 0 ? p[0] : 0;
    if (n > 0 && b == 0xff) {
        if (!is_progress(t, p, n))
            error(t, p, n);
        return;
    }
    if (n > 0 && is_terminator(t, b, plen)) {
        if (!parse_terminator(t, p, n))
            return;
        if (more)
            next_or_done(t);
        else
            done(t);
        return;
    }
    t->cur.rows += 1;
}

/* A packet of a replication stream: an ERR or EOF ends it, anything else is an event. */
static void stream_packet(struct tracker *t, const uint8_t *p, size_t n, uint32_t plen)
{
    if (n > 0 && p[0] == 0xff)
        error(t, p, n);
    else if (n > 0 && is_classic_eof(p[0], plen))
        done(t);
}

static void step(struct tracker *t, const uint8_t *p, size_t n, uint32_t plen)
{
    struct trk_inflight *h = fifo_head(t);
    uint8_t b = n > 0 ? p[0] : 0;
    if (h == NULL || h->local) {
        /* Nothing asked: a server may say goodbye with an ERR before it closes. */
        if (n > 0 && b == 0xff)
            stat_add(t, TS_COMMAND_ERRORS, 1);
        else
            go_untracked(t, TRK_UNEXPECTED_PACKET);
        return;
    }
    switch (t->state) {
    case R_FIRST:
        switch (command_kind[h->command]) {
        case K_GENERIC:
            first_generic(t, p, n, plen, h->command);
            return;
        case K_PREPARE:
            if (n > 0 && b == 0x00) {
                if (n < 12) {
                    go_untracked(t, TRK_MALFORMED_PACKET);
                    return;
                }
                /* 0x00, statement id (4), columns (2), parameters (2), filler, warnings (2) */
                uint16_t columns = read2(p + 5), params = read2(p + 7);
                note_status(t, 0, read2(p + 10));
                t->cur.results += 1;
                t->prep_cols = columns;
                if (params > 0) {
                    t->left = params;
                    t->state = R_PREP_PARAMS;
                } else if (columns > 0) {
                    t->left = columns;
                    t->state = R_PREP_COLS;
                } else {
                    done(t);
                }
            } else if (n > 0 && b == 0xff) {
                error(t, p, n);
            } else {
                go_untracked(t, TRK_UNEXPECTED_PACKET);
            }
            return;
        case K_FIELD_LIST:
            if (n > 0 && b == 0xff)
                error(t, p, n);
            else if (n > 0 && is_terminator(t, b, plen)) {
                if (parse_terminator(t, p, n))
                    done(t);
            } else
                t->state = R_FIELD_LIST;
            return;
        case K_FETCH:
            t->state = R_FETCH_ROWS;
            row_or_end(t, p, n, plen, false);
            return;
        case K_STATISTICS:
            if (n > 0 && b == 0xff)
                error(t, p, n);
            else
                done(t);
            return;
        case K_STREAM:
            t->state = R_STREAM;
            stream_packet(t, p, n, plen);
            return;
        default:
            go_untracked(t, TRK_UNEXPECTED_PACKET);
            return;
        }
    case R_COLDEFS:
        if (--t->left == 0)
            t->state = deprecate_eof(t) ? R_ROWS : R_COLDEFS_EOF;
        return;
    case R_COLDEFS_EOF:
        if (!is_classic_eof(b, plen) || n == 0) {
            go_untracked(t, TRK_UNEXPECTED_PACKET);
            return;
        }
        if (!parse_eof(t, p, n))
            return;
        /* A cursor was opened (COM_STMT_EXECUTE): the rows come with COM_STMT_FETCH. */
        if (t->cur.status & SERVER_STATUS_CURSOR_EXISTS)
            done(t);
        else
            t->state = R_ROWS;
        return;
    case R_ROWS:
        row_or_end(t, p, n, plen, true);
        return;
    case R_FETCH_ROWS:
        row_or_end(t, p, n, plen, false);
        return;
    case R_FIELD_LIST:
        if (n > 0 && b == 0xff)
            error(t, p, n);
        else if (n > 0 && is_terminator(t, b, plen)) {
            if (parse_terminator(t, p, n))
                done(t);
        }
        return;
    case R_PREP_PARAMS:
        if (--t->left == 0) {
            if (!deprecate_eof(t))
                t->state = R_PREP_PARAMS_EOF;
            else if (t->prep_cols > 0) {
                t->left = t->prep_cols;
                t->state = R_PREP_COLS;
            } else
                done(t);
        }
        return;
    case R_PREP_PARAMS_EOF:
        if (!is_classic_eof(b, plen) || n == 0) {
            go_untracked(t, TRK_UNEXPECTED_PACKET);
            return;
        }
        if (t->prep_cols > 0) {
            t->left = t->prep_cols;
            t->state = R_PREP_COLS;
        } else
            done(t);
        return;
    case R_PREP_COLS:
        if (--t->left == 0) {
            if (deprecate_eof(t))
                done(t);
            else
                t->state = R_PREP_COLS_EOF;
        }
        return;
    case R_PREP_COLS_EOF:
        if (!is_classic_eof(b, plen) || n == 0)
            go_untracked(t, TRK_UNEXPECTED_PACKET);
        else
            done(t);
        return;
    case R_STREAM:
        stream_packet(t, p, n, plen);
        return;
    default:
        go_untracked(t, TRK_UNEXPECTED_PACKET);
        return;
    }
}

/* The server packet whose peek bytes are complete. */
static void peeked(struct tracker *t)
{
    t->peeking = false;
    if (tracking(t))
        step(t, t->peek, t->peek_want, t->s_first_len);
}

/* A physical server packet ended; if the logical one did too and it finished a response, finish it. */
static void server_packet_end(struct tracker *t)
{
    if (t->s_continued || !t->done_at_packet_end)
        return;
    if (tracking(t))
        finish_response(t);
    else
        t->done_at_packet_end = false;
}

size_t trk_server(struct tracker *t, const uint8_t *data, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        if (t->s_left > 0) {
            size_t n = len - pos < t->s_left ? len - pos : t->s_left;
            if (t->peeking) {
                size_t take = t->peek_want - t->peek_have;
                if (take > n)
                    take = n;
                memcpy(t->peek + t->peek_have, data + pos, take);
                t->peek_have += (uint8_t)take;
                if (t->peek_have == t->peek_want)
                    peeked(t);
            }
            pos += n;
            t->s_left -= (uint32_t)n;
            if (tracking(t) && t->count > 0)
                t->cur.bytes_out += (double)n;
            if (t->s_left == 0) {
                server_packet_end(t);
                if (trk_local_due(t))
                    break;
            }
            continue;
        }
        /* A header (possibly split across reads). */
        while (t->s_hdr_have < 4 && pos < len)
            t->s_hdr[t->s_hdr_have++] = data[pos++];
        if (t->s_hdr_have < 4)
            break;
        t->s_hdr_have = 0;
        uint32_t plen = read3(t->s_hdr);
        bool first = !t->s_continued;
        t->s_last_seq = t->s_hdr[3];
        t->s_continued = plen == MAX_PAYLOAD;
        t->s_left = plen;
        stat_add(t, TS_SERVER_PACKETS, 1);
        if (tracking(t) && t->count > 0)
            t->cur.bytes_out += 4;
        if (first && tracking(t)) {
            t->s_first_len = plen;
            t->peek_want = plen < TRK_PEEK ? (uint8_t)plen : TRK_PEEK;
            t->peek_have = 0;
            t->peeking = true;
            if (t->peek_want == 0)
                peeked(t);
        }
        if (t->s_left == 0) {
            server_packet_end(t);
            if (trk_local_due(t))
                break;
        }
    }
    stat_add(t, TS_SERVER_BYTES, (double)pos);
    return pos;
}

/* ------------------------------------------------------------------ */
/* local replies                                                       */

bool trk_push_local(struct tracker *t)
{
    if (t->untracked) {
        /* The order is unknown, but the packet framing is not: queue it, so that the relay can
         * place it between server packets (and then end the session, see pump.c). */
        struct trk_inflight e = { 0, true, 0, 0, 0 };
        return fifo_push(t, e);
    }
    if (!tracking(t) || t->count == 0)
        return false;
    struct trk_inflight e = { 0, true, 0, 0, 0 };
    if (!fifo_push(t, e)) {
        go_untracked(t, TRK_TOO_MANY_IN_FLIGHT);
        return false;
    }
    return true;
}

bool trk_local_due(const struct tracker *t)
{
    if (t->count == 0)
        return false;
    /* Untracked: the order is unknown, queued replies go out at once. */
    if (t->untracked)
        return true;
    return t->fifo[t->head].local && !t->done_at_packet_end;
}

void trk_pop_local(struct tracker *t)
{
    struct trk_inflight *h = fifo_head(t);
    if (h == NULL || !h->local)
        return;
    fifo_pop(t);
    begin_response(t);
}

uint32_t trk_in_flight(const struct tracker *t)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->count; i++)
        if (!t->fifo[(t->head + i) % t->cap].local)
            n++;
    return n;
}

bool trk_server_at_boundary(const struct tracker *t)
{
    return t->s_left == 0 && t->s_hdr_have == 0 && !t->s_continued;
}

bool trk_reusable(const struct tracker *t)
{
    return !t->untracked && t->count == 0 && trk_server_at_boundary(t) && t->c_left == 0 && !t->c_continued &&
           !t->c_infile && (t->last_status & SERVER_STATUS_IN_TRANS) == 0;
}

uint8_t trk_next_server_seq(const struct tracker *t)
{
    /* The oldest command's response has not begun: it would start right after the command, whose
     * sequence id is 0 (the last answer's ids have nothing to do with it). */
    if (t->count > 0 && t->cur.bytes_out == 0 && t->s_hdr_have == 0)
        return 1;
    return (uint8_t)(t->s_last_seq + 1);
}

long trk_logical_packet_length(const uint8_t *data, size_t len)
{
    size_t pos = 0;
    for (;;) {
        if (len - pos < 4)
            return -1;
        uint32_t plen = read3(data + pos);
        if (len - pos - 4 < plen)
            return -1;
        pos += 4 + plen;
        if (plen != MAX_PAYLOAD)
            return (long)pos;
    }
}
