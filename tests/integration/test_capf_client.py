"""Unit tests of capf_client.py, the CAPF test client: no Stampede server needed.

* Encoding: every hex example of docs/capf-protocol.md 2.9, rebuilt with the
  client's encoder and builders and compared byte for byte.
* Strict decoding (2.1, 2.2, 2.10.4), the F1 framing check (1.1, 6.5), the
  server-message rules (4.3.1) and key-request parsing (2.7.1).
* The certificate element of 2.6 (build, strict parse) and the SPKI of every
  key type (section 3).
* The flows over real TLS against a scripted in-process fake server: install
  (v2 RSA, v3 EC with REQUEST_IN_PROGRESS), declines, delete, troubleshoot,
  split writes (each sendall is one TLS record), wrong session ids, framing
  violations seen through a real single recv(4096), the close after
  END_SESSION, certificate verification, and the command line.

Python 3.11, standard library + cryptography (38.0.4 API or newer).
Run: python3 tests/integration/test_capf_client.py -v
"""
import contextlib
import datetime
import io
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capf_client as cc  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

SID = 0x123          # session id of every 2.9 example
HERE = os.path.dirname(os.path.abspath(__file__))


def hx(text: str) -> bytes:
    """Hex as written in the document: spaces and '|' are for reading only."""
    return bytes.fromhex(text.replace('|', ' '))


def name(cn: str, **extra) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if 'o' in extra:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, extra['o']))
    return x509.Name(attrs)


def make_cert(subject_key, issuer_key, cn: str, issuer_cn: str | None = None, ca: bool = False,
              serial: int = 0x1A2B3C, org: str | None = None) -> x509.Certificate:
    """A certificate for `subject_key` (a private or public key) signed by `issuer_key`."""
    pub = subject_key.public_key() if hasattr(subject_key, 'private_bytes') else subject_key
    b = (x509.CertificateBuilder()
         .subject_name(name(cn, **({'o': org} if org else {})))
         .issuer_name(name(issuer_cn or cn))
         .public_key(pub)
         .serial_number(serial)
         .not_valid_before(datetime.datetime(2024, 1, 1))
         .not_valid_after(datetime.datetime(2034, 1, 1)))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False,
                                          False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class Fixture:
    """Keys and certificates shared by the module (built once in setUpModule)."""
    tmp = ''
    ca_key = None          # LSC issuer of the fake server (EC, fast)
    server_cert_path = ''  # the fake server's self-signed CAPF certificate
    server_key_path = ''
    other_cert_path = ''   # an unrelated self-signed certificate (cafile that must fail)
    rsa2048 = None         # subject key for the 979-byte LSC of 2.9
    lsc979 = b''           # a real 979-byte DER certificate, the size in the CUCM capture


F = Fixture()


def setUpModule():
    F.tmp = tempfile.mkdtemp(prefix='capf-client-test-')
    F.ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = make_cert(server_key, server_key, 'CAPF-0badc0de', ca=True)
    F.server_cert_path = os.path.join(F.tmp, 'capf.pem')
    F.server_key_path = os.path.join(F.tmp, 'capf.key')
    with open(F.server_cert_path, 'wb') as f:
        f.write(server_cert.public_bytes(serialization.Encoding.PEM))
    with open(F.server_key_path, 'wb') as f:
        f.write(server_key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    other_key = ec.generate_private_key(ec.SECP256R1())
    F.other_cert_path = os.path.join(F.tmp, 'other.pem')
    with open(F.other_cert_path, 'wb') as f:
        f.write(make_cert(other_key, other_key, 'CAPF-00000000', ca=True)
                .public_bytes(serialization.Encoding.PEM))
    F.rsa2048 = cc.KEY_POOL.get(cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048), 'fixture')
    F.lsc979 = cert_of_size(979)


def tearDownModule():
    shutil.rmtree(F.tmp, True)


def cert_of_size(size: int) -> bytes:
    """A real RSA-2048 LSC of exactly `size` DER bytes (O padded to fit).
    Signed with an RSA key: its signature has a fixed length, ECDSA's does not."""
    pad = 10
    for _ in range(5):
        d = der(make_cert(F.rsa2048, F.rsa2048, 'SEP74A02FC0A675', 'CAPF-0badc0de',
                          org='x' * pad))
        if len(d) == size:
            return d
        pad += size - len(d)
    raise AssertionError('could not build a %d-byte certificate' % size)


# --- 2.9: byte-exact examples ---------------------------------------------------

