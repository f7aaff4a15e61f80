/* dp_online: parked EST and CAPF sessions waiting for the upstream CA (see
 * dp_online.h). The table is a fixed array of chains (FNV-1a of the record
 * key), allocated once per core at start-up; a chain link lives in the
 * parked buffer. Thread: the owning polling core only. */
#include "dataplane/dp_online.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "crypto/cx_b64.h"
#include "crypto/cx_cert.h"
#include "ra/ra_req.h"
#include "ra/ra_redis.h"

#include <openssl/pkcs7.h>
#include <openssl/sha.h>

void dp_sess_online_answer(dp_sess_t *s, dp_buf_t *b); /* dp_sess.c */
void dp_timer_arm(dp_sess_t *s, dp_timer_kind_t k);  /* dp_core.c */
bool dp_sess_returned(dp_sess_t *s);

static size_t online_hash(const dp_online_t *o, const char *key, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
    return (size_t)h & o->mask;
}

static void online_insert(dp_online_t *o, dp_buf_t *b) {
    size_t i = online_hash(o, b->online.key, strlen(b->online.key));
    b->online.next = o->table[i];
    o->table[i] = b;
    b->online.parked = true;
    o->waiting++;
}

static void online_remove(dp_online_t *o, dp_buf_t *b) {
    if (!b->online.parked) return;
    dp_buf_t **p = &o->table[online_hash(o, b->online.key, strlen(b->online.key))];
    while (*p && *p != b) p = &(*p)->online.next;
    if (*p) *p = b->online.next;
    b->online.next = NULL;
    b->online.parked = false;
    o->waiting--;
}

/* online_answer sends what e->out holds (certificate, refusal or 202). */
static void online_answer(dp_sess_t *s, dp_buf_t *b) {
    b->enroll.online_wait = false;
    dp_timer_arm(s, DP_T_NONE);
    dp_sess_online_answer(s, b);
}

static void online_accepted(dp_sess_t *s, dp_buf_t *b) {
    dp_core_t *c = s->core;
    c->online.stats.accepted_202++;
    est_accepted_response(&b->enroll, c->rt->est.retry_after);
    DP_INFO("EST pending at the upstream CA: 202 Accepted, Retry-After %u identity=%s peer=%s request=%s",
            c->rt->est.retry_after, b->enroll.identity, b->enroll.peer.addr, b->online.key);
    online_answer(s, b);
}

void dp_online_rec_read(const redisReply *rep, dp_online_rec_t *out) {
    memset(out, 0, sizeof(*out));
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 5) return;
    ra_redis_text(out->state, sizeof(out->state), rep->element[0]);
    ra_redis_text(out->reason, sizeof(out->reason), rep->element[1]);
    ra_redis_text(out->serial, sizeof(out->serial), rep->element[3]);
    const redisReply *cert = rep->element[2];
    if (!strcmp(out->state, "issued") && cert->type == REDIS_REPLY_STRING && cert->len) {
        out->cert = (const uint8_t *)cert->str;
        out->cert_len = cert->len;
    }
}

static bool online_fetch(dp_core_t *c, dp_buf_t *b);

/* on_fetched: the record as HMGET state reason cert serial not_after
 * returned it (untrusted shape). */
static void on_fetched(dp_redis_req_t *req, redisReply *rep) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    if (b->online.capf) { /* CAPF: the session decides (and frees itself if it closed) */
        dp_capf_online_fetched(s, b, rep);
        return;
    }
    if (!dp_sess_returned(s)) return;
    dp_core_t *c = s->core;
    est_enroll_t *e = &b->enroll;
    dp_online_rec_t rec;
    dp_online_rec_read(rep, &rec);
    if (rec.cert) {
        est_cert_response(e, rec.cert, rec.cert_len);
        c->online.stats.certs++;
        DP_INFO("EST issued by the upstream CA serial=%s cn=%s peer=%s identity=%s", rec.serial, e->subject_cn,
                e->peer.addr, e->identity);
        online_answer(s, b);
    } else if (!strcmp(rec.state, "rejected")) {
        char text[RA_REQ_REASON_MAX + 32];
        snprintf(text, sizeof(text), "upstream CA: %.170s", rec.reason[0] ? rec.reason : "request denied");
        est_deny_response(e, 403, text);
        c->online.stats.refusals++;
        DP_INFO("EST denied by the upstream CA peer=%s identity=%s status=403: %s", e->peer.addr, e->identity,
                rec.reason);
        online_answer(s, b);
    } else if (b->online.expired || c->draining) { /* SIGTERM during the read: 202 now */
        online_accepted(s, b);
    } else { /* still pending: wait on */
        s->state = DP_S_ONLINE;
        online_insert(&c->online, b);
    }
}

/* online_fetch reads b's record; false if Redis cannot take the command
 * now (the session stays as it was). */
