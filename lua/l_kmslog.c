/*
 * l_kmslog.c — `nd.kmslog`: the KMS proxy log scanner (core/kmslog.c) for Lua.
 *
 *   local kmslog = require "nd.kmslog"
 *   local sc <close> = kmslog.new{ errors = true, op = "Decrypt", since = "-1h", keep = 200 }
 *   assert(sc:scan_file("/var/log/ephemeralml-kms-proxy.log"))
 *   sc:feed(chunk) ... sc:finish()            -- stdin / journalctl output
 *   local r = sc:result()   -- stats, errors, latency, counters, ids, records
 *
 * Scanning is synchronous (it does not wait on the loop): a 1 GiB file takes about 0.3–0.6 s filtered, 0.6 s of
 * CPU for a summary of every event (docs/performance.md).
 */
#include "ndlua.h"
#include "nd_kmslog.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#define KMSLOG_MT "nd.kmslog.scanner"

typedef struct lkms {
    nd_kmslog *k;
    lua_State *L;      /* the state running the current scan call */
    lua_Integer keep;  /* records kept in the result */
    lua_Integer kept, dropped;
    int quiet;         /* the scanner was told no more records are wanted (ND_KMSLOG_ENOUGH) */
    uint64_t quiet_at; /* stats.matched then: every match since is a dropped record */
    int cb_failed;
    int events;        /* kept records carry the event as a table */
    int has_fn;        /* an on_record function was given */
    FILE *out;         /* print = file handle: matches are written there as "label:line: json" */
    lua_Integer print_limit, printed, print_dropped;
    char label[512];
    uint64_t label_base; /* lines before the current label's source */
} lkms;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void push_time(lua_State *L, double t)
{
    if (isnan(t))
        lua_pushnil(L);
    else
        lua_pushnumber(L, t);
}

/* Pushes a record table (see docs/lua-api.md). */
static void push_record(lua_State *L, const nd_kmslog_record *r, int events)
{
    lua_createtable(L, 0, 16);
    ndl_setint(L, "line_no", (lua_Integer)r->line_no);
    ndl_setstr(L, "kind", r->is_response ? "response" : "request");
    ndl_setstr(L, "form", r->wrapped ? "wrapped" : "plain");
    ndl_setbool(L, "prefixed", r->prefixed);
    if (r->request_id)
        ndl_setstr(L, "request_id", r->request_id);
    if (r->trace_id)
        ndl_setstr(L, "trace_id", r->trace_id);
    if (r->op)
        ndl_setstr(L, "op", r->op);
    if (r->kms_request_id)
        ndl_setstr(L, "kms_request_id", r->kms_request_id);
    if (r->raw_code)
        ndl_setstr(L, "raw_code", r->raw_code);
    if (r->attestation_pcr0)
        ndl_setstr(L, "attestation_pcr0", r->attestation_pcr0);
    if (r->attestation_module_id)
        ndl_setstr(L, "attestation_module_id", r->attestation_module_id);
    if (r->code[0])
        ndl_setstr(L, "code", r->code);
    if (r->ok >= 0)
        ndl_setbool(L, "ok", r->ok);
    if (!isnan(r->duration_ms))
        ndl_setnum(L, "duration_ms", r->duration_ms);
    if (!isnan(r->ts))
        ndl_setnum(L, "ts", r->ts);
    ndl_setlstr(L, "raw", r->line, r->line_len);
    size_t jn;
    const char *js = nd_kmslog_record_json(r, &jn);
    if (js)
        ndl_setlstr(L, "json", js, jn);
    if (events) {
        const json_t *ev = nd_kmslog_event(r);
        if (ev)
            ndl_push_json(L, ev);
        else
            lua_pushnil(L);
        lua_setfield(L, -2, "event");
    }
}

