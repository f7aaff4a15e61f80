"""TLS with the openssl CLI as client: TLS 1.3 and 1.2 by default, older
versions refused; an RSA server key (ECDHE-RSA, TLS 1.3 RSA-PSS, PKCS#1
signatures, all through the offloaded key); and the legacy mode for old
phones (TLS 1.0 with RSA key exchange, which exercises the offloaded RSA
decrypt) carrying a real HTTP request."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

CACERTS_GET = fx.raw_request('GET', fx.EST + 'cacerts', ['Connection: close'])


def s_client(d, *args, input=b'', brief=True):
    """s_client runs `openssl s_client` against daemon `d`, verifying the
    server certificate (CA file + IP); returns (returncode, combined output)."""
    cmd = ['s_client', '-connect', '127.0.0.1:%d' % d.port, '-CAfile', d.ca_path,
           '-verify_return_error', '-verify_ip', '127.0.0.1']
    if brief:
        cmd.append('-brief')
    cp = fx.openssl(*(cmd + list(args)), input=input, timeout=60, check=False)
    return cp.returncode, cp.stdout.decode(errors='replace') + cp.stderr.decode(errors='replace')


def client_cannot(out):
    """client_cannot: the local openssl refused to offer the version itself."""
    return 'no protocols available' in out or 'unsupported protocol' in out.lower() and 'alert' not in out


class TLSMixin:
    def assert_handshake(self, rc, out, proto, cipher=None):
        self.assertEqual(rc, 0, out)
        self.assertIn('CONNECTION ESTABLISHED', out)
        self.assertRegex(out, r'Protocol version: %s\b' % re.escape(proto))
        self.assertIn('Verification: OK', out)
        if cipher:
            self.assertRegex(out, r'Ciphersuite: %s\b' % re.escape(cipher))

    def assert_refused(self, rc, out, what):
        self.assertNotEqual(rc, 0, '%s must be refused:\n%s' % (what, out))
        self.assertNotIn('CONNECTION ESTABLISHED', out)

    def get_cacerts_over(self, *args):
        """get_cacerts_over: s_client with `args`, an HTTP GET of /cacerts on
        stdin; returns (rc, output) where output has the session summary and
        the HTTP response."""
        return s_client(self.d, '-ign_eof', *args, input=CACERTS_GET, brief=False)

    def assert_http_200(self, out):
        self.assertRegex(out, r'HTTP/1\.1 200 OK\r?\n')
        self.assertIn('Content-Type: ' + fx.P7_TYPE, out)


class TestDefaultTLS(TLSMixin, fx.SharedDaemonTestCase):

    def test_tls13(self):
        rc, out = s_client(self.d, '-tls1_3')
        self.assert_handshake(rc, out, 'TLSv1.3')
        self.assertIn('Peer certificate: O = Stampede, CN = localhost', out)
        self.assertIn('Signature type: ECDSA', out)

    def test_tls13_each_suite(self):
        for suite in ('TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'):
            rc, out = s_client(self.d, '-tls1_3', '-ciphersuites', suite)
            self.assert_handshake(rc, out, 'TLSv1.3', suite)

    def test_tls12(self):
        rc, out = s_client(self.d, '-tls1_2')
        self.assert_handshake(rc, out, 'TLSv1.2')
        self.assertRegex(out, r'Ciphersuite: ECDHE-ECDSA-')
        rc, out = s_client(self.d, '-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305')
        self.assert_handshake(rc, out, 'TLSv1.2', 'ECDHE-ECDSA-CHACHA20-POLY1305')

    def test_tls12_http(self):
        rc, out = self.get_cacerts_over('-tls1_2')
        self.assertEqual(rc, 0, out)
        self.assert_http_200(out)

    def test_tls11_and_tls10_refused(self):
        for flag, name in (('-tls1_1', 'TLS 1.1'), ('-tls1', 'TLS 1.0')):
            rc, out = s_client(self.d, flag, '-cipher', 'DEFAULT@SECLEVEL=0')
            self.assert_refused(rc, out, name)
            if not client_cannot(out):
                self.assertIn('alert protocol version', out, out)

    def test_rsa_key_exchange_refused_by_default(self):
        rc, out = s_client(self.d, '-tls1_2', '-cipher', 'AES128-SHA:AES256-SHA:AES128-GCM-SHA256')
        self.assert_refused(rc, out, 'RSA key exchange')

    def test_server_certificate(self):
        text = fx.x509_text(os.path.join(self.d.data_dir, 'tls.crt'))
        self.assertRegex(text, r'DNS:localhost, IP Address:127\.0\.0\.1')
        self.assertIn('TLS Web Server Authentication', text)
        cv = fx.verify(self.d.ca_path, os.path.join(self.d.data_dir, 'tls.crt'))
        self.assertEqual(cv.returncode, 0)


class TestRSAServerKey(TLSMixin, fx.SharedDaemonTestCase):
    DAEMON_ARGS = ('--tls-key', 'rsa2048')

    def test_ecdhe_rsa_tls12(self):
        for cipher in ('ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384',
                       'ECDHE-RSA-CHACHA20-POLY1305'):
            rc, out = s_client(self.d, '-tls1_2', '-cipher', cipher)
            self.assert_handshake(rc, out, 'TLSv1.2', cipher)
            self.assertRegex(out, r'Signature type: RSA')

    def test_tls12_pkcs1_and_pss_signatures(self):
        for sigalg, sigtype in (('RSA+SHA256', 'RSA'), ('RSA+SHA384', 'RSA'), ('RSA-PSS+SHA256', 'RSA-PSS'),
                                ('rsa_pss_rsae_sha512', 'RSA-PSS')):
            rc, out = s_client(self.d, '-tls1_2', '-sigalgs', sigalg)
            self.assert_handshake(rc, out, 'TLSv1.2')
            self.assertRegex(out, r'Signature type: %s\n' % re.escape(sigtype), sigalg)

    def test_tls13_rsa(self):
        rc, out = s_client(self.d, '-tls1_3')
        self.assert_handshake(rc, out, 'TLSv1.3')
        self.assertIn('Signature type: RSA-PSS', out)
        rc, out = s_client(self.d, '-tls1_3', brief=False)
        self.assertIn('Server public key is 2048 bit', out)

    def test_enroll_over_rsa_server_key(self):
        key = fx.gen_key(os.path.join(self.tmp, 'r.key'))
        csr = fx.make_csr(key, '/CN=rsa-server', os.path.join(self.tmp, 'r.csr'))
        r = fx.curl_enroll(self.d, csr)
        self.assertEqual(r.status, 200, r)
        rc, out = self.get_cacerts_over('-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256')
        self.assertEqual(rc, 0, out)
        self.assert_http_200(out)


class TestLegacyTLS(TLSMixin, fx.SharedDaemonTestCase):
    DAEMON_ARGS = ('--tls-legacy', 'true', '--tls-min', '1.0', '--tls-key', 'rsa2048')

    def legacy(self, flag, cipher):
        rc, out = self.get_cacerts_over(flag, '-cipher', cipher + '@SECLEVEL=0')
        if rc != 0 and client_cannot(out):
            self.skipTest('local openssl refuses %s even at SECLEVEL=0: %s' % (
                flag, out.strip().splitlines()[-1] if out.strip() else '?'))
        return rc, out

    def test_tls10_rsa_key_exchange_http(self):
        rc, out = self.legacy('-tls1', 'AES128-SHA')
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r'Protocol\s*: TLSv1\n')
        self.assertRegex(out, r'Cipher\s*: AES128-SHA\n')
        self.assertIn('Server public key is 2048 bit', out)
        self.assert_http_200(out)

    def test_tls11_rsa_key_exchange_http(self):
        rc, out = self.legacy('-tls1_1', 'AES256-SHA')
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r'Protocol\s*: TLSv1\.1\n')
        self.assertRegex(out, r'Cipher\s*: AES256-SHA\n')
        self.assert_http_200(out)

    def test_tls12_rsa_key_exchange_http(self):
        rc, out = self.get_cacerts_over('-tls1_2', '-cipher', 'AES128-SHA')
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r'Cipher\s*: AES128-SHA\n')
        self.assert_http_200(out)

    def test_tls10_many_decrypts(self):
        """Twenty RSA-key-exchange handshakes in a row (each one offloaded decrypt)."""
        for _ in range(20):
            rc, out = self.legacy('-tls1', 'AES128-SHA')
            self.assertEqual(rc, 0, out)
            self.assert_http_200(out)

    def test_modern_clients_still_work(self):
        rc, out = s_client(self.d, '-tls1_3')
        self.assert_handshake(rc, out, 'TLSv1.3')
        rc, out = s_client(self.d, '-tls1_2')
        self.assert_handshake(rc, out, 'TLSv1.2')
        self.assertRegex(out, r'Ciphersuite: ECDHE-RSA-')


class TestVersionBounds(TLSMixin, fx.DaemonTestCase):

    def test_tls_min_13(self):
        self.d = self.daemon(['--tls-min', '1.3'])
        self.assert_refused(*s_client(self.d, '-tls1_2'), what='TLS 1.2 with tls_min 1.3')
        self.assert_handshake(*s_client(self.d, '-tls1_3'), proto='TLSv1.3')
        self.d.stop()

    def test_tls_max_12(self):
        self.d = self.daemon(['--tls-max', '1.2'])
        self.assert_refused(*s_client(self.d, '-tls1_3'), what='TLS 1.3 with tls_max 1.2')
        self.assert_handshake(*s_client(self.d), proto='TLSv1.2')
        self.d.stop()

    def test_bad_tls_settings_refuse_to_start(self):
        for args, word in ((['--tls-min', '1.0'], 'tls_legacy'), (['--tls-min', '1.5'], 'tls_min'),
                           (['--tls-max', '1.1'], 'tls_max'), (['--tls-ciphers', 'NOT-A-CIPHER'], 'tls_ciphers'),
                           (['--tls-key', 'dsa1024'], 'tls_key')):
            d = self.daemon(args, start=False, name='bad%d' % len(word))
            with self.assertRaises(AssertionError):
                d.start()
            self.assertNotEqual(d.returncode, 0, args)
            self.assertIn(word, d.stderr(), args)
            d.assert_clean()


if __name__ == '__main__':
    fx.main()
