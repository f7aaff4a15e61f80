/* ctl_page_test: unit tests for ctl_page (certsrv-protocol.md §3, §4): the
 * certfnsh.asp result pages in the shapes the emulator
 * (tests/certsrv/adcs_emulator.py) and real captures produce, the
 * certnew.cer / certnew.p7b bodies (DER, PEM, certrser error pages), the
 * certcarc.asp renewal index, the cursor, and every prefix of real pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "control/ctl_page.h"

/* ---- pages as adcs_emulator.py writes them (CRLF, certsrv markup) */

#define CRLF "\r\n"
#define PAGE_HEAD                                                                          \
    "<HTML>" CRLF "<Head>" CRLF                                                            \
    "<Meta HTTP-Equiv=\"Content-Type\" Content=\"text/html; charset=UTF-8\">" CRLF         \
    "<Title>Microsoft Active Directory Certificate Services</Title>" CRLF
#define PAGE_BODY(heading)                                                                 \
    "</Head>" CRLF "<Body BgColor=#FFFFFF>" CRLF "<Font ID=locPageFont Face=\"Arial\">" CRLF \
    "<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>" CRLF          \
    "<TR><TD><Font Color=#FFFFFF><Span ID=locMSCertSrv>Microsoft Active Directory "         \
    "Certificate Services</Span> -- Stampede Test Issuing CA</Font></TD><TD ID=locHomeLink " \
    "Align=Right><A Href=\"/certsrv/\">Home</A></TD></TR>" CRLF "</Table>" CRLF             \
    "<P ID=locPageTitle> <B> " heading " </B>" CRLF
#define PAGE_TAIL "</Font>" CRLF "</Body>" CRLF "</HTML>" CRLF
#define PAGE(heading, body) PAGE_HEAD PAGE_BODY(heading) body PAGE_TAIL

static const char issued_text[] = PAGE(
    "Certificate Issued",
    "<P ID=locInfoIssued>The certificate you requested was issued to you.</P>" CRLF
    "<A Href=\"certnew.cer?ReqID=CACert&amp;Renewal=3&amp;Mode=inst&amp;Enc=b64\" "
    "Style=\"display:none\" ID=locInstallCA>Install CA certificate</A>" CRLF
    "<Table Border=0 CellSpacing=0 CellPadding=0>" CRLF
    "<TR><TD ID=locDerEnc>DER encoded</TD><TD><A Href=\"certnew.cer?ReqID=61108&amp;Enc=bin\">"
    "Download certificate</A><BR>" CRLF
    "<A Href=\"certnew.p7b?ReqID=61108&amp;Enc=bin\">Download certificate chain</A></TD></TR>" CRLF
    "<TR><TD ID=locB64Enc>Base 64 encoded</TD><TD><A Href=\"certnew.cer?ReqID=61108&amp;Enc=b64\">"
    "Download certificate</A><BR>" CRLF
    "<A Href=\"certnew.p7b?ReqID=61108&amp;Enc=b64\">Download certificate chain</A></TD></TR>" CRLF
    "</Table>" CRLF);

static const char issued_script[] =
    PAGE_HEAD "<Script Language=\"JavaScript\">" CRLF "<!--" CRLF
    "\tfunction getEncoding() {" CRLF "\t\tif (true==document.UIForm.rbDerEnc.checked) {" CRLF
    "\t\t\treturn \"Enc=bin\";" CRLF "\t\t} else {" CRLF "\t\t\treturn \"Enc=b64\";" CRLF
    "\t\t}" CRLF "\t}" CRLF "\tfunction handleInstallCA() {" CRLF
    "\t\tlocation=\"certnew.cer?ReqID=CACert&Renewal=3&Mode=inst&Enc=b64\";" CRLF "\t}" CRLF
    "\tfunction handleGetCert() {" CRLF
    "\t\tlocation=\"certnew.cer?ReqID=61108&\"+getEncoding();" CRLF "\t}" CRLF
    "\tfunction handleGetChain() {" CRLF
    "\t\tlocation=\"certnew.p7b?ReqID=61108&\"+getEncoding();" CRLF "\t}" CRLF "//-->" CRLF
    "</Script>" CRLF PAGE_BODY("Certificate Issued")
    "<P ID=locInfoIssued>The certificate you requested was issued to you.</P>" CRLF
    "<Form Name=UIForm>" CRLF
    "<Input Type=Radio Name=rbEncoding ID=rbDerEnc Checked><Label For=rbDerEnc "
    "ID=locDerEnc>DER encoded</Label> or" CRLF
    "<A Href=\"javascript:handleGetCert();\"><Span ID=locDownloadCert>Download certificate"
    "</Span></A>" CRLF "</Form>" CRLF PAGE_TAIL;

static const char pending_new[] = PAGE(
    "Certificate Pending",
    "<P ID=locInfoNewReq>Your certificate request has been received. However, you must wait "
    "for an administrator to issue the certificate you requested.</P>" CRLF
    "<P ID=locInfoReqID>Your Request Id is 57.</P>" CRLF
    "<P ID=locInfoRemember>Please return to this web site in a day or two to retrieve your "
    "certificate.</P>" CRLF);

static const char pending_recheck[] = PAGE(
    "Certificate Pending",
    "<P ID=locInfoChkPnd>Your certificate request is still pending. You must wait for an "
    "administrator to issue the certificate you requested.</P>" CRLF
    "<P ID=locInfoReqID>Your Request Id is 4294967295.</P>" CRLF);