static int on_record(void *ud, const nd_kmslog_record *r)
{
    lkms *lk = ud;
    lua_State *L = lk->L;
    if (!lk->out && !lk->has_fn && lk->kept >= lk->keep) {
        /* nothing to do in Lua (a summary of a big log): the scanner stops calling back, the rest of the matches
         * are counted as dropped records from stats.matched */
        lk->dropped++;
        lk->quiet = 1;
        lk->quiet_at = nd_kmslog_stats_of(lk->k)->matched;
        return ND_KMSLOG_ENOUGH;
    }
    if (lk->out) {
        if (lk->printed < lk->print_limit) {
            lk->printed++;
            size_t jn;
            const char *js = nd_kmslog_record_json(r, &jn);
            fprintf(lk->out, "%s:%llu: %.*s\n", lk->label, (unsigned long long)(r->line_no - lk->label_base),
                    js ? (int)jn : 0, js ? js : "");
        } else {
            lk->print_dropped++;
        }
    }
    /* stack: [1] scanner ... ; user values: 1 = records table, 2 = on_record function */
    if (lk->kept < lk->keep) {
        lua_getiuservalue(L, 1, 1);
        push_record(L, r, lk->events);
        lua_rawseti(L, -2, ++lk->kept);
        lua_pop(L, 1);
    } else {
        lk->dropped++;
    }
    if (lua_getiuservalue(L, 1, 2) == LUA_TFUNCTION) {
        push_record(L, r, 1);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            lk->cb_failed = 1;
            lua_setiuservalue(L, 1, 4); /* keep the message */
            return -ECANCELED;
        }
        int stop = lua_toboolean(L, -1) == 0 && !lua_isnil(L, -1); /* returning false stops the scan */
        lua_pop(L, 1);
        return stop ? -ECANCELED : 0;
    }
    lua_pop(L, 1);
    return 0;
}

static lkms *check(lua_State *L)
{
    lkms *lk = luaL_checkudata(L, 1, KMSLOG_MT);
    if (!lk->k)
        luaL_error(L, "nd.kmslog: the scanner is closed");
    lk->L = L;
    return lk;
}

/* Turns a failed scan into nil, msg, code (a callback error re-raises). */
static int scan_rc(lua_State *L, lkms *lk, int rc, const nd_err *err)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (lk->cb_failed) {
        lk->cb_failed = 0;
        lua_getiuservalue(L, 1, 4);
        return lua_error(L);
    }
    if (rc == -ECANCELED && !err->msg[0])
        return ndl_fail(L, rc, "stopped by on_record");
    return ndl_fail_err(L, err);
}

static int l_feed(lua_State *L)
{
    lkms *lk = check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    nd_err err;
    nd_err_clear(&err);
    return scan_rc(L, lk, nd_kmslog_feed(lk->k, s, n, &err), &err);
}

static int l_finish(lua_State *L)
{
    lkms *lk = check(L);
    nd_err err;
    nd_err_clear(&err);
    return scan_rc(L, lk, nd_kmslog_finish(lk->k, &err), &err);
}

static int l_scan_file(lua_State *L)
{
    lkms *lk = check(L);
    const char *path = luaL_checkstring(L, 2);
    nd_err err;
    nd_err_clear(&err);
    return scan_rc(L, lk, nd_kmslog_scan_file(lk->k, path, &err), &err);
}

static void set_u64(lua_State *L, const char *k, uint64_t v)
{
    ndl_setint(L, k, (lua_Integer)v);
}

