/* dp_config: stampeded's settings. One declarative table (dp_config.c) gives
 * every setting its name, type, default, bounds and help; the config file
 * (INI, read with Debian's libinih) and the command-line flags (--name, with
 * '_' written as '-') are both derived from it, and so are --help and
 * --dump-config (docs/stampeded.conf), by the engine shared with
 * stampede-control, ra/ra_conf.
 * Precedence: built-in default < config file < flag.
 * Thread: startup only; the dp_config_t is frozen before cores start. */
#ifndef DP_CONFIG_H
#define DP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *config_file;
    char *data_dir;
    char *est_listen;
    char *capf_listen;
    char *est_users;
    uint32_t cores;
    uint32_t signers;
    char *ca_key;
    char *tls_key;
    char *ca_name;
    char *org;
    uint32_t ca_days;
    uint32_t tls_days;
    char *tls_names;
    uint32_t leaf_days;
    uint32_t leaf_backdate;
    bool leaf_server_auth;
    bool leaf_copy_san;
    char *tls_min;
    char *tls_max;
    bool tls_legacy;
    char *tls_ciphers;
    char *client_ca;
    char *client_cert;
    char *csrattrs;
    uint32_t max_body;
    uint32_t max_header;
    uint32_t handshake_timeout;
    uint32_t header_timeout;
    uint32_t body_timeout;
    uint32_t idle_timeout;
    uint32_t drain_timeout;
    uint32_t queue_bound;
    uint32_t max_sessions;
    uint32_t max_per_address;
    uint32_t retry_after;
    uint32_t so_sndbuf;
    uint32_t close_linger_ms;
    char *ca_mode;
    uint32_t online_wait_ms;
    uint32_t online_retry_after;
    uint32_t capf_online_timeout;
    char *redis;
    char *redis_fsync;
    unsigned redis_timeout_ms;
    unsigned deadline_sweep_s;
    uint32_t capf_auth_timeout;
    uint32_t capf_keygen_timeout;
    uint32_t capf_reply_timeout;
    uint32_t capf_lsc_days;
    uint32_t capf_rsa_min_bits;
    uint32_t capf_device_name_max;
    uint32_t capf_max_auth_failures;
    uint32_t capf_lockout_s;
    bool capf_hello_auth_type;
    bool capf_strict_version;
    bool capf_fetch_delete;
    bool capf_status_reply;
    char *capf_tls_cert;
    char *capf_lsc_subject;
    uint32_t capf_max_keygen;
    char *capf_lsc_issuers;
    char *capf_mic_ca;
    bool capf_accept_expired_mic;
    char *log_level;
    char *transport;
    char *dpdk_eal;
    unsigned dpdk_port;
    char *dpdk_addr;
    char *dpdk_gateway;
    unsigned dpdk_mbufs;
    unsigned dpdk_rx_desc;
    unsigned dpdk_spin_us;
    unsigned dpdk_syn_rate;
} dp_config_t;

typedef enum {
    DP_CFG_OK = 0,
    DP_CFG_EXIT_OK,     /* --help / --version printed: exit 0 */
    DP_CFG_E_USAGE,     /* unknown flag or missing value */
    DP_CFG_E_VALUE,     /* value out of bounds or wrong type */
    DP_CFG_E_FILE,      /* config file unreadable or malformed */
    DP_CFG__COUNT
} dp_cfg_err_t;

const char *dp_cfg_err_str(dp_cfg_err_t e);

/* dp_config_load fills `cfg` from defaults, the file named by --config (if
 * any) and the flags in argv. Writes a one-line cause to `why` on error.
 * Ownership: strings in `cfg` are heap copies; free with dp_config_free. */
dp_cfg_err_t dp_config_load(dp_config_t *cfg, int argc, char **argv, char *why, size_t why_len);

/* dp_config_set sets one setting by name from text (file or flag syntax).
 * Returns DP_CFG_OK, DP_CFG_E_USAGE (unknown name) or DP_CFG_E_VALUE. */
dp_cfg_err_t dp_config_set(dp_config_t *cfg, const char *name, const char *value,
                           char *why, size_t why_len);

/* dp_config_help prints the usage text derived from the table to `out`. */
void dp_config_help(FILE *out, const char *prog);

/* dp_config_dump prints every setting of `cfg` as a commented INI file. */
void dp_config_dump(FILE *out, const dp_config_t *cfg);

/* dp_config_free releases the strings of `cfg`. */
void dp_config_free(dp_config_t *cfg);

#endif
