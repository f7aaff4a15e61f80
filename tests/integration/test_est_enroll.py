"""EST enrollment end to end: curl, the openssl CLI and Python's http.client
enroll openssl-made CSRs (RSA-2048, P-256) with stampeded; the PKCS#7, the
leaf certificate, the CA certificate, /cacerts and /csrattrs are checked
with the openssl CLI."""
import calendar
import os
import re
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402


def not_time(s):
    """not_time parses openssl's 'Nov 22 17:04:38 2026 GMT'."""
    return calendar.timegm(time.strptime(s.strip(), '%b %d %H:%M:%S %Y %Z'))


def der_oids(der):
    """der_oids decodes a DER SEQUENCE of OBJECT IDENTIFIERs (CsrAttrs with
    bare OIDs) into dotted strings."""
    assert der[0] == 0x30, 'not a SEQUENCE: %r' % der[:4]
    pos, n = 1, der[1]
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(der[2:2 + k], 'big')
        pos += k
    pos += 1
    assert pos + n == len(der), 'trailing bytes after the SEQUENCE'
    out = []
    while pos < len(der):
        assert der[pos] == 0x06, 'element is not an OID: tag %#x' % der[pos]
        ln = der[pos + 1]
        body = der[pos + 2:pos + 2 + ln]
        pos += 2 + ln
        arcs, v = [], 0
        for b in body:
            v = (v << 7) | (b & 0x7f)
            if not b & 0x80:
                arcs.append(v)
                v = 0
        first = min(arcs[0] // 40, 2)
        out.append('.'.join(map(str, [first, arcs[0] - 40 * first] + arcs[1:])))
    return out


class EnrollBase(fx.SharedDaemonTestCase):
    def enroll_checked(self, kind, subj, addext=None, client='curl'):
        """enroll_checked makes a key + CSR, enrolls it, checks the HTTP
        response and returns (leaf_pem_path, csr_der_path, t0, t1)."""
        key = fx.gen_key(os.path.join(self.tmp, 'leaf.key'), kind)
        csr_path = os.path.join(self.tmp, 'leaf.csr.der')
        csr = fx.make_csr(key, subj, csr_path, addext)
        t0 = time.time()
        if client == 'curl':
            r = fx.curl_enroll(self.d, csr)
        else:
            r = fx.py_enroll(self.d, csr)
        t1 = time.time()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('content-type'), fx.P7_TYPE)
        self.assertEqual(r.header('content-transfer-encoding'), 'base64')
        certs = fx.p7_to_pem(r.body, self.tmp, 'leaf')
        self.assertEqual(len(certs), 1, 'certs-only PKCS#7 should carry exactly the leaf')
        leaf = fx.write(os.path.join(self.tmp, 'leaf.pem'), certs[0])
        return leaf, key, csr_path, t0, t1

    def cacerts_pem(self):
        r = fx.curl(self.d, 'cacerts')
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, 'cacerts')
        self.assertEqual(len(certs), 1)
        return fx.write(os.path.join(self.tmp, 'cacerts.pem'), certs[0])

    def check_leaf(self, leaf, csr_path, t0, t1, server_auth=False, san=None):
        # Verifies against the CA that /cacerts publishes.
        cv = fx.verify(self.cacerts_pem(), leaf)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        serial = fx.x509_field(leaf, '-serial').split('=', 1)[1]
        self.assertRegex(serial, r'^[0-9A-F]{32}$', 'serial must be 16 bytes')
        self.assertLess(int(serial[:2], 16), 0x80, 'serial must be positive without a pad byte')
        nb = not_time(fx.x509_field(leaf, '-startdate').split('=', 1)[1])
        na = not_time(fx.x509_field(leaf, '-enddate').split('=', 1)[1])
        self.assertGreaterEqual(nb, int(t0) - 300 - 2, 'notBefore back-dated by ~300 s')
        self.assertLessEqual(nb, int(t1) - 300 + 2, 'notBefore back-dated by ~300 s')
        self.assertAlmostEqual(na - (nb + 300), 730 * 86400, delta=5)
        text = fx.x509_text(leaf)
        self.assertRegex(text, r'X509v3 Key Usage: critical\s*\n\s*Digital Signature, Key Encipherment\s*\n')
        m = re.search(r'X509v3 Extended Key Usage:.*?\n\s*(.*?)\n', text)
        self.assertIsNotNone(m, 'EKU missing')
        ekus = sorted(x.strip() for x in m.group(1).split(','))
        want = ['TLS Web Client Authentication'] + (['TLS Web Server Authentication'] if server_auth else [])
        self.assertEqual(ekus, sorted(want))
        self.assertRegex(text, r'X509v3 Basic Constraints: critical\s*\n\s*CA:FALSE')
        ski = re.search(r'X509v3 Subject Key Identifier:\s*\n\s*([0-9A-F:]+)', text)
        aki = re.search(r'X509v3 Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)', text)
        self.assertIsNotNone(ski, 'SKI missing')
        self.assertIsNotNone(aki, 'AKI missing')
        ca_ski = re.search(r'X509v3 Subject Key Identifier:\s*\n\s*([0-9A-F:]+)', fx.x509_text(self.d.ca_path))
        self.assertEqual(aki.group(1), ca_ski.group(1), 'AKI must be the CA SKI')
        leaf_subj = fx.x509_field(leaf, '-subject', '-nameopt', 'RFC2253')
        csr_subj = fx.openssl('req', '-inform', 'DER', '-in', csr_path, '-noout', '-subject',
                              '-nameopt', 'RFC2253').stdout.decode().strip()
        self.assertEqual(leaf_subj, csr_subj)
        if san is None:
            self.assertNotIn('Subject Alternative Name', text)
        else:
            self.assertRegex(text, r'X509v3 Subject Alternative Name:.*\n\s*%s\s*\n' % re.escape(san))


