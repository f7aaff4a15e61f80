"""CAPF server inside stampeded (docs: capf-protocol.md section 6), driven by
the strict test client capf_client.py against the real daemon:

* positive flows P1-P17 but P3's RSA-512/1024 (an expected failure: the
  registry cannot schedule them) (v2 Jabber-like and v3 phone-like clients,
  RSA 2048/3072/4096, EC P-256/P-384/P-521, key order, one-time
  authentication strings, authentication by LSC and by MIC + SUDI, a
  second trusted LSC issuer, upgrade, troubleshoot, delete, split records,
  unknown tags, unique session ids);
* policy negatives N1-N7, N9-N12 (N8, a key bound to another device, is in test_capf_faults.py);
* malformed input M1-M15;
* output format F1-F4 and F6 (F1/F2 are checked by the client on every
  server read; F3 the hello bytes; F4 the LSC profile; F6 TLS 1.2/1.3 and no
  TLS 1.3 session tickets).

Every scenario checks the wire result, the registry (`stampedectl device
show NAME --json`, the Redis records) and, where the server logs one, the
session's log line "CAPF peer=... device=... session=...: ...". The slow
timer and resource scenarios (R*) are in test_capf_faults.py.

One stampeded (embedded Redis) per class; every test uses its own device
names, so the tests of a class do not see each other. Every socket read has
a timeout, every wait is bounded, nothing asserts a duration.
Python 3.11 standard library + cryptography (Debian 12's 38.0.4 or newer)."""
import datetime
import hashlib
import json
import os
import re
import secrets
import struct
import sys
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capf_client as cc  # noqa: E402
import stampede_fixture as fx  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier  # noqa: E402

CTL = os.environ.get('STAMPEDECTL') or os.path.join(fx.BUILD_ROOT, 'ra', 'stampedectl')
AUDIT = 'stp:audit'
CLIENT_TIMEOUT = 20.0     # every client socket operation (Jabber's 8 s is too tight for a noisy CI box)
LOG_BOUND = 10.0          # a session's log line appears (it is written before END_SESSION is sent)
STATE_BOUND = 10.0        # a registry write that follows a close appears
IPSEC_END_SYSTEM = ObjectIdentifier('1.3.6.1.5.5.7.3.5')
LSC_DAYS = 365            # capf_lsc_days default
BACKDATE = 300            # leaf_backdate default


# ---------------------------------------------------------------- helpers

wait_for = fx.wait_for


def hello_bytes(sid):
    """F3: the hello of the default profile (VERSION 3 + AUTH_TYPE 00), 2.9."""
    return bytes.fromhex('5501') + struct.pack('>I', sid) + bytes.fromhex('0008 070001 03 080001 00'.replace(' ', ''))


def msg_bytes(op, sid, body_hex):
    body = bytes.fromhex(body_hex.replace(' ', '').replace('|', ''))
    return struct.pack('>BBIH', 0x55, op, sid, len(body)) + body


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(b)]) + b


def der(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def der_int(v):
    return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, 'big'))


RSA_ALG = der(0x30, der(0x06, bytes.fromhex('2a864886f70d010101')) + b'\x05\x00')


def rsa_spki(n, e):
    """A hand-made RSA SubjectPublicKeyInfo (any exponent, which the
    cryptography package refuses to build)."""
    return der(0x30, RSA_ALG + der(0x03, b'\x00' + der(0x30, der_int(n) + der_int(e))))


def tbs_elements(cert_der):
    """The raw DER elements of a certificate's tbsCertificate, in order:
    [version, serial, signature, issuer, validity, subject, spki, ...]."""
    _, p, _ = fx.der_tlv(cert_der, 0)
    _, p, end = fx.der_tlv(cert_der, p)
    out = []
    while p < end:
        _, _, e = fx.der_tlv(cert_der, p)
        out.append(cert_der[p:e])
        p = e
    return out


def not_before(cert):
    v = getattr(cert, 'not_valid_before_utc', None)
    return v if v is not None else cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def not_after(cert):
    v = getattr(cert, 'not_valid_after_utc', None)
    return v if v is not None else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def pem(cert_der):
    return x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)


def ec_key(curve):
    return ec.generate_private_key({'P-256': ec.SECP256R1, 'P-384': ec.SECP384R1,
                                    'P-521': ec.SECP521R1}[curve]())


