#!/usr/bin/env python3
"""test_online: the online CA mode end to end, every piece a real process:
EST clients (Python ssl, curl) -> stampeded --ca-mode online -> its embedded
Redis -> stampede-control -> the ADCS web-enrollment emulator
(tests/certsrv/adcs_emulator.py). The certificates must be signed by the
emulator's CA, not by stampeded's.

Covered here: an EST enrollment answered in the same response; a slow
upstream answered 202 + Retry-After and the retry of the same CSR getting
the certificate (RFC 7030 4.2.3); manager approval (pending at the CA) then
issued; a denial by the CA (template) reaching the client as 403 with the
cause; a registry device's status; the emulator unreachable, then back
(requests stay pending with the cause, then complete); /cacerts serving the
upstream chain; `stampedectl doctor` through stampede-control.
CAPF through the same path is in test_capf_online.py (stampede-control
played by the test) and here (real stampede-control) when the emulator
accepts requests signed by the CAPF.

127.0.0.1 only; secrets generated at test time; bounded waits; every
process stopped or killed on the way out.
"""
import base64
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'certsrv'))

from cryptography import x509                                        # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization    # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding   # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7      # noqa: E402
from cryptography.x509.oid import NameOID                           # noqa: E402

import adcs_fixture as adcs                                          # noqa: E402
import stampede_fixture as fx                                        # noqa: E402
import test_control as tc                                            # noqa: E402

BOUND = 30.0
STAMPEDECTL = os.environ.get('STAMPEDECTL') or os.path.join(fx.BUILD_ROOT, 'ra', 'stampedectl')


def p7_certs(body):
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))


class OnlineBase(unittest.TestCase):
    """One emulator (behind the test's forwarder, so 'down' is a refused
    connection), one stampeded --ca-mode online with its embedded Redis, one
    stampede-control on that Redis."""

    wait_ms = 8000
    extra_emulator = ()
    extra_stampeded = ()
    trust_capf = False

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='online-it-')
        cls.emu = cls.fwd = cls.ctl = cls.d = None
        try:
            cls.d = fx.Daemon(cls.tmp, args=['--ca-mode', 'online', '--online-wait-ms', str(cls.wait_ms),
                                              '--online-retry-after', '2', '--cores', '1'] +
                              list(cls.extra_stampeded))
            cls.d.start()
            emu_args = ['--template', 'Manual:manual'] + list(cls.extra_emulator)
            if cls.trust_capf:  # the CA takes requests the CAPF signs (docs/redis-schema.md)
                emu_args += ['--ra-cert', cls.d.ca_path]
            cls.emu = adcs.Emulator(cls.tmp, args=emu_args).start()
            cls.fwd = tc.Forwarder(cls.emu.port).up()
            cls.pwfile = adcs.secret_file(os.path.join(cls.tmp, 'upstream-password'), cls.emu.password)
            cls.settings = dict(
                data_dir=cls.d.data_dir, certsrv_url='https://%s:%d/certsrv' % (adcs.HOST, cls.fwd.port),
                resolve='%s:%d:127.0.0.1' % (adcs.HOST, cls.fwd.port), ca_bundle=cls.emu.ready['tls_root'],
                auth='ntlm', user=adcs.QUALIFIED_USER, password_file=cls.pwfile, template='WebServer',
                pool_size=2, connect_timeout_ms=1000, login_timeout_ms=3000, submit_timeout_ms=5000,
                fetch_timeout_ms=3000, retry_min_ms=200, retry_max_ms=1000, poll_pending_s=1,
                claim_idle_ms=2000, chain_refresh_s=2, lease_s=15)
            cls.ctl = tc.Control(cls.tmp, cls.settings).start()
            cls.r = fx.RedisClient(os.path.join(cls.d.data_dir, 'redis.sock'))
            adcs.wait_for(lambda: cls.r.command('HGET', 'stp:ca:upstream', 'chain'), BOUND,
                          'upstream chain published')
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        for p in (cls.ctl, cls.d):
            if p is not None:
                try:
                    p.stop()
                except Exception:
                    p.kill()
        if cls.fwd is not None:
            cls.fwd.down()
        if cls.emu is not None:
            cls.emu.stop()
        if not fx.KEEP:
            fx.rmtree(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        ctl, d = cls.ctl, cls.d
        cls.cleanup()
        for p in (ctl, d):
            if p is not None:
                p.assert_clean()

    def adcs_ca(self):
        with open(self.emu.ready['adcs_root'], 'rb') as f:
            return x509.load_pem_x509_certificates(f.read())

    def assert_from_upstream(self, cert, pub):
        self.assertEqual(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo),
                         pub.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo))
        with open(self.d.ca_path, 'rb') as f:
            local = x509.load_pem_x509_certificate(f.read())
        self.assertNotEqual(cert.issuer, local.subject, 'signed by stampeded, not by the upstream CA')
        chain = p7_certs(self.r.command('HGET', 'stp:ca:upstream', 'chain') and
                         base64.b64encode(self.r.command('HGET', 'stp:ca:upstream', 'chain')))
        issuers = [c for c in chain if c.subject == cert.issuer]
        self.assertTrue(issuers, 'issuer %s not in the published upstream chain' % cert.issuer)
        iss = issuers[0].public_key()
        if hasattr(iss, 'curve'):
            iss.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            iss.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)

    def restart_control(self, template, name):
        """Replaces the class's stampede-control by one using `template`."""
        cls = type(self)
        cls.ctl.stop()
        cls.settings['template'] = template
        cls.ctl = tc.Control(cls.tmp, cls.settings, name=name).start()

    def record(self, identity, der):
        import hashlib
        key = 'stp:req:{%s}:%s' % (identity, hashlib.sha256(der).hexdigest())
        raw = self.r.command('HGETALL', key) or []
        return key, {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}


