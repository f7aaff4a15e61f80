/* ra_reqlist: listing request records for operators through synchronous
 * hiredis (see ra_reqlist.h): a page of SCAN/ZSCAN, one pipelined round
 * trip of HMGETs for it, the callbacks, the next page. */
#include "ra/ra_reqlist.h"

#include <openssl/bytestring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ra/ra_redis.h"

/* KEYS[1] stp:reqs:open; ARGV member/score pairs. Removes each member whose
 * score is still the one given; replies 1 (removed) or 0 per pair. */
static const char ra_prune_script[] =
    "local out = {}\n"
    "for i = 1, #ARGV, 2 do\n"
    "  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then\n"
    "    out[#out + 1] = redis.call('ZREM', KEYS[1], ARGV[i])\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "  end\n"
    "end\n"
    "return out\n";

enum { F_ID = 0, F_IDENTITY, F_PROTOCOL, F_PEER, F_STATE, F_REASON, F_RECEIVED, F_UPDATED, F_ATTEMPTS,
       F_SERIAL, F_NOT_AFTER };

static const char *const ra_reqlist_fields[RA_REQLIST_NUM_FIELDS] = {RA_REQLIST_FIELDS};

/* One batch of entries (heap: about 0.5 MB); `member`/`score` (open walk)
 * point into the ZSCAN reply, which outlives the batch; `argv` is the prune
 * command's. */
typedef struct {
    ra_reqlist_entry_t ent[RA_REQLIST_BATCH];
    const redisReply *member[RA_REQLIST_BATCH], *score[RA_REQLIST_BATCH];
    size_t num;
    const char *argv[4 + 2 * RA_REQLIST_BATCH];
    size_t argvlen[4 + 2 * RA_REQLIST_BATCH];
    size_t idx[RA_REQLIST_BATCH];
} ra_batch_t;


/* ra_cbs_skip_str consumes the literal `s` at the front of `cbs`. */
static int ra_cbs_skip_str(CBS *cbs, const char *s) {
    size_t n = strlen(s);
    return CBS_len(cbs) >= n && !memcmp(CBS_data(cbs), s, n) && CBS_skip(cbs, n);
}

/* ra_cbs_all_hex: `cbs` is non-empty and all hex (lower case only if
 * `lower`). Does not consume. */
static int ra_cbs_all_hex(const CBS *cbs, int lower) {
    const uint8_t *p = CBS_data(cbs);
    if (CBS_len(cbs) == 0) return 0;
    for (size_t i = 0; i < CBS_len(cbs); i++) {
        uint8_t c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (!lower && c >= 'A' && c <= 'F'))) return 0;
    }
    return 1;
}

ra_err_t ra_reqlist_parse_key(ra_reqlist_entry_t *out, const char *key, size_t key_len) {
    CBS k, ident, hash;
    const uint8_t *brace;
    memset(out, 0, sizeof(*out));
    CBS_init(&k, (const uint8_t *)key, key_len);
    if (!ra_cbs_skip_str(&k, "stp:req:{") || !(brace = memchr(CBS_data(&k), '}', CBS_len(&k))) ||
        !CBS_get_bytes(&k, &ident, (size_t)(brace - CBS_data(&k))) || !ra_cbs_skip_str(&k, "}:") ||
        !ra_req_identity_valid((const char *)CBS_data(&ident), CBS_len(&ident)) ||
        !CBS_get_bytes(&k, &hash, 64) || !ra_cbs_all_hex(&hash, 1))
        goto bad;
    out->kind = RA_REQLIST_RECORD;
    if (CBS_len(&k) > 0) { /* archived: ":SERIAL" */
        if (!ra_cbs_skip_str(&k, ":") || CBS_len(&k) > RA_REQ_SERIAL_MAX || !ra_cbs_all_hex(&k, 0)) goto bad;
        ra_printable(out->serial, sizeof(out->serial), CBS_data(&k), CBS_len(&k));
        out->kind = RA_REQLIST_ARCHIVED;
    }
    ra_printable(out->identity, sizeof(out->identity), CBS_data(&ident), CBS_len(&ident));
    ra_printable(out->hash, sizeof(out->hash), CBS_data(&hash), CBS_len(&hash));
    snprintf(out->id, sizeof(out->id), "%s:%s", out->identity, out->hash);
    ra_printable(out->key, sizeof(out->key), key, key_len);
    return RA_OK;
bad:
    memset(out, 0, sizeof(*out));
    out->kind = RA_REQLIST_BAD_RECORD;
    ra_printable(out->key, sizeof(out->key), key, key_len);
    ra_printable(out->id, sizeof(out->id), key, key_len);
    snprintf(out->why, sizeof(out->why), "not a request key (stp:req:{IDENTITY}:SHA256HEX[:SERIAL])");
    return RA_E_BAD_NAME;
}

