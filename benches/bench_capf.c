/* bench_capf: the CAPF phone of stampede-bench, on the load engine
 * (bench_load.c, which owns the threads, sockets, TLS and deadlines). Like
 * a real phone, every install is a new TCP connection and a full TLS
 * handshake (no resumption: the client context has no session cache), for
 * its own device (job j installs device j+1 of the plan, which
 * `stampedectl import` provisioned); the phone's conversation is
 * bench_capf_msg.c's session engine, this file only moves its bytes:
 *   reading   until capf_msg_need says one whole server message is in the
 *             buffer, which is handed to the engine as exactly that message;
 *             a message that took several TLS records, or a record that held
 *             more than one, is counted (capf-protocol.md §1.1), not fatal;
 *   writing   each client message with one SSL_write (one TLS record);
 *   closing   after END_SESSION the phone waits for the server's close
 *             (§2.7.4), so the server never writes into a closed socket;
 *             latency is measured from connect to END_SESSION.
 * The key pool's SPKIs are sent round robin (the server binds no key to a
 * device today). Latency and the LSC serial go into the run's result slots.
 *
 * Per phone, after the engine's handshake (the server speaks first):
 *   RECV <-> SEND ... -> CLOSING -> done
 *
 * Thread: bench_capf_preflight and the plan on the main thread; the ops on
 * the worker that owns the phone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "benches/bench.h"
#include "dataplane/capf_msg.h"

#define PHONE_SPKI_HINT 300                 /* bytes per SPKI, to size the arena */

/* phone_t: one simulated phone (one connection slot). base.buf holds rbuf
 * (BENCH_CAPF_RBUF bytes) then wbuf (BENCH_CAPF_WBUF). */
typedef struct {
    bench_load_conn_t base;     /* first: the engine's part */
    bench_capf_sess_t sess;
    bench_capf_step_t outcome;  /* CLOSING: DONE or DECLINED */
    uint8_t *rbuf;
    size_t rlen;
    unsigned records;           /* SSL_reads that brought the bytes in rbuf */
    unsigned msgs;              /* server messages of this session */
    uint8_t *wbuf;
    size_t wlen;
    uint64_t t_end_ns;          /* END_SESSION read */
} phone_t;

/* phone_counts_t: a worker's CAPF counters, read after join. */
typedef struct {
    uint64_t declined_by[BENCH_CAPF_AFTER__COUNT][256];
    uint64_t split_msgs, merged_msgs;
} phone_counts_t;

/* phone_begin starts install base.job: the session of its device. */
static void phone_begin(bench_load_worker_t *w, bench_load_conn_t *c) {
    const bench_capf_plan_t *plan = bench_load_run(w)->capf;
    phone_t *p = (phone_t *)c;
    char device[BENCH_CAPF_NAME_MAX + 1];
    bench_capf_name(&plan->names, c->job + 1, device);
    bench_capf_sess_init(&p->sess, plan->version, plan->key_type, device,
                         plan->spkis[c->job % plan->num_spkis]);
    p->rbuf = c->buf;
    p->wbuf = c->buf + BENCH_CAPF_RBUF;
    p->rlen = p->wlen = 0;
    p->records = p->msgs = 0;
}

static void phone_job_str(const bench_run_t *run, const bench_load_conn_t *c, char *out,
                          size_t cap) {
    const phone_t *p = (const phone_t *)c;
    (void)run;
    snprintf(out, cap, "install %llu (device %s, session %08x)", (unsigned long long)c->job,
             p->sess.device, p->sess.session_id);
}

static void phone_where_str(const bench_load_conn_t *c, char *out, size_t cap) {
    snprintf(out, cap, "%s, waiting for %s", bench_load_state_str(c->state),
             bench_capf_state_str(((const phone_t *)c)->sess.state));
}

