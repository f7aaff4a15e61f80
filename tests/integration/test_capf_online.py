"""CAPF in online CA mode (`--ca-mode online`, docs/redis-schema.md "Online CA
mode"): a phone's key goes to the upstream CA through stampede-control
instead of being signed by the local CA. stampede-control is not used here:
the test plays its part directly in Redis, as the schema's contract says
(read the stp:upstream entry, check the pending record and its PKCS#10, then
COMPLETE or REJECT the record with a script and PUBLISH its key on the
record's `notify` channel), with a test CA generated at test time.

* v2 (Jabber-like) and v3 phones get the upstream CA's certificate as their
  LSC; the device shows success with lsc_serial = that serial; the request
  record keeps stampede-control's fields and the audit has one `issue`.
* The PKCS#10: version 0, subject = the LSC subject of local mode (CA's
  C/ST/L/O/OU, then CN=<device>), the phone's key, no attributes, a SHA-256
  signature by stampeded's CA (CAPF) key: a phone signs nothing.
* REJECT: END_SESSION 07, status failed with the CA's reason, op install.
* The phone leaving while its session waits: status failed (Phone
  Communication Failure), lock released at once; the CA's later answer is
  delivered to the phone's retry without a new submission.
* No answer within capf_online_timeout (the minimum, 5 s): END 07, "online
  CA did not answer in time", op install, record still pending; the retry is
  not queued twice and gets the certificate.
* A COMPLETE whose PUBLISH is lost is found when the subscription comes
  back (the core's subscriber killed), or at the latest by the final read
  at expiry.
* SIGTERM while a phone waits: END 07 at once (recorded), exit 0.

Every session's log lines name peer, device, session and request. Bounded
waits, 127.0.0.1 only, keys generated at test time, cleanup by the fixture.
Python 3.11 standard library + cryptography."""
import datetime
import hashlib
import os
import re
import secrets
import signal
import sys
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capf_client as cc  # noqa: E402
import stampede_fixture as fx  # noqa: E402
import test_capf as tc  # noqa: E402
import test_capf_faults as tf  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

UPSTREAM = 'stp:upstream'
ENTRY_BOUND = 20.0        # the session's request appears on stp:upstream
SESSION_BOUND = 60.0      # a phone session in a worker thread ends
SHORT_TIMEOUT = 5         # capf_online_timeout of the timeout class (the setting's minimum)
LONG_TIMEOUT = 60         # capf_online_timeout of the main class (never reached)
LOCAL_COPIED = (NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
                NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME)

# stampede-control's COMPLETE and REJECT as the schema words them (the
# real ones are stampede-control's scripts; these write the same fields).
# KEYS: record, stp:reqs:open, stp:upstream:wait, stp:audit.
COMPLETE_LUA = """
local r = redis.call('HMGET', KEYS[1], 'id', 'notify', 'protocol', 'identity')
redis.call('HSET', KEYS[1], 'state', 'issued', 'cert', ARGV[2], 'serial', ARGV[3], 'not_after', ARGV[4],
  'ca_state', 'done', 'ca_req_id', ARGV[5], 'updated', ARGV[1])
redis.call('ZREM', KEYS[2], r[1])
redis.call('ZREM', KEYS[3], KEYS[1])
redis.call('XADD', KEYS[4], '*', 'event', 'issue', 'time', ARGV[1], 'device', r[4], 'serial', ARGV[3],
  'request', r[1], 'protocol', r[3], 'reason', 'online CA request ' .. ARGV[5])
if ARGV[6] == '1' and r[2] and r[2] ~= '' then return redis.call('PUBLISH', r[2], KEYS[1]) end
return -1
"""
REJECT_LUA = """
local r = redis.call('HMGET', KEYS[1], 'id', 'notify', 'protocol', 'identity')
redis.call('HSET', KEYS[1], 'state', 'rejected', 'reason', ARGV[2], 'ca_state', 'done', 'updated', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[1], r[1])
redis.call('ZREM', KEYS[3], KEYS[1])
redis.call('XADD', KEYS[4], '*', 'event', 'deny', 'time', ARGV[1], 'device', r[4], 'reason', ARGV[2],
  'request', r[1], 'protocol', r[3])
if ARGV[3] == '1' and r[2] and r[2] ~= '' then return redis.call('PUBLISH', r[2], KEYS[1]) end
return -1
"""


