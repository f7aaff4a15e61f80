"""Concurrency: 300 enrollments from 50 client threads at a time, each on a
fresh TLS connection (Python ssl + http.client). Every request must get 200,
every certificate must carry the subject and public key of its own CSR (no
cross-talk between sessions), serials must be unique, and all certificates
must verify against the CA (one `openssl verify` over all of them)."""
import base64
import concurrent.futures
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

TOTAL = 300
PARALLEL = 50
KEYS = 10


def der_tlv(buf, pos):
    """der_tlv returns (tag, content_start, content_end) of the TLV at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(buf[pos:pos + k], 'big')
        pos += k
    return tag, pos, pos + n


def cert_serial(der):
    """cert_serial returns the serial INTEGER bytes of a DER certificate."""
    _, c, _ = der_tlv(der, 0)          # Certificate
    _, t, _ = der_tlv(der, c)          # TBSCertificate
    tag, v, ve = der_tlv(der, t)       # [0] version
    if tag == 0xa0:
        tag, v, ve = der_tlv(der, ve)
    assert tag == 0x02, 'serial is not an INTEGER'
    return der[v:ve]


def pem_der(pem):
    body = re.sub(r'-----[^-]+-----', '', pem)
    return base64.b64decode(''.join(body.split()))


class TestConcurrency(fx.SharedDaemonTestCase):

    def test_300_parallel_enrollments(self):
        work = self.tmp
        keys = [fx.gen_key(os.path.join(work, 'k%d.pem' % i), 'ec256' if i % 2 else 'rsa2048')
                for i in range(KEYS)]
        pubs = [fx.openssl('pkey', '-in', k, '-pubout', '-outform', 'DER').stdout for k in keys]
        cns = ['SEP%012X' % (0x74A02F000000 + i) for i in range(TOTAL)]

        def mk(i):
            return fx.make_csr(keys[i % KEYS], '/O=Stampede Test/CN=%s' % cns[i],
                               os.path.join(work, 'c%d.der' % i))

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            csrs = list(ex.map(mk, range(TOTAL)))

        password = self.d.password

        def enroll(i):
            t0 = time.monotonic()
            try:
                r = fx.py_enroll(self.d, csrs[i], password=password, timeout=60)
                return i, r, time.monotonic() - t0, None
            except Exception as e:  # reported below, per request
                return i, None, time.monotonic() - t0, repr(e)

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as ex:
            results = list(ex.map(enroll, range(TOTAL), timeout=240))
        elapsed = time.monotonic() - t0
        errors = [(i, err) for i, r, _, err in results if err]
        self.assertEqual(errors, [], 'client errors')
        bad = [(i, r.status, r.body[:100]) for i, r, _, _ in results if r.status != 200]
        self.assertEqual(bad, [], 'non-200 answers')
        print('\n  %d enrollments in %.1fs, slowest %.2fs' % (
            TOTAL, elapsed, max(t for _, _, t, _ in results)), flush=True)

        def check(item):
            i, r, _, _ = item
            self.assertEqual(r.header('content-type'), fx.P7_TYPE)
            certs = fx.p7_to_pem(r.body, work, 'r%d' % i)
            self.assertEqual(len(certs), 1, 'response %d' % i)
            path = fx.write(os.path.join(work, 'leaf%d.pem' % i), certs[0])
            der = pem_der(certs[0])
            self.assertIn(pubs[i % KEYS], der, 'response %d carries another CSR\'s key' % i)
            self.assertIn(cns[i].encode(), der, 'response %d carries another CSR\'s subject' % i)
            for j in (i - 1, i + 1):
                if 0 <= j < TOTAL:
                    self.assertNotIn(cns[j].encode(), der)
            return path, cert_serial(der)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            checked = list(ex.map(check, results))
        serials = [s for _, s in checked]
        for s in serials:
            self.assertEqual(len(s), 16)
            self.assertLess(s[0], 0x80)
        self.assertEqual(len(set(serials)), TOTAL, 'serial numbers must be unique')

        paths = [p for p, _ in checked]
        cv = fx.verify(self.d.ca_path, *paths)
        self.assertEqual(cv.returncode, 0, cv.stderr.decode()[-2000:])
        self.assertEqual(cv.stdout.decode().count(': OK'), TOTAL, cv.stdout.decode()[-2000:])

    def test_parallel_mixed_traffic(self):
        """Enrollments, wrong passwords, /cacerts and 404s interleaved."""
        key = fx.gen_key(os.path.join(self.tmp, 'mix.key'), 'ec256')
        csr = fx.make_csr(key, '/CN=mixed', os.path.join(self.tmp, 'mix.der'))
        password = self.d.password

        def one(i):
            kind = i % 4
            if kind == 0:
                return kind, fx.py_enroll(self.d, csr, password=password).status
            if kind == 1:
                return kind, fx.py_enroll(self.d, csr, password='wrong').status
            conn = fx.https_conn(self.d)
            try:
                path = fx.EST + ('cacerts' if kind == 2 else 'nope')
                return kind, fx.http_request(conn, 'GET', path).status
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(40) as ex:
            res = list(ex.map(one, range(200), timeout=240))
        want = {0: 200, 1: 401, 2: 200, 3: 404}
        wrong = [(k, s) for k, s in res if s != want[k]]
        self.assertEqual(wrong, [])



class TestOverload(fx.DaemonTestCase):
    """One core, one signer, a queue bound of 16 and slow RSA-3072 keys: the
    daemon must shed with HTTP 503 + Retry-After (design.md: "A core sheds
    load (503 + Retry-After ...)"), and a handshake it has accepted is not
    refused (cx_pool.h: `force` is for "a handshake already accepted")."""

    def test_overload_sheds_with_503(self):
        d = self.daemon(['--queue-bound', '16', '--cores', '1', '--signers', '1',
                         '--ca-key', 'rsa3072', '--tls-key', 'rsa3072', '--retry-after', '7'])
        key = fx.gen_key(os.path.join(self.tmp, 'o.key'), 'ec256')
        csr = fx.make_csr(key, '/CN=overload', os.path.join(self.tmp, 'o.der'))
        password = d.password

        def one(i):
            try:
                r = fx.py_enroll(d, csr, password=password, timeout=60)
                return r.status, r.header('retry-after'), r.header('content-type'), r.body
            except Exception as e:
                return 'client error', type(e).__name__, str(e)[:100], b''

        with concurrent.futures.ThreadPoolExecutor(100) as ex:
            res = list(ex.map(one, range(200), timeout=240))
        counts = {}
        for r in res:
            k = r[0] if r[0] != 'client error' else '%s %s' % (r[0], r[1])
            counts[k] = counts.get(k, 0) + 1
        print('\n  outcomes: %s' % counts, flush=True)
        for status, retry, ctype, body in res:
            self.assertIn(status, (200, 503), 'every client gets an HTTP answer: %s' % counts)
            if status == 503:
                self.assertEqual(retry, '7')
                self.assertEqual(ctype, 'text/plain')
                self.assertTrue(body.strip())
        self.assertGreater(counts.get(200, 0), 0)
        # After the burst the daemon serves normally again.
        self.assertEqual(fx.py_enroll(d, csr, password=password).status, 200)
        d.stop()


if __name__ == '__main__':
    fx.main()