static int l_result(lua_State *L)
{
    lkms *lk = check(L);
    nd_kmslog *k = lk->k;
    const nd_kmslog_stats *st = nd_kmslog_stats_of(k);
    lua_createtable(L, 0, 10);

    lua_createtable(L, 0, 20);
    set_u64(L, "bytes", st->bytes);
    set_u64(L, "lines", st->lines);
    set_u64(L, "blank", st->blank);
    set_u64(L, "noise", st->noise);
    set_u64(L, "skipped", st->skipped);
    set_u64(L, "parsed", st->parsed);
    set_u64(L, "malformed", st->malformed);
    set_u64(L, "other", st->other);
    set_u64(L, "events", st->events);
    set_u64(L, "wrapped", st->wrapped);
    set_u64(L, "plain", st->plain);
    set_u64(L, "prefixed", st->prefixed);
    set_u64(L, "matched", st->matched);
    set_u64(L, "matched_requests", st->matched_requests);
    set_u64(L, "matched_responses", st->matched_responses);
    set_u64(L, "untimed", st->untimed);
    set_u64(L, "paired", st->paired);
    set_u64(L, "unpaired_requests", st->unpaired_requests);
    set_u64(L, "unpaired_responses", st->unpaired_responses);
    set_u64(L, "seek_skipped", st->seek_skipped);
    lua_setfield(L, -2, "stats");

    size_t nerr = nd_kmslog_error_codes(k);
    lua_createtable(L, (int)nerr, 0);
    for (size_t i = 0; i < nerr; i++) {
        const char *code;
        uint64_t n;
        nd_kmslog_error_at(k, i, &code, &n);
        lua_createtable(L, 0, 2);
        ndl_setstr(L, "code", code);
        set_u64(L, "count", n);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "errors");

    size_t nd = nd_kmslog_durations(k);
    lua_createtable(L, 0, 8);
    ndl_setint(L, "count", (lua_Integer)nd);
    if (!nd_kmslog_latency_exact(k))
        ndl_setbool(L, "approx", 1); /* percentiles from the histogram: within 0.5 % */
    if (nd) {
        static const struct { const char *name; double p; } ps[] = {
            {"p50", 50}, {"p90", 90}, {"p95", 95}, {"p99", 99}, {"max", 100}};
        double v;
        nd_kmslog_percentile(k, 1e-9, &v);
        ndl_setnum(L, "min", v);
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            nd_kmslog_percentile(k, ps[i].p, &v);
            ndl_setnum(L, ps[i].name, v);
        }
    }
    lua_setfield(L, -2, "latency");

    size_t nc;
    const nd_kmslog_counter *c = nd_kmslog_counters(k, &nc);
    lua_createtable(L, (int)nc, 0);
    for (size_t i = 0; i < nc; i++) {
        lua_createtable(L, 0, 9);
        ndl_setstr(L, "name", c[i].name);
        ndl_setnum(L, "first", c[i].first);
        ndl_setnum(L, "last", c[i].last);
        ndl_setnum(L, "delta", c[i].delta);
        ndl_setnum(L, "min", c[i].min);
        ndl_setnum(L, "max", c[i].max);
        set_u64(L, "samples", c[i].samples);
        set_u64(L, "resets", c[i].resets);
        ndl_setbool(L, "monotonic", c[i].monotonic);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "counters");

    size_t nid;
    uint64_t dropped;
    const nd_kmslog_id *ids = nd_kmslog_ids(k, &nid, &dropped);
    lua_createtable(L, (int)nid, 0);
    for (size_t i = 0; i < nid; i++) {
        lua_createtable(L, 0, 4);
        ndl_setstr(L, "kms_request_id", ids[i].kms_request_id);
        if (ids[i].request_id)
            ndl_setstr(L, "request_id", ids[i].request_id);
        if (ids[i].code[0])
            ndl_setstr(L, "code", ids[i].code);
        if (ids[i].attestation_pcr0[0])
            ndl_setstr(L, "attestation_pcr0", ids[i].attestation_pcr0);
        if (ids[i].attestation_module_id[0])
            ndl_setstr(L, "attestation_module_id", ids[i].attestation_module_id);
        push_time(L, ids[i].ts);
        lua_setfield(L, -2, "ts");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "ids");
    set_u64(L, "ids_dropped", dropped);

    lua_getiuservalue(L, 1, 1);
    lua_setfield(L, -2, "records");
    ndl_setint(L, "records_dropped",
               lk->dropped + (lk->quiet ? (lua_Integer)(nd_kmslog_stats_of(k)->matched - lk->quiet_at) : 0));
    ndl_setint(L, "printed", lk->printed);
    ndl_setint(L, "print_dropped", lk->print_dropped);
    return 1;
}

/* scanner:label(name) — names the source that follows for printed lines ("name:line: json"); line numbers restart. */
static int l_label(lua_State *L)
{
    lkms *lk = check(L);
    const char *name = luaL_checkstring(L, 2);
    snprintf(lk->label, sizeof lk->label, "%s", name);
    lk->label_base = nd_kmslog_stats_of(lk->k)->lines;
    return 0;
}

static int l_close(lua_State *L)
{
    lkms *lk = luaL_checkudata(L, 1, KMSLOG_MT);
    nd_kmslog_free(lk->k);
    lk->k = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    lkms *lk = luaL_checkudata(L, 1, KMSLOG_MT);
    if (!lk->k) {
        lua_pushstring(L, "nd.kmslog(closed)");
        return 1;
    }
    const nd_kmslog_stats *st = nd_kmslog_stats_of(lk->k);
    lua_pushfstring(L, "nd.kmslog(%I lines, %I matched)", (lua_Integer)st->lines, (lua_Integer)st->matched);
    return 1;
}