def der_elements(der, pos=0):
    """The raw DER elements inside the SEQUENCE at `pos`."""
    _, p, end = fx.der_tlv(der, pos)
    out = []
    while p < end:
        _, _, e = fx.der_tlv(der, p)
        out.append(der[p:e])
        p = e
    return out


class UpstreamCA:
    """The upstream CA of the tests: an RSA-2048 root made at test time that
    signs what the phone's request asks for (as an ADCS template would:
    subject and key from the request)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'Test Upstream Issuing CA %s'
                                             % secrets.token_hex(3))])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def sign(self, csr, serial=None):
        """The certificate for `csr`: DER and its serial as an int."""
        serial = serial or x509.random_serial_number()
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
                .public_key(csr.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=200))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                                      ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.DER), serial


class CapfOnlineCase(tc.CapfCase):
    """A stampeded in online CA mode plus stampede-control's part."""
    ONLINE_TIMEOUT = LONG_TIMEOUT

    @classmethod
    def setUpClass(cls):
        cls.DAEMON_ARGS = ('--ca-mode', 'online', '--capf-online-timeout', str(cls.ONLINE_TIMEOUT))
        super().setUpClass()
        try:
            cls.upstream = UpstreamCA()
            with open(cls.d.ca_path, 'rb') as f:
                cls.capf_ca = x509.load_pem_x509_certificate(f.read())
        except BaseException:
            cls.tearDownClass()
            raise

    def setUp(self):
        super().setUp()
        self.pool = ThreadPoolExecutor(4)
        self.addCleanup(self.pool.shutdown, wait=True, cancel_futures=True)

    # -- stampede-control's part ----------------------------------------------------

    def stream_mark(self):
        return self.redis.last_id(UPSTREAM)

    def entries_since(self, mark, device):
        return [(eid, f) for eid, f in self.redis.xrange(UPSTREAM, '(' + mark)
                if f.get('id', '').startswith(device + ':')]

    def next_entry(self, mark, device):
        """Waits for the device's request on stp:upstream after `mark`;
        returns (entry id, record key, request id)."""
        got = tc.wait_for(lambda: self.entries_since(mark, device), ENTRY_BOUND)
        self.assertTrue(got, 'no stp:upstream entry for %s within %.0f s:\n%s' % (
            device, ENTRY_BOUND, self.d.stderr()[-3000:]))
        self.assertEqual(len(got), 1, 'queued more than once: %r' % got)
        eid, f = got[0]
        self.assertEqual(set(f), {'key', 'id'}, f)
        return eid, f['key'], f['id']

    def check_pending(self, key, rid, device, version=3):
        """The pending record as the request script's online branch writes
        it, plus CAPF's fields; returns (record, CSR)."""
        rec = self.redis.hgetall(key)
        self.assertEqual(key, 'stp:req:{%s}:%s' % (device, rid.split(':', 1)[1]))
        for k, v in (('id', rid), ('identity', device), ('protocol', 'capf'), ('mode', 'online'),
                     ('state', 'pending'), ('ca_state', 'queued')):
            self.assertEqual(rec.get(k, b'').decode(), v, '%s in %r' % (k, rec))
        self.assertEqual(hashlib.sha256(rec['csr']).hexdigest(), rid.split(':', 1)[1], 'key = SHA-256 of csr')
        self.assertTrue(rec['notify'].startswith(b'stp:done:'), rec['notify'])
        self.assertTrue(rec['peer'].startswith(b'127.0.0.1:'))
        for k in ('received', 'updated', 'attempts'):
            self.assertTrue(rec[k].isdigit(), '%s %r' % (k, rec[k]))
        self.assertIsNotNone(self.redis.command('ZSCORE', 'stp:reqs:open', rid), 'not in stp:reqs:open')
        return rec, self.check_p10(rec['p10'], rec['csr'], device)

    def check_p10(self, p10, spki, device):
        """The PKCS#10 stampeded built: version 0, the LSC subject of local
        mode, the phone's key as sent, no attributes, SHA-256 by the CAPF
        (stampeded CA) key."""
        csr = x509.load_der_x509_csr(p10)
        info = der_elements(p10)[0]
        version, subject, got_spki, attrs = der_elements(info)
        self.assertEqual(version, b'\x02\x01\x00', 'version 0')
        self.assertEqual(got_spki, spki, 'SubjectPublicKeyInfo = the phone key, byte for byte')
        self.assertEqual(attrs, b'\xa0\x00', 'no attributes')
        self.assertEqual(cc.public_key_der(csr.public_key()), spki)
        want = [a for a in self.capf_ca.subject if a.oid in LOCAL_COPIED]
        want.append(x509.NameAttribute(NameOID.COMMON_NAME, device))
        self.assertEqual(list(csr.subject), want, 'subject: the LSC subject of local mode')
        self.assertEqual([a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)], [device])
        self.assertIsInstance(csr.signature_hash_algorithm, hashes.SHA256)
        ca_pub = self.capf_ca.public_key()
        if isinstance(ca_pub, ec.EllipticCurvePublicKey):
            ca_pub.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256()))
        else:
            ca_pub.verify(csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(), hashes.SHA256())
        self.assertFalse(csr.is_signature_valid, 'the phone key signed nothing')
        return csr

    def eval(self, script, key, *args):
        return self.redis.command('EVAL', script, 4, key, 'stp:reqs:open', 'stp:upstream:wait', 'stp:audit',
                                  *args)

    def complete(self, key, csr, publish=True, eid=None):
        """COMPLETE with a certificate of the test CA; returns (DER, serial hex)."""
        der, serial = self.upstream.sign(csr)
        shex = '%x' % serial
        shex = ('0' + shex) if len(shex) % 2 else shex    # whole bytes, no leading zero byte
        na = int(tc.not_after(x509.load_der_x509_certificate(der)).timestamp())
        n = self.eval(COMPLETE_LUA, key, int(time.time()), der, shex, na, secrets.randbelow(10 ** 6) + 1,
                      '1' if publish else '0')
        if publish:
            self.assertGreaterEqual(n, 0)
        if eid:
            self.redis.command('XDEL', UPSTREAM, eid)       # acknowledged and deleted
        return der, shex

    def reject(self, key, reason, eid=None):
        self.eval(REJECT_LUA, key, int(time.time()), reason, '1')
        if eid:
            self.redis.command('XDEL', UPSTREAM, eid)

    # -- phones ---------------------------------------------------------------------

    def start_install(self, name, version=3, **kw):
        """Connects in this thread, runs the install in a worker; returns
        (client, future)."""
        c = self.connect(version)
        return c, self.pool.submit(c.install, name, **kw)

    def result(self, fut):
        return fut.result(timeout=SESSION_BOUND)

    def lock_holder(self, name):
        return self.redis.command('GET', 'stp:capf:lock:{%s}' % name)

    # -- log ------------------------------------------------------------------------

    def wait_online_log(self, c, device, rid, what, bound=tc.LOG_BOUND):
        """Waits for 'CAPF peer=.. device=.. session=.. request=RID: WHAT'
        (WHAT a regex matched against the rest of the line)."""
        head = 'CAPF peer=%s device=%s session=%08x request=%s: ' % (c.peer, device, c.session_id, rid)
        pat = re.compile(re.escape(head) + what)

        def find():
            return next((ln for ln in self.d.stderr().splitlines() if pat.search(ln)), None)
        line = tc.wait_for(find, bound)
        self.assertTrue(line, 'no log line %r%s; this session: %s' % (head, what, self.log_lines(c.session_id)))
        return line

    # -- one whole install ----------------------------------------------------------

    def online_install(self, version, key_spec=None):
        name = self.add(self.dev('ON%d' % version), *(('--key', key_spec) if key_spec else ()))
        mark, amark = self.stream_mark(), self.audit_mark()
        c, fut = self.start_install(name, version)
        eid, key, rid = self.next_entry(mark, name)
        rec, csr = self.check_pending(key, rid, name, version)
        self.assertEqual(self.show(name)['status'], 'pending')   # nothing recorded on the device yet
        self.wait_online_log(c, name, rid, re.escape('queued for the online CA (stp:upstream); waiting up to '
                                                     '%d s' % self.ONLINE_TIMEOUT))
        der, shex = self.complete(key, csr, eid=eid)
        res = self.result(fut)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.cert_der, der, 'the LSC is the upstream CA\'s certificate')
        self.assertEqual(cc.public_key_der(res.certificate.public_key()), res.public_key_der)
        self.assertEqual(rec['csr'], res.public_key_der)
        # the device
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('success', 'Upgrade Success', 'none'), dev)
        self.assertEqual(dev['lsc_serial'], shex)
        self.assertEqual(dev['lsc_serial'], fx.cert_serial_hex(der))
        self.assertEqual(dev['lsc_md5'], hashlib.md5(der).hexdigest())
        self.assertEqual(dev['lsc_unconfirmed'], '')
        self.assertEqual(dev['lsc_not_after'], int(tc.not_after(x509.load_der_x509_certificate(der)).timestamp()))
        self.assertIsNone(self.lock_holder(name))
        # the record: stampede-control's fields kept, confirmed by the phone
        after = self.redis.hgetall(key)
        self.assertEqual((after['state'], after['mode'], after['confirmed'], after['cert']),
                         (b'issued', b'online', b'1', der))
        self.assertEqual((after['p10'], after['csr'], after['ca_state']), (rec['p10'], rec['csr'], b'done'))
        self.assertTrue(after['ca_req_id'].isdigit())
        self.assertEqual(after['cert_sha256'].decode(), hashlib.sha256(der).hexdigest())
        self.assertIsNone(self.redis.command('ZSCORE', 'stp:reqs:open', rid))
        # the audit: COMPLETE's `issue` once, then the phone's confirmation
        ev = [(e['event'], e.get('serial'), e.get('request')) for e in self.audit_since(amark, name)]
        self.assertEqual(ev, [('issue', shex, rid), ('lsc-installed', shex, rid)])
        self.wait_online_log(c, name, rid, re.escape('issued by the online CA serial=%s' % shex))
        self.wait_log(c.session_id, c.peer, name, 'LSC installed (Upgrade Success) serial=%s' % shex)
        return name, res


