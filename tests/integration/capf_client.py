#!/usr/bin/env python3
"""capf_client: a CAPF test client for Stampede's CAPF server (library and CLI).

CAPF (Cisco Certificate Authority Proxy Function) is the TLS protocol on TCP 3804
that Cisco phones and Jabber use to get a locally significant certificate (LSC).
The wire format and the flows are described in docs/capf-protocol.md (shared
copy: /work/shared/docs/capf-protocol.md); section numbers below refer to it.
This file is our own implementation of that description; it contains no code
from Jabber4Linux or usecallmanagernz (6.6).

As a library (see test_capf_client.py and the integration tests):

    with CapfClient('127.0.0.1', port, version=2) as c:
        r = c.install('SEP74A02FC0A675')
        assert r.installed, r

CapfClient is deliberately strict about what the *server* sends, so that a
test passing with it means the server is conformant:

* F1 (1.1, 6.5): every server message is read with ONE recv(4096), like
  Jabber4Linux; the bytes must be exactly one complete message, at most 4096
  bytes, with at least one element for a version-2 client. Otherwise
  FramingError.
* 2.1: every server message carries the session id of the hello.
* 4.3.1: the server sends only opcodes 01 03 09 0b 0d 0f with their known tags,
  each tag once, fixed-size tags with their size (2.10.5).
* 2.6: the certificate element is parsed strictly.
* 2.7.4: after END_SESSION the server closes the connection.

For negative tests the client can also misbehave on request: any elements,
wrong session ids, arbitrary PUBLIC_KEY bytes, raw bytes, and messages split
over several TLS records (P14).

Python 3.11, standard library + `cryptography` (works with Debian 12's 38.0.4).
Run with --help for the command-line tool.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Callable, Iterable, NamedTuple, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

# --- Constants (section 2) ---------------------------------------------------

MAGIC = 0x55            # 2.1: protocol id, ASCII 'U'
HEADER_LEN = 8          # magic u8, opcode u8, session id u32 BE, body length u16 BE
MAX_READ = 4096         # 1.1: Jabber4Linux's single recv(4096) per server message
DEFAULT_PORT = 3804     # 1
DEFAULT_TIMEOUT = 8.0   # 1.2: Jabber4Linux's timeout on every socket operation

# 2.3 opcodes
AUTH_REQUEST = 0x01
AUTH_RESPONSE = 0x02
KEY_GENERATE_REQUEST = 0x03
KEY_GENERATE_RESPONSE = 0x04
ENCRYPT_RESPONSE = 0x05
ENCRYPT_REQUEST = 0x06
DECRYPT_REQUEST = 0x07
DECRYPT_RESPONSE = 0x08
STORE_CERTIFICATE_REQUEST = 0x09
STORE_CERTIFICATE_RESPONSE = 0x0A
FETCH_CERTIFICATE_REQUEST = 0x0B
FETCH_CERTIFICATE_RESPONSE = 0x0C
DELETE_CERTIFICATE_REQUEST = 0x0D
DELETE_CERTIFICATE_RESPONSE = 0x0E
END_SESSION = 0x0F
RETRY_LATER = 0x10
REQUEST_IN_PROGRESS = 0x11
STATUS_REQUEST = 0x12
STATUS_RESPONSE = 0x13
ABORT_REQUEST = 0x14
ABORT_RESPONSE = 0x15
SIGN_CERTIFICATE_REQUEST = 0x16
SIGN_CERTIFICATE_RESPONSE = 0x17

OPCODE_NAMES = {
    AUTH_REQUEST: 'AUTH_REQUEST', AUTH_RESPONSE: 'AUTH_RESPONSE',
    KEY_GENERATE_REQUEST: 'KEY_GENERATE_REQUEST', KEY_GENERATE_RESPONSE: 'KEY_GENERATE_RESPONSE',
    ENCRYPT_RESPONSE: 'ENCRYPT_RESPONSE', ENCRYPT_REQUEST: 'ENCRYPT_REQUEST',
    DECRYPT_REQUEST: 'DECRYPT_REQUEST', DECRYPT_RESPONSE: 'DECRYPT_RESPONSE',
    STORE_CERTIFICATE_REQUEST: 'STORE_CERTIFICATE_REQUEST',
    STORE_CERTIFICATE_RESPONSE: 'STORE_CERTIFICATE_RESPONSE',
    FETCH_CERTIFICATE_REQUEST: 'FETCH_CERTIFICATE_REQUEST',
    FETCH_CERTIFICATE_RESPONSE: 'FETCH_CERTIFICATE_RESPONSE',
    DELETE_CERTIFICATE_REQUEST: 'DELETE_CERTIFICATE_REQUEST',
    DELETE_CERTIFICATE_RESPONSE: 'DELETE_CERTIFICATE_RESPONSE',
    END_SESSION: 'END_SESSION', RETRY_LATER: 'RETRY_LATER',
    REQUEST_IN_PROGRESS: 'REQUEST_IN_PROGRESS', STATUS_REQUEST: 'STATUS_REQUEST',
    STATUS_RESPONSE: 'STATUS_RESPONSE', ABORT_REQUEST: 'ABORT_REQUEST',
    ABORT_RESPONSE: 'ABORT_RESPONSE', SIGN_CERTIFICATE_REQUEST: 'SIGN_CERTIFICATE_REQUEST',
    SIGN_CERTIFICATE_RESPONSE: 'SIGN_CERTIFICATE_RESPONSE',
}

# 2.4 element tags
REASON = 0x01
REASON_INFO = 0x02
CERTIFICATE_TYPE = 0x03
CERTIFICATE = 0x04
CERTIFICATE_ID = 0x05
SIGNED_DATA = 0x06
VERSION = 0x07
AUTH_TYPE = 0x08
PUBLIC_KEY = 0x09
KEY_SIZE = 0x0A
PASSWORD = 0x0B
RETRY_DELAY = 0x0C
DEVICE_NAME = 0x0D
SUDI_DATA = 0x10
KEY_TYPE = 0x11
CURVE = 0x12
DIGEST_TYPE = 0x13
SHA2_SIGNED_DATA = 0x14

TAG_NAMES = {
    REASON: 'REASON', REASON_INFO: 'REASON_INFO', CERTIFICATE_TYPE: 'CERTIFICATE_TYPE',
    CERTIFICATE: 'CERTIFICATE', CERTIFICATE_ID: 'CERTIFICATE_ID', SIGNED_DATA: 'SIGNED_DATA',
    VERSION: 'VERSION', AUTH_TYPE: 'AUTH_TYPE', PUBLIC_KEY: 'PUBLIC_KEY', KEY_SIZE: 'KEY_SIZE',
    PASSWORD: 'PASSWORD', RETRY_DELAY: 'RETRY_DELAY', DEVICE_NAME: 'DEVICE_NAME',
    SUDI_DATA: 'SUDI_DATA', KEY_TYPE: 'KEY_TYPE', CURVE: 'CURVE', DIGEST_TYPE: 'DIGEST_TYPE',
    SHA2_SIGNED_DATA: 'SHA2_SIGNED_DATA',
}

# 2.5.1 REASON values (the server should only send 01, 07, 09)
REASON_NO_ACTION = 0x00
REASON_UPDATE_CERTIFICATE = 0x01     # success / proceed
REASON_OK = REASON_UPDATE_CERTIFICATE
REASON_INVALID_ELEMENT = 0x07        # every refusal other than "unknown device"
REASON_UNKNOWN_DEVICE = 0x09

# 2.5.2 enumerations
AUTH_TYPE_NONE, AUTH_TYPE_PASSWORD, AUTH_TYPE_NULL_STRING, AUTH_TYPE_LSC, AUTH_TYPE_MIC = range(5)
CERT_TYPE_LSC = 0x01
CERT_TYPE_MIC = 0x02
KEY_TYPE_RSA = 0x00
KEY_TYPE_EC = 0x01
CURVE_P256 = 0x00
CURVE_P384 = 0x01
CURVE_P521 = 0x02
CURVES = {CURVE_P256: ('P-256', ec.SECP256R1), CURVE_P384: ('P-384', ec.SECP384R1),
          CURVE_P521: ('P-521', ec.SECP521R1)}
RSA_SIZES = (512, 1024, 2048, 3072, 4096)   # 5.1 (CUCM's choices)
SERVER_VERSION = 3                          # 2.5.2: the server's hello carries VERSION 03


# --- Errors ------------------------------------------------------------------

class CapfError(Exception):
    """Base class of the client's own errors."""