class CapfCase(fx.SharedDaemonTestCase):
    """One stampeded for the class (DAEMON_ARGS) and the helpers every CAPF
    test uses: devices (stampedectl), the registry (Redis), clients, the
    log. A class with its own Redis overrides setUpClass and sets cls.d,
    cls.redis, cls.ctl_target and cls._ca_pem itself."""
    DAEMON_ARGS = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.redis = fx.RedisClient(os.path.join(cls.d.data_dir, 'redis.sock'))
            if not wait_for(cls.redis.ping, 10.0):
                raise AssertionError('embedded Redis does not answer on %s' % cls.redis.addr)
            cls.ctl_target = ['--data-dir', cls.d.data_dir]
            cls._ca_pem = None
        except BaseException:
            cls.tearDownClass()
            raise

    def setUp(self):
        super().setUp()
        self.assertTrue(self.d.running(), 'stampeded is not running:\n%s' % self.d.stderr()[-3000:])

    def tearDown(self):
        self.d.assert_clean()
        super().tearDown()

    # -- devices and registry ----------------------------------------------------

    def ctl(self, *args, check=True):
        return fx.run([CTL] + self.ctl_target + [str(a) for a in args], check=check)

    @staticmethod
    def dev(prefix):
        """A fresh device name (at most 15 characters, the CAPF default limit)."""
        name = '%s-%s' % (prefix, secrets.token_hex(6))
        return name[:15]

    def add(self, name, *extra, op='install', auth='null', replace=False):
        args = ['device', 'add', name, '--op', op, '--auth', auth] + list(extra)
        if replace:
            args.append('--replace')
        self.ctl(*args)
        return name

    def show(self, name):
        return json.loads(self.ctl('device', 'show', name, '--json').stdout)

    def show_text(self, name):
        return self.ctl('device', 'show', name).stdout.decode()

    def record(self, name):
        """The device hash as {field: str} (binary fields decoded with
        replacement; use raw_record for fetched_cert)."""
        return {k: v.decode(errors='replace') for k, v in self.raw_record(name).items()}

    def raw_record(self, name):
        return self.redis.hgetall('stp:dev:{%s}' % name)

    def req_keys(self, name):
        return sorted(k.decode() for k in self.redis.command('KEYS', 'stp:req:{%s}:*' % name) or [])

    def audit_mark(self):
        return self.redis.last_id(AUDIT)

    def audit_since(self, mark, device=None):
        ents = [f for _, f in self.redis.xrange(AUDIT, '(' + mark)]
        return [e for e in ents if device is None or e.get('device') == device]

    def wait_state(self, name, pred, bound=STATE_BOUND):
        """wait_state polls `device show` until pred(json) holds; returns the
        last JSON (the caller asserts on it)."""
        last = {}

        def ok():
            nonlocal last
            last = self.show(name)
            return pred(last)
        wait_for(ok, bound, 0.1)
        return last

    @property
    def ca_pem(self):
        """The CA certificate as EST /cacerts serves it (curl -k | base64 -d |
        openssl pkcs7 -print_certs), written to a file; cached per class."""
        cls = type(self)
        if cls._ca_pem is None:
            url = 'https://%s:%d%scacerts' % (self.d.host, self.d.port, fx.EST)
            cp = fx.run(['curl', '-sSk', '--max-time', '30', url])
            certs = fx.p7_to_pem(cp.stdout, cls.class_tmp, 'cacerts')
            self.assertEqual(len(certs), 1, 'EST /cacerts: expected one CA certificate')
            cls._ca_pem = fx.write(os.path.join(cls.class_tmp, 'capf-ca.pem'), certs[0])
        return cls._ca_pem

    def ca_der(self):
        return fx.openssl('x509', '-in', self.ca_pem, '-outform', 'DER').stdout

    # -- clients -------------------------------------------------------------------

    def client(self, version=3, **kw):
        kw.setdefault('timeout', CLIENT_TIMEOUT)
        c = cc.CapfClient(self.d.host, self.d.capf_port, version, **kw)
        self.addCleanup(c.close)
        return c

    def connect(self, version=3, **kw):
        """A connected client (hello read); c.peer is the address the server
        logs."""
        c = self.client(version, **kw)
        c.connect()
        c.peer = '%s:%d' % (self.d.peer_host, c.sock.getsockname()[1])
        self.assertEqual(c.received[0], hello_bytes(c.session_id), 'F3: hello bytes')
        return c

    def session(self, name, op='install', version=3, client=None, **kw):
        """One whole session (install/delete/troubleshoot/run); the result
        carries .peer."""
        c = client or self.connect(version)
        res = getattr(c, op)(name, **kw)
        res.peer = c.peer
        return res

    def installed(self, name, version=3, **kw):
        res = self.session(name, 'install', version, **kw)
        self.assertTrue(res.installed, 'install of %s did not succeed: %r' % (name, res))
        return res

    def finish_install(self, c, res, key=None, store_reason=cc.REASON_OK, on_store=None):
        """Continues an install stopped at 'key_request' (install(stop_at=...)):
        sends the public key, expects STORE_CERTIFICATE_REQUEST, answers it,
        expects END_SESSION and the close. Returns (cert_der, end_reason)."""
        key = key or cc.KEY_POOL.get(res.key_request, res.device)
        c.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.PUBLIC_KEY, cc.public_key_der(key))])
        m = c.read_msg()
        self.assertEqual(m.opcode, cc.STORE_CERTIFICATE_REQUEST, str(m))
        _, cert_der = cc.parse_certificate_element(m.get(cc.CERTIFICATE))
        if on_store:
            on_store(cert_der)
        c.send_msg(cc.STORE_CERTIFICATE_RESPONSE, [(cc.REASON, bytes([store_reason]))])
        end = c.read_msg()
        self.assertEqual(end.opcode, cc.END_SESSION, str(end))
        c.expect_eof()
        c.close()
        return cert_der, end.get(cc.REASON)[0]

    def read_end(self, c, reason=cc.REASON_INVALID_ELEMENT):
        """The next server message must be END_SESSION `reason` (carrying the
        session's id: read_msg checks it), then the server closes."""
        m = c.read_msg()
        self.assertEqual((m.opcode, m.get(cc.REASON)), (cc.END_SESSION, bytes([reason])), str(m))
        self.assertIn(c.expect_eof(), ('close_notify', 'eof', 'reset'))
        c.close()
        return m

    def good_install(self):
        """Other sessions are unaffected: a fresh device installs (v3 EC P-256,
        no RSA key generation)."""
        name = self.add(self.dev('ok'), '--key', 'ec256')
        res = self.installed(name)
        self.assertEqual(self.show(name)['status'], 'success')
        return res

    # -- log -----------------------------------------------------------------------

    def log_lines(self, sid):
        tag = 'session=%08x:' % sid
        return [ln for ln in self.d.stderr().splitlines() if tag in ln]

    def wait_log(self, sid, peer, device, what, bound=LOG_BOUND):
        """Waits for the line 'CAPF peer=PEER device=DEVICE session=SID: WHAT'
        (WHAT: exact text, or a compiled regex matched against the rest of
        the line). Returns the line."""
        head = 'CAPF peer=%s device=%s session=%08x: ' % (peer, device, sid)

        def find():
            for ln in self.log_lines(sid):
                i = ln.find(head)
                if i < 0:
                    continue
                rest = ln[i + len(head):]
                if (what.fullmatch(rest) if isinstance(what, re.Pattern) else rest == what):
                    return ln
            return None
        line = wait_for(find, bound)
        self.assertTrue(line, 'no log line %r%s; lines of this session: %s' % (
            head, what.pattern if isinstance(what, re.Pattern) else what, self.log_lines(sid)))
        return line

    def wait_end_log(self, c, device, why, reason=7):
        head = 'END_SESSION reason %d: ' % reason
        what = re.compile(re.escape(head) + why.pattern) if isinstance(why, re.Pattern) else head + why
        return self.wait_log(c.session_id, c.peer, device, what)

    # -- LSC checks ----------------------------------------------------------------

    def assert_lsc(self, name, cert_der, key=None):
        """The LSC verifies against the CA from EST /cacerts and matches the
        F4 profile (3.3); returns the certificate."""
        t = time.time()
        path = fx.write(os.path.join(self.tmp, name + '.lsc.pem'), pem(cert_der))
        vr = fx.verify(self.ca_pem, path)
        self.assertEqual(vr.returncode, 0, 'openssl verify: %s %s' % (vr.stdout, vr.stderr))
        cert = x509.load_der_x509_certificate(cert_der)
        with open(self.ca_pem, 'rb') as f:
            ca = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(cert.version, x509.Version.v3)
        # Issuer: a byte-exact copy of the CA's subject.
        lsc_tbs, ca_tbs = tbs_elements(cert_der), tbs_elements(self.ca_der())
        self.assertEqual(lsc_tbs[3], ca_tbs[5], 'F4: issuer is not the CA subject byte for byte')
        # Serial: positive, at most 20 octets (16 here), minimal DER.
        tag, c0, e0 = fx.der_tlv(lsc_tbs[1], 0)
        content = lsc_tbs[1][c0:e0]
        self.assertEqual(tag, 0x02)
        self.assertTrue(1 <= len(content) <= 20, 'F4: serial of %d octets' % len(content))
        self.assertLess(content[0], 0x80, 'F4: negative serial')
        self.assertFalse(content[0] == 0 and len(content) > 1 and content[1] < 0x80, 'F4: non-minimal serial')
        self.assertGreater(cert.serial_number, 0)
        # Subject: CN = device name (+ O/OU/... copied from the issuer).
        self.assertEqual([a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)], [name])
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME),
                         ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        # Extensions.
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(bc.critical, 'F4: basicConstraints not critical')
        self.assertFalse(bc.value.ca, 'F4: CA:TRUE in an LSC')
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical, 'F4: keyUsage not critical')
        is_ec = isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        self.assertTrue(ku.value.digital_signature)
        self.assertEqual(ku.value.key_encipherment, not is_ec,
                         'F4: keyEncipherment must be set for RSA and absent for EC (RFC 5480)')
        for flag in ('content_commitment', 'data_encipherment', 'key_agreement', 'key_cert_sign', 'crl_sign'):
            self.assertFalse(getattr(ku.value, flag), 'F4: keyUsage %s' % flag)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertEqual(set(eku.value), {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
                                          IPSEC_END_SYSTEM})
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        self.assertTrue(ski.value.digest)
        ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        self.assertEqual(aki.value.key_identifier, ca_ski.value.digest, 'F4: AKI != the CA SKI')
        # Validity: notBefore = issuance - leaf_backdate, notAfter = notBefore + capf_lsc_days.
        nb, na = not_before(cert), not_after(cert)
        self.assertEqual(na - nb, datetime.timedelta(days=LSC_DAYS), 'F4: validity is not %d days' % LSC_DAYS)
        issued = nb.timestamp() + BACKDATE
        self.assertTrue(t - 600 <= issued <= t + 5,
                        'F4: notBefore %s is not issuance - %d s (checked at %s)' % (nb, BACKDATE, t))
        if key is not None:
            self.assertEqual(cc.public_key_der(cert.public_key()), cc.public_key_der(key))
        return cert

    def assert_installed_state(self, name, res, peer=None):
        """device show after a successful install: success / Upgrade Success /
        op none / lsc_serial = the certificate's serial; the request record and
        the audit agree."""
        cert_serial = fx.cert_serial_hex(res.cert_der)
        path = fx.write(os.path.join(self.tmp, name + '.serial.pem'), pem(res.cert_der))
        self.assertEqual(fx.x509_field(path, '-serial').split('=', 1)[1].lower(), cert_serial)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('success', 'Upgrade Success', 'none'), dev)
        self.assertEqual(dev['lsc_serial'], cert_serial, dev)
        self.assertEqual(dev['lsc_unconfirmed'], '', dev)
        cert = x509.load_der_x509_certificate(res.cert_der)
        self.assertEqual(dev['lsc_not_after'], int(not_after(cert).timestamp()))
        self.assertEqual(dev['lsc_md5'], hashlib.md5(res.cert_der).hexdigest())
        if peer:
            self.assertEqual(dev['last_peer'], peer)
        spki_sha = hashlib.sha256(res.public_key_der).hexdigest()
        rec = self.redis.hgetall('stp:req:{%s}:%s' % (name, spki_sha))
        self.assertTrue(rec, 'no request record stp:req:{%s}:%s' % (name, spki_sha))
        self.assertEqual((rec['protocol'], rec['state'], rec['confirmed']), (b'capf', b'issued', b'1'))
        self.assertEqual((rec['serial'].decode(), rec['cert'], rec['csr']), (cert_serial, res.cert_der,
                                                                            res.public_key_der))
        self.assertEqual(rec['identity'].decode(), name)
        return dev


# ================================================================ positive

