"""Bad input: every malformed, oversized, misdirected or abandoned request
gets the right status (with a text/plain reason) or a closed connection, and
stampeded keeps serving other clients afterwards. Raw sockets over ssl give
byte-exact control of what is sent. The last test enrolls after all of them;
tearDownClass asserts a clean SIGTERM exit and no sanitizer report."""
import base64
import os
import subprocess
import random
import socket
import ssl
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

ENROLL = fx.EST + 'simpleenroll'


class TestBadInput(fx.SharedDaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        key = fx.gen_key(os.path.join(cls.class_tmp, 'bad.key'), 'rsa2048')
        cls.csr_der = fx.make_csr(key, '/CN=SEPBAD000000001', os.path.join(cls.class_tmp, 'bad.csr'))

    def auth(self):
        return 'Authorization: ' + fx.basic('est', self.d.password)

    def enroll_req(self, body, ctype='application/pkcs10', cte='base64', extra=()):
        h = [self.auth(), 'Content-Length: %d' % len(body)]
        if ctype is not None:
            h.append('Content-Type: ' + ctype)
        if cte is not None:
            h.append('Content-Transfer-Encoding: ' + cte)
        return fx.raw_request('POST', ENROLL, h + list(extra), body)

    def tearDown(self):
        # After every case the daemon still serves a fresh client.
        self.assert_serving()

    def assert_serving(self):
        self.assertTrue(self.d.running(), 'stampeded died:\n' + self.d.stderr()[-4000:])
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('GET', fx.EST + 'cacerts', ['Connection: close']))
            r = fx.read_response(s)
            self.assertEqual(r.status, 200, r)
        finally:
            s.close()

    def exchange(self, data, status, close, allow=None):
        """exchange sends `data` on a fresh TLS connection and checks the
        response: `status` (or one of a tuple), text/plain reason, Allow header, and either that
        the server closes the connection (close=True) or that the same
        connection still serves a request (close=False)."""
        s = fx.tls_connect(self.d)
        try:
            s.sendall(data)
            r = fx.read_response(s)
            if isinstance(status, tuple):
                self.assertIn(r.status, status, r)
            else:
                self.assertEqual(r.status, status, r)
            self.assertEqual(r.header('content-type'), 'text/plain', r)
            self.assertTrue(r.body.strip(), 'error responses carry a reason')
            self.assertTrue(r.body.endswith(b'\n'))
            if allow is not None:
                self.assertEqual(r.header('allow'), allow, r)
            if close:
                self.assertEqual(r.header('connection'), 'close', r)
                closed, _ = fx.wait_closed(s, 10)
                self.assertTrue(closed, 'server kept the connection open after %s' % (status,))
            else:
                self.assertIsNone(r.header('connection'), r)
                s.sendall(fx.raw_request('GET', fx.EST + 'cacerts'))
                r2 = fx.read_response(s)
                self.assertEqual(r2.status, 200, 'connection unusable after %s: %r' % (status, r2))
            return r
        finally:
            s.close()

    # ---- bodies

    def test_400_bad_base64(self):
        self.exchange(self.enroll_req(b'!!!! this is not base64 @@@@\n'), 400, False)

    def test_400_base64_not_a_csr(self):
        self.exchange(self.enroll_req(fx.b64(b'hello, I am not a PKCS#10 request' * 4)), 400, False)
        self.exchange(self.enroll_req(fx.b64(bytes(random.Random(7).randrange(256) for _ in range(600)))),
                      400, False)

    def test_400_truncated_csr(self):
        self.exchange(self.enroll_req(fx.b64(self.csr_der[:len(self.csr_der) // 2])), 400, False)

    def test_400_csr_with_trailing_bytes(self):
        self.exchange(self.enroll_req(fx.b64(self.csr_der + b'\x00\x00')), 400, False)

    def test_400_corrupted_signature(self):
        der = bytearray(self.csr_der)
        der[-5] ^= 0x01   # inside the RSA signature BIT STRING
        r = self.exchange(self.enroll_req(fx.b64(bytes(der))), 400, False)
        self.assertNotIn(b'SEPBAD', r.body)

    def test_largest_valid_csr_is_issued(self):
        # A valid CSR just under max_body (long subject: 150 OUs) gets its
        # certificate, complete, never "500 out of memory" or a cut response.
        key = fx.gen_key(os.path.join(self.tmp, 'big.key'), 'ec256')
        subj = '/CN=big' + ''.join('/OU=unit%03d%s' % (i, 'y' * 40) for i in range(150))
        der = fx.make_csr(key, subj, os.path.join(self.tmp, 'big.csr'))
        self.assertLess(len(fx.b64(der)), 16384, 'must fit max_body')
        s = fx.tls_connect(self.d)
        try:
            s.sendall(self.enroll_req(fx.b64(der)))
            r = fx.read_response(s)
        finally:
            s.close()
        self.assertEqual(r.status, 200, r)
        p7 = os.path.join(self.tmp, 'big.p7')
        with open(p7, 'wb') as f:
            f.write(base64.b64decode(r.body))
        out = subprocess.run(['openssl', 'pkcs7', '-inform', 'DER', '-in', p7, '-print_certs'],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('unit149', out.stdout)

    def test_400_empty_body(self):
        self.exchange(self.enroll_req(b''), 400, False)

    # ---- routing

    def test_404_unknown_paths(self):
        for path in ('/foo', '/.well-known/est/nope', '/.well-known/est/', '/.well-known/est',
                     '/.well-known/est/cacerts/x', '/.well-known/est/CACERTS'):
            self.exchange(fx.raw_request('GET', path), 404, False)

    def test_query_string_ignored(self):
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('GET', fx.EST + 'cacerts?x=1'))
            self.assertEqual(fx.read_response(s).status, 200)
        finally:
            s.close()

    def test_501_unsupported_operation(self):
        self.exchange(fx.raw_request('POST', fx.EST + 'serverkeygen', ['Content-Length: 0']), 501, False)

    def test_expect_100_continue_rejected_early(self):
        # No credentials: 401 at once, without waiting for the body.
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('POST', ENROLL, [
                'Content-Type: application/pkcs10', 'Content-Length: 1000', 'Expect: 100-continue']))
            r = fx.read_response(s, timeout=10)
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.header('connection'), 'close')
            self.assertTrue(fx.wait_closed(s, 10)[0])
        finally:
            s.close()

    def test_405_methods(self):
        self.exchange(fx.raw_request('GET', ENROLL), 405, False, allow='POST')
        self.exchange(fx.raw_request('GET', fx.EST + 'simplereenroll'), 405, False, allow='POST')
        self.exchange(fx.raw_request('POST', fx.EST + 'cacerts', ['Content-Length: 4'], b'abcd'), 405, False,
                      allow='GET')
        self.exchange(fx.raw_request('POST', fx.EST + 'csrattrs', ['Content-Length: 0']), 405, False, allow='GET')
        self.exchange(fx.raw_request('PUT', ENROLL, ['Content-Length: 0']), 405, False, allow='POST')

    # ---- framing

    def test_411_chunked(self):
        body = b'5\r\nhello\r\n0\r\n\r\n'
        self.exchange(fx.raw_request('POST', ENROLL, [
            self.auth(), 'Content-Type: application/pkcs10', 'Transfer-Encoding: chunked'], body), 411, True)

    def test_411_no_content_length(self):
        self.exchange(fx.raw_request('POST', ENROLL, [self.auth(), 'Content-Type: application/pkcs10']),
                      411, True)

    def test_413_content_length_above_max_body(self):
        for n in (16385, 20000, 10 ** 11):
            self.exchange(fx.raw_request('POST', ENROLL, [
                self.auth(), 'Content-Type: application/pkcs10', 'Content-Length: %d' % n]), 413, True)

    def test_400_bad_content_length(self):
        for v in ('-1', 'abc', '12 34', '1e3', '9999999999999'):
            self.exchange(fx.raw_request('POST', ENROLL, [self.auth(), 'Content-Length: ' + v]), 400, True)
        self.exchange(fx.raw_request('POST', ENROLL, [self.auth(), 'Content-Length: 4', 'Content-Length: 4'],
                                     b'abcd'), 400, True)

    def test_415_content_type(self):
        body = fx.b64(self.csr_der)
        self.exchange(self.enroll_req(body, ctype='text/plain'), 415, False)
        self.exchange(self.enroll_req(body, ctype='application/pkcs7-mime'), 415, False)
        self.exchange(self.enroll_req(body, ctype=None), 415, False)

    def test_415_content_transfer_encoding(self):
        self.exchange(self.enroll_req(fx.b64(self.csr_der), cte='binary'), 415, False)
        self.exchange(self.enroll_req(self.csr_der, cte='8bit'), 415, False)

    def test_content_type_parameters_accepted(self):
        s = fx.tls_connect(self.d)
        try:
            s.sendall(self.enroll_req(fx.b64(self.csr_der), ctype='Application/PKCS10; charset=x', cte='BASE64'))
            r = fx.read_response(s)
            self.assertEqual(r.status, 200, r)
        finally:
            s.close()

    # ---- header syntax

    def test_400_malformed_request_line_then_close(self):
        for line in (b'GARBAGE\r\n\r\n', b'GET\r\n\r\n', b'GET  / HTTP/1.1\r\n\r\n',
                     b'GET noslash HTTP/1.1\r\n\r\n',
                     b'G(T / HTTP/1.1\r\n\r\n', b'\r\n\r\n'):
            self.exchange(line, 400, True)

    def test_400_request_line_with_trailing_garbage(self):
        # 'HTTP/1.1 extra' is not an HTTP-version at all (RFC 9112 3): a
        # malformed request line (400), not an unsupported version (505).
        self.exchange(b'GET / HTTP/1.1 extra\r\n\r\n', 400, True)
        self.exchange(b'GET /.well-known/est/cacerts HTTP/1.1x\r\n\r\n', 400, True)

    def test_400_bad_header_lines(self):
        for hdr in (b'NoColonHere', b'Bad Name: x', b': empty-name', b'X-Ctl: a\x01b'):
            self.exchange(b'GET ' + fx.EST.encode() + b'cacerts HTTP/1.1\r\nHost: x\r\n' + hdr + b'\r\n\r\n',
                          400, True)
        # A bare LF inside the header block.
        self.exchange(b'GET /.well-known/est/cacerts HTTP/1.1\nHost: x\r\n\r\n', 400, True)

    def test_505_http_version(self):
        self.exchange(b'GET /.well-known/est/cacerts HTTP/2.0\r\n\r\n', 505, True)
        self.exchange(b'GET /.well-known/est/cacerts HTTP/1.2\r\n\r\n', 505, True)

    def test_431_oversized_header_block(self):
        pad = 'X-Pad: ' + 'a' * 9000
        self.exchange(fx.raw_request('GET', fx.EST + 'cacerts', [pad]), 431, True)
        many = ['X-H%d: %s' % (i, 'b' * 60) for i in range(200)]
        self.exchange(fx.raw_request('GET', fx.EST + 'cacerts', many), 431, True)

    def test_header_just_below_limit_ok(self):
        req = fx.raw_request('GET', fx.EST + 'cacerts', ['X-Pad: ' + 'a' * 7900])
        self.assertLess(len(req), 8192)
        s = fx.tls_connect(self.d)
        try:
            s.sendall(req)
            self.assertEqual(fx.read_response(s).status, 200)
        finally:
            s.close()

    def test_pipelined_requests(self):
        s = fx.tls_connect(self.d)
        try:
            s.sendall(fx.raw_request('GET', fx.EST + 'cacerts') + fx.raw_request('GET', fx.EST + 'csrattrs') +
                      fx.raw_request('GET', '/nope') + self.enroll_req(fx.b64(self.csr_der)))
            r1 = fx.read_response(s)
            self.assertEqual(r1.status, 200)
            rest = r1.extra
            statuses = []
            # The remaining responses may already be buffered in r1.extra.
            buf = rest
            for _ in range(3):
                while b'\r\n\r\n' not in buf:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, 'connection closed during pipelined responses')
                    buf += chunk
                head, _, tail = buf.partition(b'\r\n\r\n')
                st, hdrs = fx.parse_header_block(head.decode('latin-1'))
                n = int(dict(hdrs).get('content-length', '0'))
                while len(tail) < n:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk)
                    tail += chunk
                statuses.append(st)
                buf = tail[n:]
            self.assertEqual(statuses, [204, 404, 200])
        finally:
            s.close()

    # ---- transport-level abuse

    def test_plain_http_to_tls_port(self):
        s = fx.tcp_connect(self.d)
        try:
            s.sendall(b'GET /.well-known/est/cacerts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
            closed, _ = fx.wait_closed(s, 10)
            self.assertTrue(closed, 'plain HTTP on the TLS port must be closed')
        finally:
            s.close()

    def test_garbage_instead_of_client_hello(self):
        rnd = random.Random(1)
        for prefix in (b'', b'\x16\x03\x01\x00\x05', b'\x16\x03\x01\xff\xff'):
            s = fx.tcp_connect(self.d)
            try:
                s.sendall(prefix + bytes(rnd.randrange(256) for _ in range(2048)))
                closed, _ = fx.wait_closed(s, 15)
                self.assertTrue(closed)
            finally:
                s.close()

    def test_garbage_application_data_after_handshake(self):
        rnd = random.Random(2)
        data = bytes(rnd.randrange(256) for _ in range(9000)).replace(b'\r\n\r\n', b'xxxx')
        s = fx.tls_connect(self.d)
        try:
            s.sendall(data)
            r = fx.read_response(s)
            self.assertIn(r.status, (400, 431), r)
            self.assertEqual(r.header('content-type'), 'text/plain')
            self.assertTrue(fx.wait_closed(s, 10)[0])
        finally:
            s.close()
        # Shorter garbage that does form a header block: 400 and closed.
        self.exchange(bytes(rnd.randrange(1, 256) for _ in range(300)).replace(b'\r', b'x').replace(b'\n', b'y')
                      + b'\r\n\r\n', 400, True)

    def test_garbage_tls_records_after_handshake(self):
        rnd = random.Random(3)
        for record in (b'\x17\x03\x03\x00\x40' + bytes(rnd.randrange(256) for _ in range(64)),
                       bytes(rnd.randrange(256) for _ in range(4096)),
                       b'\x15\x03\x03\x00\x02\x02\x32'):
            s = fx.tls_connect(self.d)
            raw = socket.socket(fileno=os.dup(s.fileno()))
            try:
                raw.sendall(record)
                closed, _ = fx.wait_closed(raw, 10)
                self.assertTrue(closed, 'corrupt TLS record must end the connection')
            finally:
                raw.close()
                s.close()

    def test_client_closes_mid_request(self):
        body = fx.b64(self.csr_der)
        full = self.enroll_req(body)
        cuts = [10, len(full) - len(body) - 4, len(full) - len(body) // 2]
        for cut in cuts:
            s = fx.tls_connect(self.d)
            s.sendall(full[:cut])
            time.sleep(0.05)
            s.close()
        # Whole request sent, then gone while the job is on a signer.
        for _ in range(5):
            s = fx.tls_connect(self.d)
            s.sendall(full)
            s.close()
        # Abortive close (RST) mid-body and right after the request.
        for cut in (len(full) // 2, len(full)):
            s = fx.tls_connect(self.d)
            s.sendall(full[:cut])
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            s.close()
        time.sleep(0.5)

    def test_client_closes_mid_handshake(self):
        for mode in ('connect-close', 'partial-hello', 'rst'):
            s = fx.tcp_connect(self.d)
            if mode == 'partial-hello':
                s.sendall(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')
            if mode == 'rst':
                s.sendall(b'\x16\x03\x01\x02\x00\x01')
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            s.close()
        # A handshake abandoned after the server's flight (memory BIO client).
        ctx = fx.client_context(self.d)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname='127.0.0.1')
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        s = fx.tcp_connect(self.d)
        s.sendall(out.read())
        s.settimeout(10)
        try:
            s.recv(65536)
        except OSError:
            pass
        s.close()
        time.sleep(0.3)

    def test_zz_enroll_still_works(self):
        # Named to run last (unittest sorts by name): the daemon survived everything above.
        r = fx.curl_enroll(self.d, self.csr_der)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(fx.p7_to_pem(r.body, self.tmp, 'final')), 1)
        self.assertEqual(self.d.sanitizer_reports(), [])


if __name__ == '__main__':
    fx.main()
