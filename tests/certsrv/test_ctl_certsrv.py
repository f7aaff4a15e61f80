#!/usr/bin/env python3
"""Integration test of the certsrv connector (control/ctl_certsrv.c, ctl_doctor.c) against the
ADCS web-enrollment emulator (adcs_emulator.py), both as processes: the emulator started with
the flags a scenario needs, the connector through its test driver ctl_certsrv_probe (env
CTL_CERTSRV_PROBE), which prints one JSON line per call.

What it shows (certsrv-protocol.md §7.5): a warm enrollment costs 2 requests (counted by the
probe and by the emulator's request log), NTLM and Basic, every failure class the connector
must tell apart (auth with the offered schemes, Negotiate only, EPA, template, permission,
bad CSR, officer denial, unknown id, TLS profiles, CA down, timeouts by phase, refused
connection, outcome unknown without a silent resubmission) and the doctor's lines.

CSRs and passwords are generated at test time; the emulator generates its own PKI. Everything
binds 127.0.0.1; every subprocess is time-bounded; emulators are stopped in tearDown(Class).
"""
import faulthandler
import json
import os
import secrets
import subprocess
import sys
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import adcs_fixture as adcs  # noqa: E402
from adcs_fixture import HOST, QUALIFIED_USER  # noqa: E402

PROBE = os.environ.get('CTL_CERTSRV_PROBE')
PROBE_TIMEOUT = 60.0
FIRST_ID = 61100

tmpdir = adcs.LazyTmpDir('ctl-certsrv-test-')
_KEYS = {}


def key(name):
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def csr_file(name, cn='device-1.example'):
    """A PEM CSR signed by key `name`, written to the temp dir; returns its path."""
    path = os.path.join(tmpdir(), 'csr-%s.pem' % name)
    if not os.path.exists(path):
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), False)
               .sign(key(name), hashes.SHA256()))
        with open(path, 'wb') as f:
            f.write(csr.public_bytes(serialization.Encoding.PEM))
    return path


def garbage_csr_file():
    path = os.path.join(tmpdir(), 'garbage.bin')
    with open(path, 'wb') as f:
        f.write(b'\x30\x03\x02\x01' + secrets.token_bytes(200))
    return path


def spki(k):
    return k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def probe(emu, *actions, auth='ntlm', password=None, template='WebServer', csr='a', url=None,
          resolve=None, extra=(), cert_out=None, timeout=PROBE_TIMEOUT):
    """Runs ctl_certsrv_probe; returns (results, doctor lines, exit code, stderr)."""
    port = emu.port if emu else 1
    with adcs.temp_secret_file(tmpdir(), password if password is not None else emu.password) as pw:
        args = [PROBE, '--url', url or emu.url(),
                '--resolve', resolve or '%s:%d:127.0.0.1' % (HOST, port),
                '--auth', auth, '--user', QUALIFIED_USER, '--password-file', pw,
                '--template', template,
                '--connect-timeout-ms', '3000', '--login-timeout-ms', '10000',
                '--submit-timeout-ms', '15000', '--fetch-timeout-ms', '10000']
        if emu:
            args += ['--ca-bundle', emu.tls_root]
        if csr:
            args += ['--csr', csr if os.path.sep in csr else csr_file(csr)]
        if cert_out:
            args += ['--cert-out', cert_out]
        args += list(extra) + list(actions)
        cp = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out = cp.stdout.decode('utf-8', 'replace')
    err = cp.stderr.decode('utf-8', 'replace')
    adcs.check_sanitizers(err, 'ctl_certsrv_probe %s' % ' '.join(actions),   # sanitizer builds
                          markers=('AddressSanitizer', 'LeakSanitizer', 'runtime error:'))
    results = [json.loads(x) for x in out.splitlines() if x.startswith('{')]
    return results, adcs.doctor_lines(out), cp.returncode, err