static void phone_expire(bench_load_worker_t *w, bench_load_conn_t *c) {
    phone_t *p = (phone_t *)c;
    bench_load_fail(w, c, BENCH_E_TIMEOUT, "no %s within %.1f s (%s, %u messages read)",
                    c->state == BENCH_LOAD_CLOSING ? "close after END_SESSION"
                                                   : bench_capf_state_str(p->sess.state),
                    bench_load_run(w)->cfg->timeout_s, bench_load_state_str(c->state), p->msgs);
}

/* phone_finish books the session once the server has closed: a success
 * (latency, serial) or a decline (by stage and reason). */
static void phone_finish(bench_load_worker_t *w, phone_t *p) {
    const bench_capf_sess_t *s = &p->sess;
    if (p->outcome != BENCH_CAPF_DONE) {
        phone_counts_t *k = bench_load_scratch(w);
        k->declined_by[s->end_stage][s->end_reason]++;
        bench_load_fail(w, &p->base, BENCH_E_DECLINED, "END_SESSION %02x (%s) after %s",
                        s->end_reason, capf_reason_str(s->end_reason),
                        bench_capf_stage_str(s->end_stage));
        return;
    }
    bench_load_record(w, &p->base, p->t_end_ns, s->serial, s->serial_len,
                      (uint32_t)p->base.job);   /* one device per install */
    bench_load_close(&p->base, false);
    bench_load_done(w, &p->base, bench_now_ns());
}

/* phone_message hands the message at the start of rbuf (`len` bytes) to the
 * session and acts on its step. Returns true to keep driving. */
static bool phone_message(bench_load_worker_t *w, phone_t *p, size_t len) {
    uint8_t *unused;
    size_t rest = p->rlen - len;
    CBB out;
    phone_counts_t *k = bench_load_scratch(w);
    if (p->records > 1)
        k->split_msgs++;
    if (rest > 0)
        k->merged_msgs++;
    CBB_init_fixed(&out, p->wbuf, BENCH_CAPF_WBUF);
    bench_capf_step_t st = bench_capf_sess_on_msg(&p->sess, p->rbuf, len, &out);
    p->msgs++;
    memmove(p->rbuf, p->rbuf + len, rest);
    p->rlen = rest;
    p->records = rest > 0;
    if (st == BENCH_CAPF_BAD) {
        CBB_cleanup(&out);
        bench_load_fail(w, &p->base, BENCH_E_CAPF, "%s", p->sess.why);
        return false;
    }
    if (rest > 0) {                           /* lockstep protocol: nothing may follow */
        CBB_cleanup(&out);
        bench_load_fail(w, &p->base, BENCH_E_CAPF, "%zu bytes came right after %s", rest,
                        st == BENCH_CAPF_SEND ? "a request, before the phone answered"
                                              : "END_SESSION");
        return false;
    }
    if (st == BENCH_CAPF_SEND) {
        if (!CBB_finish(&out, &unused, &p->wlen)) {
            bench_load_fail(w, &p->base, BENCH_E_CAPF, "client message does not fit");
            return false;
        }
        p->base.state = BENCH_LOAD_SEND;
        return true;
    }
    CBB_cleanup(&out);
    p->t_end_ns = bench_now_ns();
    p->outcome = st;
    p->base.state = BENCH_LOAD_CLOSING;
    return true;
}

/* phone_recv reads server bytes until one whole message is there. Returns
 * true to keep driving. */
static bool phone_recv(bench_load_worker_t *w, phone_t *p) {
    size_t need = 0;
    capf_err_t e = capf_msg_need(p->rbuf, p->rlen, &need);
    if (e == CAPF_OK)
        return phone_message(w, p, need);
    if (e != CAPF_PARTIAL) {
        bench_load_fail(w, &p->base, BENCH_E_CAPF, "framing where %s was due: %s",
                        bench_capf_state_str(p->sess.state), capf_err_str(e));
        return false;
    }
    if (need > BENCH_CAPF_RBUF) {
        bench_load_fail(w, &p->base, BENCH_E_TOO_LARGE, "a %zu-byte message where %s was due",
                        need, bench_capf_state_str(p->sess.state));
        return false;
    }
    int r = SSL_read(p->base.ssl, p->rbuf + p->rlen, (int)(BENCH_CAPF_RBUF - p->rlen));
    if (r > 0) {
        p->rlen += (size_t)r;
        p->records++;
        return true;
    }
    int se = SSL_get_error(p->base.ssl, r);
    if (se == SSL_ERROR_ZERO_RETURN || se == SSL_ERROR_SYSCALL) {
        bench_load_fail(w, &p->base, BENCH_E_CLOSED, "the server closed the connection where "
                        "%s was due (after %u messages; %zu bytes of the next)",
                        bench_capf_state_str(p->sess.state), p->msgs, p->rlen);
        return false;
    }
    bench_load_ssl_blocked(w, &p->base, r, BENCH_E_TLS, "reading");
    return false;
}