#define DENIAL_800                                                                         \
    "Denied by Policy Module  0x80094800, The request was for a certificate template that is " \
    "not supported by the Active Directory Certificate Services policy: WebServerX."

static const char denied_policy[] = PAGE(
    "Certificate Request Denied",
    "<P ID=locDenied>Your certificate request was denied.</P>" CRLF
    "<P ID=locInfoReqIDandReason>Your Request Id is 61101. The disposition message is \""
    DENIAL_800 "\".</P>" CRLF
    "<P ID=locContactAdmin>Contact your administrator for further information.</P>" CRLF);

static const char denied_officer[] = PAGE(
    "Certificate Request Denied",
    "<P ID=locDenied>Your certificate request was denied.</P>" CRLF
    "<P ID=locInfoReqIDandReason>Your Request Id is 70. The disposition message is \"Denied by "
    "CONTOSO\\officer 0x80094014 (-2146877420 CERTSRV_E_ADMIN_DENIED_REQUEST)\".</P>" CRLF);

/* error_page(mode, disposition, disp_msg, result[, last_status]) of the emulator */
#define ERROR_DL(mode, disp, msg, result, last, cause)                                      \
    "<P ID=locReqFailed>Your request failed. An error occurred while the server was "        \
    "processing your request.</P>" CRLF "<DL>" CRLF                                          \
    "<DT ID=locModeLabel>Request Mode:</DT>" CRLF "\t\t<DD>" mode "</DD>" CRLF               \
    "<DT ID=locDispLabel>Disposition:</DT>" CRLF "\t\t<DD>" disp "</DD>" CRLF                \
    "<DT ID=locDispMsgLabel>Disposition message:</DT>" CRLF "\t\t<DD>" msg "</DD>" CRLF      \
    "<DT ID=locResultLabel>Result:</DT>" CRLF "\t\t<DD>" result "</DD>" CRLF                 \
    "<DT ID=locComInfoLabel>COM Error Info:</DT>" CRLF "\t\t<DD>(none)</DD>" CRLF            \
    "<DT ID=locLastStatLabel>LastStatus:</DT>" CRLF "\t\t<DD>" last "</DD>" CRLF             \
    "<DT ID=locSugCauseLabel>Suggested Cause:</DT>" CRLF "\t\t<DD>" cause "</DD>" CRLF       \
    "</DL>" CRLF
#define FETCH "(certnew.cer/certnew.p7b/certcrl.crl certificate/crl fetch)"
#define OK_0 "The operation completed successfully. 0x0 (WIN32: 0)"
#define RPC_DOWN "The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"
#define EMPTY_PROP                                                                          \
    "The requested property value is empty. 0x80094004 (-2146877436 CERTSRV_E_PROPERTY_EMPTY)"

static const char fetch_pending[] =
    PAGE("Error", ERROR_DL(FETCH, "5 - Under Submission", "Taken Under Submission", OK_0, OK_0,
                           "(none)"));
static const char fetch_denied[] =
    PAGE("Error", ERROR_DL(FETCH, "2 - Denied", DENIAL_800,
                           "The requested certificate template is not supported by this CA. "
                           "0x80094800 (-2146875392 CERTSRV_E_UNSUPPORTED_CERT_TYPE)",
                           OK_0, "(none)"));
static const char fetch_unknown_id[] =
    PAGE("Error", ERROR_DL(FETCH, "0 - Incomplete", "(none)", EMPTY_PROP, EMPTY_PROP, "(none)"));
static const char fetch_ca_down[] =
    PAGE("Error", ERROR_DL(FETCH, "0 - Incomplete", "(none)", RPC_DOWN, RPC_DOWN,
                           "The Certification Authority Service has not been started."));
static const char newreq_ca_down[] =
    PAGE("Error", ERROR_DL("newreq", "1 - Error", "(none)", RPC_DOWN, RPC_DOWN, "(none)"));

/* A real capture's shape: label and value on one line. */
static const char captured_error[] =
    "<HTML><Body><P ID=locReqFailed>Your request failed.</P><DL>"
    "<DT ID=locDispLabel>Disposition:</DT><DD>5 - Under Submission</DD>"
    "<DT ID=locDispMsgLabel>Disposition message:</DT><DD>Taken Under Submission</DD></DL>"
    "</Body></HTML>";

static const char certcarc_ok[] = PAGE_HEAD
    "<Script Language=\"JavaScript\">" CRLF "<!--" CRLF "\tvar nRenewals=3;" CRLF
    "\tvar rgCrlState=new Array(\"0\", \"0\", \"0\", \"1\");" CRLF "//-->" CRLF "</Script>" CRLF
    PAGE_BODY("Download a CA Certificate, Certificate Chain, or CRL")
    "<Select Name=lbCAVersion ID=lbCAVersionID Size=4>"
    "<Option Value=\"3\" Selected>Stampede Test Issuing CA [Current]</Option></Select>" CRLF
    PAGE_TAIL;

static const char certcarc_down[] = PAGE(
    "Error", "<P ID=locErrorMsg>An unexpected error has occurred: The Certification Authority "
             "Service has not been started.</P>" CRLF);

/* ---- helpers */

static void result_of(const char *s, ctl_page_t *p) {
    ctl_page_result((const uint8_t *)s, strlen(s), p);
}