class ProtocolError(CapfError):
    """The server sent something the protocol does not allow (wrong opcode,
    wrong session id, missing/extra/duplicate element, bad certificate ...)."""


class DecodeError(ProtocolError):
    """Bytes that do not decode as a CAPF message or element (2.1, 2.2, 2.6)."""


class FramingError(CapfError):
    """F1 violated: one recv(4096) did not return exactly one complete message
    (split over records, several messages in one record, over 4096 bytes), or
    a version-2 client got a message without elements (1.1 rules 1-3).
    Deliberately not a ProtocolError subclass so tests can tell them apart."""


class ConnectionClosedError(CapfError):
    """The server closed the connection where a message was expected."""


# --- Encoding and decoding (2.1, 2.2) ---------------------------------------

class Message(NamedTuple):
    """A decoded message; unpacks as (opcode, session_id, elements)."""
    opcode: int
    session_id: int
    elements: list

    def values(self, tag: int) -> list:
        return [v for t, v in self.elements if t == tag]

    def get(self, tag: int) -> bytes | None:
        """The value of `tag`, None when absent; ProtocolError when repeated."""
        vals = self.values(tag)
        if len(vals) > 1:
            raise ProtocolError('%s: element %s appears %d times'
                                % (opcode_name(self.opcode), tag_name(tag), len(vals)))
        return vals[0] if vals else None

    def __str__(self) -> str:
        return describe_msg(self)


def opcode_name(op: int) -> str:
    return '%02x %s' % (op, OPCODE_NAMES.get(op, 'UNKNOWN'))


def tag_name(tag: int) -> str:
    return '%02x %s' % (tag, TAG_NAMES.get(tag, 'UNKNOWN'))


def describe_msg(msg: Message, limit: int = 24) -> str:
    """One readable line: opcode, session id, elements (long values cut)."""
    parts = []
    for tag, value in msg.elements:
        shown = value[:limit].hex(' ') + (' ...' if len(value) > limit else '')
        parts.append('%s[%d]=%s' % (TAG_NAMES.get(tag, '%02x' % tag), len(value), shown))
    return '%s sid=%08x {%s}' % (opcode_name(msg.opcode), msg.session_id, ', '.join(parts))


def encode_element(tag: int, value: bytes) -> bytes:
    if not 0 <= tag <= 0xFF:
        raise ValueError('tag %r out of range' % (tag,))
    value = bytes(value)
    if len(value) > 0xFFFF:
        raise ValueError('element %02x: %d bytes do not fit a u16 length' % (tag, len(value)))
    return struct.pack('>BH', tag, len(value)) + value


def encode_msg(opcode: int, session_id: int, elements: Iterable = ()) -> bytes:
    """Header + TLVs. `elements` is a sequence of (tag, value); order and
    duplicates are kept as given (negative tests need both)."""
    if not 0 <= opcode <= 0xFF:
        raise ValueError('opcode %r out of range' % (opcode,))
    if not 0 <= session_id <= 0xFFFFFFFF:
        raise ValueError('session id %r out of range' % (session_id,))
    body = b''.join(encode_element(t, v) for t, v in elements)
    if len(body) > 0xFFFF:
        raise ValueError('body of %d bytes does not fit a u16 length' % len(body))
    return struct.pack('>BBIH', MAGIC, opcode, session_id, len(body)) + body


def decode_elements(body: bytes) -> list:
    """Strict TLV walk (2.10.4): a truncated element header or a length past
    the end rejects the whole body."""
    out, i = [], 0
    while i < len(body):
        if len(body) - i < 3:
            raise DecodeError('truncated element header at body offset %d (%d bytes left)'
                              % (i, len(body) - i))
        tag, n = body[i], int.from_bytes(body[i + 1:i + 3], 'big')
        i += 3
        if n > len(body) - i:
            raise DecodeError('element %02x at body offset %d: length %d past the end '
                              '(%d bytes left)' % (tag, i - 3, n, len(body) - i))
        out.append((tag, bytes(body[i:i + n])))
        i += n
    return out


