"""EST authentication: HTTP Basic (the generated 'est' user and an
--est-users file with `openssl passwd -6` hashes), TLS client certificates
issued by our CA (simpleenroll and simplereenroll, RFC 7030 4.2.2 subject
rule), and manufacturer CAs trusted only through --client-ca."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402


class AuthMixin:
    def csr(self, cn, kind='ec256', name=None):
        name = name or cn.replace('/', '_')
        key = fx.gen_key(os.path.join(self.tmp, name + '.key'), kind)
        der = fx.make_csr(key, '/CN=%s' % cn, os.path.join(self.tmp, name + '.csr'))
        return key, der

    def assert_401(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertRegex(r.header('www-authenticate', ''), r'^Basic( |$)')
        self.assertEqual(r.header('content-type'), 'text/plain')
        self.assertTrue(r.body.strip(), 'a 401 carries a reason')

    def enrolled_cert(self, cn):
        """enrolled_cert enrolls `cn` with Basic auth; returns (cert, key)."""
        key, der = self.csr(cn)
        r = fx.curl_enroll(self.d, der)
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, cn)
        return fx.write(os.path.join(self.tmp, cn + '.crt'), certs[0]), key

    def leaf_subject(self, r, name):
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, name)
        self.assertEqual(len(certs), 1)
        path = fx.write(os.path.join(self.tmp, name + '.pem'), certs[0])
        cv = fx.verify(self.d.ca_path, path)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        return fx.x509_field(path, '-subject', '-nameopt', 'RFC2253').partition('subject=')[2]


class TestBasicAuth(AuthMixin, fx.SharedDaemonTestCase):
    def test_no_credentials_401(self):
        _, der = self.csr('nocreds')
        r = fx.curl_enroll(self.d, der, user=None)
        self.assert_401(r)

    def test_wrong_password_401(self):
        _, der = self.csr('wrongpw')
        self.assert_401(fx.curl_enroll(self.d, der, password=self.d.password + 'x'))
        self.assert_401(fx.curl_enroll(self.d, der, password=''))

    def test_unknown_user_401(self):
        _, der = self.csr('unknownuser')
        self.assert_401(fx.curl_enroll(self.d, der, user='mallory', password=self.d.password))

    def test_malformed_basic_401(self):
        _, der = self.csr('malformed')
        for auth in ('Basic !!!notbase64!!!', 'Basic ' + fx.base64.b64encode(b'no-colon').decode(),
                     'Bearer abc'):
            r = fx.curl(self.d, 'simpleenroll', data=fx.b64(der),
                        headers=fx.enroll_headers() + ['Authorization: ' + auth])
            self.assert_401(r)

    def test_correct_password_200(self):
        _, der = self.csr('goodpw')
        self.assertEqual(self.leaf_subject(fx.curl_enroll(self.d, der), 'goodpw'), 'CN=goodpw')

    def test_client_cert_of_our_ca_authenticates_simpleenroll(self):
        cert, key = self.enrolled_cert('SEP000000000001')
        _, der = self.csr('SEP000000000002')
        r = fx.curl_enroll(self.d, der, user=None, cert=cert, key=key)
        self.assertEqual(self.leaf_subject(r, 'byclientcert'), 'CN=SEP000000000002')

    def test_reenroll_same_subject_200(self):
        cert, key = self.enrolled_cert('SEP0A0B0C0D0E0F')
        _, der = self.csr('SEP0A0B0C0D0E0F', kind='rsa2048', name='reenroll-new')
        r = fx.curl_enroll(self.d, der, op='simplereenroll', user=None, cert=cert, key=key)
        self.assertEqual(self.leaf_subject(r, 'reenrolled'), 'CN=SEP0A0B0C0D0E0F')

    def test_reenroll_with_basic_and_cert_200(self):
        cert, key = self.enrolled_cert('SEP0A0B0C0D0E10')
        _, der = self.csr('SEP0A0B0C0D0E10', name='reenroll-basic-new')
        r = fx.curl_enroll(self.d, der, op='simplereenroll', cert=cert, key=key)
        self.assertEqual(self.leaf_subject(r, 'reenrolled2'), 'CN=SEP0A0B0C0D0E10')

    def test_reenroll_different_subject_403(self):
        cert, key = self.enrolled_cert('SEP111111111111')
        _, der = self.csr('SEP222222222222')
        r = fx.curl_enroll(self.d, der, op='simplereenroll', user=None, cert=cert, key=key)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.header('content-type'), 'text/plain')

    def test_reenroll_without_client_cert(self):
        _, der = self.csr('SEP333333333333')
        # Basic credentials but no certificate: forbidden (RFC 7030 4.2.2).
        r = fx.curl_enroll(self.d, der, op='simplereenroll')
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.header('content-type'), 'text/plain')
        # No authentication at all: 401 with a challenge.
        self.assert_401(fx.curl_enroll(self.d, der, op='simplereenroll', user=None))

    def test_foreign_client_cert_not_trusted(self):
        ca, cakey = fx.foreign_ca(self.tmp, 'untrusted')
        cert, key = fx.foreign_client_cert(self.tmp, ca, cakey, 'SEP444444444444')
        _, der = self.csr('SEP444444444444', name='foreign-csr')
        self.assert_401(fx.curl_enroll(self.d, der, user=None, cert=cert, key=key))
        # With Basic credentials the untrusted certificate does not get in the way.
        r = fx.curl_enroll(self.d, der, cert=cert, key=key)
        self.assertEqual(r.status, 200, r)
        # And it is not good enough for simplereenroll.
        r = fx.curl_enroll(self.d, der, op='simplereenroll', cert=cert, key=key)
        self.assertEqual(r.status, 403, r)


class TestUsersFile(AuthMixin, fx.DaemonTestCase):
    def test_est_users_file_with_sha512_crypt(self):
        h1 = fx.openssl('passwd', '-6', 'alice-secret').stdout.decode().strip()
        h2 = fx.openssl('passwd', '-6', 'bob:pw with spaces').stdout.decode().strip()
        self.assertTrue(h1.startswith('$6$'))
        users = fx.write(os.path.join(self.tmp, 'users'),
                         '# test users\nalice:%s\n\nbob:%s\n' % (h1, h2))
        self.d = self.daemon(['--est-users', users])
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, 'est-initial-password')),
                         'no initial password when --est-users is given')
        _, der = self.csr('SEP555555555555')
        r = fx.curl_enroll(self.d, der, user='alice', password='alice-secret')
        self.assertEqual(self.leaf_subject(r, 'alice'), 'CN=SEP555555555555')
        r = fx.curl_enroll(self.d, der, user='bob', password='bob:pw with spaces')
        self.assertEqual(r.status, 200, r)
        self.assert_401(fx.curl_enroll(self.d, der, user='alice', password='alice-secreT'))
        self.assert_401(fx.curl_enroll(self.d, der, user='est', password='alice-secret'))
        self.assert_401(fx.curl_enroll(self.d, der, user=None))
        # The same credentials again (the per-worker cache) still work, wrong ones still fail.
        for _ in range(3):
            self.assertEqual(fx.curl_enroll(self.d, der, user='alice', password='alice-secret').status, 200)
            self.assert_401(fx.curl_enroll(self.d, der, user='alice', password='wrong'))
        self.d.stop()


class TestClientCA(AuthMixin, fx.DaemonTestCase):
    def test_client_ca_trusts_manufacturer_certificates(self):
        ca, cakey = fx.foreign_ca(self.tmp, 'vendor')
        cert, key = fx.foreign_client_cert(self.tmp, ca, cakey, 'SEP666666666666')
        other_ca, other_key = fx.foreign_ca(self.tmp, 'other')
        other_cert, other_ckey = fx.foreign_client_cert(self.tmp, other_ca, other_key, 'SEP777777777777',
                                                        name='other-client')
        self.d = self.daemon(['--client-ca', ca])
        _, der = self.csr('SEP666666666666')
        r = fx.curl_enroll(self.d, der, user=None, cert=cert, key=key)
        self.assertEqual(self.leaf_subject(r, 'vendor-enrolled'), 'CN=SEP666666666666')
        # A manufacturer certificate is not one of ours: no simplereenroll.
        r = fx.curl_enroll(self.d, der, op='simplereenroll', user=None, cert=cert, key=key)
        self.assertEqual(r.status, 403, r)
        # A CA that is not in the bundle is still not trusted.
        _, der7 = self.csr('SEP777777777777')
        self.assert_401(fx.curl_enroll(self.d, der7, user=None, cert=other_cert, key=other_ckey))
        # Our own CA stays trusted next to the bundle.
        own_cert, own_key = self.enrolled_cert('SEP888888888888')
        _, der8 = self.csr('SEP888888888888', name='own-re')
        r = fx.curl_enroll(self.d, der8, op='simplereenroll', user=None, cert=own_cert, key=own_key)
        self.assertEqual(r.status, 200, r)
        self.d.stop()

    def test_client_ca_unreadable_fails_start(self):
        d = self.daemon(['--client-ca', os.path.join(self.tmp, 'missing.pem')], start=False)
        with self.assertRaises(AssertionError) as cm:
            d.start()
        self.assertIn('client_ca', str(cm.exception))
        self.assertNotEqual(d.returncode, 0)
        d.assert_clean()


if __name__ == '__main__':
    fx.main()
