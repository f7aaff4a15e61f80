"""The registry behind EST: every simpleenroll from an authenticated identity
is recorded in Redis (`stp:req:{IDENTITY}:SHA256` of the CSR DER) and
audited on `stp:audit` before the answer leaves stampeded; the same CSR
again returns the same certificate (event reissue); a rejected CSR is
recorded and indexed in `stp:reqs:open`; a wrong password is audited only.
Registry devices (`stampedectl device add`) enroll over HTTP Basic with
null or string authentication, once per pending install, before their
deadline. Real stampeded with its embedded redis-server, curl, the openssl
CLI and stampedectl; Redis is read with the fixture's RESP client."""
import calendar
import hashlib
import json
import os
import secrets
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

CTL = os.environ.get('STAMPEDECTL') or os.path.join(fx.BUILD_ROOT, 'ra', 'stampedectl')
AUDIT = 'stp:audit'
OPEN = 'stp:reqs:open'


def req_id(identity, csr_der):
    return '%s:%s' % (identity, hashlib.sha256(csr_der).hexdigest())


def req_key(identity, csr_der):
    return 'stp:req:{%s}:%s' % (identity, hashlib.sha256(csr_der).hexdigest())


def not_time(s):
    """not_time parses openssl's 'notAfter=Nov 22 17:04:38 2026 GMT'."""
    return calendar.timegm(time.strptime(s.split('=', 1)[-1].strip(), '%b %d %H:%M:%S %Y %Z'))


