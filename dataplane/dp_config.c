/* dp_config: the settings table of stampeded and what only stampeded does
 * with it: the text of --help and --dump-config, the --dump-config and
 * --data-dir rules and its error enum. The engine (names, types, bounds, the
 * INI file, the flags, help and dump printing) is ra/ra_conf, shared with
 * stampede-control. Adding a setting is one line in dp_settings[] plus a
 * field in dp_config_t. Thread: startup only. */
#include "dataplane/dp_config.h"

#include <stdlib.h>
#include <string.h>

#include "ra/ra_conf.h"

#define S(n, t, d, lo, hi, h) {#n, t, offsetof(dp_config_t, n), d, lo, hi, h}
static const ra_conf_setting_t dp_settings[] = {
    S(data_dir, RA_CONF_STR, NULL, 0, 0, "directory for keys, certificates and state (created 0700; required)"),
    S(est_listen, RA_CONF_STR, "127.0.0.1:8443", 0, 0, "EST listener HOST:PORT (IPv6 as [addr]:port)"),
    S(capf_listen, RA_CONF_STR, "127.0.0.1:3804", 0, 0, "CAPF listener HOST:PORT (Cisco phones: TCP 3804, TLS, no client certificate requested); empty = no CAPF. Needs the registry (not with redis = off)"),
    S(capf_tls_cert, RA_CONF_STR, "ca", 0, 0, "CAPF: the certificate the CAPF listener presents: ca = the CA certificate (the LSC issuer, CA:TRUE pathlen:0, as CUCM's CAPF certificate: the one certificate phones' ITL needs; the CA key then also signs CAPF handshakes) or tls = the TLS server certificate"),
    S(capf_max_keygen, RA_CONF_UINT, "20000", 1, 10000000, "CAPF: sessions that may wait for phones' key generation at once (a separate budget: at the limit new CAPF connections are refused before TLS, so parked phones never starve other handshakes); split across cores"),
    S(capf_lsc_issuers, RA_CONF_STR, "", 0, 0, "CAPF: PEM bundle of further LSC issuers whose LSCs authenticate phones (auth lsc), e.g. the previous CA during a rollover; our CA always does"),
    S(capf_mic_ca, RA_CONF_STR, "", 0, 0, "CAPF: PEM bundle of manufacturer CAs (Cisco MIC/SUDI roots) for auth mic, and for auth lsc's MIC fallback; empty = MICs are not accepted"),
    S(capf_accept_expired_mic, RA_CONF_BOOL, "false", 0, 0, "CAPF: accept an expired MIC (phones with expired MICs exist in the field; the issuing CAs must still be valid)"),
    S(capf_lsc_subject, RA_CONF_STR, "device", 0, 0, "CAPF: LSC subject: device = O/OU/L/ST/C of the CA and CN=<device>; cucm = serialNumber=PID:<pid> SN:<sn>, C/O/OU, CN=<pid>-<device> (as CUCM issues to hardware phones) for devices whose PID and SN are provisioned (stampedectl --pid --sn), device style for the others"),
    S(capf_auth_timeout, RA_CONF_UINT, "120", 10, 600, "CAPF: seconds from the hello to the phone's AUTH_RESPONSE (covers a user typing the authentication string)"),
    S(capf_keygen_timeout, RA_CONF_UINT, "600", 30, 3600, "CAPF: seconds a phone has to generate its key pair (status Key Generation Failed/Timeout after)"),
    S(capf_reply_timeout, RA_CONF_UINT, "120", 10, 600, "CAPF: seconds a phone has to answer STORE/FETCH/DELETE (status Phone Communication Failure after)"),
    S(capf_lsc_days, RA_CONF_UINT, "365", 1, 1825, "CAPF: LSC validity, days (CUCM's Duration Of Certificate Validity); notBefore is back-dated by leaf_backdate"),
    S(capf_rsa_min_bits, RA_CONF_UINT, "2048", 512, 4096, "CAPF: smallest RSA key accepted from phones (FIPS-mode phones need 2048)"),
    S(capf_device_name_max, RA_CONF_UINT, "15", 1, 64, "CAPF: longest device name accepted in AUTH_RESPONSE (SEP + 12 hex digits is 15)"),
    S(capf_max_auth_failures, RA_CONF_UINT, "5", 0, 1000, "CAPF: wrong authentication strings before a device is locked out (0 = never)"),
    S(capf_lockout_s, RA_CONF_UINT, "600", 1, 86400, "CAPF: seconds a locked-out device is refused"),
    S(capf_hello_auth_type, RA_CONF_BOOL, "true", 0, 0, "CAPF: the hello carries AUTH_TYPE=00 besides VERSION=3 (proven with phones; Jabber ignores it)"),
    S(capf_strict_version, RA_CONF_BOOL, "true", 0, 0, "CAPF: refuse an AUTH_RESPONSE without VERSION (else treat it as version 2)"),
    S(capf_status_reply, RA_CONF_BOOL, "true", 0, 0, "CAPF: answer a phone's STATUS_REQUEST with STATUS_RESPONSE 01 and keep the session where it is (capf-protocol.md 4.3.4; unverified with real phones); false: it ends the session as out of order"),
    S(capf_fetch_delete, RA_CONF_BOOL, "true", 0, 0, "CAPF: serve the Delete and Troubleshoot operations (version 3 clients; unverified with real phones)"),
    S(est_users, RA_CONF_STR, "", 0, 0, "htpasswd-style 'user:hash' file (hashes from `openssl passwd -6`); default DATA/est-users, created with a random password for user 'est' on first start"),
    S(ca_mode, RA_CONF_STR, "local", 0, 0, "who signs: local = this appliance's CA (signing pool); online = the upstream Microsoft CA through stampede-control (requests are recorded pending in Redis and queued on stp:upstream; needs the registry and a running stampede-control)"),
    S(online_wait_ms, RA_CONF_UINT, "5000", 0, 120000, "online mode, EST: how long an enrollment waits for the upstream CA before the answer is 202 Accepted + Retry-After (RFC 7030 4.2.3); the client's retry of the same CSR then gets the certificate"),
    S(online_retry_after, RA_CONF_UINT, "10", 1, 3600, "online mode, EST: Retry-After seconds sent with 202"),
    S(capf_online_timeout, RA_CONF_UINT, "120", 5, 3600, "online mode, CAPF: seconds a phone's session waits for the upstream CA's certificate; then END_SESSION 07, the device keeps its operation (the phone retries) and gets status failed, reason Upgrade Failed: online CA did not answer in time"),
    S(redis, RA_CONF_STR, "", 0, 0, "Redis to use: redis://host:port/db or a unix socket path; empty = start a private redis-server child on DATA/redis.sock (no TCP port, AOF on); off = no system of record (benchmark comparison only: nothing is recorded, no dedup, no registry devices)"),
    S(deadline_sweep_s, RA_CONF_UINT, "60", 0, 86400, "every this many seconds, devices whose pending install passed its deadline (--by) get status failed, reason \"deadline passed\" (0 = only when they next try)"),
    S(redis_timeout_ms, RA_CONF_UINT, "3000", 100, 600000, "a Redis reply later than this drops the connection: requests waiting on it get 503 + Retry-After, and the core reconnects (back-off 100 ms doubling to 2 s)"),
    S(redis_fsync, RA_CONF_STR, "everysec", 0, 0, "embedded Redis AOF fsync policy: everysec or always"),
    S(cores, RA_CONF_UINT, "0", 0, 256, "polling cores (threads with their own epoll loop); 0 = one per CPU"),
    S(signers, RA_CONF_UINT, "0", 0, 256, "signing pool workers; 0 = one per CPU"),
    S(ca_key, RA_CONF_STR, "ec256", 0, 0, "key type of a newly generated CA: ec256, ec384, rsa2048, rsa3072"),
    S(tls_key, RA_CONF_STR, "ec256", 0, 0, "key type of a newly generated TLS server key: ec256, ec384, rsa2048, rsa3072"),
    S(ca_name, RA_CONF_STR, "Stampede Local CA", 0, 0, "subject CN of a newly generated CA"),
    S(org, RA_CONF_STR, "Stampede", 0, 0, "subject O of generated CA and TLS certificates"),
    S(ca_days, RA_CONF_UINT, "3650", 1, 36500, "lifetime of a newly generated CA certificate, days"),
    S(tls_days, RA_CONF_UINT, "825", 1, 3650, "lifetime of the generated TLS server certificate, days"),
    S(tls_names, RA_CONF_STR, "localhost,127.0.0.1", 0, 0, "comma-separated DNS names / IPs for the TLS server certificate"),
    S(leaf_days, RA_CONF_UINT, "730", 1, 36500, "lifetime of issued certificates, days"),
    S(leaf_backdate, RA_CONF_UINT, "300", 0, 86400, "notBefore back-dating of issued certificates, seconds"),
    S(leaf_server_auth, RA_CONF_BOOL, "false", 0, 0, "add EKU serverAuth to issued certificates (clientAuth is always present)"),
    S(leaf_copy_san, RA_CONF_BOOL, "false", 0, 0, "copy the CSR's subjectAltName into issued certificates"),
    S(tls_min, RA_CONF_STR, "1.2", 0, 0, "lowest TLS version: 1.0, 1.1, 1.2, 1.3 (below 1.2 needs tls_legacy)"),
    S(tls_max, RA_CONF_STR, "1.3", 0, 0, "highest TLS version: 1.2 or 1.3"),
    S(tls_legacy, RA_CONF_BOOL, "false", 0, 0, "allow TLS 1.0/1.1 and RSA-key-exchange AES-CBC-SHA suites (old phones)"),
    S(tls_ciphers, RA_CONF_STR, "", 0, 0, "TLS 1.2 cipher list (BoringSSL syntax); empty = secure defaults"),
    S(client_ca, RA_CONF_STR, "", 0, 0, "PEM bundle of manufacturer CAs trusted for EST client-certificate auth (our CA is always trusted)"),
    S(client_cert, RA_CONF_STR, "optional", 0, 0, "TLS client certificates: optional (request, verify if sent) or off"),
    S(csrattrs, RA_CONF_STR, "", 0, 0, "comma-separated OIDs returned by /csrattrs; empty = 204 No Content"),
    S(max_body, RA_CONF_UINT, "16384", 256, 1048576, "largest accepted request body, bytes (413 above)"),
    S(max_header, RA_CONF_UINT, "8192", 512, 65536, "largest accepted request header block, bytes (431 above)"),
    S(handshake_timeout, RA_CONF_UINT, "10", 1, 3600, "seconds a client has to finish the TLS handshake"),
    S(header_timeout, RA_CONF_UINT, "10", 1, 3600, "seconds a client has to send a complete request header"),
    S(body_timeout, RA_CONF_UINT, "30", 1, 3600, "seconds a client has to send the request body"),
    S(idle_timeout, RA_CONF_UINT, "60", 1, 86400, "seconds an idle keep-alive connection is kept"),
    S(drain_timeout, RA_CONF_UINT, "10", 0, 3600, "seconds SIGTERM waits for in-flight requests"),
    S(queue_bound, RA_CONF_UINT, "4096", 16, 1048576, "signing jobs in flight before new enrollments get 503 + Retry-After"),
    S(max_sessions, RA_CONF_UINT, "100000", 16, 10000000, "concurrent connections per polling core"),
    S(max_per_address, RA_CONF_UINT, "0", 0, 10000000, "concurrent connections per client address per polling core, EST and CAPF (0 = no limit); more are refused before TLS. Phones behind one NAT share an address: size it for the largest site"),
    S(retry_after, RA_CONF_UINT, "1", 1, 3600, "Retry-After seconds sent with 503"),
    S(close_linger_ms, RA_CONF_UINT, "2000", 0, 60000, "after the last response of a connection, wait this long for the client to close first (it then keeps TIME_WAIT); 0 = close at once"),
    S(so_sndbuf, RA_CONF_UINT, "0", 0, 16777216, "socket send buffer per connection, bytes (SO_SNDBUF); 0 = kernel default and autotuning"),
    S(transport, RA_CONF_STR, "kernel", 0, 0, "how EST and CAPF connections are carried: kernel = Linux sockets (epoll); dpdk = kernel bypass: DPDK polls an Ethernet port and lwIP is the TCP/IP stack (ARP, ICMP echo, TCP), one RX/TX queue pair per polling core. Redis and logs stay on kernel sockets. In dpdk mode the listeners use the ports of est_listen and capf_listen on dpdk_addr"),
    S(dpdk_eal, RA_CONF_STR, "-l 0 --no-huge --no-pci -m 512 --no-shconf --no-telemetry --vdev=net_tap0,iface=stp0", 0, 0, "dpdk: EAL arguments, space separated (no quoting). The default needs no hugepages and makes a tap interface stp0 (for trials and tests). A NIC: e.g. '-l 0 -a 0000:3b:00.0' with hugepages and the port bound to vfio-pci. --file-prefix=stampeded-PID and --log-level=warning are added unless given"),
    S(dpdk_port, RA_CONF_UINT, "0", 0, 1023, "dpdk: port id served (0 = the first device EAL found)"),
    S(dpdk_addr, RA_CONF_STR, "", 0, 0, "dpdk: the appliance's IPv4 address and prefix on that port, e.g. 10.77.0.2/24 (required with transport = dpdk)"),
    S(dpdk_gateway, RA_CONF_STR, "", 0, 0, "dpdk: IPv4 default gateway (empty = only on-link clients)"),
    S(dpdk_mbufs, RA_CONF_UINT, "16383", 1024, 4194304, "dpdk: mbuf pool size (2.3 KiB each): the RX rings (dpdk_rx_desc x cores), TX in flight, and received data connections have not read yet. Below a quarter free, received frames are copied so connections stop pinning mbufs"),
    S(dpdk_rx_desc, RA_CONF_UINT, "1024", 64, 16384, "dpdk: RX ring descriptors per queue"),
    S(dpdk_spin_us, RA_CONF_UINT, "0", 0, 1000000, "dpdk: a polling core busy-polls this long after its last frame before it sleeps until a frame (net_tap wakes it), a completion or at most 1 ms (drivers without a wake-up fd). 0 = sleep at once when idle: best when cores, signers and clients share few CPUs; on dedicated cores 100-200 saves the wake-up latency"),
    S(dpdk_syn_rate, RA_CONF_UINT, "1000", 0, 10000000, "dpdk: new TCP connections (SYNs) per second accepted from one source address before lwIP sees them (lwIP has no SYN cookies: each SYN costs a connection slot); 0 = no limit"),
    S(log_level, RA_CONF_STR, "info", 0, 0, "error, warn, info or debug"),
};
#undef S
#define DP_NSETTINGS (sizeof(dp_settings) / sizeof(dp_settings[0]))