class TestCapfOnline(CapfOnlineCase):
    """Installs, refusals and lost phones with a long capf_online_timeout."""

    def test_v3_phone_gets_upstream_lsc(self):
        self.online_install(3)

    def test_v2_phone_gets_upstream_lsc(self):
        name, res = self.online_install(2)
        self.assertEqual([m[1] for m in res.messages], [0x01, 0x03, 0x09, 0x0f], 'the 2.7.1 sequence')
        for raw in res.messages:
            self.assertLessEqual(len(raw), 4096)

    def test_reject(self):
        name = self.add(self.dev('ONrej'))
        mark = self.stream_mark()
        c, fut = self.start_install(name, 3)
        eid, key, rid = self.next_entry(mark, name)
        self.check_pending(key, rid, name)
        why = 'Denied by Policy Module 0x80094801, the request contains no certificate template information'
        self.reject(key, why, eid=eid)
        res = self.result(fut)
        self.assertEqual((res.ended_after, res.end_reason, res.cert_der), ('key', 7, None), res)
        status = 'Upgrade Failed: online CA refused the request: ' + why
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['op']), ('failed', 'install'), dev)
        self.assertEqual(dev['reason'], status)
        self.assertIsNone(self.lock_holder(name))
        self.assertEqual(self.redis.hgetall(key)['state'], b'rejected')
        self.wait_online_log(c, name, rid, re.escape('refused by the online CA: ' + why))
        self.wait_end_log(c, name, re.compile(re.escape(dev['reason'])))

    def test_phone_leaves_while_waiting_then_retry_finds_answer(self):
        name = self.add(self.dev('ONlost'))
        mark = self.stream_mark()
        c = self.connect(3)
        res = c.install(name, stop_at='key_request')
        key_obj = cc.KEY_POOL.get(res.key_request, name)
        c.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.PUBLIC_KEY, cc.public_key_der(key_obj))])
        eid, key, rid = self.next_entry(mark, name)
        _, csr = self.check_pending(key, rid, name)
        self.wait_online_log(c, name, rid, 'queued for the online CA')
        self.assertIsNotNone(self.lock_holder(name))
        c.close()                                      # the phone goes away while the session waits
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['op']), ('failed', 'install'), dev)
        self.assertIn('Phone Communication Failure', dev['reason'])
        self.assertTrue(tc.wait_for(lambda: self.lock_holder(name) is None, tc.STATE_BOUND), 'lock kept')
        self.wait_online_log(c, name, rid, re.escape('the phone closed the connection while waiting for the '
                                                     'online CA'))
        self.assertTrue(self.d.running())
        self.assertEqual(self.redis.hgetall(key)['state'], b'pending')
        # The CA answers after the phone left: nobody waits, nothing breaks.
        der, shex = self.complete(key, csr, eid=eid)
        time.sleep(0.3)
        self.assertTrue(self.d.running())
        self.assertEqual(self.show(name)['status'], 'failed')
        # The phone's retry (same key) gets that certificate at once, no new submission.
        mark = self.stream_mark()
        c2 = self.connect(3)
        res2 = c2.install(name, key=key_obj)
        self.assertTrue(res2.installed, res2)
        self.assertEqual(res2.cert_der, der)
        self.assertEqual(self.entries_since(mark, name), [])
        self.wait_online_log(c2, name, rid, re.escape('already issued by the online CA: not submitted again'))
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['lsc_serial']), ('success', shex), dev)
        self.assertEqual(self.redis.hgetall(key)['confirmed'], b'1')

    def test_phone_reset_while_waiting(self):
        """A TCP RST instead of a close: the same, at once."""
        name = self.add(self.dev('ONrst'))
        mark = self.stream_mark()
        c = self.connect(3)
        res = c.install(name, stop_at='key_request')
        c.send_msg(cc.KEY_GENERATE_RESPONSE,
                   [(cc.PUBLIC_KEY, cc.public_key_der(cc.KEY_POOL.get(res.key_request, name)))])
        _, key, rid = self.next_entry(mark, name)
        self.wait_online_log(c, name, rid, 'queued for the online CA')
        tf.rst_close(c)
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertIn('Phone Communication Failure', dev['reason'])
        self.assertTrue(tc.wait_for(lambda: self.lock_holder(name) is None, tc.STATE_BOUND), 'lock kept')
        self.assertTrue(self.d.running())

    def test_publish_lost_found_when_subscription_returns(self):
        """The notice is lost while the core's subscriber is away: when the
        subscription comes back every parked record is read, long before
        capf_online_timeout (60 s here)."""
        name = self.add(self.dev('ONresub'))
        mark = self.stream_mark()
        c, fut = self.start_install(name, 3)
        eid, key, rid = self.next_entry(mark, name)
        _, csr = self.check_pending(key, rid, name)
        self.wait_online_log(c, name, rid, 'queued for the online CA')
        t0 = time.monotonic()
        der, shex = self.complete(key, csr, publish=False, eid=eid)
        killed = self.redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
        self.assertGreaterEqual(killed, 1, 'no subscriber connection to kill')
        res = self.result(fut)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.cert_der, der)
        self.assertLess(time.monotonic() - t0, LONG_TIMEOUT / 2, 'found only by the final read')
        self.assertEqual(self.show(name)['lsc_serial'], shex)


