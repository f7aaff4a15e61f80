#!/usr/bin/env python3
"""test_control: stampede-control (control/) in online CA mode, as real
processes: a private redis-server, the ADCS web-enrollment emulator
(tests/certsrv/adcs_emulator.py, as a process with its JSON control channel)
and stampede-control (path from $STAMPEDE_CONTROL).

The test plays stampeded's half of the contract (docs/redis-schema.md,
"Online CA mode"): it writes the pending request record
`stp:req:{IDENTITY}:SHA256` (id identity protocol peer csr p10 state pending
mode online ca_state queued received updated attempts notify), adds the id
to `stp:reqs:open` and appends `key`/`id` to the stream `stp:upstream`, as
stampeded's request script does, and SUBSCRIBEs to the record's notify
channel. It then checks what stampede-control wrote: the record, the audit
stream, the device record, the wait set, `stp:ca:upstream`, and what the
emulator saw (its request log and the requests it created).

Between stampede-control and the emulator sits a TCP forwarder owned by the
test, so "the upstream is down" is a refused connection on the upstream's
address while the emulator keeps its TLS certificate, its CA and its
request table (a restarted emulator process generates a new TLS PKI, which
stampede-control would rightly refuse to trust).

Everything binds 127.0.0.1 (Redis: a unix socket); secrets are generated at
test time (the emulator's random password reaches stampede-control through a
0600 password file); every wait is bounded; every process is stopped or
killed on the way out. Python 3.11 standard library + `cryptography`.
"""
import hashlib
import os
import select
import socket
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'certsrv'))

from cryptography import x509                                        # noqa: E402
from cryptography.hazmat.primitives import serialization            # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7      # noqa: E402

import adcs_fixture as adcs                                          # noqa: E402
import stampede_fixture as fx                                        # noqa: E402
from adcs_fixture import HOST, wait_for                              # noqa: E402

STAMPEDE_CONTROL = os.environ.get('STAMPEDE_CONTROL') or os.path.join(fx.BUILD_ROOT, 'control',
                                                                      'stampede-control')
READY_TEXT = 'stampede-control %s ready:' % fx.VERSION
ISSUE_BOUND = 20.0           # seconds for a request to reach its final state
KEEP = fx.KEEP


def s(v):
    return v.decode(errors='replace') if isinstance(v, bytes) else v


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------- processes