class TestHexExamples(unittest.TestCase):
    """Each 2.9 example rebuilt with encode_msg and the client's builders."""

    def check(self, built: bytes, doc_hex: str):
        self.assertEqual(built.hex(' '), hx(doc_hex).hex(' '))

    def test_auth_request_cucm(self):
        self.check(cc.encode_msg(cc.AUTH_REQUEST, SID, [(cc.VERSION, b'\x03')]),
                   '55 01 00 00 01 23 00 04 | 07 00 01 03')

    def test_auth_request_usecallmanagernz(self):
        self.check(cc.encode_msg(cc.AUTH_REQUEST, SID, [(cc.VERSION, b'\x03'),
                                                        (cc.AUTH_TYPE, b'\x00')]),
                   '55 01 00 00 01 23 00 08 | 07 00 01 03 | 08 00 01 00')

    def test_auth_response_jabber(self):
        self.check(cc.encode_msg(cc.AUTH_RESPONSE, SID, cc.auth_response_elements(2, 'CSF123')),
                   '55 02 00 00 01 23 00 12 | 07 00 01 02 | 0d 00 07 43 53 46 31 32 33 00'
                   ' | 01 00 01 01')

    def test_auth_response_phone_with_password(self):
        self.check(cc.encode_msg(cc.AUTH_RESPONSE, SID,
                                 cc.auth_response_elements(3, 'SEP74A02FC0A675', '123456')),
                   '55 02 00 00 01 23 00 25 | 01 00 01 01 | 07 00 01 03'
                   ' | 0b 00 07 31 32 33 34 35 36 00'
                   ' | 0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00')

    def test_auth_response_null_string_password(self):
        # 2.8: the empty PASSWORD of usecallmanagernz's client is 0b 00 01 00.
        els = cc.auth_response_elements(3, 'SEP74A02FC0A675', '')
        self.assertIn((cc.PASSWORD, b'\x00'), els)
        self.assertIn(hx('0b 00 01 00'), cc.encode_msg(cc.AUTH_RESPONSE, SID, els))

    def test_key_generate_request_v2(self):
        self.check(cc.encode_msg(cc.KEY_GENERATE_REQUEST, SID, [(cc.KEY_SIZE, (2048).to_bytes(2, 'big'))]),
                   '55 03 00 00 01 23 00 05 | 0a 00 02 08 00')

    def test_key_generate_request_v3_rsa(self):
        self.check(cc.encode_msg(cc.KEY_GENERATE_REQUEST, SID,
                                 [(cc.KEY_SIZE, b'\x08\x00'), (cc.KEY_TYPE, bytes([cc.KEY_TYPE_RSA]))]),
                   '55 03 00 00 01 23 00 09 | 0a 00 02 08 00 | 11 00 01 00')

    def test_key_generate_request_v3_ec(self):
        self.check(cc.encode_msg(cc.KEY_GENERATE_REQUEST, SID,
                                 [(cc.KEY_TYPE, bytes([cc.KEY_TYPE_EC])),
                                  (cc.CURVE, bytes([cc.CURVE_P384]))]),
                   '55 03 00 00 01 23 00 08 | 11 00 01 01 | 12 00 01 01')

    def test_request_in_progress(self):
        self.check(cc.encode_msg(cc.REQUEST_IN_PROGRESS, SID, []), '55 11 00 00 01 23 00 00')

    def test_key_generate_response_rsa2048(self):
        msg = cc.encode_msg(cc.KEY_GENERATE_RESPONSE, SID,
                            [(cc.PUBLIC_KEY, cc.public_key_der(F.rsa2048))])
        self.assertEqual(len(msg), 305)
        prefix = hx('55 04 00 00 01 23 01 29 | 09 01 26'
                    ' 30 82 01 22 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 82 01 0f 00'
                    ' 30 82 01 0a 02 82 01 01 00')
        self.assertEqual(msg[:len(prefix)].hex(' '), prefix.hex(' '))
        self.assertEqual(msg[len(prefix) + 256:].hex(' '), '02 03 01 00 01')

    def test_key_generate_response_other_sizes(self):
        # "Other sizes, header and element prefix" + total SPKI length of 2.9.
        cases = [(cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=1024), '00 a5', '09 00 a2 30 81 9f', 162),
                 (cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=4096), '02 29', '09 02 26 30 82 02 22', 550),
                 (cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P256), '00 5e', '09 00 5b 30 59', 91),
                 (cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P384), '00 7b', '09 00 78 30 76', 120),
                 (cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P521), '00 a1', '09 00 9e 30 81 9b', 158)]
        for req, blen, elem, spki_len in cases:
            with self.subTest(req.describe()):
                spki = cc.public_key_der(cc.KEY_POOL.get(req, 'hex-examples'))
                self.assertEqual(len(spki), spki_len)
                msg = cc.encode_msg(cc.KEY_GENERATE_RESPONSE, SID, [(cc.PUBLIC_KEY, spki)])
                self.assertEqual(msg[6:8], hx(blen))
                self.assertEqual(msg[8:8 + len(hx(elem))].hex(' '), hx(elem).hex(' '))

    def test_store_certificate_request_979(self):
        self.assertEqual(len(F.lsc979), 979)
        msg = cc.encode_msg(cc.STORE_CERTIFICATE_REQUEST, SID,
                            [(cc.CERTIFICATE_TYPE, bytes([cc.CERT_TYPE_LSC])),
                             (cc.CERTIFICATE, cc.build_certificate_element(F.lsc979))])
        self.assertEqual(len(msg), 999)
        self.check(msg[:24], '55 09 00 00 01 23 03 df | 03 00 01 01 | 04 03 d8 01 03 d5 00 01'
                             ' 30 82 03 cf')
        self.assertEqual(msg[20:], F.lsc979)

    def test_store_certificate_response(self):
        self.check(cc.encode_msg(cc.STORE_CERTIFICATE_RESPONSE, SID, cc.reason_elements(cc.REASON_OK)),
                   '55 0a 00 00 01 23 00 04 | 01 00 01 01')

    def test_end_session(self):
        for reason, doc in ((cc.REASON_OK, '01'), (cc.REASON_INVALID_ELEMENT, '07'),
                            (cc.REASON_UNKNOWN_DEVICE, '09')):
            with self.subTest(reason=reason):
                self.check(cc.encode_msg(cc.END_SESSION, SID, cc.reason_elements(reason)),
                           '55 0f 00 00 01 23 00 04 | 01 00 01 ' + doc)

    def test_fetch_and_delete_requests(self):
        self.check(cc.encode_msg(cc.FETCH_CERTIFICATE_REQUEST, SID, []), '55 0b 00 00 01 23 00 00')
        self.check(cc.encode_msg(cc.DELETE_CERTIFICATE_REQUEST, SID, []), '55 0d 00 00 01 23 00 00')

    def test_delete_certificate_response(self):
        self.check(cc.encode_msg(cc.DELETE_CERTIFICATE_RESPONSE, SID, cc.reason_elements(1)),
                   '55 0e 00 00 01 23 00 04 | 01 00 01 01')
        self.check(cc.encode_msg(cc.DELETE_CERTIFICATE_RESPONSE, SID, cc.reason_elements(7)),
                   '55 0e 00 00 01 23 00 04 | 01 00 01 07')

    def test_fetch_certificate_response_979(self):
        msg = cc.encode_msg(cc.FETCH_CERTIFICATE_RESPONSE, SID, cc.fetch_response_elements(F.lsc979))
        self.assertEqual(len(msg), 999)
        self.check(msg[:24], '55 0c 00 00 01 23 03 df | 01 00 01 01 | 04 03 d8 01 03 d5 00 01'
                             ' 30 82 03 cf')
        self.assertEqual(msg[20:], F.lsc979)

    def test_fetch_certificate_response_none(self):
        self.check(cc.encode_msg(cc.FETCH_CERTIFICATE_RESPONSE, SID, cc.fetch_response_elements(None)),
                   '55 0c 00 00 01 23 00 04 | 01 00 01 07')

    def test_key_generate_response_failure(self):
        self.check(cc.encode_msg(cc.KEY_GENERATE_RESPONSE, SID, cc.reason_elements(7)),
                   '55 04 00 00 01 23 00 04 | 01 00 01 07')

    def test_spki_annotated_rsa2048(self):
        # 3.1: the annotated value, modulus aside.
        spki = cc.public_key_der(F.rsa2048)
        self.assertEqual(len(spki), 294)
        prefix = hx('30 82 01 22 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00'
                    ' 03 82 01 0f 00 30 82 01 0a 02 82 01 01 00')
        self.assertEqual(spki[:len(prefix)], prefix)
        self.assertGreaterEqual(spki[len(prefix)], 0x80)     # top bit set, hence the 00
        self.assertEqual(spki[len(prefix) + 256:], hx('02 03 01 00 01'))


# --- Encoding and strict decoding ------------------------------------------------