static const ra_conf_spec_t dp_conf = {
    .prog = "stampeded",
    .section = "stampeded",
    .settings = dp_settings,
    .n_settings = DP_NSETTINGS,
    .synopsis = "--data-dir DIR [options]",
    .about = "stampeded: the Stampede enrollment daemon (EST, RFC 7030) with a local CA.\n\n",
    .dump_means = "(after applying --config and flags)",
    .dump_header = "# stampeded configuration (INI). Generated by `stampeded --dump-config`:\n"
                   "# every setting with its help text and its value. Any setting can also be\n"
                   "# given as a flag: --name value ('_' may be written '-').\n",
};

/* dp_cfg_err_t is the engine's ra_conf_err_t, value for value (and text for
 * text), so an engine result is returned as it is. */
_Static_assert((int)DP_CFG_EXIT_OK == (int)RA_CONF_EXIT_OK && (int)DP_CFG_E_USAGE == (int)RA_CONF_E_USAGE &&
                   (int)DP_CFG_E_VALUE == (int)RA_CONF_E_VALUE && (int)DP_CFG_E_FILE == (int)RA_CONF_E_FILE &&
                   (int)DP_CFG__COUNT == (int)RA_CONF__COUNT,
               "dp_cfg_err_t must mirror ra_conf_err_t");