class TestCapfPositive(CapfCase):
    """P1-P6, P9-P14, P16, P17, F3, F4, F6 on a default stampeded."""

    def test_p1_v2_null_rsa2048_exact_sequence(self):
        name = self.add(self.dev('P1'))
        mark = self.audit_mark()
        c = self.connect(version=2)
        sid = c.session_id
        res = self.session(name, version=2, client=c)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.closed, 'close_notify', 'TLS close_notify after END_SESSION (2.7.4)')
        # 2.7.1 exactly: 01 / 02 / 03 / 04 / 09 / 0a / 0f, KEY_SIZE only for v2.
        self.assertEqual([m[1] for m in res.messages], [0x01, 0x03, 0x09, 0x0f])
        self.assertEqual([m[1] for m in c.sent], [0x02, 0x04, 0x0a])
        self.assertEqual(res.messages[0], hello_bytes(sid))
        self.assertEqual(res.messages[1], msg_bytes(0x03, sid, '0a 0002 0800'))
        self.assertEqual(res.messages[3], msg_bytes(0x0f, sid, '01 0001 01'))
        store = res.messages[2]
        self.assertEqual(store[:12], msg_bytes(0x09, sid, '')[:6] + struct.pack('>H', len(store) - 8)
                         + bytes.fromhex('030001 01'))
        self.assertEqual(store[12:20], bytes.fromhex('04') + struct.pack('>H', len(res.cert_der) + 5)
                         + bytes.fromhex('01') + struct.pack('>H', len(res.cert_der) + 2) + bytes.fromhex('0001'))
        for raw in res.messages:           # F1/F2 (the client checked each read too)
            self.assertLessEqual(len(raw), 4096)
            self.assertTrue(cc.check_single_message(raw, 2).elements)
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048))
        cert = self.assert_lsc(name, res.cert_der, res.private_key)
        self.assertEqual(cert.public_key().key_size, 2048)
        dev = self.assert_installed_state(name, res, c.peer)
        self.wait_log(sid, c.peer, name, 'LSC installed (Upgrade Success) serial=%s' % dev['lsc_serial'])
        ev = [(e['event'], e.get('serial')) for e in self.audit_since(mark, name)]
        self.assertEqual(ev, [('issue', dev['lsc_serial']), ('lsc-installed', dev['lsc_serial'])])

    def test_p2_v3_request_in_progress(self):
        name = self.add(self.dev('P2'))
        c = self.connect(version=3)
        res = self.session(name, client=c, in_progress=True)
        self.assertTrue(res.installed, res)
        self.assertEqual([m[1] for m in c.sent], [0x02, 0x11, 0x04, 0x0a])
        self.assertEqual(res.messages[1], msg_bytes(0x03, c.session_id, '0a 0002 0800 | 11 0001 00'))
        self.assert_lsc(name, res.cert_der, res.private_key)
        self.assert_installed_state(name, res, c.peer)

    def test_p3_rsa3072_v3(self):
        name = self.add(self.dev('P3a'), '--key', 'rsa3072')
        c = self.connect(version=3)
        res = self.session(name, client=c)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.messages[1], msg_bytes(0x03, c.session_id, '0a 0002 0c00 | 11 0001 00'))
        self.assertEqual(self.assert_lsc(name, res.cert_der).public_key().key_size, 3072)
        self.assert_installed_state(name, res)

    def test_p3_rsa4096_v2_one_record(self):
        """The 4096-bit LSC still fits one record of at most 4096 bytes for the
        strictest (v2) client."""
        name = self.add(self.dev('P3b'), '--key', 'rsa4096')
        c = self.connect(version=2)
        res = self.session(name, version=2, client=c)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.messages[1], msg_bytes(0x03, c.session_id, '0a 0002 1000'))
        self.assertLessEqual(len(res.messages[2]), 4096)
        self.assertEqual(self.assert_lsc(name, res.cert_der).public_key().key_size, 4096)
        self.assert_installed_state(name, res)

    def test_p4_ec_curves(self):
        for key, curve, curve_cls in (('ec256', cc.CURVE_P256, ec.SECP256R1), ('ec384', cc.CURVE_P384, ec.SECP384R1),
                                      ('ec521', cc.CURVE_P521, ec.SECP521R1)):
            with self.subTest(key=key):
                name = self.add(self.dev('P4'), '--key', key)
                c = self.connect(version=3)
                res = self.session(name, client=c)
                self.assertTrue(res.installed, res)
                self.assertEqual(res.messages[1], msg_bytes(0x03, c.session_id, '11 0001 01 | 12 0001 %02x' % curve))
                cert = self.assert_lsc(name, res.cert_der, res.private_key)   # KU digitalSignature only
                self.assertIsInstance(cert.public_key().curve, curve_cls)
                self.assert_installed_state(name, res)

    def test_p5_key_order_ec_preferred(self):
        v3 = self.add(self.dev('P5a'), '--key', 'ec256,rsa2048')
        res = self.installed(v3, version=3)
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P256))
        self.assertIsInstance(x509.load_der_x509_certificate(res.cert_der).public_key(), ec.EllipticCurvePublicKey)
        v2 = self.add(self.dev('P5b'), '--key', 'ec256,rsa2048')
        res = self.installed(v2, version=2)
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048))
        self.assertIsInstance(x509.load_der_x509_certificate(res.cert_der).public_key(), rsa.RSAPublicKey)
        self.assert_installed_state(v2, res)

    def test_p6_auth_string_one_time(self):
        name = self.add(self.dev('P6'), '--auth-string', '482913', '--key', 'ec256', auth='string')
        self.assertTrue(self.show(name)['auth_string_set'])
        self.assertIn('(string set)', self.show_text(name))
        res = self.installed(name, password='482913')
        self.assert_installed_state(name, res)
        # One-time: the string is consumed.
        self.assertEqual(self.raw_record(name).get('auth_hash'), b'$used')
        self.assertIn('string used', self.show_text(name))
        # The same string on a new schedule no longer works: a new one is needed.
        self.ctl('device', 'add', name, '--op', 'install', '--auth', 'string', '--auth-string', '771655',
                 '--key', 'ec256', '--replace')
        c = self.connect()
        res = self.session(name, client=c, password='482913')
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        self.wait_end_log(c, name, 'Upgrade Failed: Invalid Authentication String')
        res = self.installed(name, password='771655')
        self.assertEqual(self.show(name)['lsc_serial'], fx.cert_serial_hex(res.cert_der))
        # A string device cannot be scheduled again without a new string.
        cp = self.ctl('device', 'add', name, '--op', 'install', '--auth', 'string', '--replace', check=False)
        self.assertEqual(cp.returncode, 2, cp)

    def test_p9_upgrade_supersedes(self):
        name = self.add(self.dev('P9'))
        first = self.installed(name, version=2)
        old = self.show(name)['lsc_serial']
        self.add(name, op='install', replace=True)
        self.assertEqual(self.show(name)['lsc_serial'], old, 'scheduling an upgrade keeps the current LSC')
        mark = self.audit_mark()
        c = self.connect(version=2, key_cache='none')       # the endpoint makes a new key
        second = self.session(name, version=2, client=c)
        self.assertTrue(second.installed, second)
        self.assertNotEqual(second.public_key_der, first.public_key_der, 'the client was to use a new key')
        self.assert_lsc(name, second.cert_der, second.private_key)
        dev = self.assert_installed_state(name, second)
        self.assertNotEqual(dev['lsc_serial'], old)
        self.assertEqual(self.record(name).get('superseded_serial'), old, 'old LSC not kept as superseded')
        installed = [e for e in self.audit_since(mark, name) if e['event'] == 'lsc-installed']
        self.assertEqual(len(installed), 1)
        self.assertEqual(installed[0].get('reason'), 'supersedes %s' % old, installed)
        self.assertEqual(len(self.req_keys(name)), 2, 'both request records are kept')

    def test_p10_troubleshoot(self):
        name = self.add(self.dev('P10'), '--key', 'ec256')
        lsc = self.installed(name)
        serial = self.show(name)['lsc_serial']
        self.add(name, op='troubleshoot', replace=True)
        self.assertEqual(self.show(name)['status'], 'pending')
        c = self.connect(version=3)
        res = self.session(name, 'troubleshoot', client=c, cert_der=lsc.cert_der)
        self.assertEqual((res.op, res.ended_after, res.end_reason), ('troubleshoot', 'fetch', 1), res)
        self.assertEqual(res.messages[1], msg_bytes(0x0b, c.session_id, ''))
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op'], dev['lsc_serial']),
                         ('success', 'Troubleshoot Success', 'none', serial), dev)
        raw = self.raw_record(name)
        self.assertEqual(raw.get('fetched_cert'), lsc.cert_der, 'fetched certificate not stored')
        self.assertTrue(int(raw.get('fetched_at', b'0')) > 0)
        self.wait_log(c.session_id, c.peer, name, 'certificate fetched (Troubleshoot Success)')

    def test_p11_delete(self):
        name = self.add(self.dev('P11'), '--key', 'ec256')
        self.installed(name)
        serial = self.show(name)['lsc_serial']
        self.add(name, op='delete', replace=True)
        mark = self.audit_mark()
        c = self.connect(version=3)
        res = self.session(name, 'delete', client=c)
        self.assertEqual((res.op, res.ended_after, res.end_reason), ('delete', 'delete', 1), res)
        self.assertEqual(res.messages[1], msg_bytes(0x0d, c.session_id, ''))
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('success', 'Delete Success', 'none'), dev)
        self.assertEqual((dev['lsc_serial'], dev['lsc_md5'], dev['lsc_not_after']), ('', '', 0), dev)
        ev = [(e['event'], e.get('serial')) for e in self.audit_since(mark, name)]
        self.assertIn(('lsc-deleted', serial), ev)
        self.wait_log(c.session_id, c.peer, name, 'LSC deleted (Delete Success)')

    def test_p10_p11_need_v3(self):
        """Delete and Troubleshoot are served to version 3 clients only."""
        name = self.add(self.dev('P11v2'), op='delete')
        c = self.connect(version=2)
        res = self.session(name, 'run', version=2, client=c)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        why = 'Delete Failed: Delete and Troubleshoot need a version 3 client'
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'delete'), dev)

    def test_p12_second_request_after_success(self):
        name = self.add(self.dev('P12'), '--key', 'ec256')
        self.installed(name)
        before = self.raw_record(name)
        mark = self.audit_mark()
        c = self.connect(version=3)
        res = self.session(name, client=c)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        self.assertEqual(len(res.messages), 2, 'nothing but the hello and END_SESSION')
        self.wait_end_log(c, name, 'refused (no-op): no certificate operation pending')
        self.assertEqual(self.raw_record(name), before, 'a refused second request changed the device')
        self.assertEqual([e['event'] for e in self.audit_since(mark, name)], ['deny'])

    def test_p13_unknown_device(self):
        name = self.dev('P13')
        c = self.connect(version=2)
        res = self.session(name, version=2, client=c)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 9), res)
        self.assertEqual(res.messages[1], msg_bytes(0x0f, c.session_id, '01 0001 09'))
        self.wait_end_log(c, name, 'unknown device', reason=9)
        self.assertEqual(self.redis.command('EXISTS', 'stp:dev:{%s}' % name, 'stp:capf:lock:{%s}' % name), 0)
        self.assertEqual(self.req_keys(name), [])
        self.assertEqual(self.redis.command('SISMEMBER', 'stp:devices', name), 0)
        cp = self.ctl('device', 'show', name, check=False)
        self.assertEqual(cp.returncode, 1, 'device show of an unknown device: %r' % cp)

    def test_p14_split_records(self):
        for split in ('header', 1):
            with self.subTest(split=split):
                name = self.add(self.dev('P14'))
                c = self.connect(version=2, split=split)
                res = self.session(name, version=2, client=c)
                self.assertTrue(res.installed, res)
                self.assert_installed_state(name, res)

    def test_p16_unknown_tags_ignored(self):
        name = self.add(self.dev('P16'), '--key', 'ec256')
        res = self.installed(name, extra_elements=[(0x15, b'\x01\x02\x03'), (0xf0, b'\x00\x01\x00\x00\x00\x07')])
        self.assert_installed_state(name, res)

    def test_p17_session_ids_unique(self):
        """Session ids (and F3: every hello) over a few hundred sessions."""
        n = 300

        def hello(_):
            c = cc.CapfClient(self.d.host, self.d.capf_port, 3, timeout=CLIENT_TIMEOUT)
            try:
                c.connect()
                return c.session_id, c.received[0]
            finally:
                c.close()
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(hello, range(n)))
        ids = [sid for sid, _ in got]
        self.assertEqual(len(set(ids)), n, 'session ids reused')
        for sid, raw in got:
            self.assertEqual(raw, hello_bytes(sid))
        # A full session after them still gets a fresh id.
        res = self.good_install()
        self.assertNotIn(res.session_id, ids)

    def test_f6_tls_versions_no_tickets(self):
        for tls in ('1.2', '1.3'):
            with self.subTest(tls=tls):
                name = self.add(self.dev('F6'), '--key', 'ec256')
                c = self.connect(version=3, tls_version=tls)
                self.assertEqual(c.sock.version(), 'TLSv' + tls)
                seen = {}

                def on_store(res, c=c):
                    seen['session'] = c.sock.session
                res = self.session(name, client=c, on_store=on_store)
                self.assertTrue(res.installed, res)
                self.assertIsNotNone(seen['session'])
                if tls == '1.3':
                    self.assertFalse(seen['session'].has_ticket,
                                     'F6: a TLS 1.3 NewSessionTicket arrived on the CAPF listener')