class ProbeCase(unittest.TestCase):
    emu_args = ()
    emu = None

    @classmethod
    def setUpClass(cls):
        if not PROBE or not os.access(PROBE, os.X_OK):
            raise unittest.SkipTest('CTL_CERTSRV_PROBE not set (run through meson test)')
        cls.emu = adcs.emulator(*cls.emu_args)

    @classmethod
    def tearDownClass(cls):
        if cls.emu:
            cls.emu.stop()

    def setUp(self):
        self.emu.control('reset')

    def call(self, *actions, **kw):
        res, lines, rc, err = probe(self.emu, *actions, **kw)
        self.assertEqual(len(res), len([a for a in actions if not a.startswith('sleep:')]),
                         'probe output: %s %s' % (res, err))
        for r in res:
            if 'cause' in r:
                self.assertNotIn(self.emu.password, r['cause'])
        return res

    def assertFailure(self, r, kind, diag, *words):
        self.assertEqual((r['kind'], r['diag']), (kind, diag), r['cause'])
        self.assertIn('; fix: ', r['cause'])
        for w in words:
            self.assertIn(w, r['cause'])

    def wait_log(self, route, n, timeout=10.0):
        """The log entries of `route` once there are `n` (or after `timeout`)."""
        return adcs.poll(lambda: self.emu.log(route), timeout, done=lambda got: len(got) >= n,
                         interval=0.1)

    def configure(self, **opts):
        """Emulator settings that reset() keeps: restored after the test."""
        self.emu.configure(self, **opts)


