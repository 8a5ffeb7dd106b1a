/*
 * The response tracker (tracker.c) for JavaScript: the JavaScript relay feeds it the chunks its
 * sockets deliver, so both relays follow the protocol with the same grammar. One native call per
 * chunk; nothing is copied.
 *
 *   trackerNew(config, stats, accountStats, record, onEvent) -> handle (freed by the garbage collector)
 *   trackerClient(handle, bytes) -> consumed * 4 + stop      (stop: 0 go, 1 intercept, 2 need more)
 *   trackerClientForced(handle, bytes)
 *   trackerServer(handle, bytes) -> consumed
 *   trackerPushLocal(handle) -> bool, trackerLocalDue(handle) -> bool, trackerPopLocal(handle)
 *   trackerInfo(handle) -> [inFlight, untracked, atBoundary, nextServerSeq]
 *   trackerLayout() -> { statsLength, recordLength, configBytes, durationBounds }
 *   trackerMayBeKill(bytes, complete) -> bool
 */

#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "napi-util.h"
#include "pump.h"
#include "tracker.h"

/* Event types, as the pump's (pump.c). */
enum { EV_UNTRACKED = 2, EV_RESPONSE = 3 };

struct js_tracker {
    struct tracker t;
    napi_env env;
    napi_ref on_event, stats_ref, stats2_ref, record_ref;
    double *record;
};

static void js_tracker_finalize(napi_env env, void *data, void *hint)
{
    (void)hint;
    struct js_tracker *jt = data;
    trk_free(&jt->t);
    if (jt->on_event != NULL)
        napi_delete_reference(env, jt->on_event);
    if (jt->stats_ref != NULL)
        napi_delete_reference(env, jt->stats_ref);
    if (jt->stats2_ref != NULL)
        napi_delete_reference(env, jt->stats2_ref);
    if (jt->record_ref != NULL)
        napi_delete_reference(env, jt->record_ref);
    free(jt);
}

static void emit(struct js_tracker *jt, int type, int arg)
{
    napi_value callback, global, argv[2], result;
    if (jt->on_event == NULL || napi_get_reference_value(jt->env, jt->on_event, &callback) != napi_ok ||
        callback == NULL || napi_get_global(jt->env, &global) != napi_ok ||
        napi_create_int32(jt->env, type, &argv[0]) != napi_ok || napi_create_int32(jt->env, arg, &argv[1]) != napi_ok)
        return;
    /* An exception stays pending and surfaces from the tracker call that caused it. */
    napi_call_function(jt->env, global, callback, 2, argv, &result);
}

static void js_on_untracked(void *ctx, int reason)
{
    emit(ctx, EV_UNTRACKED, reason);
}

static void js_on_record(void *ctx, const struct trk_record *r)
{
    struct js_tracker *jt = ctx;
    if (jt->record == NULL)
        return;
    trk_record_to_array(r, jt->record);
    emit(jt, EV_RESPONSE, 0);
}

static bool get_tracker(napi_env env, napi_value v, struct js_tracker **out)
{
    void *data = NULL;
    if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL)
        return throw_type(env, "handle must be a tracker handle");
    *out = data;
    return true;
}

static napi_value js_tracker_new(napi_env env, napi_callback_info info)
{
    napi_value argv[5], handle;
    const uint8_t *cfg;
    size_t cfg_len;
    double *stats, *stats2, *record;

    if (!get_args(env, info, 5, 5, argv, NULL) || !get_optional_bytes(env, argv[0], "config", &cfg, &cfg_len) ||
        !get_optional_f64(env, argv[1], "stats", TS_LEN, &stats) ||
        !get_optional_f64(env, argv[2], "accountStats", TS_LEN, &stats2) ||
        !get_optional_f64(env, argv[3], "record", TRK_RECORD_LEN, &record))
        return NULL;
    if (cfg_len != 0 && cfg_len != TRK_CONFIG_BYTES) {
        throw_type(env, "config must be 48 bytes");
        return NULL;
    }
    bool has_event = !is_nullish(env, argv[4]);
    if (has_event && !get_function(env, argv[4], "onEvent"))
        return NULL;
    struct js_tracker *jt = calloc(1, sizeof(*jt));
    if (jt == NULL) {
        throw_coded(env, "ENOMEM", NULL, "out of memory");
        return NULL;
    }
    jt->env = env;
    jt->record = record;
    struct trk_config tc;
    memset(&tc, 0, sizeof(tc));
    trk_config_decode(&tc, cfg, cfg_len);
    if (record == NULL || !has_event)
        tc.flags &= ~(uint32_t)TRK_F_EVENTS;
    tc.stats = stats;
    tc.stats2 = stats2;
    tc.ctx = jt;
    tc.on_record = js_on_record;
    tc.on_untracked = js_on_untracked;
    trk_init(&jt->t, &tc);
    if ((has_event && napi_create_reference(env, argv[4], 1, &jt->on_event) != napi_ok) ||
        (stats != NULL && napi_create_reference(env, argv[1], 1, &jt->stats_ref) != napi_ok) ||
        (stats2 != NULL && napi_create_reference(env, argv[2], 1, &jt->stats2_ref) != napi_ok) ||
        (record != NULL && napi_create_reference(env, argv[3], 1, &jt->record_ref) != napi_ok) ||
        napi_create_external(env, jt, js_tracker_finalize, NULL, &handle) != napi_ok) {
        js_tracker_finalize(env, jt, NULL);
        throw_coded(env, "ERR_TRACKER", NULL, "cannot create the tracker");
        return NULL;
    }
    return handle;
}