# ================================================================ policy

class TestCapfPolicy(CapfCase):
    """N1, N4-N7, N9-N12 (default lockout: 5 failures)."""

    def test_n1_wrong_or_missing_string(self):
        name = self.add(self.dev('N1'), '--auth-string', '135790', '--key', 'ec256', auth='string')
        cases = (('246801', 'Upgrade Failed: Invalid Authentication String'),
                 (None, 'Upgrade Failed: Invalid Authentication String (none sent)'),
                 ('', 'Upgrade Failed: Invalid Authentication String (none sent)'))
        for n, (password, why) in enumerate(cases, 1):
            with self.subTest(password=password):
                mark = self.audit_mark()
                c = self.connect()
                res = self.session(name, client=c, password=password)
                self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
                self.assertEqual(len(res.messages), 2)
                self.wait_end_log(c, name, why)
                dev = self.show(name)
                self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
                self.assertEqual(dev['auth_failures'], n, dev)
                self.assertEqual(dev['auth_lock_until'], 0, dev)
                self.assertEqual([e['event'] for e in self.audit_since(mark, name)], ['deny'])
        res = self.installed(name, password='135790')
        dev = self.assert_installed_state(name, res)
        self.assertEqual(dev['auth_failures'], 0, 'a success resets the failure count')

    def test_n5_deadline_passed(self):
        name = self.add(self.dev('N5'), '--by', '2020-01-01T00:00Z')
        c = self.connect()
        res = self.session(name, client=c)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        self.wait_end_log(c, name, 'refused (late): deadline passed')
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', 'deadline passed', 'install'), dev)
        self.assertEqual(self.req_keys(name), [])

    def test_n6_ec_only_v2(self):
        name = self.add(self.dev('N6'), '--key', 'ec384')
        c = self.connect(version=2)
        res = self.session(name, version=2, client=c)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        why = 'Upgrade Failed: No Support for EC only in CAPF version 3 (the client speaks version 2)'
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        res = self.installed(name, version=3)       # the same device with a v3 client
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P384))

    def bad_key(self, name, spki, why, version=3):
        """One install whose PUBLIC_KEY is `spki`: END 07 after the key, status
        failed `why`, op still install, nothing issued."""
        mark = self.audit_mark()
        c = self.connect(version)
        res = self.session(name, version=version, client=c, key_override=spki)
        self.assertEqual((res.ended_after, res.end_reason), ('key', 7), res)
        self.assertIsNone(res.cert_der)
        self.assertEqual([m[1] for m in res.messages], [0x01, 0x03, 0x0f], 'no STORE_CERTIFICATE_REQUEST')
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        self.assertEqual((dev['lsc_unconfirmed'], dev['lsc_serial']), ('', ''), dev)
        self.assertEqual(self.req_keys(name), [], 'a request record for a refused key')
        self.assertEqual([e['event'] for e in self.audit_since(mark, name)], ['deny'])

    def test_n7_bad_public_keys_rsa(self):
        name = self.add(self.dev('N7r'))
        good = cc.KEY_POOL.get(cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048), name)
        spki = cc.public_key_der(good)
        n = good.public_key().public_numbers().n
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(good, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        cases = (
            ('wrong algorithm', cc.public_key_der(ec_key('P-256')), 'public key type is not the one requested'),
            ('wrong size', cc.public_key_der(cc.KEY_POOL.get(cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=1024), 'N7')),
             'RSA modulus size not requested or not allowed'),
            ('exponent 1', rsa_spki(n, 1), 'RSA public exponent not allowed'),
            ('even exponent', rsa_spki(n, 65538), 'RSA public exponent not allowed'),
            ('trailing bytes', spki + b'\x00', 'public key is not a DER SubjectPublicKeyInfo'),
            ('PKCS#10', csr, 'public key is not a DER SubjectPublicKeyInfo'),
            ('garbage', b'\x30\x03\x02\x01', 'public key is not a DER SubjectPublicKeyInfo'),
            ('empty', b'', 'malformed message: element length not allowed for its tag'),
        )
        for what, value, why in cases:
            with self.subTest(what):
                self.bad_key(name, value, 'Upgrade Failed: ' + why)
        self.assertEqual(rsa_spki(n, 65537), spki, 'the hand-made SPKI encoder is right')
        res = self.installed(name)          # the operation stayed pending
        self.assert_installed_state(name, res)

    def test_n7_bad_public_keys_ec(self):
        name = self.add(self.dev('N7e'), '--key', 'ec256')
        good = cc.public_key_der(ec_key('P-256'))
        off = bytearray(good)
        off[-1] ^= 0x01                     # y + 1: no longer on the curve
        cases = (
            ('wrong curve', cc.public_key_der(ec_key('P-384')), 'EC curve not requested or not allowed'),
            ('RSA for EC', cc.public_key_der(cc.KEY_POOL.get(cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048), 'N7')),
             'public key type is not the one requested'),
            ('point off curve', bytes(off), 'EC point invalid'),
        )
        for what, value, why in cases:
            with self.subTest(what):
                self.bad_key(name, value, 'Upgrade Failed: ' + why)
        self.good_install()

    def test_n9_no_public_key(self):
        name = self.add(self.dev('N9'), '--key', 'ec256')
        c = self.connect()
        res = self.session(name, client=c, key_failure=7)
        self.assertEqual((res.ended_after, res.end_reason), ('key', 7), res)
        why = 'Upgrade Failed: Key Generation Failed/Timeout (the phone sent reason 7, no key)'
        self.wait_end_log(c, name, why)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        self.assertEqual(self.req_keys(name), [])
        self.installed(name)                # the lock was released

    def test_n10_store_failed_then_retry(self):
        name = self.add(self.dev('N10'))
        c = self.connect()
        res = self.session(name, client=c, store_reason=7)
        self.assertEqual((res.ended_after, res.end_reason), ('store', 7), res)
        first = fx.cert_serial_hex(res.cert_der)
        self.wait_end_log(c, name, 'Upgrade Failed: the phone could not store the certificate (reason 7)')
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['op'], dev['lsc_serial'], dev['lsc_unconfirmed']),
                         ('failed', 'install', '', first), dev)
        self.assertEqual(dev['reason'], 'Upgrade Failed: phone could not store the certificate', dev)
        retry = self.installed(name)
        second = fx.cert_serial_hex(retry.cert_der)
        self.assertNotEqual(second, first)
        dev = self.assert_installed_state(name, retry)
        self.assertEqual(dev['stale_lscs'], 1, dev)
        self.assertEqual(self.record(name).get('stale_serials'), first)

    def test_n11_concurrent_sessions_one_device(self):
        name = self.add(self.dev('N11'), '--key', 'ec256')
        first = self.connect()
        stopped = self.session(name, client=first, stop_at='key_request')   # holds the device in S3
        self.assertEqual(stopped.stopped_at, 'key_request')
        seen = []

        def second_session(_cert=None):
            c = self.connect()
            res = self.session(name, client=c)
            self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
            self.wait_end_log(c, name, 'refused (busy): another CAPF session for this device is active')
            seen.append(self.show(name)['status'])
        second_session()                    # while the first waits for the key (S3)
        cert_der, reason = self.finish_install(first, stopped, on_store=second_session)   # ... and in S5
        self.assertEqual(reason, 1)
        self.assertEqual(seen, ['pending', 'pending'], 'a busy refusal must not change the status')
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['lsc_serial']), ('success', fx.cert_serial_hex(cert_der)), dev)

    def test_n12_versions(self):
        name = self.add(self.dev('N12'), '--key', 'ec256')
        before = self.raw_record(name)
        cases = ((None, 'AUTH_RESPONSE: missing protocol version'),
                 (0, 'AUTH_RESPONSE: unsupported protocol version'),
                 (1, 'AUTH_RESPONSE: unsupported protocol version'))
        for version, why in cases:
            with self.subTest(version=version):
                c = self.connect()
                els = [(cc.DEVICE_NAME, name.encode() + b'\x00'), (cc.REASON, b'\x01')]
                if version is not None:
                    els.insert(0, (cc.VERSION, bytes([version])))
                c.send_msg(cc.AUTH_RESPONSE, els)
                self.read_end(c)
                self.wait_end_log(c, '-', why)
        self.assertEqual(self.raw_record(name), before, 'a refused version changed the device')
        c = self.connect(version=4)         # above 3: treated as 3 (KEY_TYPE + CURVE)
        res = self.session(name, version=4, client=c)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P256))


