"""Redis faults around EST enrollment: an external Redis that dies (503 +
Retry-After, then recovery on its return without restarting stampeded) or
hangs (reply timeout); the embedded redis-server killed -9 under load
(restarted by stampeded; clients see only 200 or 503, and every certificate
a client received is recorded and audited); stampeded killed -9 under load
(every certificate a client received is in Redis and the audit stream, and
after a restart interrupted CSRs and a completed one all enroll, with the
recorded certificate wherever one was recorded), also with Redis paused
just before the kill so that records are issued whose answers never left.
Real stampeded, real
redis-server, Python ssl/http.client clients in threads; every wait and
every load is bounded."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

AUDIT = 'stp:audit'
RECOVER_BOUND = 10.0      # Redis back -> enrollments succeed again
BACKOFF_MAX = 2.0         # per-core reconnect back-off cap (dp_redis.h)
LOAD_BOUND = 90.0         # one load, start to last answer
CLIENT_TIMEOUT = 15.0     # one enrollment attempt
UNAVAILABLE = b'certificate registry (Redis) unavailable: retry later'


def req_key(identity, csr_der):
    return 'stp:req:{%s}:%s' % (identity, hashlib.sha256(csr_der).hexdigest())


def req_id(identity, csr_der):
    return '%s:%s' % (identity, hashlib.sha256(csr_der).hexdigest())


def wait_for(pred, bound, step=0.05):
    return bool(fx.wait_for(pred, bound, step))


class Outcome:
    """Outcome of one CSR in a load: final status (200, 503, another
    status, or None: no response), the certificate DER for a 200, how many
    503s it saw, and the exception if the last attempt got no response."""

    def __init__(self):
        self.status = None
        self.cert = None
        self.n503 = 0
        self.error = None
        self.refused = False


class Load:
    """Load enrolls each CSR in `csrs` (as user 'est') from `threads` client
    threads, one fresh TLS connection per attempt. With `retry_503` a 503 is
    retried after its Retry-After (at most 1 s) until `bound` seconds have
    passed; anything else is final. `done` counts finished CSRs."""

    def __init__(self, d, csrs, threads=16, retry_503=True, bound=LOAD_BOUND):
        self.d, self.csrs, self.retry_503, self.bound = d, csrs, retry_503, bound
        self.out = [Outcome() for _ in csrs]
        self.ctx = fx.client_context(d)
        self.password = d.password
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.bad_retry_after = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def join(self):
        for t in self.threads:
            t.join(max(0.1, self.t0 + self.bound + CLIENT_TIMEOUT + 5 - time.monotonic()))
        alive = sum(t.is_alive() for t in self.threads)
        if alive:
            raise AssertionError('%d client threads still running after the load bound' % alive)
        return time.monotonic() - self.t0

    def _take(self):
        with self.lock:
            if self.next >= len(self.csrs):
                return None
            self.next += 1
            return self.next - 1

    def _run(self):
        while True:
            i = self._take()
            if i is None:
                return
            o = self.out[i]
            while True:
                o.error, o.refused = None, False
                try:
                    r = fx.py_enroll(self.d, self.csrs[i], password=self.password, ctx=self.ctx,
                                     timeout=CLIENT_TIMEOUT)
                except Exception as e:  # no (complete) response
                    o.status, o.error = None, e
                    o.refused = isinstance(e, ConnectionRefusedError)
                    break
                o.status = r.status
                if r.status == 200:
                    try:
                        certs = fx.p7_cert_ders(r.body)
                    except Exception as e:
                        o.status, o.error = 'bad PKCS#7', e
                        break
                    o.cert = certs[0] if len(certs) == 1 else None
                    if o.cert is None:
                        o.status = 'PKCS#7 with %d certificates' % len(certs)
                    break
                if r.status != 503:
                    o.error = r
                    break
                o.n503 += 1
                ra = r.header('retry-after')
                if not ra or not ra.isdigit() or UNAVAILABLE not in r.body:
                    with self.lock:
                        self.bad_retry_after.append(r)
                if not self.retry_503 or time.monotonic() - self.t0 > self.bound:
                    break
                time.sleep(min(int(ra) if ra and ra.isdigit() else 1, 1) or 0.1)
            with self.lock:
                self.done += 1

    def received(self):
        """received: [(csr, cert_der)] of every CSR a client got a certificate for."""
        return [(self.csrs[i], o.cert) for i, o in enumerate(self.out) if o.status == 200]

    def summary(self):
        by = {}
        for o in self.out:
            k = o.status if o.status is not None else ('refused' if o.refused else 'no response')
            by[k] = by.get(k, 0) + 1
        return '%s, 503s seen: %d' % (by, sum(o.n503 for o in self.out))


class TestRedisFaults(fx.DaemonTestCase):

    # ------------------------------------------------------------ helpers

    def csrs(self, n, prefix):
        """csrs makes `n` distinct DER CSRs (one P-256 key, CN prefix-i)."""
        key = fx.gen_key(os.path.join(self.tmp, prefix + '.key'))
        out = []
        for i in range(n):
            out.append(fx.make_csr(key, '/CN=%s-%d' % (prefix, i), os.path.join(self.tmp, '%s.csr' % prefix)))
        return out

    def enroll(self, d, csr, timeout=CLIENT_TIMEOUT):
        return fx.py_enroll(d, csr, password=d.password, timeout=timeout)

    def assert_503(self, r):
        self.assertEqual(r.status, 503, r)
        ra = r.header('retry-after')
        self.assertTrue(ra and ra.isdigit() and int(ra) >= 1, 'Retry-After missing or bad: %r' % r)
        self.assertIn(UNAVAILABLE, r.body)

    def assert_cacerts(self, d):
        r = fx.curl(d, 'cacerts')
        self.assertEqual(r.status, 200, r)

    def embedded_redis_pid(self, d):
        """embedded_redis_pid: the redis-server child of stampeded (by
        /proc: parent pid and command line naming DATA/redis.sock), or None."""
        sock = os.path.join(d.data_dir, 'redis.sock')
        for ent in os.listdir('/proc'):
            if not ent.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % ent) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                with open('/proc/%s/cmdline' % ent, 'rb') as f:
                    cmd = f.read().replace(b'\0', b' ')
            except (OSError, ValueError, IndexError):
                continue
            if ppid == d.proc.pid and b'redis-server' in cmd and sock.encode() in cmd:
                return int(ent)
        return None

    def assert_recorded_and_audited(self, redis, received):
        """assert_recorded_and_audited: every (csr, cert) a client received
        has its request record (state issued, same serial and certificate)
        and an issue/reissue audit entry with that serial and request id."""
        audit = {}
        for _, e in redis.xrange(AUDIT):
            if e.get('event') in ('issue', 'reissue'):
                audit.setdefault(e.get('serial'), []).append(e)
        problems = []
        for csr, cert in received:
            serial = fx.cert_serial_hex(cert)
            rec = redis.hgetall(req_key('est', csr))
            if not rec:
                problems.append('serial %s: no request record %s' % (serial, req_key('est', csr)))
                continue
            if rec.get('state') != b'issued' or rec.get('serial', b'').decode() != serial or rec.get('cert') != cert:
                problems.append('serial %s: record state=%r serial=%r cert %s' % (
                    serial, rec.get('state'), rec.get('serial'),
                    'same' if rec.get('cert') == cert else 'DIFFERENT'))
            if not any(e.get('request') == req_id('est', csr) for e in audit.get(serial, [])):
                problems.append('serial %s: no issue/reissue audit entry for request %s' % (serial, req_id('est', csr)))
        self.assertFalse(problems, '%d of %d received certificates not in Redis as promised:\n%s' % (
            len(problems), len(received), '\n'.join(problems[:20])))

    # ------------------------------------------------------------ external Redis down, then back

    def test_external_redis_down_503_then_back(self):
        rs = fx.RedisServer(self.tmp, port=fx.free_port()).start()
        self.addCleanup(rs.kill)
        d = self.daemon(['--redis', rs.url])
        csrs = self.csrs(12, 'down')
        r = self.enroll(d, csrs[0])
        self.assertEqual(r.status, 200, r)

        rs.kill()
        for csr in csrs[1:4]:
            self.assert_503(self.enroll(d, csr))
        self.assertTrue(d.running(), 'stampeded died with its Redis:\n' + d.stderr()[-3000:])
        self.assert_cacerts(d)

        rs.start()
        t0 = time.monotonic()
        seen, ok = [], None
        i = 4
        while time.monotonic() - t0 < RECOVER_BOUND:
            r = self.enroll(d, csrs[i])
            seen.append(r.status)
            if r.status == 200:
                ok = r
                break
            self.assert_503(r)
            time.sleep(0.2)
        self.assertIsNotNone(ok, 'no enrollment succeeded within %.0f s of Redis coming back: %s' % (
            RECOVER_BOUND, seen))
        rec = rs.client.hgetall(req_key('est', csrs[i]))
        self.assertEqual(rec.get('serial', b'').decode(), fx.cert_serial_hex(fx.p7_cert_ders(ok.body)[0]))
        # Every core is back once its back-off (at most 2 s) has run out.
        time.sleep(BACKOFF_MAX + 0.5)
        for csr in csrs[i + 1:]:
            r = self.enroll(d, csr)
            self.assertEqual(r.status, 200, r)
        self.stop_ok(d)

    def test_hung_redis_reply_timeout(self):
        """A Redis that stops answering (SIGSTOP) costs at most
        redis_timeout_ms: the enrollment gets 503, not a hang; SIGCONT and
        enrollments succeed again."""
        rs = fx.RedisServer(self.tmp, port=fx.free_port()).start()
        self.addCleanup(rs.kill)
        d = self.daemon(['--redis', rs.url, '--redis-timeout-ms', '500'])
        csrs = self.csrs(4, 'hung')
        self.assertEqual(self.enroll(d, csrs[0]).status, 200)
        rs.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = self.enroll(d, csrs[1])
            took = time.monotonic() - t0
            self.assert_503(r)
            self.assertLess(took, 5.0, 'a hung Redis held the enrollment %.1f s (timeout 500 ms)' % took)
            self.assertTrue(d.running())
        finally:
            rs.proc.send_signal(signal.SIGCONT)
        self.assertTrue(wait_for(lambda: self.enroll(d, csrs[2]).status == 200, RECOVER_BOUND, 0.2),
                        'no recovery after SIGCONT')
        self.stop_ok(d)

    def test_sigterm_with_redis_hung(self):
        """SIGTERM while an enrollment waits on a hung Redis (reply timeout
        far away): at the drain deadline the Redis connection is dropped,
        the waiting client gets 503 and stampeded exits 0 in time."""
        rs = fx.RedisServer(self.tmp, port=fx.free_port()).start()
        self.addCleanup(rs.kill)
        d = self.daemon(['--redis', rs.url, '--redis-timeout-ms', '60000', '--drain-timeout', '1'])
        csr = self.csrs(1, 'drainhung')[0]
        rs.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(rs.proc.send_signal, signal.SIGCONT)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault('r', self.enroll(d, csr)), daemon=True)
        t.start()
        time.sleep(1.0)  # the request is signed and waits for its record
        t0 = time.monotonic()
        self.stop_ok(d)
        self.assertLess(time.monotonic() - t0, 10.0)
        t.join(CLIENT_TIMEOUT)
        self.assertIn('r', box, 'the waiting client got no answer')
        self.assert_503(box['r'])

    # ------------------------------------------------------------ embedded Redis killed -9 under load

    def test_embedded_redis_killed_under_load(self):
        d = self.daemon(['--redis-fsync', 'always'])
        redis = fx.RedisClient(os.path.join(d.data_dir, 'redis.sock'))
        first = self.embedded_redis_pid(d)
        self.assertIsNotNone(first, 'no embedded redis-server child found')
        csrs = self.csrs(160, 'rkill')
        load = Load(d, csrs, threads=16, retry_503=True).start()
        self.assertTrue(wait_for(lambda: load.done >= 30, 30.0), 'load did not get going: ' + load.summary())
        done_at_kill = load.done
        os.kill(first, signal.SIGKILL)
        took = load.join()
        self.assertLess(done_at_kill, len(csrs), 'the load ended before the kill')

        others = [(i, o.status, repr(o.error)) for i, o in enumerate(load.out) if o.status != 200]
        self.assertFalse(others, 'enrollments that did not end in 200 (%s)' % load.summary())
        self.assertFalse(load.bad_retry_after, '503 without Retry-After / text: %r' % load.bad_retry_after[:3])
        self.assertTrue(d.running(), 'stampeded died:\n' + d.stderr()[-3000:])
        second = self.embedded_redis_pid(d)
        self.assertIsNotNone(second, 'embedded Redis not restarted')
        self.assertNotEqual(second, first)
        self.assertIn('restarting in', d.stderr())
        self.assert_cacerts(d)
        self.assert_recorded_and_audited(redis, load.received())
        print('\n  redis kill -9 at %d/%d done; load %.1f s; %s' % (done_at_kill, len(csrs), took, load.summary()),
              file=sys.stderr)
        self.stop_ok(d)

    # ------------------------------------------------------------ stampeded killed -9 under load

    def test_stampeded_killed_under_load(self):
        self.stampeded_killed(pause_redis=False)

    def test_stampeded_killed_with_records_in_flight(self):
        """As above, but Redis is paused (SIGSTOP) for 0.3 s before the
        kill, so the request scripts of the enrollments in flight are
        written to Redis and executed after stampeded is gone: records
        issued whose answers never left. Re-sending such a CSR must return
        the recorded certificate."""
        lost = self.stampeded_killed(pause_redis=True)
        self.assertGreaterEqual(lost, 1, 'no re-sent CSR had a record issued before the kill')

    def stampeded_killed(self, pause_redis):
        """stampeded_killed runs the kill -9 scenario; returns how many
        re-sent CSRs had been recorded as issued without their client
        getting the answer."""
        rs = fx.RedisServer(self.tmp, unix=os.path.join(self.tmp, 'ext-redis.sock')).start()
        self.addCleanup(rs.kill)
        d = self.daemon(['--redis', rs.url])
        csrs = self.csrs(200, 'dkill')
        load = Load(d, csrs, threads=16, retry_503=False).start()
        self.assertTrue(wait_for(lambda: load.done >= 40, 30.0), 'load did not get going: ' + load.summary())
        if pause_redis:
            rs.proc.send_signal(signal.SIGSTOP)
            time.sleep(0.3)                # < redis_timeout_ms: the cores keep waiting
        done_at_kill = load.done
        d.proc.kill()                      # SIGKILL
        d.proc.wait(10)
        d._reap()
        if pause_redis:
            rs.proc.send_signal(signal.SIGCONT)
        took = load.join()
        self.assertLess(done_at_kill, len(csrs), 'the load ended before the kill')
        received = load.received()
        self.assertGreaterEqual(len(received), 40)
        odd = [(o.status, o.error) for o in load.out if o.status not in (200, None)]
        self.assertFalse(odd, 'answers other than 200 before the kill: %r' % odd[:5])
        self.assertTrue(rs.client.ping(), 'the external Redis must outlive stampeded')
        self.assert_recorded_and_audited(rs.client, received)
        # No record left in another state (no CSR of this load is rejected).
        states = {}
        cursor = b'0'
        for _ in range(1000):
            cursor, keys = rs.client.command('SCAN', cursor, 'MATCH', 'stp:req:*', 'COUNT', 500)
            for k in keys:
                st = rs.client.command('HGET', k, 'state')
                states[st] = states.get(st, 0) + 1
            if cursor == b'0':
                break
        self.assertLessEqual(set(states), {b'issued'}, 'request records in other states: %r' % states)

        # Restart on the same data dir and Redis: no request is stuck.
        unanswered = [i for i, o in enumerate(load.out) if o.status is None]
        self.assertTrue(unanswered, 'no client was left without an answer (%s)' % load.summary())
        interrupted = [i for i in unanswered if not load.out[i].refused] or unanswered
        d.start()
        retry, lost = [], 0
        for i in sorted(set(interrupted[:20] + unanswered[-3:])):
            before = rs.client.hgetall(req_key('est', csrs[i]))
            r = self.enroll(d, csrs[i])
            self.assertEqual(r.status, 200, (i, r))
            cert = fx.p7_cert_ders(r.body)[0]
            if before.get('state') == b'issued':   # signed and recorded, answer lost: same certificate
                lost += 1
                self.assertEqual(cert, before['cert'], 'CSR %d: a recorded certificate was not returned' % i)
            retry.append((csrs[i], cert))
        done = next(i for i, o in enumerate(load.out) if o.status == 200)
        mark = rs.client.last_id(AUDIT)
        r = self.enroll(d, csrs[done])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(fx.p7_cert_ders(r.body), [load.out[done].cert], 'a completed CSR must get its certificate')
        self.assertEqual([e['event'] for _, e in rs.client.xrange(AUDIT, '(' + mark)], ['reissue'])
        self.assert_recorded_and_audited(rs.client, retry)
        print('\n  stampeded kill -9 at %d/%d done; load %.1f s; %s; %d unanswered, %d re-sent '
              '(%d of them recorded before the kill)' % (done_at_kill, len(csrs), took, load.summary(),
                                                         len(unanswered), len(retry), lost), file=sys.stderr)
        self.stop_ok(d)
        return lost


if __name__ == '__main__':
    fx.main()