class TestRegistryEst(fx.SharedDaemonTestCase):
    """One stampeded (embedded Redis) for the class; every test uses its own
    keys, CSRs and device names, so the tests do not see each other."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = fx.RedisClient(os.path.join(cls.d.data_dir, 'redis.sock'))
        if not cls.redis.ping():
            raise AssertionError('embedded Redis does not answer on %s' % cls.redis.addr)

    # ------------------------------------------------------------ helpers

    def csr(self, cn, name=None):
        """csr makes a fresh P-256 key and a DER CSR for CN=cn."""
        name = name or cn
        key = fx.gen_key(os.path.join(self.tmp, name + '.key'))
        return fx.make_csr(key, '/CN=%s' % cn, os.path.join(self.tmp, name + '.csr.der'))

    def leaf(self, r, name):
        """leaf checks a 200 PKCS#7 answer and returns (pem_path, der)."""
        self.assertEqual(r.status, 200, r)
        certs = fx.p7_to_pem(r.body, self.tmp, name)
        self.assertEqual(len(certs), 1)
        pem = fx.write(os.path.join(self.tmp, name + '.pem'), certs[0])
        der = fx.openssl('x509', '-in', pem, '-outform', 'DER').stdout
        self.assertEqual(fx.p7_cert_ders(r.body), [der], 'the fixture DER walker disagrees with openssl')
        return pem, der

    def openssl_serial(self, pem):
        """openssl_serial: `openssl x509 -serial`, lower-cased."""
        out = fx.x509_field(pem, '-serial')
        self.assertTrue(out.startswith('serial='), out)
        return out[len('serial='):].lower()

    def audit_mark(self):
        return self.redis.last_id(AUDIT)

    def audit_since(self, mark):
        """audit_since returns the audit entries added after `mark`."""
        return [f for _, f in self.redis.xrange(AUDIT, '(' + mark)]

    def ctl(self, *args, check=True):
        return fx.run([CTL, '--data-dir', self.d.data_dir] + [str(a) for a in args], check=check)

    def device_add(self, name, *args):
        self.ctl('device', 'add', name, '--op', 'install', *args)

    def device_show(self, name):
        return json.loads(self.ctl('device', 'show', name, '--json').stdout)

    def device_name(self, prefix):
        return '%s-%s' % (prefix, secrets.token_hex(4))

    # ------------------------------------------------------------ EST users

    def test_issue_recorded_and_audited(self):
        csr = self.csr('registry-issue')
        mark = self.audit_mark()
        t0 = int(time.time())
        r = fx.curl_enroll(self.d, csr)
        t1 = int(time.time()) + 1
        pem, der = self.leaf(r, 'issue')
        serial = self.openssl_serial(pem)

        rec = self.redis.hgetall(req_key('est', csr))
        self.assertTrue(rec, 'no request record %s' % req_key('est', csr))
        self.assertEqual(rec['state'], b'issued')
        self.assertEqual(rec['serial'].decode(), serial, 'record serial != openssl x509 -serial')
        self.assertFalse(rec['serial'].startswith(b'00'), 'serial hex has a leading zero byte')
        self.assertEqual(rec['cert'], der, 'recorded certificate != the one received')
        self.assertEqual(rec['csr'], csr)
        self.assertEqual(rec['id'].decode(), req_id('est', csr))
        self.assertEqual(rec['identity'], b'est')
        self.assertEqual(rec['protocol'], b'est')
        self.assertEqual(rec['mode'], b'local')
        self.assertEqual(rec['attempts'], b'1')
        self.assertTrue(rec['peer'].startswith(b'127.0.0.1:'), rec['peer'])
        self.assertEqual(int(rec['not_after']), not_time(fx.x509_field(pem, '-enddate')))
        for f in ('received', 'updated'):
            self.assertTrue(t0 <= int(rec[f]) <= t1, '%s=%s not in [%d, %d]' % (f, rec[f], t0, t1))
        self.assertIsNone(self.redis.command('ZSCORE', OPEN, req_id('est', csr)), 'issued request listed as open')

        ents = self.audit_since(mark)
        self.assertEqual([e['event'] for e in ents], ['issue'], ents)
        e = ents[0]
        self.assertEqual(e['serial'], serial)
        self.assertEqual(e['device'], 'est')
        self.assertEqual(e['request'], req_id('est', csr))
        self.assertEqual(e['protocol'], 'est')
        self.assertTrue(e['peer'].startswith('127.0.0.1:'), e)
        self.assertTrue(t0 <= int(e['time']) <= t1, e)

    def test_same_csr_same_certificate_new_csr_new_serial(self):
        csr = self.csr('registry-again')
        first_pem, first = self.leaf(fx.curl_enroll(self.d, csr), 'again-1')
        serial = self.openssl_serial(first_pem)

        mark = self.audit_mark()
        r2 = fx.curl_enroll(self.d, csr)
        _, second = self.leaf(r2, 'again-2')
        self.assertEqual(second, first, 'the same CSR again must return the same certificate')
        ents = self.audit_since(mark)
        self.assertEqual([(e['event'], e['serial']) for e in ents], [('reissue', serial)], ents)
        self.assertEqual(ents[0]['request'], req_id('est', csr))
        rec = self.redis.hgetall(req_key('est', csr))
        self.assertEqual((rec['state'], rec['serial'].decode(), rec['cert']), (b'issued', serial, first))
        self.assertEqual(rec['attempts'], b'2')

        # Python's http.client too: same bytes.
        r3 = fx.py_enroll(self.d, csr)
        self.assertEqual(fx.p7_cert_ders(r3.body), [first])

        other = self.csr('registry-again-other')
        mark = self.audit_mark()
        other_pem, other_der = self.leaf(fx.curl_enroll(self.d, other), 'again-other')
        other_serial = self.openssl_serial(other_pem)
        self.assertNotEqual(other_serial, serial, 'a different CSR must get a new serial')
        self.assertEqual([(e['event'], e['serial']) for e in self.audit_since(mark)], [('issue', other_serial)])
        self.assertEqual(self.redis.hgetall(req_key('est', other))['serial'].decode(), other_serial)
        # The first record is untouched by the second CSR.
        self.assertEqual(self.redis.hgetall(req_key('est', csr))['cert'], first)

    def test_bad_signature_rejected_and_open(self):
        good = self.csr('registry-badsig')
        bad = bytearray(good)
        bad[-1] ^= 0x01            # last byte of the ECDSA signature's s
        bad = bytes(bad)
        mark = self.audit_mark()
        r = fx.curl_enroll(self.d, bad)
        self.assertEqual(r.status, 400, r)
        self.assertIn(b'signature', r.body)

        rec = self.redis.hgetall(req_key('est', bad))
        self.assertTrue(rec, 'rejected request not recorded')
        self.assertEqual(rec['state'], b'rejected')
        reason = rec['reason'].decode()
        self.assertIn('signature does not verify', reason)
        self.assertEqual(rec['csr'], bad)
        self.assertFalse(rec.get('serial'), 'a rejected request has no serial')
        self.assertFalse(rec.get('cert'), 'a rejected request has no certificate')
        self.assertIsNotNone(self.redis.command('ZSCORE', OPEN, req_id('est', bad)),
                             'rejected request not in %s' % OPEN)

        ents = self.audit_since(mark)
        self.assertEqual([e['event'] for e in ents], ['deny'], ents)
        self.assertEqual(ents[0]['reason'], reason)
        self.assertEqual(ents[0]['device'], 'est')
        self.assertEqual(ents[0]['request'], req_id('est', bad))
        self.assertFalse(ents[0].get('serial'), ents[0])

        # The untampered CSR is a different request and is issued.
        self.leaf(fx.curl_enroll(self.d, good), 'badsig-good')
        self.assertEqual(self.redis.hgetall(req_key('est', good))['state'], b'issued')

    def test_wrong_password_401_audited_not_recorded(self):
        csr = self.csr('registry-wrongpw')
        mark = self.audit_mark()
        r = fx.curl_enroll(self.d, csr, password='wrong-' + secrets.token_hex(6))
        self.assertEqual(r.status, 401, r)
        self.assertEqual(self.redis.command('EXISTS', req_key('est', csr)), 0,
                         'a request without an identity must not be recorded')
        ents = self.audit_since(mark)
        self.assertEqual([e['event'] for e in ents], ['deny'], ents)
        self.assertEqual(ents[0]['device'], 'est')
        self.assertTrue(ents[0].get('reason'), ents[0])
        self.assertFalse(ents[0].get('serial'), ents[0])
        self.assertFalse(ents[0].get('request'), ents[0])

    # ------------------------------------------------------------ registry devices

    def test_device_null_auth(self):
        name = self.device_name('SEPNULL')
        self.device_add(name, '--auth', 'null')
        csr = self.csr(name, 'null-1')

        self.assertEqual(self.device_show(name)['status'], 'pending')

        # Null-string authentication: any non-empty password is refused.
        r = fx.curl_enroll(self.d, csr, user=name, password='x')
        self.assertEqual(r.status, 401, r)
        dev = self.device_show(name)
        self.assertEqual((dev['status'], dev['op']), ('pending', 'install'), 'a 401 must not change the device')

        mark = self.audit_mark()
        pem, der = self.leaf(fx.curl_enroll(self.d, csr, user=name, password=''), 'null-1')
        serial = self.openssl_serial(pem)
        dev = self.device_show(name)
        self.assertEqual((dev['status'], dev['op'], dev['lsc_serial']), ('success', 'none', serial), dev)
        self.assertEqual(dev['lsc_not_after'], not_time(fx.x509_field(pem, '-enddate')))
        human = self.ctl('device', 'show', name).stdout.decode()
        self.assertRegex(human, r'status\s+success')
        self.assertRegex(human, r'LSC serial\s+%s' % serial)
        rec = self.redis.hgetall(req_key(name, csr))
        self.assertEqual((rec['state'], rec['serial'].decode(), rec['cert']), (b'issued', serial, der))
        self.assertEqual([(e['event'], e['device'], e['serial']) for e in self.audit_since(mark)],
                         [('issue', name, serial)])

        # The install is done: a new CSR is refused.
        csr2 = self.csr(name, 'null-2')
        mark = self.audit_mark()
        r = fx.curl_enroll(self.d, csr2, user=name, password='')
        self.assertEqual(r.status, 403, r)
        self.assertIn(b'no certificate operation pending for this device', r.body)
        ents = self.audit_since(mark)
        self.assertEqual([(e['event'], e['device']) for e in ents], [('deny', name)], ents)
        self.assertIn('no certificate operation pending', ents[0]['reason'])
        dev = self.device_show(name)
        self.assertEqual((dev['status'], dev['lsc_serial']), ('success', serial), 'a refusal must not touch the LSC')

    def test_device_same_csr_after_success_gets_its_certificate(self):
        """A device whose answer was lost retries the same CSR: the recorded
        certificate comes back (outcome EXISTING), although the successful
        install set op=none: the refusal is decided after the request
        script's "already issued" check."""
        name = self.device_name('SEPRETRY')
        self.device_add(name, '--auth', 'null')
        csr = self.csr(name, 'retry')
        _, der = self.leaf(fx.curl_enroll(self.d, csr, user=name, password=''), 'retry-1')
        r = fx.curl_enroll(self.d, csr, user=name, password='')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(fx.p7_cert_ders(r.body), [der])

    def test_device_policy_refusal_recorded_under_its_csr(self):
        """A device refused by policy (403: deadline passed, or no pending
        operation) is an authenticated identity, so its request is recorded
        under IDENTITY:SHA256(CSR DER), never under an all-zero hash."""
        name = self.device_name('SEPZERO')
        self.ctl('device', 'add', name, '--op', 'install', '--auth', 'null', '--by', '2020-01-01T00:00Z')
        csr = self.csr(name, 'zero')
        mark = self.audit_mark()
        self.assertEqual(fx.curl_enroll(self.d, csr, user=name, password='').status, 403)
        zero = 'stp:req:{%s}:%s' % (name, '0' * 64)
        self.assertEqual(self.redis.command('EXISTS', zero), 0, 'refusal recorded under an all-zero CSR hash')
        rec = self.redis.hgetall(req_key(name, csr))
        self.assertEqual((rec.get('state'), rec.get('csr')), (b'rejected', csr))
        self.assertEqual([e.get('request') for e in self.audit_since(mark)], [req_id(name, csr)])

    def test_device_string_auth(self):
        name = self.device_name('SEPSTR')
        digits = ''.join(secrets.choice('0123456789') for _ in range(8))
        wrong = str((int(digits) + 1) % 10 ** 8).zfill(8)
        self.device_add(name, '--auth', 'string', '--auth-string', digits)
        csr = self.csr(name, 'str')
        for pw in (wrong, '', digits[:-1]):
            r = fx.curl_enroll(self.d, csr, user=name, password=pw)
            self.assertEqual(r.status, 401, (pw, r))
        self.assertEqual(self.redis.command('EXISTS', req_key(name, csr)), 0)
        pem, _ = self.leaf(fx.curl_enroll(self.d, csr, user=name, password=digits), 'str')
        dev = self.device_show(name)
        self.assertEqual((dev['status'], dev['op'], dev['lsc_serial']),
                         ('success', 'none', self.openssl_serial(pem)), dev)

    def test_device_deadline_passed(self):
        name = self.device_name('SEPLATE')
        cp = self.ctl('device', 'add', name, '--op', 'install', '--auth', 'null', '--by', '2020-01-01T00:00Z')
        self.assertIn(b'in the past', cp.stderr)
        csr = self.csr(name, 'late')
        mark = self.audit_mark()
        r = fx.curl_enroll(self.d, csr, user=name, password='')
        self.assertEqual(r.status, 403, r)
        self.assertIn(b'deadline passed', r.body)
        dev = self.device_show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['lsc_serial']), ('failed', 'deadline passed', ''), dev)
        self.assertRegex(self.ctl('device', 'show', name).stdout.decode(), r'status\s+failed: deadline passed')
        ents = self.audit_since(mark)
        self.assertEqual([(e['event'], e['device'], e['reason']) for e in ents],
                         [('deny', name, 'deadline passed')], ents)

    def test_unknown_device_401(self):
        name = self.device_name('SEPNONE')
        csr = self.csr(name, 'unknown')
        mark = self.audit_mark()
        for pw in ('', secrets.token_hex(4)):
            r = fx.curl_enroll(self.d, csr, user=name, password=pw)
            self.assertEqual(r.status, 401, r)
        self.assertEqual(self.redis.command('EXISTS', req_key(name, csr)), 0)
        self.assertEqual(self.redis.command('EXISTS', 'stp:dev:{%s}' % name), 0, 'a lookup must not create a device')
        ents = self.audit_since(mark)
        self.assertEqual([(e['event'], e['device']) for e in ents], [('deny', name)] * 2, ents)


