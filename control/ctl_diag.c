/* ctl_diag: the table of certsrv failure classes (see ctl_diag.h): for each
 * class its stable name (written to request records as `ca_diag`, printed by
 * `stampedectl doctor`; never rename one), the fix an administrator should
 * apply, and whether a later retry of the same request can succeed.
 *
 * Retry rule: everything that is not the request's own fault is retryable
 * (network, TLS, timeouts, HTTP errors, CA down, and our or IIS's settings,
 * which the operator can correct while the request waits); a denial by the
 * CA (template, permission, bad CSR, policy or officer), an id the CA does
 * not know and an answer nobody can parse are final.
 * Thread: pure; any thread. */
#include "control/ctl_diag.h"

typedef struct {
    const char *name;
    const char *fix;
    bool retryable;
} ctl_diag_row_t;

static const ctl_diag_row_t ctl_diag_table[CTL_D__COUNT] = {
    [CTL_D_OK] = {"ok", "none needed", false},
    [CTL_D_CONFIG] = {"config",
                      "correct the setting named above in the stampede-control configuration", true},
    [CTL_D_DNS] = {"dns",
                   "check the host name in certsrv_url and this host's DNS servers, or pin the "
                   "address with the resolve setting", true},
    [CTL_D_CONNECT] = {"connect",
                       "check that IIS listens on that host and port and that no firewall blocks "
                       "the path from this host", true},
    [CTL_D_TLS_UNTRUSTED] = {"tls-untrusted",
                             "put the root CA (and intermediates) that issued the IIS certificate "
                             "into ca_bundle, or install the missing intermediate on IIS", true},
    [CTL_D_TLS_SELF_SIGNED] = {"tls-self-signed",
                               "replace the self-signed IIS certificate with one issued by your CA, "
                               "or add that certificate to ca_bundle", true},
    [CTL_D_TLS_NAME] = {"tls-name",
                        "use a host name in certsrv_url that the IIS certificate covers (its SAN), "
                        "or reissue the certificate for that name", true},
    [CTL_D_TLS_CLOCK] = {"tls-clock",
                         "check the clock (NTP) of this host and of IIS, and the validity dates of "
                         "the IIS certificate", true},
    [CTL_D_TLS_OTHER] = {"tls-other",
                         "check that certsrv_url points at an HTTPS port and IIS's TLS settings "
                         "(protocol versions, cipher suites)", true},
    [CTL_D_TIMEOUT_CONNECT] = {"timeout-connect",
                               "check the network path to IIS and that it completes TLS handshakes, "
                               "or raise connect_timeout_ms", true},
    [CTL_D_TIMEOUT_LOGIN] = {"timeout-login",
                             "check IIS and the domain controllers behind it (authentication is "
                             "slow), or raise login_timeout_ms", true},
    [CTL_D_TIMEOUT_SUBMIT] = {"timeout-submit",
                              "the CA may have taken the request: look for it on the CA before "
                              "resubmitting, and raise submit_timeout_ms if the CA is slow", true},
    [CTL_D_TIMEOUT_FETCH] = {"timeout-fetch",
                             "check the load of IIS and the CA, or raise fetch_timeout_ms", true},
    [CTL_D_AUTH] = {"auth",
                    "check user (DOMAIN\\user or user@domain) and password_file, that the account "
                    "is not locked, and for NTLM/Negotiate that IIS does not require Extended "
                    "Protection", true},
    [CTL_D_AUTH_SCHEME] = {"auth-scheme",
                           "set auth to a scheme the server offers, or enable that provider "
                           "(Windows Authentication NTLM, or Basic) on the CertSrv application in "
                           "IIS", true},
    [CTL_D_EPA] = {"epa",
                   "use auth = basic over HTTPS, or set Extended Protection of CertSrv in IIS to "
                   "Accept (libcurl's NTLM sends no channel binding)", true},
    [CTL_D_HTTPS_REQUIRED] = {"https-required", "use an https:// certsrv_url", true},
    [CTL_D_REDIRECT] = {"redirect",
                        "set certsrv_url to the final https://host/certsrv address (redirects are "
                        "never followed)", true},
    [CTL_D_HTTP] = {"http",
                    "check IIS and the CertSrv application (event log, application pool) and that "
                    "certsrv_url points at web enrollment", true},
    [CTL_D_TEMPLATE] = {"template",
                        "set template to the template's name (cn, not its display name) and "
                        "publish the template on this CA", false},
    [CTL_D_PERMISSION] = {"permission",
                          "grant the service account Read and Enroll on the template (template "
                          "Security tab)", false},
    [CTL_D_BAD_CSR] = {"bad-csr",
                       "check the device's CSR (encoding, signature, subject, key size) against "
                       "the template's requirements", false},
    [CTL_D_DENIED] = {"denied",
                      "ask the CA administrator why the request was denied (CA console, Failed "
                      "Requests and the CA's event log)", false},
    [CTL_D_CA_DOWN] = {"ca-down",
                       "start Active Directory Certificate Services on the CA, or fix delegation "
                       "from the IIS server to the CA (or use Basic)", true},
    [CTL_D_UNKNOWN_ID] = {"unknown-id",
                          "the CA does not know this request id (another CA, or reinstalled): "
                          "submit the request again", false},
    [CTL_D_PAGE] = {"page",
                    "check that certsrv_url points at ADCS web enrollment and report the page "
                    "(see certsrv-protocol.md section 3)", false},
    [CTL_D_OUTCOME_UNKNOWN] = {"outcome-unknown",
                               "look on the CA for requests of the service account (issued or "
                               "pending) and revoke duplicates; the device must ask again", false},
};

const char *ctl_diag_name(ctl_diag_t d) {
    return (unsigned)d < CTL_D__COUNT ? ctl_diag_table[d].name : "unknown";
}

const char *ctl_diag_fix(ctl_diag_t d) {
    return (unsigned)d < CTL_D__COUNT ? ctl_diag_table[d].fix : "unknown failure class";
}

bool ctl_diag_retryable(ctl_diag_t d) {
    return (unsigned)d < CTL_D__COUNT && ctl_diag_table[d].retryable;
}

ctl_diag_t ctl_diag_from_hresult(unsigned long hresult) {
    switch (hresult) {
    case 0x80094800UL: /* CERTSRV_E_UNSUPPORTED_CERT_TYPE */
    case 0x80094801UL: /* CERTSRV_E_NO_CERT_TYPE */
    case 0x80094802UL: /* CERTSRV_E_TEMPLATE_CONFLICT */
        return CTL_D_TEMPLATE;
    case 0x80094012UL: /* CERTSRV_E_TEMPLATE_DENIED */
        return CTL_D_PERMISSION;
    case 0x80094001UL: /* CERTSRV_E_BAD_REQUESTSUBJECT */
    case 0x80090006UL: /* NTE_BAD_SIGNATURE */
    case 0x80094811UL: /* CERTSRV_E_KEY_LENGTH */
    case 0x8009310BUL: /* CRYPT_E_ASN1_BADTAG */
        return CTL_D_BAD_CSR;
    case 0x80094014UL: /* CERTSRV_E_ADMIN_DENIED_REQUEST */
        return CTL_D_DENIED;
    case 0x800706BAUL: /* RPC_S_SERVER_UNAVAILABLE */
    case 0x80070005UL: /* E_ACCESSDENIED ("CA service has not been started") */
        return CTL_D_CA_DOWN;
    case 0x80094004UL: /* CERTSRV_E_PROPERTY_EMPTY */
        return CTL_D_UNKNOWN_ID;
    default:
        return CTL_D_DENIED;
    }
}