class T01_Enrollment(ProbeCase):
    """Default IIS-like set-up: Negotiate + NTLM (+ Basic here), EPA off, good TLS."""
    emu_args = ('--auth', 'negotiate+ntlm+basic', '--http-port', '0')

    def _warm(self, auth):
        cert_out = os.path.join(tmpdir(), 'cert-%s.der' % auth)
        login, submit, fetch = self.call('login', 'submit', 'fetch', auth=auth, cert_out=cert_out)
        self.assertEqual(login['kind'], 'issued', login['cause'])
        self.assertEqual((submit['kind'], submit['req_id']), ('issued', FIRST_ID), submit['cause'])
        self.assertEqual((fetch['kind'], fetch['req_id']), ('issued', FIRST_ID), fetch['cause'])
        # the probe's count: one request each on the warm connection
        self.assertEqual(submit['requests'] + fetch['requests'], 2)
        self.assertEqual(fetch['conn_requests'], login['requests'] + 2)
        # the emulator's count: the same connection, 2 requests after the login
        log = self.emu.log()
        self.assertEqual(len(log), login['requests'] + 2)
        self.assertEqual(len({e['conn'] for e in log}), 1)
        after = log[login['requests']:]
        self.assertEqual([(e['method'], e['route']) for e in after],
                         [('POST', '/certsrv/certfnsh.asp'), ('GET', '/certsrv/certnew.cer')])
        post = after[0]
        self.assertEqual(post['form']['template'], 'WebServer')
        self.assertEqual(post['form']['mode'], 'newreq')
        self.assertTrue(post['content_type'].startswith('application/x-www-form-urlencoded'))
        self.assertEqual(set(post['form']['fields']), {'mode', 'certrequest', 'certattrib',
                                                       'friendlytype', 'thumbprint',
                                                       'targetstoreflags', 'savecert'})
        self.assertIn('Mozilla', post['ua'])
        self.assertEqual(after[1]['query'], 'ReqID=%d&Enc=bin' % FIRST_ID)
        with open(cert_out, 'rb') as f:
            cert = x509.load_der_x509_certificate(f.read())
        self.assertEqual(spki(cert), spki(key('a')))
        return log

    def test_01_warm_enrollment_ntlm_two_requests(self):
        log = self._warm('ntlm')
        self.assertEqual([e['ntlm_leg'] for e in log[:2]], [1, 3])       # login handshake
        self.assertEqual(log[2]['auth'], 'ntlm:connection')               # POST rides on it

    def test_02_warm_enrollment_basic_two_requests(self):
        log = self._warm('basic')
        self.assertEqual(len(log), 3)                                     # login is one request
        self.assertEqual({e['auth'] for e in log}, {'basic'})

    def test_03_cold_ntlm_post_probe_creates_nothing(self):
        (r,) = self.call('submit')
        self.assertEqual((r['kind'], r['requests']), ('issued', 2), r['cause'])
        log = self.emu.log()
        self.assertEqual([(e['method'], e['probe'], e['body_len'] > 0) for e in log],
                         [('POST', True, False), ('POST', False, True)])
        self.assertEqual(self.emu.state()['next_id'], FIRST_ID + 1)

    def test_04_wrong_password_each_scheme(self):
        for auth in ('ntlm', 'basic'):
            with self.subTest(auth=auth):
                (r,) = self.call('login', auth=auth, password='wrong-' + secrets.token_hex(4))
                self.assertFailure(r, 'failed', 'auth', 'authentication failed as EMU\\svc-stampede',
                                   'with %s' % auth, 'server offers Negotiate, NTLM, Basic',
                                   'HTTP 401')
                self.assertEqual(r['http'], 401)
                self.assertTrue(r['retryable'])
                if auth == 'ntlm':
                    self.assertIn('Extended Protection', r['cause'])
                    self.assertEqual(r['requests'], 2)                   # type-1, type-3

    def test_05_manual_template_pending_then_approved(self):
        r1, r2 = self.call('submit', 'fetch', template='StampedeManual')
        self.assertEqual((r1['kind'], r1['diag'], r1['req_id']), ('pending', 'ok', FIRST_ID))
        self.assertEqual((r2['kind'], r2['req_id']), ('pending', FIRST_ID), r2['cause'])
        self.emu.control('approve', id=FIRST_ID)
        (r3,) = self.call('fetch:%d' % FIRST_ID, template='StampedeManual')  # a new connection
        self.assertEqual(r3['kind'], 'issued', r3['cause'])
        self.assertGreater(r3['der_len'], 0)

    def test_06_pending_denied_by_officer(self):
        (r1,) = self.call('submit', template='StampedeManual')
        self.assertEqual(r1['kind'], 'pending')
        self.emu.control('deny', id=r1['req_id'])
        (r2,) = self.call('fetch:%d' % r1['req_id'])
        self.assertFailure(r2, 'denied', 'denied', 'Denied by', '0x80094014')
        self.assertEqual(r2['hresult'], '0x80094014')
        self.assertFalse(r2['retryable'])

    def test_07_unknown_template(self):
        for name in ('NoSuchTemplate', 'Web Server'):      # also the display name mistake
            with self.subTest(template=name):
                (r,) = self.call('login', 'submit', template=name)[1:]
                self.assertFailure(r, 'denied', 'template', 'template %s' % name)
                self.assertEqual(r['hresult'], '0x80094800')
                self.assertFalse(r['retryable'])

    def test_08_no_permission(self):
        (r,) = self.call('submit', template='StampedeRestricted')
        self.assertFailure(r, 'denied', 'permission', 'may not enroll with template StampedeRestricted')
        self.assertEqual(r['hresult'], '0x80094012')

    def test_09_garbage_csr(self):
        (r,) = self.call('submit', csr=garbage_csr_file())
        self.assertFailure(r, 'denied', 'bad-csr', 'could not parse')
        self.assertFalse(r['retryable'])
        self.assertEqual(len(self.emu.log('/certsrv/certfnsh.asp')), 2)  # no retry

    def test_10_unknown_id_poll(self):
        (r,) = self.call('fetch:99999')
        self.assertFailure(r, 'failed', 'unknown-id', 'does not know request 99999')
        self.assertEqual(r['hresult'], '0x80094004')

    def test_11_certificate_key_must_match_csr(self):
        r1, = self.call('submit', csr='a')
        (r2,) = self.call('fetch:%d' % r1['req_id'], csr='b')
        self.assertFailure(r2, 'failed', 'page', 'does not match the CSR')

    def test_12_slow_post_is_outcome_unknown(self):
        self.emu.control('fault', route='/certsrv/certfnsh.asp', delay=4)
        r1, r2 = self.call('login', 'submit', extra=['--submit-timeout-ms', '1500'])
        self.assertFailure(r2, 'unknown', 'timeout-submit', 'outcome unknown', 'submit_timeout_ms 1500')
        self.assertEqual(r2['curl'], 28)
        posts = self.wait_log('/certsrv/certfnsh.asp', 1)       # logged when it answers
        self.assertEqual(len(posts), 1)
        # the emulator committed it: exactly what "outcome unknown" protects against
        self.assertEqual(self.emu.state()['requests'][0]['state'], 'issued')

    def test_13_connection_lost_after_post_is_not_resent(self):
        # libcurl would silently resend a POST whose reused connection died (CURLOPT_POSTFIELDS)
        self.emu.control('fault', route='/certsrv/certfnsh.asp', drop=True, times=1)
        r1, r2 = self.call('login', 'submit')
        self.assertFailure(r2, 'unknown', 'timeout-submit', 'lost after the POST body was sent')
        posts = [e for e in self.emu.log() if e['route'] == '/certsrv/certfnsh.asp']
        self.assertEqual(len(posts), 1)

    def test_14_slow_login_names_the_phase(self):
        self.configure(challenge_delay=4)
        (r,) = self.call('login', extra=['--login-timeout-ms', '1500'])
        self.assertFailure(r, 'failed', 'timeout-login', 'during authentication',
                           'login_timeout_ms 1500')
        self.assertEqual(r['curl'], 28)
        self.wait_log('/certsrv/', 1)       # the late 401 is logged before the next test

    def test_15_tls_handshake_stall_is_connect_timeout(self):
        self.configure(tls_stall=True)
        (r,) = self.call('login', extra=['--connect-timeout-ms', '1500'])
        self.assertFailure(r, 'failed', 'timeout-connect', 'TLS handshake', 'connect_timeout_ms 1500')

    def test_16_idle_connection_is_reauthenticated(self):
        self.configure(idle_timeout=0.5)
        r1, r2 = self.call('login', 'sleep:1500', 'submit')
        self.assertEqual(r2['kind'], 'issued', r2['cause'])
        self.assertEqual(r2['requests'], 2)                 # empty-body probe + type-3 on a new one
        log = self.emu.log()
        self.assertEqual([(e['method'], e['ntlm_leg']) for e in log],
                         [('GET', 1), ('GET', 3), ('POST', 1), ('POST', 3)], log)
        self.assertEqual(len({e['conn'] for e in log}), 2, log)

    def test_17_server_errors(self):
        for st in (500, 503):
            with self.subTest(status=st):
                self.emu.control('fault', route='/certsrv/certfnsh.asp', status=st, times=1)
                (r,) = self.call('submit')
                if st == 500:  # the ASP page failed, maybe after the CA took the request (§5.13)
                    self.assertFailure(r, 'unknown', 'http', 'HTTP 500', 'outcome unknown')
                else:          # HTTP.sys answered: nothing reached the page, a plain retry
                    self.assertFailure(r, 'failed', 'http', 'HTTP 503')
                    self.assertTrue(r['retryable'])

    def test_18_https_required(self):
        url = 'http://%s:%d/certsrv' % (HOST, self.emu.http_port)
        (r,) = self.call('login', url=url, resolve='%s:%d:127.0.0.1' % (HOST, self.emu.http_port))
        self.assertFailure(r, 'failed', 'https-required', 'HTTP 403')

    def test_19_chain_and_rollover(self):
        (r,) = self.call('chain')
        self.assertEqual((r['kind'], r['renewal']), ('issued', 0), r['cause'])
        self.assertEqual(r['requests'], 4)              # NTLM type-1 + certcarc, p7b, cer
        self.emu.control('roll-ca')
        r1, r2 = self.call('chain', 'chain-at:0')
        self.assertEqual((r1['kind'], r1['renewal']), ('issued', 1), r1['cause'])
        self.assertEqual((r2['kind'], r2['renewal']), ('issued', 0), r2['cause'])
        self.assertEqual(r2['requests'], 2)
        queries = [e['query'] for e in self.emu.log() if e['route'] == '/certsrv/certnew.p7b']
        self.assertEqual(queries[-2:], ['ReqID=CACert&Renewal=1&Enc=bin',
                                        'ReqID=CACert&Renewal=0&Enc=bin'])
        self.emu.control('reset', keep_ca=False)

    def test_20_connection_refused(self):
        port = adcs.free_port()
        res, lines, rc, err = probe(None, 'login', url='https://%s:%d/certsrv' % (HOST, port),
                                    resolve='%s:%d:127.0.0.1' % (HOST, port), password='x')
        self.assertFailure(res[0], 'failed', 'connect', 'cannot connect to adcs.test:%d' % port)
        self.assertEqual(res[0]['curl'], 7)
        res, lines, rc, err = probe(None, 'doctor', url='https://%s:%d/certsrv' % (HOST, port),
                                    resolve='%s:%d:127.0.0.1' % (HOST, port), password='x')
        self.assertEqual(rc, 1, lines)
        self.assertTrue(lines[-1].startswith('PROBLEM tcp: cannot connect'), lines)

    def test_21_doctor_good(self):
        res, lines, rc, err = probe(self.emu, 'doctor')
        self.assertEqual(rc, 0, '\n'.join(lines) + err)
        self.assertEqual([l.split(':')[0] for l in lines],
                         ['ok    config', 'ok    dns', 'ok    tcp', 'ok    tls', 'ok    auth',
                          'ok    pages', 'ok    ca', 'ok    template'])
        self.assertIn('server offers Negotiate, NTLM, Basic', lines[4])
        self.assertIn('renewal 0: CN=Stampede Test Issuing CA', lines[6])
        self.assertEqual(res[-1]['problems'], 0)
        self.assertFalse([e for e in self.emu.log() if e['route'] == '/certsrv/certfnsh.asp'])

    def test_22_doctor_failures(self):
        cases = [
            (dict(password='wrong'), 'PROBLEM auth:', 'wrong user or password'),
            (dict(template='Web Server'), 'PROBLEM template:',
             '"Web Server" is the display name of template WebServer'),
            (dict(template='NoSuchTemplate'), 'PROBLEM template:', 'not among those'),
            (dict(template='StampedeRestricted'), 'PROBLEM template:', 'not among those'),
        ]
        for kw, head, words in cases:
            with self.subTest(**kw):
                res, lines, rc, err = probe(self.emu, 'doctor', **kw)
                self.assertEqual(rc, 1, lines)
                bad = [l for l in lines if l.startswith('PROBLEM')]
                self.assertEqual(len(bad), 1, lines)
                self.assertTrue(bad[0].startswith(head), bad)
                self.assertIn(words, bad[0])
                self.assertIn('; fix: ', bad[0])
                self.assertNotIn(self.emu.password, '\n'.join(lines))

    def test_23_lowercase_path_and_no_redirect_followed(self):
        self.configure(lowercase_redirect=True)        # §2.8: non-lowercase /certsrv -> 302
        base = 'https://%s:%d' % (HOST, self.emu.port)
        (r,) = self.call('login', url=base + '/CertSrv/')
        self.assertEqual(r['kind'], 'issued', r['cause'])
        self.assertEqual({e['path'] for e in self.emu.log()}, {'/certsrv/'})
        self.emu.control('reset')
        (r,) = self.call('submit', url=base + '/CertSrv/certsrv', auth='basic')
        self.assertFailure(r, 'failed', 'redirect', 'HTTP 302', '/certsrv/certsrv/certfnsh.asp')
        self.assertEqual([(e['method'], e['status']) for e in self.emu.log()], [('POST', 302)])


