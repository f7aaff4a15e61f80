// stampede-bssl-speed: single-threaded public-key throughput of the linked
// BoringSSL, to compare Debian's OPENSSL_SMALL build with -Dboringssl=fast.
// Links only BoringSSL (libcrypto). Each figure is measured for about
// --seconds (default 1.0) of wall time on one core.
//
//   stampede-bssl-speed [--seconds S]

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/curve25519.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdh.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

static double g_seconds = 1.0;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "stampede-bssl-speed: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

typedef int (*op_fn)(void *arg);

// Runs op repeatedly for ~g_seconds (checking the clock every few ops so the
// clock read does not dominate fast operations) and prints ops/s.
static double bench(const char *name, op_fn op, void *arg) {
  if (!op(arg)) die(name);  // warm-up; also checks the op works
  unsigned long n = 0, batch = 1;
  double start = now(), elapsed = 0;
  for (;;) {
    for (unsigned long i = 0; i < batch; i++) {
      if (!op(arg)) die(name);
    }
    n += batch;
    elapsed = now() - start;
    if (elapsed >= g_seconds) break;
    // Aim for ~20 clock reads per run.
    double per_op = elapsed / (double)n;
    unsigned long want = (unsigned long)(g_seconds / 20.0 / per_op);
    batch = want > 0 ? want : 1;
  }
  double rate = (double)n / elapsed;
  printf("%-36s %12.1f ops/s   (%lu ops in %.3f s)\n", name, rate, n, elapsed);
  fflush(stdout);
  return rate;
}

// ---- ECDSA P-256 ----
struct ecdsa_ctx {
  EC_KEY *key;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  uint8_t sig[128];      // fixed signature for verify (DER, <= 72 bytes for P-256)
  unsigned sig_len;
  uint8_t scratch[128];  // sign output (lengths vary, so never overwrite sig)
};

static int op_ecdsa_sign(void *arg) {
  struct ecdsa_ctx *c = arg;
  unsigned len = sizeof(c->scratch);
  return ECDSA_sign(0, c->digest, sizeof(c->digest), c->scratch, &len, c->key);
}

static int op_ecdsa_verify(void *arg) {
  struct ecdsa_ctx *c = arg;
  return ECDSA_verify(0, c->digest, sizeof(c->digest), c->sig, c->sig_len, c->key);
}

// ---- ECDH P-256: ephemeral key generation + shared secret, as in a TLS
// ECDHE handshake (and as BoringSSL's `bssl speed` counts it) ----
struct ecdh_ctx {
  const EC_GROUP *group;
  const EC_POINT *peer;
};

static int op_ecdh(void *arg) {
  struct ecdh_ctx *c = arg;
  EC_KEY *k = EC_KEY_new();
  uint8_t secret[32];
  int ok = k != NULL && EC_KEY_set_group(k, c->group) && EC_KEY_generate_key(k) &&
           ECDH_compute_key(secret, sizeof(secret), c->peer, k, NULL) == (int)sizeof(secret);
  EC_KEY_free(k);
  return ok;
}

// ---- X25519: key generation + shared secret ----
struct x25519_ctx {
  uint8_t peer_public[32];
};

static int op_x25519(void *arg) {
  struct x25519_ctx *c = arg;
  uint8_t pub[32], priv[32], secret[32];
  X25519_keypair(pub, priv);
  return X25519(secret, priv, c->peer_public);
}

// ---- RSA-2048 (PKCS#1 v1.5, SHA-256) ----
struct rsa_ctx {
  RSA *rsa;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  uint8_t sig[256];  // fixed signature for verify
  unsigned sig_len;
  uint8_t scratch[256];
};

static int op_rsa_sign(void *arg) {
  struct rsa_ctx *c = arg;
  unsigned len = 0;
  return RSA_sign(NID_sha256, c->digest, sizeof(c->digest), c->scratch, &len, c->rsa);
}

static int op_rsa_verify(void *arg) {
  struct rsa_ctx *c = arg;
  return RSA_verify(NID_sha256, c->digest, sizeof(c->digest), c->sig, c->sig_len, c->rsa);
}

static const char *lib_path(void) {
  Dl_info info;
  if (dladdr((void *)&ECDSA_sign, &info) && info.dli_fname != NULL) return info.dli_fname;
  return "?";
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      g_seconds = atof(argv[++i]);
      if (g_seconds <= 0) g_seconds = 1.0;
    } else {
      fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  CRYPTO_library_init();
  printf("libcrypto: %s\n", lib_path());
  printf("%-36s %12s\n", "operation (1 thread)", "rate");

  static const char msg[] = "stampede bssl_speed";

  // ECDSA P-256
  struct ecdsa_ctx ec = {0};
  ec.key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  if (ec.key == NULL || !EC_KEY_generate_key(ec.key)) die("P-256 keygen");
  SHA256((const uint8_t *)msg, sizeof(msg) - 1, ec.digest);
  ec.sig_len = sizeof(ec.sig);
  if (!ECDSA_sign(0, ec.digest, sizeof(ec.digest), ec.sig, &ec.sig_len, ec.key)) die("ECDSA_sign");
  bench("ECDSA P-256 sign", op_ecdsa_sign, &ec);
  bench("ECDSA P-256 verify", op_ecdsa_verify, &ec);

  // ECDH P-256
  EC_KEY *peer = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  if (peer == NULL || !EC_KEY_generate_key(peer)) die("P-256 peer keygen");
  struct ecdh_ctx dh = {EC_KEY_get0_group(peer), EC_KEY_get0_public_key(peer)};
  bench("ECDH P-256 (keygen + derive)", op_ecdh, &dh);

  // X25519
  struct x25519_ctx xc;
  uint8_t xpriv[32];
  X25519_keypair(xc.peer_public, xpriv);
  bench("X25519 (keygen + derive)", op_x25519, &xc);

  // RSA-2048
  struct rsa_ctx rc = {0};
  BIGNUM *e = BN_new();
  rc.rsa = RSA_new();
  if (e == NULL || rc.rsa == NULL || !BN_set_word(e, RSA_F4) ||
      !RSA_generate_key_ex(rc.rsa, 2048, e, NULL))
    die("RSA-2048 keygen");
  memcpy(rc.digest, ec.digest, sizeof(rc.digest));
  if (!RSA_sign(NID_sha256, rc.digest, sizeof(rc.digest), rc.sig, &rc.sig_len, rc.rsa))
    die("RSA_sign");
  bench("RSA-2048 sign (PKCS#1 v1.5, SHA-256)", op_rsa_sign, &rc);
  bench("RSA-2048 verify", op_rsa_verify, &rc);

  BN_free(e);
  RSA_free(rc.rsa);
  EC_KEY_free(peer);
  EC_KEY_free(ec.key);
  return 0;
}