static bool tracker_and_bytes(napi_env env, napi_callback_info info, struct js_tracker **jt, const uint8_t **data,
                              size_t *len)
{
    napi_value argv[2];
    return get_args(env, info, 2, 2, argv, NULL) && get_tracker(env, argv[0], jt) &&
           get_optional_bytes(env, argv[1], "bytes", data, len);
}

static napi_value js_tracker_client(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    const uint8_t *data;
    size_t len;
    int stop;
    if (!tracker_and_bytes(env, info, &jt, &data, &len))
        return NULL;
    size_t n = trk_client(&jt->t, data, len, &stop);
    return make_double(env, (double)n * 4 + stop);
}

static napi_value js_tracker_client_forced(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    const uint8_t *data;
    size_t len;
    if (!tracker_and_bytes(env, info, &jt, &data, &len))
        return NULL;
    trk_client_forced(&jt->t, data, len);
    return make_undefined(env);
}

static napi_value js_tracker_server(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    const uint8_t *data;
    size_t len;
    if (!tracker_and_bytes(env, info, &jt, &data, &len))
        return NULL;
    return make_double(env, (double)trk_server(&jt->t, data, len));
}

static bool one_tracker(napi_env env, napi_callback_info info, struct js_tracker **jt)
{
    napi_value argv[1];
    return get_args(env, info, 1, 1, argv, NULL) && get_tracker(env, argv[0], jt);
}

static napi_value js_tracker_push_local(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    if (!one_tracker(env, info, &jt))
        return NULL;
    return make_bool(env, trk_push_local(&jt->t));
}

static napi_value js_tracker_local_due(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    if (!one_tracker(env, info, &jt))
        return NULL;
    return make_bool(env, trk_local_due(&jt->t));
}

static napi_value js_tracker_pop_local(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    if (!one_tracker(env, info, &jt))
        return NULL;
    trk_pop_local(&jt->t);
    return make_undefined(env);
}

static napi_value js_tracker_info(napi_env env, napi_callback_info info)
{
    struct js_tracker *jt;
    napi_value result;
    if (!one_tracker(env, info, &jt))
        return NULL;
    if (napi_create_array_with_length(env, 6, &result) != napi_ok ||
        napi_set_element(env, result, 0, make_double(env, trk_in_flight(&jt->t))) != napi_ok ||
        napi_set_element(env, result, 1, make_bool(env, jt->t.untracked)) != napi_ok ||
        napi_set_element(env, result, 2, make_bool(env, trk_server_at_boundary(&jt->t))) != napi_ok ||
        napi_set_element(env, result, 3, make_int(env, trk_next_server_seq(&jt->t))) != napi_ok ||
        napi_set_element(env, result, 4, make_int(env, jt->t.last_status)) != napi_ok ||
        napi_set_element(env, result, 5, make_bool(env, trk_reusable(&jt->t))) != napi_ok)
        return NULL;
    return result;
}

static napi_value js_tracker_layout(napi_env env, napi_callback_info info)
{
    napi_value result, bounds;
    (void)info;
    if (napi_create_object(env, &result) != napi_ok ||
        napi_create_array_with_length(env, TRK_DURATION_BOUNDS, &bounds) != napi_ok)
        return NULL;
    for (int i = 0; i < TRK_DURATION_BOUNDS; i++)
        if (napi_set_element(env, bounds, (uint32_t)i, make_double(env, trk_duration_bounds[i])) != napi_ok)
            return NULL;
    if (napi_set_named_property(env, result, "statsLength", make_int(env, TS_LEN)) != napi_ok ||
        napi_set_named_property(env, result, "recordLength", make_int(env, TRK_RECORD_LEN)) != napi_ok ||
        napi_set_named_property(env, result, "configBytes", make_int(env, TRK_CONFIG_BYTES)) != napi_ok ||
        napi_set_named_property(env, result, "durationBuckets", make_int(env, TS_DURATION_BUCKETS)) != napi_ok ||
        napi_set_named_property(env, result, "commandCounts", make_int(env, TS_COMMAND_COUNTS)) != napi_ok ||
        napi_set_named_property(env, result, "durationBounds", bounds) != napi_ok)
        return NULL;
    return result;
}

static napi_value js_tracker_may_be_kill(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    const uint8_t *data;
    size_t len;
    bool complete;
    if (!get_args(env, info, 2, 2, argv, NULL) || !get_optional_bytes(env, argv[0], "sql", &data, &len) ||
        !get_bool(env, argv[1], "complete", &complete))
        return NULL;
    return make_bool(env, trk_may_be_kill(data, len, complete));
}

bool register_tracker(napi_env env, napi_value exports)
{
    napi_property_descriptor props[] = {
        { "trackerNew", NULL, js_tracker_new, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerClient", NULL, js_tracker_client, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerClientForced", NULL, js_tracker_client_forced, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerServer", NULL, js_tracker_server, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerPushLocal", NULL, js_tracker_push_local, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerLocalDue", NULL, js_tracker_local_due, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerPopLocal", NULL, js_tracker_pop_local, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerInfo", NULL, js_tracker_info, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerLayout", NULL, js_tracker_layout, NULL, NULL, NULL, napi_enumerable, NULL },
        { "trackerMayBeKill", NULL, js_tracker_may_be_kill, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