class TestOnlineEst(OnlineBase):

    def test_01_enroll_same_response(self):
        key, der = adcs.ec_csr('online-est-1')
        seq = len(self.emu.log())
        t0 = time.monotonic()
        r = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
        self.assertEqual(r.status, 200, r.body)
        certs = p7_certs(r.body)
        self.assertEqual(len(certs), 1)
        self.assert_from_upstream(certs[0], key.public_key())
        _, rec = self.record('est', der)
        self.assertEqual(rec['state'], b'issued')
        self.assertEqual(rec['mode'], b'online')
        self.assertTrue(rec['ca_req_id'].isdigit())
        self.assertEqual(rec['cert'], certs[0].public_bytes(serialization.Encoding.DER))
        audit = self.r.command('XREVRANGE', 'stp:audit', '+', '-', 'COUNT', '20')
        events = [dict(zip(e[1][::2], e[1][1::2])) for e in audit]
        self.assertTrue(any(e.get(b'event') == b'issue' and e.get(b'serial') == rec['serial'] for e in events))
        # the upstream saw one submission for this CSR
        sub = [e for e in self.emu.log()[seq:] if e.get('route', '').endswith('certfnsh.asp')
               and e.get('req_id') is not None]
        self.assertEqual(len(sub), 1, sub)
        print('online EST enrollment answered in %.2f s' % (time.monotonic() - t0))

    def test_02_same_csr_again_same_certificate(self):
        key, der = adcs.ec_csr('online-est-2')
        a = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
        b = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
        self.assertEqual((a.status, b.status), (200, 200))
        self.assertEqual(p7_certs(a.body)[0], p7_certs(b.body)[0])

    def test_03_approval_202_then_retry(self):
        """A manual template: the CA holds the request; the client gets 202 +
        Retry-After, and after the officer approves, its retry of the same
        CSR gets the certificate."""
        key, der = adcs.ec_csr('online-est-3')
        self.restart_control('Manual', 'control-manual')
        try:
            t0 = time.monotonic()
            r = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
            self.assertEqual(r.status, 202, r.body)
            self.assertEqual(r.header('Retry-After'), '2')
            self.assertGreaterEqual(time.monotonic() - t0, self.wait_ms / 1000 - 0.5)
            _, rec = adcs.wait_for(lambda: (lambda kr: kr if kr[1].get('ca_state') == b'approval' else None)(
                self.record('est', der)), BOUND, 'record waits for approval')
            rid = int(rec['ca_req_id'])
            self.emu.control('approve', id=rid)
            adcs.wait_for(lambda: self.record('est', der)[1].get('state') == b'issued', BOUND, 'issued after approval')
            r2 = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
            self.assertEqual(r2.status, 200, r2.body)
            self.assert_from_upstream(p7_certs(r2.body)[0], key.public_key())
        finally:
            self.restart_control('WebServer', 'control-2')

    def test_04_denied_by_the_ca(self):
        key, der = adcs.ec_csr('online-est-4')
        self.restart_control('NoSuchTemplate', 'control-badtpl')
        try:
            r = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
            self.assertEqual(r.status, 403, r.body)
            text = r.body.decode()
            self.assertIn('NoSuchTemplate', text)
            self.assertIn('0x80094800', text)
            _, rec = self.record('est', der)
            self.assertEqual(rec['state'], b'rejected')
            self.assertEqual(rec['ca_diag'], b'template')
        finally:
            self.restart_control('WebServer', 'control-3')

    def test_05_upstream_down_then_back(self):
        """The emulator unreachable: the enrollment gets 202, the record stays
        pending naming the cause; when it is back the retry gets the
        certificate."""
        key, der = adcs.ec_csr('online-est-5')
        self.fwd.down()
        try:
            r = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
            self.assertEqual(r.status, 202, r.body)
            _, rec = adcs.wait_for(lambda: (lambda kr: kr if kr[1].get('reason') else None)(
                self.record('est', der)), BOUND, 'pending with a reason')
            self.assertEqual(rec['state'], b'pending')
            self.assertRegex(rec['reason'].decode(), 'connect|refused|reach')
        finally:
            self.fwd.up()
        adcs.wait_for(lambda: self.record('est', der)[1].get('state') == b'issued', BOUND, 'issued once back')
        r2 = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
        self.assertEqual(r2.status, 200, r2.body)
        self.assert_from_upstream(p7_certs(r2.body)[0], key.public_key())

    def test_06_registry_device(self):
        name = 'SEP0A0B0C0D0E0F'
        cp = fx.run([STAMPEDECTL, '--data-dir', self.d.data_dir, 'device', 'add', name, '--op', 'install',
                     '--auth', 'null'])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        key, der = adcs.ec_csr(name)
        r = fx.py_enroll(self.d, der, user=name, password='', timeout=BOUND)
        self.assertEqual(r.status, 200, r.body)
        cert = p7_certs(r.body)[0]
        self.assert_from_upstream(cert, key.public_key())
        show = fx.run([STAMPEDECTL, '--data-dir', self.d.data_dir, 'device', 'show', name]).stdout.decode()
        self.assertRegex(show, r'status\s+success')
        self.assertIn('%x' % cert.serial_number, show.replace(':', '').lower())

    def test_07_doctor(self):
        cp = fx.run([STAMPEDECTL, 'doctor'] + adcs.setting_flags(self.settings), check=False,
                    env=dict(os.environ, STAMPEDE_CONTROL=tc.STAMPEDE_CONTROL))
        out = cp.stdout.decode()
        self.assertEqual(cp.returncode, 0, out + cp.stderr.decode())
        self.assertNotIn('PROBLEM', out)
        self.assertGreaterEqual(len([ln for ln in out.splitlines() if ln.startswith('ok')]), 5, out)
        bad = dict(self.settings, password_file=adcs.secret_file(os.path.join(self.tmp, 'wrong-password'),
                                                                 'not-the-password'))
        cp = fx.run([STAMPEDECTL, 'doctor'] + adcs.setting_flags(bad), check=False,
                    env=dict(os.environ, STAMPEDE_CONTROL=tc.STAMPEDE_CONTROL))
        out = cp.stdout.decode()
        self.assertEqual(cp.returncode, 1, out)
        self.assertRegex(out, r'PROBLEM .*auth')

    def test_08_cacerts_is_the_upstream_chain_and_follows_a_rollover(self):
        """/cacerts (curl) serves what stampede-control published: the
        emulator's CA chain, not stampeded's own CA; after the CA rolls over,
        the new and the previous chain side by side."""
        def cacert_subjects():
            r = fx.curl(self.d, 'cacerts')
            if r.status == 503:  # the core has not read stp:ca:upstream yet (it polls every 1-5 s)
                self.assertIn(b'upstream CA chain is not known yet', r.body)
                self.assertEqual(r.header('Retry-After'), '1')
                return set()
            self.assertEqual(r.status, 200, r.body)
            return {c.fingerprint(hashes.SHA256()) for c in p7_certs(r.body)}
        published = {c.fingerprint(hashes.SHA256())
                     for c in p7_certs(base64.b64encode(self.r.command('HGET', 'stp:ca:upstream', 'chain')))}
        got = adcs.wait_for(lambda: (lambda g: g if g == published else None)(cacert_subjects()), BOUND,
                            '/cacerts = the published upstream chain')
        with open(self.d.ca_path, 'rb') as f:
            local = x509.load_pem_x509_certificate(f.read())
        self.assertNotIn(local.fingerprint(hashes.SHA256()), got)
        before = int(self.r.command('HGET', 'stp:ca:upstream', 'renewal'))
        self.emu.control('roll-ca')
        adcs.wait_for(lambda: int(self.r.command('HGET', 'stp:ca:upstream', 'renewal')) == before + 1, BOUND,
                      'rollover published')
        both = adcs.wait_for(lambda: (lambda g: g if published < g else None)(cacert_subjects()), BOUND,
                             '/cacerts holds the new and the previous chain')
        self.assertGreater(len(both), len(published))
        # and a new enrollment is signed by the new CA, which /cacerts now has
        key, der = adcs.ec_csr('online-est-8')
        r = fx.py_enroll(self.d, der, password=self.d.password, timeout=BOUND)
        self.assertEqual(r.status, 200, r.body)
        self.assert_from_upstream(p7_certs(r.body)[0], key.public_key())