static bool online_fetch(dp_core_t *c, dp_buf_t *b) {
    const char *argv[] = {"HMGET", b->online.key, "state", "reason", "cert", "serial", "not_after"};
    b->rreq.done = on_fetched;
    if (!dp_redis_command(&c->redis, &b->rreq, 7, argv, NULL)) return false;
    b->sess->state = DP_S_RA;
    c->online.stats.reads++;
    return true;
}

/* online_take detaches the parked buffers whose key is `key` (all of them
 * if `key` is NULL) and reads their records. */
static void online_take(dp_core_t *c, const char *key, size_t len) {
    dp_online_t *o = &c->online;
    dp_buf_t *taken = NULL;
    size_t first = key ? online_hash(o, key, len) : 0, last = key ? first : o->mask;
    for (size_t i = first; i <= last; i++) {
        dp_buf_t **p = &o->table[i];
        while (*p) {
            dp_buf_t *b = *p;
            if (key && (strlen(b->online.key) != len || memcmp(b->online.key, key, len) != 0)) {
                p = &b->online.next;
                continue;
            }
            *p = b->online.next;
            b->online.parked = false;
            o->waiting--;
            b->online.next = taken;
            taken = b;
        }
    }
    while (taken) {
        dp_buf_t *b = taken;
        taken = b->online.next;
        b->online.next = NULL;
        if (!online_fetch(c, b)) online_insert(o, b); /* Redis down: the timer answers */
    }
}

static void on_notice(dp_redis_t *r, const char *payload, size_t len) {
    dp_core_t *c = r->core;
    c->online.stats.notices++;
    online_take(c, payload, len);
}

/* on_subscribed: notices may have been lost while the subscription was
 * down, so every parked record is read once, as soon as the registry
 * connection can take the reads (it may come back after the subscriber). */
static void on_subscribed(dp_redis_t *r) {
    r->core->online.reread = true;
}

int dp_online_init(dp_core_t *c) {
    dp_online_t *o = &c->online;
    const dp_runtime_t *rt = c->rt;
    if (!rt->est.online) return 0;
    o->on = true;
    snprintf(o->channel, sizeof(o->channel), "stp:done:%s:%u", rt->capf_node, c->id);
    size_t n = 64;
    while (n < rt->cfg.queue_bound && n < ((size_t)1 << 20)) n <<= 1;
    if (!(o->table = calloc(n, sizeof(*o->table)))) return -1;
    o->mask = n - 1;
    dp_redis_init_sub(&o->sub, c, &rt->redis_addr, o->channel, on_notice, on_subscribed);
    return 0;
}

void dp_online_cleanup(dp_core_t *c) {
    dp_redis_close(&c->online.sub);
    free(c->online.cacerts_b64);
    c->online.cacerts_b64 = NULL;
    c->online.cacerts_len = 0;
    free(c->online.table);
    c->online.table = NULL;
}

/* ---- /cacerts from stp:ca:upstream ---- */

#define DP_CACERTS_POLL_MS 5000     /* re-read: a rollover shows within seconds */
#define DP_CACERTS_EMPTY_MS 1000    /* while nothing is published yet */

int dp_online_chain_p7(const uint8_t *chain, size_t chain_len, const uint8_t *prev, size_t prev_len,
                       uint8_t **out, size_t *out_len) {
    STACK_OF(CRYPTO_BUFFER) *certs = sk_CRYPTO_BUFFER_new_null();
    CBS in[2], list[32];
    size_t n = 0;
    int rc = -1;
    uint8_t *p7 = NULL;
    size_t p7_len;
    CBB cbb;
    CBB_zero(&cbb);
    CBS_init(&in[0], chain, chain_len);
    CBS_init(&in[1], prev, prev_len);
    if (!certs) return -1;
    for (int i = 0; i < 2; i++)
        if (CBS_len(&in[i]) && (!PKCS7_get_raw_certificates(certs, &in[i], NULL) || CBS_len(&in[i])))
            goto done;
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(certs) && n < 32; i++) {
        const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(certs, i);
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = CBS_len(&list[j]) == CRYPTO_BUFFER_len(b) &&
                  !memcmp(CBS_data(&list[j]), CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b));
        if (!dup) CBS_init(&list[n++], CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b));
    }
    if (n == 0 || !CBB_init(&cbb, 4096) || cx_pkcs7_certs_only(&cbb, list, n) || !CBB_finish(&cbb, &p7, &p7_len))
        goto done;
    if (!(*out = malloc(cx_b64_encoded_len(p7_len)))) goto done;
    *out_len = cx_b64_encode(*out, p7, p7_len);
    rc = 0;
done:
    CBB_cleanup(&cbb);
    OPENSSL_free(p7);
    sk_CRYPTO_BUFFER_pop_free(certs, CRYPTO_BUFFER_free);
    return rc;
}

