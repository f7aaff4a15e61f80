#!/usr/bin/env python3
"""test_doctor: the real `stampedectl doctor` (ra/stampedectl, which execs
stampede-control doctor; env STAMPEDECTL, STAMPEDE_CONTROL) against ADCS
emulator processes (adcs_emulator.py) with each failure profile of
certsrv-protocol.md §6 that the doctor can see. For each: exit 1, exactly the
expected PROBLEM line(s), each naming the cause and carrying `; fix: ` with
the remedy of that failure class, no secret printed, nothing submitted; a
good upstream: only ok lines, exit 0.

Coverage map (§6 failure mode -> test in this file; the work-loop side of the
same table is in tests/integration/test_control_failures.py):
  good upstream (ok lines only, exit 0, no POST)  test_01_good_upstream
  DNS resolution (.invalid, no resolve)           test_02_dns
  connection refused (closed port)                test_03_connection_refused
  TLS handshake never completes (connect timeout) test_04_tls_handshake_timeout
  self-signed / wrong-name / not-yet-valid /
    expired / leaf-only (missing intermediate)    TestDoctorTls.test_tls_profiles
  bad credentials (NTLM, Basic)                   test_05_bad_credentials
  NTLM disabled (negotiate-only)                  test_06_negotiate_only
  EPA / channel binding (require)                 test_07_epa_required
  TLS required (plain HTTP 403)                   test_08_https_required
  CA unreachable behind IIS (ca_down)             test_09_ca_down
  wrong template (unknown name, display name)     test_10_template_unknown
  no Enroll permission (one template / none)      test_11_template_not_permitted
  usage: stampede-control missing                 test_12_stampede_control_missing
Not doctor-visible (needs a submission): bad CSR, pending, enrollment
timeout, officer denial (covered in test_control_failures.py).

Secrets are generated at test time (the emulator's password, with '+' and
':' on purpose, reaches the doctor through a 0600 file). 127.0.0.1 only;
every subprocess is time-bounded; emulators are stopped in tearDown(Class).
"""
import faulthandler
import os
import re
import secrets
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import adcs_fixture as adcs  # noqa: E402
from adcs_fixture import FIX, HOST, QUALIFIED_USER, free_port  # noqa: E402

BUILD = os.environ.get('STAMPEDE_BUILD', '')
STAMPEDECTL = os.environ.get('STAMPEDECTL') or os.path.join(BUILD, 'ra', 'stampedectl')
STAMPEDE_CONTROL = os.environ.get('STAMPEDE_CONTROL') or os.path.join(BUILD, 'control',
                                                                      'stampede-control')
RUN_TIMEOUT = 60

CHECKS = ['config', 'dns', 'tcp', 'tls', 'auth', 'pages', 'ca', 'template']

tmpdir = adcs.LazyTmpDir('doctor-test-')


def doctor(emu, password=None, url=None, resolve=None, env=None, **settings):
    """Runs `stampedectl doctor` with stampede-control settings for `emu`
    (overridden by the keyword arguments; None drops one). Returns (exit code,
    ok/PROBLEM lines, whole stdout, stderr)."""
    port = emu.port if emu else free_port()
    password = password if password is not None else (emu.password if emu else 'x')
    with adcs.temp_secret_file(tmpdir(), password) as pw:
        st = {'certsrv_url': url or 'https://%s:%d/certsrv' % (HOST, port),
              'resolve': resolve if resolve is not None else '%s:%d:127.0.0.1' % (HOST, port),
              'ca_bundle': emu.tls_root if emu else None,
              'auth': 'ntlm', 'user': QUALIFIED_USER, 'password_file': pw,
              'template': 'WebServer', 'connect_timeout_ms': 1500, 'login_timeout_ms': 5000,
              'submit_timeout_ms': 5000, 'fetch_timeout_ms': 5000}
        st.update(settings)
        args = [STAMPEDECTL, 'doctor'] + adcs.setting_flags(
            {k: v for k, v in st.items() if v is not None and v != ''})
        e = dict(os.environ, STAMPEDE_CONTROL=STAMPEDE_CONTROL)
        e.update(env or {})
        cp = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                            stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
    out, err = cp.stdout.decode('utf-8', 'replace'), cp.stderr.decode('utf-8', 'replace')
    adcs.check_sanitizers(err, 'stampedectl doctor')
    return cp.returncode, adcs.doctor_lines(out), out, err


def check_of(line):
    return re.match(r'^(?:ok +|PROBLEM )([a-z]+):', line).group(1)


