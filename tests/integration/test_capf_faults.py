"""CAPF slow clients, lost connections and resources (capf-protocol.md 6.4)
against the real stampeded, with the strict client capf_client.py:

* R1/R2/R3/R6/R7: the handshake and CAPF state timers, with the shortest
  settings (handshake 2 s, capf_auth_timeout 10 s, capf_keygen_timeout 30 s,
  capf_reply_timeout 10 s). The three CAPF stalls start together in
  setUpClass so their timers run at the same time (the class takes about
  the longest timer, not the sum).
* R8 (and R11): FIN or RST in S1, S3, S5, S6, S7 is recorded at once, long
  before the default timers; a half-closed client still gets its answer.
* R10: a few hundred sessions parked in S3 while new installs complete;
  stampeded's RSS per parked session stays small; every descriptor and
  device lock comes back when they go.
* R13: an external Redis (unix socket, AOF) killed with sessions in S2, S3
  and S5: END 07, no LSC sent that was not persisted, no success recorded
  or announced without the registry; the daemon survives and installs work
  again once Redis is back.
* N8: a public key already bound to another device (also as a compressed
  EC point) is refused at ISSUED; nothing issued for the second device.
* R9: max_per_address: the connection over the limit is refused before TLS.
* R12: one signer, queue_bound 16: a burst of sessions completes or ends 07
  "server busy (signing queue full)", none hangs.
* R14: stampeded killed -9 between ISSUED and the STORE answer: the restart
  releases the killed run's device lock; the retry gets a new LSC at once.
* F5: the start-up warnings about the CAPF certificate; capf_tls_cert.

Every wait is bounded, nothing asserts a duration, every process and socket
is cleaned up. Helpers are those of test_capf.py."""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capf_client as cc  # noqa: E402
import stampede_fixture as fx  # noqa: E402
import test_capf as tc  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

CTL = tc.CTL
STALL_TIMEOUT = 90.0      # client read timeout while a server timer (<= 30 s) runs
CLOSE_BOUND = 30.0        # a server close we wait for (handshake timer 2 s)
# With STAMPEDE_TRANSPORT=dpdk the classes about the transport run over DPDK + lwIP
# (dpdk_fixture.py); those about the registry alone are skipped there.
DPDK = fx.TRANSPORT == 'dpdk'


def ctl(target, *args):
    return fx.run([CTL] + list(target) + [str(a) for a in args])