class T02_NegotiateOnly(ProbeCase):
    emu_args = ('--auth', 'negotiate-only')

    def test_ntlm_against_negotiate_only(self):
        (r,) = self.call('login')
        self.assertFailure(r, 'failed', 'auth-scheme', 'server offers Negotiate only',
                           'auth is ntlm')

    def test_doctor(self):
        res, lines, rc, err = probe(self.emu, 'doctor')
        self.assertEqual(rc, 1)
        self.assertTrue(lines[-1].startswith('PROBLEM auth: server offers Negotiate only'), lines)


class T03_EpaRequired(ProbeCase):
    emu_args = ('--auth', 'negotiate+ntlm+basic', '--epa', 'require')

    def test_ntlm_refused_basic_works(self):
        (r,) = self.call('login')
        self.assertFailure(r, 'failed', 'auth', 'Extended Protection', 'HTTP 401')
        self.assertIn('EPA: channel binding missing', [e['auth_result'] for e in self.emu.log()])
        r1, r2, r3 = self.call('login', 'submit', 'fetch', auth='basic')
        self.assertEqual([r1['kind'], r2['kind'], r3['kind']], ['issued'] * 3, r2['cause'])

    def test_doctor_says_epa(self):
        res, lines, rc, err = probe(self.emu, 'doctor')
        self.assertEqual(rc, 1, lines)
        bad = [l for l in lines if l.startswith('PROBLEM')]
        self.assertEqual(len(bad), 1, lines)
        self.assertIn('Extended Protection', bad[0])
        self.assertIn('Basic with the same credentials works', bad[0])
        self.assertIn('use auth = basic over HTTPS', bad[0])       # the CTL_D_EPA fix
        self.assertTrue(any(l.startswith('ok    ca:') for l in lines), lines)