static void ra_bad(ra_reqlist_entry_t *out, const char *why) {
    out->kind = RA_REQLIST_BAD_RECORD;
    snprintf(out->why, sizeof(out->why), "%s", why);
}

/* ra_decode_num reads number field `f` of the reply if present. */
static int ra_decode_num(ra_reqlist_entry_t *out, const redisReply *v, int f, int64_t *dst) {
    CBS cbs;
    if (v->type == REDIS_REPLY_NIL) return 1;
    CBS_init(&cbs, (const uint8_t *)v->str, v->len);
    if (ra_cbs_get_i64(&cbs, dst)) return 1;
    snprintf(out->why, sizeof(out->why), "malformed record: field '%s' is not a number", ra_reqlist_fields[f]);
    out->kind = RA_REQLIST_BAD_RECORD;
    return 0;
}

/* ra_field_is: string element `v` equals `s` (absent counts as equal). */
static int ra_field_is(const redisReply *v, const char *s) {
    return v->type == REDIS_REPLY_NIL || (v->len == strlen(s) && !memcmp(v->str, s, v->len));
}

void ra_reqlist_decode(ra_reqlist_entry_t *out, const redisReply *r) {
    char err[120];
    if (r && r->type == REDIS_REPLY_ERROR) {
        ra_printable(err, sizeof(err), r->str, r->len);
        snprintf(out->why, sizeof(out->why), "unreadable: %s", err);
        out->kind = RA_REQLIST_BAD_RECORD;
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != RA_REQLIST_NUM_FIELDS)
        return ra_bad(out, "HMGET replied in an unexpected shape");
    const redisReply *const *v = (const redisReply *const *)r->element;
    size_t present = 0;
    for (size_t i = 0; i < RA_REQLIST_NUM_FIELDS; i++) {
        if (v[i]->type == REDIS_REPLY_STRING) present++;
        else if (v[i]->type != REDIS_REPLY_NIL) return ra_bad(out, "HMGET replied in an unexpected shape");
    }
    if (!present) {
        out->kind = RA_REQLIST_MISSING;
        snprintf(out->reason, sizeof(out->reason), "no record");
        return;
    }
    if (!ra_field_is(v[F_ID], out->id) || !ra_field_is(v[F_IDENTITY], out->identity))
        return ra_bad(out, "malformed record: field 'id' or 'identity' does not match its key");
    if (v[F_STATE]->type == REDIS_REPLY_NIL) return ra_bad(out, "malformed record: no field 'state'");
    const struct {
        int f;
        char *dst;
        size_t cap;
    } text[] = {{F_PROTOCOL, out->protocol, sizeof(out->protocol)}, {F_PEER, out->peer, sizeof(out->peer)},
                {F_STATE, out->state, sizeof(out->state)},          {F_REASON, out->reason, sizeof(out->reason)},
                {F_SERIAL, out->serial, sizeof(out->serial)}};
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        if (v[text[i].f]->type == REDIS_REPLY_STRING)
            ra_printable(text[i].dst, text[i].cap, v[text[i].f]->str, v[text[i].f]->len);
    if (!ra_decode_num(out, v[F_RECEIVED], F_RECEIVED, &out->received) ||
        !ra_decode_num(out, v[F_UPDATED], F_UPDATED, &out->updated) ||
        !ra_decode_num(out, v[F_ATTEMPTS], F_ATTEMPTS, &out->attempts))
        return;
    ra_decode_num(out, v[F_NOT_AFTER], F_NOT_AFTER, &out->not_after);
}

/* ra_fetch reads the records of the batch's parsed entries in one
 * pipelined round trip and decodes them. */