class TestCapfLockout(CapfCase):
    """N2: repeated wrong strings lock the device out."""
    DAEMON_ARGS = ('--capf-max-auth-failures', '3', '--capf-lockout-s', '60')

    def test_n2_lockout(self):
        name = self.add(self.dev('N2'), '--auth-string', '5550123', '--key', 'ec256', auth='string')
        for n in (1, 2, 3):
            c = self.connect()
            t0 = int(time.time())
            res = self.session(name, client=c, password='999999%d' % n)
            self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
            self.wait_end_log(c, name, 'Upgrade Failed: Invalid Authentication String')
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason']), ('failed', 'Upgrade Failed: Invalid Authentication String'))
        self.assertEqual(dev['auth_failures'], 0, 'the counter restarts when a lockout starts')
        self.assertTrue(t0 + 60 - 5 <= dev['auth_lock_until'] <= int(time.time()) + 60 + 1, dev)
        self.assertIn('locked out until', self.show_text(name))
        self.assertTrue(wait_for(lambda: '%d failed authentications: locked out for 60 s' % 3 in self.d.stderr(),
                                 LOG_BOUND))
        # The correct string is refused while the device is locked out.
        before = self.raw_record(name)
        c = self.connect()
        res = self.session(name, client=c, password='5550123')
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        until = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(dev['auth_lock_until']))
        self.wait_end_log(c, name, 'refused (locked-out): authentication locked out until %s' % until)
        self.assertEqual(self.raw_record(name), before, 'a locked-out refusal changed the device')
        # When the window ends (simulated: auth_lock_until moved into the past) it works.
        self.redis.command('HSET', 'stp:dev:{%s}' % name, 'auth_lock_until', str(int(time.time()) - 1))
        res = self.installed(name, password='5550123')
        self.assert_installed_state(name, res)