/* phone_send writes the client message with one SSL_write (one record). */
static bool phone_send(bench_load_worker_t *w, phone_t *p) {
    int r = SSL_write(p->base.ssl, p->wbuf, (int)p->wlen);
    if (r <= 0) {
        bench_load_ssl_blocked(w, &p->base, r, BENCH_E_CLOSED, "writing");
        return false;
    }
    if ((size_t)r != p->wlen) {
        bench_load_fail(w, &p->base, BENCH_E_TLS, "SSL_write took %d of %zu bytes", r,
                        p->wlen);
        return false;
    }
    p->wlen = 0;
    p->base.state = BENCH_LOAD_RECV;
    return true;
}

/* phone_closing waits for the server's close after END_SESSION. */
static bool phone_closing(bench_load_worker_t *w, phone_t *p) {
    int r = SSL_read(p->base.ssl, p->rbuf, BENCH_CAPF_RBUF);
    if (r > 0) {
        bench_load_fail(w, &p->base, BENCH_E_CAPF, "%d bytes after END_SESSION (§2.7.4: it is "
                        "the last message)", r);
        return false;
    }
    int e = SSL_get_error(p->base.ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {  /* close_notify, FIN, RST */
        phone_finish(w, p);
        return false;
    }
    bench_load_ssl_blocked(w, &p->base, r, BENCH_E_TLS,
                           "waiting for the close after END_SESSION");
    return false;
}

/* phone_step serves RECV, SEND and CLOSING; returns false when it has to
 * wait. */
static bool phone_step(bench_load_worker_t *w, bench_load_conn_t *c) {
    phone_t *p = (phone_t *)c;
    switch (c->state) {
    case BENCH_LOAD_RECV:
        return phone_recv(w, p);
    case BENCH_LOAD_SEND:
        return phone_send(w, p);
    case BENCH_LOAD_CLOSING:
        return phone_closing(w, p);
    default:
        return false;
    }
}

static void phone_sum(const void *scratch, bench_totals_t *out) {
    const phone_counts_t *k = scratch;
    for (unsigned st = 0; st < BENCH_CAPF_AFTER__COUNT; st++)
        for (unsigned r = 0; r < 256; r++)
            out->declined_by[st][r] += k->declined_by[st][r];
    out->split_msgs += k->split_msgs;
    out->merged_msgs += k->merged_msgs;
}

/* No close_notify: a phone just closes (and by then the server has closed
 * or the session failed). */
const bench_load_ops_t bench_capf_load = {
    .conn_size = sizeof(phone_t),
    .buf_size = BENCH_CAPF_RBUF + BENCH_CAPF_WBUF,
    .worker_size = sizeof(phone_counts_t),
    .first = BENCH_LOAD_RECV,                 /* the server speaks first */
    .close_notify = false,
    .begin = phone_begin,
    .step = phone_step,
    .expire = phone_expire,
    .job_str = phone_job_str,
    .where_str = phone_where_str,
    .sum = phone_sum,
};

/* ---- the plan ---------------------------------------------------------------- */

bench_err_t bench_capf_plan_build(bench_capf_plan_t *plan, const bench_cfg_t *cfg,
                                  const bench_keys_t *keys, char *why, size_t why_len) {
    size_t *ends = calloc(keys->num_keys, sizeof *ends), len = 0;
    bench_err_t err = BENCH_E_CRYPTO;
    CBB arena;

    memset(plan, 0, sizeof *plan);
    CBB_zero(&arena);
    plan->version = (uint8_t)cfg->capf_version;
    plan->key_type = cfg->key_type;
    if (bench_capf_names_init(&plan->names, cfg->devices, cfg->count, why, why_len) != BENCH_OK) {
        free(ends);
        return BENCH_E_SETUP;
    }
    bench_capf_name(&plan->names, 1, plan->device1);
    plan->spkis = calloc(keys->num_keys, sizeof *plan->spkis);
    snprintf(why, why_len, "cannot encode the public keys of the pool");
    if (ends == NULL || plan->spkis == NULL ||
        !CBB_init(&arena, keys->num_keys * PHONE_SPKI_HINT))
        goto out;
    for (size_t i = 0; i < keys->num_keys; i++) {
        if (!EVP_marshal_public_key(&arena, keys->keys[i]))
            goto out;
        ends[i] = CBB_len(&arena);
    }
    if (!CBB_finish(&arena, &plan->arena, &len))
        goto out;
    for (size_t i = 0; i < keys->num_keys; i++) {
        size_t start = i == 0 ? 0 : ends[i - 1];
        CBS_init(&plan->spkis[i], plan->arena + start, ends[i] - start);
    }
    plan->num_spkis = keys->num_keys;
    err = BENCH_OK;
out:
    CBB_cleanup(&arena);
    free(ends);
    ERR_clear_error();
    if (err != BENCH_OK)
        bench_capf_plan_cleanup(plan);
    return err;
}

void bench_capf_plan_cleanup(bench_capf_plan_t *plan) {
    OPENSSL_free(plan->arena);
    free(plan->spkis);
    memset(plan, 0, sizeof *plan);
}

/* ---- preflight ------------------------------------------------------------- */

/* preflight_read reads one whole server message from the blocking `ssl`
 * into `buf` (BENCH_CAPF_RBUF bytes), never past its end. */
static bench_err_t preflight_read(SSL *ssl, uint8_t *buf, size_t *msg_len, char *why,
                                  size_t why_len) {
    size_t len = 0, need = 0;
    for (;;) {
        capf_err_t e = capf_msg_need(buf, len, &need);
        if (e == CAPF_OK) {
            *msg_len = need;
            return BENCH_OK;
        }
        if (e != CAPF_PARTIAL || need > BENCH_CAPF_RBUF) {
            snprintf(why, why_len, "framing: %s", e != CAPF_PARTIAL ? capf_err_str(e)
                                                                    : "message too large");
            return BENCH_E_CAPF;
        }
        int r = SSL_read(ssl, buf + len, (int)(need - len));
        if (r <= 0) {
            snprintf(why, why_len, "the server closed the connection (or timed out) after "
                     "%zu bytes of a message", len);
            return BENCH_E_CLOSED;
        }
        len += (size_t)r;
    }
}

/* preflight_cred returns which of DIR/ca.crt and DIR/tls.crt the server
 * presented as its leaf ("ca" or "tls"), or NULL if neither. */
static const char *preflight_cred(const bench_cfg_t *cfg, const SSL *ssl) {
    static const char *const names[] = {"ca", "tls"};
    const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
    const char *found = NULL;
    if (chain == NULL || sk_CRYPTO_BUFFER_num(chain) == 0)
        return NULL;
    const CRYPTO_BUFFER *leaf = sk_CRYPTO_BUFFER_value(chain, 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0] && found == NULL; i++) {
        char file[16], path[4096];
        uint8_t *der = NULL;
        snprintf(file, sizeof file, "%s.crt", names[i]);
        if (bench_path(path, sizeof path, cfg->data_dir, file) != BENCH_OK)
            continue;
        BIO *bio = BIO_new_file(path, "r");
        X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        int len = x != NULL ? i2d_X509(x, &der) : -1;
        if (len > 0 && (size_t)len == CRYPTO_BUFFER_len(leaf) &&
            memcmp(der, CRYPTO_BUFFER_data(leaf), (size_t)len) == 0)
            found = names[i];
        OPENSSL_free(der);
        X509_free(x);
        BIO_free(bio);
    }
    ERR_clear_error();
    return found;
}