class TestOnlineCapf(OnlineBase):
    """Phones (CAPF, tests/integration/capf_client.py) through the real
    stampede-control: the LSC is signed by the emulator's CA. The emulator
    trusts stampeded's CAPF certificate as a registration authority, since a
    phone sends a bare public key that nobody but the CAPF can sign a
    request for."""

    trust_capf = True
    extra_stampeded = ('--capf-online-timeout', '20')

    def add_device(self, name):
        cp = fx.run([STAMPEDECTL, '--data-dir', self.d.data_dir, 'device', 'add', name, '--op', 'install',
                     '--auth', 'null', '--replace'])
        self.assertEqual(cp.returncode, 0, cp.stderr)

    def show(self, name):
        return fx.run([STAMPEDECTL, '--data-dir', self.d.data_dir, 'device', 'show', name]).stdout.decode()

    def test_01_v2_and_v3_phones_get_upstream_lscs(self):
        import capf_client as cc
        for version, name in ((2, 'SEP00AA00BB00C2'), (3, 'SEP00AA00BB00C3')):
            self.add_device(name)
            with cc.CapfClient('127.0.0.1', self.d.capf_port, version=version, timeout=BOUND) as c:
                res = c.install(name)
            self.assertTrue(res.installed, '%s v%d: %s' % (name, version, res))
            cert = res.certificate
            self.assert_from_upstream(cert, cert.public_key())
            self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, name)
            show = self.show(name)
            self.assertRegex(show, r'status\s+success')
            self.assertIn('%x' % cert.serial_number, show.replace(':', '').lower())

    def test_02_ca_refuses_phone_declined_device_retryable(self):
        import capf_client as cc
        name = 'SEP00AA00BB00D1'
        self.add_device(name)
        self.restart_control('NoSuchTemplate', 'control-capf-badtpl')
        try:
            with cc.CapfClient('127.0.0.1', self.d.capf_port, version=2, timeout=BOUND) as c:
                res = c.install(name)
            self.assertFalse(res.installed, res)
            self.assertEqual((res.end_reason, res.ended_after), (7, 'key'), res)
            show = self.show(name)
            self.assertRegex(show, r'status\s+failed')
            self.assertIn('online CA', show)
            self.assertRegex(show, r'operation\s+install')
        finally:
            self.restart_control('WebServer', 'control-capf-2')
        with cc.CapfClient('127.0.0.1', self.d.capf_port, version=2, timeout=BOUND) as c:
            res = c.install(name)
        self.assertTrue(res.installed, res)


if __name__ == '__main__':
    unittest.main(verbosity=2)
