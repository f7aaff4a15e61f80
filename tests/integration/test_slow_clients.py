"""Slow and stalled clients are cut off by the per-phase deadlines
(--handshake-timeout 1 --header-timeout 1 --body-timeout 2 --idle-timeout 2)
while normal clients are served. Every wait is bounded: a connection counts
as closed when recv returns b'' or fails within the bound."""
import os
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

ENROLL = fx.EST + 'simpleenroll'
# A silent TCP client is not even accepted before data arrives:
# dp_kernel sets TCP_DEFER_ACCEPT (1 s), which Linux rounds up to the SYN-ACK
# retransmission schedule, so the handshake deadline starts a little late.
SILENT_BOUND = 15.0
BOUND = 10.0


class TestSlowClients(fx.SharedDaemonTestCase):
    # A 4 KiB send buffer makes a long response block the server's send, so
    # the pending-output path (writable events) is exercised.
    DAEMON_ARGS = ('--handshake-timeout', '1', '--header-timeout', '1', '--body-timeout', '2',
                   '--idle-timeout', '2', '--so-sndbuf', '4096')

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        key = fx.gen_key(os.path.join(cls.class_tmp, 'slow.key'), 'ec256')
        cls.csr = fx.make_csr(key, '/CN=SEP5L0WC11E47', os.path.join(cls.class_tmp, 'slow.csr'))
        cls.body = fx.b64(cls.csr)

    def enroll_request(self):
        return fx.raw_request('POST', ENROLL, [
            'Authorization: ' + fx.basic('est', self.d.password), 'Content-Type: application/pkcs10',
            'Content-Transfer-Encoding: base64', 'Content-Length: %d' % len(self.body)], self.body)

    def assert_closed_between(self, sock, lo, hi):
        closed, t = fx.wait_closed(sock, hi)
        self.assertTrue(closed, 'connection still open after %.1fs' % hi)
        self.assertGreaterEqual(t, lo, 'closed after %.2fs: too early for the deadline' % t)
        return t

    # ---- a reader slower than the response

    def test_slow_reader_gets_every_response(self):
        """A client with a tiny receive buffer pipelines 121 requests and reads
        late: the server's sends block, the rest waits in the session and goes
        out on writable events; every response arrives, whole and in order.
        (121 responses are about 100 KB: more than the socket buffers
        (so_sndbuf 4096 here) and than lwIP's 64 KB send buffer on the DPDK
        transport, where so_sndbuf does not apply.)"""
        get = fx.raw_request('GET', fx.EST + 'cacerts')
        last = fx.raw_request('GET', fx.EST + 'cacerts', ['Connection: close'])
        # The buffer is made small before connecting, as a small client
        # would: set after the handshake, Linux shrinks the window it has
        # already advertised under data in flight, which RFC 1122 tells
        # receivers not to do and which Debian's lwIP (DPDK transport)
        # recovers from only at its persist/retransmission timers
        # (docs/dpdk.md, "Limits").
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        raw.settimeout(BOUND)
        raw.connect((self.d.host, self.d.port))
        s = fx.client_context(self.d).wrap_socket(raw, server_hostname='127.0.0.1')
        try:
            s.sendall(get * 120 + last)
            time.sleep(1.5)  # the server fills the tiny window and blocks
            s.settimeout(BOUND)
            data = b''
            t0 = time.monotonic()
            while time.monotonic() - t0 < BOUND:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.assertEqual(data.count(b'HTTP/1.1 200 OK\r\n'), 121)
            self.assertTrue(data.endswith(b'\n'), 'the last response is complete')
        finally:
            s.close()

    # ---- one stall per phase

    def test_silent_tcp_client_closed(self):
        s = fx.tcp_connect(self.d)
        try:
            t = self.assert_closed_between(s, 0.5, SILENT_BOUND)
            print('\n  silent TCP client closed after %.1fs' % t, flush=True)
        finally:
            s.close()

    def test_partial_client_hello_closed(self):
        s = fx.tcp_connect(self.d)
        try:
            s.sendall(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')
            self.assert_closed_between(s, 0.5, BOUND)
        finally:
            s.close()

    def test_unfinished_handshake_closed(self):
        ctx = fx.client_context(self.d)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname='127.0.0.1')
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        s = fx.tcp_connect(self.d)
        try:
            s.sendall(out.read())   # ClientHello, then never the Finished
            self.assert_closed_between(s, 0.5, BOUND)
        finally:
            s.close()

    def test_partial_header_closed(self):
        s = fx.tls_connect(self.d)
        try:
            s.sendall(b'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\nContent-Ty')
            self.assert_closed_between(s, 0.5, BOUND)
        finally:
            s.close()

    def test_no_request_after_handshake_closed(self):
        s = fx.tls_connect(self.d)
        try:
            self.assert_closed_between(s, 0.5, BOUND)
        finally:
            s.close()

    def drip(self, s, data, pause):
        """drip sends `data` one byte at a time, `pause` seconds apart, until
        the server closes the connection or BOUND passes. Returns (closed,
        seconds)."""
        t0 = time.monotonic()
        for i in range(len(data)):
            if time.monotonic() - t0 > BOUND:
                break
            try:
                s.sendall(data[i:i + 1])
            except OSError:
                return True, time.monotonic() - t0
            s.settimeout(pause)
            try:
                if s.recv(4096) == b'':
                    return True, time.monotonic() - t0
            except (socket.timeout, TimeoutError):
                pass
            except (ssl.SSLError, OSError):
                return True, time.monotonic() - t0
        return False, time.monotonic() - t0

    def test_header_drip_closed(self):
        """Slowloris: one header byte every 0.2 s never resets the deadline."""
        s = fx.tls_connect(self.d)
        req = b'GET /.well-known/est/cacerts HTTP/1.1\r\n' + b'X-Drip: ' + b'a' * 200
        try:
            closed, t = self.drip(s, req, 0.2)
            self.assertTrue(closed, 'a dripping header was not cut off within %.0fs' % BOUND)
            self.assertLess(t, 5.0, 'header deadline (1 s) must not be extended by drips (closed after %.1fs)' % t)
        finally:
            s.close()

    def test_body_stops_halfway_closed(self):
        req = self.enroll_request()
        s = fx.tls_connect(self.d)
        try:
            s.sendall(req[:len(req) - len(self.body) // 2])
            self.assert_closed_between(s, 1.0, BOUND)
        finally:
            s.close()

    def test_body_drip_closed(self):
        req = self.enroll_request()
        head = len(req) - len(self.body)
        s = fx.tls_connect(self.d)
        try:
            s.sendall(req[:head])
            closed, t = self.drip(s, req[head:], 0.25)
            self.assertTrue(closed, 'a dripping body was not cut off within %.0fs' % BOUND)
            self.assertLess(t, 6.0, 'body deadline (2 s) must not be extended by drips (closed after %.1fs)' % t)
        finally:
            s.close()

    def test_idle_keep_alive_closed(self):
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('GET', fx.EST + 'cacerts'))
            r = fx.read_response(s)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header('connection'))
            t = self.assert_closed_between(s, 1.0, BOUND)
            self.assertLess(t, 6.0)
        finally:
            s.close()

    def test_keep_alive_within_idle_timeout_still_works(self):
        s = fx.tls_connect(self.d)
        try:
            for _ in range(3):
                s.sendall(fx.raw_request('GET', fx.EST + 'cacerts'))
                self.assertEqual(fx.read_response(s).status, 200)
                time.sleep(0.7)   # well below the 2 s idle deadline
        finally:
            s.close()

    # ---- all at once, with a normal client in the middle

    def test_stalled_clients_do_not_block_enrollment(self):
        results = {}

        def stall(name, setup, lo, hi):
            try:
                s = setup()
            except Exception as e:
                results[name] = ('setup failed', repr(e))
                return
            try:
                results[name] = fx.wait_closed(s, hi) + (lo,)
            finally:
                s.close()

        def silent():
            return fx.tcp_connect(self.d)

        def partial_header():
            s = fx.tls_connect(self.d)
            s.sendall(b'GET /.well-known/est/cacerts HTTP/1.1\r\nHo')
            return s

        def half_body():
            s = fx.tls_connect(self.d)
            req = self.enroll_request()
            s.sendall(req[:len(req) - 100])
            return s

        def idle():
            s = fx.tls_connect(self.d)
            s.sendall(fx.raw_request('GET', fx.EST + 'csrattrs'))
            fx.read_response(s)
            return s

        cases = [('silent-%d' % i, silent, 0.5, SILENT_BOUND) for i in range(5)]
        cases += [('header-%d' % i, partial_header, 0.5, BOUND) for i in range(5)]
        cases += [('body-%d' % i, half_body, 1.0, BOUND) for i in range(5)]
        cases += [('idle-%d' % i, idle, 1.0, BOUND) for i in range(5)]
        threads = [threading.Thread(target=stall, args=c, daemon=True) for c in cases]
        for t in threads:
            t.start()
        time.sleep(0.3)
        for _ in range(3):
            r = fx.curl_enroll(self.d, self.csr)
            self.assertEqual(r.status, 200, r)
            r = fx.py_enroll(self.d, self.csr)
            self.assertEqual(r.status, 200, r)
        for t in threads:
            t.join(SILENT_BOUND + 10)
        self.assertFalse(any(t.is_alive() for t in threads), 'a stall thread did not finish')
        for name, _, _, _ in cases:
            res = results.get(name)
            self.assertIsNotNone(res, name)
            self.assertEqual(len(res), 3, '%s: %r' % (name, res))
            closed, t, lo = res
            self.assertTrue(closed, '%s: still open' % name)
            self.assertGreaterEqual(t, lo, '%s: closed too early (%.2fs)' % (name, t))


if __name__ == '__main__':
    fx.main()