class TestCodec(unittest.TestCase):

    def test_round_trip_keeps_order_and_duplicates(self):
        els = [(cc.DEVICE_NAME, b'A\x00'), (cc.REASON, b'\x01'), (cc.DEVICE_NAME, b'B\x00'),
               (0xF0, b''), (cc.PUBLIC_KEY, bytes(300))]
        data = cc.encode_msg(cc.AUTH_RESPONSE, 0xDEADBEEF, els)
        op, sid, got = cc.decode_msg(data)
        self.assertEqual((op, sid, got), (cc.AUTH_RESPONSE, 0xDEADBEEF, els))
        msg = cc.decode_msg(data)
        self.assertEqual(msg.values(cc.DEVICE_NAME), [b'A\x00', b'B\x00'])
        with self.assertRaises(cc.ProtocolError):
            msg.get(cc.DEVICE_NAME)
        self.assertEqual(msg.get(cc.REASON), b'\x01')
        self.assertIsNone(msg.get(cc.VERSION))

    def test_empty_body(self):
        self.assertEqual(cc.decode_msg(hx('55 0b 00 00 01 23 00 00')), (cc.FETCH_CERTIFICATE_REQUEST, SID, []))

    def test_header_fields_big_endian(self):
        data = cc.encode_msg(0x0F, 0x01020304, [(1, b'\x09')])
        self.assertEqual(data[:8], hx('55 0f 01 02 03 04 00 04'))

    def test_short_header(self):
        for n in range(8):
            with self.subTest(n=n), self.assertRaisesRegex(cc.DecodeError, 'short header'):
                cc.decode_msg(hx('55 01 00 00 01 23 00 00')[:n])

    def test_bad_magic(self):
        for magic in (0x00, 0x54, 0x56, 0xFF):
            with self.subTest(magic=magic), self.assertRaisesRegex(cc.DecodeError, 'magic'):
                cc.decode_msg(bytes([magic]) + hx('0f 00 00 01 23 00 04 01 00 01 01'))

    def test_body_length_mismatch(self):
        good = hx('55 0f 00 00 01 23 00 04 01 00 01 01')
        for bad in (good[:-1], good + b'\x00', hx('55 0f 00 00 01 23 00 05 01 00 01 01'),
                    hx('55 0f 00 00 01 23 00 03 01 00 01 01'), hx('55 0f 00 00 01 23 ff ff')):
            with self.subTest(bad=bad.hex()), self.assertRaisesRegex(cc.DecodeError, 'body length'):
                cc.decode_msg(bad)

    def test_truncated_element_header(self):
        for tail in ('01', '01 00'):
            body = hx('01 00 01 01 ' + tail)
            data = hx('55 0f 00 00 01 23') + len(body).to_bytes(2, 'big') + body
            with self.subTest(tail=tail), self.assertRaisesRegex(cc.DecodeError, 'truncated element'):
                cc.decode_msg(data)

    def test_element_length_past_end(self):
        for body in (hx('01 00 02 01'), hx('01 00 01 01 04 03 d8 01 03'), hx('0d ff ff 41 00')):
            data = hx('55 02 00 00 01 23') + len(body).to_bytes(2, 'big') + body
            with self.subTest(body=body.hex()), self.assertRaisesRegex(cc.DecodeError, 'past the end'):
                cc.decode_msg(data)

    def test_zero_length_element_is_valid(self):
        self.assertEqual(cc.decode_msg(hx('55 02 00 00 01 23 00 03 f0 00 00')).elements, [(0xF0, b'')])

    def test_encode_rejects_out_of_range(self):
        with self.assertRaises(ValueError):
            cc.encode_msg(0x100, 1, [])
        with self.assertRaises(ValueError):
            cc.encode_msg(1, 1 << 32, [])
        with self.assertRaises(ValueError):
            cc.encode_msg(1, -1, [])
        with self.assertRaises(ValueError):
            cc.encode_msg(1, 1, [(0x100, b'')])
        with self.assertRaises(ValueError):
            cc.encode_msg(1, 1, [(cc.PUBLIC_KEY, bytes(0x10000))])
        with self.assertRaises(ValueError):          # body over 65535 bytes in all
            cc.encode_msg(1, 1, [(cc.PUBLIC_KEY, bytes(40000)), (cc.PUBLIC_KEY, bytes(40000))])


# --- F1 framing check ------------------------------------------------------------

class TestFraming(unittest.TestCase):
    END = hx('55 0f 00 00 01 23 00 04 01 00 01 01')

    def test_one_message_passes(self):
        self.assertEqual(cc.check_single_message(self.END, 2), (cc.END_SESSION, SID, [(1, b'\x01')]))

    def test_two_messages_in_one_read(self):
        with self.assertRaisesRegex(cc.FramingError, 'several messages'):
            cc.check_single_message(self.END + self.END, 2)
        with self.assertRaises(cc.FramingError):
            cc.check_single_message(self.END + b'\x55', 3)

    def test_header_alone(self):
        with self.assertRaisesRegex(cc.FramingError, 'split over TLS records'):
            cc.check_single_message(self.END[:8], 2)
        with self.assertRaises(cc.FramingError):        # part of the body missing
            cc.check_single_message(self.END[:-1], 3)

    def test_partial_header(self):
        for n in range(1, 8):
            with self.subTest(n=n), self.assertRaisesRegex(cc.FramingError, 'less than a header'):
                cc.check_single_message(self.END[:n], 3)

    def test_size_limit(self):
        def msg(total):
            return cc.encode_msg(cc.STORE_CERTIFICATE_REQUEST, SID, [(cc.CERTIFICATE, bytes(total - 11))])
        self.assertEqual(len(cc.check_single_message(msg(4096), 2).elements[0][1]), 4085)
        with self.assertRaisesRegex(cc.FramingError, 'at most 4096'):
            cc.check_single_message(msg(4097), 2)
        # What one recv(4096) returns of a 4097-byte message in one record.
        with self.assertRaisesRegex(cc.FramingError, 'larger than 4096'):
            cc.check_single_message(msg(4097)[:4096], 2)

    def test_empty_body_only_for_v3(self):
        empty = hx('55 0d 00 00 01 23 00 00')
        with self.assertRaisesRegex(cc.FramingError, 'version-2'):
            cc.check_single_message(empty, 2)
        self.assertEqual(cc.check_single_message(empty, 3).elements, [])

    def test_malformed_but_framed_is_a_decode_error(self):
        with self.assertRaises(cc.DecodeError):
            cc.check_single_message(hx('54 0f 00 00 01 23 00 04 01 00 01 01'), 2)
        with self.assertRaises(cc.DecodeError):
            cc.check_single_message(hx('55 0f 00 00 01 23 00 04 01 00 02 01'), 2)

    def test_framing_error_is_distinct(self):
        self.assertFalse(issubclass(cc.FramingError, cc.ProtocolError))
        self.assertFalse(issubclass(cc.ProtocolError, cc.FramingError))
        self.assertTrue(issubclass(cc.FramingError, cc.CapfError))


# --- Server message rules and key requests ---------------------------------------

def msg_of(opcode, elements, sid=SID):
    return cc.decode_msg(cc.encode_msg(opcode, sid, elements))