def decode_msg(data: bytes) -> Message:
    """Strict decoder of exactly one message: the header's body length must
    equal the bytes that follow it (2.1: the length is authoritative)."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DecodeError('short header: %d of %d bytes' % (len(data), HEADER_LEN))
    magic, opcode, session_id, blen = struct.unpack_from('>BBIH', data)
    if magic != MAGIC:
        raise DecodeError('bad magic %02x (expected %02x)' % (magic, MAGIC))
    if blen != len(data) - HEADER_LEN:
        raise DecodeError('body length %d in the header, %d bytes follow'
                          % (blen, len(data) - HEADER_LEN))
    return Message(opcode, session_id, decode_elements(data[HEADER_LEN:]))


def check_single_message(data: bytes, version: int = 2) -> Message:
    """F1/F2 (1.1, 6.5): `data` is what ONE recv(4096) returned; it must be
    exactly one complete message of at most 4096 bytes, and for a version-2
    client hold at least one element. Raises FramingError, or DecodeError
    for bytes that are framed right but malformed."""
    data = bytes(data)
    if len(data) > MAX_READ:
        raise FramingError('%d bytes: a message must be at most %d bytes' % (len(data), MAX_READ))
    if len(data) < HEADER_LEN:
        raise FramingError('one read returned %d bytes, less than a header '
                           '(header split over TLS records?)' % len(data))
    blen = int.from_bytes(data[6:8], 'big')
    got = len(data) - HEADER_LEN
    if blen > got:
        raise FramingError('header announces %d body bytes, the read returned %d: message '
                           'split over TLS records or larger than %d bytes'
                           % (blen, got, MAX_READ))
    if blen < got:
        raise FramingError('%d bytes after a %d-byte message in the same read: several '
                           'messages in one TLS record' % (got - blen, HEADER_LEN + blen))
    msg = decode_msg(data)
    if version <= 2 and not msg.elements:
        raise FramingError('%s without elements sent to a version-2 client (1.1 rule 3)'
                           % opcode_name(msg.opcode))
    return msg


# --- Server message rules (2.4, 2.10.5, 4.3.1) -------------------------------

# Known tags with a fixed value length (2.10.5).
FIXED_LENGTHS = {REASON: 1, VERSION: 1, AUTH_TYPE: 1, CERTIFICATE_TYPE: 1,
                 KEY_TYPE: 1, CURVE: 1, KEY_SIZE: 2}

# What the server may send (4.3.1): opcode -> (required tags, optional tags).
# KEY_GENERATE_REQUEST's combinations are checked by parse_key_request.
SERVER_MESSAGES = {
    AUTH_REQUEST: ({VERSION}, {AUTH_TYPE}),
    KEY_GENERATE_REQUEST: (set(), {KEY_SIZE, KEY_TYPE, CURVE}),
    STORE_CERTIFICATE_REQUEST: ({CERTIFICATE_TYPE, CERTIFICATE}, set()),
    FETCH_CERTIFICATE_REQUEST: (set(), {CERTIFICATE_TYPE}),
    DELETE_CERTIFICATE_REQUEST: (set(), {CERTIFICATE_TYPE}),
    END_SESSION: ({REASON}, set()),
}


def check_server_message(msg: Message) -> None:
    """ProtocolError unless `msg` is a server opcode carrying only its known
    tags, each once, fixed-size ones with the right size."""
    if msg.opcode not in SERVER_MESSAGES:
        raise ProtocolError('opcode %s is not one the server may send' % opcode_name(msg.opcode))
    required, optional = SERVER_MESSAGES[msg.opcode]
    seen = set()
    for tag, value in msg.elements:
        where = '%s: element %s' % (opcode_name(msg.opcode), tag_name(tag))
        if tag in seen:
            raise ProtocolError(where + ' repeated')
        seen.add(tag)
        if tag not in required | optional:
            raise ProtocolError(where + ' not expected in this message')
        if tag in FIXED_LENGTHS and len(value) != FIXED_LENGTHS[tag]:
            raise ProtocolError('%s has length %d, expected %d'
                                % (where, len(value), FIXED_LENGTHS[tag]))
    missing = required - seen
    if missing:
        raise ProtocolError('%s: missing %s' % (opcode_name(msg.opcode),
                                                ', '.join(tag_name(t) for t in sorted(missing))))


# --- Key requests and keys (2.7.1, section 3) --------------------------------

@dataclasses.dataclass(frozen=True)
class KeyRequest:
    """What KEY_GENERATE_REQUEST asked for."""
    key_type: int                  # KEY_TYPE_RSA or KEY_TYPE_EC
    key_size: int | None = None    # RSA bits
    curve: int | None = None       # CURVE_* for EC

    @property
    def spec(self) -> tuple:
        return ('RSA', self.key_size) if self.key_type == KEY_TYPE_RSA else ('EC', self.curve)

    def describe(self) -> str:
        if self.key_type == KEY_TYPE_RSA:
            return 'RSA-%d' % self.key_size
        return 'EC %s' % CURVES[self.curve][0]


def parse_key_request(msg: Message, version: int) -> KeyRequest:
    """2.7.1 "Version differences": a version-2 client gets KEY_SIZE only
    (RSA, as CUCM sent it to Jabber); version 3 gets KEY_TYPE always, plus
    KEY_SIZE for RSA or CURVE for EC (never both)."""
    check_server_message(msg)
    tags = {t for t, _ in msg.elements}
    size = msg.get(KEY_SIZE)
    key_type = msg.get(KEY_TYPE)
    curve = msg.get(CURVE)
    if version <= 2:
        if tags != {KEY_SIZE}:
            raise ProtocolError('KEY_GENERATE_REQUEST to a version-2 client must carry '
                                'KEY_SIZE only, got %s' % describe_msg(msg))
        kt = KEY_TYPE_RSA
    else:
        if key_type is None:
            raise ProtocolError('KEY_GENERATE_REQUEST to a version-3 client without KEY_TYPE')
        kt = key_type[0]
    if kt == KEY_TYPE_RSA:
        if size is None or curve is not None:
            raise ProtocolError('RSA key request needs KEY_SIZE and no CURVE: %s' % describe_msg(msg))
        bits = int.from_bytes(size, 'big')
        if bits not in RSA_SIZES:
            raise ProtocolError('RSA key size %d not one of %s' % (bits, RSA_SIZES))
        return KeyRequest(KEY_TYPE_RSA, key_size=bits)
    if kt == KEY_TYPE_EC:
        if curve is None or size is not None:
            raise ProtocolError('EC key request needs CURVE and no KEY_SIZE: %s' % describe_msg(msg))
        if curve[0] not in CURVES:
            raise ProtocolError('unknown CURVE %02x' % curve[0])
        return KeyRequest(KEY_TYPE_EC, curve=curve[0])
    raise ProtocolError('unknown KEY_TYPE %02x' % kt)


def _probable_prime(n: int) -> bool:
    """Miller-Rabin, for the RSA-512 fallback below."""
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(40):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _rsa_key_by_hand(bits: int) -> rsa.RSAPrivateKey:
    """Newer `cryptography` releases refuse to generate RSA keys under 1024
    bits but still load them; CUCM offers 512 (5.1), so build one here."""
    def prime(nbits: int) -> int:
        while True:
            c = secrets.randbits(nbits) | (3 << (nbits - 2)) | 1   # top two bits: n has `bits` bits
            if (c - 1) % 65537 and _probable_prime(c):
                return c
    while True:
        p, q = prime(bits // 2), prime(bits - bits // 2)
        if p != q:
            break
    d = pow(65537, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                 rsa.rsa_crt_iqmp(p, q),
                                 rsa.RSAPublicNumbers(65537, p * q)).private_key()


def generate_key(req: KeyRequest):
    """A fresh private key of the requested type (RSA e=65537, or EC)."""
    if req.key_type == KEY_TYPE_EC:
        return ec.generate_private_key(CURVES[req.curve][1]())
    try:
        return rsa.generate_private_key(public_exponent=65537, key_size=req.key_size)
    except ValueError:
        if req.key_size < 1024:
            return _rsa_key_by_hand(req.key_size)
        raise


def public_key_der(key) -> bytes:
    """Section 3.1: PUBLIC_KEY is a bare DER SubjectPublicKeyInfo, not a CSR."""
    pub = key.public_key() if hasattr(key, 'public_key') else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class KeyPool:
    """Per-process cache of generated keys: RSA generation is the slow part
    of a session. Policies:
      'device'  one key per (key spec, device name): repeated sessions of a
                device are fast, and two devices never share a key (the server
                rejects a key bound to another device's LSC, 3.2.4);
      'shared'  one key per key spec for everybody (fastest; also the way to
                provoke 3.2.4 on purpose);
      'none'    a fresh key every time."""
    POLICIES = ('device', 'shared', 'none')

    def __init__(self) -> None:
        self._keys: dict = {}
        self._lock = threading.Lock()

    def get(self, req: KeyRequest, device: str = '', policy: str = 'device'):
        if policy not in self.POLICIES:
            raise ValueError('key cache policy %r not one of %s' % (policy, self.POLICIES))
        if policy == 'none':
            return generate_key(req)
        k = (req.spec, device if policy == 'device' else '')
        with self._lock:
            key = self._keys.get(k)
        if key is None:
            key = generate_key(req)      # outside the lock: threads generate in parallel
            with self._lock:
                key = self._keys.setdefault(k, key)
        return key


KEY_POOL = KeyPool()


# --- The certificate element (2.6) ------------------------------------------

def build_certificate_element(der: bytes, cert_type: int = CERT_TYPE_LSC) -> bytes:
    """Value of tag 04: inner tag 01, u16 length, u16 certificate type
    (00 01 = LSC in every sample), DER."""
    inner = struct.pack('>H', cert_type) + bytes(der)
    return struct.pack('>BH', 0x01, len(inner)) + inner


def _der_single_length(der: bytes) -> int:
    """Total length of the first DER TLV of `der` (a SEQUENCE for a certificate)."""
    if len(der) < 2 or der[0] != 0x30:
        raise DecodeError('certificate DER does not start with a SEQUENCE')
    first = der[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4 or len(der) < 2 + n:
        raise DecodeError('certificate DER has a bad length field')
    return 2 + n + int.from_bytes(der[2:2 + n], 'big')


def parse_certificate_element(value: bytes) -> tuple:
    """Strict parse of a tag-04 value (2.6 parse rule): inner tag 01, inner
    length == outer length - 3, at least the 2-byte type, type LSC or MIC,
    then exactly one DER certificate with nothing after it.
    Returns (cert_type, der)."""
    value = bytes(value)
    if len(value) < 3:
        raise DecodeError('certificate element of %d bytes has no inner header' % len(value))
    if value[0] != 0x01:
        raise DecodeError('certificate element: inner tag %02x, expected 01' % value[0])
    inner_len = int.from_bytes(value[1:3], 'big')
    if inner_len != len(value) - 3:
        raise DecodeError('certificate element: inner length %d, outer leaves %d'
                          % (inner_len, len(value) - 3))
    if inner_len < 2:
        raise DecodeError('certificate element: inner length %d has no certificate type'
                          % inner_len)
    cert_type = int.from_bytes(value[3:5], 'big')
    if cert_type not in (CERT_TYPE_LSC, CERT_TYPE_MIC):
        raise DecodeError('certificate element: type %04x is neither LSC nor MIC' % cert_type)
    der = value[5:]
    total = _der_single_length(der)
    if total != len(der):
        raise DecodeError('certificate DER: %d bytes in its outer SEQUENCE, %d present'
                          % (total, len(der)))
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise DecodeError('certificate DER does not parse: %s' % e) from None
    return cert_type, der


# --- Client message builders ---------------------------------------------------

def _nul_string(s: str | bytes) -> bytes:
    """2.2: strings carry a terminating 00 counted in the length."""
    return (s.encode('ascii') if isinstance(s, str) else bytes(s)) + b'\x00'


def reason_elements(reason: int) -> list:
    return [(REASON, bytes([reason]))]


def auth_response_elements(version: int, device: str | bytes, password: str | None = None,
                           reason: int = REASON_UPDATE_CERTIFICATE,
                           order: str | None = None) -> list:
    """AUTH_RESPONSE elements (2.7.1, 2.8). Order (2.2): 'jabber' = VERSION,
    DEVICE_NAME, REASON (then PASSWORD); 'phone' = REASON, VERSION, PASSWORD,
    DEVICE_NAME as usecallmanagernz's phone emulator. Default: jabber for
    version 2, phone otherwise. password='' sends the empty PASSWORD some
    clients send in null-string mode (0b 00 01 00); None sends none."""
    order = order or ('jabber' if version <= 2 else 'phone')
    ver = (VERSION, bytes([version]))
    name = (DEVICE_NAME, _nul_string(device))
    why = (REASON, bytes([reason]))
    pw = [(PASSWORD, _nul_string(password))] if password is not None else []
    if order == 'jabber':
        return [ver, name, why] + pw
    if order == 'phone':
        return [why, ver] + pw + [name]
    raise ValueError('order must be jabber or phone, not %r' % (order,))


def fetch_response_elements(cert_der: bytes | None, cert_type: int = CERT_TYPE_LSC) -> list:
    """FETCH_CERTIFICATE_RESPONSE (2.7.5): REASON 01 + CERTIFICATE, or REASON 07."""
    if cert_der is None:
        return reason_elements(REASON_INVALID_ELEMENT)
    return reason_elements(REASON_OK) + [(CERTIFICATE, build_certificate_element(cert_der, cert_type))]


# --- Results -------------------------------------------------------------------

@dataclasses.dataclass
class CapfResult:
    """Outcome of one session.

    ended_after says which client message END_SESSION answered: 'auth' (a
    decline: no operation started), 'key' (public key refused or key failure
    reported), 'store' (normal end of an install), 'delete', 'fetch'; ''
    when the session was stopped early on purpose (stopped_at)."""
    op: str
    device: str
    session_id: int
    end_reason: int | None = None
    ended_after: str = ''
    stopped_at: str = ''
    key_request: KeyRequest | None = None
    private_key: object = None
    public_key_der: bytes | None = None     # the PUBLIC_KEY value sent
    cert_der: bytes | None = None
    cert_type: int | None = None            # inner type of the certificate element
    store_reason: int | None = None         # REASON we sent in STORE_CERTIFICATE_RESPONSE
    messages: list = dataclasses.field(default_factory=list)   # raw server messages
    closed: str = ''                        # 'close_notify', 'eof', 'reset' or '' (not checked)
    server_version: int | None = None
    auth_type: int | None = None

    @property
    def declined(self) -> bool:
        return self.ended_after == 'auth'

    @property
    def installed(self) -> bool:
        return (self.op == 'install' and self.ended_after == 'store' and self.cert_der is not None
                and self.store_reason == REASON_OK and self.end_reason == REASON_OK)

    @property
    def certificate(self) -> x509.Certificate | None:
        return x509.load_der_x509_certificate(self.cert_der) if self.cert_der else None

    @property
    def serial_hex(self) -> str:
        c = self.certificate
        return format(c.serial_number, 'x') if c else ''


# --- The client ----------------------------------------------------------------

def make_context(cafile: str | None = None, check_hostname: bool = False,
                 tls_version: str | None = None) -> ssl.SSLContext:
    """TLS 1.2-1.3 client context. Without `cafile` the server certificate is
    not checked (1: phones pin the CAPF certificate out of band, Jabber4Linux
    checks nothing); with it, the chain is verified, the name only when
    check_hostname is set (a CAPF certificate names CAPF-xxxxxxxx, not a host)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    versions = {'1.2': ssl.TLSVersion.TLSv1_2, '1.3': ssl.TLSVersion.TLSv1_3}
    if tls_version is not None and tls_version not in versions:
        raise ValueError('tls_version must be 1.2 or 1.3, not %r' % (tls_version,))
    # Some Python builds (Debian's 3.11.2) set this by default; it makes a TCP
    # close without TLS close_notify look like a clean close (2.7.4 check).
    ctx.options &= ~getattr(ssl, 'OP_IGNORE_UNEXPECTED_EOF', 0)
    ctx.minimum_version = versions.get(tls_version, ssl.TLSVersion.TLSv1_2)
    ctx.maximum_version = versions.get(tls_version, ssl.TLSVersion.TLSv1_3)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = check_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ragged_eof(e: ssl.SSLError) -> bool:
    """TCP closed without close_notify: SSLEOFError, or on Python 3.11.2 a
    plain SSLError with OpenSSL 3's UNEXPECTED_EOF_WHILE_READING."""
    return isinstance(e, ssl.SSLEOFError) or getattr(e, 'reason', '') == 'UNEXPECTED_EOF_WHILE_READING'


def _chunks(data: bytes, split) -> list:
    """How one message is cut into writes; each sendall is one TLS record.
    None: one write; 'header': header and body apart; n: n-byte pieces."""
    if not split or split == 'none':
        return [data]
    if split == 'header':
        return [data[:HEADER_LEN], data[HEADER_LEN:]] if len(data) > HEADER_LEN else [data]
    n = int(split)
    if n < 1:
        raise ValueError('split size must be at least 1')
    return [data[i:i + n] for i in range(0, len(data), n)]


_OP_BY_REQUEST = {KEY_GENERATE_REQUEST: 'install', FETCH_CERTIFICATE_REQUEST: 'troubleshoot',
                  DELETE_CERTIFICATE_REQUEST: 'delete'}
_REQUEST_BY_OP = {op: code for code, op in _OP_BY_REQUEST.items()}

_INSTALL_OPTIONS = ('in_progress', 'store_reason', 'key', 'key_override', 'key_failure',
                    'keygen_delay', 'stop_at', 'on_store')

KeyOverride = Union[bytes, Callable[[KeyRequest, bytes], bytes], None]


class CapfClient:
    """One CAPF client connection (one session per connection; the flow
    methods connect when needed and close after END_SESSION).

    version       VERSION the client announces; 2 behaves like Jabber (KEY_SIZE
                  only, non-empty messages required), 3 or more like a phone.
    timeout       seconds for every socket operation (1.2: 8 s like Jabber4Linux).
    cafile, check_hostname, tls_version, context: TLS (see make_context).
    split         default cut of every client message into TLS records
                  (None, 'header' or a record size such as 1), for P14.
    session_id_override: session id written in client messages instead of
                  the hello's (M2); also settable per send_msg call.
    key_cache     KeyPool policy: 'device', 'shared' or 'none'.
    strict        check every server message against 4.3.1 (check_server_message).
    expect_close  after END_SESSION require the server to close (2.7.4).
    log           callable(str) receiving a trace of every message.

    Attributes: session_id (from the hello), hello, server_version, auth_type,
    received (raw server messages of this connection, in order, including
    ones that failed a check), sent (raw client messages)."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, version: int = 2, *,
                 timeout: float = DEFAULT_TIMEOUT, cafile: str | None = None,
                 check_hostname: bool = False, tls_version: str | None = None,
                 context: ssl.SSLContext | None = None, split=None,
                 session_id_override: int | None = None, key_cache: str = 'device',
                 key_pool: KeyPool | None = None, strict: bool = True,
                 expect_close: bool = True, log: Callable[[str], None] | None = None) -> None:
        if not 0 <= version <= 0xFF:
            raise ValueError('version %r out of range' % (version,))
        if key_cache not in KeyPool.POLICIES:
            raise ValueError('key_cache must be one of %s' % (KeyPool.POLICIES,))
        self.host, self.port, self.version = host, port, version
        self.timeout = timeout
        self.check_hostname = check_hostname
        self.context = context or make_context(cafile, check_hostname, tls_version)
        self.split = split
        self.session_id_override = session_id_override
        self.key_cache = key_cache
        self.keys = key_pool or KEY_POOL
        self.strict = strict
        self.expect_close = expect_close
        self.log = log
        self.sock: ssl.SSLSocket | None = None
        self.session_id: int | None = None
        self.hello: Message | None = None
        self.server_version: int | None = None
        self.auth_type: int | None = None
        self.received: list = []
        self.sent: list = []

    # -- connection ------------------------------------------------------------

    def __enter__(self) -> 'CapfClient':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> Message:
        """TCP + TLS, then read the hello (1: the server speaks first) and
        take its session id."""
        self.close()
        self.received, self.sent = [], []
        self.session_id = self.hello = self.server_version = self.auth_type = None
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            # Many tiny records (split=1) must not wait for Nagle + delayed ACK.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # suppress_ragged_eofs=False tells a TLS close_notify apart from a bare TCP close.
            self.sock = self.context.wrap_socket(
                raw, server_hostname=self.host if self.check_hostname else None,
                suppress_ragged_eofs=False)
        except BaseException:
            raw.close()
            raise
        hello = self.read_msg()
        if hello.opcode != AUTH_REQUEST:
            raise ProtocolError('first server message is %s, expected 01 AUTH_REQUEST'
                                % opcode_name(hello.opcode))
        self.session_id, self.hello = hello.session_id, hello
        version, auth_type = hello.get(VERSION), hello.get(AUTH_TYPE)
        self.server_version = version[0] if version else None
        self.auth_type = auth_type[0] if auth_type else None
        if self.strict and self.server_version != SERVER_VERSION:
            raise ProtocolError('hello carries VERSION %r, expected %d'
                                % (self.server_version, SERVER_VERSION))
        return hello

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _trace(self, direction: str, data: bytes) -> None:
        if self.log:
            try:
                text = describe_msg(decode_msg(data))
            except CapfError:
                text = 'raw %d bytes: %s' % (len(data), data[:48].hex(' '))
            self.log('%s %s' % (direction, text))

    def _need_sock(self) -> ssl.SSLSocket:
        if self.sock is None:
            raise CapfError('not connected')
        return self.sock

    # -- low level -------------------------------------------------------------

    def send_raw(self, data: bytes, split=None) -> None:
        """Write bytes as they are; `split` (or the client's default) cuts
        them into several TLS records, one per sendall."""
        sock = self._need_sock()
        data = bytes(data)
        self.sent.append(data)
        self._trace('->', data)
        for piece in _chunks(data, split if split is not None else self.split):
            sock.sendall(piece)

    def send_msg(self, opcode: int, elements: Iterable = (), session_id: int | None = None,
                 split=None) -> bytes:
        """Encode and send one message with the session id of the hello
        (or session_id_override, or `session_id`). Returns the bytes sent."""
        if session_id is None:
            session_id = self.session_id_override
        if session_id is None:
            session_id = self.session_id if self.session_id is not None else 0
        data = encode_msg(opcode, session_id, elements)
        self.send_raw(data, split)
        return data

    def read_msg(self, strict: bool | None = None) -> Message:
        """Read one server message with ONE recv(4096) (F1) and check it:
        framing (FramingError), decoding, session id and, when strict, the
        tags allowed for its opcode (ProtocolError)."""
        sock = self._need_sock()
        try:
            data = sock.recv(MAX_READ)
        except ssl.SSLError as e:
            if not _ragged_eof(e):
                raise
            data = b''
        if not data:
            raise ConnectionClosedError('server closed the connection where a message was expected')
        self.received.append(data)
        self._trace('<-', data)
        msg = check_single_message(data, self.version)
        if self.session_id is not None and msg.session_id != self.session_id:
            raise ProtocolError('%s carries session id %08x, the hello had %08x'
                                % (opcode_name(msg.opcode), msg.session_id, self.session_id))
        if self.strict if strict is None else strict:
            check_server_message(msg)
        return msg

    def expect_eof(self) -> str:
        """Wait (up to the timeout) for the server to close; returns
        'close_notify' (TLS close), 'eof' (TCP close without close_notify) or
        'reset'. Data instead of a close, or no close in time: ProtocolError."""
        sock = self._need_sock()
        try:
            data = sock.recv(MAX_READ)
        except ssl.SSLError as e:
            if _ragged_eof(e):
                return 'eof'
            raise
        except ConnectionResetError:
            return 'reset'
        except socket.timeout:
            raise ProtocolError('server did not close the connection within %.1f s after '
                                'END_SESSION' % self.timeout) from None
        if data:
            self.received.append(data)
            self._trace('<-', data)
            raise ProtocolError('%d bytes after END_SESSION' % len(data))
        return 'close_notify'

    # -- flows -----------------------------------------------------------------

    def auth(self, device: str | bytes, password: str | None = None,
             extra_elements: Sequence = (), reason: int = REASON_UPDATE_CERTIFICATE,
             order: str | None = None) -> bytes:
        """Send AUTH_RESPONSE (connecting first if needed); extra_elements are
        appended as given (unknown tags P16, duplicates M10, ...)."""
        if self.sock is None:
            self.connect()
        elements = auth_response_elements(self.version, device, password, reason, order)
        return self.send_msg(AUTH_RESPONSE, elements + list(extra_elements))

    def install(self, device: str, password: str | None = None, in_progress: bool = False,
                store_reason: int = REASON_OK, key=None, *, key_override: KeyOverride = None,
                key_failure: int | None = None, keygen_delay: float = 0.0,
                extra_elements: Sequence = (), reason: int = REASON_UPDATE_CERTIFICATE,
                stop_at: str | None = None,
                on_store: Callable[[CapfResult], None] | None = None) -> CapfResult:
        """The install of 2.7.1. A decline (END_SESSION instead of the key
        request) is a result, not an error. Options for negative tests:
        key           private key to use instead of one of the requested type;
        key_override  bytes, or f(KeyRequest, spki) -> bytes, sent as PUBLIC_KEY;
        key_failure   send KEY_GENERATE_RESPONSE with this REASON and no key (N9);
        keygen_delay  seconds to wait before answering the key request;
        stop_at       'key_request' or 'store_request': stop there and return
                      with the connection still open (R6, R7);
        on_store      called with the result before STORE_CERTIFICATE_RESPONSE
                      (Jabber4Linux writes key and certificate at that point)."""
        return self._session('install', device, password, extra_elements, reason,
                             dict(in_progress=in_progress, store_reason=store_reason, key=key,
                                  key_override=key_override, key_failure=key_failure,
                                  keygen_delay=keygen_delay, stop_at=stop_at,
                                  on_store=on_store))

    def delete(self, device: str, password: str | None = None, delete_reason: int = REASON_OK,
               *, extra_elements: Sequence = (),
               reason: int = REASON_UPDATE_CERTIFICATE) -> CapfResult:
        """2.7.5 Delete: expect DELETE_CERTIFICATE_REQUEST, answer with
        DELETE_CERTIFICATE_RESPONSE REASON `delete_reason`, read END_SESSION."""
        return self._session('delete', device, password, extra_elements, reason,
                             dict(delete_reason=delete_reason))

    def troubleshoot(self, device: str, cert_der: bytes | None = None,
                     password: str | None = None, cert_type: int = CERT_TYPE_LSC, *,
                     extra_elements: Sequence = (),
                     reason: int = REASON_UPDATE_CERTIFICATE) -> CapfResult:
        """2.7.5 Troubleshoot: expect FETCH_CERTIFICATE_REQUEST, answer REASON
        01 + CERTIFICATE(cert_der), or REASON 07 when cert_der is None."""
        return self._session('troubleshoot', device, password, extra_elements, reason,
                             dict(cert_der=cert_der, cert_type=cert_type))

    def run(self, device: str, password: str | None = None, *, extra_elements: Sequence = (),
            reason: int = REASON_UPDATE_CERTIFICATE, **options) -> CapfResult:
        """Like a phone: do whatever the server asks for after AUTH_RESPONSE
        (install, delete or troubleshoot). `options` are those of the three
        flow methods; each flow takes the ones it knows."""
        unknown = set(options) - set(_INSTALL_OPTIONS) - {'delete_reason', 'cert_der', 'cert_type'}
        if unknown:
            raise TypeError('run() got unknown options: %s' % ', '.join(sorted(unknown)))
        return self._session(None, device, password, extra_elements, reason, options)

    def _session(self, expect: str | None, device, password, extra_elements, reason,
                 options: dict) -> CapfResult:
        try:
            if self.sock is None:
                self.connect()
            res = CapfResult(op=expect or '', device=str(device), session_id=self.session_id,
                             server_version=self.server_version, auth_type=self.auth_type)
            self.auth(device, password, extra_elements, reason)
            msg = self.read_msg()
            if msg.opcode == END_SESSION:
                return self._finish(res, msg, 'auth')
            op = _OP_BY_REQUEST.get(msg.opcode)
            if op is None or (expect is not None and op != expect):
                wanted = (opcode_name(_REQUEST_BY_OP[expect]) if expect
                          else 'a key, fetch or delete request')
                raise ProtocolError('after AUTH_RESPONSE got %s, expected %s or 0f END_SESSION'
                                    % (opcode_name(msg.opcode), wanted))
            res.op = op
            if op == 'install':
                return self._install_steps(
                    res, msg, **{k: options[k] for k in _INSTALL_OPTIONS if k in options})
            if op == 'delete':
                self._check_empty_request(msg)
                self.send_msg(DELETE_CERTIFICATE_RESPONSE,
                              reason_elements(options.get('delete_reason', REASON_OK)))
                return self._finish(res, self.read_msg(), 'delete')
            self._check_empty_request(msg)
            self.send_msg(FETCH_CERTIFICATE_RESPONSE,
                          fetch_response_elements(options.get('cert_der'),
                                                  options.get('cert_type', CERT_TYPE_LSC)))
            return self._finish(res, self.read_msg(), 'fetch')
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _check_empty_request(msg: Message) -> None:
        # 2.7.5: FETCH/DELETE carry no elements (usecallmanagernz) or, at most,
        # a CERTIFICATE_TYPE (how CUCM picks LSC or MIC is unknown).
        ctype = msg.get(CERTIFICATE_TYPE)
        if ctype is not None and ctype[0] not in (CERT_TYPE_LSC, CERT_TYPE_MIC):
            raise ProtocolError('%s: CERTIFICATE_TYPE %02x' % (opcode_name(msg.opcode), ctype[0]))

    def _install_steps(self, res: CapfResult, msg: Message, in_progress=False,
                       store_reason=REASON_OK, key=None, key_override: KeyOverride = None,
                       key_failure=None, keygen_delay=0.0, stop_at=None,
                       on_store=None) -> CapfResult:
        if stop_at not in (None, 'key_request', 'store_request'):
            raise ValueError('stop_at must be key_request or store_request')
        req = parse_key_request(msg, self.version)
        res.key_request = req
        if stop_at == 'key_request':
            return self._stop(res, stop_at)
        if in_progress:
            self.send_msg(REQUEST_IN_PROGRESS)      # 2.3: empty body, optional
        if keygen_delay:
            time.sleep(keygen_delay)
        if key_failure is not None:
            self.send_msg(KEY_GENERATE_RESPONSE, reason_elements(key_failure))
            end = self.read_msg()
            if end.opcode != END_SESSION:
                raise ProtocolError('after a key failure got %s, expected 0f END_SESSION'
                                    % opcode_name(end.opcode))
            return self._finish(res, end, 'key')
        private = key if key is not None else self.keys.get(req, res.device, self.key_cache)
        spki = public_key_der(private)
        ours = spki
        if key_override is not None:
            spki = bytes(key_override(req, spki) if callable(key_override) else key_override)
        res.private_key, res.public_key_der = private, spki
        self.send_msg(KEY_GENERATE_RESPONSE, [(PUBLIC_KEY, spki)])

        msg = self.read_msg()
        if msg.opcode == END_SESSION:
            return self._finish(res, msg, 'key')
        if msg.opcode != STORE_CERTIFICATE_REQUEST:
            raise ProtocolError('after KEY_GENERATE_RESPONSE got %s, expected 09 '
                                'STORE_CERTIFICATE_REQUEST or 0f END_SESSION'
                                % opcode_name(msg.opcode))
        ctype, cert_value = msg.get(CERTIFICATE_TYPE), msg.get(CERTIFICATE)
        if ctype != bytes([CERT_TYPE_LSC]):
            raise ProtocolError('STORE_CERTIFICATE_REQUEST: CERTIFICATE_TYPE %s, expected 01 (LSC)'
                                % (ctype.hex() if ctype is not None else 'missing'))
        if cert_value is None:
            raise ProtocolError('STORE_CERTIFICATE_REQUEST without CERTIFICATE')
        cert_type, der = parse_certificate_element(cert_value)
        if cert_type != CERT_TYPE_LSC:
            raise ProtocolError('STORE_CERTIFICATE_REQUEST: inner certificate type %04x, '
                                'expected 0001 (LSC)' % cert_type)
        res.cert_der, res.cert_type = der, cert_type
        cert_key = public_key_der(x509.load_der_x509_certificate(der).public_key())
        if key_override is None and cert_key != ours:
            raise ProtocolError('the LSC does not carry the public key we sent')
        if stop_at == 'store_request':
            return self._stop(res, stop_at)
        if on_store is not None:
            on_store(res)
        self.send_msg(STORE_CERTIFICATE_RESPONSE, reason_elements(store_reason))
        res.store_reason = store_reason
        return self._finish(res, self.read_msg(), 'store')

    def _stop(self, res: CapfResult, where: str) -> CapfResult:
        # Connection left open: the caller decides (wait for the server's
        # timeout with read_msg()/expect_eof(), or close()).
        res.stopped_at = where
        res.messages = list(self.received)
        return res

    def _finish(self, res: CapfResult, msg: Message, after: str) -> CapfResult:
        if msg.opcode != END_SESSION:
            raise ProtocolError('got %s, expected 0f END_SESSION' % opcode_name(msg.opcode))
        why = msg.get(REASON)
        if why is None or len(why) != 1:
            raise ProtocolError('END_SESSION without a one-byte REASON: %s' % describe_msg(msg))
        res.end_reason, res.ended_after = why[0], after
        if self.expect_close:
            res.closed = self.expect_eof()      # 2.7.4: END_SESSION is the last message
        self.close()
        res.messages = list(self.received)
        return res


# --- Command line ----------------------------------------------------------------

REASON_TEXT = {0: 'no action', 1: 'success', 7: 'invalid element / refused',
               9: 'unknown device'}
DECLINE_TEXT = {7: 'no operation pending / already issued', 9: 'unknown device'}
STAGE_TEXT = {'key': 'the public key', 'store': 'the store response',
              'delete': 'the delete response', 'fetch': 'the fetch response'}


def parse_hostport(text: str) -> tuple:
    """HOST[:PORT], [IPv6]:PORT; port 3804 when omitted."""
    if text.startswith('['):
        host, _, rest = text[1:].partition(']')
        port = rest[1:] if rest.startswith(':') else ''
    elif text.count(':') == 1:
        host, port = text.split(':')
    else:
        host, port = text, ''
    if not host:
        raise ValueError('no host in %r' % text)
    return host, int(port) if port else DEFAULT_PORT


def _write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'wb') as f:
        f.write(data)


def _load_cert_file(path: str) -> bytes:
    with open(path, 'rb') as f:
        data = f.read()
    if b'-----BEGIN' in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


def _one_session(args, device: str) -> tuple:
    """Runs one session; returns (status, line) with status 'ok', 'declined' or 'error'."""
    host, port = args.hostport
    log = (lambda s: print('%s: %s' % (device, s), file=sys.stderr)) if args.verbose else None
    client = CapfClient(host, port, args.version, timeout=args.timeout, cafile=args.cafile,
                        tls_version=args.tls, split=args.split, key_cache=args.key_cache, log=log)
    out_cert = args.out_cert.format(device=device) if args.out_cert else None
    out_key = args.out_key.format(device=device) if args.out_key else None

    def store(res: CapfResult) -> None:
        # Like Jabber4Linux: key and certificate on disk before the acknowledgement (2.7.4).
        if out_key:
            _write_file(out_key, res.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()), 0o600)
        if out_cert:
            _write_file(out_cert, res.certificate.public_bytes(serialization.Encoding.PEM))

    try:
        with client:
            if args.op == 'delete':
                res = client.delete(device, args.password)
            elif args.op == 'troubleshoot':
                res = client.troubleshoot(device, args.cert_der, args.password)
            elif args.op == 'auto':
                res = client.run(device, args.password, in_progress=args.in_progress,
                                 on_store=store, cert_der=args.cert_der)
            else:
                res = client.install(device, args.password, args.in_progress, on_store=store)
    except FramingError as e:
        return 'error', '%s: framing error (F1): %s' % (device, e)
    except ProtocolError as e:
        return 'error', '%s: protocol error: %s' % (device, e)
    except (CapfError, OSError, ValueError) as e:       # ssl.SSLError and timeouts are OSErrors
        return 'error', '%s: connection error: %s: %s' % (device, type(e).__name__, e)

    why = res.end_reason
    if res.declined:
        return 'declined', '%s: declined, reason %d (%s)' % (
            device, why, DECLINE_TEXT.get(why, REASON_TEXT.get(why, 'unknown reason')))
    if res.op == 'install':
        if res.installed:
            line = '%s: installed, serial %s (%s)' % (device, res.serial_hex,
                                                       res.key_request.describe())
            if out_cert:
                line += ', LSC written to %s' % out_cert
            if out_key:
                line += ', key written to %s' % out_key
            return 'ok', line
        return 'declined', '%s: install ended after %s, reason %d (%s)' % (
            device, STAGE_TEXT.get(res.ended_after, res.ended_after), why,
            REASON_TEXT.get(why, 'unknown reason'))
    # Delete and troubleshoot: usecallmanagernz ends them with reason 01 / 00 (2.7.5).
    if res.op == 'delete':
        done = 'deleted'
    else:
        done = ('troubleshoot: certificate sent' if args.cert_der is not None
                else 'troubleshoot: answered "no certificate" (reason 07)')
    if why in (REASON_NO_ACTION, REASON_OK):
        return 'ok', '%s: %s, server ended with reason %d (%s)' % (
            device, done, why, REASON_TEXT[why])
    return 'declined', '%s: %s refused after %s, reason %d (%s)' % (
        device, res.op, STAGE_TEXT[res.ended_after], why, REASON_TEXT.get(why, 'unknown reason'))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='capf_client.py', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='CAPF test client: runs CAPF sessions (docs/capf-protocol.md) against a\n'
                    'server and prints one line per session. Every server message must arrive\n'
                    'as exactly one complete message in one recv(4096) (check F1 of 6.5); the\n'
                    'server certificate is not verified unless --cafile is given.',
        epilog='Exit status: 0 every session succeeded; 2 at least one was declined by the\n'
               'server (END_SESSION instead of the next step, or a refusing reason) and none\n'
               'failed; 1 protocol, framing or connection errors (details on stderr), or bad\n'
               'arguments.\n\n'
               'Examples:\n'
               '  capf_client.py --connect 127.0.0.1:3804 --device SEP74A02FC0A675 \\\n'
               '      --out-cert lsc.pem --out-key lsc.key\n'
               '  capf_client.py --connect 127.0.0.1:3804 --version 3 --in-progress \\\n'
               '      --device "SEP{:012X}" --count 1000 --concurrency 50')
    p.add_argument('--connect', required=True, metavar='HOST[:PORT]',
                   help='server address; port 3804 when omitted; IPv6 as [addr]:port')
    p.add_argument('--device', required=True, metavar='NAME',
                   help='device name, e.g. SEP74A02FC0A675 or CSF123. With --count it may hold '
                        'a Python format field filled with the session number, e.g. '
                        '"SEP{:012X}"; without one every session uses the same name')
    p.add_argument('--version', type=int, choices=(2, 3), default=2,
                   help='VERSION announced: 2 = Jabber-like (RSA, KEY_SIZE only), '
                        '3 = phone-like (RSA or EC) (default 2)')
    p.add_argument('--password', metavar='DIGITS',
                   help='authentication string, sent as PASSWORD; "" sends an empty one')
    p.add_argument('--in-progress', action='store_true',
                   help='send REQUEST_IN_PROGRESS (11) before the public key')
    p.add_argument('--op', choices=('install', 'delete', 'troubleshoot', 'auto'),
                   default='install',
                   help='operation the server is expected to ask for; auto follows the server '
                        '(default install)')
    p.add_argument('--cert', metavar='FILE',
                   help='troubleshoot/auto: certificate (PEM or DER) to return in '
                        'FETCH_CERTIFICATE_RESPONSE; without it the client answers REASON 07')
    p.add_argument('--out-cert', metavar='FILE',
                   help='write the issued LSC here (PEM) before acknowledging it; may contain '
                        '{device}, required with --count > 1')
    p.add_argument('--out-key', metavar='FILE',
                   help='write the private key here (PKCS#8 PEM, mode 0600); may contain {device}')
    p.add_argument('--cafile', metavar='FILE',
                   help='verify the server certificate against these CA certificates '
                        '(the name is not checked)')
    p.add_argument('--tls', choices=('1.2', '1.3'),
                   help='use only this TLS version (default: 1.2 or 1.3)')
    p.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT, metavar='S',
                   help='seconds allowed for every socket operation (default 8, like Jabber4Linux)')
    p.add_argument('--split', default=None, metavar='header|N',
                   help='send each client message as several TLS records: "header" (header, '
                        'then body) or N-byte records (1 = byte by byte)')
    p.add_argument('--count', type=int, default=1, metavar='N', help='number of sessions (default 1)')
    p.add_argument('--start', type=int, default=0, metavar='N',
                   help='first session number for the --device format field (default 0)')
    p.add_argument('--concurrency', type=int, default=1, metavar='C',
                   help='sessions run at once (default 1)')
    p.add_argument('--key-cache', choices=KeyPool.POLICIES, default='device',
                   help='reuse generated keys: per device (default), shared by all devices, '
                        'or none')
    p.add_argument('-v', '--verbose', action='store_true', help='trace every message on stderr')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.hostport = parse_hostport(args.connect)
    except ValueError as e:
        parser.error('--connect: %s' % e)
    if args.count < 1 or args.concurrency < 1:
        parser.error('--count and --concurrency must be at least 1')
    if args.split not in (None, 'none', 'header'):
        try:
            if int(args.split) < 1:
                raise ValueError
            args.split = int(args.split)
        except ValueError:
            parser.error('--split must be "header" or a positive number')
    for opt in ('out_cert', 'out_key'):
        path = getattr(args, opt)
        if path and args.count > 1 and '{device}' not in path:
            parser.error('--%s needs {device} in the file name with --count > 1'
                         % opt.replace('_', '-'))
    devices = []
    for i in range(args.start, args.start + args.count):
        try:
            devices.append(args.device.format(i))
        except (IndexError, ValueError, KeyError) as e:
            parser.error('--device %r: bad format field: %s' % (args.device, e))
    try:
        args.cert_der = _load_cert_file(args.cert) if args.cert else None
    except (OSError, ValueError) as e:
        parser.error('--cert: %s' % e)

    counts = {'ok': 0, 'declined': 0, 'error': 0}
    t0 = time.monotonic()

    def report(status: str, line: str) -> None:
        counts[status] += 1
        print(line, file=sys.stderr if status == 'error' else sys.stdout, flush=True)

    if args.concurrency == 1 or len(devices) == 1:
        for d in devices:
            report(*_one_session(args, d))
    else:
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            for fut in concurrent.futures.as_completed(
                    [pool.submit(_one_session, args, d) for d in devices]):
                report(*fut.result())
    if len(devices) > 1:
        took = time.monotonic() - t0
        print('%d sessions in %.2f s (%.1f/s): %d succeeded, %d declined, %d errors'
              % (len(devices), took, len(devices) / took if took else 0.0,
                 counts['ok'], counts['declined'], counts['error']))
    if counts['error']:
        return 1
    return 2 if counts['declined'] else 0


# --- Authentication by existing certificate (2.8), the phone's side ----------

SHA2_HASH_IDS = {'sha1': 0x01, 'sha256': 0x02, 'sha512': 0x03}   # 2.5.2 hash ids


def _hash_algorithm(name: str):
    from cryptography.hazmat.primitives import hashes
    algs = {'sha1': hashes.SHA1, 'sha256': hashes.SHA256, 'sha512': hashes.SHA512}
    if name not in algs:
        raise ValueError('hash must be one of %s, not %r' % (sorted(algs), name))
    return algs[name]()


def phone_signature(private_key, data: bytes, hash_name: str = 'sha512',
                    rsa_style: str = 'bare') -> bytes:
    """Sign `data` the way a CAPF phone does (2.8).

    EC keys: ECDSA over the hash, DER-encoded (what key.sign returns).
    RSA keys, rsa_style 'digestinfo': standard PKCS#1 v1.5 (key.sign with
    PKCS1v15), i.e. the type-1 block of the DigestInfo of the hash.
    RSA keys, rsa_style 'bare': the type-1 block of the bare hash, without a
    DigestInfo, as usecallmanagernz's client does: `cryptography` has no
    public API for a raw private-key operation, so the block
    00 01 FF..FF 00 <hash> (RFC 8017 9.2 padding, at least 8 FF bytes) is
    built here and raised to the private exponent with pow(m, d, n) from
    private_numbers(). Test keys only: this is not constant-time.
    Only APIs present in Debian 12's python3-cryptography 38 are used."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    alg = _hash_algorithm(hash_name)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(alg))
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError('private_key must be an RSA or EC private key')
    if rsa_style == 'digestinfo':
        return private_key.sign(data, padding.PKCS1v15(), alg)
    if rsa_style != 'bare':
        raise ValueError("rsa_style must be 'bare' or 'digestinfo', not %r" % (rsa_style,))
    h = hashes.Hash(alg)
    h.update(data)
    digest = h.finalize()
    k = (private_key.key_size + 7) // 8
    if k < len(digest) + 11:
        raise ValueError('RSA-%d is too small for a %s block' % (private_key.key_size, hash_name))
    block = b'\x00\x01' + b'\xff' * (k - 3 - len(digest)) + b'\x00' + digest
    priv = private_key.private_numbers()
    sig = pow(int.from_bytes(block, 'big'), priv.d, priv.public_numbers.n)
    return sig.to_bytes(k, 'big')


def sha2_signed_data(hash_id: int, signature: bytes) -> bytes:
    """Value of tag 14 SHA2_SIGNED_DATA: hash id (1) | length (2) | signature."""
    return struct.pack('>BH', hash_id, len(signature)) + bytes(signature)


def sudi_data(sudi_cert_der: bytes, sudi_private_key, session_id: int,
              rsa_style: str = 'bare', byteorder: str = 'little') -> bytes:
    """Value of tag 10 SUDI_DATA (2.8): blocks 00 = SUDI certificate DER,
    01 = SHA-1 signature, 03 = SHA-512 signature, both over the session id
    as a 4-byte integer followed by the SUDI DER. Phones use little-endian
    (byteorder='big' is for the negative test). RSA SUDI keys only (2.8)."""
    signed = int(session_id).to_bytes(4, byteorder) + bytes(sudi_cert_der)
    out = b''
    for block_id, data in ((0x00, bytes(sudi_cert_der)),
                           (0x01, phone_signature(sudi_private_key, signed, 'sha1', rsa_style)),
                           (0x03, phone_signature(sudi_private_key, signed, 'sha512', rsa_style))):
        out += struct.pack('>BH', block_id, len(data)) + data
    return out


def cert_auth_elements(device: str | bytes, cert_der: bytes, private_key, session_id: int,
                       rsa_style: str = 'bare', sha1: bool = True, sha2_hash: str = 'sha512',
                       sudi: tuple | None = None, cert_type: int = CERT_TYPE_LSC) -> list:
    """The elements a phone adds to AUTH_RESPONSE to authenticate with its
    existing certificate (2.8, 2.9), as a list of (tag, value) for
    `extra_elements` of CapfClient.install / delete / troubleshoot / auth:

      CERTIFICATE (04)       cert_der in the 2.6 wrapper, type `cert_type`
                             (usecallmanagernz writes LSC whatever it sends);
      SIGNED_DATA (06)       SHA-1 signature, when `sha1`;
      SHA2_SIGNED_DATA (14)  SHA2_HASH_IDS[sha2_hash] | length | signature
                             (sha2_hash 'sha512', 'sha256', or 'sha1' for the
                             negative test: id 01 is no SHA-2 proof);
      SUDI_DATA (10)         when sudi = (sudi_cert_der, sudi_private_key):
                             see sudi_data (little-endian session id).

    Both signatures cover device || 00 || cert_der and are made with
    `private_key` (the certificate's key; RSA or EC) by phone_signature,
    RSA ones in `rsa_style` 'bare' or 'digestinfo'.
    The session id is only known after the hello: connect first, e.g.
        c.connect()
        extra = cert_auth_elements(dev, lsc_der, lsc_key, c.session_id,
                                   sudi=(sudi_der, sudi_key))
        r = c.install(dev, extra_elements=extra)"""
    name = device.encode('ascii') if isinstance(device, str) else bytes(device)
    cert_der = bytes(cert_der)
    signed = name + b'\x00' + cert_der
    elements = [(CERTIFICATE, build_certificate_element(cert_der, cert_type))]
    if sha1:
        elements.append((SIGNED_DATA, phone_signature(private_key, signed, 'sha1', rsa_style)))
    if sha2_hash not in SHA2_HASH_IDS:
        raise ValueError('sha2_hash must be one of %s, not %r' % (sorted(SHA2_HASH_IDS), sha2_hash))
    elements.append((SHA2_SIGNED_DATA, sha2_signed_data(
        SHA2_HASH_IDS[sha2_hash], phone_signature(private_key, signed, sha2_hash, rsa_style))))
    if sudi is not None:
        sudi_der, sudi_key = sudi
        elements.append((SUDI_DATA, sudi_data(sudi_der, sudi_key, session_id, rsa_style)))
    return elements


if __name__ == '__main__':
    sys.exit(main())
