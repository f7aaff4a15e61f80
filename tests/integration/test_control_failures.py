#!/usr/bin/env python3
"""test_control_failures: every upstream failure mode of certsrv-protocol.md §6
through stampede-control's work loop, and the §7.5 scenarios the other tests
leave out. Real processes: a private redis-server, the ADCS emulator
(tests/certsrv/adcs_emulator.py) and one stampede-control per test ($STAMPEDE_CONTROL);
the test plays stampeded's half (writes the pending record, as test_control.py).

For each failure the request record must carry `ca_diag` (the class) and
`reason` (cause + "; fix: " + the remedy of that class), stampede-control's
stderr exactly one line about the request, naming the class and carrying the
same text; a final failure (denial) must be rejected without a second POST,
a retryable one must wait in stp:upstream:wait. `retry_min_ms` is a minute in
the retryable cases (one attempt per test: "one log line" is exact) and 200 ms
in the final ones (a wrongly retried denial would be POSTed again within the
test: "no retry storm" is exact).

Coverage map. §6 failure mode -> work loop test here | stampedectl doctor test
(tests/certsrv/test_doctor.py) | connector tests (tests/certsrv/test_ctl_certsrv.py):
  DNS resolution                  test_dns (name does not exist), test_dns_servers_silent (resolver
                                  does not answer; needs root + a private mount namespace, else
                                  skipped) | test_02_dns; test_dns_servers_silent (here)
  connection refused/unreachable  test_connection_refused, test_control test_05 | test_03_connection_refused
  self-signed / untrusted (leaf-only) / name mismatch / not yet valid / expired
                                  TestTlsProfiles.test_tls_profiles | TestDoctorTls.test_tls_profiles | T05
  TLS handshake stall             test_connect_timeout       | test_04_tls_handshake_timeout | test_15
  login timeout                   test_login_timeout         | - (see notes)           | test_14
  enrollment timeout              test_enrollment_timeout, test_control test_08/09 | -  | test_12
  bad credentials                 test_bad_credentials_ntlm, _basic, test_auth_negotiate_without_ticket
                                  | test_05_bad_credentials | test_04
  EPA / channel binding           test_epa_required_ntlm_refused_basic_works | test_07_epa_required | T03
  TLS required (plain HTTP 403)   test_https_required        | test_08_https_required  | test_18
  wrong template                  test_wrong_template, test_control test_04 | test_10_template_unknown | test_07
  no Enroll permission            test_no_permission         | test_11_template_not_permitted | test_08
  bad CSR                         test_bad_csr_no_retry      | (needs a submission)    | test_09
  CA unreachable behind IIS       test_ca_down_no_renewal0_fallback | test_09_ca_down  | T04
  pending (not a failure)         test_control test_03       | -                       | test_05
  IIS/ASP 500 / 503               test_server_error_500_post_503_fetch | -            | test_17
  any cause: the record keeps it whole (fix last), up to 639 characters
                                  TestLongCause.test_long_cause_keeps_the_fix
§7.5 scenario -> test:
  issued, warm connection         test_control test_01; test_ctl_certsrv test_01/02
  text vs script variant          test_page_variants (emulator logs the variant served)
  pending -> issued               test_control test_03; test_ctl_certsrv test_05
  pending -> denied by officer    test_officer_denial; test_ctl_certsrv test_06
  denied bad template             test_wrong_template; test_control test_04
  denied no permission            test_no_permission
  bad CSR, no retry storm         test_bad_csr_no_retry (exactly one POST per request)
  unknown id on poll              test_unknown_id_on_poll; test_ctl_certsrv test_10
  auth failure each scheme        test_bad_credentials_ntlm, _basic, test_auth_negotiate_without_ticket
                                  (no KDC: a wrong Kerberos password cannot be tried); test_ctl_certsrv test_04
  NTLM disabled                   test_negotiate_only; test_doctor test_06
  EPA required (Basic works)      test_epa_required_ntlm_refused_basic_works
  connection loss: idle timeout   test_idle_connection_closed_by_iis; test_ctl_certsrv test_16
  connection loss: RST mid-answer test_reset_mid_post_answer (outcome unknown, one resubmission,
                                  audited), test_reset_mid_fetch (plain retry, no resubmission)
  slow login                      test_login_timeout; test_ctl_certsrv test_14
  slow enrollment                 test_enrollment_timeout; test_control test_08 (one retry,
                                  upstream-resubmit audit), test_09 (never a third POST)
  TLS profiles                    TestTlsProfiles; TestDoctorTls; test_ctl_certsrv T05
  CA down (no Renewal=0 fallback) test_ca_down_no_renewal0_fallback; test_ctl_certsrv T04
  CA rollover                     test_control test_06; test_online test_08
  HTTPS required                  test_https_required
  redirect (no POST follows)      test_redirect_not_followed; test_ctl_certsrv test_23

Notes: the doctor has no login-timeout check of its own: a server slow to send
its 401 shows as a timeout of the doctor's first (anonymous) GET, under "tls".
EPA cannot be told from a wrong password by the work loop (libcurl sends no
channel binding; the reason names both, the doctor tells them apart by trying
Basic). RST mid-answer uses the emulator's `rst_after` fault.

127.0.0.1 only (Redis on a unix socket); the emulator's password is random and
reaches stampede-control through a 0600 file; every wait is bounded; every
process is stopped or killed on the way out.
"""
import faulthandler
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'certsrv'))