class T04_CaDown(ProbeCase):
    emu_args = ('--ca-down',)

    def test_chain_and_submit(self):
        r1, r2 = self.call('chain', 'submit')
        self.assertFailure(r1, 'failed', 'ca-down', 'cannot reach the CA', 'nRenewals')
        self.assertFailure(r2, 'failed', 'ca-down', 'cannot reach the CA')
        self.assertEqual(r2['hresult'], '0x800706BA')
        self.assertTrue(r1['retryable'] and r2['retryable'])
        # no Renewal=0 fallback: nothing after certcarc.asp
        self.assertFalse([e for e in self.emu.log() if e['route'] == '/certsrv/certnew.p7b'])

    def test_doctor(self):
        res, lines, rc, err = probe(self.emu, 'doctor')
        self.assertEqual(rc, 1)
        self.assertTrue([l for l in lines if l.startswith('PROBLEM ca: the web enrollment server '
                                                          'cannot reach the CA')], lines)


class T05_TlsProfiles(unittest.TestCase):
    """Each E2 profile gets its own diagnosis (CURLINFO_SSL_VERIFYRESULT, §6)."""
    EXPECT = {
        'self-signed': ('tls-self-signed', (18,), 'self-signed'),
        'wrong-name': ('tls-name', (0, 1, 62), 'does not cover adcs.test'),
        'expired': ('tls-clock', (10,), 'has expired'),
        'not-yet-valid': ('tls-clock', (9,), 'is not yet valid'),
        'leaf-only': ('tls-untrusted', (2, 20, 21), 'not trusted'),
    }

    def setUp(self):
        if not PROBE or not os.access(PROBE, os.X_OK):
            self.skipTest('CTL_CERTSRV_PROBE not set (run through meson test)')

    def test_profiles(self):
        seen = set()
        for profile, (diag, verify, words) in self.EXPECT.items():
            with self.subTest(profile=profile):
                emu = adcs.emulator('--tls-profile', profile)
                try:
                    (r,), _, _, err = probe(emu, 'login')
                    self.assertEqual((r['kind'], r['diag']), ('failed', diag), r['cause'])
                    self.assertIn(r['verify'], verify, r['cause'])
                    self.assertIn(words, r['cause'])
                    self.assertEqual(r['curl'], 60)
                    self.assertEqual(r['requests'], 0)
                    seen.add((r['diag'], r['verify']))
                    if profile in ('self-signed', 'expired'):
                        _, lines, rc, _ = probe(emu, 'doctor')
                        self.assertEqual(rc, 1)
                        self.assertTrue(lines[-1].startswith('PROBLEM tls: IIS certificate'), lines)
                finally:
                    emu.stop()
        self.assertEqual(len(seen), len(self.EXPECT))


def tearDownModule():
    tmpdir.remove()


if __name__ == '__main__':
    faulthandler.dump_traceback_later(280, exit=True)   # hard bound below meson's 300 s
    unittest.main(verbosity=2)