static dp_cfg_err_t dp_cfg_err(ra_conf_err_t e) { return (dp_cfg_err_t)e; }

const char *dp_cfg_err_str(dp_cfg_err_t e) {
    return ra_conf_err_str((ra_conf_err_t)e);
}

dp_cfg_err_t dp_config_set(dp_config_t *cfg, const char *name, const char *value,
                           char *why, size_t why_len) {
    return dp_cfg_err(ra_conf_set(&dp_conf, cfg, name, value, why, why_len));
}

void dp_config_help(FILE *out, const char *prog) {
    ra_conf_help(&dp_conf, out, prog);
}

void dp_config_dump(FILE *out, const dp_config_t *cfg) {
    ra_conf_dump(&dp_conf, out, cfg);
}

dp_cfg_err_t dp_config_load(dp_config_t *cfg, int argc, char **argv, char *why, size_t why_len) {
    memset(cfg, 0, sizeof(*cfg));
    ra_conf_err_t e = ra_conf_defaults(&dp_conf, cfg, why, why_len);
    if (!e) e = ra_conf_early(&dp_conf, cfg, argc, argv, stdout, &cfg->config_file, why, why_len);
    if (!e) e = ra_conf_flags(&dp_conf, cfg, argc, argv, NULL, NULL, why, why_len);
    if (e) return dp_cfg_err(e);
    /* An argument that is exactly --dump-config, wherever it stands (even as
     * another flag's value), dumps; --dump-config=X does not. */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--dump-config")) {
            dp_config_dump(stdout, cfg);
            return DP_CFG_EXIT_OK;
        }
    if (!cfg->data_dir[0]) {
        snprintf(why, why_len, "--data-dir is required (see --help)");
        return DP_CFG_E_USAGE;
    }
    return DP_CFG_OK;
}

void dp_config_free(dp_config_t *cfg) {
    ra_conf_free(&dp_conf, cfg);
    free(cfg->config_file);
    cfg->config_file = NULL;
}