import adcs_fixture as adcs                                          # noqa: E402
import stampede_fixture as fx                                        # noqa: E402
import test_control as tc                                            # noqa: E402
from adcs_fixture import FIX, HOST, wait_for                         # noqa: E402
from test_control import audit_entries, s                           # noqa: E402

USER = adcs.QUALIFIED_USER
BOUND = 20.0
STAMPEDECTL = os.environ.get('STAMPEDECTL') or os.path.join(fx.BUILD_ROOT, 'ra', 'stampedectl')
SILENT_DNS = '127.83.0.1'     # a loopback address for a DNS server that never answers

def silent_dns(workdir):
    """(socket, resolv.conf path) for a DNS server on SILENT_DNS:53 that reads
    queries and never answers, if this host lets a test put its own
    /etc/resolv.conf into a private mount namespace (root with
    CAP_SYS_ADMIN: `unshare -m` + `mount --bind`); else (None, why)."""
    if os.geteuid() != 0:
        return None, 'needs root (port 53, a private mount namespace)'
    conf = os.path.join(workdir, 'resolv-silent.conf')
    with open(conf, 'w') as f:
        f.write('nameserver %s\noptions timeout:2 attempts:1\n' % SILENT_DNS)
    try:
        cp = subprocess.run(['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf',
                             conf], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, 'unshare: %s' % e
    if cp.returncode != 0 or SILENT_DNS not in cp.stdout.decode(errors='replace'):
        return None, 'no private mount namespace here: %s' % cp.stderr.decode(errors='replace').strip()
    sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sk.bind((SILENT_DNS, 53))
    except OSError as e:
        sk.close()
        return None, 'cannot bind %s:53: %s' % (SILENT_DNS, e)
    return sk, conf


class NsControl(tc.Control):
    """stampede-control with `resolv_conf` as its /etc/resolv.conf (private
    mount namespace; unshare and sh exec, so the pid is stampede-control's)."""

    def __init__(self, workdir, settings, resolv_conf, name):
        super().__init__(workdir, settings, name=name)
        self.resolv_conf = resolv_conf

    def command(self):
        return ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                self.resolv_conf] + super().command()