/* preflight_probe runs the probe session on the connected `ssl`. */
static bench_err_t preflight_probe(bench_run_t *run, SSL *ssl, uint8_t *buf,
                                   bench_capf_sess_t *s, char *why, size_t why_len) {
    uint8_t *out_data;
    size_t len, out_len;
    CBB out;
    bench_err_t err = preflight_read(ssl, buf, &len, why, why_len);
    if (err != BENCH_OK)
        return err;
    CBS none;
    CBS_init(&none, NULL, 0);
    bench_capf_sess_init(s, (uint8_t)run->cfg->capf_version, run->cfg->key_type,
                         BENCH_CAPF_PROBE, none);
    CBB_init_fixed(&out, buf + BENCH_CAPF_RBUF, BENCH_CAPF_WBUF);
    if (bench_capf_sess_on_msg(s, buf, len, &out) != BENCH_CAPF_SEND ||
        !CBB_finish(&out, &out_data, &out_len)) {
        CBB_cleanup(&out);
        snprintf(why, why_len, "hello: %s", s->why);
        return BENCH_E_CAPF;
    }
    if (SSL_write(ssl, out_data, (int)out_len) != (int)out_len) {
        snprintf(why, why_len, "cannot send AUTH_RESPONSE");
        return BENCH_E_CLOSED;
    }
    if ((err = preflight_read(ssl, buf, &len, why, why_len)) != BENCH_OK)
        return err;
    CBB_init_fixed(&out, buf + BENCH_CAPF_RBUF, BENCH_CAPF_WBUF);
    bench_capf_step_t st = bench_capf_sess_on_msg(s, buf, len, &out);
    CBB_cleanup(&out);
    if (st == BENCH_CAPF_DECLINED && s->end_reason == CAPF_REASON_UNKNOWN_DEVICE)
        return BENCH_OK;
    if (st == BENCH_CAPF_DECLINED)
        snprintf(why, why_len, "device %s: END_SESSION %02x (%s), expected 09 (unknown device)",
                 BENCH_CAPF_PROBE, s->end_reason, capf_reason_str(s->end_reason));
    else if (st == BENCH_CAPF_BAD)
        snprintf(why, why_len, "device %s: %s", BENCH_CAPF_PROBE, s->why);
    else
        snprintf(why, why_len, "device %s exists: the server asked for a key", BENCH_CAPF_PROBE);
    return st == BENCH_CAPF_DECLINED ? BENCH_E_DECLINED : BENCH_E_CAPF;
}