class TestServerMessages(unittest.TestCase):

    def test_valid_server_messages(self):
        for m in (msg_of(cc.AUTH_REQUEST, [(cc.VERSION, b'\x03')]),
                  msg_of(cc.AUTH_REQUEST, [(cc.VERSION, b'\x03'), (cc.AUTH_TYPE, b'\x00')]),
                  msg_of(cc.END_SESSION, [(cc.REASON, b'\x07')]),
                  msg_of(cc.DELETE_CERTIFICATE_REQUEST, []),
                  msg_of(cc.FETCH_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01')])):
            with self.subTest(m=str(m)):
                cc.check_server_message(m)

    def test_invalid_server_messages(self):
        cases = {
            'END_SESSION without REASON': msg_of(cc.END_SESSION, []),
            'REASON of 2 bytes': msg_of(cc.END_SESSION, [(cc.REASON, b'\x00\x01')]),
            'duplicate REASON': msg_of(cc.END_SESSION, [(cc.REASON, b'\x01'), (cc.REASON, b'\x01')]),
            'unknown tag': msg_of(cc.END_SESSION, [(cc.REASON, b'\x01'), (0x15, b'x')]),
            'client tag': msg_of(cc.AUTH_REQUEST, [(cc.VERSION, b'\x03'), (cc.DEVICE_NAME, b'A\x00')]),
            'hello without VERSION': msg_of(cc.AUTH_REQUEST, [(cc.AUTH_TYPE, b'\x00')]),
            'client opcode': msg_of(cc.AUTH_RESPONSE, [(cc.REASON, b'\x01')]),
            'unknown opcode': msg_of(0x18, [(cc.REASON, b'\x01')]),
            'RETRY_LATER': msg_of(cc.RETRY_LATER, [(cc.REASON, b'\x01')]),
            'STORE without CERTIFICATE': msg_of(cc.STORE_CERTIFICATE_REQUEST,
                                                [(cc.CERTIFICATE_TYPE, b'\x01')]),
        }
        for what, m in cases.items():
            with self.subTest(what), self.assertRaises(cc.ProtocolError):
                cc.check_server_message(m)

    def test_key_request_v2(self):
        req = cc.parse_key_request(msg_of(cc.KEY_GENERATE_REQUEST, [(cc.KEY_SIZE, b'\x08\x00')]), 2)
        self.assertEqual(req, cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048))
        self.assertEqual(req.describe(), 'RSA-2048')

    def test_key_request_v3(self):
        rsa_req = msg_of(cc.KEY_GENERATE_REQUEST, [(cc.KEY_SIZE, b'\x10\x00'), (cc.KEY_TYPE, b'\x00')])
        self.assertEqual(cc.parse_key_request(rsa_req, 3), cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=4096))
        for curve, label in ((0, 'EC P-256'), (1, 'EC P-384'), (2, 'EC P-521')):
            m = msg_of(cc.KEY_GENERATE_REQUEST, [(cc.KEY_TYPE, b'\x01'), (cc.CURVE, bytes([curve]))])
            self.assertEqual(cc.parse_key_request(m, 3).describe(), label)

    def test_bad_key_requests(self):
        cases = [
            ('v2 with KEY_TYPE', 2, [(cc.KEY_SIZE, b'\x08\x00'), (cc.KEY_TYPE, b'\x00')]),
            ('v2 EC', 2, [(cc.KEY_TYPE, b'\x01'), (cc.CURVE, b'\x00')]),
            ('v2 empty', 2, [(cc.CURVE, b'\x00')]),
            ('v3 without KEY_TYPE', 3, [(cc.KEY_SIZE, b'\x08\x00')]),
            ('v3 EC with KEY_SIZE', 3, [(cc.KEY_TYPE, b'\x01'), (cc.CURVE, b'\x00'),
                                        (cc.KEY_SIZE, b'\x01\x00')]),
            ('v3 RSA with CURVE', 3, [(cc.KEY_TYPE, b'\x00'), (cc.KEY_SIZE, b'\x08\x00'),
                                      (cc.CURVE, b'\x00')]),
            ('v3 EC without CURVE', 3, [(cc.KEY_TYPE, b'\x01')]),
            ('unknown curve', 3, [(cc.KEY_TYPE, b'\x01'), (cc.CURVE, b'\x03')]),
            ('unknown key type', 3, [(cc.KEY_TYPE, b'\x02'), (cc.KEY_SIZE, b'\x08\x00')]),
            ('odd RSA size', 2, [(cc.KEY_SIZE, (2000).to_bytes(2, 'big'))]),
            ('KEY_SIZE of 1 byte', 2, [(cc.KEY_SIZE, b'\x08')]),
            ('duplicate KEY_SIZE', 2, [(cc.KEY_SIZE, b'\x08\x00'), (cc.KEY_SIZE, b'\x08\x00')]),
        ]
        for what, version, els in cases:
            with self.subTest(what), self.assertRaises(cc.ProtocolError):
                cc.parse_key_request(msg_of(cc.KEY_GENERATE_REQUEST, els), version)


# --- Certificate element (2.6) -----------------------------------------------------

class TestCertificateElement(unittest.TestCase):

    def test_round_trip(self):
        for ctype in (cc.CERT_TYPE_LSC, cc.CERT_TYPE_MIC):
            with self.subTest(ctype=ctype):
                value = cc.build_certificate_element(F.lsc979, ctype)
                self.assertEqual(value[:5], bytes([1, 0x03, 0xD5, 0, ctype]))
                self.assertEqual(len(value), len(F.lsc979) + 5)
                self.assertEqual(cc.parse_certificate_element(value), (ctype, F.lsc979))

    def test_rejects(self):
        good = cc.build_certificate_element(F.lsc979)
        inner_len = len(F.lsc979) + 2
        cases = {
            'empty': b'',
            'inner header cut': good[:2],
            'bad inner tag': b'\x02' + good[1:],
            'inner length one too long': good[:1] + (inner_len + 1).to_bytes(2, 'big') + good[3:],
            'inner length one too short': good[:1] + (inner_len - 1).to_bytes(2, 'big') + good[3:],
            'no type': hx('01 00 00'),
            'type cut': hx('01 00 01 00'),
            'unknown type 0003': good[:3] + b'\x00\x03' + good[5:],
            'type 0100': good[:3] + b'\x01\x00' + good[5:],
            'no DER': hx('01 00 02 00 01'),
            'DER with a trailing byte': cc.build_certificate_element(F.lsc979 + b'\x00'),
            'DER cut': cc.build_certificate_element(F.lsc979[:-1]),
            'two certificates': cc.build_certificate_element(F.lsc979 + F.lsc979),
            'not a certificate': cc.build_certificate_element(hx('30 03 02 01 05')),
            'not a SEQUENCE': cc.build_certificate_element(b'\x04' + F.lsc979[1:]),
        }
        for what, value in cases.items():
            with self.subTest(what), self.assertRaises(cc.DecodeError):
                cc.parse_certificate_element(value)


# --- Keys (section 3) ---------------------------------------------------------------