class TestDeadlineSweep(fx.SharedDaemonTestCase):
    """stampeded's deadline sweep (deadline_sweep_s, here 1 s): a device
    whose pending install passed its deadline becomes failed with reason
    "deadline passed" without trying to enroll; other devices are left
    alone."""
    DAEMON_ARGS = ('--deadline-sweep-s', '1')

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = fx.RedisClient(os.path.join(cls.d.data_dir, 'redis.sock'))

    def ctl(self, *args):
        return fx.run([CTL, '--data-dir', self.d.data_dir] + [str(a) for a in args], check=True)

    def show(self, name):
        return json.loads(self.ctl('device', 'show', name, '--json').stdout)

    def test_sweep(self):
        tag = secrets.token_hex(4)
        late, future, delete = 'SEPLATE%s' % tag, 'SEPSOON%s' % tag, 'SEPDEL%s' % tag
        mark = self.redis.last_id(AUDIT)
        self.ctl('device', 'add', late, '--op', 'install', '--auth', 'null', '--by', '2020-01-01T00:00Z')
        self.ctl('device', 'add', future, '--op', 'install', '--auth', 'null', '--by', '2099-01-01T00:00Z')
        self.ctl('device', 'add', delete, '--op', 'delete', '--auth', 'null', '--by', '2020-01-01T00:00Z')
        self.assertIsNotNone(self.redis.command('ZSCORE', 'stp:deadlines', future))
        self.assertIsNone(self.redis.command('ZSCORE', 'stp:deadlines', delete), 'only installs have deadlines')
        deadline = time.monotonic() + 10
        while self.show(late)['status'] != 'failed' and time.monotonic() < deadline:
            time.sleep(0.2)
        dev = self.show(late)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', 'deadline passed', 'install'), dev)
        self.assertIsNone(self.redis.command('ZSCORE', 'stp:deadlines', late), 'swept members leave the set')
        ents = [f for _, f in self.redis.xrange(AUDIT, '(' + mark) if f.get('event') == 'deadline-passed']
        self.assertEqual([e['device'] for e in ents], [late], ents)
        self.assertEqual(self.show(future)['status'], 'pending')
        self.assertEqual(self.show(delete)['status'], 'pending')
        report = self.ctl('report').stdout.decode()
        self.assertRegex(report, r'%s\s+install\s+null\s+failed' % late)
        # replacing the device with a later deadline makes it pending again and re-arms it
        self.ctl('device', 'add', late, '--op', 'install', '--auth', 'null', '--by', '2099-01-01T00:00Z', '--replace')
        self.assertEqual(self.show(late)['status'], 'pending')
        self.assertIsNotNone(self.redis.command('ZSCORE', 'stp:deadlines', late))
        self.ctl('device', 'delete', future)
        self.assertIsNone(self.redis.command('ZSCORE', 'stp:deadlines', future), 'delete removes the deadline')


if __name__ == '__main__':
    fx.main()
