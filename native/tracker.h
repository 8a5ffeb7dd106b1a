/*
 * The response tracker: follows the MySQL command phase in both directions without copying
 * payloads. It reads only the 4-byte packet headers and the few leading payload bytes that decide
 * the grammar (at most TRK_PEEK per packet), and knows:
 *   - where each client command starts (and which ones a relay must take out of the stream);
 *   - where the server's complete response to each command ends (OK, ERR, EOF, result sets with
 *     and without CLIENT_DEPRECATE_EOF, SERVER_MORE_RESULTS_EXISTS chains, LOCAL INFILE, prepared
 *     statements, cursors, replication streams, 16 MiB packets, pipelined commands);
 *   - what each response said (OK/ERR, error code, affected rows, warnings, status flags) and how
 *     long it took.
 * What it cannot place marks the session "untracked" for good; relaying goes on byte-exact.
 * Tracking never changes a byte of the stream.
 *
 * Pure C (no N-API): the native pump calls it on its reads, the JavaScript relay through a thin
 * binding (tracker-binding.c), so the grammar exists once.
 */
#ifndef MYPROXY_TRACKER_H
#define MYPROXY_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Per-server counters, a Float64Array shared with JavaScript (read at scrape time). */
enum trk_stat {
    TS_SERVER_BYTES = 0,     /* bytes received from the server (command phase) */
    TS_SERVER_PACKETS,       /* packets received from the server */
    TS_SERVER_MALFORMED,     /* server packets that fit no grammar */
    TS_QUERIES,              /* COM_QUERY responses completed (myproxy_server_queries) */
    TS_QUERY_ERRORS,         /* ... of which ERR */
    TS_QUERY_WARNINGS,       /* warnings of COM_QUERY responses */
    TS_NO_GOOD_INDEX,        /* SERVER_QUERY_NO_GOOD_INDEX_USED */
    TS_NO_INDEX,             /* SERVER_QUERY_NO_INDEX_USED */
    TS_SLOW,                 /* SERVER_QUERY_WAS_SLOW */
    TS_AFFECTED_ROWS,        /* affected rows of COM_QUERY responses */
    TS_QUERY_WAIT,           /* seconds from COM_QUERY to the end of its response */
    TS_CLIENT_BYTES,         /* bytes received from clients and forwarded (command phase) */
    TS_CLIENT_PACKETS,       /* packets received from clients (command phase) */
    TS_CLIENT_MALFORMED,     /* empty command packets */
    TS_CLIENT_QUERIES,       /* COM_QUERY packets received */
    TS_UNTRACKED,            /* sessions that became untracked */
    TS_COMMANDS,             /* tracked responses completed (every command) */
    TS_COMMAND_ERRORS,       /* ... of which ERR */
    TS_ROWS,                 /* result set rows sent to clients */
    TS_DURATION_BUCKETS,     /* histogram of statement durations (COM_QUERY, COM_STMT_EXECUTE) */
    TS_DURATION_SUM = TS_DURATION_BUCKETS + 17, /* 16 bounds + the +Inf bucket */
    TS_DURATION_COUNT,
    TS_COMMAND_COUNTS,       /* per command byte 0x00..0x1f, then one slot for everything else */
    TS_LEN = TS_COMMAND_COUNTS + 33,
};

#define TRK_DURATION_BOUNDS 16
extern const double trk_duration_bounds[TRK_DURATION_BOUNDS]; /* seconds */

/* trk_config.flags */
enum {
    TRK_F_TRACK = 1,       /* follow responses (off: only client framing, for interception) */
    TRK_F_KILL_FILTER = 2, /* intercept COM_QUERY packets that may be KILL statements */
    TRK_F_EVENTS = 4,      /* report every finished response through on_record */
};

/* Capability bits the grammar depends on. */
#define TRK_CLIENT_DEPRECATE_EOF (1u << 24)
/* MariaDB extended capabilities (the upper 32 bits of the capability set). */
#define TRK_MARIADB_CLIENT_PROGRESS (1u << 0)
#define TRK_MARIADB_CLIENT_STMT_BULK_OPERATIONS (1u << 2)
#define TRK_MARIADB_CLIENT_CACHE_METADATA (1u << 4)

/* Why a session became untracked. */
enum trk_untracked_reason {
    TRK_UNKNOWN_COMMAND = 1,
    TRK_UNEXPECTED_PACKET = 2,
    TRK_MALFORMED_PACKET = 3,
    TRK_TOO_MANY_IN_FLIGHT = 4,
    TRK_EMPTY_COMMAND = 5,
};

enum trk_outcome { TRK_OK = 0, TRK_ERR = 1, TRK_NO_RESPONSE = 2 };

/* One finished response (TRK_F_EVENTS). */
struct trk_record {
    uint8_t command;
    uint8_t outcome;      /* enum trk_outcome */
    uint16_t error_code;
    uint16_t status;      /* status flags of the last OK/EOF */
    uint16_t status_or;   /* every status flag seen in the response */
    double warnings;      /* summed over a SERVER_MORE_RESULTS_EXISTS chain */
    double affected_rows; /* summed likewise */
    double insert_id;     /* of the last OK that had one */
    double rows;          /* result set rows */
    double results;       /* result sets and OKs in the chain */
    double duration_us;   /* from the command to the end of its response */
    double bytes_in;      /* client bytes of the command (and a LOCAL INFILE upload) */
    double bytes_out;     /* server bytes of the response */
};