class TestCapfOnlineTimeout(CapfOnlineCase):
    """capf_online_timeout = 5 s (the minimum): no answer, and a lost notice."""
    ONLINE_TIMEOUT = SHORT_TIMEOUT

    def test_no_answer_then_retry_not_queued_twice(self):
        name = self.add(self.dev('ONto'))
        mark = self.stream_mark()
        c, fut = self.start_install(name, 3)
        eid, key, rid = self.next_entry(mark, name)
        _, csr = self.check_pending(key, rid, name)
        t0 = time.monotonic()
        res = self.result(fut)                         # nobody answers
        self.assertEqual((res.ended_after, res.end_reason), ('key', 7), res)
        self.assertGreater(time.monotonic() - t0, 2.0, 'ended long before capf_online_timeout')
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['reason'], dev['op']),
                         ('failed', 'Upgrade Failed: online CA did not answer in time', 'install'), dev)
        self.assertIsNone(self.lock_holder(name))
        self.assertEqual(self.redis.hgetall(key)['state'], b'pending')
        self.wait_online_log(c, name, rid, re.escape('the online CA did not answer within %d s (record pending)'
                                                     % SHORT_TIMEOUT))
        self.wait_end_log(c, name, 'Upgrade Failed: online CA did not answer in time')
        # The phone retries with the same key: still pending, not queued again;
        # the answer then arrives with a notice on the new session's channel.
        mark = self.stream_mark()
        c2, fut2 = self.start_install(name, 3, key=res.private_key)
        self.wait_online_log(c2, name, rid, 'already pending at the online CA: not queued again')
        self.assertEqual(self.entries_since(mark, name), [])
        rec = self.redis.hgetall(key)
        self.assertEqual(rec['attempts'], b'2')
        der, shex = self.complete(key, csr, eid=eid)
        res2 = self.result(fut2)
        self.assertTrue(res2.installed, res2)
        self.assertEqual(res2.cert_der, der)
        self.assertEqual(self.show(name)['lsc_serial'], shex)

    def test_publish_lost_found_at_expiry(self):
        name = self.add(self.dev('ONlostpub'))
        mark = self.stream_mark()
        c, fut = self.start_install(name, 2)
        eid, key, rid = self.next_entry(mark, name)
        _, csr = self.check_pending(key, rid, name, 2)
        der, shex = self.complete(key, csr, publish=False, eid=eid)   # the notice never comes
        res = self.result(fut)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.cert_der, der)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['lsc_serial']), ('success', shex), dev)
        self.wait_online_log(c, name, rid, re.escape('issued by the online CA serial=%s' % shex))


class TestCapfOnlineStop(CapfOnlineCase):
    """SIGTERM while a phone waits: like EST's 202, the phone is let go at
    once (END 07, recorded), and stampeded exits 0 within its drain."""

    def test_sigterm_while_waiting(self):
        name = self.add(self.dev('ONterm'))
        mark = self.stream_mark()
        c, fut = self.start_install(name, 3)
        _, key, rid = self.next_entry(mark, name)
        self.wait_online_log(c, name, rid, 'queued for the online CA')
        t0 = time.monotonic()
        self.d.signal(signal.SIGTERM)
        res = self.result(fut)
        self.assertEqual((res.ended_after, res.end_reason), ('key', 7), res)
        self.assertLess(time.monotonic() - t0, LONG_TIMEOUT / 2, 'the phone waited for the timeout')
        self.wait_online_log(c, name, rid, re.escape('stampeded is stopping: the wait for the online CA ends'))
        self.wait_end_log(c, name, 'Upgrade Failed: online CA did not answer before stampeded stopped')
        self.assertEqual(self.d.wait(), 0, self.d.stderr()[-3000:])
        self.assertNotIn('device=%s: outcome not recorded' % name, self.d.stderr())


if __name__ == '__main__':
    fx.main()