static void body_of(const void *b, size_t n, uint8_t *pem, size_t cap, ctl_body_t *out) {
    ctl_page_body(b, n, pem, cap, out);
}

static bool renewals_of(const char *s, uint32_t *k, ctl_page_t *p) {
    return ctl_page_renewals((const uint8_t *)s, strlen(s), k, p);
}

static void assert_prefix(const char *s, const char *prefix) {
    if (strncmp(s, prefix, strlen(prefix)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", s, prefix);
}

/* assert_clean_text: NUL-terminated within the buffer, printable ASCII, no
 * leading, trailing or double spaces. */
static void assert_clean_text(const char *s) {
    size_t n = strnlen(s, CTL_PAGE_TEXT_MAX);
    assert_true(n < CTL_PAGE_TEXT_MAX);
    for (size_t i = 0; i < n; i++) {
        assert_true(s[i] >= 0x20 && s[i] < 0x7f);
        if (s[i] == ' ')
            assert_true(i > 0 && i + 1 < n && s[i + 1] != ' ');
    }
}

static void assert_clean(const ctl_page_t *p) {
    assert_true((unsigned)p->kind < CTL_PAGE__COUNT);
    assert_clean_text(p->message);
    assert_clean_text(p->text);
    if (!p->has_req_id)
        assert_int_equal(p->req_id, 0);
    if (!p->has_hresult)
        assert_int_equal(p->hresult, 0);
    if (!p->has_disposition)
        assert_int_equal(p->disposition, 0);
}

/* ---- certfnsh.asp results */

static void test_issued_text(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(issued_text, &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_true(p.has_req_id);
    assert_int_equal(p.req_id, 61108);
    assert_false(p.has_hresult);
    assert_string_equal(p.message, "");
    assert_prefix(p.text, "The certificate you requested was issued to you. Install CA "
                          "certificate DER encoded Download certificate");
    assert_clean(&p);
}

static void test_issued_script(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(issued_script, &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_int_equal(p.req_id, 61108);
    assert_string_equal(p.text, "The certificate you requested was issued to you. DER encoded or "
                                "Download certificate");
    assert_clean(&p);
}

static void test_issued_skips_cacert(void **state) {
    (void)state;
    ctl_page_t p;
    /* Only the CA link (ReqID=CACert, and a non-numeric id): not issued. */
    result_of("<A Href=\"certnew.cer?ReqID=CACert&amp;Renewal=3&amp;Mode=inst&amp;Enc=b64\">"
              "<A Href=\"certnew.cer?ReqID=12x&amp;Enc=bin\">", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    result_of("<A Href=\"certnew.cer?ReqID=CACert&amp;Renewal=3\">x</A>"
              "<A Href=\"certnew.cer?ReqID=8&amp;Enc=bin\">", &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_int_equal(p.req_id, 8);
    /* certnew.p7b alone is not the marker; digits must be followed by '&'. */
    result_of("certnew.p7b?ReqID=9&amp; certnew.cer?ReqID=10\"", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
}

static void test_issued_id_limits(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("location=\"certnew.cer?ReqID=12345678901&\"+getEncoding();", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    assert_false(p.has_req_id);
    result_of("location=\"certnew.cer?ReqID=00000000001&\"+getEncoding();", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);      /* 11 digits, even if small */
    result_of("location=\"certnew.cer?ReqID=0000000001&\"+getEncoding();", &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_int_equal(p.req_id, 1);
    result_of("location=\"certnew.cer?ReqID=4294967296&\"+getEncoding();", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    result_of("location=\"certnew.cer?ReqID=4294967295&\"+getEncoding();", &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_int_equal(p.req_id, 4294967295u);
    /* the rejected one is skipped, a later valid one counts */
    result_of("certnew.cer?ReqID=99999999999&amp; certnew.cer?ReqID=0&amp;", &p);
    assert_int_equal(p.kind, CTL_PAGE_ISSUED);
    assert_int_equal(p.req_id, 0);
}

static void test_pending(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(pending_new, &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_true(p.has_req_id);
    assert_int_equal(p.req_id, 57);
    assert_prefix(p.text, "Your certificate request has been received. However,");
    assert_clean(&p);

    result_of(pending_recheck, &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_int_equal(p.req_id, 4294967295u);
    assert_prefix(p.text, "Your certificate request is still pending.");
    assert_clean(&p);
}

static void test_pending_localized(void **state) {
    (void)state;
    ctl_page_t p;
    /* No English phrase: the first integer of the locInfoReqID paragraph,
     * past tags and entities (&#233; holds digits that are not the id). */
    result_of("<P id=\"locInfoReqID\">Num&#233;ro de demande&nbsp;: <B>1234</B>.</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_true(p.has_req_id);
    assert_int_equal(p.req_id, 1234);
    /* Only the English title: pending, no id. */
    result_of("<Title>x</Title><H1>Certificate Pending</H1>", &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_false(p.has_req_id);
}

static void test_denied_policy(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(denied_policy, &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_true(p.has_req_id);
    assert_int_equal(p.req_id, 61101);
    assert_true(p.has_hresult);
    assert_int_equal(p.hresult, 0x80094800u);
    /* whitespace collapsed: the two spaces become one */
    assert_string_equal(p.message,
                        "Denied by Policy Module 0x80094800, The request was for a certificate "
                        "template that is not supported by the Active Directory Certificate "
                        "Services policy: WebServerX.");
    assert_string_equal(p.text, "Your certificate request was denied. Your Request Id is 61101. "
                                "The disposition message is \"" "Denied by Policy Module "
                                "0x80094800, The request was for a certificate template that is "
                                "not supported by the Active Directory Certificate Services "
                                "policy: WebServerX.\". Contact your administrator for further "
                                "information.");
    assert_clean(&p);
}

static void test_denied_officer(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(denied_officer, &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_int_equal(p.req_id, 70);
    assert_true(p.has_hresult);
    assert_int_equal(p.hresult, 0x80094014u);
    assert_string_equal(p.message, "Denied by CONTOSO\\officer 0x80094014 (-2146877420 "
                                   "CERTSRV_E_ADMIN_DENIED_REQUEST)");
}

static void test_denied_revoked_and_no_id(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<P ID=locIssRev>The certificate issued for your request was revoked.</P>"
              "<P ID=locInfoReqIDandReason>The disposition message is \"Revoked\".</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_false(p.has_req_id);
    assert_false(p.has_hresult);
    assert_string_equal(p.message, "Revoked");
    /* Localized: no phrase, so the reason paragraph is the message. */
    result_of("<P ID=locDenied>Refus&eacute;e.</P><P ID=locInfoReqIDandReason>Demande 12. "
              "Refus&eacute;e par le module 0x80094800.</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_int_equal(p.req_id, 12);
    assert_int_equal(p.hresult, 0x80094800u);
    assert_string_equal(p.message, "Demande 12. Refus&eacute;e par le module 0x80094800.");
}

static void test_reason_is_not_pending(void **state) {
    (void)state;
    ctl_page_t p;
    /* locInfoReqIDandReason must not count as locInfoReqID. */
    result_of("<P ID=locInfoReqIDandReason>Request 5.</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    assert_string_equal(p.text, "Request 5.");
    result_of("<P ID=locInfoReqIDx>Request 5.</P><P ID=locDeniedX>x</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    /* ...but the whole token does, in any case and quoted. */
    result_of("<p id='LOCINFOREQID'>Your Request Id is 6.</p>", &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_int_equal(p.req_id, 6);
    result_of("<P ID = locInfoReqID/>Your Request Id is <B>7</B>", &p);
    assert_int_equal(p.kind, CTL_PAGE_PENDING);
    assert_int_equal(p.req_id, 7);
    /* inside a longer attribute name or value: no */
    result_of("<P XID=locInfoReqID>1</P><A Href=\"x?ReqID=locInfoReqID\">", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
}

static void test_denied_before_pending(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<P ID=locInfoReqID>Your Request Id is 3.</P><P ID=locDenied>Denied</P>", &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_int_equal(p.req_id, 3);
}

static void test_error_ca_unreachable(void **state) {
    (void)state;
    ctl_page_t p;
    result_of(newreq_ca_down, &p);
    assert_int_equal(p.kind, CTL_PAGE_ERROR);
    assert_true(p.ca_unreachable);
    assert_false(p.unknown_id);
    assert_true(p.has_hresult);
    assert_int_equal(p.hresult, 0x800706BAu);
    assert_true(p.has_disposition);
    assert_int_equal(p.disposition, 1);
    assert_false(p.has_req_id);
    assert_string_equal(p.message, RPC_DOWN);
    assert_prefix(p.text, "Your request failed. An error occurred while the server was "
                          "processing your request. Request Mode: newreq Disposition: 1 - "
                          "Error Disposition message: (none) Result: The RPC");
    assert_clean(&p);
}

static void test_error_english_only(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<DL><DT>Disposition message:</DT><DD>Error Parsing Request 0x80094001</DD>"
              "<DT>Result:</DT><DD>x 0x0</DD></DL>", &p);
    assert_int_equal(p.kind, CTL_PAGE_ERROR);
    assert_string_equal(p.message, "Error Parsing Request 0x80094001");
    assert_int_equal(p.hresult, 0x80094001u);
    assert_false(p.ca_unreachable);
    /* A label without its own <DD> does not borrow the next label's. */
    result_of("<DL><DT ID=locDispMsgLabel>Disposition message:</DT>"
              "<DT ID=locResultLabel>Result:</DT><DD>Bad 0x80070057</DD></DL>", &p);
    assert_int_equal(p.kind, CTL_PAGE_ERROR);
    assert_string_equal(p.message, "Bad 0x80070057");
    assert_int_equal(p.hresult, 0x80070057u);
}

static void test_disposition_message_fallback(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<HTML><Body>Your Request Id is 99. The disposition message is \"Error Parsing "
              "Request The request subject name is invalid or too long. 0x80094001\".</Body>",
              &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_int_equal(p.req_id, 99);
    assert_int_equal(p.hresult, 0x80094001u);
    assert_string_equal(p.message, "Error Parsing Request The request subject name is invalid or "
                                   "too long. 0x80094001");
    /* no closing quote: the message ends with its paragraph */
    result_of("The disposition message is \"half<P>rest", &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_string_equal(p.message, "half");
    assert_false(p.has_hresult);
    assert_false(p.has_req_id);
}

static void test_unknown_garbage(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<html><head><title>503 - Service Unavailable</title><script>var x=1;</script>"
              "</head><body><!-- c --><h2>Service\tUnavailable</h2>\x01\xc3\xa9\xff"
              "</body></html>", &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    assert_string_equal(p.text, "503 - Service Unavailable Service Unavailable ???");
    assert_clean(&p);

    char big[4000];
    memset(big, 'a', sizeof(big));
    for (size_t i = 7; i < sizeof(big); i += 8)
        big[i] = ' ';
    ctl_page_result((const uint8_t *)big, sizeof(big), &p);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    assert_int_equal(strlen(p.text), CTL_PAGE_TEXT_MAX - 1);
    assert_clean(&p);
}

static void test_entities(void **state) {
    (void)state;
    ctl_page_t p;
    result_of("<P ID=locDenied>x</P>The disposition message is \"a&amp;b &lt;c&gt; &quot;d&quot; "
              "e&nbsp;&nbsp;f &#65;&#x42;&#X63; &#0; &#x1F600; &#12345678901; &bogus; & &#; "
              "&#x110000; &apos;<B>g</B>h\"", &p);
    assert_int_equal(p.kind, CTL_PAGE_DENIED);
    assert_string_equal(p.message, "a&b <c> \"d\" e f ABc ? ? &#12345678901; &bogus; & &#; ? ' g h");
}

/* ---- certnew.cer / certnew.p7b bodies */

/* A minimal PKCS#7-like DER (ContentInfo, signedData, one fake certificate)
 * and its PEM armour under the CERTIFICATE label, as Enc=b64 sends it. */
static const char p7_b64[] =
    "-----BEGIN CERTIFICATE-----\r\n"
    "MIHUBgkqhkiG9w0BBwKggcYwgcMCAQExADALBgkqhkiG9w0BBwGggawwgakwgZkC\r\n"
    "AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
    "AAAAAAAAAAAwAAMJAAAAAAAAAAAAMQA=\r\n"
    "-----END CERTIFICATE-----\r\n";
static const uint8_t p7_head[] = {0x30, 0x81, 0xd4, 0x06, 0x09, 0x2a, 0x86, 0x48,
                                  0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x81};
static const uint8_t p7_tail[] = {0x00, 0x00, 0x31, 0x00};

static void test_body_der(void **state) {
    (void)state;
    uint8_t der[300], pem[512];
    ctl_body_t b;
    /* short form */
    static const uint8_t small[] = {0x30, 0x03, 0x02, 0x01, 0x05};
    body_of(small, sizeof(small), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_ptr_equal(b.der, small);
    assert_int_equal(b.der_len, sizeof(small));
    /* long form, 2 length bytes (0x82 0x01 0x00 = 256) */
    memset(der, 0, sizeof(der));
    der[0] = 0x30;
    der[1] = 0x82;
    der[2] = 0x01;
    der[3] = 0x00;
    body_of(der, 4 + 256, pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_ptr_equal(b.der, der);
    assert_int_equal(b.der_len, 260);
    /* non-minimal long form is fine: 0x84 00 00 00 03 */
    static const uint8_t nonmin[] = {0x30, 0x84, 0, 0, 0, 3, 1, 2, 3};
    body_of(nonmin, sizeof(nonmin), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    /* a DER body that happens to contain "-----BEGIN " stays DER */
    static const uint8_t tricky[] = {0x30, 0x0b, '-', '-', '-', '-', '-', 'B',
                                     'E', 'G', 'I', 'N', ' '};
    body_of(tricky, sizeof(tricky), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_ptr_equal(b.der, tricky);
}

static void test_body_der_rejects(void **state) {
    (void)state;
    uint8_t pem[64];
    ctl_body_t b;
    static const uint8_t trailing[] = {0x30, 0x03, 0x02, 0x01, 0x05, 0x00};
    static const uint8_t shorter[] = {0x30, 0x04, 0x02, 0x01, 0x05};
    static const uint8_t indefinite[] = {0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00};
    static const uint8_t five_len[] = {0x30, 0x85, 0, 0, 0, 0, 1, 0};
    static const uint8_t not_seq[] = {0x31, 0x03, 0x02, 0x01, 0x05};
    static const uint8_t cut_len[] = {0x30, 0x82, 0x01};
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {{trailing, sizeof(trailing)},     {shorter, sizeof(shorter)},
               {indefinite, sizeof(indefinite)}, {five_len, sizeof(five_len)},
               {not_seq, sizeof(not_seq)},       {cut_len, sizeof(cut_len)},
               {trailing, 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body_of(bad[i].p, bad[i].n, pem, sizeof(pem), &b);
        assert_int_equal(b.kind, CTL_BODY_UNKNOWN);
        assert_null(b.der);
        assert_int_equal(b.der_len, 0);
        assert_int_equal(b.page.kind, CTL_PAGE_UNKNOWN);
        assert_clean(&b.page);
    }
    body_of(trailing, sizeof(trailing), pem, sizeof(pem), &b);
    assert_string_equal(b.page.text, "0?????");   /* 0x30 is '0', the rest are controls */
}

static void test_body_pem(void **state) {
    (void)state;
    uint8_t pem[512];
    ctl_body_t b;
    body_of(p7_b64, strlen(p7_b64), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_ptr_equal(b.der, pem);
    assert_int_equal(b.der_len, 215);
    assert_memory_equal(b.der, p7_head, sizeof(p7_head));
    assert_memory_equal(b.der + 215 - sizeof(p7_tail), p7_tail, sizeof(p7_tail));
    /* same with LF only, a PKCS7 label and text around it */
    char alt[700];
    size_t n = 0;
    n += (size_t)snprintf(alt + n, sizeof(alt) - n, "garbage before\n-----BEGIN PKCS7-----\n");
    for (const char *s = strchr(p7_b64, '\n') + 1; *s != '-'; s++)
        if (*s != '\r')
            alt[n++] = *s;
    n += (size_t)snprintf(alt + n, sizeof(alt) - n, "-----END PKCS7-----\nafter");
    ctl_body_t b2;
    uint8_t pem2[512];
    body_of(alt, n, pem2, sizeof(pem2), &b2);
    assert_int_equal(b2.kind, CTL_BODY_DER);
    assert_int_equal(b2.der_len, 215);
    assert_memory_equal(b2.der, b.der, 215);
    /* exactly enough room, and one byte short */
    body_of(p7_b64, strlen(p7_b64), pem2, 215, &b2);
    assert_int_equal(b2.kind, CTL_BODY_DER);
    body_of(p7_b64, strlen(p7_b64), pem2, 214, &b2);
    assert_int_equal(b2.kind, CTL_BODY_UNKNOWN);
    body_of(p7_b64, strlen(p7_b64), NULL, 0, &b2);
    assert_int_equal(b2.kind, CTL_BODY_UNKNOWN);
    assert_prefix(b2.page.text, "-----BEGIN CERTIFICATE----- MIHU");
}

static void test_body_pem_rejects(void **state) {
    (void)state;
    uint8_t pem[512];
    ctl_body_t b;
#define ARMOUR(x) "-----BEGIN CERTIFICATE-----\n" x "\n-----END CERTIFICATE-----\n"
    static const char good[] = ARMOUR("MAMCAQU=");   /* 30 03 02 01 05 */
    static const char *const bad[] = {
        ARMOUR("MAMCAQU*"),                 /* bad character */
        ARMOUR("MAMCAQU"),                  /* partial quantum */
        ARMOUR("MAMCAQ=U"),                 /* data after '=' */
        ARMOUR("=MAMCAQU"),                 /* '=' first */
        ARMOUR("MAMCAQU=MAMC"),             /* a quantum after the padded one */
        ARMOUR("MAMCAQV="),                 /* nonzero padding bits */
        ARMOUR("MAIFAB=="),                 /* nonzero padding bits (two '=') */
        ARMOUR("MAMCAQ=="),                 /* decodes, but the DER is cut */
        ARMOUR("MAMCAQU=\x01"),             /* control character */
        "-----BEGIN CERTIFICATE-----\nMAMCAQU=\n",                              /* no END */
        "-----BEGIN CERT\nIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n", /* split label */
        "-----BEGIN CERTIFICATE\nMAMCAQU=\n",                                  /* no label end */
    };
    body_of(good, strlen(good), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_ptr_equal(b.der, pem);
    assert_int_equal(b.der_len, 5);
    assert_memory_equal(b.der, "\x30\x03\x02\x01\x05", 5);
    static const char good2[] = ARMOUR("MAIF AA= =");   /* 30 02 05 00, spaces anywhere */
    body_of(good2, strlen(good2), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_DER);
    assert_int_equal(b.der_len, 4);
    assert_memory_equal(b.der, "\x30\x02\x05\x00", 4);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body_of(bad[i], strlen(bad[i]), pem, sizeof(pem), &b);
        assert_int_equal(b.kind, CTL_BODY_UNKNOWN);
        assert_null(b.der);
        assert_int_equal(b.page.kind, CTL_PAGE_UNKNOWN);
        assert_clean(&b.page);
    }
#undef ARMOUR
}

static void test_body_html_pending(void **state) {
    (void)state;
    uint8_t pem[16];
    ctl_body_t b;
    body_of(fetch_pending, strlen(fetch_pending), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_null(b.der);
    assert_int_equal(b.page.kind, CTL_PAGE_PENDING);
    assert_true(b.page.has_disposition);
    assert_int_equal(b.page.disposition, 5);
    assert_string_equal(b.page.message, "Taken Under Submission");
    assert_true(b.page.has_hresult);
    assert_int_equal(b.page.hresult, 0);
    assert_false(b.page.unknown_id);
    assert_false(b.page.ca_unreachable);
    assert_clean(&b.page);

    body_of(captured_error, strlen(captured_error), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_PENDING);
    assert_int_equal(b.page.disposition, 5);
    assert_false(b.page.has_hresult);
    /* no disposition, only the message */
    static const char msg_only[] = "  \r\n<dl><dt>Disposition message:</dt><dd>Taken Under "
                                   "Submission</dd></dl>";
    body_of(msg_only, strlen(msg_only), pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_PENDING);
    assert_false(b.page.has_disposition);
}

static void test_body_html_denied(void **state) {
    (void)state;
    ctl_body_t b;
    body_of(fetch_denied, strlen(fetch_denied), NULL, 0, &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_DENIED);
    assert_int_equal(b.page.disposition, 2);
    assert_int_equal(b.page.hresult, 0x80094800u);
    assert_prefix(b.page.message, "Denied by Policy Module 0x80094800, The request");
    /* "Denied by" with another disposition, and "(none)" is no disposition */
    static const char by[] = "<DL><DT ID=locDispLabel>Disposition:</DT><DD>(none)</DD>"
                             "<DT ID=locDispMsgLabel>Disposition message:</DT><DD>Denied by "
                             "CONTOSO\\officer</DD></DL>";
    body_of(by, strlen(by), NULL, 0, &b);
    assert_int_equal(b.page.kind, CTL_PAGE_DENIED);
    assert_false(b.page.has_disposition);
    static const char d1[] = "<DL><DT ID=locDispLabel>Disposition:</DT><DD>1 - Error</DD>"
                             "<DT ID=locDispMsgLabel>Disposition message:</DT><DD>Denied by "
                             "Policy Module</DD></DL>";
    body_of(d1, strlen(d1), NULL, 0, &b);
    assert_int_equal(b.page.kind, CTL_PAGE_DENIED);
    assert_int_equal(b.page.disposition, 1);
}

static void test_body_html_unknown_id(void **state) {
    (void)state;
    ctl_body_t b;
    body_of(fetch_unknown_id, strlen(fetch_unknown_id), NULL, 0, &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_ERROR);
    assert_true(b.page.unknown_id);
    assert_false(b.page.ca_unreachable);
    assert_int_equal(b.page.disposition, 0);
    assert_true(b.page.has_disposition);
    assert_int_equal(b.page.hresult, 0x80094004u);
    assert_string_equal(b.page.message, EMPTY_PROP);
    /* the English text alone is enough */
    static const char text_only[] = "<p>The requested property value is empty.</p>";
    body_of(text_only, strlen(text_only), NULL, 0, &b);
    assert_int_equal(b.page.kind, CTL_PAGE_ERROR);
    assert_true(b.page.unknown_id);
    assert_false(b.page.has_hresult);
}

static void test_body_html_ca_down(void **state) {
    (void)state;
    ctl_body_t b;
    body_of(fetch_ca_down, strlen(fetch_ca_down), NULL, 0, &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_ERROR);
    assert_true(b.page.ca_unreachable);
    assert_false(b.page.unknown_id);
    assert_int_equal(b.page.hresult, 0x800706BAu);
    /* unrecognised HTML is an ERROR with the page's text */
    static const char iis[] = "\xEF\xBB\xBF <html><title>401 - Unauthorized</title></html>";
    body_of(iis, strlen(iis), NULL, 0, &b);
    assert_int_equal(b.kind, CTL_BODY_HTML);
    assert_int_equal(b.page.kind, CTL_PAGE_ERROR);
    assert_string_equal(b.page.text, "? 401 - Unauthorized");   /* one '?' for the BOM */
    assert_string_equal(b.page.message, "");
}

static void test_body_empty(void **state) {
    (void)state;
    ctl_body_t b;
    uint8_t pem[8];
    body_of(NULL, 0, pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_UNKNOWN);
    assert_string_equal(b.page.text, "");
    body_of("", 0, pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_UNKNOWN);
    body_of(" \r\n ", 4, pem, sizeof(pem), &b);
    assert_int_equal(b.kind, CTL_BODY_UNKNOWN);
    assert_string_equal(b.page.text, "");
}

/* ---- certcarc.asp */

static void test_renewals(void **state) {
    (void)state;
    ctl_page_t p;
    uint32_t k = 77;
    assert_true(renewals_of(certcarc_ok, &k, &p));
    assert_int_equal(k, 3);
    assert_int_equal(p.kind, CTL_PAGE_UNKNOWN);
    assert_true(renewals_of("var\tnRenewals \r\n=  12 ;", &k, &p));
    assert_int_equal(k, 12);
    assert_true(renewals_of("var x; var  nRenewals=99999;", &k, &p));
    assert_int_equal(k, 99999);
    assert_true(renewals_of("xvar nRenewals=0;", &k, &p));   /* as the ERE: no boundary */
    assert_int_equal(k, 0);
    static const char *const bad[] = {"varnRenewals=3;", "var nRenewals=100000;",
                                      "var nRenewals=;", "var nRenewals=3", "var nRenewals=3x;",
                                      "var nrenewals=3;", "VAR nRenewals=3;", "var nRenewals=-1;",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        k = 77;
        assert_false(renewals_of(bad[i], &k, &p));
        assert_int_equal(k, 77);
        assert_int_equal(p.kind, CTL_PAGE_ERROR);
        assert_false(p.ca_unreachable);
    }
}

static void test_renewals_ca_down(void **state) {
    (void)state;
    ctl_page_t p;
    uint32_t k = 77;
    assert_false(renewals_of(certcarc_down, &k, &p));
    assert_int_equal(k, 77);
    assert_int_equal(p.kind, CTL_PAGE_ERROR);
    assert_true(p.ca_unreachable);
    assert_string_equal(p.message, "An unexpected error has occurred: The Certification "
                                   "Authority Service has not been started.");
    assert_false(renewals_of(fetch_ca_down, &k, &p));
    assert_true(p.ca_unreachable);
    assert_int_equal(p.hresult, 0x800706BAu);
    /* 0x800706BA alone, in any case */
    assert_false(renewals_of("<p>RPC 0x800706Ba</p>", &k, &p));
    assert_true(p.ca_unreachable);
    assert_false(renewals_of("<p>RPC 0x800706BA1</p>", &k, &p));   /* 9 digits: not the code */
    assert_false(p.ca_unreachable);
}

/* ---- the cursor */

static void test_cursor(void **state) {
    (void)state;
    ctl_cur_t c;
    uint32_t v = 5;
    ctl_cur_init(&c, "abc 0123456789x 4294967296 12345678901 ", 39);
    assert_false(ctl_cur_get_u32(&c, &v));
    assert_int_equal(v, 5);
    assert_false(ctl_cur_skip(&c, 40));
    assert_int_equal(c.len, 39);
    assert_true(ctl_cur_find(&c, "ABC", true));
    assert_false(ctl_cur_find(&c, "ABC", false));
    assert_true(ctl_cur_starts(&c, "abc", false));
    assert_true(ctl_cur_find(&c, "0", false));
    assert_true(ctl_cur_get_u32(&c, &v));
    assert_int_equal(v, 123456789);
    assert_true(ctl_cur_starts(&c, "x", false));
    assert_true(ctl_cur_skip(&c, 2));
    assert_false(ctl_cur_get_u32(&c, &v));      /* > UINT32_MAX */
    assert_true(ctl_cur_starts(&c, "4294967296", false));
    assert_true(ctl_cur_skip(&c, 11));
    assert_false(ctl_cur_get_u32(&c, &v));      /* 11 digits */
    assert_int_equal(c.len, 12);
    assert_false(ctl_cur_find(&c, "123456789012", false));
    ctl_cur_t z;
    ctl_cur_init(&z, "00000000001", 11);
    assert_false(ctl_cur_get_u32(&z, &v));      /* 11 digits, small value */
    assert_int_equal(z.len, 11);
    ctl_cur_init(&z, "0000000001", 10);
    assert_true(ctl_cur_get_u32(&z, &v));
    assert_int_equal(v, 1);
    assert_int_equal(z.len, 0);
    assert_true(ctl_cur_find(&c, "", false));
    assert_false(ctl_cur_starts(&c, "12345678901 x", false));
    ctl_cur_init(&c, NULL, 10);
    assert_int_equal(c.len, 0);
    assert_true(ctl_cur_skip(&c, 0));
    assert_false(ctl_cur_find(&c, "a", true));
}

static void test_kind_str(void **state) {
    (void)state;
    assert_string_equal(ctl_page_kind_str(CTL_PAGE_UNKNOWN), "unknown");
    assert_string_equal(ctl_page_kind_str(CTL_PAGE_ISSUED), "issued");
    assert_string_equal(ctl_page_kind_str(CTL_PAGE_PENDING), "pending");
    assert_string_equal(ctl_page_kind_str(CTL_PAGE_DENIED), "denied");
    assert_string_equal(ctl_page_kind_str(CTL_PAGE_ERROR), "error");
    assert_string_equal(ctl_page_kind_str(CTL_PAGE__COUNT), "?");
}

/* ---- truncated answers: every prefix of every page, through all three
 * entry points, copied to an exact-size heap buffer so ASan sees overreads. */

static void test_prefixes(void **state) {
    (void)state;
    const char *const pages[] = {issued_text, issued_script, pending_new, denied_policy,
                                 denied_officer, fetch_pending, fetch_denied, fetch_unknown_id,
                                 fetch_ca_down, certcarc_ok, certcarc_down, p7_b64,
                                 captured_error};
    uint8_t pem[512];
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        size_t len = strlen(pages[i]);
        for (size_t n = 0; n <= len; n++) {
            uint8_t *buf = malloc(n ? n : 1);
            ctl_page_t p;
            ctl_body_t b;
            uint32_t k = 0;
            assert_non_null(buf);
            memcpy(buf, pages[i], n);
            ctl_page_result(buf, n, &p);
            assert_clean(&p);
            if (p.kind == CTL_PAGE_ISSUED)
                assert_int_equal(p.req_id, 61108);
            ctl_page_body(buf, n, pem, sizeof(pem), &b);
            assert_clean(&b.page);
            if (b.kind == CTL_BODY_DER) {    /* only the PEM page, once past -----END */
                assert_ptr_equal(b.der, pem);
                assert_int_equal(b.der_len, 215);
            }
            if (ctl_page_renewals(buf, n, &k, &p))
                assert_int_equal(k, 3);
            else
                assert_clean(&p);
            free(buf);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issued_text),
        cmocka_unit_test(test_issued_script),
        cmocka_unit_test(test_issued_skips_cacert),
        cmocka_unit_test(test_issued_id_limits),
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_pending_localized),
        cmocka_unit_test(test_denied_policy),
        cmocka_unit_test(test_denied_officer),
        cmocka_unit_test(test_denied_revoked_and_no_id),
        cmocka_unit_test(test_reason_is_not_pending),
        cmocka_unit_test(test_denied_before_pending),
        cmocka_unit_test(test_error_ca_unreachable),
        cmocka_unit_test(test_error_english_only),
        cmocka_unit_test(test_disposition_message_fallback),
        cmocka_unit_test(test_unknown_garbage),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_body_der),
        cmocka_unit_test(test_body_der_rejects),
        cmocka_unit_test(test_body_pem),
        cmocka_unit_test(test_body_pem_rejects),
        cmocka_unit_test(test_body_html_pending),
        cmocka_unit_test(test_body_html_denied),
        cmocka_unit_test(test_body_html_unknown_id),
        cmocka_unit_test(test_body_html_ca_down),
        cmocka_unit_test(test_body_empty),
        cmocka_unit_test(test_renewals),
        cmocka_unit_test(test_renewals_ca_down),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_kind_str),
        cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