class TestEnrollDefault(EnrollBase):
    """A daemon with default settings."""

    def test_cacerts_is_the_ca(self):
        r = fx.curl(self.d, 'cacerts')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('content-type'), fx.P7_TYPE)
        self.assertEqual(r.header('content-transfer-encoding'), 'base64')
        pem = self.cacerts_pem()
        a = fx.openssl('x509', '-in', pem, '-outform', 'DER').stdout
        b = fx.openssl('x509', '-in', self.d.ca_path, '-outform', 'DER').stdout
        self.assertEqual(a, b, '/cacerts must publish DATA/ca.crt')

    def test_ca_certificate_profile(self):
        text = fx.x509_text(self.d.ca_path)
        self.assertRegex(text, r'X509v3 Basic Constraints: critical\s*\n\s*CA:TRUE, pathlen:0\s*\n')
        m = re.search(r'X509v3 Key Usage: critical\s*\n\s*(.*?)\n', text)
        self.assertIsNotNone(m, 'CA keyUsage missing or not critical')
        ku = set(x.strip() for x in m.group(1).split(','))
        # Digital Signature + Certificate Sign required; cx_ca.c adds CRL Sign on purpose.
        self.assertTrue({'Digital Signature', 'Certificate Sign'} <= ku, ku)
        self.assertTrue(ku <= {'Digital Signature', 'Certificate Sign', 'CRL Sign'}, ku)
        self.assertIn('X509v3 Subject Key Identifier', text)
        self.assertIn('CN = Stampede Local CA', text)
        cv = fx.verify(self.d.ca_path, self.d.ca_path)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)

    def test_enroll_rsa2048_curl(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('rsa2048', '/C=US/O=Acme Phones/OU=Lab/CN=SEP74A02FC0A675')
        self.check_leaf(leaf, csr, t0, t1)
        self.assertIn('Public-Key: (2048 bit)', fx.x509_text(leaf))

    def test_enroll_p256_curl(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('ec256', '/CN=SEP001122334455')
        self.check_leaf(leaf, csr, t0, t1)
        self.assertIn('NIST CURVE: P-256', fx.x509_text(leaf))

    def test_enroll_p256_python(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('ec256', '/O=Py/CN=py-client', client='python')
        self.check_leaf(leaf, csr, t0, t1)

    def test_san_not_copied_by_default(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('ec256', '/CN=san-default', addext='subjectAltName=DNS:x.example')
        self.check_leaf(leaf, csr, t0, t1, san=None)

    def test_csrattrs_204_by_default(self):
        r = fx.curl(self.d, 'csrattrs')
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b'')

    def test_openssl_s_client_enroll(self):
        key = fx.gen_key(os.path.join(self.tmp, 'sc.key'), 'ec256')
        csr = fx.make_csr(key, '/CN=SEPAABBCCDDEEFF', os.path.join(self.tmp, 'sc.csr'))
        body = fx.b64(csr)
        req = fx.raw_request('POST', fx.EST + 'simpleenroll', [
            'Authorization: ' + fx.basic('est', self.d.password),
            'Content-Type: application/pkcs10', 'Content-Transfer-Encoding: base64',
            'Content-Length: %d' % len(body), 'Connection: close'], body)
        cp = fx.openssl('s_client', '-quiet', '-connect', '127.0.0.1:%d' % self.d.port,
                        '-CAfile', self.d.ca_path, '-verify_return_error', input=req, timeout=60)
        raw = cp.stdout
        head, sep, payload = raw.partition(b'\r\n\r\n')
        self.assertTrue(sep, 'no HTTP response from s_client: %r' % raw[:300])
        status, headers = fx.parse_header_block(head.decode('latin-1'))
        r = fx.Resp(status, headers, payload)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('content-type'), fx.P7_TYPE)
        self.assertEqual(r.header('content-transfer-encoding'), 'base64')
        self.assertEqual(r.header('connection'), 'close')
        self.assertEqual(int(r.header('content-length')), len(payload))
        certs = fx.p7_to_pem(payload, self.tmp, 'sc')
        self.assertEqual(len(certs), 1)
        leaf = fx.write(os.path.join(self.tmp, 'sc.pem'), certs[0])
        cv = fx.verify(self.d.ca_path, leaf)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        self.assertIn('CN = SEPAABBCCDDEEFF', fx.x509_field(leaf, '-subject'))

    def test_expect_100_continue(self):
        key = fx.gen_key(os.path.join(self.tmp, 'ex.key'), 'ec256')
        body = fx.b64(fx.make_csr(key, '/CN=expect', os.path.join(self.tmp, 'ex.csr')))
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('POST', fx.EST + 'simpleenroll', [
                'Authorization: ' + fx.basic('est', self.d.password), 'Content-Type: application/pkcs10',
                'Content-Transfer-Encoding: base64', 'Content-Length: %d' % len(body),
                'Expect: 100-continue']))
            r = fx.read_response(s, timeout=10)
            self.assertEqual(r.status, 100, r)
            self.assertEqual(r.extra, b'', 'nothing may follow 100 Continue before the body is sent')
            s.sendall(body)
            r2 = fx.read_response(s)
            self.assertEqual(r2.status, 200, r2)
            self.assertEqual(r2.header('content-type'), fx.P7_TYPE)
            self.assertEqual(len(fx.p7_to_pem(r2.body, self.tmp, 'ex')), 1)
        finally:
            s.close()

    def test_keep_alive_cacerts_then_enroll(self):
        key = fx.gen_key(os.path.join(self.tmp, 'ka.key'), 'ec256')
        csr = fx.make_csr(key, '/CN=keep-alive', os.path.join(self.tmp, 'ka.csr'))
        conn = fx.https_conn(self.d)
        try:
            r1 = fx.http_request(conn, 'GET', fx.EST + 'cacerts')
            self.assertEqual(r1.status, 200, r1)
            self.assertIsNone(r1.header('connection'), 'server must keep the connection open')
            sock1 = conn.sock
            self.assertIsNotNone(sock1, 'http.client closed the connection after /cacerts')
            r2 = fx.http_request(conn, 'POST', fx.EST + 'simpleenroll', fx.b64(csr), {
                'Authorization': fx.basic('est', self.d.password),
                'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64'})
            self.assertIs(conn.sock, sock1, 'second request did not reuse the connection')
            self.assertEqual(r2.status, 200, r2)
            self.assertEqual(r2.header('content-type'), fx.P7_TYPE)
            self.assertEqual(len(fx.p7_to_pem(r2.body, self.tmp, 'ka')), 1)
            # A third request on the same connection still works.
            r3 = fx.http_request(conn, 'GET', fx.EST + 'csrattrs')
            self.assertIs(conn.sock, sock1)
            self.assertEqual(r3.status, 204, r3)
        finally:
            conn.close()


class TestEnrollPolicy(EnrollBase):
    """A daemon with --leaf-server-auth true --leaf-copy-san true --csrattrs."""
    DAEMON_ARGS = ('--leaf-server-auth', 'true', '--leaf-copy-san', 'true',
                   '--csrattrs', '1.2.840.113549.1.9.7,1.2.840.10045.4.3.2')

    def test_server_auth_and_san_copied(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('ec256', '/CN=x.example', addext='subjectAltName=DNS:x.example')
        self.check_leaf(leaf, csr, t0, t1, server_auth=True, san='DNS:x.example')

    def test_no_san_in_csr_no_san_in_leaf(self):
        leaf, _, csr, t0, t1 = self.enroll_checked('rsa2048', '/CN=no-san')
        self.check_leaf(leaf, csr, t0, t1, server_auth=True, san=None)

    def test_csrattrs_oids(self):
        r = fx.curl(self.d, 'csrattrs')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('content-type'), 'application/csrattrs')
        self.assertEqual(r.header('content-transfer-encoding'), 'base64')
        der = fx.base64.b64decode(r.body)
        path = fx.write(os.path.join(self.tmp, 'attrs.der'), der)
        out = fx.openssl('asn1parse', '-inform', 'DER', '-in', path).stdout.decode()
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertRegex(lines[0], r'^\s*0:d=0\s+hl=\d+\s+l=\s*\d+\s+cons: SEQUENCE')
        self.assertEqual(len(lines), 3, out)
        self.assertRegex(lines[1], r'd=1 .*prim: OBJECT\s+:challengePassword')
        self.assertRegex(lines[2], r'd=1 .*prim: OBJECT\s+:ecdsa-with-SHA256')
        self.assertEqual(der_oids(der), ['1.2.840.113549.1.9.7', '1.2.840.10045.4.3.2'])


if __name__ == '__main__':
    fx.main()