static ra_err_t ra_fetch(redisContext *c, ra_batch_t *b, char *why, size_t why_len) {
    const char *argv[2 + RA_REQLIST_NUM_FIELDS] = {"HMGET"};
    memcpy(argv + 2, ra_reqlist_fields, sizeof(ra_reqlist_fields));
    for (size_t i = 0; i < b->num; i++) {
        ra_reqlist_kind_t k = b->ent[i].kind;
        if (k != RA_REQLIST_RECORD && k != RA_REQLIST_ARCHIVED) continue;
        argv[1] = b->ent[i].key;
        if (redisAppendCommandArgv(c, 2 + RA_REQLIST_NUM_FIELDS, argv, NULL) != REDIS_OK) {
            snprintf(why, why_len, "out of memory");
            return RA_E_NOMEM; /* the context is unusable after a partial pipeline */
        }
    }
    for (size_t i = 0; i < b->num; i++) {
        ra_reqlist_kind_t k = b->ent[i].kind;
        redisReply *r = NULL;
        if (k != RA_REQLIST_RECORD && k != RA_REQLIST_ARCHIVED) continue;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) return ra_redis_reply_err(c, NULL, why, why_len);
        ra_reqlist_decode(&b->ent[i], r);
        freeReplyObject(r);
    }
    return RA_OK;
}

/* ra_prune removes the batch's stale members whose score did not change,
 * in one script call; marks them pruned and counts them. */
static ra_err_t ra_prune(redisContext *c, ra_batch_t *b, size_t *num_pruned, char *why, size_t why_len) {
    const char **argv = b->argv;
    size_t *argvlen = b->argvlen, *idx = b->idx, n = 0;
    int argc = 4;
    argv[0] = "EVAL", argv[1] = ra_prune_script, argv[2] = "1", argv[3] = RA_REQ_OPEN_SET;
    for (int i = 0; i < argc; i++) argvlen[i] = strlen(argv[i]);
    for (size_t i = 0; i < b->num; i++) {
        if (!b->ent[i].stale) continue;
        argv[argc] = b->member[i]->str, argvlen[argc++] = b->member[i]->len;
        argv[argc] = b->score[i]->str, argvlen[argc++] = b->score[i]->len;
        idx[n++] = i;
    }
    if (n == 0) return RA_OK;
    redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (e == RA_OK && (r->type != REDIS_REPLY_ARRAY || r->elements != n)) {
        snprintf(why, why_len, "index prune script replied in an unexpected shape");
        e = RA_E_REDIS;
    }
    for (size_t j = 0; e == RA_OK && j < n; j++) {
        const redisReply *x = r->element[j];
        if (x->type == REDIS_REPLY_INTEGER && x->integer == 1) {
            b->ent[idx[j]].pruned = true;
            if (num_pruned) ++*num_pruned;
        }
    }
    if (r) freeReplyObject(r);
    return e;
}

/* ra_emit hands the batch to `cb` (skipping `skip_missing` entries);
 * sets *stop if it asked to. */
static void ra_emit(const ra_batch_t *b, bool skip_missing, ra_reqlist_cb cb, void *arg, int *stop) {
    for (size_t i = 0; i < b->num && !*stop; i++) {
        if (skip_missing && b->ent[i].kind == RA_REQLIST_MISSING) continue; /* deleted meanwhile */
        *stop = cb(&b->ent[i], arg);
    }
}

/* ra_scan_reply checks a SCAN-family reply: [cursor, array of strings]
 * (an even count if `pairs`), and copies the cursor. */
static ra_err_t ra_scan_reply(const redisReply *r, bool pairs, char *cursor, size_t cursor_len, char *why,
                              size_t why_len) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= cursor_len || r->element[1]->type != REDIS_REPLY_ARRAY ||
        (pairs && r->element[1]->elements % 2))
        goto shape;
    for (size_t i = 0; i < r->element[1]->elements; i++)
        if (r->element[1]->element[i]->type != REDIS_REPLY_STRING) goto shape;
    memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
    return RA_OK;
shape:
    snprintf(why, why_len, "%s: unexpected reply", pairs ? "ZSCAN" : "SCAN");
    return RA_E_REDIS;
}

/* ra_open_entry maps one index member to its entry (a key to fetch, or
 * MISSING if the member is not a request id). */
static void ra_open_entry(ra_reqlist_entry_t *e, const redisReply *m) {
    char key[RA_REQ_KEY_MAX];
    if (m->len < RA_REQ_ID_MAX && !memchr(m->str, '\0', m->len) &&
        ra_req_key_of_id(key, sizeof(key), m->str) == RA_OK &&
        ra_reqlist_parse_key(e, key, strlen(key)) == RA_OK)
        return;
    memset(e, 0, sizeof(*e));
    e->kind = RA_REQLIST_MISSING;
    ra_printable(e->id, sizeof(e->id), m->str, m->len);
    snprintf(e->reason, sizeof(e->reason), "not a request id");
}

/* ra_walk_t: one walk over a SCAN-family cursor: ZSCAN of stp:reqs:open
 * (`open`) or SCAN MATCH stp:req:*, fetched in batches, handed to `cb`. */