class DoctorCase(unittest.TestCase):

    def assertProblems(self, res, expect, emu=None, last=None):
        """`expect`: [(check, [cause words], fix class(es))] — exactly these PROBLEM
        lines, in order; exit 1; every other line ok; `last`: the check that
        must end the run (later checks skipped); no password in the output."""
        rc, lines, out, err = res
        self.assertEqual(rc, 1, out + err)
        bad = [x for x in lines if x.startswith('PROBLEM')]
        self.assertEqual(len(bad), len(expect), out)
        for line, (check, words, fix) in zip(bad, expect):
            self.assertTrue(line.startswith('PROBLEM %s: ' % check), line)
            cause, sep, remedy = line.partition('; fix: ')
            self.assertEqual(sep, '; fix: ', line)
            for w in words:
                self.assertIn(w, cause)
            for f in (fix if isinstance(fix, tuple) else (fix,)):
                self.assertIn(FIX[f], remedy)
        self.assertEqual(len(lines), len(out.splitlines()), 'only ok/PROBLEM lines:\n' + out)
        if last is not None:
            self.assertEqual(check_of(lines[-1]), last, out)
        if emu is not None:
            self.assertNotIn(emu.password, out + err)
        return lines


class TestDoctor(DoctorCase):
    """One emulator (Negotiate + NTLM + Basic, plain-HTTP listener); its
    settings changed through the control channel per test."""

    @classmethod
    def setUpClass(cls):
        for p in (STAMPEDECTL, STAMPEDE_CONTROL):
            if not os.access(p, os.X_OK):
                raise unittest.SkipTest('%s not built (run through meson test)' % p)
        cls.emu = adcs.emulator('--auth', 'negotiate+ntlm+basic', '--http-port', '0')

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.control('reset')

    def tearDown(self):
        # the doctor never submits a request, whatever it found
        self.assertEqual([e for e in self.emu.log() if e['route'] == '/certsrv/certfnsh.asp'], [])

    def configure(self, **opts):
        self.emu.configure(self, **opts)

    def test_01_good_upstream(self):
        rc, lines, out, err = doctor(self.emu)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([check_of(x) for x in lines], CHECKS, out)
        self.assertTrue(all(x.startswith('ok    ') for x in lines), out)
        self.assertEqual(len(lines), len(out.splitlines()), out)
        self.assertIn('server offers Negotiate, NTLM, Basic', lines[4])
        self.assertIn('WebServer is offered to %s' % QUALIFIED_USER, lines[7])
        self.assertNotIn(self.emu.password, out + err)

    def test_02_dns(self):
        port = free_port()
        res = doctor(None, url='https://adcs.invalid:%d/certsrv' % port, resolve='')
        lines = self.assertProblems(res, [('dns', ['cannot resolve adcs.invalid'], 'dns')], last='dns')
        self.assertEqual([check_of(x) for x in lines], ['config', 'dns'])

    def test_03_connection_refused(self):
        port = free_port()
        res = doctor(None, url='https://%s:%d/certsrv' % (HOST, port),
                     resolve='%s:%d:127.0.0.1' % (HOST, port))
        self.assertProblems(res, [('tcp', ['cannot connect to %s:%d (127.0.0.1)' % (HOST, port),
                                           'refused'], 'connect')], last='tcp')

    def test_04_tls_handshake_timeout(self):
        self.configure(tls_stall=True)
        self.assertProblems(doctor(self.emu), [('tls', ['timed out', 'during the TLS handshake',
                                                        'connect_timeout_ms 1500'],
                                                'timeout-connect')], last='tls')

    def test_05_bad_credentials(self):
        wrong = 'wrong-' + secrets.token_hex(6)
        self.assertProblems(doctor(self.emu, password=wrong), [
            ('auth', ['authentication failed as %s with ntlm and with basic' % QUALIFIED_USER,
                      'wrong user or password', 'server offers Negotiate, NTLM, Basic'], 'auth')],
            self.emu, last='auth')
        self.assertProblems(doctor(self.emu, password=wrong, auth='basic'), [
            ('auth', ['authentication failed as %s with basic' % QUALIFIED_USER, 'HTTP 401',
                      'server offers Negotiate, NTLM, Basic'], 'auth')], self.emu, last='auth')

    def test_06_negotiate_only(self):
        self.configure(auth='negotiate-only')
        self.assertProblems(doctor(self.emu), [
            ('auth', ['server offers Negotiate only (NTLM disabled), auth is ntlm'], 'auth-scheme')],
            self.emu, last='auth')

    def test_07_epa_required(self):
        self.configure(epa='require')
        lines = self.assertProblems(doctor(self.emu), [
            ('auth', ['ntlm login as %s refused with HTTP 401' % QUALIFIED_USER,
                      'Basic with the same credentials works', 'Extended Protection'], 'epa')],
            self.emu)
        # the checks after it run over Basic: the CA and the template are still checked
        self.assertEqual([check_of(x) for x in lines], CHECKS)
        self.assertIn('EPA: channel binding missing', [e['auth_result'] for e in self.emu.log()])

    def test_08_https_required(self):
        port = self.emu.http_port
        res = doctor(self.emu, url='http://%s:%d/certsrv' % (HOST, port),
                     resolve='%s:%d:127.0.0.1' % (HOST, port))
        self.assertProblems(res, [
            ('config', ['certsrv_url http://%s:%d/certsrv is plain http' % (HOST, port)],
             'https-required'),
            ('auth', ['server requires HTTPS (HTTP 403 on plain http)'], 'https-required')],
            self.emu, last='auth')
        self.assertTrue(self.emu.log())
        self.assertEqual({e['status'] for e in self.emu.log()}, {403})
        self.assertEqual({e['tls'] for e in self.emu.log()}, {False})

    def test_09_ca_down(self):
        self.configure(ca_down=True)
        lines = self.assertProblems(doctor(self.emu), [
            ('ca', ['the web enrollment server cannot reach the CA'], 'ca-down')], self.emu)
        self.assertEqual([check_of(x) for x in lines], CHECKS)
        # no fallback to Renewal=0 when certcarc.asp has no nRenewals
        self.assertEqual([e for e in self.emu.log() if e['route'] in ('/certsrv/certnew.p7b',
                                                                      '/certsrv/certnew.cer')], [])

    def test_10_template_unknown(self):
        self.assertProblems(doctor(self.emu, template='NoSuchTemplate'), [
            ('template', ['template NoSuchTemplate is not among those certrqxt.asp offers to %s'
                          % QUALIFIED_USER, 'unknown, not published'], 'template')], self.emu)
        self.assertProblems(doctor(self.emu, template='Web Server'), [
            ('template', ['"Web Server" is the display name of template WebServer'], 'template')],
            self.emu)

    def test_11_template_not_permitted(self):
        # one template the account may not enroll in: indistinguishable from an unknown one on
        # certrqxt.asp, so the line names both causes and both fixes
        self.assertProblems(doctor(self.emu, template='StampedeRestricted'), [
            ('template', ['template StampedeRestricted is not among those', 'no Enroll permission'],
             ('template', 'permission'))], self.emu)
        # no template at all for this account: a permission problem
        for t in self.emu.state()['templates']:
            self.emu.control('template', name=t['name'], users=['nobody-else'])
        self.assertProblems(doctor(self.emu), [
            ('template', ['offers no template at all to %s (template WebServer)' % QUALIFIED_USER],
             'permission')], self.emu)

    def test_12_stampede_control_missing(self):
        rc, lines, out, err = doctor(self.emu, env={'STAMPEDE_CONTROL': '/nonexistent/stampede-control'})
        self.assertEqual(rc, 2, out + err)
        self.assertIn('cannot run /nonexistent/stampede-control', err)
        self.assertEqual(lines, [])