class TestKeys(unittest.TestCase):

    def test_spki_for_every_key_type(self):
        for size in cc.RSA_SIZES:
            with self.subTest(rsa=size):
                req = cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=size)
                pub = serialization.load_der_public_key(cc.public_key_der(cc.KEY_POOL.get(req, 'spki')))
                self.assertIsInstance(pub, rsa.RSAPublicKey)
                self.assertEqual(pub.key_size, size)
                self.assertEqual(pub.public_numbers().e, 65537)
        for curve, cls in ((cc.CURVE_P256, ec.SECP256R1), (cc.CURVE_P384, ec.SECP384R1),
                           (cc.CURVE_P521, ec.SECP521R1)):
            with self.subTest(curve=cls.name):
                req = cc.KeyRequest(cc.KEY_TYPE_EC, curve=curve)
                spki = cc.public_key_der(cc.generate_key(req))
                pub = serialization.load_der_public_key(spki)
                self.assertIsInstance(pub, ec.EllipticCurvePublicKey)
                self.assertIsInstance(pub.curve, cls)
                # 3.1: named curve, uncompressed point (04 || X || Y at the end).
                n = (pub.curve.key_size + 7) // 8
                self.assertEqual(spki[-(2 * n + 1)], 0x04)

    def test_rsa512_fallback(self):
        key = cc._rsa_key_by_hand(512)
        self.assertEqual(key.key_size, 512)
        nums = key.private_numbers()
        self.assertEqual(nums.p * nums.q, nums.public_numbers.n)
        self.assertEqual(pow(pow(12345, 65537, nums.public_numbers.n), nums.d,
                             nums.public_numbers.n), 12345)

    def test_pool_policies(self):
        req = cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P256)
        pool = cc.KeyPool()
        spki = lambda k: cc.public_key_der(k)  # noqa: E731
        self.assertIs(pool.get(req, 'A'), pool.get(req, 'A'))
        self.assertNotEqual(spki(pool.get(req, 'A')), spki(pool.get(req, 'B')))
        self.assertIs(pool.get(req, 'A', 'shared'), pool.get(req, 'B', 'shared'))
        self.assertNotEqual(spki(pool.get(req, 'A', 'none')), spki(pool.get(req, 'A', 'none')))
        other = cc.KeyRequest(cc.KEY_TYPE_EC, curve=cc.CURVE_P384)
        self.assertIsInstance(pool.get(other, 'A').curve, ec.SECP384R1)
        with self.assertRaises(ValueError):
            pool.get(req, 'A', 'sometimes')


# --- Flows over TLS against a scripted fake server ------------------------------------

class Conn:
    """Server side of one fake-server connection, used by a test's script."""

    def __init__(self, sock: ssl.SSLSocket):
        self.sock = sock
        self.buf = b''
        self.got = []        # raw client messages, reassembled
        self.records = []    # per client message: sizes of the TLS records it came in
        self.closed = False

    def send(self, opcode, elements=(), sid=SID, split=None):
        for piece in cc._chunks(cc.encode_msg(opcode, sid, elements), split):
            self.sock.sendall(piece)

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv(self, expect=None) -> cc.Message:
        sizes = []
        while len(self.buf) < cc.HEADER_LEN or \
                len(self.buf) < cc.HEADER_LEN + int.from_bytes(self.buf[6:8], 'big'):
            data = self.sock.recv(65536)     # one TLS record per call
            if not data:
                raise EOFError('client closed')
            sizes.append(len(data))
            self.buf += data
        n = cc.HEADER_LEN + int.from_bytes(self.buf[6:8], 'big')
        raw, self.buf = self.buf[:n], self.buf[n:]
        self.got.append(raw)
        self.records.append(sizes)
        msg = cc.decode_msg(raw)
        if expect is not None and msg.opcode != expect:
            raise AssertionError('server expected %02x, got %s' % (expect, msg))
        return msg

    def close_notify(self):
        """TLS close_notify, then close (2.7.4)."""
        self.closed = True
        try:
            self.sock.unwrap().close()
        except (OSError, ValueError):
            self.sock.close()

    def hard_close(self):
        """TCP close without close_notify."""
        self.closed = True
        self.sock.close()

    def hello(self, elements=((cc.VERSION, b'\x03'),)):
        self.send(cc.AUTH_REQUEST, list(elements))

    def issue(self, spki: bytes, device: str) -> bytes:
        pub = serialization.load_der_public_key(spki)
        return der(make_cert(pub, F.ca_key, device, 'CAPF-0badc0de', serial=0x1A2B3C4D))

    def install(self, device: str, key_request, in_progress=False, tls_close=True):
        """The server side of 2.7.1; returns the PUBLIC_KEY value received."""
        self.hello()
        self.recv(cc.AUTH_RESPONSE)
        self.send(cc.KEY_GENERATE_REQUEST, key_request)
        if in_progress:
            m = self.recv(cc.REQUEST_IN_PROGRESS)
            assert m.elements == [], m
        spki = self.recv(cc.KEY_GENERATE_RESPONSE).get(cc.PUBLIC_KEY)
        self.send(cc.STORE_CERTIFICATE_REQUEST,
                  [(cc.CERTIFICATE_TYPE, b'\x01'),
                   (cc.CERTIFICATE, cc.build_certificate_element(self.issue(spki, device)))])
        self.recv(cc.STORE_CERTIFICATE_RESPONSE)
        self.send(cc.END_SESSION, [(cc.REASON, b'\x01')])
        if tls_close:
            self.close_notify()
        return spki


class FakeServer:
    """Accepts `connections` TLS connections on 127.0.0.1 and runs
    script(conn) for each in its own thread. Errors in scripts are kept in
    `errors`; check() re-raises the first."""

    def __init__(self, script, connections=1):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(F.server_cert_path, F.server_key_path)
        self.ctx, self.script, self.n = ctx, script, connections
        self.lsock = socket.socket()
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(16)
        self.lsock.settimeout(20)
        self.port = self.lsock.getsockname()[1]
        self.conns, self.errors, self.threads = [], [], []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        try:
            for _ in range(self.n):
                raw, _ = self.lsock.accept()
                t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
                self.threads.append(t)
                t.start()
        except OSError as e:
            self.errors.append(e)

    def _serve(self, raw):
        raw.settimeout(10)
        conn = None
        try:
            conn = Conn(self.ctx.wrap_socket(raw, server_side=True))
            self.conns.append(conn)
            self.script(conn)
        except BaseException as e:      # noqa: B902 - reported by check()
            self.errors.append(e)
        finally:
            if conn is not None and not conn.closed:
                # Wait for the client to close first so nothing we sent is lost to a RST.
                try:
                    while conn.sock.recv(65536):
                        pass
                except OSError:
                    pass
                conn.sock.close()
            raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.acceptor.join(20)
        for t in self.threads:
            t.join(20)
        self.lsock.close()

    def check(self):
        self.__exit__()
        if self.errors:
            raise self.errors[0]


def client(srv, version=2, **kw):
    kw.setdefault('timeout', 5)
    return cc.CapfClient('127.0.0.1', srv.port, version, **kw)


RSA2048_V2 = [(cc.KEY_SIZE, b'\x08\x00')]
EC384_V3 = [(cc.KEY_TYPE, b'\x01'), (cc.CURVE, b'\x01')]