class Forwarder:
    """Forwarder is a TCP relay 127.0.0.1:port -> 127.0.0.1:target on
    threads. down() closes the listener and every relayed connection (the
    port then refuses connections); up() listens on the same port again."""

    def __init__(self, target):
        self.target = target
        self.port = fx.free_port()
        self.lsock = None
        self.lock = threading.Lock()
        self.conns = set()
        self.threads = []

    def up(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(('127.0.0.1', self.port))
        ls.listen(64)
        self.lsock = ls
        t = threading.Thread(target=self._accept, args=(ls,), daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def _accept(self, ls):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(('127.0.0.1', self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.update((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 1.0)
                for x in r:
                    data = x.recv(65536)
                    if not data:
                        return
                    (b if x is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for x in (a, b):
                with self.lock:
                    self.conns.discard(x)
                try:
                    x.close()
                except OSError:
                    pass

    def down(self):
        if self.lsock is not None:
            try:
                self.lsock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.lsock.close()
            self.lsock = None
        with self.lock:
            conns = list(self.conns)
        for x in conns:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Control(fx.Daemon):
    """Control is one stampede-control process (fx.Daemon's start/stop/kill/
    sanitizer checks, its own command line and ready line)."""
    PROG = 'stampede-control'
    READY = READY_TEXT

    def __init__(self, workdir, settings, name='control', args=()):
        super().__init__(workdir, args=args, name=name, listen_flag=False)
        self.settings = dict(settings)

    def command(self):
        return [STAMPEDE_CONTROL] + adcs.setting_flags(self.settings) + self.args


def run_control(args, timeout=60):
    """run_control runs a short stampede-control command (doctor, --help);
    returns (exit code, stdout, stderr); a sanitizer report fails."""
    cp = fx.run([STAMPEDE_CONTROL] + [str(a) for a in args], timeout=timeout, check=False)
    out, err = cp.stdout.decode(errors='replace'), cp.stderr.decode(errors='replace')
    adcs.check_sanitizers(err, args)
    return cp.returncode, out, err


# ---------------------------------------------------------------- Redis side

class Subscriber:
    """Subscriber holds one SUBSCRIBE connection (unix socket) and collects
    the messages published on `channel` on a thread."""

    def __init__(self, sock_path, channel):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(sock_path)
        self.f = self.sock.makefile('rb')
        reader = fx.RedisClient(sock_path)
        ch = channel.encode()
        self.sock.sendall(b'*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n' % (len(ch), ch))
        self._read = reader._read
        ack = self._read(self.f)
        assert ack[0] == b'subscribe', ack
        self.messages = []
        self.cond = threading.Condition()
        self.sock.settimeout(None)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            while True:
                m = self._read(self.f)
                if m and m[0] == b'message':
                    with self.cond:
                        self.messages.append(m[2].decode())
                        self.cond.notify_all()
        except (OSError, ValueError, AssertionError):
            return

    def wait(self, payload, bound=ISSUE_BOUND):
        with self.cond:
            ok = self.cond.wait_for(lambda: payload in self.messages, bound)
        if not ok:
            raise AssertionError('no notification %r within %.0f s (got %r)' % (payload, bound, self.messages))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.f.close()
        self.sock.close()


def record_names(identity, csr_der):
    h = hashlib.sha256(csr_der).hexdigest()
    return 'stp:req:{%s}:%s' % (identity, h), '%s:%s' % (identity, h)


def record_fields(identity, csr_der, protocol, notify):
    key, rid = record_names(identity, csr_der)
    now = str(int(time.time()))
    return key, rid, ['id', rid, 'identity', identity, 'protocol', protocol, 'peer', '127.0.0.1:40000',
                      'csr', csr_der, 'p10', csr_der, 'state', 'pending', 'mode', 'online',
                      'ca_state', 'queued', 'received', now, 'updated', now, 'attempts', '1',
                      'notify', notify]


def queue(redis, identity, csr_der, protocol='est', notify=''):
    """queue writes what stampeded's request script writes for an accepted
    online-mode request: the pending record, the open index, the stream
    entry. Returns (key, request id)."""
    key, rid, fields = record_fields(identity, csr_der, protocol, notify)
    redis.command('HSET', key, *fields)
    redis.command('ZADD', 'stp:reqs:open', int(time.time()), rid)
    redis.command('XADD', 'stp:upstream', '*', 'key', key, 'id', rid)
    return key, rid


def transaction(sock_path, commands):
    """transaction runs `commands` in one MULTI/EXEC on one connection and
    returns EXEC's reply."""
    client = fx.RedisClient(sock_path)
    out = []
    for args in [('MULTI',)] + list(commands) + [('EXEC',)]:
        out.append(b'*%d\r\n' % len(args))
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sk:
        sk.settimeout(10)
        sk.connect(sock_path)
        sk.sendall(b''.join(out))
        with sk.makefile('rb') as f:
            replies = [client._read(f) for _ in range(len(commands) + 2)]
    return replies[-1]


def audit_entries(redis, request_id=None, event=None):
    return [e for _, e in redis.xrange('stp:audit')
            if (request_id is None or e.get('request') == request_id) and (event is None or e.get('event') == event)]


# ---------------------------------------------------------------- the tests

class ControlBase(unittest.TestCase):
    """One redis-server, one emulator (behind a Forwarder) and one
    stampede-control per class (pool_size 1, so its one upstream connection
    is the warm one), with short timeouts and back-offs."""

    extra = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='ctl-it-')
        cls.redis = cls.emu = cls.fwd = cls.ctl = None
        try:
            cls.redis = fx.RedisServer(cls.tmp).start()
            cls.r = cls.redis.client
            cls.emu = adcs.Emulator(cls.tmp).start()
            cls.fwd = Forwarder(cls.emu.port).up()
            cls.pwfile = adcs.secret_file(os.path.join(cls.tmp, 'upstream-password'), cls.emu.password)
            cls.settings = cls.control_settings('it-' + cls.__name__)
            cls.ctl = Control(cls.tmp, cls.settings, name='control').start()
            wait_for(lambda: cls.r.command('HGET', 'stp:ca:upstream', 'chain'), ISSUE_BOUND,
                     'stp:ca:upstream published')
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def control_settings(cls, consumer):
        st = dict(redis=cls.redis.sock, certsrv_url='https://%s:%d/certsrv' % (HOST, cls.fwd.port),
                  resolve='%s:%d:127.0.0.1' % (HOST, cls.fwd.port), ca_bundle=cls.emu.ready['tls_root'],
                  auth='ntlm', user=adcs.QUALIFIED_USER, password_file=cls.pwfile, template='WebServer',
                  pool_size=1, connect_timeout_ms=1000, login_timeout_ms=2000, submit_timeout_ms=3000,
                  fetch_timeout_ms=2000, lease_s=9, retry_min_ms=200, retry_max_ms=1000, poll_pending_s=1,
                  claim_idle_ms=1500, chain_refresh_s=2, consumer=consumer)
        st.update(cls.extra)
        return st

    @classmethod
    def cleanup(cls):
        try:
            if cls.ctl is not None:
                cls.ctl.kill()
        finally:
            if cls.fwd is not None:
                cls.fwd.down()
            if cls.emu is not None:
                cls.emu.stop()
            if cls.redis is not None:
                cls.redis.kill()
            fx.rmtree(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.ctl is not None and cls.ctl.running():
                t0 = time.monotonic()
                cls.ctl.stop(timeout=15)
                took = time.monotonic() - t0
                if took > 5:
                    raise AssertionError('stampede-control took %.1f s to stop after SIGTERM' % took)
        finally:
            cls.cleanup()

    # helpers
    def record(self, key):
        return self.r.hgetall(key)

    def wait_state(self, key, state, bound=ISSUE_BOUND):
        return wait_for(lambda: (lambda rec: rec if s(rec.get('state')) == state else None)(self.record(key)),
                        bound, '%s reaching state %s (now %s)' % (key, state, self.record(key).get('state')))

    def ca_certs(self):
        ca = self.r.hgetall('stp:ca:upstream')
        certs = []
        for f in ('chain', 'previous'):
            if ca.get(f):
                certs += pkcs7.load_der_pkcs7_certificates(ca[f])
        return certs

    def check_issued(self, key, rid, identity, csr_key, protocol='est'):
        """check_issued asserts the record of an issued request, the
        certificate's key and issuer, the open index, the wait set and the
        audit entry. Returns the record."""
        rec = self.wait_state(key, 'issued')
        cert = x509.load_der_x509_certificate(rec['cert'])
        self.assertEqual(spki(cert.public_key()), spki(csr_key.public_key()))
        self.assertEqual(int(s(rec['serial']), 16), cert.serial_number)
        self.assertEqual(s(rec['serial']), fx.cert_serial_hex(rec['cert']))
        self.assertEqual(int(rec['not_after']), int(cert.not_valid_after_utc.timestamp()))
        self.assertEqual(s(rec['ca_state']), 'done')
        self.assertRegex(s(rec['ca_req_id']), r'^[0-9]{1,10}$')
        self.assertNotIn('reason', rec)
        self.assertEqual(s(rec['upstream_url']), self.settings['certsrv_url'])
        issuers = [c for c in self.ca_certs() if c.subject == cert.issuer]
        verified = False
        for ca in issuers:
            try:
                cert.verify_directly_issued_by(ca)
                verified = True
            except Exception:
                pass
        self.assertTrue(verified, 'certificate does not verify against the published upstream CA')
        self.assertIsNone(self.r.command('ZSCORE', 'stp:reqs:open', rid))
        self.assertIsNone(self.r.command('ZSCORE', 'stp:upstream:wait', key))
        issues = audit_entries(self.r, rid, 'issue')
        self.assertEqual(len(issues), 1, issues)
        a = issues[0]
        self.assertEqual(a['device'], identity)
        self.assertEqual(a['peer'], '127.0.0.1:40000')
        self.assertEqual(a['serial'], s(rec['serial']))
        self.assertEqual(a['protocol'], protocol)
        self.assertEqual(a['reason'], 'online CA request %s' % s(rec['ca_req_id']))
        return rec

    def enroll(self, identity, protocol='est'):
        key_, csr = adcs.ec_csr(identity)
        key, rid = queue(self.r, identity, csr, protocol)
        return key_, csr, key, rid

    def upstream_log_since(self, seq):
        """upstream requests of enrollments (certfnsh.asp and certnew.cer of
        a request id, auth legs included) logged after `seq`; the chain
        thread's CA pages are left out."""
        return [e for e in self.emu.log() if e['seq'] > seq and (
            e['route'] == '/certsrv/certfnsh.asp' or
            (e['route'] == '/certsrv/certnew.cer' and 'cacert' not in (e['query'] or '').lower()))]

    def last_seq(self):
        log = self.emu.log()
        return log[-1]['seq'] if log else 0

    def stream_idle(self):
        """stream_idle: nothing queued, nothing unacknowledged, wait set empty."""
        pend = self.r.command('XPENDING', 'stp:upstream', 'ctl')
        return self.r.command('XLEN', 'stp:upstream') == 0 and pend[0] == 0 and \
            self.r.command('ZCARD', 'stp:upstream:wait') == 0


class TestControl(ControlBase):

    def test_01_issue_on_a_warm_connection(self):
        sub = Subscriber(self.redis.sock, 'stp:done:it:0')
        try:
            counts = []
            for i in range(4):
                seq = self.last_seq()
                k, csr = adcs.ec_csr('warm-%d' % i)
                key, rid = queue(self.r, 'warm-%d' % i, csr, notify='stp:done:it:0')
                self.check_issued(key, rid, 'warm-%d' % i, k)
                sub.wait(key)
                log = self.upstream_log_since(seq)
                counts.append(len(log))
                self.assertEqual(sum(1 for e in log if e['route'] == '/certsrv/certfnsh.asp' and e['status'] == 200),
                                 1, log)
                self.assertEqual(len(self.emu.requests_for(csr)), 1)
        finally:
            sub.close()
        print('\n  upstream HTTP requests per enrollment: %s' % counts, flush=True)
        self.assertLessEqual(counts[0], 3)          # first: NTLM login on the same POST (401 leg)
        self.assertEqual(counts[1:], [2, 2, 2])     # warm: POST certfnsh.asp + GET certnew.cer
        self.assertIn('2 upstream HTTP requests', self.ctl.stderr())
        wait_for(self.stream_idle, 5, 'stream acknowledged and wait set empty')

    def test_02_est_device_record_updated(self):
        name = 'SEP0011223344AA'
        dev = 'stp:dev:{%s}' % name
        now = int(time.time())
        self.r.command('HSET', dev, 'op', 'install', 'auth', 'null', 'keys', 'ec256', 'by', 0, 'status', 'pending',
                       'reason', '', 'lsc_serial', '', 'lsc_not_after', 0, 'auth_failures', 0, 'created', now,
                       'updated', now)
        k, csr, key, rid = self.enroll(name)
        rec = self.check_issued(key, rid, name, k)
        d = self.r.hgetall(dev)
        self.assertEqual(s(d['op']), 'none')
        self.assertEqual(s(d['status']), 'success')
        self.assertEqual(s(d['reason']), '')
        self.assertEqual(d['lsc_serial'], rec['serial'])
        self.assertEqual(d['lsc_not_after'], rec['not_after'])
        # not a registry device: no device record appears
        k2, csr2, key2, rid2 = self.enroll('plain-user')
        self.check_issued(key2, rid2, 'plain-user', k2)
        self.assertEqual(self.r.command('EXISTS', 'stp:dev:{plain-user}'), 0)
        # a CAPF record: the waiting CAPF session applies the device update, not COMPLETE
        cname = 'SEP0011223344BB'
        cdev = 'stp:dev:{%s}' % cname
        self.r.command('HSET', cdev, 'op', 'install', 'auth', 'null', 'keys', 'ec256', 'by', 0, 'status', 'pending',
                       'reason', '', 'lsc_serial', '', 'lsc_not_after', 0, 'created', now, 'updated', now)
        k3, csr3, key3, rid3 = self.enroll(cname, protocol='capf')
        self.check_issued(key3, rid3, cname, k3, protocol='capf')
        self.assertEqual(s(self.r.hgetall(cdev)['op']), 'install')

    def test_03_pending_approval_then_issued(self):
        self.emu.control('pending-next', count=1)
        k, csr, key, rid = self.enroll('approve-me')
        rec = wait_for(lambda: (lambda r: r if s(r.get('ca_state')) == 'approval' else None)(self.record(key)),
                       ISSUE_BOUND, 'record waiting for CA manager approval')
        self.assertEqual(s(rec['state']), 'pending')
        req_id = int(rec['ca_req_id'])
        self.assertIn('pending CA manager approval', s(rec['reason']))
        self.assertIn('%d' % req_id, s(rec['reason']))
        # still pending on the CA: polled (certnew.cer), never resubmitted
        wait_for(lambda: sum(1 for e in self.emu.log() if e['route'] == '/certsrv/certnew.cer'
                             and 'ReqID=%d' % req_id in (e['query'] or '')) >= 2, 10, 'two polls of the request')
        self.assertIsNotNone(self.r.command('ZSCORE', 'stp:upstream:wait', key))
        self.emu.control('approve', id=req_id)
        rec = self.check_issued(key, rid, 'approve-me', k)
        self.assertEqual(int(rec['ca_req_id']), req_id)
        self.assertEqual(len(self.emu.requests_for(csr)), 1)
        self.assertEqual(s(rec['submits']), '1')

    def test_03b_pending_then_denied_by_officer(self):
        self.emu.control('pending-next', count=1)
        _, csr, key, rid = self.enroll('officer-says-no')
        rec = wait_for(lambda: (lambda r: r if s(r.get('ca_state')) == 'approval' else None)(self.record(key)),
                       ISSUE_BOUND, 'record waiting for CA manager approval')
        self.emu.control('deny', id=int(rec['ca_req_id']))
        rec = self.wait_state(key, 'rejected')
        self.assertIn('Denied by', s(rec['reason']))
        self.assertEqual(s(rec['ca_diag']), 'denied')
        self.assertEqual(len(self.emu.requests_for(csr)), 1)
        self.assertEqual(len(audit_entries(self.r, rid, 'deny')), 1)
        self.assertIsNone(self.r.command('ZSCORE', 'stp:upstream:wait', key))

    def test_04_denied_template_rejected(self):
        self.emu.control('template', name='WebServer', published=False)
        sub = Subscriber(self.redis.sock, 'stp:done:it:deny')
        try:
            name = 'SEP0011223344CC'
            dev = 'stp:dev:{%s}' % name
            now = int(time.time())
            self.r.command('HSET', dev, 'op', 'install', 'auth', 'null', 'keys', 'ec256', 'by', 0,
                           'status', 'pending', 'reason', '', 'lsc_serial', '', 'lsc_not_after', 0,
                           'created', now, 'updated', now)
            _, csr = adcs.ec_csr(name)
            key, rid = queue(self.r, name, csr, notify='stp:done:it:deny')
            rec = self.wait_state(key, 'rejected')
            sub.wait(key)
        finally:
            sub.close()
            self.emu.control('template', name='WebServer', published=True)
        reason = s(rec['reason'])
        self.assertIn('WebServer', reason)              # names the template
        self.assertIn('template', reason.lower())
        self.assertIn('publish', reason)                # and the fix
        self.assertEqual(s(rec['ca_diag']), 'template')
        self.assertEqual(s(rec['ca_state']), 'done')
        self.assertIsNotNone(self.r.command('ZSCORE', 'stp:reqs:open', rid))
        self.assertIsNone(self.r.command('ZSCORE', 'stp:upstream:wait', key))
        denies = audit_entries(self.r, rid, 'deny')
        self.assertEqual(len(denies), 1)
        self.assertEqual(denies[0]['reason'], reason)
        self.assertEqual(denies[0]['device'], name)
        d = self.r.hgetall(dev)
        self.assertEqual(s(d['status']), 'failed')
        self.assertEqual(s(d['op']), 'install')
        self.assertTrue(reason.startswith(s(d['reason'])))
        self.assertLessEqual(len(d['reason']), 250)
        self.assertEqual(len(self.emu.requests_for(csr)), 1)
        self.assertRegex(self.ctl.stderr(), r'rejected.*\[template\]')

    def test_05_upstream_down_then_back(self):
        self.fwd.down()
        try:
            reqs = [self.enroll('down-%d' % i) for i in range(2)]

            def waiting():
                recs = [self.record(key) for _, _, key, _ in reqs]
                return all(s(r.get('ca_state')) == 'retry' and int(r.get('retries', b'0')) >= 2 for r in recs) \
                    and recs
            recs = wait_for(waiting, ISSUE_BOUND, 'requests waiting for retries while the upstream is down')
            for rec in recs:
                self.assertEqual(s(rec['state']), 'pending')
                self.assertEqual(s(rec['ca_diag']), 'connect')
                self.assertIn('connect', s(rec['reason']))
                self.assertIn(HOST, s(rec['reason']))
                self.assertGreater(int(rec['next_try']), 0)
        finally:
            self.fwd.up()
        for k, csr, key, rid in reqs:
            self.check_issued(key, rid, s(self.record(key)['identity']), k)
            self.assertEqual(len(self.emu.requests_for(csr)), 1)

    def test_06_chain_published_and_rollover(self):
        st = self.emu.state()
        k0 = st['renewal_index']
        ca = wait_for(lambda: (lambda c: c if c.get('renewal') == str(k0).encode() else None)(
            self.r.hgetall('stp:ca:upstream')), ISSUE_BOUND, 'renewal %d published' % k0)
        certs = pkcs7.load_der_pkcs7_certificates(ca['chain'])
        with open(self.emu.ready['adcs_root'], 'rb') as f:
            root = x509.load_pem_x509_certificate(f.read())
        cur = x509.load_der_x509_certificate(ca['ca_cert'])
        self.assertIn(root, certs)
        self.assertIn(cur, certs)
        cur.verify_directly_issued_by(root)
        self.assertEqual(s(ca['url']), self.settings['certsrv_url'])
        old_chain = ca['chain']
        k1 = self.emu.control('roll-ca')['result']['renewal_index']
        self.assertEqual(k1, k0 + 1)
        ca = wait_for(lambda: (lambda c: c if c.get('renewal') == str(k1).encode() else None)(
            self.r.hgetall('stp:ca:upstream')), 15, 'renewal %d published' % k1)
        self.assertEqual(ca['previous'], old_chain)
        new = x509.load_der_x509_certificate(ca['ca_cert'])
        self.assertNotEqual(new, cur)
        self.assertIn(new, pkcs7.load_der_pkcs7_certificates(ca['chain']))
        rolls = audit_entries(self.r, event='upstream-ca-rollover')
        self.assertEqual(len(rolls), 1, rolls)
        self.assertIn('%d -> %d' % (k0, k1), rolls[0]['reason'])
        # the next certificate comes from the new CA certificate
        k, csr, key, rid = self.enroll('after-roll')
        rec = self.check_issued(key, rid, 'after-roll', k)
        self.assertEqual(x509.load_der_x509_certificate(rec['cert']).issuer, new.subject)
        x509.load_der_x509_certificate(rec['cert']).verify_directly_issued_by(new)

    def test_07_xautoclaim_takes_over_a_dead_consumers_entry(self):
        k, csr = adcs.ec_csr('orphan')
        key, rid, fields = record_fields('orphan', csr, 'est', '')
        # a consumer reads the entry and dies before handing it over: the
        # read happens in the same transaction as the append, so
        # stampede-control's blocked XREADGROUP cannot get it first
        res = transaction(self.redis.sock, [
            ('HSET', key) + tuple(fields),
            ('ZADD', 'stp:reqs:open', int(time.time()), rid),
            ('XADD', 'stp:upstream', '*', 'key', key, 'id', rid),
            ('XREADGROUP', 'GROUP', 'ctl', 'dead-consumer', 'COUNT', '1', 'STREAMS', 'stp:upstream', '>')])
        entries = res[3][0][1]
        self.assertEqual(len(entries), 1)
        t0 = time.monotonic()
        self.check_issued(key, rid, 'orphan', k)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)   # idle for claim_idle_ms first
        self.assertIn('took over 1 stream entries', self.ctl.stderr())
        wait_for(self.stream_idle, 5, 'stream acknowledged and wait set empty')

    def test_08_submit_timeout_resubmitted_once(self):
        # the CA takes the request but answers after submit_timeout_ms: outcome unknown
        self.emu.control('fault', route='/certsrv/certfnsh.asp', delay=3.8, times=1)
        try:
            k, csr, key, rid = self.enroll('slow-once')
            rec = self.check_issued(key, rid, 'slow-once', k)
        finally:
            self.emu.control('clear-faults')
        self.assertEqual(len(self.emu.requests_for(csr)), 2)    # at most one resubmission
        self.assertEqual(s(rec['submits']), '2')
        self.assertEqual(s(rec['unknown_submits']), '1')
        resub = audit_entries(self.r, rid, 'upstream-resubmit')
        self.assertEqual(len(resub), 1)
        self.assertIn('possible duplicate', resub[0]['reason'])

    def test_09_two_unknown_outcomes_give_up(self):
        self.emu.control('fault', route='/certsrv/certfnsh.asp', delay=3.8, times=2)
        try:
            _, csr, key, rid = self.enroll('slow-twice')
            rec = self.wait_state(key, 'rejected', bound=30)
        finally:
            self.emu.control('clear-faults')
        self.assertEqual(len(self.emu.requests_for(csr)), 2)    # never a third POST
        self.assertEqual(s(rec['ca_diag']), 'outcome-unknown')
        self.assertIn('outcome of 2 submissions unknown', s(rec['reason']))
        self.assertIn(hashlib.sha256(csr).hexdigest(), s(rec['reason']))
        self.assertEqual(len(audit_entries(self.r, rid, 'upstream-resubmit')), 1)
        self.assertEqual(len(audit_entries(self.r, rid, 'deny')), 1)
        self.assertIsNotNone(self.r.command('ZSCORE', 'stp:reqs:open', rid))

    def test_10_redelivery_is_idempotent(self):
        # (a flushed script cache: the worker reloads the script on NOSCRIPT)
        self.r.command('SCRIPT', 'FLUSH')
        # the same entry delivered twice (at-least-once): the second is a no-op
        k, csr, key, rid = self.enroll('twice')
        self.check_issued(key, rid, 'twice', k)
        self.r.command('XADD', 'stp:upstream', '*', 'key', key, 'id', rid)
        wait_for(self.stream_idle, 10, 'duplicate entry acknowledged')
        self.check_issued(key, rid, 'twice', k)
        self.assertEqual(len(self.emu.requests_for(csr)), 1)
        # an entry naming no record, and a record that is not online, are dropped
        self.r.command('XADD', 'stp:upstream', '*', 'key', 'stp:req:{ghost}:' + '0' * 64, 'id', 'ghost')
        self.r.command('XADD', 'stp:upstream', '*', 'key', 'not-a-record', 'id', 'x')
        wait_for(self.stream_idle, 10, 'bad entries acknowledged')
        self.assertEqual(self.r.command('EXISTS', 'stp:req:{ghost}:' + '0' * 64), 0)

    def test_11_doctor(self):
        args = ['doctor'] + adcs.setting_flags(self.settings)
        rc, out, err = run_control(args)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('ok', out)
        self.assertNotIn('PROBLEM', out)
        self.assertNotIn(self.emu.password, out + err)
        bad = adcs.secret_file(os.path.join(self.tmp, 'wrong-password'), 'not-' + self.emu.password)
        i = args.index('--password-file')
        args[i + 1] = bad
        rc, out, err = run_control(args)
        self.assertEqual(rc, 1, out + err)
        self.assertIn('PROBLEM', out)
        self.assertRegex(out, r'PROBLEM\s+auth')
        self.assertIn('svc-stampede', out)

    def test_12_stop_is_prompt_and_clean(self):
        other = Control(self.tmp, dict(self.settings, consumer='it-stop'), name='control-stop').start()
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            other.stop(timeout=10)
            self.assertLess(time.monotonic() - t0, 3.0)
            self.assertIn('summary at exit', other.stderr())
        finally:
            other.kill()
        # a cleanly stopped instance leaves no consumers behind
        consumers = [c[1] for c in self.r.command('XINFO', 'CONSUMERS', 'stp:upstream', 'ctl')]
        self.assertNotIn(b'it-stop/w0', consumers)

    def test_13_redis_restarted_empty(self):
        # Redis comes back empty (no persistence here): stampede-control
        # reconnects, loads its script, makes the consumer group again and
        # publishes the chain again
        self.redis.kill()
        time.sleep(1.5)
        self.redis.start()
        wait_for(lambda: self.r.command('HGET', 'stp:ca:upstream', 'chain'), ISSUE_BOUND, 'chain published again')
        wait_for(lambda: self.r.command('EXISTS', 'stp:upstream'), ISSUE_BOUND, 'consumer group made again')
        k, csr, key, rid = self.enroll('after-redis')
        self.check_issued(key, rid, 'after-redis', k)
        self.assertIn('connected again', self.ctl.stderr())


class TestControlCrash(ControlBase):
    """Instances with an hour's chain_refresh_s, started per test. kill -9
    mid-flight: a second instance finishes the work through the wait-set
    leases, never POSTs a request whose CA request id was stored, and POSTs
    a request whose POST outcome was unknown at most once more (audited
    upstream-resubmit)."""

    extra = dict(submit_timeout_ms=5000, fetch_timeout_ms=5000, lease_s=14, chain_refresh_s=3600)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctl.kill()      # each test starts its own instances
        cls.ctl = None

    def test_kill_during_fetch_and_during_post(self):
        a = b = None
        try:
            # 1. killed while downloading the certificate: ca_req_id is stored
            a = Control(self.tmp, dict(self.settings, consumer='crash-a'), name='crash-a').start()
            # (its chain thread's certnew.cer?ReqID=CACert must not take the fault)
            wait_for(lambda: 'published in stp:ca:upstream' in a.stderr(), ISSUE_BOUND, 'chain read')
            self.emu.control('fault', route='/certsrv/certnew.cer', delay=4, times=1)
            k1, csr1, key1, rid1 = self.enroll('crash-fetch')
            wait_for(lambda: self.record(key1).get('ca_req_id'), ISSUE_BOUND, 'request id stored')
            time.sleep(0.3)
            a.proc.kill()
            a.wait(10)
            self.emu.control('clear-faults')
            # 2. killed while the POST is on the wire: the CA created the request
            self.emu.control('fault', route='/certsrv/certfnsh.asp', delay=4, times=1)
            a2 = Control(self.tmp, dict(self.settings, consumer='crash-a2'), name='crash-a2').start()
            a = a2
            k2, csr2, key2, rid2 = self.enroll('crash-post')
            wait_for(lambda: self.emu.requests_for(csr2), ISSUE_BOUND, 'the CA took the POST')
            a.proc.kill()
            a.wait(10)
            self.emu.control('clear-faults')
            self.assertEqual(s(self.record(key1)['state']), 'pending')
            self.assertEqual(s(self.record(key2)['ca_state']), 'submitting')
            # 3. another instance takes both over when their leases run out
            b = Control(self.tmp, dict(self.settings, consumer='crash-b'), name='crash-b').start()
            rec1 = self.check_issued(key1, rid1, 'crash-fetch', k1)
            rec2 = self.check_issued(key2, rid2, 'crash-post', k2)
            self.assertEqual(len(self.emu.requests_for(csr1)), 1)           # polled, never POSTed again
            self.assertEqual(s(rec1['submits']), '1')
            self.assertEqual(audit_entries(self.r, rid1, 'upstream-resubmit'), [])
            self.assertEqual(len(self.emu.requests_for(csr2)), 2)           # one resubmission
            self.assertEqual(len(audit_entries(self.r, rid2, 'upstream-resubmit')), 1)
            self.assertEqual(s(rec2['submits']), '2')
            wait_for(self.stream_idle, 5, 'stream acknowledged and wait set empty')
            b.stop(timeout=15)
        finally:
            for p in (a, b):
                if p is not None:
                    p.kill()

    def test_chain_republished_when_gone(self):
        # chain_refresh_s is an hour here: a Redis that lost stp:ca:upstream
        # gets it back within the chain thread's 10 s check
        c = Control(self.tmp, dict(self.settings, consumer='chain-check'), name='chain-check').start()
        try:
            wait_for(lambda: 'published in stp:ca:upstream' in c.stderr(), ISSUE_BOUND, 'chain read')
            self.r.command('DEL', 'stp:ca:upstream')
            ca = wait_for(lambda: self.r.hgetall('stp:ca:upstream'), 15, 'stp:ca:upstream published again')
            self.assertIn('is gone from Redis', c.stderr())
            self.assertEqual(ca['renewal'], str(self.emu.state()['renewal_index']).encode())
            c.stop(timeout=15)
        finally:
            c.kill()


class TestControlCommandLine(unittest.TestCase):

    def test_help_and_usage(self):
        rc, out, err = run_control(['--help'])
        self.assertEqual(rc, 0)
        for text in ('Usage:', 'doctor', 'Exit status', '--password-file', '--template', '--claim-idle-ms'):
            self.assertIn(text, out)
        rc, out, err = run_control(['--version'])
        self.assertEqual((rc, out.strip()), (0, 'stampede-control %s' % fx.VERSION))
        rc, out, err = run_control(['--redis', '/nonexistent.sock'])
        self.assertEqual(rc, 2)
        self.assertIn('certsrv_url is required', err)
        rc, out, err = run_control(['frobnicate'])
        self.assertEqual(rc, 2)
        self.assertIn('unknown command', err)
        rc, out, err = run_control(['--password', 'x'])
        self.assertEqual(rc, 2)
        self.assertIn('password-file', err)
        rc, out, err = run_control(['--certsrv-url', 'https://%s/certsrv' % HOST, '--template', 'WebServer',
                                    '--auth', 'none', '--redis', '/nonexistent/redis.sock'])
        self.assertEqual(rc, 1)
        self.assertIn('/nonexistent/redis.sock', err)


if __name__ == '__main__':
    unittest.main(verbosity=2)
