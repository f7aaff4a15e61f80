"""Restart and on-disk state: a restart on the same data directory keeps the
CA (byte-identical ca.crt and /cacerts), the TLS certificate and the EST
user; earlier certificates still verify. File modes: data directory 0700,
keys and the initial password 0600. An RSA CA (--ca-key rsa2048) works."""
import os
import stat
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class TestRestart(fx.DaemonTestCase):

    def enroll(self, d, cn, kind='ec256'):
        key = fx.gen_key(os.path.join(self.tmp, cn + '.key'), kind)
        csr = fx.make_csr(key, '/CN=' + cn, os.path.join(self.tmp, cn + '.csr'))
        r = fx.curl_enroll(d, csr)
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, cn)
        self.assertEqual(len(certs), 1)
        return fx.write(os.path.join(self.tmp, cn + '.pem'), certs[0])

    def cacerts(self, d, name):
        r = fx.curl(d, 'cacerts')
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, name)
        return r.body, fx.write(os.path.join(self.tmp, name + '.pem'), certs[0])

    def test_restart_keeps_ca_and_users(self):
        d = self.daemon()
        dd = d.data_dir
        pidfile = os.path.join(dd, 'stampeded.pid')
        self.assertEqual(read(pidfile).decode().strip(), str(d.proc.pid))
        before = {n: read(os.path.join(dd, n)) for n in
                  ('ca.crt', 'ca.key', 'tls.crt', 'tls.key', 'est-users', 'est-initial-password')}
        body1, ca1 = self.cacerts(d, 'cacerts1')
        leaf = self.enroll(d, 'SEP100000000001')
        d.stop()
        self.assertFalse(os.path.exists(pidfile), 'pid file removed on exit')

        d.start()   # same data dir, same port
        for n, data in before.items():
            self.assertEqual(read(os.path.join(dd, n)), data, '%s changed across a restart' % n)
        self.assertIn('stampeded 0.1.0: EST on', d.stderr())
        self.assertNotIn('generated local CA', d.stderr(), 'restart must not generate a new CA')
        self.assertNotIn('created EST user', d.stderr())
        body2, ca2 = self.cacerts(d, 'cacerts2')
        self.assertEqual(body1, body2, '/cacerts changed across a restart')
        cv = fx.verify(ca2, leaf)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        # The same initial password still works and new certificates chain to the same CA.
        leaf2 = self.enroll(d, 'SEP100000000002')
        cv = fx.verify(ca1, leaf2)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        d.stop()

    def test_restart_ignores_new_ca_key_type_for_existing_ca(self):
        d = self.daemon()
        ca = read(d.ca_path)
        d.stop()
        d.args = ['--ca-key', 'rsa2048']
        d.start()
        self.assertEqual(read(d.ca_path), ca, 'an existing CA is kept whatever --ca-key says')
        self.enroll(d, 'SEP100000000003')
        d.stop()

    def test_file_modes(self):
        d = self.daemon()
        dd = d.data_dir
        self.assertEqual(mode(dd), 0o700)
        for n in ('ca.key', 'tls.key', 'est-initial-password', 'est-users'):
            self.assertEqual(mode(os.path.join(dd, n)), 0o600, n)
        for n in ('ca.crt', 'tls.crt'):
            self.assertEqual(mode(os.path.join(dd, n)) & 0o022, 0, n + ' must not be writable by others')
        d.stop()

    def test_existing_open_data_dir_is_tightened(self):
        dd = os.path.join(self.tmp, 'open-data')
        os.mkdir(dd, 0o755)
        os.chmod(dd, 0o755)
        d = self.daemon(data_dir=dd)
        self.assertEqual(mode(dd), 0o700)
        self.assertIn('set to 0700', d.stderr())
        d.stop()

    def test_rsa_ca(self):
        d = self.daemon(['--ca-key', 'rsa2048'])
        text = fx.x509_text(d.ca_path)
        self.assertIn('Public Key Algorithm: rsaEncryption', text)
        self.assertIn('Public-Key: (2048 bit)', text)
        self.assertRegex(text, r'CA:TRUE, pathlen:0')
        cv = fx.verify(d.ca_path, d.ca_path)
        self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        for kind in ('ec256', 'rsa2048'):
            leaf = self.enroll(d, 'rsa-ca-' + kind, kind)
            self.assertRegex(fx.x509_text(leaf), r'Signature Algorithm: sha256WithRSAEncryption')
            cv = fx.verify(d.ca_path, leaf)
            self.assertEqual(cv.returncode, 0, cv.stdout + cv.stderr)
        _, ca = self.cacerts(d, 'rsa-cacerts')
        self.assertEqual(fx.openssl('x509', '-in', ca, '-outform', 'DER').stdout,
                         fx.openssl('x509', '-in', d.ca_path, '-outform', 'DER').stdout)
        d.stop()
        # And it survives a restart too.
        ca_bytes = read(d.ca_path)
        d.start()
        self.assertEqual(read(d.ca_path), ca_bytes)
        self.enroll(d, 'rsa-ca-after-restart')
        d.stop()


if __name__ == '__main__':
    fx.main()