class TestFlows(unittest.TestCase):

    def test_install_v2(self):
        with FakeServer(lambda s: s.install('CSF123', RSA2048_V2)) as srv:
            with client(srv) as c:
                res = c.install('CSF123')
            srv.check()
        s = srv.conns[0]
        self.assertTrue(res.installed, res)
        self.assertEqual((res.op, res.device, res.session_id), ('install', 'CSF123', SID))
        self.assertEqual((res.end_reason, res.ended_after, res.store_reason), (1, 'store', 1))
        self.assertEqual(res.closed, 'close_notify')
        self.assertEqual((res.server_version, res.auth_type), (3, None))
        self.assertEqual(res.key_request, cc.KeyRequest(cc.KEY_TYPE_RSA, key_size=2048))
        self.assertEqual(res.serial_hex, '1a2b3c4d')
        self.assertEqual(res.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         'CSF123')
        self.assertEqual(cc.public_key_der(res.certificate.public_key()), res.public_key_der)
        self.assertEqual(cc.public_key_der(res.private_key), res.public_key_der)
        self.assertEqual(res.private_key.key_size, 2048)
        # The client sent exactly the Jabber sequence of 2.7.1 (no REQUEST_IN_PROGRESS).
        self.assertEqual(s.got[0], hx('55 02 00 00 01 23 00 12 07 00 01 02 0d 00 07 43 53 46 31 32 33 00'
                                      ' 01 00 01 01'))
        self.assertEqual([cc.decode_msg(m).opcode for m in s.got],
                         [cc.AUTH_RESPONSE, cc.KEY_GENERATE_RESPONSE, cc.STORE_CERTIFICATE_RESPONSE])
        self.assertEqual(s.got[2], hx('55 0a 00 00 01 23 00 04 01 00 01 01'))
        self.assertEqual(len(s.got[1]), 305)
        # Four server messages, recorded raw, each read whole.
        self.assertEqual([m[1] for m in res.messages], [0x01, 0x03, 0x09, 0x0F])
        self.assertEqual(res.messages, c.received)
        self.assertEqual(res.messages[-1], hx('55 0f 00 00 01 23 00 04 01 00 01 01'))
        # Every client message went out as one TLS record.
        self.assertEqual(s.records, [[len(m)] for m in s.got])

    def test_install_v3_ec_in_progress(self):
        def script(s):
            s.install('SEP74A02FC0A675', EC384_V3, in_progress=True)
        with FakeServer(script) as srv:
            res = client(srv, 3).install('SEP74A02FC0A675', '123456', in_progress=True)
            srv.check()
        s = srv.conns[0]
        self.assertTrue(res.installed)
        self.assertEqual(res.key_request.describe(), 'EC P-384')
        self.assertIsInstance(res.private_key.curve, ec.SECP384R1)
        self.assertEqual(s.got[0], hx('55 02 00 00 01 23 00 25 01 00 01 01 07 00 01 03'
                                      ' 0b 00 07 31 32 33 34 35 36 00'
                                      ' 0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00'))
        self.assertEqual(s.got[1], hx('55 11 00 00 01 23 00 00'))

    def test_declines(self):
        for reason in (7, 9):
            def script(s, reason=reason):
                s.hello([(cc.VERSION, b'\x03'), (cc.AUTH_TYPE, b'\x00')])
                s.recv(cc.AUTH_RESPONSE)
                s.send(cc.END_SESSION, [(cc.REASON, bytes([reason]))])
                s.close_notify()
            with self.subTest(reason=reason), FakeServer(script) as srv:
                res = client(srv).install('CSF123')
                srv.check()
                self.assertTrue(res.declined)
                self.assertFalse(res.installed)
                self.assertEqual((res.end_reason, res.ended_after, res.auth_type), (reason, 'auth', 0))
                self.assertIsNone(res.cert_der)
                self.assertEqual(len(res.messages), 2)

    def test_end_after_public_key_and_key_override(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            s.recv(cc.KEY_GENERATE_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()
        with FakeServer(script) as srv:
            res = client(srv).install('CSF123', key_override=b'\x30\x00junk')
            srv.check()
        self.assertEqual((res.end_reason, res.ended_after), (7, 'key'))
        self.assertFalse(res.declined)
        self.assertEqual(cc.decode_msg(srv.conns[0].got[1]).elements, [(cc.PUBLIC_KEY, b'\x30\x00junk')])
        # A callable override gets the request and the real SPKI.
        seen = []
        with FakeServer(script) as srv:
            client(srv).install('CSF123', key_override=lambda req, spki: seen.append((req, spki)) or spki[:-1])
            srv.check()
        self.assertEqual(seen[0][0].key_size, 2048)
        self.assertEqual(cc.decode_msg(srv.conns[0].got[1]).get(cc.PUBLIC_KEY), seen[0][1][:-1])

    def test_key_failure(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            s.recv(cc.KEY_GENERATE_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()
        with FakeServer(script) as srv:
            res = client(srv).install('CSF123', key_failure=7)
            srv.check()
        self.assertEqual(srv.conns[0].got[1], hx('55 04 00 00 01 23 00 04 01 00 01 07'))
        self.assertEqual((res.end_reason, res.ended_after), (7, 'key'))

    def test_store_refused_by_client(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            spki = s.recv(cc.KEY_GENERATE_RESPONSE).get(cc.PUBLIC_KEY)
            s.send(cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'),
                   (cc.CERTIFICATE, cc.build_certificate_element(s.issue(spki, 'CSF123')))])
            assert s.recv(cc.STORE_CERTIFICATE_RESPONSE).get(cc.REASON) == b'\x07'
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()
        with FakeServer(script) as srv:
            res = client(srv).install('CSF123', store_reason=7)
            srv.check()
        self.assertEqual((res.end_reason, res.ended_after, res.store_reason), (7, 'store', 7))
        self.assertIsNotNone(res.cert_der)
        self.assertFalse(res.installed)

    def test_stop_at_store_request(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            spki = s.recv(cc.KEY_GENERATE_RESPONSE).get(cc.PUBLIC_KEY)
            s.send(cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'),
                   (cc.CERTIFICATE, cc.build_certificate_element(s.issue(spki, 'CSF123')))])
            # The "server timeout" of 5.3 S5.
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()
        with FakeServer(script) as srv:
            with client(srv) as c:
                res = c.install('CSF123', stop_at='store_request')
                self.assertEqual(res.stopped_at, 'store_request')
                self.assertIsNotNone(c.sock)
                self.assertIsNotNone(res.cert_der)
                self.assertIsNone(res.end_reason)
                self.assertEqual(c.read_msg().get(cc.REASON), b'\x07')
                self.assertEqual(c.expect_eof(), 'close_notify')
            srv.check()
        self.assertEqual(len(srv.conns[0].got), 2)     # no STORE_CERTIFICATE_RESPONSE

    def test_on_store_runs_before_the_acknowledgement(self):
        order = []

        def script(s):
            s.install('CSF123', RSA2048_V2)
            order.append('server done')

        def on_store(res):
            order.append(('store', len(srv.conns[0].got)))
        with FakeServer(script) as srv:
            client(srv).install('CSF123', on_store=on_store)
            srv.check()
        self.assertEqual(order, [('store', 2), 'server done'])

    def test_delete_and_troubleshoot(self):
        def delete(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.DELETE_CERTIFICATE_REQUEST)
            s.recv(cc.DELETE_CERTIFICATE_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x01')])
            s.close_notify()

        def fetch(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.FETCH_CERTIFICATE_REQUEST)
            s.recv(cc.FETCH_CERTIFICATE_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x00')])
            s.close_notify()
        with FakeServer(delete) as srv:
            res = client(srv, 3).delete('SEP74A02FC0A675')
            srv.check()
        self.assertEqual((res.op, res.end_reason, res.ended_after), ('delete', 1, 'delete'))
        self.assertEqual(srv.conns[0].got[1], hx('55 0e 00 00 01 23 00 04 01 00 01 01'))
        with FakeServer(delete) as srv:
            client(srv, 3).delete('SEP74A02FC0A675', delete_reason=7)
            srv.check()
        self.assertEqual(srv.conns[0].got[1], hx('55 0e 00 00 01 23 00 04 01 00 01 07'))
        with FakeServer(fetch) as srv:
            res = client(srv, 3).troubleshoot('SEP74A02FC0A675', F.lsc979)
            srv.check()
        self.assertEqual((res.op, res.end_reason, res.ended_after), ('troubleshoot', 0, 'fetch'))
        self.assertEqual(srv.conns[0].got[1][:24], hx('55 0c 00 00 01 23 03 df 01 00 01 01 04 03 d8'
                                                     ' 01 03 d5 00 01 30 82 03 cf'))
        with FakeServer(fetch) as srv:
            client(srv, 3).troubleshoot('SEP74A02FC0A675')
            srv.check()
        self.assertEqual(srv.conns[0].got[1], hx('55 0c 00 00 01 23 00 04 01 00 01 07'))
        # run() follows the server; install() refuses a delete request.
        with FakeServer(delete) as srv:
            self.assertEqual(client(srv, 3).run('SEP74A02FC0A675').op, 'delete')
            srv.check()
        with FakeServer(delete) as srv:
            with self.assertRaisesRegex(cc.ProtocolError, 'DELETE_CERTIFICATE_REQUEST'):
                client(srv, 3).install('SEP74A02FC0A675')
        # F2: an empty DELETE request to a version-2 client violates 1.1 rule 3.
        with FakeServer(delete) as srv:
            with self.assertRaisesRegex(cc.FramingError, 'version-2'):
                client(srv, 2).delete('CSF123')

    def test_run_rejects_unknown_options(self):
        with self.assertRaisesRegex(TypeError, 'in_progres'):
            cc.CapfClient('127.0.0.1', 1).run('CSF123', in_progres=True)

    def test_split_writes_are_separate_records(self):
        for split, expect in (('header', lambda n: [8, n - 8]), (1, lambda n: [1] * n),
                              (5, lambda n: [5] * (n // 5) + ([n % 5] if n % 5 else []))):
            with self.subTest(split=split), FakeServer(lambda s: s.install('CSF123', RSA2048_V2)) as srv:
                res = client(srv, split=split).install('CSF123')
                srv.check()
                self.assertTrue(res.installed)
                s = srv.conns[0]
                self.assertEqual(s.records, [expect(len(m)) for m in s.got])
        # send_raw with its own split.
        def script(s):
            s.hello()
            s.recv()
            s.hard_close()
        with FakeServer(script) as srv:
            with client(srv) as c:
                c.connect()
                c.send_raw(cc.encode_msg(cc.AUTH_RESPONSE, SID, cc.auth_response_elements(2, 'AB')),
                           split=3)
            srv.check()
        self.assertEqual(srv.conns[0].records, [[3, 3, 3, 3, 3, 3, 3, 1]])     # 22 bytes

    def test_session_id_override(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()
        with FakeServer(script) as srv:
            res = client(srv, session_id_override=0x124).install('CSF123')
            srv.check()
        self.assertEqual(cc.decode_msg(srv.conns[0].got[0]).session_id, 0x124)
        self.assertEqual(res.end_reason, 7)
        with FakeServer(script) as srv:
            with client(srv) as c:
                c.connect()
                c.send_msg(cc.AUTH_RESPONSE, cc.auth_response_elements(2, 'A'), session_id=7)
                self.assertEqual(c.read_msg().get(cc.REASON), b'\x07')
            srv.check()
        self.assertEqual(cc.decode_msg(srv.conns[0].got[0]).session_id, 7)

    def test_server_session_id_mismatch(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2, sid=SID + 1)
        with FakeServer(script) as srv:
            c = client(srv)
            with self.assertRaisesRegex(cc.ProtocolError, 'session id 00000124'):
                c.install('CSF123')
            self.assertIsNone(c.sock)
            self.assertEqual(len(c.received), 2)     # kept for inspection

    def test_framing_over_tls(self):
        """F1 seen through a real single recv(4096): header and body in two
        records, two messages in one record, a 4097-byte message."""
        def split_hello(s):
            s.send(cc.AUTH_REQUEST, [(cc.VERSION, b'\x03')], split='header')

        def two_in_one(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send_raw(cc.encode_msg(cc.KEY_GENERATE_REQUEST, SID, RSA2048_V2) +
                       cc.encode_msg(cc.END_SESSION, SID, [(cc.REASON, b'\x07')]))

        def too_big(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'),
                                                  (cc.CERTIFICATE, bytes(4097 - 15))])
        for script, pattern in ((split_hello, 'less than a header|split over'),
                                (two_in_one, 'several messages'), (too_big, 'larger than 4096')):
            with self.subTest(script.__name__), FakeServer(script) as srv:
                with self.assertRaisesRegex(cc.FramingError, pattern):
                    client(srv).install('CSF123')

    def test_bad_hello(self):
        for hello, pattern in (([(cc.VERSION, b'\x02')], 'VERSION 2'),
                               ([(cc.VERSION, b'\x03'), (0x15, b'')], 'not expected')):
            def script(s, hello=hello):
                s.hello(hello)
            with self.subTest(pattern), FakeServer(script) as srv:
                with self.assertRaisesRegex(cc.ProtocolError, pattern):
                    client(srv).connect()

        def not_hello(s):
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
        with FakeServer(not_hello) as srv:
            with self.assertRaisesRegex(cc.ProtocolError, 'expected 01 AUTH_REQUEST'):
                client(srv).connect()

    def test_wrong_public_key_in_lsc(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            s.recv(cc.KEY_GENERATE_RESPONSE)
            s.send(cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'),
                   (cc.CERTIFICATE, cc.build_certificate_element(F.lsc979))])
        with FakeServer(script) as srv:
            with self.assertRaisesRegex(cc.ProtocolError, 'public key'):
                client(srv).install('CSF123')

    def test_bad_certificate_element_from_server(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.KEY_GENERATE_REQUEST, RSA2048_V2)
            s.recv(cc.KEY_GENERATE_RESPONSE)
            s.send(cc.STORE_CERTIFICATE_REQUEST, [(cc.CERTIFICATE_TYPE, b'\x01'),
                   (cc.CERTIFICATE, cc.build_certificate_element(F.lsc979 + b'\x00'))])
        with FakeServer(script) as srv:
            with self.assertRaises(cc.DecodeError):
                client(srv).install('CSF123')

    def test_close_after_end_session(self):
        def no_close(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x09')])

        def extra(s):
            no_close(s)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x09')])

        def tcp_close(s):
            no_close(s)
            s.hard_close()
        with FakeServer(no_close) as srv:
            with self.assertRaisesRegex(cc.ProtocolError, 'did not close'):
                client(srv, timeout=1).install('CSF123')
        with FakeServer(extra) as srv:
            with self.assertRaisesRegex(cc.ProtocolError, 'after END_SESSION'):
                client(srv).install('CSF123')
        with FakeServer(tcp_close) as srv:
            self.assertEqual(client(srv).install('CSF123').closed, 'eof')
        with FakeServer(no_close) as srv:
            res = client(srv, timeout=1, expect_close=False).install('CSF123')
            self.assertEqual((res.end_reason, res.closed), (9, ''))

    def test_server_closes_early(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.close_notify()
        with FakeServer(script) as srv:
            with self.assertRaises(cc.ConnectionClosedError):
                client(srv).install('CSF123')

    def test_tls_options(self):
        def script(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x09')])
            s.close_notify()
        for tls, expect in (('1.2', 'TLSv1.2'), ('1.3', 'TLSv1.3')):
            with self.subTest(tls=tls), FakeServer(script) as srv:
                with client(srv, tls_version=tls, cafile=F.server_cert_path) as c:
                    c.connect()
                    self.assertEqual(c.sock.version(), expect)
                    self.assertEqual(c.install('CSF123').end_reason, 9)
                srv.check()
        with FakeServer(script) as srv:
            with self.assertRaises(ssl.SSLCertVerificationError):
                client(srv, cafile=F.other_cert_path).connect()
        with self.assertRaises(ValueError):
            cc.make_context(tls_version='1.1')


class TestCommandLine(unittest.TestCase):

    def run_main(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cc.main(list(args))
            except SystemExit as e:
                code = e.code
        return code, out.getvalue(), err.getvalue()

    def test_help(self):
        cp = subprocess.run([sys.executable, os.path.join(HERE, 'capf_client.py'), '--help'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for opt in ('--connect', '--device', '--version', '--password', '--in-progress', '--cafile',
                    '--out-cert', '--out-key', '--op', '--count', '--concurrency', 'Exit status'):
            self.assertIn(opt, cp.stdout)

    def test_install_writes_files(self):
        cert_path = os.path.join(F.tmp, 'lsc-{device}.pem')
        key_path = os.path.join(F.tmp, 'lsc-{device}.key')
        with FakeServer(lambda s: s.install('CSF123', RSA2048_V2)) as srv:
            code, out, err = self.run_main('--connect', '127.0.0.1:%d' % srv.port, '--device', 'CSF123',
                                           '--out-cert', cert_path, '--out-key', key_path)
            srv.check()
        self.assertEqual(code, 0, err)
        cert_file = cert_path.format(device='CSF123')
        self.assertEqual(out, 'CSF123: installed, serial 1a2b3c4d (RSA-2048), LSC written to %s, '
                              'key written to %s\n' % (cert_file, key_path.format(device='CSF123')))
        with open(cert_file, 'rb') as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path.format(device='CSF123'), 'rb') as f:
            key = serialization.load_pem_private_key(f.read(), None)
        self.assertEqual(cc.public_key_der(cert.public_key()), cc.public_key_der(key))
        self.assertEqual(os.stat(key_path.format(device='CSF123')).st_mode & 0o777, 0o600)

    def test_decline_and_errors(self):
        def decline(s):
            s.hello()
            s.recv(cc.AUTH_RESPONSE)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x07')])
            s.close_notify()

        def split_hello(s):
            s.send(cc.AUTH_REQUEST, [(cc.VERSION, b'\x03')], split='header')
        with FakeServer(decline) as srv:
            code, out, err = self.run_main('--connect', '127.0.0.1:%d' % srv.port,
                                           '--device', 'SEP74A02FC0A675')
        self.assertEqual((code, out), (2, 'SEP74A02FC0A675: declined, reason 7 '
                                          '(no operation pending / already issued)\n'))
        with FakeServer(split_hello) as srv:
            code, out, err = self.run_main('--connect', '127.0.0.1:%d' % srv.port, '--device', 'CSF1')
        self.assertEqual((code, out), (1, ''))
        self.assertIn('CSF1: framing error (F1)', err)
        port = cc_free_port()
        code, out, err = self.run_main('--connect', '127.0.0.1:%d' % port, '--device', 'CSF1')
        self.assertEqual(code, 1)
        self.assertIn('connection error', err)
        code, out, err = self.run_main('--connect', '127.0.0.1:1', '--device', 'A', '--count', '2',
                                       '--out-cert', 'x.pem')
        self.assertEqual(code, 2)       # argparse usage error
        self.assertIn('{device}', err)

    def test_count_and_concurrency(self):
        def script(s):
            s.hello()
            m = s.recv(cc.AUTH_RESPONSE)
            dev = m.get(cc.DEVICE_NAME)
            s.send(cc.END_SESSION, [(cc.REASON, b'\x09' if dev == b'SEP000000000002\x00' else b'\x07')])
            s.close_notify()
        with FakeServer(script, connections=3) as srv:
            code, out, err = self.run_main('--connect', '127.0.0.1:%d' % srv.port, '--device', 'SEP{:012X}',
                                           '--count', '3', '--concurrency', '3', '--start', '1',
                                           '--version', '3', '--op', 'delete')
            srv.check()
        self.assertEqual(code, 2, err)
        lines = sorted(out.splitlines()[:3])
        self.assertEqual(lines, ['SEP000000000001: declined, reason 7 (no operation pending / already issued)',
                                 'SEP000000000002: declined, reason 9 (unknown device)',
                                 'SEP000000000003: declined, reason 7 (no operation pending / already issued)'])
        self.assertRegex(out.splitlines()[3], r'^3 sessions in .*: 0 succeeded, 3 declined, 0 errors$')

    def test_parse_hostport(self):
        self.assertEqual(cc.parse_hostport('127.0.0.1:3805'), ('127.0.0.1', 3805))
        self.assertEqual(cc.parse_hostport('capf.example'), ('capf.example', 3804))
        self.assertEqual(cc.parse_hostport('[::1]:99'), ('::1', 99))
        self.assertEqual(cc.parse_hostport('[::1]'), ('::1', 3804))


def cc_free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


if __name__ == '__main__':
    unittest.main(verbosity=2)