struct trk_config {
    uint32_t caps;     /* capabilities in effect between client and server */
    uint32_t ext_caps; /* MariaDB extended capabilities in effect */
    uint32_t flags;
    uint8_t intercept[32]; /* bit set of command bytes the relay takes out of the stream */
    double *stats;         /* TS_LEN counters of the server (may be NULL) */
    double *stats2;        /* ... and of the account (may be NULL) */
    void *ctx;
    void (*on_record)(void *ctx, const struct trk_record *rec);
    void (*on_untracked)(void *ctx, int reason);
};

#define TRK_PEEK 24
#define TRK_INLINE_FIFO 4
#define TRK_MAX_IN_FLIGHT 1024
/* How far into a COM_QUERY the KILL filter looks (past whitespace and comments). */
#define TRK_KILL_LOOKAHEAD 256

struct trk_inflight {
    uint8_t command;
    bool local;       /* a reply the relay answers itself, in this place of the order */
    uint32_t serial;  /* which client command this is (continuation bytes find their entry) */
    uint64_t start_ns;
    double bytes_in;
};

struct tracker {
    struct trk_config cfg;
    bool untracked;
    /* client stream */
    uint32_t c_left;      /* payload bytes of the current physical packet still to come */
    bool c_continued;     /* the next client packet continues a 0xFFFFFF one */
    bool c_infile;        /* the client is uploading a LOCAL INFILE */
    bool c_in_command;    /* the current logical client packet belongs to command c_serial */
    uint32_t c_serial;
    /* server stream */
    uint8_t s_hdr[4];
    uint8_t s_hdr_have;
    uint32_t s_left;
    bool s_continued;     /* the next server packet continues a 0xFFFFFF one */
    uint32_t s_first_len; /* length of the first physical packet of the current logical one */
    uint8_t s_last_seq;
    uint8_t peek[TRK_PEEK];
    uint8_t peek_have, peek_want;
    bool peeking;
    bool done_at_packet_end; /* the current server packet finishes the head's response */
    /* response of the head command */
    uint8_t state;
    uint64_t left;        /* column/parameter definitions still to come */
    uint64_t prep_cols;
    struct trk_record cur;
    /* commands in flight, oldest first */
    struct trk_inflight inline_fifo[TRK_INLINE_FIFO];
    struct trk_inflight *fifo;
    uint32_t head, count, cap;
    uint32_t next_serial;
    /* Status flags of the last OK or EOF the server sent: the session's state (in a transaction?)
     * for the pool, and the flags of the relay's own replies (read on demand, so no response
     * needs to be reported for it). An ERR leaves them as they were. */
    uint16_t last_status;
};

/* trk_client() stop reasons */
enum { TRK_GO = 0, TRK_HOLD_INTERCEPT = 1, TRK_HOLD_MORE = 2 };

/* Layouts shared with JavaScript (src/net/tracking.ts): the configuration block (little-endian
 * uint32 words: caps, ext caps, flags, max hold, 8 words of intercept bits) and the record array. */
#define TRK_CONFIG_BYTES 48
#define TRK_RECORD_LEN 13
/* Fills caps, ext_caps, flags and intercept from a configuration block (len 0: all zero); returns
 * the max-hold word. */
uint32_t trk_config_decode(struct trk_config *tc, const uint8_t *cfg, size_t len);
/* Writes a record into TRK_RECORD_LEN doubles. */
void trk_record_to_array(const struct trk_record *r, double *out);

void trk_init(struct tracker *t, const struct trk_config *cfg);
void trk_free(struct tracker *t);

/*
 * Client bytes on their way to the server. Returns how many of them may be forwarded now (whole
 * packets or parts of them). When it returns less than `len`, `*stop` says why the rest must be
 * held: TRK_HOLD_INTERCEPT (a command to take out of the stream starts at the returned offset) or
 * TRK_HOLD_MORE (a header, or the bytes that decide about the packet there, are incomplete: call
 * again with them and more). Bytes past the returned offset have not been looked at.
 */
size_t trk_client(struct tracker *t, const uint8_t *data, size_t len, int *stop);
/* Client-side bytes the relay sends to the server whatever they are (an answered interception). */
void trk_client_forced(struct tracker *t, const uint8_t *data, size_t len);

/*
 * Server bytes on their way to the client. Returns how many were consumed: all of them, or fewer
 * when a response ended at that point and a local reply is now due (trk_local_due()).
 */
size_t trk_server(struct tracker *t, const uint8_t *data, size_t len);

/*
 * A local reply (the relay's own answer to a command it took out) goes into the order of
 * responses. False: nothing is in flight, send it now. True: it is queued behind the responses in
 * flight; send it when trk_local_due() says so, then call trk_pop_local().
 */
bool trk_push_local(struct tracker *t);
bool trk_local_due(const struct tracker *t);
void trk_pop_local(struct tracker *t);

/* Responses (not local replies) still owed by the server. */
uint32_t trk_in_flight(const struct tracker *t);
/* The server stream is between packets (an extra packet may be inserted for the client). */
bool trk_server_at_boundary(const struct tracker *t);
/*
 * Nothing is owed either way and the session is outside a transaction (by the last status flags):
 * the server connection could be handed to another session (after a reset).
 */
bool trk_reusable(const struct tracker *t);
/* Sequence id the next server packet of the response in flight would have. */
uint8_t trk_next_server_seq(const struct tracker *t);

/*
 * Length of the logical packet (with every 0xFFFFFF continuation) at the start of `data`, or -1
 * while it is incomplete.
 */
long trk_logical_packet_length(const uint8_t *data, size_t len);

/* True when the query text may be a KILL statement (conservative: unsure means true). */
bool trk_may_be_kill(const uint8_t *sql, size_t n, bool complete);

#endif