/* on_chain: HMGET stp:ca:upstream chain previous (untrusted shape). */
static void on_chain(dp_redis_req_t *req, redisReply *rep) {
    dp_online_t *o = caa_container_of(req, dp_online_t, cacerts_req);
    dp_core_t *c = caa_container_of(o, dp_core_t, online);
    o->cacerts_busy = false;
    o->cacerts_next_ms = c->now_ms + (o->cacerts_len ? DP_CACERTS_POLL_MS : DP_CACERTS_EMPTY_MS);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING)
        return; /* not published yet (nil), or unreadable: keep what we have */
    const redisReply *chain = rep->element[0], *prev = rep->element[1];
    size_t prev_len = prev->type == REDIS_REPLY_STRING ? prev->len : 0;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX h;
    SHA256_Init(&h);
    SHA256_Update(&h, chain->str, chain->len);
    SHA256_Update(&h, "|", 1);
    if (prev_len) SHA256_Update(&h, prev->str, prev_len);
    SHA256_Final(digest, &h);
    if (o->cacerts_len && !memcmp(digest, o->cacerts_digest, sizeof(digest))) return; /* unchanged */
    uint8_t *b64;
    size_t len;
    if (dp_online_chain_p7((const uint8_t *)chain->str, chain->len, (const uint8_t *)prev->str, prev_len, &b64,
                           &len)) {
        if (c->id == 0) DP_WARN("online CA: stp:ca:upstream holds no readable PKCS#7 chain; /cacerts unchanged");
        return;
    }
    free(o->cacerts_b64);
    o->cacerts_b64 = b64;
    o->cacerts_len = len;
    memcpy(o->cacerts_digest, digest, sizeof(digest));
    o->cacerts_next_ms = c->now_ms + DP_CACERTS_POLL_MS;
    if (c->id == 0) DP_INFO("online CA: /cacerts serves the upstream CA chain%s", prev_len ? " and the previous one" : "");
}

static void online_chain_poll(dp_core_t *c) {
    dp_online_t *o = &c->online;
    if (o->cacerts_busy || c->now_ms < o->cacerts_next_ms || !dp_redis_usable(&c->redis)) return;
    const char *argv[] = {"HMGET", "stp:ca:upstream", "chain", "previous"};
    o->cacerts_req.done = on_chain;
    if (dp_redis_command(&c->redis, &o->cacerts_req, 4, argv, NULL)) o->cacerts_busy = true;
}

void dp_online_cacerts(dp_core_t *c, est_reply_t *r) {
    static const char not_yet[] = "the upstream CA chain is not known yet (stampede-control has not published "
                                  "stp:ca:upstream): retry later\n";
    dp_online_t *o = &c->online;
    if (!o->on || r->body != c->rt->est.cacerts_b64) return;
    if (o->cacerts_len) {
        r->body = o->cacerts_b64;
        r->body_len = o->cacerts_len;
        return;
    }
    *r = (est_reply_t){503, "text/plain", NULL, (const uint8_t *)not_yet, sizeof(not_yet) - 1, false,
                       "upstream CA chain not known yet"}; /* with the configured Retry-After */
}

int dp_online_service(dp_core_t *c, int max_ms) {
    dp_online_t *o = &c->online;
    if (!o->on) return max_ms;
    if (o->reread && dp_redis_usable(&c->redis)) {
        o->reread = false;
        if (o->waiting) online_take(c, NULL, 0);
    }
    online_chain_poll(c);
    return dp_redis_service(&c->online.sub, max_ms);
}

void dp_online_park(dp_sess_t *s, dp_buf_t *b) {
    dp_core_t *c = s->core;
    est_enroll_t *e = &b->enroll;
    ra_req_key(b->online.key, sizeof(b->online.key), e->identity, e->csr_sha256);
    b->online.expired = false;
    b->online.capf = false; /* a pooled buffer may have served a CAPF session */
    c->online.stats.parked++;
    if (c->timeout_ms[DP_T_ONLINE] == 0) {
        online_accepted(s, b);
        return;
    }
    DP_DEBUG("EST waiting for the upstream CA identity=%s peer=%s request=%s", e->identity, e->peer.addr,
             b->online.key);
    s->state = DP_S_ONLINE;
    online_insert(&c->online, b);
    dp_timer_arm(s, DP_T_ONLINE);
    if (e->online_reread) { /* a retry: the CA may have answered before this session parked */
        online_remove(&c->online, b);
        if (!online_fetch(c, b)) online_insert(&c->online, b);
    }
}

void dp_online_wait(dp_sess_t *s, dp_buf_t *b) {
    s->state = DP_S_ONLINE;
    online_insert(&s->core->online, b);
}

void dp_online_timeout(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    dp_timer_arm(s, DP_T_NONE);
    b->online.expired = true;
    if (s->state == DP_S_RA) return; /* a read is in flight: its answer decides */
    online_remove(&s->core->online, b);
    if (online_fetch(s->core, b)) return;
    if (b->online.capf) dp_capf_online_fetched(s, b, NULL);
    else online_accepted(s, b);
}

void dp_online_drain(dp_sess_t *s) {
    if (s->state != DP_S_ONLINE) return;
    online_remove(&s->core->online, s->buf);
    online_accepted(s, s->buf);
}

void dp_online_forget(dp_sess_t *s) {
    if (s->buf) online_remove(&s->core->online, s->buf);
}