class FailureBase(tc.ControlBase):
    """One redis-server and one ADCS emulator (Negotiate + NTLM + Basic, plain
    HTTP listener) per class; one stampede-control per test, started by the
    test with the settings of its case; Redis emptied between tests."""

    emu_args = ('--auth', 'negotiate+ntlm+basic', '--http-port', '0')

    @classmethod
    def setUpClass(cls):
        if not os.access(tc.STAMPEDE_CONTROL, os.X_OK):
            raise unittest.SkipTest('STAMPEDE_CONTROL not built (run through meson test)')
        cls.tmp = tempfile.mkdtemp(prefix='ctl-fail-')
        cls.redis = cls.emu = cls.fwd = cls.ctl = None
        try:
            cls.redis = fx.RedisServer(cls.tmp).start()
            cls.r = cls.redis.client
            cls.emu = adcs.Emulator(cls.tmp, args=cls.emu_args).start()
            cls.pwfile = adcs.secret_file(os.path.join(cls.tmp, 'upstream-password'), cls.emu.password)
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()

    def setUp(self):
        self.emu.control('reset')
        self.r.command('FLUSHALL')
        self.ctl = None
        self.settings = None

    def configure(self, emu=None, **opts):
        """Emulator settings (kept by reset), restored after the test."""
        (emu or self.emu).configure(self, **opts)

    def start_control(self, emu=None, final=False, resolv_conf=None, **over):
        """Starts stampede-control against `emu` with the test's settings;
        stopped (SIGTERM, exit 0, no sanitizer report) after the test.
        `resolv_conf`: run it with that file as its /etc/resolv.conf."""
        emu = emu or self.emu
        st = dict(redis=self.redis.sock, certsrv_url='https://%s:%d/certsrv' % (HOST, emu.port),
                  resolve='%s:%d:127.0.0.1' % (HOST, emu.port), ca_bundle=emu.ready['tls_root'],
                  auth='ntlm', user=USER, password_file=self.pwfile, template='WebServer',
                  pool_size=1, connect_timeout_ms=1500, login_timeout_ms=3000, submit_timeout_ms=3000,
                  fetch_timeout_ms=3000, lease_s=15, poll_pending_s=1, claim_idle_ms=1500,
                  chain_refresh_s=3600, consumer='f-' + self._testMethodName,
                  retry_min_ms=200 if final else 60000, retry_max_ms=400 if final else 60000)
        st.update(over)
        st = {k: v for k, v in st.items() if v is not None}
        self.settings = st
        if resolv_conf:
            ctl = NsControl(self.tmp, st, resolv_conf, name='control-' + st['consumer'])
        else:
            ctl = tc.Control(self.tmp, st, name='control-' + st['consumer'])
        self.addCleanup(ctl.kill)
        self.addCleanup(ctl.stop, 15)
        self.ctl = ctl.start()
        return ctl

    def wait_chain(self):
        """The chain thread's first read is done (its CA pages are then out of the way)."""
        wait_for(lambda: 'published in stp:ca:upstream' in self.ctl.stderr(), BOUND, 'chain published')

    def enroll_p10(self, identity, p10):
        """Queues a record whose p10 (and csr) is `p10` as given."""
        key, rid = tc.queue(self.r, identity, p10)
        return None, p10, key, rid

    def lines_about(self, rid):
        return [ln for ln in self.ctl.stderr().splitlines() if 'request %s ' % rid in ln]

    def posts_of(self, csr, emu=None):
        return len((emu or self.emu).requests_for(csr))

    def check_failure(self, key, rid, diag, words, state, final=False):
        """The record's ca_diag/reason and the one log line of a failure;
        `state`: the record's ca_state (retry, submitting, or done for a
        rejection). Returns the record."""
        if final:
            rec = self.wait_state(key, 'rejected')
        else:
            rec = wait_for(lambda: (lambda r: r if r.get('ca_diag') else None)(self.record(key)), BOUND,
                           '%s: a ca_diag (log:\n%s)' % (key, self.ctl.stderr()[-3000:]))
            self.assertEqual(s(rec['state']), 'pending')
            self.assertIsNotNone(self.r.command('ZSCORE', 'stp:upstream:wait', key))
        reason = s(rec['reason'])
        self.assertEqual((s(rec['ca_diag']), s(rec['ca_state'])), (diag, state), reason)
        cause, sep, fix = reason.partition('; fix: ')
        self.assertEqual(sep, '; fix: ', reason)
        self.assertIn(FIX[diag], fix)
        for w in words:
            self.assertIn(w, cause)
        self.assertNotIn(self.emu.password, reason)
        lines = wait_for(lambda: self.lines_about(rid), 5, 'a log line about %s' % rid)
        time.sleep(0.3)
        lines = self.lines_about(rid)
        self.assertEqual(len(lines), 1, '\n'.join(lines))
        self.assertTrue(lines[0].endswith(' [%s]: %s' % (diag, reason)),         # the whole cause
                        'log: %s\nrecord: %s' % (lines[0], reason))
        self.assertIn(' WARN ', lines[0])
        self.assertEqual(self.ctl.stderr().count(reason), 1, 'the cause logged more than once')
        self.assertNotIn(self.emu.password, self.ctl.stderr())
        return rec