typedef struct {
    redisContext *c;
    ra_batch_t *b;
    bool open;
    bool prune;               /* open only */
    size_t *num_pruned;       /* open only */
    ra_reqlist_cb cb;
    void *arg;
    int stop;
} ra_walk_t;

/* ra_open_page processes one ZSCAN page in batches. */
static ra_err_t ra_open_page(ra_walk_t *w, const redisReply *items, char *why, size_t why_len) {
    ra_batch_t *b = w->b;
    size_t pairs = items->elements / 2;
    for (size_t at = 0; at < pairs && !w->stop; at += b->num) {
        ra_err_t e;
        b->num = pairs - at < RA_REQLIST_BATCH ? pairs - at : RA_REQLIST_BATCH;
        for (size_t i = 0; i < b->num; i++) {
            b->member[i] = items->element[2 * (at + i)];
            b->score[i] = items->element[2 * (at + i) + 1];
            ra_open_entry(&b->ent[i], b->member[i]);
        }
        if ((e = ra_fetch(w->c, b, why, why_len)) != RA_OK) return e;
        for (size_t i = 0; i < b->num; i++) { /* gone, or issued after all: the index entry is stale */
            ra_reqlist_entry_t *x = &b->ent[i];
            x->stale = x->kind == RA_REQLIST_MISSING || (x->kind == RA_REQLIST_RECORD && !strcmp(x->state, "issued"));
        }
        if (w->prune && (e = ra_prune(w->c, b, w->num_pruned, why, why_len)) != RA_OK) return e;
        ra_emit(b, false, w->cb, w->arg, &w->stop);
    }
    return RA_OK;
}

/* ra_all_page processes one SCAN page in batches. */
static ra_err_t ra_all_page(ra_walk_t *w, const redisReply *keys, char *why, size_t why_len) {
    ra_batch_t *b = w->b;
    for (size_t at = 0; at < keys->elements && !w->stop; at += b->num) {
        ra_err_t e;
        b->num = keys->elements - at < RA_REQLIST_BATCH ? keys->elements - at : RA_REQLIST_BATCH;
        for (size_t i = 0; i < b->num; i++) {
            const redisReply *k = keys->element[at + i];
            ra_reqlist_parse_key(&b->ent[i], k->str, k->len);
        }
        if ((e = ra_fetch(w->c, b, why, why_len)) != RA_OK) return e;
        ra_emit(b, true, w->cb, w->arg, &w->stop);
    }
    return RA_OK;
}

/* ra_walk runs the cursor to its end (or until the callback stops it). */
static ra_err_t ra_walk(ra_walk_t *w, char *why, size_t why_len) {
    char cursor[32] = "0", count[16];
    ra_err_t e = RA_OK;
    if (!(w->b = malloc(sizeof(*w->b)))) {
        snprintf(why, why_len, "out of memory");
        return RA_E_NOMEM;
    }
    snprintf(count, sizeof(count), "%d", RA_REQLIST_BATCH);
    do {
        const char *zscan[] = {"ZSCAN", RA_REQ_OPEN_SET, cursor, "COUNT", count};
        const char *scan[] = {"SCAN", cursor, "MATCH", "stp:req:*", "COUNT", count};
        redisReply *r = w->open ? redisCommandArgv(w->c, 5, zscan, NULL) : redisCommandArgv(w->c, 6, scan, NULL);
        e = ra_redis_reply_err(w->c, r, why, why_len);
        if (e == RA_OK) e = ra_scan_reply(r, w->open, cursor, sizeof(cursor), why, why_len);
        if (e == RA_OK)
            e = w->open ? ra_open_page(w, r->element[1], why, why_len) : ra_all_page(w, r->element[1], why, why_len);
        if (r) freeReplyObject(r);
    } while (e == RA_OK && !w->stop && strcmp(cursor, "0") != 0);
    free(w->b);
    w->b = NULL;
    return e;
}

ra_err_t ra_reqlist_open(redisContext *c, bool prune, ra_reqlist_cb cb, void *arg, size_t *num_pruned,
                         char *why, size_t why_len) {
    ra_walk_t w = {.c = c, .open = true, .prune = prune, .num_pruned = num_pruned, .cb = cb, .arg = arg};
    return ra_walk(&w, why, why_len);
}

ra_err_t ra_reqlist_all(redisContext *c, ra_reqlist_cb cb, void *arg, char *why, size_t why_len) {
    ra_walk_t w = {.c = c, .open = false, .cb = cb, .arg = arg};
    return ra_walk(&w, why, why_len);
}