/* Reads a time option: a number (epoch seconds) or a string for nd_kmslog_parse_time. */
static int opt_time(lua_State *L, int idx, const char *key, bool *has, double *out)
{
    lua_getfield(L, idx, key);
    int rc = 0;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        *has = true;
        *out = lua_tonumber(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        nd_err err;
        nd_err_clear(&err);
        rc = nd_kmslog_parse_time(lua_tostring(L, -1), now_s(), out, &err);
        if (rc < 0) {
            lua_pop(L, 1);
            lua_pushfstring(L, "%s: %s", key, err.msg);
            return rc;
        }
        *has = true;
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "nd.kmslog: %s must be a number or a string", key);
    }
    lua_pop(L, 1);
    return rc;
}

/* kmslog.new([opts]) -> scanner | nil, msg, code */
static int l_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    else
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    nd_kmslog_filter f;
    memset(&f, 0, sizeof f);
    f.request_id = ndl_optfield_str(L, 1, "request_id", NULL);
    f.trace_id = ndl_optfield_str(L, 1, "trace_id", NULL);
    f.op = ndl_optfield_str(L, 1, "op", NULL);
    f.code = ndl_optfield_str(L, 1, "code", NULL);
    f.errors_only = ndl_optfield_bool(L, 1, "errors", 0);
    f.throttled = ndl_optfield_bool(L, 1, "throttled", 0);
    double max_ids = ndl_optfield_num(L, 1, "max_ids", 0);
    f.max_ids = max_ids > 0 ? (size_t)max_ids : 0;
    f.seek = ndl_optfield_bool(L, 1, "seek", 0);
    if (opt_time(L, 1, "since", &f.has_since, &f.since) < 0 || opt_time(L, 1, "until", &f.has_until, &f.until) < 0)
        return ndl_fail(L, -EINVAL, lua_tostring(L, -1));
    double keep = ndl_optfield_num(L, 1, "keep", 1000);

    lkms *lk = lua_newuserdatauv(L, sizeof *lk, 4);
    memset(lk, 0, sizeof *lk);
    lk->keep = keep < 0 ? 0 : (lua_Integer)keep;
    lk->events = ndl_optfield_bool(L, 1, "events", 1);
    lk->print_limit = (lua_Integer)ndl_optfield_num(L, 1, "print_limit", 1e15);
    lua_getfield(L, 1, "print");
    if (!lua_isnil(L, -1)) {
        luaL_Stream *st = luaL_testudata(L, -1, LUA_FILEHANDLE);
        if (!st || !st->f || !st->closef)
            return luaL_error(L, "nd.kmslog: print must be an open file handle (io.stdout)");
        lk->out = st->f;
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, -3, 3); /* keep the file alive while the scanner uses it */
    }
    lua_pop(L, 1);
    luaL_setmetatable(L, KMSLOG_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_getfield(L, 1, "on_record");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        return luaL_error(L, "nd.kmslog: on_record must be a function");
    lk->has_fn = lua_isfunction(L, -1);
    lua_setiuservalue(L, -2, 2);
    nd_err err;
    nd_err_clear(&err);
    if (nd_kmslog_new(&f, on_record, lk, &lk->k, &err) < 0)
        return ndl_fail_err(L, &err);
    return 1;
}

/* kmslog.normalize_code(s) -> snake_case string */
static int l_normalize(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char out[256];
    size_t len = nd_kmslog_normalize_code(s, n, out, sizeof out);
    lua_pushlstring(L, out, len);
    return 1;
}

/* kmslog.parse_time(s [, now]) -> epoch seconds | nil, msg, "EINVAL" */
static int l_parse_time(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    double now = luaL_optnumber(L, 2, now_s());
    double out;
    nd_err err;
    nd_err_clear(&err);
    if (nd_kmslog_parse_time(s, now, &out, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushnumber(L, out);
    return 1;
}

NDL_MODULE(kmslog)
{
    static const luaL_Reg methods[] = {{"feed", l_feed},     {"finish", l_finish}, {"scan_file", l_scan_file},
                                       {"result", l_result}, {"close", l_close},   {"label", l_label},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
    ndl_newclass(L, KMSLOG_MT, methods, meta);
    static const luaL_Reg funcs[] = {
        {"new", l_new}, {"normalize_code", l_normalize}, {"parse_time", l_parse_time}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