bench_err_t bench_capf_preflight(bench_run_t *run, char *info, size_t info_len,
                                 char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    char tls[160];
    bench_capf_sess_t sess;
    bench_load_dial_t d;
    bench_err_t err = bench_load_dial(run, BENCH_CAPF_RBUF + BENCH_CAPF_WBUF, &d, why, why_len);

    if (err != BENCH_OK)
        return err;
    memset(&sess, 0, sizeof sess);
    run->crypto_in.tls_name = preflight_cred(cfg, d.ssl);
    err = preflight_probe(run, d.ssl, d.buf, &sess, why, why_len);
    bench_tls_params_str(tls, sizeof tls, &run->tls);
    snprintf(info, info_len, "%s, %s, certificate %s: hello (session %08x), probe device %s %s",
             cfg->connect, tls,
             run->crypto_in.tls_name == NULL ? "neither DIR/ca.crt nor DIR/tls.crt (crypto "
                                               "measured with tls.key)"
             : strcmp(run->crypto_in.tls_name, "ca") == 0 ? "DIR/ca.crt"
                                                          : "DIR/tls.crt",
             sess.session_id, BENCH_CAPF_PROBE,
             err == BENCH_OK ? "declined with END_SESSION 09 (unknown device) as expected"
                             : "answered unexpectedly");
    bench_load_hangup(&d);
    return err;
}