class TestDoctorTls(DoctorCase):
    """Each server certificate profile (E2) on its own emulator: a distinct
    PROBLEM tls line and fix, and the run stops there."""
    EXPECT = [
        ('self-signed', ['IIS certificate of %s is self-signed and not trusted' % HOST], 'tls-self-signed'),
        ('wrong-name', ['IIS certificate does not cover %s' % HOST], 'tls-name'),
        ('not-yet-valid', ['IIS certificate of %s is not yet valid at local time' % HOST], 'tls-clock'),
        ('expired', ['IIS certificate of %s has expired at local time' % HOST], 'tls-clock'),
        ('leaf-only', ['IIS certificate of %s not trusted (chain incomplete' % HOST], 'tls-untrusted'),
    ]

    def setUp(self):
        for p in (STAMPEDECTL, STAMPEDE_CONTROL):
            if not os.access(p, os.X_OK):
                self.skipTest('%s not built (run through meson test)' % p)

    def test_tls_profiles(self):
        for profile, words, fix in self.EXPECT:
            with self.subTest(profile=profile):
                emu = adcs.emulator('--tls-profile', profile)
                try:
                    lines = self.assertProblems(doctor(emu), [('tls', words, fix)], emu, last='tls')
                    self.assertEqual([check_of(x) for x in lines], ['config', 'dns', 'tcp', 'tls'])
                    self.assertEqual(emu.log(), [])        # no HTTP request got through
                finally:
                    emu.stop()


def tearDownModule():
    tmpdir.remove()


if __name__ == '__main__':
    faulthandler.dump_traceback_later(280, exit=True)   # hard bound below meson's 300 s
    unittest.main(verbosity=2)