def make_cert(subject_cn, public_key, issuer_cert, issuer_key, ca=False, days=(-1, 30), serial=None):
    """A certificate for `public_key` signed by issuer_key (issuer_cert None:
    self-signed); validity from now + days[0] to now + days[1] days."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Test Vendor'),
                         x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
         .public_key(public_key).serial_number(serial or x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                            critical=True)
    if issuer_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


class MfgPkiCase(CapfCase):
    """A CapfCase whose stampeded trusts a manufacturing CA made for the
    class (--capf-mic-ca): cls.mfg_ca / cls.mfg_key mint MICs. Subclasses
    add PKI and daemon flags in more_pki()."""

    @classmethod
    def more_pki(cls):
        """Extra PKI for the class; returns extra stampeded flags."""
        return ()

    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.mkdtemp(prefix='stampede-it-pki-')
        try:
            cls.mfg_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cls.mfg_ca = make_cert('Test Manufacturing CA', cls.mfg_key.public_key(), None, cls.mfg_key, ca=True,
                                   days=(-1, 3650))
            mic = fx.write(os.path.join(cls.pki_dir, 'mic-ca.pem'),
                           cls.mfg_ca.public_bytes(serialization.Encoding.PEM))
            cls.DAEMON_ARGS = ('--capf-mic-ca', mic) + tuple(cls.more_pki())
            super().setUpClass()
        except BaseException:
            fx.rmtree(cls.pki_dir)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            fx.rmtree(cls.pki_dir)


class TestCapfCertAuth(MfgPkiCase):
    """Authentication by existing certificate (2.8): P7 (LSC, RSA and EC,
    SHA-1 + SHA-512 / SHA-256, bare hash and DigestInfo), P8 (MIC + SUDI
    with the little-endian session id), P15 (a second trusted LSC issuer:
    rollover), N3 (every refusal: bad signatures, hash id, CN, issuer,
    expiry, superseded LSC) and N4 (certificate mode without a
    certificate). The manufacturer CA and the previous LSC issuer are made
    here and given to stampeded (--capf-mic-ca, --capf-lsc-issuers);
    lockout is off so the refusals can be counted."""

    @classmethod
    def more_pki(cls):
        cls.old_key = ec_key('P-256')
        cls.old_ca = make_cert('CAPF-0ld0ca00', cls.old_key.public_key(), None, cls.old_key, ca=True,
                               days=(-1, 3650))
        cls.rogue_key = ec_key('P-256')
        cls.rogue_ca = make_cert('Rogue CA', cls.rogue_key.public_key(), None, cls.rogue_key, ca=True)
        old = fx.write(os.path.join(cls.pki_dir, 'old-capf.pem'),
                       cls.old_ca.public_bytes(serialization.Encoding.PEM))
        return ('--capf-lsc-issuers', old, '--capf-max-auth-failures', '0')

    def our_ca(self):
        """stampeded's CA (certificate, key), read from its data directory:
        to mint LSCs the server never issued (expired ones)."""
        with open(os.path.join(self.d.data_dir, 'ca.key'), 'rb') as f:
            key = serialization.load_pem_private_key(f.read(), None)
        with open(self.ca_pem, 'rb') as f:
            return x509.load_pem_x509_certificate(f.read()), key

    def with_lsc(self, prefix, key='ec256'):
        """A device that got an LSC (null string), then scheduled again with
        --auth lsc. Returns (name, lsc_der, private_key)."""
        name = self.add(self.dev(prefix), '--key', key)
        res = self.installed(name, version=3)
        self.add(name, '--key', key, auth='lsc', replace=True)
        return name, res.cert_der, res.private_key

    def proof_session(self, name, elements=None, make=None, **kw):
        """A session authenticating with certificate elements; `make(sid)`
        builds them once the session id is known. A fresh key pair is
        generated for the new LSC, as a phone does."""
        c = self.connect(version=3, key_cache='none')
        extra = make(c.session_id) if make else elements
        res = self.session(name, client=c, extra_elements=extra, **kw)
        return c, res

    def assert_refused(self, name, make, status, detail=None):
        before = self.show(name)['auth_failures']
        c, res = self.proof_session(name, make=make)
        self.assertEqual((res.ended_after, res.end_reason), ('auth', 7), res)
        why = 'Upgrade Failed: ' + status
        self.wait_end_log(c, name, why)
        if detail:
            self.wait_log(c.session_id, c.peer, name, 'certificate proof refused: ' + detail)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        self.assertEqual(dev['auth_failures'], before + 1, 'a refused proof counts as a failed authentication')
        return dev

    def test_p7_lsc_rsa_bare_then_digestinfo(self):
        name, lsc, key = self.with_lsc('P7r', 'rsa2048')
        c, res = self.proof_session(name, make=lambda sid: cc.cert_auth_elements(
            name, lsc, key, sid, rsa_style='bare', sha1=True, sha2_hash='sha512'))
        self.assertTrue(res.installed, res)
        self.assertNotEqual(res.public_key_der, cc.public_key_der(key), 'the client was to use a new key')
        dev = self.assert_installed_state(name, res)
        self.assertEqual(dev['auth'], 'lsc')
        self.assertEqual(self.record(name).get('superseded_serial'), fx.cert_serial_hex(lsc))
        # Again, proving with the NEW LSC: DigestInfo style, SHA-256, no SHA-1.
        self.add(name, '--key', 'rsa2048', auth='lsc', replace=True)
        _, res2 = self.proof_session(name, make=lambda sid: cc.cert_auth_elements(
            name, res.cert_der, res.private_key, sid, rsa_style='digestinfo', sha1=False, sha2_hash='sha256'))
        self.assertTrue(res2.installed, res2)
        self.assert_installed_state(name, res2)

    def test_p7_lsc_ec(self):
        name, lsc, key = self.with_lsc('P7e')
        _, res = self.proof_session(name, make=lambda sid: cc.cert_auth_elements(name, lsc, key, sid))
        self.assertTrue(res.installed, res)
        self.assert_lsc(name, res.cert_der, res.private_key)
        self.assert_installed_state(name, res)

    def test_p7_troubleshoot_and_delete_with_lsc(self):
        name, lsc, key = self.with_lsc('P7d')
        self.add(name, auth='lsc', op='troubleshoot', replace=True)
        c = self.connect()
        res = self.session(name, 'troubleshoot', client=c, cert_der=lsc,
                           extra_elements=cc.cert_auth_elements(name, lsc, key, c.session_id))
        self.assertEqual((res.ended_after, res.end_reason), ('fetch', 1), res)
        self.add(name, auth='lsc', op='delete', replace=True)
        c = self.connect()
        res = self.session(name, 'delete', client=c,
                           extra_elements=cc.cert_auth_elements(name, lsc, key, c.session_id))
        self.assertEqual((res.ended_after, res.end_reason), ('delete', 1), res)
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['lsc_serial']), ('success', 'Delete Success', ''), dev)

    def test_p8_mic_with_sudi(self):
        name = self.add(self.dev('P8'), '--key', 'ec256', auth='mic')
        mic_key = ec_key('P-256')
        mic = cert_der(make_cert('CP-8861-' + name, mic_key.public_key(), self.mfg_ca, self.mfg_key))
        sudi_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sudi = cert_der(make_cert('CP-8861-SUDI-' + name, sudi_key.public_key(), self.mfg_ca, self.mfg_key))
        # The SUDI signature over a big-endian session id (not what phones do) is refused.
        self.assert_refused(name, lambda sid: cc.cert_auth_elements(
            name, mic, mic_key, sid, cert_type=cc.CERT_TYPE_MIC, sudi=(sudi, sudi_key))[:-1]
            + [(cc.SUDI_DATA, cc.sudi_data(sudi, sudi_key, sid, byteorder='big'))],
            'Invalid MIC: SUDI signature does not verify')
        _, res = self.proof_session(name, make=lambda sid: cc.cert_auth_elements(
            name, mic, mic_key, sid, cert_type=cc.CERT_TYPE_MIC, sudi=(sudi, sudi_key)))
        self.assertTrue(res.installed, res)
        dev = self.assert_installed_state(name, res)
        self.assertEqual(dev['auth_failures'], 0, 'a success resets the failure count')

    def test_p15_previous_issuer_trusted(self):
        """A device with no LSC on record proves an LSC of the previous CAPF
        issuer (capf_lsc_issuers): accepted during the rollover."""
        name = self.add(self.dev('P15'), '--key', 'ec256', auth='lsc')
        key = ec_key('P-256')
        old_lsc = cert_der(make_cert(name, key.public_key(), self.old_ca, self.old_key))
        _, res = self.proof_session(name, make=lambda sid: cc.cert_auth_elements(name, old_lsc, key, sid))
        self.assertTrue(res.installed, res)
        cert = self.assert_lsc(name, res.cert_der, res.private_key)     # the new LSC is from the current CA
        self.assertNotEqual(cert.issuer, self.old_ca.subject)

    def test_n3_refusals(self):
        name, lsc, key = self.with_lsc('N3')
        other, other_lsc, other_key = self.with_lsc('N3o')
        ca, ca_key = self.our_ca()
        expired = cert_der(make_cert(name, key.public_key(), ca, ca_key, days=(-30, -1)))
        rogue = cert_der(make_cert(name, key.public_key(), self.rogue_ca, self.rogue_key))

        def good(sid):
            return cc.cert_auth_elements(name, lsc, key, sid)

        def flip(elements, tag):
            out = []
            for t, v in elements:
                if t == tag:
                    v = v[:-1] + bytes([v[-1] ^ 0x01])
                out.append((t, v))
            return out
        cases = (
            ('bad SHA-1 signature', lambda sid: flip(good(sid), cc.SIGNED_DATA),
             'Invalid LSC: signature (SHA-1) does not verify'),
            ('bad SHA-512 signature', lambda sid: flip(good(sid), cc.SHA2_SIGNED_DATA),
             'Invalid LSC: signature (SHA-512) does not verify'),
            ('hash id 01', lambda sid: cc.cert_auth_elements(name, lsc, key, sid, sha2_hash='sha1'),
             'Invalid LSC: SHA-2 signature hash neither SHA-256 nor SHA-512'),
            ('no SHA-2 signature', lambda sid: [e for e in good(sid) if e[0] != cc.SHA2_SIGNED_DATA],
             'Invalid LSC: no SHA-2 signature sent'),
            ('CN of another device', lambda sid: cc.cert_auth_elements(name, other_lsc, other_key, sid),
             'Invalid LSC: certificate CN does not match the device name'),
            ('untrusted issuer', lambda sid: cc.cert_auth_elements(name, rogue, key, sid),
             'Invalid LSC: certificate not issued by a trusted CA'),
            ('expired', lambda sid: cc.cert_auth_elements(name, expired, key, sid),
             'Invalid LSC: certificate expired'),
            ('signed for another device name', lambda sid: cc.cert_auth_elements(other, lsc, key, sid),
             'Invalid LSC: signature (SHA-512) does not verify'),      # SHA-2 is checked first
        )
        for what, make, status in cases:
            with self.subTest(what):
                self.assert_refused(name, make, status)
        self.assertEqual(self.show(name)['lsc_serial'], fx.cert_serial_hex(lsc), 'refusals changed the LSC')
        # The right proof still works; afterwards the old LSC is superseded and refused.
        _, res = self.proof_session(name, make=good)
        self.assertTrue(res.installed, res)
        self.add(name, '--key', 'ec256', auth='lsc', replace=True)
        self.assert_refused(name, good, 'Invalid LSC: not the device\'s current LSC')

    def test_n4_no_certificate(self):
        why = 'Invalid Credentials: no certificate sent'
        for auth in ('lsc', 'mic'):
            with self.subTest(auth=auth):
                name = self.add(self.dev('N4'), auth=auth)
                dev = self.assert_refused(name, lambda sid: [], why, 'no CERTIFICATE element')
                self.assertEqual((dev['lsc_serial'], dev['lsc_unconfirmed']), ('', ''))


class TestCapfCucmSubject(MfgPkiCase):
    """capf_lsc_subject = cucm (3.3): devices whose PID and SN are known get
    serialNumber=PID:<pid> SN:<sn>, ..., CN=<pid>-<device>; known from the
    provisioning record (--pid/--sn) or from the phone's verified MIC
    (serialNumber "PID:... SN:..."); others keep CN=<device>."""

    @classmethod
    def more_pki(cls):
        return ('--capf-lsc-subject', 'cucm')

    def subject(self, res):
        return x509.load_der_x509_certificate(res.cert_der).subject

    def test_pid_sn_from_the_record(self):
        name = self.add(self.dev('CS'), '--key', 'ec256', '--pid', 'CP-8861', '--sn', 'FCH18198CNQ')
        subj = self.subject(self.installed(name))
        self.assertEqual(subj.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value, 'PID:CP-8861 SN:FCH18198CNQ')
        self.assertEqual(subj.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, 'CP-8861-' + name)
        plain = self.add(self.dev('CP'), '--key', 'ec256')      # PID/SN unknown: the default form
        subj = self.subject(self.installed(plain))
        self.assertEqual(subj.get_attributes_for_oid(NameOID.SERIAL_NUMBER), [])
        self.assertEqual(subj.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, plain)

    def test_pid_sn_from_the_mic(self):
        name = self.add(self.dev('CM'), '--key', 'ec256', auth='mic')
        mic_key = ec_key('P-256')
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        mic = cert_der(x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, 'PID:CP-8845 SN:FCH2301AB1C'),
                                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Test Vendor'),
                                                x509.NameAttribute(NameOID.COMMON_NAME, 'CP-8845-' + name)]))
                       .issuer_name(self.mfg_ca.subject).public_key(mic_key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(days=1))
                       .not_valid_after(now + datetime.timedelta(days=30))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .sign(self.mfg_key, hashes.SHA256()))
        c = self.connect(version=3, key_cache='none')
        res = self.session(name, client=c, extra_elements=cc.cert_auth_elements(
            name, mic, mic_key, c.session_id, cert_type=cc.CERT_TYPE_MIC))
        self.assertTrue(res.installed, res)
        subj = self.subject(res)
        self.assertEqual(subj.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value, 'PID:CP-8845 SN:FCH2301AB1C')
        self.assertEqual(subj.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, 'CP-8845-' + name)


class TestCapfRsaMinBits(CapfCase):
    """P3 for RSA below 2048 (capf_rsa_min_bits lowered)."""
    DAEMON_ARGS = ('--capf-rsa-min-bits', '1024')

    def test_p3_rsa1024(self):
        """CUCM offers RSA 512/1024 (5.1) for old phones: with
        capf_rsa_min_bits lowered, a device scheduled with rsa1024 gets it."""
        name = self.add(self.dev('P3c'), '--key', 'rsa1024')
        c = self.connect(version=3)
        res = self.session(name, client=c)
        self.assertTrue(res.installed, res)
        self.assertEqual(res.messages[1], msg_bytes(0x03, c.session_id, '0a 0002 0400 | 11 0001 00'))
        self.assertEqual(self.assert_lsc(name, res.cert_der).public_key().key_size, 1024)


# ================================================================ malformed

class TestCapfMalformed(CapfCase):
    """M1-M15: END 07 (or a close), a log line naming the peer (and the
    device once known), the registry as expected, the daemon alive and a
    good install afterwards."""

    def stopped(self, name, stop_at='key_request', version=3):
        """A session for `name` stopped (connection open) at S3 or S5."""
        c = self.connect(version)
        res = self.session(name, version=version, client=c, stop_at=stop_at)
        self.assertEqual(res.stopped_at, stop_at, res)
        return c, res

    def assert_failed(self, name, why, cert_serial=''):
        """After a violation past BEGIN: status failed with `why`, op install,
        the lock released (checked by the caller's next session)."""
        dev = self.show(name)
        self.assertEqual((dev['status'], dev['reason'], dev['op'], dev['lsc_unconfirmed']),
                         ('failed', why, 'install', cert_serial), dev)
        self.assertEqual(self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % name), 0, 'device lock not released')

    def raw_case(self, data, why, device='-'):
        """Before BEGIN: send `data(sid)` on a fresh connection; END 07; log."""
        c = self.connect()
        c.send_raw(data(c.session_id))
        self.read_end(c)
        self.wait_end_log(c, device, why)
        return c

    def test_m1_bad_magic(self):
        self.raw_case(lambda sid: b'\x54\x02' + struct.pack('>IH', sid, 4) + b'\x07\x00\x01\x03',
                      'refused: malformed message: bad protocol id (not 0x55)')
        self.raw_case(lambda sid: b'\x16\x03\x01\x00\x05hello',         # a TLS record inside TLS
                      'refused: malformed message: bad protocol id (not 0x55)')
        self.good_install()

    def test_m2_wrong_session_id(self):
        name = self.add(self.dev('M2'), '--key', 'ec256')
        before = self.raw_record(name)
        # In AUTH_RESPONSE (before BEGIN): refused, the device untouched.
        c = self.connect()
        bad = c.session_id ^ 0x00010000
        c.send_msg(cc.AUTH_RESPONSE, cc.auth_response_elements(3, name), session_id=bad)
        self.read_end(c)        # read_msg checked that END carries the server's id
        self.wait_end_log(c, '-', 'refused: AUTH_RESPONSE carries session id %08x, not %08x' % (bad, c.session_id))
        self.assertEqual(self.raw_record(name), before)
        # In KEY_GENERATE_RESPONSE (S3) and STORE_CERTIFICATE_RESPONSE (S5): failed.
        for stop_at, op, opname in (('key_request', cc.KEY_GENERATE_RESPONSE, 'KEY_GENERATE_RESPONSE'),
                                    ('store_request', cc.STORE_CERTIFICATE_RESPONSE, 'STORE_CERTIFICATE_RESPONSE')):
            with self.subTest(opname):
                c, res = self.stopped(name, stop_at)
                bad = (c.session_id + 1) & 0xffffffff
                els = ([(cc.PUBLIC_KEY, cc.public_key_der(cc.KEY_POOL.get(res.key_request, name)))]
                       if op == cc.KEY_GENERATE_RESPONSE else [(cc.REASON, b'\x01')])
                c.send_msg(op, els, session_id=bad)
                self.read_end(c)
                why = 'Upgrade Failed: %s carries session id %08x, not %08x' % (opname, bad, c.session_id)
                self.wait_end_log(c, name, why)
                serial = fx.cert_serial_hex(res.cert_der) if res.cert_der else ''
                self.assertEqual(self.wait_state(name, lambda d: d['status'] == 'failed')['status'], 'failed')
                self.assert_failed(name, why, serial)
        self.installed(name)

    def test_m3_oversize_length_refused_at_once(self):
        """Only the header is sent: the END arrives without the body (the
        server would otherwise wait for it until capf_auth_timeout, 120 s,
        far beyond the client's read timeout)."""
        self.raw_case(lambda sid: struct.pack('>BBIH', 0x55, 0x02, sid, 0xffff),
                      'refused: malformed message: body length over the limit for the opcode')
        self.raw_case(lambda sid: struct.pack('>BBIH', 0x55, 0x02, sid, 16385),
                      'refused: malformed message: body length over the limit for the opcode')
        name = self.add(self.dev('M3'), '--key', 'ec256')
        c, _ = self.stopped(name)
        c.send_raw(struct.pack('>BBIH', 0x55, 0x04, c.session_id, 2049))
        self.read_end(c)
        why = 'Upgrade Failed: malformed message: body length over the limit for the opcode'
        self.wait_end_log(c, name, why)
        self.assert_failed(name, why)
        self.installed(name)

    def test_m4_short_body_then_eof(self):
        # Before BEGIN: the close is logged, nothing recorded.
        c = self.connect()
        c.send_raw(struct.pack('>BBIH', 0x55, 0x02, c.session_id, 100) + b'\x07\x00\x01\x03')
        c.close()
        self.wait_log(c.session_id, c.peer, '-', 'connection closed by the peer')
        # In S3: Key Generation Failed, at once (capf_keygen_timeout is 600 s).
        name = self.add(self.dev('M4'), '--key', 'ec256')
        c, _ = self.stopped(name)
        c.send_raw(struct.pack('>BBIH', 0x55, 0x04, c.session_id, 91) + b'\x09\x00\x5b\x30')
        c.close()
        why = 'Upgrade Failed: Key Generation Failed/Timeout (connection closed by the phone)'
        dev = self.wait_state(name, lambda d: d['status'] == 'failed')
        self.assertEqual((dev['status'], dev['reason'], dev['op']), ('failed', why, 'install'), dev)
        self.wait_log(c.session_id, c.peer, name, 'connection lost: ' + why)
        self.assertTrue(wait_for(lambda: self.redis.command('EXISTS', 'stp:capf:lock:{%s}' % name) == 0, STATE_BOUND))
        self.installed(name)

    def test_m5_m8_element_framing(self):
        name = self.dev('M5')
        full = cc.encode_msg(2, 0, cc.auth_response_elements(3, name))[8:]   # a good body
        cross = 'refused: malformed message: element crosses the end of the body'
        cases = (
            # M5: the length field is smaller than the elements (3 bytes cut).
            ('M5 length < elements', lambda sid: struct.pack('>BBIH', 0x55, 2, sid, len(full) - 3) + full, cross),
            # M6: 1 and 2 bytes of an element header left at the end.
            ('M6 tag only', lambda sid: struct.pack('>BBIH', 0x55, 2, sid, len(full) + 1) + full + b'\x01', cross),
            ('M6 tag + 1 length byte', lambda sid: struct.pack('>BBIH', 0x55, 2, sid, len(full) + 2) + full
             + b'\x01\x00', cross),
            # M7: an element length past the end.
            ('M7', lambda sid: struct.pack('>BBIH', 0x55, 2, sid, len(full) + 4) + full + b'\x0b\x00\x09\x00', cross),
            # M8: fixed-size elements with a wrong length.
            ('M8 VERSION len 0', lambda sid: cc.encode_msg(2, sid, [(7, b''), (0x0d, name.encode() + b'\x00')]),
             'refused: malformed message: element length not allowed for its tag'),
            ('M8 VERSION len 2', lambda sid: cc.encode_msg(2, sid, [(7, b'\x00\x03'), (0x0d, name.encode() + b'\x00')]),
             'refused: malformed message: element length not allowed for its tag'),
            ('M8 REASON len 2', lambda sid: cc.encode_msg(2, sid, [(7, b'\x03'), (0x0d, name.encode() + b'\x00'),
                                                                   (1, b'\x01\x01')]),
             'refused: malformed message: element length not allowed for its tag'),
            ('M8 KEY_SIZE len 1', lambda sid: cc.encode_msg(2, sid, [(7, b'\x03'), (0x0a, b'\x08'),
                                                                     (0x0d, name.encode() + b'\x00')]),
             'refused: malformed message: element length not allowed for its tag'),
        )
        for what, data, why in cases:
            with self.subTest(what):
                self.raw_case(data, why)
        # KEY_SIZE of length 1 in KEY_GENERATE_RESPONSE (S3) too.
        dev = self.add(self.dev('M8'), '--key', 'ec256')
        c, _ = self.stopped(dev)
        c.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.KEY_SIZE, b'\x08'), (cc.REASON, b'\x07')])
        self.read_end(c)
        why = 'Upgrade Failed: malformed message: element length not allowed for its tag'
        self.wait_end_log(c, dev, why)
        self.assert_failed(dev, why)
        self.good_install()

    def test_m9_bad_device_names(self):
        notstr = 'refused: malformed message: string element not terminated by a single 00'
        invalid = 'AUTH_RESPONSE: device name: invalid device name'
        cases = ((b'SEP001122', notstr), (b'SEP00\x0011\x00', notstr), (b'\x00',
                 'refused: malformed message: element length not allowed for its tag'),
                 (b'SEP0011223344556\x00', invalid), (b'SEP\xc3\xa9112233\x00', invalid), (b'a/b\x00', invalid),
                 (b'../etc\x00', invalid), (b'a..b\x00', invalid), (b'.hidden\x00', invalid),
                 (b'SEP1\nINJECTED\x00', invalid), (b'SEP 1\x00', invalid), (b'SEP%s1\x00', invalid))
        keys_before = self.redis.command('DBSIZE')
        for value, why in cases:
            with self.subTest(name=value):
                self.raw_case(lambda sid: cc.encode_msg(2, sid, [(7, b'\x03'), (0x0d, value), (1, b'\x01')]), why)
        self.assertEqual(self.redis.command('DBSIZE'), keys_before, 'a bad name created a key')
        for ln in self.d.stderr().splitlines():
            self.assertFalse(ln.startswith('INJECTED'), 'log injection: %r' % ln)
        # The limit itself: 15 characters are accepted (unknown device, END 09).
        c = self.connect()
        res = self.session('SEP001122334455', client=c)
        self.assertEqual(res.end_reason, 9)
        self.good_install()

    def test_m10_duplicates(self):
        name = self.add(self.dev('M10'), '--key', 'ec256')
        before = self.raw_record(name)
        dup = 'malformed message: duplicate element'
        self.raw_case(lambda sid: cc.encode_msg(2, sid, [(7, b'\x03'), (0x0d, name.encode() + b'\x00'),
                                                        (0x0d, name.encode() + b'\x00'), (1, b'\x01')]),
                      'refused: ' + dup)
        self.assertEqual(self.raw_record(name), before)
        c, res = self.stopped(name)
        spki = cc.public_key_der(cc.KEY_POOL.get(res.key_request, name))
        c.send_msg(cc.KEY_GENERATE_RESPONSE, [(cc.PUBLIC_KEY, spki), (cc.PUBLIC_KEY, spki)])
        self.read_end(c)
        self.wait_end_log(c, name, 'Upgrade Failed: ' + dup)
        self.assert_failed(name, 'Upgrade Failed: ' + dup)
        self.assertEqual(self.req_keys(name), [])
        self.installed(name)

    def test_m11_out_of_order(self):
        name = self.add(self.dev('M11'), '--key', 'ec256')
        # 04 before 02.
        self.raw_case(lambda sid: cc.encode_msg(4, sid, [(cc.PUBLIC_KEY, cc.public_key_der(ec_key('P-256')))]),
                      'refused: KEY_GENERATE_RESPONSE (out of order) not expected in state await-auth')
        cases = (('key_request', cc.STORE_CERTIFICATE_RESPONSE, [(1, b'\x01')],
                  'STORE_CERTIFICATE_RESPONSE (out of order) not expected in state await-keygen'),
                 ('key_request', cc.AUTH_RESPONSE, cc.auth_response_elements(3, name),
                  'AUTH_RESPONSE (out of order) not expected in state await-keygen'),
                 ('store_request', cc.DELETE_CERTIFICATE_RESPONSE, [(1, b'\x01')],
                  'DELETE_CERTIFICATE_RESPONSE (out of order) not expected in state await-store'),
                 ('store_request', cc.REQUEST_IN_PROGRESS, [],
                  'REQUEST_IN_PROGRESS (out of order) not expected in state await-store'))
        for stop_at, op, els, why in cases:
            with self.subTest(why):
                c, res = self.stopped(name, stop_at)
                c.send_msg(op, els)
                self.read_end(c)
                self.wait_end_log(c, name, 'Upgrade Failed: ' + why)
                self.assert_failed(name, 'Upgrade Failed: ' + why,
                                   fx.cert_serial_hex(res.cert_der) if res.cert_der else '')
        self.installed(name)

    def test_m12_unknown_opcodes(self):
        for op in (0x00, 0x18, 0x80, 0xff):
            with self.subTest(op=op):
                self.raw_case(lambda sid: cc.encode_msg(op, sid, [(1, b'\x01')]),
                              'refused: malformed message: unknown opcode')
        name = self.add(self.dev('M12'), '--key', 'ec256')
        c, _ = self.stopped(name)
        c.send_msg(0x80, [])
        self.read_end(c)
        self.wait_end_log(c, name, 'Upgrade Failed: malformed message: unknown opcode')
        self.assert_failed(name, 'Upgrade Failed: malformed message: unknown opcode')
        self.good_install()

    def test_m13_server_opcodes_from_client(self):
        cert = cc.build_certificate_element(self.ca_der())
        cases = ((cc.AUTH_REQUEST, [(cc.VERSION, b'\x03')]), (cc.KEY_GENERATE_REQUEST, [(cc.KEY_SIZE, b'\x08\x00')]),
                 (cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'), (cc.CERTIFICATE, cert)]),
                 (cc.FETCH_CERTIFICATE_REQUEST, []), (cc.DELETE_CERTIFICATE_REQUEST, []),
                 (cc.END_SESSION, [(cc.REASON, b'\x01')]))
        for op, els in cases:
            with self.subTest(op=op):
                self.raw_case(lambda sid: cc.encode_msg(op, sid, els),
                              'refused: %s (a server opcode) not expected in state await-auth' % cc.OPCODE_NAMES[op])
        name = self.add(self.dev('M13'), '--key', 'ec256')
        c, _ = self.stopped(name)
        c.send_msg(cc.END_SESSION, [(cc.REASON, b'\x01')])
        self.read_end(c)
        why = 'Upgrade Failed: END_SESSION (a server opcode) not expected in state await-keygen'
        self.wait_end_log(c, name, why)
        self.assert_failed(name, why)
        self.good_install()

    def test_m14_pipelined_messages(self):
        name = self.add(self.dev('M14'), '--key', 'ec256')
        # Two AUTH_RESPONSEs in one record: the second is read in S3, out of order.
        c = self.connect()
        auth = cc.encode_msg(cc.AUTH_RESPONSE, c.session_id, cc.auth_response_elements(3, name))
        c.send_raw(auth + auth)
        self.assertEqual(c.read_msg().opcode, cc.KEY_GENERATE_REQUEST)
        self.read_end(c)
        why = 'Upgrade Failed: AUTH_RESPONSE (out of order) not expected in state await-keygen'
        self.wait_end_log(c, name, why)
        self.assert_failed(name, why)
        # A trailing byte after AUTH_RESPONSE is the start of the next message.
        c = self.connect()
        c.send_raw(cc.encode_msg(cc.AUTH_RESPONSE, c.session_id, cc.auth_response_elements(3, name)) + b'\x01')
        self.assertEqual(c.read_msg().opcode, cc.KEY_GENERATE_REQUEST)
        self.read_end(c)
        why = 'Upgrade Failed: malformed message: bad protocol id (not 0x55)'
        self.wait_end_log(c, name, why)
        self.assert_failed(name, why)
        # AUTH_RESPONSE + KEY_GENERATE_RESPONSE in one record: both valid in turn.
        c = self.connect()
        key = cc.KEY_POOL.get(cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P256), name)
        c.send_raw(cc.encode_msg(cc.AUTH_RESPONSE, c.session_id, cc.auth_response_elements(3, name))
                   + cc.encode_msg(cc.KEY_GENERATE_RESPONSE, c.session_id, [(cc.PUBLIC_KEY, cc.public_key_der(key))]))
        self.assertEqual(c.read_msg().opcode, cc.KEY_GENERATE_REQUEST)
        m = c.read_msg()
        self.assertEqual(m.opcode, cc.STORE_CERTIFICATE_REQUEST, str(m))
        c.send_msg(cc.STORE_CERTIFICATE_RESPONSE, [(cc.REASON, b'\x01')])
        self.read_end(c, cc.REASON_OK)
        self.assertEqual(self.show(name)['status'], 'success')

    def test_m15_bytes_after_end_session(self):
        name = self.dev('M15')
        c = self.connect()
        c.send_msg(cc.AUTH_RESPONSE, cc.auth_response_elements(3, name))
        m = c.read_msg()
        self.assertEqual((m.opcode, m.get(cc.REASON)), (cc.END_SESSION, b'\x09'))
        # Whatever follows is discarded: no answer, then the close.
        try:
            c.send_msg(cc.AUTH_RESPONSE, cc.auth_response_elements(3, name))
            c.send_raw(b'\xff' * 64)
        except OSError:
            pass                            # already closed: as good
        self.assertIn(c.expect_eof(), ('close_notify', 'eof', 'reset'))
        c.close()
        self.wait_end_log(c, name, 'unknown device', reason=9)
        time.sleep(0.2)                     # not a timing assertion: lets a wrong second line show up
        self.assertEqual(len(self.log_lines(c.session_id)), 1, self.log_lines(c.session_id))
        self.good_install()


if __name__ == '__main__':
    fx.main()