def rst_close(c):
    """Closes the client's connection with a TCP RST (SO_LINGER 0, no TLS
    close_notify)."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()


def vm_rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for pid %d' % pid)


def fd_count(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


# ================================================================ timers

class TestCapfTimers(tc.CapfCase):
    """R1, R2 (TLS handshake timer), R3 (S1), R6 (S3), R7 (S5)."""
    DAEMON_ARGS = ('--handshake-timeout', '2', '--capf-auth-timeout', '10', '--capf-keygen-timeout', '30',
                   '--capf-reply-timeout', '10')

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stalled = {}
        try:
            target = ['--data-dir', cls.d.data_dir]
            for scenario, stop_at in (('R6', 'key_request'), ('R7', 'store_request')):
                name = tc.CapfCase.dev(scenario)
                ctl(target, 'device', 'add', name, '--op', 'install', '--auth', 'null', '--key', 'ec256')
                c = cc.CapfClient(cls.d.host, cls.d.capf_port, 3, timeout=STALL_TIMEOUT)
                c.connect()
                c.peer = '%s:%d' % (cls.d.peer_host, c.sock.getsockname()[1])
                res = c.install(name, stop_at=stop_at)
                cls.stalled[scenario] = (name, c, res)
            c = cc.CapfClient(cls.d.host, cls.d.capf_port, 3, timeout=STALL_TIMEOUT)
            c.connect()
            c.peer = '%s:%d' % (cls.d.peer_host, c.sock.getsockname()[1])
            cls.stalled['R3'] = (None, c, None)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for _, c, _ in getattr(cls, 'stalled', {}).values():
            c.close()
        super().tearDownClass()

    def test_r1_no_client_hello(self):
        with socket.create_connection((self.d.host, self.d.capf_port), timeout=CLOSE_BOUND) as s:
            closed, _ = fx.wait_closed(s, CLOSE_BOUND)
            self.assertTrue(closed, 'a connection without ClientHello was not closed by the handshake timer')
        self.good_install()

    def test_r2_handshake_stalled(self):
        """ClientHello sent, the server's flight read, then nothing (no
        client Finished): closed by the handshake timer."""
        ctx = cc.make_context()
        with socket.create_connection((self.d.host, self.d.capf_port), timeout=CLOSE_BOUND) as s:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(inc, out, server_side=False)
            with self.assertRaises(ssl.SSLWantReadError):
                obj.do_handshake()
            s.sendall(out.read())                       # ClientHello
            first = s.recv(65536)
            self.assertTrue(first and first[0] == 0x16, 'no TLS handshake record from the server: %r' % first[:16])
            closed, _ = fx.wait_closed(s, CLOSE_BOUND)
            self.assertTrue(closed, 'a stalled handshake was not closed by the handshake timer')
        self.good_install()

    def test_r3_no_auth_response(self):
        _, c, _ = self.stalled['R3']
        keys = set(self.redis.command('KEYS', '*'))
        self.read_end(c)                                # END 07 from the S1 timer
        self.wait_end_log(c, '-', 'timed out before AUTH_RESPONSE')
        self.assertEqual(set(self.redis.command('KEYS', '*')) - keys, set(),
                         'new keys after a session without AUTH_RESPONSE')
        peers = [e.get('peer') for e in self.audit_since('0-0')]
        self.assertNotIn(c.peer, peers, 'a session without AUTH_RESPONSE was recorded')

    def test_r6_keygen_timeout(self):
        name, c, res = self.stalled['R6']
        self.assertEqual(res.stopped_at, 'key_request')
        self.read_end(c)                                # END 07 from the S3 timer
        why = 'Upgrade Failed: Key Generation Failed/Timeout (timed out)'
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op'], dev['lsc_unconfirmed']),
                         ('failed', why, 'install', ''), dev)
        self.assertEqual(self.req_keys(name), [])
        self.assertEqual(self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % name), 0, 'device lock not released')
        res = self.installed(name)                      # a new session works at once
        self.assert_installed_state(name, res)

    def test_r7_store_reply_timeout(self):
        name, c, res = self.stalled['R7']
        self.assertEqual(res.stopped_at, 'store_request')
        first = fx.cert_serial_hex(res.cert_der)
        self.read_end(c)                                # END 07 from the S5 timer
        why = 'Upgrade Failed: Phone Communication Failure (timed out)'
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op'], dev['lsc_unconfirmed'], dev['lsc_serial']),
                         ('failed', why, 'install', first, ''), dev)
        self.assertIn('unconfirmed LSC %s' % first, self.show_text(name))
        # The retry (a new key, as a phone makes) gets a NEW LSC; the first is stale.
        retry = self.session(name, client=self.connect(key_cache='none'))
        self.assertTrue(retry.installed, retry)
        self.assertNotEqual(fx.cert_serial_hex(retry.cert_der), first)
        dev = self.assert_installed_state(name, retry)
        self.assertEqual(dev['stale_lscs'], 1, dev)
        self.assertEqual(self.record(name).get('stale_serials'), first)
        old = self.redis.hgetall('stp:req:{%s}:%s' % (name, hashlib.sha256(res.public_key_der).hexdigest()))
        self.assertEqual((old.get('serial', b'').decode(), old.get('confirmed')), (first, b'0'), old)


# ================================================================ lost connections

class TestCapfDisconnects(tc.CapfCase):
    """R8: FIN or RST in each state is recorded at once (the default timers
    are 120 s and 600 s, far beyond every bound here); R11: half-close."""

    def lost(self, name, op, stop, close, why, version=3):
        """Runs `op` for `name` up to the server's request `stop`, closes with
        `close`, then checks the status `why`, op kept and the lock released."""
        c = self.connect(version)
        if op == 'install':
            res = self.session(name, client=c, stop_at=stop)
            serial = fx.cert_serial_hex(res.cert_der) if res.cert_der else ''
        else:
            c.auth(name)
            m = c.read_msg()
            self.assertEqual(m.opcode, stop, str(m))
            serial = None
        close(c)
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, op), dev)
        if serial is not None:
            self.assertEqual(dev['lsc_unconfirmed'], serial, dev)
        self.wait_log(c.session_id, c.peer, name, 'connection lost: ' + why)
        self.assertTrue(tc.wait_for(lambda: self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % name) == 0,
                                    tc.STATE_BOUND), 'device lock not released')

    def test_r8_s1(self):
        for close in (rst_close, cc.CapfClient.close):
            with self.subTest(close=close.__name__):
                keys = self.redis.command('DBSIZE')
                c = self.connect()
                close(c)
                time.sleep(0.2)             # not asserted: lets a wrong record show up
                self.assertEqual(self.redis.command('DBSIZE'), keys)
        self.good_install()

    def test_r8_s3(self):
        for close in (rst_close, cc.CapfClient.close):
            with self.subTest(close=close.__name__):
                name = self.add(self.dev('R8k'), '--key', 'ec256')
                self.lost(name, 'install', 'key_request', close,
                          'Upgrade Failed: Key Generation Failed/Timeout (connection closed by the phone)')
                self.installed(name)

    def test_r8_s5(self):
        for close in (rst_close, cc.CapfClient.close):
            with self.subTest(close=close.__name__):
                name = self.add(self.dev('R8s'), '--key', 'ec256')
                self.lost(name, 'install', 'store_request', close,
                          'Upgrade Failed: Phone Communication Failure (connection closed by the phone)')
                first = self.show(name)['lsc_unconfirmed']
                res = self.installed(name)
                self.assertNotEqual(fx.cert_serial_hex(res.cert_der), first)

    def test_r8_s6_s7(self):
        for op, request, why in (
                ('troubleshoot', cc.FETCH_CERTIFICATE_REQUEST,
                 'Troubleshoot Failed: Phone Communication Failure (connection closed by the phone)'),
                ('delete', cc.DELETE_CERTIFICATE_REQUEST,
                 'Delete Failed: Phone Communication Failure (connection closed by the phone)')):
            for close in (rst_close, cc.CapfClient.close):
                with self.subTest(op=op, close=close.__name__):
                    name = self.add(self.dev('R8' + op[0]), '--key', 'ec256', op=op)
                    self.lost(name, op, request, close, why)
        self.good_install()

    def test_r8_one_log_line_per_session(self):
        """One log line per session, also for a phone lost after BEGIN: the
        cause, as 'connection lost' (no END_SESSION was sent: the phone is
        gone)."""
        name = self.add(self.dev('R8l'), '--key', 'ec256')
        c = self.connect()
        self.session(name, client=c, stop_at='key_request')
        c.close()
        self.wait_state(name, lambda d: d['status'] == 'failed')
        self.wait_log(c.session_id, c.peer, name,
                      'connection lost: Upgrade Failed: Key Generation Failed/Timeout (connection closed by '
                      'the phone)')
        self.assertEqual(len(self.log_lines(c.session_id)), 1, self.log_lines(c.session_id))

    def test_r11_half_close(self):
        """The client shuts its TCP write side after AUTH_RESPONSE: the server
        still answers, then records the lost phone."""
        c = self.connect()
        c.auth(self.dev('R11u'))
        socket.socket.shutdown(c.sock, socket.SHUT_WR)      # TCP FIN, no TLS close_notify
        m = c.read_msg()
        self.assertEqual((m.opcode, m.get(cc.REASON)), (cc.END_SESSION, b'\x09'), str(m))
        c.close()
        name = self.add(self.dev('R11'), '--key', 'ec256')
        c = self.connect()
        c.auth(name)
        socket.socket.shutdown(c.sock, socket.SHUT_WR)
        self.assertEqual(c.read_msg().opcode, cc.KEY_GENERATE_REQUEST)
        c.close()
        why = 'Upgrade Failed: Key Generation Failed/Timeout (connection closed by the phone)'
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['reason']), ('failed', why), dev)
        self.installed(name)


# ================================================================ parked sessions

def _sanitizer_build():
    """True if stampeded is an AddressSanitizer build (its memory figures
    then include redzones and the quarantine of freed blocks)."""
    out = subprocess.run(['ldd', fx.STAMPEDED], capture_output=True, text=True, check=False).stdout
    return 'libasan' in out


class TestCapfParked(tc.CapfCase):
    """R10: sessions parked in S3 (slow key generation) do not starve new
    ones, cost little memory each and give everything back."""
    PARKED = 300
    # a release build measures ~3 KiB per parked session; ASan's redzones and
    # quarantine multiply what any allocation costs
    PER_SESSION_KIB = 64 * (8 if _sanitizer_build() else 1)

    def test_r10_parked_in_s3(self):
        n = self.PARKED
        names = ['R10-%04d' % i for i in range(n)]
        path = fx.write(os.path.join(self.tmp, 'parked.csv'),
                        'name,op,auth,auth_string,keys,by\n'
                        + ''.join('%s,install,null,,ec256,\n' % nm for nm in names))
        self.ctl('import', path)
        pid = self.d.proc.pid
        # Warm up: a few full sessions and a few parked ones, so the pools exist.
        for _ in range(3):
            self.good_install()
        warm = []
        for i in range(10):
            nm = self.add(self.dev('R10w'), '--key', 'ec256')
            c = self.connect()
            self.session(nm, client=c, stop_at='key_request')
            warm.append(c)
        for c in warm:
            c.close()
        fds0 = fd_count(pid)
        rss0 = vm_rss_kib(pid)
        parked = []
        try:
            for nm in names:
                c = cc.CapfClient(self.d.host, self.d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
                parked.append(c)
                c.connect()
                res = c.install(nm, stop_at='key_request')
                self.assertEqual(res.stopped_at, 'key_request', res)
            rss1 = vm_rss_kib(pid)
            self.assertEqual(self.redis.command('KEYS', 'stp:capf:lock:{R10-*}').__len__(), n)
            per = (rss1 - rss0) / n
            print('R10: %d parked sessions: VmRSS %d -> %d KiB (%.1f KiB per session), fds %d -> %d'
                  % (n, rss0, rss1, per, fds0, fd_count(pid)), file=sys.stderr)
            self.assertLess(per, self.PER_SESSION_KIB, 'VmRSS grew %d KiB for %d parked sessions' % (rss1 - rss0, n))
            # New sessions are not starved.
            for _ in range(3):
                self.good_install()
            # The parked ones are all still there, in S3.
            self.assertEqual(len(self.redis.command('KEYS', 'stp:capf:lock:{R10-*}')), n)
        finally:
            for c in parked:
                c.close()
        # Everything comes back: locks, descriptors; each parked device failed.
        self.assertTrue(tc.wait_for(lambda: not self.redis.command('KEYS', 'stp:capf:lock:{R10-*}'), 30.0),
                        'device locks left after the parked sessions closed')
        why = b'Upgrade Failed: Key Generation Failed/Timeout (connection closed by the phone)'
        reasons = {self.redis.command('HGET', 'stp:dev:{%s}' % nm, 'reason') for nm in names}
        self.assertEqual(reasons, {why})
        self.assertTrue(tc.wait_for(lambda: fd_count(pid) <= fds0, 30.0),
                        'descriptors: %d before, %d after' % (fds0, fd_count(pid)))
        self.good_install()


class TestCapfKeygenBudget(fx.DaemonTestCase):
    """R10's separate budget for sessions parked in key generation
    (capf_max_keygen, split across cores): at the limit new CAPF connections
    are refused before TLS; phones that leave give their place back. One
    small daemon per test, one core (the budget is split across cores: with
    one core the count is exact)."""
    BUDGET = 3

    def setUp(self):
        super().setUp()
        self.d = self.daemon(['--capf-max-keygen', str(self.BUDGET), '--cores', '1', '--drain-timeout', '1'])
        self.target = ['--data-dir', self.d.data_dir]
        self.n = 0

    def client(self):
        c = cc.CapfClient(self.d.host, self.d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        return c

    def device(self, prefix):
        self.n += 1
        name = '%s-%d' % (prefix, self.n)
        ctl(self.target, 'device', 'add', name, '--op', 'install', '--auth', 'null', '--key', 'ec256')
        return name

    def park_until_refused(self):
        """Parks sessions in S3 until a connection is refused before TLS;
        returns the parked clients."""
        parked = []
        for _ in range(2 * self.BUDGET):
            name = self.device('B')
            c = self.client()
            try:
                c.connect()
            except OSError:                 # reset or closed before/during the handshake
                return parked
            res = c.install(name, stop_at='key_request')
            self.assertEqual(res.stopped_at, 'key_request', res)
            parked.append((c, res))
        self.fail('no connection refused with %d sessions parked (capf_max_keygen %d)' % (len(parked), self.BUDGET))

    def install_works(self, bound):
        """True once a fresh device installs within `bound` seconds."""
        def once():
            try:
                return self.client().install(self.device('G')).installed
            except OSError:
                return False
        return tc.wait_for(once, bound, 0.2)

    def test_r10_budget_refuses_before_tls(self):
        parked = self.park_until_refused()
        self.assertEqual(len(parked), self.BUDGET)
        self.assertTrue(tc.wait_for(lambda: 'wait for key generation (capf_max_keygen)' in self.d.stderr(),
                                    tc.LOG_BOUND), 'no "refused before TLS" log line')
        # Other handshakes are not starved: EST still answers.
        r = fx.curl(self.d, 'cacerts')
        self.assertEqual(r.status, 200, r)
        # The parked phones finish: their places come back (they leave with a result, not a drop).
        for c, res in parked:
            _, reason = tc.CapfCase.finish_install(self, c, res)
            self.assertEqual(reason, 1, self.d.stderr()[-2000:])
        self.assertTrue(self.install_works(10.0), 'CAPF still refused after the parked sessions finished')

    def test_r10_budget_given_back_by_lost_phones(self):
        """Phones that disconnect after BEGIN (here: in S3) give their place
        in capf_max_keygen back once their failure is recorded (their
        sessions are freed)."""
        parked = self.park_until_refused()
        self.assertEqual(len(parked), self.BUDGET)
        for c, _ in parked:
            c.close()                       # the phones go away in S3
        self.assertTrue(self.install_works(10.0), 'CAPF refuses every phone after %d dropped out in S3'
                        % len(parked))


class TestCapfLostSessionFreed(fx.DaemonTestCase):
    """R8: a phone lost after BEGIN leaves nothing behind in stampeded."""

    def test_r8_lost_session_freed(self):
        """After a phone closed in S3 and its failure was recorded, nothing of
        its session is left: SIGTERM finds no session open."""
        d = self.daemon(['--drain-timeout', '1'])
        target = ['--data-dir', d.data_dir]
        ctl(target, 'device', 'add', 'R8free', '--op', 'install', '--auth', 'null', '--key', 'ec256')
        c = cc.CapfClient(d.host, d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        c.connect()
        c.install('R8free', stop_at='key_request')
        c.close()
        self.assertTrue(tc.wait_for(lambda: 'session=%08x: connection lost' % c.session_id in d.stderr(),
                                    tc.LOG_BOUND))
        d.stop()
        self.assertNotIn('drain deadline passed', d.stderr())


# ================================================================ Redis down

@unittest.skipIf(DPDK, 'about the registry (an external Redis killed and restarted), not the transport: '
                       'runs in the kernel-transport run')
class TestCapfRedisDown(tc.CapfCase):
    """R13 with an external Redis that is killed and restarted."""

    @classmethod
    def setUpClass(cls):
        cls.class_tmp = tempfile.mkdtemp(prefix='stampede-it-cls-')
        cls.rs = fx.RedisServer(cls.class_tmp, aof=True)
        cls.d = None
        try:
            cls.rs.start()
            cls.d = fx.Daemon(cls.class_tmp, ['--redis', cls.rs.sock], name='shared')
            cls.d.start()
            cls.redis = cls.rs.client
            cls.ctl_target = ['--redis', cls.rs.sock]
            cls._ca_pem = None
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d is not None:
                try:
                    cls.d.stop()
                finally:
                    cls.d.kill()
        finally:
            cls.rs.kill()
            fx.rmtree(cls.class_tmp)

    def test_r13_redis_killed_mid_sessions(self):
        a = self.add(self.dev('R13a'), '--key', 'ec256')        # starts after the kill (S2)
        b = self.add(self.dev('R13b'), '--key', 'ec256')        # in S3 at the kill
        c5 = self.add(self.dev('R13c'), '--key', 'ec256')       # in S5 at the kill
        d = self.add(self.dev('R13d'), '--key', 'ec256')        # after the restart
        cb = self.connect()
        rb = self.session(b, client=cb, stop_at='key_request')
        cc5 = self.connect()
        rc = self.session(c5, client=cc5, stop_at='store_request')
        serial_c = fx.cert_serial_hex(rc.cert_der)
        self.assertEqual(self.show(c5)['lsc_unconfirmed'], serial_c, 'ISSUED precedes the STORE request')

        self.rs.kill()
        # S2: the registry is needed to decide: END 07 right after AUTH_RESPONSE.
        ca = self.connect()
        res = self.session(a, client=ca)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        self.assertEqual(len(res.messages), 2, 'only the hello and END_SESSION')
        self.wait_end_log(ca, a, 'registry (Redis) unavailable')
        # S3 -> S4: the LSC cannot be persisted, so it is not sent.
        key = cc.KEY_POOL.get(rb.key_request, b)
        cb.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.PUBLIC_KEY, cc.public_key_der(key))])
        self.read_end(cb)                   # END 07, not STORE_CERTIFICATE_REQUEST
        self.wait_end_log(cb, b, 'Upgrade Failed: the LSC could not be recorded (registry unavailable); nothing sent')
        # S5: the phone stored the LSC, but success cannot be recorded, so it is not announced.
        cc5.send_msg(cc.STORE_CERTIFICATE_RESPONSE, [(cc.REASON, b'\x01')])
        self.read_end(cc5)                  # END 07, not 01
        self.wait_end_log(cc5, c5, re.compile(r'the outcome could not be recorded.*'))
        self.assertTrue(self.d.running(), 'stampeded died with Redis')

        self.rs.start()
        # Installs work again once the cores have reconnected (bounded retries).
        deadline = time.monotonic() + 30.0
        while True:
            res = self.session(d, client=self.connect())
            if res.installed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertTrue(res.installed, 'no install within 30 s of Redis coming back: %r' % res)
        self.assert_installed_state(d, res)
        # What the registry kept: nothing issued for B, C unconfirmed and not a success (its
        # failure, kept by the core while Redis was down, is recorded once it is back).
        dev_b, dev_c = self.show(b), self.show(c5)
        self.assertEqual((dev_b['lsc_unconfirmed'], dev_b['lsc_serial'], dev_b['op']), ('', '', 'install'), dev_b)
        self.assertNotEqual(dev_b['status'], 'success')
        self.assertEqual(self.req_keys(b), [])
        self.assertEqual((dev_c['status'], dev_c['op'], dev_c['lsc_serial'], dev_c['lsc_unconfirmed']),
                         ('failed', 'install', '', serial_c), dev_c)
        self.assertEqual(dev_c['reason'], 'Upgrade Failed: the outcome could not be recorded (registry unavailable)')
        # A was never locked: it installs at once.
        self.assertEqual(self.show(a)['status'], 'pending')
        self.installed(a)

    def test_r13_retry_after_outage_mid_session(self):
        """A session that held the device lock when Redis died cannot record
        its FAIL then; the core keeps it and records it (releasing the lock)
        as soon as Redis is back, so the phone's retries (3 x 30 s, 1.2)
        succeed, as after a daemon restart (R14)."""
        name = self.add(self.dev('R13r'), '--key', 'ec256')
        fresh = self.add(self.dev('R13f'), '--key', 'ec256')
        c = self.connect()
        res = self.session(name, client=c, stop_at='key_request')
        self.rs.kill()
        try:
            c.send_msg(cc.KEY_GENERATE_RESPONSE,
                       [(cc.PUBLIC_KEY, cc.public_key_der(cc.KEY_POOL.get(res.key_request, name)))])
            self.read_end(c)
        finally:
            self.rs.start()
        ok = tc.wait_for(lambda: self.session(fresh, client=self.connect()).installed, 30.0, 0.5)
        self.assertTrue(ok, 'Redis did not come back')      # not the gap: infrastructure
        deadline = time.monotonic() + 15.0
        while True:
            retry = self.session(name, client=self.connect())
            if retry.installed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertTrue(retry.installed, 'retry refused after the outage (lock TTL %s ms left): %r'
                        % (self.redis.command('PTTL', 'stp:capf:lock:{%s}' % name), retry))


# ================================================================ N8: a key bound to another device

P256_ALG = tc.der(0x30, tc.der(0x06, bytes.fromhex('2a8648ce3d0201')) + tc.der(0x06, bytes.fromhex('2a8648ce3d030107')))


def p256_spki(key, compressed):
    """An EC P-256 SubjectPublicKeyInfo of `key` with its point uncompressed
    (04 X Y, what cryptography writes) or compressed (02/03 X), built by
    hand: both are valid encodings of the same key (SEC 1, RFC 5480)."""
    fmt = (serialization.PublicFormat.CompressedPoint if compressed
           else serialization.PublicFormat.UncompressedPoint)
    point = key.public_key().public_bytes(serialization.Encoding.X962, fmt)
    return tc.der(0x30, P256_ALG + tc.der(0x03, b'\x00' + point))


@unittest.skipIf(DPDK, 'about the registry (the key index), not the transport: runs in the kernel-transport run')
class TestCapfKeyInUse(tc.CapfCase):
    """N8 (capf-protocol.md 3.2 rule 4): a public key already bound to
    another device's LSC is refused at ISSUED, before anything is sent or
    recorded for the second device (stp:capf:key:HASH names the owner; HASH
    is over the canonical SPKI, so another encoding of the key is the same
    key)."""

    def key_index(self, spki_canonical):
        v = self.redis.command('GET', 'stp:capf:key:%s' % hashlib.sha256(spki_canonical).hexdigest())
        return v.decode() if v is not None else None

    def refused_key(self, name, spki, owner):
        """An install of `name` presenting `spki`, bound to `owner`: END 07
        right after the key (no STORE_CERTIFICATE_REQUEST), status failed
        with the owner named, op kept, nothing issued, the lock released, a
        `deny` audited."""
        mark = self.audit_mark()
        c = self.connect()
        res = self.session(name, client=c, key_override=spki)
        self.assertEqual((res.ended_after, res.end_reason), ('key', 7), res)
        self.assertIsNone(res.cert_der)
        self.assertEqual([m[1] for m in res.messages], [0x01, 0x03, 0x0f], 'no STORE_CERTIFICATE_REQUEST')
        why = 'Upgrade Failed: public key already bound to device %s' % owner
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        self.assertEqual((dev['lsc_unconfirmed'], dev['lsc_serial'], dev['stale_lscs']), ('', '', 0), dev)
        self.assertEqual(self.req_keys(name), [], 'a request record for a refused key')
        self.assertEqual(self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % name), 0, 'device lock not released')
        ev = self.audit_since(mark, name)
        self.assertTrue(ev, 'no audit entry for the refusal')
        self.assertEqual({e['event'] for e in ev}, {'deny'}, ev)
        self.assertIn('public key already bound to device %s' % owner, ' | '.join(e.get('reason', '') for e in ev))
        return dev

    def test_n8_key_of_another_device(self):
        a = self.add(self.dev('N8a'), '--key', 'ec256')
        b = self.add(self.dev('N8b'), '--key', 'ec256')
        ra = self.installed(a)
        self.assert_installed_state(a, ra)
        k = ra.public_key_der
        self.assertEqual(self.key_index(k), a, 'the key index does not name A')
        self.refused_key(b, k, a)
        self.assertEqual(self.key_index(k), a, 'the refusal moved the key to B')
        self.assertEqual(self.show(a)['lsc_serial'], fx.cert_serial_hex(ra.cert_der), 'A changed')
        # B's lock was released and its operation kept: its own key works at once.
        rb = self.installed(b)
        self.assertNotEqual(rb.public_key_der, k)
        self.assert_installed_state(b, rb)
        self.assertEqual(self.key_index(rb.public_key_der), b)

    def test_n8_same_key_compressed_point(self):
        """The same EC P-256 key, once uncompressed (device A's install) and
        once compressed (device C): refused too, the server hashes the
        canonical SPKI, not the bytes sent."""
        a = self.add(self.dev('N8c'), '--key', 'ec256')
        c = self.add(self.dev('N8d'), '--key', 'ec256')
        key = tc.ec_key('P-256')
        plain, short = p256_spki(key, False), p256_spki(key, True)
        self.assertEqual(plain, cc.public_key_der(key), 'the hand-made SPKI encoder is right')
        self.assertNotEqual(plain, short)
        ra = self.installed(a, key=key)
        self.assertEqual(ra.public_key_der, plain)
        self.assert_installed_state(a, ra)
        self.refused_key(c, short, a)
        self.installed(c)                   # its own key: the lock was released


# ================================================================ R9: connections per address

class TestCapfMaxPerAddress(fx.DaemonTestCase):
    """R9: max_per_address 3, one core (the count is per core: with one it
    is exact). Three CAPF connections from 127.0.0.1 are served, the fourth
    is refused before TLS (no hello) and logged; closing one makes room."""
    LIMIT = 3

    def setUp(self):
        super().setUp()
        self.d = self.daemon(['--max-per-address', str(self.LIMIT), '--cores', '1', '--drain-timeout', '1'])
        self.target = ['--data-dir', self.d.data_dir]

    def client(self):
        c = cc.CapfClient(self.d.host, self.d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        return c

    def refused(self):
        """One TCP connection + TLS handshake that must fail before any
        hello; returns the local port (the peer the server logs)."""
        raw = socket.create_connection((self.d.host, self.d.capf_port), timeout=tc.CLIENT_TIMEOUT)
        port = raw.getsockname()[1]
        try:
            tls = cc.make_context().wrap_socket(raw, suppress_ragged_eofs=False)
        except OSError:                     # reset / EOF during the handshake (ssl.SSLError is an OSError)
            return port
        finally:
            raw.close()
        try:
            got = tls.recv(4096)
        except OSError:
            got = b''
        finally:
            tls.close()
        self.fail('connection %d over max_per_address %d completed TLS (then read %r)'
                  % (self.LIMIT + 1, self.LIMIT, got[:16]))

    def served(self):
        """A new client whose hello arrives, or None if it was refused."""
        c = self.client()
        try:
            c.connect()
        except (OSError, cc.CapfError):
            c.close()
            return None
        return c

    def test_r9_fourth_connection_refused_before_tls(self):
        held = []
        for _ in range(self.LIMIT):
            c = self.client()
            c.connect()                     # TLS done and the hello read
            self.assertEqual(c.hello.opcode, cc.AUTH_REQUEST)
            held.append(c)
        port = self.refused()
        line = 'peer=%s:%d refused before TLS: %d connections from this address on this core ' \
               '(max_per_address)' % (self.d.peer_host, port, self.LIMIT)
        self.assertTrue(tc.wait_for(lambda: line in self.d.stderr(), tc.LOG_BOUND),
                        'no log line %r:\n%s' % (line, self.d.stderr()[-2000:]))
        self.assertNotIn('CAPF peer=%s:%d ' % (self.d.peer_host, port), self.d.stderr(), 'the refused connection got a session')
        # EST counts against the same address budget.
        cp = fx.run(['curl', '-sS', '--max-time', '20', '--cacert', self.d.ca_path, '-o', '/dev/null',
                     self.d.url('cacerts')], check=False)
        self.assertNotEqual(cp.returncode, 0, 'an EST connection over max_per_address was served')
        # The held sessions are untouched: one completes an install.
        name = 'R9-%d' % port
        ctl(self.target, 'device', 'add', name, '--op', 'install', '--auth', 'null', '--key', 'ec256')
        res = held[0].install(name)
        self.assertTrue(res.installed, res)
        # held[0] is closed now: its place comes back (once the server has freed the session).
        got = []
        self.assertTrue(tc.wait_for(lambda: got.append(self.served()) or got[-1], 10.0, 0.2),
                        'no connection served after one of %d closed' % self.LIMIT)
        self.assertEqual(got[-1].hello.opcode, cc.AUTH_REQUEST)
        # ... and only one: the limit still holds.
        self.refused()
        self.d.stop()


# ================================================================ R14: stampeded killed -9

class TestCapfDaemonKilled(tc.CapfCase):
    """R14: stampeded killed -9 between persisting the LSC (ISSUED) and the
    phone's STORE answer. Its embedded redis-server is its child with
    PR_SET_PDEATHSIG SIGTERM: it shuts down cleanly with the AOF (the ISSUED
    write was in the AOF before its reply), and the restart on the same data
    directory starts a new one. The device lock (TTL ~13 min) names the
    killed run: the restart releases it, so the phone's retry gets a new LSC
    at once."""

    def test_r14_killed_between_issued_and_store(self):
        name = self.add(self.dev('R14'), '--key', 'ec256')
        c = self.connect()
        res = self.session(name, client=c, stop_at='store_request')
        self.assertEqual(res.stopped_at, 'store_request', res)
        first = fx.cert_serial_hex(res.cert_der)
        lock = 'stp:capf:lock:{%s}' % name
        holder = self.redis.command('GET', lock)
        self.assertTrue(holder, 'no device lock while the session is in S5')
        self.assertEqual(self.show(name)['lsc_unconfirmed'], first, 'ISSUED precedes the STORE request')

        d = self.d
        d.proc.kill()                       # SIGKILL: no drain, no FAIL recorded
        d.proc.wait(10)
        d._reap()
        with self.assertRaises((OSError, cc.CapfError)):
            c.read_msg()                    # the phone sees the connection go
        c.close()
        d.start()                           # same data directory, same ports
        self.assertTrue(tc.wait_for(self.redis.ping, 10.0), 'embedded Redis not back')
        self.assertIn('CAPF: released 1 device lock(s) left by an earlier run of this instance', d.stderr())
        self.assertEqual(self.redis.command('EXISTS', lock), 0, 'the killed run\'s lock is still held')

        dev = self.show(name)
        self.assertEqual((dev['op'], dev['lsc_unconfirmed'], dev['lsc_serial']), ('install', first, ''), dev)
        self.assertNotEqual(dev['status'], 'success', dev)
        self.assertIn('unconfirmed LSC %s' % first, self.show_text(name))
        req = self.redis.hgetall('stp:req:{%s}:%s' % (name, hashlib.sha256(res.public_key_der).hexdigest()))
        self.assertEqual((req.get('serial', b'').decode(), req.get('confirmed')), (first, b'0'), req)

        # The phone's retry (a new key, as phones make) right after the restart: a NEW LSC, not "busy".
        c = self.connect(key_cache='none')
        retry = self.session(name, client=c)
        self.assertTrue(retry.installed, 'retry after the restart: %r\n%s' % (retry, self.log_lines(c.session_id)))
        second = fx.cert_serial_hex(retry.cert_der)
        self.assertNotEqual(second, first)
        self.wait_log(c.session_id, c.peer, name, 'LSC installed (Upgrade Success) serial=%s' % second)
        dev = self.assert_installed_state(name, retry)
        self.assertEqual(dev['stale_lscs'], 1, dev)
        self.assertEqual(self.record(name).get('stale_serials'), first)


# ================================================================ F5: the CAPF certificate

CAPF_CERT_WARNINGS = ('CAPF certificate CN', 'CAPF certificate key is', 'CAPF certificate (the CA',
                      'CAPF certificate lacks keyUsage')


def pem_file_der(path):
    with open(path, 'rb') as f:
        return ssl.PEM_cert_to_DER_cert(f.read().decode())


def capf_peer_der(d):
    """The certificate the CAPF listener presents (one TLS handshake)."""
    with socket.create_connection((d.host, d.capf_port), timeout=tc.CLIENT_TIMEOUT) as raw:
        with cc.make_context().wrap_socket(raw) as s:
            return s.getpeercert(binary_form=True)


class TestCapfCertificate(fx.DaemonTestCase):
    """F5: start-up warnings about the certificate phones see on the CAPF
    listener, and capf_tls_cert."""

    def warnings(self, d):
        return [ln for ln in d.stderr().splitlines() if any(w in ln for w in CAPF_CERT_WARNINGS)]

    def test_f5_defaults_warn(self):
        d = self.daemon(['--drain-timeout', '1'])
        text = d.stderr()
        self.assertIn("CAPF certificate CN 'Stampede Local CA' does not start with 'CAPF-' as phones' ITL entries "
                      "expect (a new CA with ca_name = CAPF-<8 hex digits>, or capf_tls_cert = tls)", text)
        self.assertIn('CAPF certificate key is EC-256: phones expect RSA-2048 (FIPS phones refuse less, ITLs take '
                      'at most 2048; ca_key = rsa2048 for a new CA)', text)
        self.assertEqual(len(self.warnings(d)), 2, self.warnings(d))    # CA:TRUE pathlen:0 and keyUsage are right
        self.assertEqual(capf_peer_der(d), pem_file_der(d.ca_path), 'capf_tls_cert = ca: the CA certificate')
        d.stop()

    def test_f5_capf_style_ca_no_warning(self):
        d = self.daemon(['--ca-key', 'rsa2048', '--ca-name', 'CAPF-1a2b3c4d', '--drain-timeout', '1'])
        self.assertEqual(self.warnings(d), [])
        peer = capf_peer_der(d)
        self.assertEqual(peer, pem_file_der(d.ca_path))
        with open(d.ca_path, 'rb') as f:
            ca = x509.load_pem_x509_certificate(f.read())
        self.assertEqual([a.value for a in ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)], ['CAPF-1a2b3c4d'])
        self.assertIsInstance(ca.public_key(), rsa.RSAPublicKey)
        self.assertEqual(ca.public_key().key_size, 2048)
        d.stop()

    def test_f5_capf_tls_cert_tls(self):
        d = self.daemon(['--capf-tls-cert', 'tls', '--drain-timeout', '1'])
        tls_crt = os.path.join(d.data_dir, 'tls.crt')
        peer = capf_peer_der(d)
        self.assertEqual(peer, pem_file_der(tls_crt), 'capf_tls_cert = tls: the CAPF listener must present tls.crt')
        self.assertNotEqual(peer, pem_file_der(d.ca_path))
        # Phones still get LSCs from the CA.
        ctl(['--data-dir', d.data_dir], 'device', 'add', 'F5tls', '--op', 'install', '--auth', 'null', '--key', 'ec256')
        c = cc.CapfClient(d.host, d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        res = c.install('F5tls')
        self.assertTrue(res.installed, res)
        lsc = fx.write(os.path.join(self.tmp, 'f5.lsc.pem'), tc.pem(res.cert_der))
        vr = fx.verify(d.ca_path, lsc)
        self.assertEqual(vr.returncode, 0, vr)
        d.stop()

# ================================================================ R12: signing queue full

class TestCapfSigningQueueFull(fx.DaemonTestCase):
    """R12: one signer, queue_bound 16, one core; a burst of sessions whose
    authentication strings (sha512crypt on the signer) are checked at the
    same time. Every session either completes or ends with END_SESSION 07
    and "Upgrade Failed: server busy (signing queue full)" recorded (not an
    authentication failure, the string not consumed, the lock released);
    none hangs. The burst: every AUTH_RESPONSE is written before any answer
    is read, so the BEGIN replies come back together and their jobs are
    submitted in one go, far faster than one signer checks strings (a few
    ms each); the keys of the sessions that get through are sent as a burst
    too. Whether a given session is shed depends on timing; that some are is
    checked over at most ROUNDS bursts."""
    N = 40
    ROUNDS = 3
    PIN = '246810'
    BUSY = 'Upgrade Failed: server busy (signing queue full)'

    def setUp(self):
        super().setUp()
        self.d = self.daemon(['--signers', '1', '--queue-bound', '16', '--cores', '1', '--drain-timeout', '1'])
        self.target = ['--data-dir', self.d.data_dir]
        self.redis = fx.RedisClient(os.path.join(self.d.data_dir, 'redis.sock'))

    def show(self, name):
        return json.loads(ctl(self.target, 'device', 'show', name, '--json').stdout)

    def client(self):
        c = cc.CapfClient(self.d.host, self.d.capf_port, 3, timeout=tc.CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        return c

    def end(self, c, m, outcome):
        """m must be END_SESSION; returns (outcome, reason) after the close."""
        self.assertEqual(m.opcode, cc.END_SESSION, str(m))
        reason = m.get(cc.REASON)[0]
        self.assertIn(c.expect_eof(), ('close_notify', 'eof', 'reset'))
        c.close()
        return outcome, reason

    def burst(self, names):
        """One burst; returns {name: (outcome, END reason, session id, peer)}."""
        clients = []
        for nm in names:
            c = self.client()
            c.connect()
            c.peer = '%s:%d' % (self.d.peer_host, c.sock.getsockname()[1])
            clients.append((nm, c))
        for nm, c in clients:                           # every AUTH_RESPONSE first
            c.auth(nm, password=self.PIN)
        out, keyed = {}, []
        for nm, c in clients:
            m = c.read_msg()
            if m.opcode == cc.END_SESSION:
                out[nm] = self.end(c, m, 'auth')
                continue
            self.assertEqual(m.opcode, cc.KEY_GENERATE_REQUEST, str(m))
            key = cc.KEY_POOL.get(cc.parse_key_request(m, 3), nm)
            keyed.append((nm, c, key))
        for nm, c, key in keyed:                        # every key next
            c.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.PUBLIC_KEY, cc.public_key_der(key))])
        stored = []
        for nm, c, key in keyed:
            m = c.read_msg()
            if m.opcode == cc.END_SESSION:
                out[nm] = self.end(c, m, 'key')
                continue
            self.assertEqual(m.opcode, cc.STORE_CERTIFICATE_REQUEST, str(m))
            c.send_msg(cc.STORE_CERTIFICATE_RESPONSE, [(cc.REASON, b'\x01')])
            stored.append((nm, c))
        for nm, c in stored:
            out[nm] = self.end(c, c.read_msg(), 'store')
        return {nm: out[nm] + (c.session_id, c.peer) for nm, c in clients}

    def log_line(self, sid, peer, name, what):
        line = 'CAPF peer=%s device=%s session=%08x: %s' % (peer, name, sid, what)
        self.assertTrue(tc.wait_for(lambda: line in self.d.stderr(), tc.LOG_BOUND), 'no log line %r' % line)

    def test_r12_signing_queue_full(self):
        shed_names, total = [], 0
        for rnd in range(self.ROUNDS):
            names = ['R12-%d-%03d' % (rnd, i) for i in range(self.N)]
            path = fx.write(os.path.join(self.tmp, 'r12-%d.csv' % rnd),
                            'name,op,auth,auth_string,keys,by\n'
                            + ''.join('%s,install,string,%s,ec256,\n' % (nm, self.PIN) for nm in names))
            ctl(self.target, 'import', path)
            results = self.burst(names)
            total += len(results)
            for nm, (stage, reason, sid, peer) in sorted(results.items()):
                dev = self.show(nm)
                if stage == 'store':
                    self.assertEqual(reason, 1, (nm, stage, reason))
                    self.assertEqual((dev['status'], dev['op']), ('success', 'none'), dev)
                    continue
                # Shed: END 07 at once, recorded as busy, nothing else changed.
                self.assertEqual(reason, 7, (nm, stage, reason))
                self.log_line(sid, peer, nm, 'END_SESSION reason 7: ' + self.BUSY)
                self.assertEqual((dev['status'], dev['reason'], dev['op'], dev['auth_failures'],
                                  dev['lsc_unconfirmed'], dev['lsc_serial']),
                                 ('failed', self.BUSY, 'install', 0, '', ''), dev)
                self.assertEqual(self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % nm), 0, nm)
                self.assertNotEqual(self.redis.command('HGET', 'stp:dev:{%s}' % nm, 'auth_hash'), b'$used')
                shed_names.append(nm)
            self.assertTrue(self.d.running())
            if shed_names:
                break
        print('\nR12: %d of %d sessions shed (signing queue full) in %d burst(s) of %d'
              % (len(shed_names), total, rnd + 1, self.N), file=sys.stderr)
        if not shed_names:
            self.skipTest('the signer kept up with %d bursts of %d sessions: the queue never filled' % (self.ROUNDS,
                                                                                                    self.N))
        # A shed phone's retry (its string unused, its lock released) installs.
        nm = shed_names[0]
        c = self.client()
        res = c.install(nm, password=self.PIN)
        self.assertTrue(res.installed, res)
        self.assertEqual(self.show(nm)['status'], 'success')
        self.d.stop()

if __name__ == '__main__':
    fx.main()