class TestWorkLoopFailures(FailureBase):
    """§6, one failure mode per test, through the work loop."""

    def test_dns(self):
        self.start_control(certsrv_url='https://adcs.invalid:%d/certsrv' % self.emu.port, resolve='')
        _, csr, key, rid = self.enroll('dns-1')
        self.check_failure(key, rid, 'dns', ['cannot resolve adcs.invalid'], 'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_dns_servers_silent(self):
        # the DNS servers do not answer (firewalled): libcurl's name lookup runs out of
        # connect_timeout_ms with code 28 like any timeout; still a DNS diagnosis
        sk, conf = silent_dns(self.tmp)
        if sk is None:
            self.skipTest(conf)
        self.addCleanup(sk.close)
        host = 'adcs-silent-dns.example.com'
        url = 'https://%s:%d/certsrv' % (host, self.emu.port)
        self.start_control(resolv_conf=conf, certsrv_url=url, resolve='', connect_timeout_ms=1000)
        _, csr, key, rid = self.enroll('dns-silent-1')
        self.check_failure(key, rid, 'dns', ['cannot resolve %s: the DNS servers did not answer' % host,
                                             'connect_timeout_ms 1000', 'Resolving timed out'], 'retry')
        sk.settimeout(0)
        self.assertTrue(sk.recv(512), 'the query reached the silent server')
        # stampedectl doctor, with the same resolver: its DNS check names it too
        pw = adcs.secret_file(os.path.join(self.tmp, 'pw-doctor'), self.emu.password)
        cp = fx.run(['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf,
                     STAMPEDECTL, 'doctor', '--certsrv-url', url, '--auth', 'ntlm', '--user', USER,
                     '--password-file', pw, '--template', 'WebServer'], check=False, timeout=60,
                    env=dict(os.environ, STAMPEDE_CONTROL=tc.STAMPEDE_CONTROL))
        out = cp.stdout.decode(errors='replace')
        self.assertEqual(cp.returncode, 1, out + cp.stderr.decode(errors='replace'))
        bad = [ln for ln in out.splitlines() if ln.startswith('PROBLEM')]
        self.assertEqual(len(bad), 1, out)
        self.assertTrue(bad[0].startswith('PROBLEM dns: cannot resolve %s' % host), out)
        self.assertIn('; fix: ' + FIX['dns'], bad[0])

    def test_connection_refused(self):
        port = fx.free_port()
        self.start_control(certsrv_url='https://%s:%d/certsrv' % (HOST, port),
                           resolve='%s:%d:127.0.0.1' % (HOST, port))
        _, csr, key, rid = self.enroll('refused-1')
        rec = self.check_failure(key, rid, 'connect', ['cannot connect to %s:%d' % (HOST, port)], 'retry')
        self.assertEqual(s(rec['retries']), '1')

    def test_connect_timeout(self):
        self.configure(tls_stall=True)
        self.start_control()
        _, csr, key, rid = self.enroll('stall-1')
        self.check_failure(key, rid, 'timeout-connect', ['during the TLS handshake', 'connect_timeout_ms 1500'],
                           'retry')

    def test_login_timeout(self):
        self.configure(challenge_delay=4.5)
        self.start_control()
        _, csr, key, rid = self.enroll('slow-login-1')
        self.check_failure(key, rid, 'timeout-login', ['during authentication', 'submit_timeout_ms 3000'],
                           'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_enrollment_timeout(self):
        self.start_control()
        self.wait_chain()
        self.emu.control('fault', route='/certsrv/certfnsh.asp', delay=4.5, times=1)
        _, csr, key, rid = self.enroll('slow-post-1')
        rec = self.check_failure(key, rid, 'timeout-submit',
                                 ['waiting for the answer to the POST', 'submit_timeout_ms 3000',
                                  'outcome unknown'], 'submitting')
        # one line, with the CSR hash to find the request on the CA by (§5.13)
        self.assertIn('outcome of the POST of CSR sha256 %s unknown' % hashlib.sha256(csr).hexdigest(),
                      self.lines_about(rid)[0])
        self.assertEqual(s(rec['submits']), '1')
        wait_for(lambda: self.posts_of(csr) == 1, 10, 'the CA took the slow POST')  # committed

    def test_bad_credentials_ntlm(self):
        bad = adcs.secret_file(os.path.join(self.tmp, 'wrong-password-ntlm'), 'not-' + self.emu.password)
        self.start_control(password_file=bad)
        _, csr, key, rid = self.enroll('badpw-ntlm')
        self.check_failure(key, rid, 'auth', ['authentication failed as %s with ntlm' % USER,
                                              'server offers Negotiate, NTLM, Basic', 'HTTP 401',
                                              'Extended Protection'], 'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_bad_credentials_basic(self):
        bad = adcs.secret_file(os.path.join(self.tmp, 'wrong-password-basic'), 'not-' + self.emu.password)
        self.start_control(password_file=bad, auth='basic')
        _, csr, key, rid = self.enroll('badpw-basic')
        self.check_failure(key, rid, 'auth', ['authentication failed as %s with basic' % USER,
                                              'server offers Negotiate, NTLM, Basic'], 'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_auth_negotiate_without_ticket(self):
        # Negotiate (Kerberos) with no ticket for HTTP/host (no KDC here): refused, said so
        self.start_control(auth='negotiate', password_file=None)
        _, csr, key, rid = self.enroll('nego-noticket')
        self.check_failure(key, rid, 'auth', ['authentication failed as %s with negotiate' % USER,
                                              'Negotiate needs a Kerberos ticket for HTTP/%s' % HOST], 'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_negotiate_only(self):
        self.configure(auth='negotiate-only')
        self.start_control()
        _, csr, key, rid = self.enroll('nego-1')
        self.check_failure(key, rid, 'auth-scheme', ['server offers Negotiate only (NTLM disabled), auth is ntlm'],
                           'retry')

    def test_epa_required_ntlm_refused_basic_works(self):
        self.configure(epa='require')
        self.start_control()
        _, csr, key, rid = self.enroll('epa-ntlm')
        self.check_failure(key, rid, 'auth', ['authentication failed as %s with ntlm' % USER,
                                              'IIS may require Extended Protection (channel binding)'], 'retry')
        self.assertIn('EPA: channel binding missing', [e['auth_result'] for e in self.emu.log()])
        self.ctl.stop(15)
        # Basic over HTTPS with the same credentials still works
        self.start_control(auth='basic', consumer='f-epa-basic')
        k, csr2, key2, rid2 = self.enroll('epa-basic')
        self.check_issued(key2, rid2, 'epa-basic', k)

    def test_https_required(self):
        port = self.emu.ready['http_port']
        self.start_control(certsrv_url='http://%s:%d/certsrv' % (HOST, port),
                           resolve='%s:%d:127.0.0.1' % (HOST, port))
        _, csr, key, rid = self.enroll('plain-1')
        self.check_failure(key, rid, 'https-required', ['server requires HTTPS (HTTP 403 on plain http)'], 'retry')
        self.assertEqual(self.posts_of(csr), 0)

    def test_wrong_template(self):
        self.start_control(final=True, template='NoSuchTemplate')
        _, csr, key, rid = self.enroll('tmpl-1')
        rec = self.check_failure(key, rid, 'template', ['template NoSuchTemplate unknown', '0x80094800'],
                                 'done', final=True)
        time.sleep(1.0)                             # a retry would have POSTed by now
        self.assertEqual(self.posts_of(csr), 1)
        self.assertRegex(s(rec['ca_req_id']), r'^[0-9]+$')

    def test_no_permission(self):
        self.start_control(final=True, template='StampedeRestricted')
        _, csr, key, rid = self.enroll('perm-1')
        self.check_failure(key, rid, 'permission', ['account %s may not enroll with template StampedeRestricted'
                                                    % USER, '0x80094012'], 'done', final=True)
        time.sleep(1.0)
        self.assertEqual(self.posts_of(csr), 1)
        self.assertEqual(len(audit_entries(self.r, rid, 'deny')), 1)

    def test_bad_csr_no_retry(self):
        self.start_control(final=True)
        self.wait_chain()
        seq = self.last_seq()
        _, csr, key, rid = self.enroll_p10('badsig-1', adcs.ec_csr('badsig-1', bad_signature=True)[1])
        _, junk, key2, rid2 = self.enroll_p10('junk-1', b'\x30\x03\x02\x01\x00' + os.urandom(64))
        self.check_failure(key, rid, 'bad-csr', ['the CA could not parse or accept the CSR', 'Error Parsing Request',
                                                 '0x80090006'], 'done', final=True)
        self.check_failure(key2, rid2, 'bad-csr', ['Error Parsing Request', '0x8009310B'], 'done', final=True)
        time.sleep(1.5)                             # retry_min_ms 200: a retry storm would show
        posts = [e for e in self.emu.log() if e['seq'] > seq and e['route'] == '/certsrv/certfnsh.asp'
                 and e['body_len'] > 0]
        self.assertEqual(len(posts), 2, posts)      # one each
        self.assertEqual(s(self.record(key)['submits']), '1')
        self.assertEqual(s(self.record(key2)['submits']), '1')

    def test_ca_down_no_renewal0_fallback(self):
        self.configure(ca_down=True)
        self.start_control()
        _, csr, key, rid = self.enroll('cadown-1')
        self.check_failure(key, rid, 'ca-down', ['the web enrollment server cannot reach the CA', '0x800706BA'],
                           'retry')
        wait_for(lambda: 'upstream CA chain not read [ca-down]' in self.ctl.stderr(), BOUND, 'chain failure logged')
        # the chain thread does not guess Renewal=0 when certcarc.asp has no nRenewals
        self.assertEqual([e for e in self.emu.log() if e['route'] in ('/certsrv/certnew.p7b', '/certsrv/certnew.cer')],
                         [])
        self.assertEqual(self.r.command('EXISTS', 'stp:ca:upstream'), 0)

    def test_server_error_500_post_503_fetch(self):
        self.start_control()
        self.wait_chain()
        # 500 to the POST: the page may have failed after the CA took it -> outcome unknown
        self.emu.control('fault', route='/certsrv/certfnsh.asp', status=500, times=1)
        _, csr, key, rid = self.enroll('err500-1')
        self.check_failure(key, rid, 'http', ['server error: HTTP 500', 'outcome unknown'], 'submitting')
        self.emu.control('clear-faults')
        # 503 to the certificate download: a GET, plainly retried later, the id kept
        self.emu.control('fault', route='/certsrv/certnew.cer', status=503, times=1)
        _, csr2, key2, rid2 = self.enroll('err503-1')
        rec = self.check_failure(key2, rid2, 'http', ['server error: HTTP 503'], 'retry')
        self.assertRegex(s(rec['ca_req_id']), r'^[0-9]+$')
        self.assertEqual(self.posts_of(csr2), 1)


class TestTlsProfiles(FailureBase):
    """Each E2 server certificate profile on its own emulator: a distinct
    class and cause in the record and the log, no HTTP request got through."""
    EXPECT = [
        ('self-signed', 'tls-self-signed', ['IIS certificate of %s is self-signed and not trusted' % HOST,
                                            'TLS verify 18']),
        ('wrong-name', 'tls-name', ['IIS certificate does not cover %s' % HOST]),
        ('not-yet-valid', 'tls-clock', ['IIS certificate of %s is not yet valid at local time' % HOST,
                                        'TLS verify 9']),
        ('expired', 'tls-clock', ['IIS certificate of %s has expired at local time' % HOST, 'TLS verify 10']),
        ('leaf-only', 'tls-untrusted', ['IIS certificate of %s not trusted (chain incomplete' % HOST]),
    ]

    def test_tls_profiles(self):
        for profile, diag, words in self.EXPECT:
            with self.subTest(profile=profile):
                self.r.command('FLUSHALL')
                emu = adcs.Emulator(self.tmp, name='emu-' + profile, args=['--tls-profile', profile]).start()
                try:
                    ctl = self.start_control(emu=emu, consumer='f-tls-' + profile)
                    _, csr, key, rid = self.enroll('tls-' + profile)
                    self.check_failure(key, rid, diag, words, 'retry')
                    self.assertEqual(emu.log(), [])
                    ctl.stop(15)
                finally:
                    emu.stop()


class TestLongCause(FailureBase):
    """A realistic deployment's names are longer than the tests' (a FQDN, a
    ca_bundle under /etc): the record keeps the connector's whole cause line
    (up to 639 characters), fix included."""

    def test_long_cause_keeps_the_fix(self):
        host = 'adcs-web01.enrollment.pki.corp.example.com'
        emu = adcs.Emulator(self.tmp, name='emu-long', args=['--tls-profile', 'leaf-only', '--host', host]).start()
        try:
            bundle = os.path.join(self.tmp, 'etc', 'stampede', 'trust', 'enterprise-root-ca-bundle.pem')
            os.makedirs(os.path.dirname(bundle))
            with open(emu.ready['tls_root'], 'rb') as src, open(bundle, 'wb') as dst:
                dst.write(src.read())
            self.start_control(emu=emu, certsrv_url='https://%s:%d/certsrv' % (host, emu.port),
                               resolve='%s:%d:127.0.0.1' % (host, emu.port), ca_bundle=bundle)
            _, csr, key, rid = self.enroll('SEP001122334455')
            rec = self.check_failure(key, rid, 'tls-untrusted', ['IIS certificate of %s not trusted' % host,
                                                                 bundle], 'retry')
            self.assertGreater(len(rec['reason']), 600)
            self.assertTrue(s(rec['reason']).endswith('or install the missing intermediate on IIS'),
                            s(rec['reason']))
        finally:
            emu.stop()


class TestScenarios(FailureBase):
    """§7.5 rows not covered elsewhere, through the work loop."""

    def test_page_variants(self):
        self.start_control()
        for variant in ('text', 'script'):
            with self.subTest(variant=variant):
                self.configure(force_variant=variant)
                k, csr, key, rid = self.enroll('variant-' + variant)
                self.check_issued(key, rid, 'variant-' + variant, k)
                (post,) = [e for e in self.emu.log() if e['route'] == '/certsrv/certfnsh.asp'
                           and e['status'] == 200 and e['variant']][-1:]
                self.assertEqual(post['variant'], variant)
                self.assertEqual(post['req_id'], int(self.record(key)['ca_req_id']))

    def test_officer_denial(self):
        self.start_control(final=True, template='StampedeManual')
        _, csr, key, rid = self.enroll('officer-1')
        rec = wait_for(lambda: (lambda r: r if s(r.get('ca_state')) == 'approval' else None)(self.record(key)),
                       BOUND, 'waiting for approval')
        self.emu.control('deny', id=int(rec['ca_req_id']))
        rec = self.wait_state(key, 'rejected')
        reason = s(rec['reason'])
        self.assertEqual(s(rec['ca_diag']), 'denied')
        self.assertIn('Denied by EMU\\ca-officer', reason)
        self.assertIn('0x80094014', reason)
        self.assertIn('; fix: ' + 'ask the CA administrator', reason)
        self.assertEqual(self.posts_of(csr), 1)
        rejected = [ln for ln in self.lines_about(rid) if 'rejected' in ln]
        self.assertEqual(len(rejected), 1)
        self.assertIn('[denied]: ' + reason, rejected[0])

    def test_unknown_id_on_poll(self):
        # the record holds a CA request id the CA does not know (another CA, or reinstalled)
        self.start_control(final=True)
        _, csr = adcs.ec_csr('ghost-id')
        key, rid, fields = tc.record_fields('ghost-id', csr, 'est', '')
        self.r.command('HSET', key, *fields)
        self.r.command('HSET', key, 'ca_req_id', '99999', 'ca_state', 'submitted', 'submits', '1')
        self.r.command('ZADD', 'stp:reqs:open', int(time.time()), rid)
        self.r.command('XADD', 'stp:upstream', '*', 'key', key, 'id', rid)
        rec = self.check_failure(key, rid, 'unknown-id', ['the CA does not know request 99999', '0x80094004'],
                                 'done', final=True)
        self.assertEqual(s(rec['submits']), '1')      # polled, never POSTed
        self.assertEqual([e for e in self.emu.log() if e['route'] == '/certsrv/certfnsh.asp'], [])

    def test_idle_connection_closed_by_iis(self):
        # IIS's idle timeout (0.5 s) is far below max_conn_age_s (100 s): the pooled connection
        # is dead when the next request comes; stampede-control logs in again without a failure
        self.configure(idle_timeout=0.5)
        self.start_control()
        self.wait_chain()
        k1, csr1, key1, rid1 = self.enroll('idle-1')
        self.check_issued(key1, rid1, 'idle-1', k1)
        time.sleep(1.2)
        seq = self.last_seq()
        k2, csr2, key2, rid2 = self.enroll('idle-2')
        rec = self.check_issued(key2, rid2, 'idle-2', k2)
        self.assertNotIn('retries', rec)
        self.assertEqual(s(rec['submits']), '1')
        self.assertEqual((self.posts_of(csr1), self.posts_of(csr2)), (1, 1))
        log = self.upstream_log_since(seq)
        self.assertEqual([(e['method'], e['ntlm_leg']) for e in log if e['route'] == '/certsrv/certfnsh.asp'],
                         [('POST', 1), ('POST', 3)], log)     # a new NTLM handshake
        self.assertNotIn('upstream failed', self.ctl.stderr())

    def test_reset_mid_post_answer(self):
        # TCP RST in the middle of the answer to the POST: the CA took it, the client cannot
        # know: outcome unknown, resubmitted once (audited), then issued
        self.start_control(final=True)
        self.wait_chain()
        self.emu.control('fault', route='/certsrv/certfnsh.asp', rst_after=300, times=1)
        k, csr, key, rid = self.enroll('rst-post')
        rec = self.check_issued(key, rid, 'rst-post', k)
        self.assertEqual(self.posts_of(csr), 2)
        self.assertEqual((s(rec['submits']), s(rec['unknown_submits'])), ('2', '1'))
        resub = audit_entries(self.r, rid, 'upstream-resubmit')
        self.assertEqual(len(resub), 1)
        lines = self.lines_about(rid)
        self.assertTrue([ln for ln in lines if 'outcome of the POST of CSR sha256' in ln and '[timeout-submit]' in ln
                         and 'lost after the POST body was sent' in ln], lines)
        self.assertTrue([ln for ln in lines if 'submitting again' in ln], lines)
        (cut,) = [e for e in self.emu.log() if 'fault: reset' in (e['outcome'] or '')]
        self.assertEqual(cut['route'], '/certsrv/certfnsh.asp')

    def test_reset_mid_fetch(self):
        # RST in the middle of the certificate download: a GET, retried on a new connection;
        # the request id is kept, nothing is POSTed again
        self.start_control(final=True)
        self.wait_chain()
        self.emu.control('fault', route='/certsrv/certnew.cer', rst_after=300, times=1)
        k, csr, key, rid = self.enroll('rst-fetch')
        rec = self.check_issued(key, rid, 'rst-fetch', k)
        self.assertEqual(self.posts_of(csr), 1)
        self.assertEqual(s(rec['submits']), '1')
        self.assertEqual(audit_entries(self.r, rid, 'upstream-resubmit'), [])
        lines = [ln for ln in self.lines_about(rid) if 'upstream failed' in ln]
        self.assertEqual(len(lines), 1, self.lines_about(rid))
        self.assertIn('[connect]', lines[0])
        (cut,) = [e for e in self.emu.log() if 'fault: reset' in (e['outcome'] or '')]
        self.assertEqual(cut['route'], '/certsrv/certnew.cer')

    def test_redirect_not_followed(self):
        self.configure(lowercase_redirect=True)
        base = 'https://%s:%d/CertSrv/certsrv' % (HOST, self.emu.port)
        self.start_control(certsrv_url=base)
        _, csr, key, rid = self.enroll('redirect-1')
        self.check_failure(key, rid, 'redirect', ['unexpected redirect (HTTP 302)', 'not followed'], 'retry')
        log = self.emu.log()
        self.assertEqual([e for e in log if e['path'] == '/certsrv/certsrv/certfnsh.asp'], [],
                         'a request followed the redirect')
        posts = [e for e in log if e['method'] == 'POST' and e['body_len'] > 0]
        self.assertEqual([(e['path'], e['status']) for e in posts], [('/CertSrv/certsrv/certfnsh.asp', 302)])
        self.assertEqual(self.posts_of(csr), 0)


if __name__ == '__main__':
    faulthandler.dump_traceback_later(280, exit=True)   # hard bound below meson's 300 s
    unittest.main(verbosity=2)
