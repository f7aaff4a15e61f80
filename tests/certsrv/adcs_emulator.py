#!/usr/bin/env python3
"""adcs_emulator: an IIS + ADCS "Certificate Web Enrollment" (/certsrv) look-alike
for the certsrv connector's integration tests (docs: certsrv-protocol.md §7).

Python 3.11 standard library + `cryptography` (API of Debian 12's 38.0.4 and later).
All key material is generated at start-up; nothing is read from the repository.

In-process use (a thread per connection, the listener on its own thread):

    emu = AdcsEmulator(auth='negotiate+ntlm+basic', user='svc', password='pw',
                       domain='EMU', tls_profile='good')
    emu.start()                       # binds 127.0.0.1, port 0 unless given
    ... emu.port, emu.tls_root_path, emu.url('/certsrv/') ...
    emu.set_pending_next(1); emu.approve(61100); emu.roll_ca(); emu.log() ...
    emu.stop()

As a process: `python3 adcs_emulator.py --help`. It prints one JSON line
({"ready": true, "https_port": ..., "control_port": ..., "tls_root": ...}) on
stdout when it listens, serves a JSON control channel on a second loopback port
(POST /control/<op> with a JSON object body; GET /control/state|log|counts),
and exits 0 on SIGTERM/SIGINT.

What it is not: Kerberos (Negotiate is offered, SPNEGO/Kerberos tokens are
refused; raw NTLMSSP tokens inside Negotiate are accepted like IIS does when
the NTLM provider is enabled), CRL download, the IE/ActiveX page variant.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import html
import http.server
import io
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ['AdcsEmulator', 'Template', 'md4', 'NtlmClient', 'HRESULTS', 'main']

MAX_DELAY = 60.0            # every injected delay is capped (E30)
MAX_BODY = 1 << 20          # request bodies larger than this get 413
IIS_SERVER = 'Microsoft-IIS/10.0'
PAGE_TITLE = 'Microsoft Active Directory Certificate Services'
CRLF = '\r\n'

# HRESULTs of certsrv-protocol.md §3.3 (value -> symbol, English text)
HRESULTS = {
    0x00000000: ('WIN32: 0', 'The operation completed successfully.'),
    0x80094800: ('CERTSRV_E_UNSUPPORTED_CERT_TYPE',
                 'The requested certificate template is not supported by this CA.'),
    0x80094801: ('CERTSRV_E_NO_CERT_TYPE',
                 'The request contains no certificate template information.'),
    0x80094802: ('CERTSRV_E_TEMPLATE_CONFLICT',
                 'The request contains conflicting template information.'),
    0x80094012: ('CERTSRV_E_TEMPLATE_DENIED',
                 'The permissions on the certificate template do not allow the current user '
                 'to enroll for this type of certificate.'),
    0x80094014: ('CERTSRV_E_ADMIN_DENIED_REQUEST', 'The request was denied by a certificate manager '
                 'or CA administrator.'),
    0x80094001: ('CERTSRV_E_BAD_REQUESTSUBJECT', 'The request subject name is invalid or too long.'),
    0x80094003: ('CERTSRV_E_BAD_REQUESTSTATUS',
                 'The request\'s current status does not allow this operation.'),
    0x80094004: ('CERTSRV_E_PROPERTY_EMPTY', 'The requested property value is empty.'),
    0x80094811: ('CERTSRV_E_KEY_LENGTH', 'The public key does not meet the minimum size '
                 'required by the specified certificate template.'),
    0x800706BA: ('WIN32: 1722 RPC_S_SERVER_UNAVAILABLE', 'The RPC server is unavailable.'),
    0x80070005: ('WIN32: 5 ERROR_ACCESS_DENIED', 'Access is denied.'),
    0x80070057: ('WIN32: 87 ERROR_INVALID_PARAMETER', 'The parameter is incorrect.'),
    0x8009310B: ('ASN: 267 CRYPT_E_ASN1_BADTAG', 'ASN1 bad tag value met.'),
    0x80090006: ('NTE_BAD_SIGNATURE', 'Invalid Signature.'),
}

DISPOSITIONS = {0: 'Incomplete', 1: 'Error', 2: 'Denied', 3: 'Issued', 4: 'Issued Out of Band',
                5: 'Under Submission', 6: 'Revoked'}


def format_hresult(code):
    """'<text> 0x8009xxxx (-21468xxxxx SYMBOL)' or '... 0x0 (WIN32: 0)' (§3.3)."""
    sym, text = HRESULTS.get(code, ('', 'Unknown error.'))
    if code == 0:
        return '%s 0x0 (WIN32: 0)' % text
    signed = code - (1 << 32) if code & 0x80000000 else code
    if sym.startswith('WIN32') or sym.startswith('ASN'):
        return '%s 0x%x (%s)' % (text, code, sym)
    return '%s 0x%x (%d %s)' % (text, code, signed, sym)


# ------------------------------------------------------------------ MD4 (RFC 1320)

def md4(data):
    """md4 returns the MD4 digest of `data` (hashlib lacks it with OpenSSL 3)."""
    mask = 0xFFFFFFFF

    def rotl(x, n):
        x &= mask
        return ((x << n) | (x >> (32 - n))) & mask

    msg = bytearray(data)
    bitlen = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack('<Q', bitlen)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    rounds = (
        (lambda x, y, z: (x & y) | (~x & z), 0, list(range(16)), (3, 7, 11, 19)),
        (lambda x, y, z: (x & y) | (x & z) | (y & z), 0x5A827999,
         [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15], (3, 5, 9, 13)),
        (lambda x, y, z: x ^ y ^ z, 0x6ED9EBA1,
         [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15], (3, 9, 11, 15)),
    )
    for off in range(0, len(msg), 64):
        xw = struct.unpack('<16I', bytes(msg[off:off + 64]))
        r = list(h)
        for f, k, order, shifts in rounds:
            for i, idx in enumerate(order):
                a, b, c, d = r
                r = [d, rotl(a + f(b, c, d) + xw[idx] + k, shifts[i % 4]), b, c]
        h = [(h[i] + r[i]) & mask for i in range(4)]
    return struct.pack('<4I', *h)


# ------------------------------------------------------------------ NTLM (MS-NLMP)

NTLM_SIG = b'NTLMSSP\x00'
NTLMSSP_NEGOTIATE_UNICODE = 0x00000001
NTLM_NEGOTIATE_OEM = 0x00000002
NTLMSSP_REQUEST_TARGET = 0x00000004
NTLMSSP_NEGOTIATE_NTLM = 0x00000200
NTLMSSP_NEGOTIATE_ALWAYS_SIGN = 0x00008000
NTLMSSP_TARGET_TYPE_DOMAIN = 0x00010000
NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NTLMSSP_NEGOTIATE_TARGET_INFO = 0x00800000
NTLMSSP_NEGOTIATE_VERSION = 0x02000000
NTLMSSP_NEGOTIATE_128 = 0x20000000
NTLMSSP_NEGOTIATE_56 = 0x80000000
AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN = 0, 1, 2, 3, 4
AV_FLAGS, AV_TIMESTAMP, AV_CHANNEL_BINDINGS = 6, 7, 10


def _filetime(t=None):
    return int(((time.time() if t is None else t) + 11644473600) * 10000000)


def _av_pairs(pairs):
    out = b''
    for av_id, value in pairs:
        out += struct.pack('<HH', av_id, len(value)) + value
    return out + struct.pack('<HH', AV_EOL, 0)


def _parse_av_pairs(data):
    """_parse_av_pairs -> list of (id, value); stops at MsvAvEOL; ValueError if malformed."""
    out, off = [], 0
    while True:
        if off + 4 > len(data):
            raise ValueError('AV_PAIR list truncated')
        av_id, ln = struct.unpack_from('<HH', data, off)
        off += 4
        if av_id == AV_EOL:
            return out
        if off + ln > len(data):
            raise ValueError('AV_PAIR value truncated')
        out.append((av_id, data[off:off + ln]))
        off += ln


def _secbuf(msg, off):
    ln, _maxln, boff = struct.unpack_from('<HHI', msg, off)
    if boff + ln > len(msg):
        raise ValueError('security buffer out of range')
    return msg[boff:boff + ln]


def ntowfv2(password, user, domain):
    return hmac.new(md4(password.encode('utf-16-le')),
                    (user.upper() + domain).encode('utf-16-le'), 'md5').digest()


def channel_binding_hash(cert_der, sig_hash_name='sha256'):
    """MD5 of the gss_channel_bindings_struct for tls-server-end-point (RFC 5929, MS-NLMP)."""
    name = sig_hash_name if sig_hash_name not in ('md5', 'sha1', None) else 'sha256'
    app = b'tls-server-end-point:' + hashlib.new(name, cert_der).digest()
    struct_bytes = struct.pack('<IIIII', 0, 0, 0, 0, len(app)) + app
    return hashlib.md5(struct_bytes).digest()


class NtlmClient:
    """Minimal NTLMv2 client for tests (curl can't send channel bindings or a type-3
    on another connection). negotiate() -> type-1; authenticate(type2) -> type-3."""

    def __init__(self, user, password, domain='', workstation='TESTWS', rng=None):
        self.user, self.password, self.domain, self.workstation = user, password, domain, workstation
        self.rng = rng or secrets.SystemRandom()

    def negotiate(self):
        flags = (NTLMSSP_NEGOTIATE_UNICODE | NTLMSSP_REQUEST_TARGET | NTLMSSP_NEGOTIATE_NTLM |
                 NTLMSSP_NEGOTIATE_ALWAYS_SIGN | NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY)
        return NTLM_SIG + struct.pack('<II', 1, flags) + b'\x00' * 16

    def authenticate(self, type2, channel_bindings=None, nt_proof_tamper=False):
        if not type2.startswith(NTLM_SIG) or struct.unpack_from('<I', type2, 8)[0] != 2:
            raise ValueError('not an NTLM type-2 message')
        challenge = type2[24:32]
        tinfo = _secbuf(type2, 40)
        pairs = [p for p in _parse_av_pairs(tinfo)]
        ts = dict(pairs).get(AV_TIMESTAMP) or struct.pack('<Q', _filetime())
        if channel_bindings is not None:
            pairs.append((AV_CHANNEL_BINDINGS, channel_bindings))
        cc = bytes(self.rng.getrandbits(8) for _ in range(8))
        temp = (b'\x01\x01' + b'\x00' * 6 + ts + cc + b'\x00' * 4 + _av_pairs(pairs) + b'\x00' * 4)
        key = ntowfv2(self.password, self.user, self.domain)
        proof = hmac.new(key, challenge + temp, 'md5').digest()
        if nt_proof_tamper:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        nt = proof + temp
        lm = b'\x00' * 24
        fields = [lm, nt, self.domain.encode('utf-16-le'), self.user.encode('utf-16-le'),
                  self.workstation.encode('utf-16-le'), b'']
        off = 64
        head = NTLM_SIG + struct.pack('<I', 3)
        payload = b''
        for f in fields:
            head += struct.pack('<HHI', len(f), len(f), off + len(payload))
            payload += f
        flags = (NTLMSSP_NEGOTIATE_UNICODE | NTLMSSP_NEGOTIATE_NTLM | NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
                 NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | NTLMSSP_NEGOTIATE_TARGET_INFO)
        head += struct.pack('<I', flags)
        assert len(head) == 64
        return head + payload


# ------------------------------------------------------------------ certificates

def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _name(cn, o='Stampede Test'):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _crlf_pem(der, label):
    b64 = base64.b64encode(der).decode()
    lines = ['-----BEGIN %s-----' % label] + [b64[i:i + 64] for i in range(0, len(b64), 64)] + \
        ['-----END %s-----' % label]
    return (CRLF.join(lines) + CRLF).encode()


def _san(names):
    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def _make_cert(subject, pub, issuer_name, issuer_key, issuer_pub, *, ca, days=(-1, 365),
               not_before=None, not_after=None, san=None, eku=None, pathlen=None, extra=()):
    now = _utcnow()
    nb = not_before or now + datetime.timedelta(days=days[0])
    na = not_after or now + datetime.timedelta(days=days[1])
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub), False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                            True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                            True)
    if san:
        b = b.add_extension(san, False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), False)
    for ext, crit in extra:
        b = b.add_extension(ext, crit)
    return b.sign(issuer_key, hashes.SHA256())


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(b)]) + b


def _ms_template_name_ext(name):
    """szOID_ENROLL_CERTTYPE_EXTENSION (1.3.6.1.4.1.311.20.2): BMPString template name."""
    raw = name.encode('utf-16-be')
    return x509.UnrecognizedExtension(x509.ObjectIdentifier('1.3.6.1.4.1.311.20.2'),
                                      b'\x1e' + _der_len(len(raw)) + raw)


def _ms_ca_version_ext(index):
    """szOID_CERTSRV_CA_VERSION (1.3.6.1.4.1.311.21.1): INTEGER (key index << 16 | cert index)."""
    v = (index << 16) | index
    raw = v.to_bytes(max(1, (v.bit_length() + 8) // 8), 'big')
    return x509.UnrecognizedExtension(x509.ObjectIdentifier('1.3.6.1.4.1.311.21.1'),
                                      b'\x02' + _der_len(len(raw)) + raw)


class CaGeneration:
    """One CA certificate of the issuing CA (renewal index `index`), signed by the root."""

    def __init__(self, index, root_key, root_cert, ca_name):
        self.index = index
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = _make_cert(_name(ca_name), self.key.public_key(), root_cert.subject, root_key,
                               root_key.public_key(), ca=True, days=(-1, 3650), pathlen=0,
                               extra=[(_ms_ca_version_ext(index), False)])


class Template:
    """A certificate template. policy: 'auto' (issue), 'manual' (pending), 'deny'."""

    def __init__(self, name, display=None, policy='auto', min_key_bits=0, users=None,
                 eku=('serverAuth', 'clientAuth'), days=365, deny_code=0x80094014,
                 deny_message=None, published=True):
        self.name = name
        self.display = display or name
        self.policy = policy
        self.min_key_bits = min_key_bits
        self.users = None if users is None else [u.lower() for u in users]
        self.eku = tuple(eku)
        self.days = days
        self.deny_code = deny_code
        self.deny_message = deny_message
        self.published = published

    def to_json(self):
        return {k: getattr(self, k) for k in ('name', 'display', 'policy', 'min_key_bits', 'users',
                                              'eku', 'days', 'deny_code', 'deny_message',
                                              'published')}


_EKU = {'serverAuth': ExtendedKeyUsageOID.SERVER_AUTH, 'clientAuth': ExtendedKeyUsageOID.CLIENT_AUTH}


def default_templates():
    return [
        Template('WebServer', 'Web Server'),
        Template('StampedeManual', 'Stampede Manual Approval', policy='manual'),
        Template('StampedeRestricted', 'Stampede Restricted', users=['nobody-else']),
        Template('StampedeDeny', 'Stampede Deny', policy='deny', deny_code=0x80094012),
        Template('StampedeBigKey', 'Stampede Big Key', min_key_bits=4096),
    ]


class Request:
    def __init__(self, rid, requester, template, csr_der):
        self.id = rid
        self.requester = requester
        self.template = template
        self.csr_der = csr_der
        self.csr_sha256 = hashlib.sha256(csr_der).hexdigest() if csr_der else None
        self.state = 'error'            # pending|issued|denied|error
        self.cert = None
        self.ca_index = None
        self.message = ''
        self.hresult = 0
        self.created = time.time()
        self.updated = self.created
        self.friendly = ''

    def to_json(self):
        return {'id': self.id, 'requester': self.requester, 'template': self.template,
                'csr_sha256': self.csr_sha256, 'state': self.state, 'ca_index': self.ca_index,
                'message': self.message, 'hresult': '0x%08x' % self.hresult,
                'created': self.created, 'updated': self.updated,
                'serial': None if self.cert is None else '%x' % self.cert.serial_number}


# ------------------------------------------------------------------ pages (§3, §7.3)

def _esc(s):
    return html.escape(str(s), quote=False)


def page(heading, body_lines, ca_name='Stampede Test Issuing CA', head_extra=()):
    lines = ['<HTML>', '<Head>',
             '<Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-8">',
             '<Title>%s</Title>' % PAGE_TITLE] + list(head_extra) + ['</Head>',
             '<Body BgColor=#FFFFFF>', '<Font ID=locPageFont Face="Arial">',
             '<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>',
             '<TR><TD><Font Color=#FFFFFF><Span ID=locMSCertSrv>%s</Span> -- %s</Font></TD>'
             '<TD ID=locHomeLink Align=Right><A Href="/certsrv/">Home</A></TD></TR>' % (
                 PAGE_TITLE, _esc(ca_name)),
             '</Table>',
             '<P ID=locPageTitle> <B> %s </B>' % _esc(heading)] + list(body_lines) + [
             '</Font>', '</Body>', '</HTML>']
    return (CRLF.join(lines) + CRLF).encode('utf-8')


def issued_page(rid, renewal, variant):
    if variant == 'text':
        body = [
            '<P ID=locInfoIssued>The certificate you requested was issued to you.</P>',
            '<A Href="certnew.cer?ReqID=CACert&amp;Renewal=%d&amp;Mode=inst&amp;Enc=b64" '
            'Style="display:none" ID=locInstallCA>Install CA certificate</A>' % renewal,
            '<Table Border=0 CellSpacing=0 CellPadding=0>',
            '<TR><TD ID=locDerEnc>DER encoded</TD><TD>'
            '<A Href="certnew.cer?ReqID=%d&amp;Enc=bin">Download certificate</A><BR>' % rid,
            '<A Href="certnew.p7b?ReqID=%d&amp;Enc=bin">Download certificate chain</A></TD></TR>' % rid,
            '<TR><TD ID=locB64Enc>Base 64 encoded</TD><TD>'
            '<A Href="certnew.cer?ReqID=%d&amp;Enc=b64">Download certificate</A><BR>' % rid,
            '<A Href="certnew.p7b?ReqID=%d&amp;Enc=b64">Download certificate chain</A></TD></TR>' % rid,
            '</Table>']
        return page('Certificate Issued', body)
    script = [
        '<Script Language="JavaScript">', '<!--',
        '\tfunction getEncoding() {',
        '\t\tif (true==document.UIForm.rbDerEnc.checked) {',
        '\t\t\treturn "Enc=bin";',
        '\t\t} else {',
        '\t\t\treturn "Enc=b64";',
        '\t\t}',
        '\t}',
        '\tfunction handleInstallCA() {',
        '\t\tlocation="certnew.cer?ReqID=CACert&Renewal=%d&Mode=inst&Enc=b64";' % renewal,
        '\t}',
        '\tfunction handleGetCert() {',
        '\t\tlocation="certnew.cer?ReqID=%d&"+getEncoding();' % rid,
        '\t}',
        '\tfunction handleGetChain() {',
        '\t\tlocation="certnew.p7b?ReqID=%d&"+getEncoding();' % rid,
        '\t}',
        '//-->', '</Script>']
    body = [
        '<P ID=locInfoIssued>The certificate you requested was issued to you.</P>',
        '<Form Name=UIForm>',
        '<Input Type=Radio Name=rbEncoding ID=rbDerEnc Checked><Label For=rbDerEnc '
        'ID=locDerEnc>DER encoded</Label> or',
        '<Input Type=Radio Name=rbEncoding ID=rbB64Enc><Label For=rbB64Enc '
        'ID=locB64Enc>Base 64 encoded</Label>',
        '<A Href="javascript:handleGetCert();"><Span ID=locDownloadCert>Download certificate'
        '</Span></A>',
        '<A Href="javascript:handleGetChain();"><Span ID=locDownloadCertChain>Download '
        'certificate chain</Span></A>',
        '</Form>']
    return page('Certificate Issued', body, head_extra=script)


def pending_page(rid, recheck=False):
    if recheck:
        first = ('<P ID=locInfoChkPnd>Your certificate request is still pending. You must wait for '
                 'an administrator to issue the certificate you requested.</P>')
    else:
        first = ('<P ID=locInfoNewReq>Your certificate request has been received. However, you '
                 'must wait for an administrator to issue the certificate you requested.</P>')
    return page('Certificate Pending', [
        first, '<P ID=locInfoReqID>Your Request Id is %d.</P>' % rid,
        '<P ID=locInfoRemember>Please return to this web site in a day or two to retrieve your '
        'certificate.</P>'])


def denied_page(rid, message, revoked=False):
    marker = ('<P ID=locIssRev>The certificate issued for your request was revoked.</P>' if revoked
              else '<P ID=locDenied>Your certificate request was denied.</P>')
    idtext = ('Your Request Id is %d. ' % rid) if rid is not None else ''
    return page('Certificate Request Denied', [
        marker,
        '<P ID=locInfoReqIDandReason>%sThe disposition message is "%s".</P>' % (
            idtext, _esc(message).replace('"', "'")),
        '<P ID=locContactAdmin>Contact your administrator for further information.</P>'])


def error_page(mode, disposition, disp_msg, result, last_status=None, com_info='(none)',
               cause='(none)', intro=None):
    dd = [('locModeLabel', 'Request Mode:', mode),
          ('locDispLabel', 'Disposition:', '%x - %s' % (disposition, DISPOSITIONS.get(disposition,
                                                                                       'Unknown'))),
          ('locDispMsgLabel', 'Disposition message:', disp_msg),
          ('locResultLabel', 'Result:', result),
          ('locComInfoLabel', 'COM Error Info:', com_info),
          ('locLastStatLabel', 'LastStatus:', last_status if last_status is not None else result),
          ('locSugCauseLabel', 'Suggested Cause:', cause)]
    body = ['<P ID=locReqFailed>%s</P>' % _esc(intro or 'Your request failed. An error occurred '
                                                'while the server was processing your request.'),
            '<DL>']
    for eid, label, value in dd:
        body.append('<DT ID=%s>%s</DT>' % (eid, label))
        body.append('\t\t<DD>%s</DD>' % _esc(value))
    body.append('</DL>')
    return page('Error', body)


def unauthorized_page():
    t = '401 - Unauthorized: Access is denied due to invalid credentials.'
    return (CRLF.join(['<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">',
                       '<html><head>', '<title>%s</title>' % t, '</head>', '<body>',
                       '<div id="header"><h1>Server Error</h1></div>',
                       '<div id="content"><fieldset><h2>401 - Unauthorized: Access is denied due to '
                       'invalid credentials.</h2>',
                       '<h3>You do not have permission to view this directory or page using the '
                       'credentials that you supplied.</h3></fieldset></div>',
                       '</body></html>']) + CRLF).encode()


def iis_status_page(status, reason, detail=''):
    return (CRLF.join(['<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">',
                       '<html><head><title>%d - %s</title></head><body>' % (status, _esc(reason)),
                       '<div id="header"><h1>Server Error</h1></div>',
                       '<div id="content"><h2>%d - %s</h2><h3>%s</h3></div>' % (
                           status, _esc(reason), _esc(detail)),
                       '</body></html>']) + CRLF).encode()


# ------------------------------------------------------------------ the server

class _Conn:
    """Per-TCP-connection state (NTLM is bound to it, E9)."""

    def __init__(self, cid, peer):
        self.id = cid
        self.peer = peer
        self.requests = 0
        self.challenge = None           # pending NTLM server challenge (after type-2)
        self.challenge_unicode = True
        self.user = None                # authenticated identity (NTLM/Negotiate)
        self.scheme = None
        self.handshakes = 0             # completed NTLM handshakes on this connection
        self.opened = time.time()
        self.closed = None
        self.tls_version = None
        self.cookie_sent = False


class _TLSServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, emu, tls):
        self.emu = emu
        self.tls = tls
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        emu = self.emu
        emu._track(request, True)
        try:
            # headers and body go out in two writes: without NODELAY the body
            # waits for the client's delayed ACK (40 ms per answer), which IIS
            # does not do
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                if emu.cfg['tls_stall']:
                    # accept TCP, never answer the handshake (bounded; ends on stop())
                    request.settimeout(0.2)
                    deadline = time.monotonic() + MAX_DELAY
                    while time.monotonic() < deadline and not emu._stopping.is_set():
                        try:
                            if request.recv(4096) == b'':
                                break
                        except socket.timeout:
                            continue
                        except OSError:
                            break
                    return
                request.settimeout(10.0)
                try:
                    sock = emu._ssl_ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    emu._note_tls_failure(client_address, e)
                    return
                emu._track(sock, True)
                try:
                    self.RequestHandlerClass(sock, client_address, self)
                finally:
                    emu._track(sock, False)
                    try:
                        sock.close()
                    except OSError:
                        pass
            else:
                self.RequestHandlerClass(request, client_address, self)
        finally:
            emu._track(request, False)

    def handle_error(self, request, client_address):
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = IIS_SERVER

    def version_string(self):
        return IIS_SERVER

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        emu = self.server.emu
        self.connection.settimeout(emu.cfg['idle_timeout'])
        self.conn = emu._new_conn(self.client_address,
                                  self.connection.version() if self.server.tls else None)

    def finish(self):
        try:
            super().finish()
        finally:
            self.conn.closed = time.time()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def do_GET(self):
        self.server.emu._dispatch(self, 'GET')

    def do_HEAD(self):
        self.server.emu._dispatch(self, 'HEAD')

    def do_POST(self):
        self.server.emu._dispatch(self, 'POST')

    def do_PUT(self):
        self.server.emu._dispatch(self, 'PUT')

    def do_OPTIONS(self):
        self.server.emu._dispatch(self, 'OPTIONS')


def _ci_query(query):
    """Parameter names case-insensitive, values as sent (§1); first occurrence wins."""
    out = {}
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        out.setdefault(k.lower(), v)
    return out


DEFAULTS = {
    'host': 'adcs.test',
    'tls_names': None,              # SAN names of the 'good' leaf (default [host])
    'tls_profile': 'good',          # good|self-signed|wrong-name|not-yet-valid|expired|leaf-only
    'auth': 'negotiate+ntlm',       # '+'-joined: none, negotiate, ntlm, basic ('negotiate-only' ok)
    'user': 'svc-stampede',
    'password': 'Pa55w0rd+Emu',
    'domain': 'EMU',                # NetBIOS domain
    'dns_domain': 'emu.test',
    'computer': 'ADCS01',
    'realm': 'adcs.test',
    'per_request_auth': False,
    'epa': 'off',                   # off|accept|require
    'first_id': 61100,
    'force_variant': None,          # None (by UA) | 'text' | 'script'
    'legacy_content_type': False,
    'non_browser_content_type': None,
    'ca_down': False,
    'idle_timeout': 120.0,
    'close_after_response': False,
    'challenge_delay': 0.0,
    'tls_stall': False,
    'lowercase_redirect': False,
    'ca_name': 'Stampede Test Issuing CA',
    'officer': 'EMU\\ca-officer',
    # PEM texts of registration-authority certificates: a PKCS#10 whose own
    # signature does not verify is accepted if one of these keys signed it
    # (a CA set up to take requests an enrollment agent signs: how a CAPF,
    # whose phones send a bare public key, submits; [DESIGN], see
    # docs/redis-schema.md "CAPF requests upstream"). Empty: strict, as ADCS.
    'ra_certs': [],
}


class AdcsEmulator:
    """The /certsrv emulator. Options are the DEFAULTS keys; unknown keys raise.
    Templates default to default_templates(); pass templates=[Template(...), ...]."""

    def __init__(self, port=0, http_port=None, control_port=None, workdir=None, templates=None,
                 seed=None, **opts):
        bad = set(opts) - set(DEFAULTS)
        if bad:
            raise TypeError('unknown option(s): %s' % ', '.join(sorted(bad)))
        self.cfg = dict(DEFAULTS)
        self.cfg.update(opts)
        self._want_port = port
        self._want_http_port = http_port
        self._want_control_port = control_port
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix='adcs-emu-')
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.rng = random.Random(seed) if seed is not None else secrets.SystemRandom()
        self._templates0 = templates
        self._socks = set()
        self._servers = []
        self._threads = []
        self.port = self.http_port = self.control_port = None
        self._make_tls_pki()
        self._make_ca()
        self._reset_state()

    # ---- key material
    def _make_tls_pki(self):
        cfg = self.cfg
        k = lambda: ec.generate_private_key(ec.SECP256R1())
        self.tls_root_key = k()
        self.tls_root = _make_cert(_name('Stampede Test TLS Root'), self.tls_root_key.public_key(),
                                   _name('Stampede Test TLS Root'), self.tls_root_key,
                                   self.tls_root_key.public_key(), ca=True, days=(-2, 3650))
        self.tls_int_key = k()
        self.tls_int = _make_cert(_name('Stampede Test TLS Intermediate'),
                                  self.tls_int_key.public_key(), self.tls_root.subject,
                                  self.tls_root_key, self.tls_root_key.public_key(), ca=True,
                                  days=(-2, 3650), pathlen=0)
        self.tls_key = k()
        prof = cfg['tls_profile']
        names = cfg['tls_names'] or [cfg['host']]
        leaf_name = _name(names[0])
        kw = dict(ca=False, san=_san(names), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
        now = _utcnow()
        chain = [self.tls_int]
        if prof in ('good', 'leaf-only'):
            leaf = _make_cert(leaf_name, self.tls_key.public_key(), self.tls_int.subject,
                              self.tls_int_key, self.tls_int_key.public_key(), **kw)
            if prof == 'leaf-only':
                chain = []
        elif prof == 'self-signed':
            leaf = _make_cert(leaf_name, self.tls_key.public_key(), leaf_name, self.tls_key,
                              self.tls_key.public_key(), **kw)
            chain = []
        elif prof == 'wrong-name':
            kw['san'] = _san(['wrong-host.test'])
            leaf = _make_cert(_name('wrong-host.test'), self.tls_key.public_key(),
                              self.tls_int.subject, self.tls_int_key, self.tls_int_key.public_key(),
                              **kw)
        elif prof == 'not-yet-valid':
            leaf = _make_cert(leaf_name, self.tls_key.public_key(), self.tls_int.subject,
                              self.tls_int_key, self.tls_int_key.public_key(),
                              not_before=now + datetime.timedelta(days=1),
                              not_after=now + datetime.timedelta(days=30), **kw)
        elif prof == 'expired':
            leaf = _make_cert(leaf_name, self.tls_key.public_key(), self.tls_int.subject,
                              self.tls_int_key, self.tls_int_key.public_key(),
                              not_before=now - datetime.timedelta(days=30),
                              not_after=now - datetime.timedelta(days=1), **kw)
        else:
            raise ValueError('unknown tls_profile %r' % prof)
        self.tls_cert = leaf
        self.tls_root_path = os.path.join(self.workdir, 'tls-root.pem')
        self.tls_chain_path = os.path.join(self.workdir, 'tls-server-chain.pem')
        key_path = os.path.join(self.workdir, 'tls-server.key')
        with open(self.tls_root_path, 'wb') as f:
            f.write(_pem(self.tls_root))
        with open(self.tls_chain_path, 'wb') as f:
            f.write(b''.join(_pem(c) for c in [leaf] + chain))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(self.tls_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls_chain_path, key_path)
        ctx.set_alpn_protocols(['http/1.1'])          # never h2 (E1, §2.4)
        self._ssl_ctx = ctx
        der = leaf.public_bytes(serialization.Encoding.DER)
        alg = leaf.signature_hash_algorithm
        self.channel_bindings = channel_binding_hash(der, alg.name if alg else None)

    def _make_ca(self):
        self.ca_root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca_root = _make_cert(_name('Stampede Test ADCS Root CA'), self.ca_root_key.public_key(),
                                  _name('Stampede Test ADCS Root CA'), self.ca_root_key,
                                  self.ca_root_key.public_key(), ca=True, days=(-2, 7300))
        self.ca_root_path = os.path.join(self.workdir, 'adcs-root.pem')
        with open(self.ca_root_path, 'wb') as f:
            f.write(_pem(self.ca_root))
        self.generations = [CaGeneration(0, self.ca_root_key, self.ca_root, self.cfg['ca_name'])]

    def _reset_state(self):
        with self._lock:
            self.templates = {t.name: t for t in (self._templates0 or default_templates())}
            self.requests = {}
            self.next_id = self.cfg['first_id']
            self.pending_next = 0
            self.faults = {}
            self._log = []
            self._conns = {}
            self._conn_seq = getattr(self, '_conn_seq', 0)     # ids stay unique across reset()
            self._tls_failures = []

    # ---- lifecycle
    def start(self):
        srv = _TLSServer(('127.0.0.1', self._want_port), _Handler, self, True)
        self.port = srv.server_address[1]
        self._serve(srv)
        if self._want_http_port is not None:
            plain = _TLSServer(('127.0.0.1', self._want_http_port), _Handler, self, False)
            self.http_port = plain.server_address[1]
            self._serve(plain)
        if self._want_control_port is not None:
            ctl = _ControlServer(('127.0.0.1', self._want_control_port), self)
            self.control_port = ctl.server_address[1]
            self._serve(ctl)
        return self

    def _serve(self, srv):
        t = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.1},
                             name='adcs-emu-%d' % srv.server_address[1], daemon=True)
        t.start()
        self._servers.append(srv)
        self._threads.append(t)

    def stop(self):
        self._stopping.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self._servers, self._threads = [], []
        if self._own_workdir:
            shutil.rmtree(self.workdir, True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def _track(self, sock, add):
        with self._lock:
            (self._socks.add if add else self._socks.discard)(sock)

    def _note_tls_failure(self, addr, err):
        with self._lock:
            self._tls_failures.append({'peer': '%s:%d' % addr[:2], 'error': str(err)})

    def url(self, path='/certsrv/', host=None):
        return 'https://%s:%d%s' % (host or self.cfg['host'], self.port, path)

    def curl_resolve(self):
        """curl --resolve argument mapping the test host name to 127.0.0.1."""
        return '%s:%d:127.0.0.1' % (self.cfg['host'], self.port)

    # ---- control API (E27) — every method is thread-safe
    def configure(self, **opts):
        bad = set(opts) - set(DEFAULTS)
        if bad:
            raise KeyError('unknown option(s): %s' % ', '.join(sorted(bad)))
        for k in ('tls_profile', 'tls_names', 'host'):
            if k in opts:
                raise KeyError('%s is fixed per instance (start another emulator)' % k)
        with self._lock:
            self.cfg.update(opts)

    def add_template(self, template):
        with self._lock:
            self.templates[template.name] = template

    def set_template(self, name, **attrs):
        with self._lock:
            t = self.templates[name]
            for k, v in attrs.items():
                if not hasattr(t, k):
                    raise KeyError(k)
                setattr(t, k, v if k != 'users' or v is None else [u.lower() for u in v])

    def set_pending_next(self, count=1):
        """The next `count` accepted submissions become pending whatever the template policy."""
        with self._lock:
            self.pending_next = int(count)

    def approve(self, rid):
        """Issue pending request `rid` with the current CA generation."""
        with self._lock:
            r = self.requests[int(rid)]
            if r.state != 'pending':
                raise ValueError('request %d is %s, not pending' % (r.id, r.state))
            self._issue(r)
            return r.to_json()

    def deny(self, rid, officer=None):
        with self._lock:
            r = self.requests[int(rid)]
            if r.state != 'pending':
                raise ValueError('request %d is %s, not pending' % (r.id, r.state))
            r.state, r.hresult = 'denied', 0x80094014
            r.message = 'Denied by %s' % (officer or self.cfg['officer'])
            r.updated = time.time()
            return r.to_json()

    def roll_ca(self):
        """CA renewal with a new key: generation k+1 becomes current; returns k+1."""
        gen = CaGeneration(len(self.generations), self.ca_root_key, self.ca_root, self.cfg['ca_name'])
        with self._lock:
            gen.index = len(self.generations)
            self.generations.append(gen)
            return gen.index

    @property
    def renewal_index(self):
        with self._lock:
            return len(self.generations) - 1

    def ca_cert(self, index=None):
        with self._lock:
            return self.generations[self.renewal_index if index is None else index].cert

    def set_fault(self, route, delay=None, status=None, drop=False, times=None, rst_after=None):
        """Fault on `route` ('/certsrv/certfnsh.asp', ... or '*'): sleep `delay` s (capped) before
        answering (certfnsh.asp commits the request first); answer `status` (500|503) instead of
        the page; `drop`: close the connection without an answer; `rst_after`: send only the
        first N bytes of the answer (status line, headers, body as one stream; at most all but
        the last byte), then reset the connection (TCP RST, no TLS close_notify) after the
        request was handled (certfnsh.asp commits it). `times`: how many requests the fault
        applies to (None = until cleared)."""
        with self._lock:
            self.faults[route.lower()] = {'delay': min(float(delay or 0), MAX_DELAY),
                                          'status': status, 'drop': bool(drop), 'times': times,
                                          'rst_after': None if rst_after is None
                                          else max(0, int(rst_after))}

    def clear_faults(self):
        with self._lock:
            self.faults = {}

    def reset(self, keep_ca=True):
        """Forget requests, log, connections, faults and template changes; the CA stays unless
        keep_ca=False (then generations go back to [0] with the same root)."""
        with self._lock:
            if not keep_ca:
                self.generations = self.generations[:1]
            self._reset_state()

    def request_state(self, rid):
        with self._lock:
            r = self.requests.get(int(rid))
            return None if r is None else r.to_json()

    def issued_cert(self, rid):
        with self._lock:
            r = self.requests.get(int(rid))
            return None if r is None else r.cert

    def log(self, route=None, conn=None):
        """Request log entries (dicts, E29), optionally filtered."""
        with self._lock:
            return [dict(e) for e in self._log
                    if (route is None or e['route'] == route.lower())
                    and (conn is None or e['conn'] == conn)]

    def count(self, route=None, conn=None):
        return len(self.log(route, conn))

    def counts(self):
        """{'routes': {route: n}, 'connections': {conn_id: n}, 'total': n}."""
        with self._lock:
            routes, conns = {}, {}
            for e in self._log:
                routes[e['route']] = routes.get(e['route'], 0) + 1
                conns[e['conn']] = conns.get(e['conn'], 0) + 1
            return {'routes': routes, 'connections': conns, 'total': len(self._log)}

    def connections(self):
        with self._lock:
            return [{'id': c.id, 'peer': c.peer, 'requests': c.requests, 'user': c.user,
                     'scheme': c.scheme, 'handshakes': c.handshakes, 'opened': c.opened,
                     'closed': c.closed, 'tls_version': c.tls_version}
                    for c in self._conns.values()]

    def tls_failures(self):
        with self._lock:
            return list(self._tls_failures)

    def state(self):
        with self._lock:
            return {'https_port': self.port, 'http_port': self.http_port,
                    'control_port': self.control_port, 'renewal_index': self.renewal_index,
                    'next_id': self.next_id, 'pending_next': self.pending_next,
                    'cfg': {k: v for k, v in self.cfg.items() if k != 'password'},
                    'templates': [t.to_json() for t in self.templates.values()],
                    'requests': [r.to_json() for r in self.requests.values()],
                    'faults': dict(self.faults)}

    # ---- internals
    def _new_conn(self, peer, tls_version):
        with self._lock:
            self._conn_seq += 1
            c = _Conn(self._conn_seq, '%s:%d' % peer[:2])
            c.tls_version = tls_version
            self._conns[c.id] = c
            return c

    def _fault_for(self, route):
        with self._lock:
            for key in (route, '*'):
                f = self.faults.get(key)
                if f is None:
                    continue
                if f['times'] is not None:
                    if f['times'] <= 0:
                        continue
                    f['times'] -= 1
                return dict(f)
        return None

    def _read_body(self, h):
        te = (h.headers.get('Transfer-Encoding') or '').lower()
        if 'chunked' in te:
            out = b''
            while True:
                line = h.rfile.readline(1024)
                size = int(line.split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while h.rfile.readline(1024) not in (b'\r\n', b'\n', b''):
                        pass
                    return out
                if len(out) + size > MAX_BODY:
                    raise ValueError('body too large')
                out += h.rfile.read(size)
                h.rfile.readline(1024)
        n = int(h.headers.get('Content-Length') or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError('body too large')
        return h.rfile.read(n) if n else b''

    def _send(self, h, status, body, ctype='text/html', headers=(), entry=None, close=False):
        if entry is not None:
            entry['status'] = status
            self._commit_log(entry)     # logged before the client can see the answer
        h.send_response(status)
        ctype_sent = False
        for k, v in headers:
            h.send_header(k, v)
            ctype_sent = ctype_sent or k.lower() == 'content-type'
        if ctype and not ctype_sent:
            h.send_header('Content-Type', ctype)
        h.send_header('X-Powered-By', 'ASP.NET')
        if not h.conn.cookie_sent and 'aspsessionid' not in (h.headers.get('Cookie') or '').lower():
            h.conn.cookie_sent = True
            cname = 'ASPSESSIONID' + ''.join(self.rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ')
                                             for _ in range(8))
            cval = ''.join(self.rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ') for _ in range(24))
            h.send_header('Set-Cookie', '%s=%s; secure; path=/' % (cname, cval))
        h.send_header('Content-Length', str(len(body)))
        if close or self.cfg['close_after_response']:
            h.send_header('Connection', 'close')
            h.close_connection = True
        h.end_headers()
        if h.command != 'HEAD':
            h.wfile.write(body)
        h.wfile.flush()

    def _challenges(self):
        modes = self._modes()
        out = []
        if 'negotiate' in modes:
            out.append(('WWW-Authenticate', 'Negotiate'))
        if 'ntlm' in modes:
            out.append(('WWW-Authenticate', 'NTLM'))
        if 'basic' in modes:
            out.append(('WWW-Authenticate', 'Basic realm="%s"' % self.cfg['realm']))
        return out

    def _modes(self):
        a = self.cfg['auth'].lower().replace('negotiate-only', 'negotiate')
        return set(x for x in a.split('+') if x)

    def _domain_ok(self, dom):
        d = (dom or '').lower()
        return d in ('', self.cfg['domain'].lower(), self.cfg['dns_domain'].lower(),
                     self.cfg['dns_domain'].split('.')[0].lower())

    def _authenticate(self, h, entry):
        """-> (True, None) to proceed, or (False, [headers]) for a 401."""
        conn = h.conn
        modes = self._modes()
        if 'none' in modes:
            entry['auth'] = 'anonymous'
            return True, None
        hdr = h.headers.get('Authorization')
        if hdr is None:
            if conn.user is not None and not self.cfg['per_request_auth']:
                entry['auth'], entry['user'] = conn.scheme + ':connection', conn.user
                return True, None
            entry['auth'] = 'none'
            return False, self._challenges()
        scheme, _, token = hdr.strip().partition(' ')
        s = scheme.lower()
        token = token.strip()
        if s == 'basic':
            entry['auth'] = 'basic'
            if 'basic' not in modes:
                entry['auth_result'] = 'scheme not offered'
                return False, self._challenges()
            try:
                user, _, pw = base64.b64decode(token, validate=True).decode('utf-8').partition(':')
            except (ValueError, UnicodeDecodeError):
                entry['auth_result'] = 'malformed'
                return False, self._challenges()
            dom, name = '', user
            if '\\' in user:
                dom, name = user.split('\\', 1)
            elif '@' in user:
                name, dom = user.split('@', 1)
            ok_user = hmac.compare_digest(name.lower().encode(), self.cfg['user'].lower().encode())
            ok_pw = hmac.compare_digest(pw.encode(), self.cfg['password'].encode())
            if ok_user and ok_pw and self._domain_ok(dom):
                entry['auth_result'], entry['user'] = 'ok', user
                return True, None
            entry['auth_result'] = 'bad credentials'
            return False, self._challenges()
        if s in ('ntlm', 'negotiate'):
            entry['auth'] = s
            if s not in modes:
                entry['auth_result'] = 'scheme not offered'
                return False, self._challenges()
            try:
                raw = base64.b64decode(token, validate=True)
            except ValueError:
                raw = b''
            if not raw.startswith(NTLM_SIG) or len(raw) < 12:
                # SPNEGO/Kerberos: no KDC here (E13)
                entry['auth_result'] = 'unsupported token (no Kerberos)'
                conn.challenge = None
                return False, self._challenges()
            if 'ntlm' not in modes:
                entry['auth_result'] = 'NTLM provider disabled'
                conn.challenge = None
                return False, self._challenges()
            mtype = struct.unpack_from('<I', raw, 8)[0]
            if mtype == 1:
                entry['ntlm_leg'] = 1
                entry['auth_result'] = 'challenge'
                conn.user = None
                type2 = self._ntlm_type2(conn, raw)
                return False, [('WWW-Authenticate', '%s %s' % (scheme, base64.b64encode(type2)
                                                               .decode()))]
            if mtype == 3:
                entry['ntlm_leg'] = 3
                chal, conn.challenge = conn.challenge, None
                if chal is None:
                    entry['auth_result'] = 'type-3 without a type-2 on this connection'
                    return False, self._challenges()
                ok, why, who = self._ntlm_verify(raw, chal)
                if not ok:
                    entry['auth_result'] = why
                    return False, self._challenges()
                conn.handshakes += 1
                entry['auth_result'], entry['user'] = 'ok', who
                if not self.cfg['per_request_auth']:
                    conn.user, conn.scheme = who, s
                return True, None
            entry['auth_result'] = 'unexpected NTLM message type %d' % mtype
            return False, self._challenges()
        entry['auth'] = s
        entry['auth_result'] = 'scheme not offered'
        return False, self._challenges()

    def _ntlm_type2(self, conn, type1):
        cfg = self.cfg
        req = struct.unpack_from('<I', type1, 12)[0] if len(type1) >= 16 else 0
        unicode = bool(req & NTLMSSP_NEGOTIATE_UNICODE)
        enc = (lambda s: s.encode('utf-16-le')) if unicode else (lambda s: s.encode('ascii'))
        flags = (NTLMSSP_REQUEST_TARGET | NTLMSSP_NEGOTIATE_NTLM | NTLMSSP_NEGOTIATE_ALWAYS_SIGN |
                 NTLMSSP_TARGET_TYPE_DOMAIN | NTLMSSP_NEGOTIATE_TARGET_INFO |
                 NTLMSSP_NEGOTIATE_VERSION)
        flags |= NTLMSSP_NEGOTIATE_UNICODE if unicode else NTLM_NEGOTIATE_OEM
        flags |= req & (NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | NTLMSSP_NEGOTIATE_128 |
                        NTLMSSP_NEGOTIATE_56)
        challenge = bytes(self.rng.getrandbits(8) for _ in range(8))
        u = lambda s: s.encode('utf-16-le')
        tinfo = _av_pairs([(AV_NB_DOMAIN, u(cfg['domain'])), (AV_NB_COMPUTER, u(cfg['computer'])),
                           (AV_DNS_DOMAIN, u(cfg['dns_domain'])),
                           (AV_DNS_COMPUTER, u('%s.%s' % (cfg['computer'].lower(),
                                                          cfg['dns_domain']))),
                           (AV_TIMESTAMP, struct.pack('<Q', _filetime()))])
        target = enc(cfg['domain'])
        hdr_len = 56
        msg = NTLM_SIG + struct.pack('<I', 2)
        msg += struct.pack('<HHI', len(target), len(target), hdr_len)
        msg += struct.pack('<I', flags) + challenge + b'\x00' * 8
        msg += struct.pack('<HHI', len(tinfo), len(tinfo), hdr_len + len(target))
        msg += bytes([10, 0]) + struct.pack('<H', 20348) + b'\x00\x00\x00\x0f'   # version
        assert len(msg) == hdr_len
        conn.challenge = challenge
        conn.challenge_unicode = unicode
        return msg + target + tinfo

    def _ntlm_verify(self, msg, challenge):
        cfg = self.cfg
        try:
            lm = _secbuf(msg, 12)
            nt = _secbuf(msg, 20)
            dom_b, user_b = _secbuf(msg, 28), _secbuf(msg, 36)
            flags = struct.unpack_from('<I', msg, 60)[0] if len(msg) >= 64 else 0
        except (struct.error, ValueError):
            return False, 'malformed type-3', None
        if flags & NTLMSSP_NEGOTIATE_UNICODE:
            dec = lambda b: b.decode('utf-16-le', 'replace')
        else:
            dec = lambda b: b.decode('latin-1')
        domain, user = dec(dom_b), dec(user_b)
        who = ('%s\\%s' % (domain, user)) if domain else user
        if len(nt) <= 24:
            return False, 'LM/NTLMv1 response rejected', who
        proof, temp = nt[:16], nt[16:]
        if temp[:2] != b'\x01\x01' or len(temp) < 28:
            return False, 'malformed NTLMv2 blob', who
        if user.lower() != cfg['user'].lower() or not self._domain_ok(domain):
            return False, 'unknown user', who
        good = False
        for d in dict.fromkeys([domain, domain.upper(), cfg['domain']]):
            key = ntowfv2(cfg['password'], user, d)
            if hmac.compare_digest(hmac.new(key, challenge + temp, 'md5').digest(), proof):
                good = True
                break
        if not good:
            return False, 'bad credentials (NTProofStr mismatch)', who
        epa = cfg['epa']
        if epa != 'off':
            try:
                avs = dict(_parse_av_pairs(temp[28:]))
            except ValueError:
                return False, 'malformed AV pairs', who
            cb = avs.get(AV_CHANNEL_BINDINGS)
            present = cb is not None and cb != b'\x00' * 16
            if epa == 'require' and not present:
                return False, 'EPA: channel binding missing', who
            if present and not hmac.compare_digest(cb, self.channel_bindings):
                return False, 'EPA: channel binding mismatch', who
        return True, 'ok', who

    # ---- request dispatch
    def _dispatch(self, h, method):
        conn = h.conn
        with self._lock:
            conn.requests += 1
        split = urllib.parse.urlsplit(h.path)
        route = split.path.lower()
        entry = {'seq': None, 'time': time.time(), 'conn': conn.id, 'conn_request': conn.requests,
                 'method': method, 'path': split.path, 'route': route, 'query': split.query,
                 'ua': h.headers.get('User-Agent', ''), 'auth': None, 'auth_result': None,
                 'user': None, 'ntlm_leg': None, 'probe': False, 'content_type':
                 h.headers.get('Content-Type'), 'form': None, 'outcome': None, 'req_id': None,
                 'status': None, 'tls': h.server.tls, 'variant': None}
        try:
            try:
                body = self._read_body(h)
            except ValueError:
                self._send(h, 413, iis_status_page(413, 'Request Entity Too Large'), entry=entry,
                           close=True)
                return
            entry['body_len'] = len(body)
            if method == 'POST' and not body and h.headers.get('Authorization'):
                entry['probe'] = True
            if not h.server.tls:
                self._send(h, 403, iis_status_page(403, 'Forbidden: Access is denied.',
                                                   'SSL is required to view this resource.'),
                           entry=entry)
                entry['outcome'] = 'https required'
                return
            ok, chal = self._authenticate(h, entry)
            if not ok:
                d = min(float(self.cfg['challenge_delay'] or 0), MAX_DELAY)
                if d:
                    self._stopping.wait(d)
                entry['outcome'] = 'unauthorized'
                self._send(h, 401, unauthorized_page(), headers=chal, entry=entry)
                return
            if entry['probe'] and route == '/certsrv/certfnsh.asp':
                # an authenticated empty POST still creates nothing
                pass
            fault = self._fault_for(route)
            if fault and fault['drop']:
                entry['outcome'] = 'fault: dropped'
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            status, rbody, headers = self._route(h, method, route, split.query, body, entry)
            if fault and fault['delay']:
                self._stopping.wait(fault['delay'])
            if fault and fault['status']:
                st = int(fault['status'])
                reason = {500: 'Internal Server Error', 503: 'Service Unavailable'}.get(st, 'Error')
                entry['outcome'] = (entry['outcome'] or '') + ' (fault: %d)' % st
                self._send(h, st, iis_status_page(st, reason, 'injected fault'), entry=entry)
                return
            if fault and fault.get('rst_after') is not None:
                self._send_rst(h, status, rbody, headers, entry, fault['rst_after'])
                return
            self._send(h, status, rbody, headers=headers, entry=entry)
        finally:
            self._commit_log(entry)

    def _send_rst(self, h, status, body, headers, entry, n):
        """The answer _send would write, cut after `n` bytes, then a TCP RST (fault rst_after)."""
        real, buf = h.wfile, io.BytesIO()
        h.wfile = buf
        try:
            self._send(h, status, body, headers=headers, entry=entry)
        finally:
            h.wfile = real
        data = buf.getvalue()
        n = min(n, len(data) - 1)
        entry['outcome'] = (entry['outcome'] or '') + ' (fault: reset after %d of %d bytes)' % (
            n, len(data))
        h.close_connection = True
        try:
            if n:
                real.write(data[:n])
                real.flush()
            self._stopping.wait(0.2)        # the client reads the part before the reset
            # linger 0: close() sends RST; the socket really closes when the handler lets go
            # of its rfile/wfile (right after this returns)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            h.connection.close()
        except OSError:
            pass

    def _commit_log(self, entry):
        with self._lock:
            if entry['seq'] is None:
                entry['seq'] = len(self._log) + 1
                self._log.append(entry)

    def _route(self, h, method, route, query, body, entry):
        """-> (status, body, headers) — headers may include Content-Type."""
        cfg = self.cfg
        path = h.path.split('?', 1)[0]
        if cfg['lowercase_redirect'] and path.lower().startswith('/certsrv') and \
                not path.startswith('/certsrv'):
            loc = 'https://%s:%d%s' % (cfg['host'], self.port, '/certsrv' + path[8:])
            entry['outcome'] = 'redirect'
            return 302, iis_status_page(302, 'Object moved'), [('Location', loc)]
        if route == '/certsrv':
            entry['outcome'] = 'redirect'
            return 301, iis_status_page(301, 'Moved Permanently'), [
                ('Location', 'https://%s:%d/certsrv/' % (cfg['host'], self.port))]
        if method not in ('GET', 'HEAD', 'POST'):
            return 405, iis_status_page(405, 'Method Not Allowed'), []
        handler = {
            '/certsrv/': self._r_welcome, '/certsrv/default.asp': self._r_welcome,
            '/certsrv/certrqxt.asp': self._r_certrqxt, '/certsrv/certfnsh.asp': self._r_certfnsh,
            '/certsrv/certnew.cer': self._r_certnew_cer, '/certsrv/certnew.p7b': self._r_certnew_p7b,
            '/certsrv/certcarc.asp': self._r_certcarc, '/certsrv/certckpn.asp': self._r_certckpn,
        }.get(route)
        if handler is None:
            entry['outcome'] = 'not found'
            return 404, iis_status_page(404, 'File or directory not found.'), []
        return handler(h, method, query, body, entry)

    def _variant(self, h):
        if self.cfg['force_variant'] in ('text', 'script'):
            return self.cfg['force_variant']
        return 'script' if 'Mozilla' in h.headers.get('User-Agent', '') else 'text'

    def _r_welcome(self, h, method, query, body, entry):
        entry['outcome'] = 'welcome'
        return 200, page('Welcome', [
            '<P ID=locWelcome>Use this Web site to request a certificate for your Web browser, '
            'e-mail client, or other program.</P>',
            '<P ID=locSelectTask><B>Select a task:</B><BR>',
            '<A Href="/certsrv/certrqus.asp">Request a certificate</A><BR>',
            '<A Href="/certsrv/certckpn.asp">View the status of a pending certificate request</A>'
            '<BR>', '<A Href="/certsrv/certcarc.asp">Download a CA certificate, certificate chain,'
            ' or CRL</A></P>'], self.cfg['ca_name']), []

    def _user_of(self, entry):
        u = entry.get('user') or ''
        return (u.split('\\', 1)[1] if '\\' in u else u.split('@', 1)[0]).lower()

    def _r_certrqxt(self, h, method, query, body, entry):
        user = self._user_of(entry)
        with self._lock:
            ts = [t for t in self.templates.values()
                  if t.published and (t.users is None or user in t.users)]
        opts = []
        for t in ts:
            fields = ['E', t.name, '1', '4', '0', '0', '1', '0', '0', '0', '0', '0', '0', t.display]
            opts.append('<Option Value="%s">%s</Option>' % (_esc(';'.join(fields)), _esc(t.display)))
        if not opts:
            opts = ['<Option Value="X">No templates could be found.</Option>']
        entry['outcome'] = 'form'
        return 200, page('Submit a Certificate Request or Renewal Request', [
            '<Form Name=SubmittedData Action="certfnsh.asp" Method=Post>',
            '<Input Type=Hidden Name=Mode Value="newreq">',
            '<TextArea Name=CertRequest ID=locTaRequest Rows=10 Cols=64></TextArea>',
            '<Select Name=lbCertTemplate ID=lbCertTemplateID>'] + opts + [
            '</Select>',
            '<TextArea Name=CertAttrib ID=locTaAttrib Rows=2 Cols=64></TextArea>',
            '<Input Type=Hidden Name=FriendlyType Value="">',
            '<Input Type=Hidden Name=ThumbPrint Value="">',
            '<Input Type=Hidden Name=TargetStoreFlags Value="0">',
            '<Input Type=Hidden Name=SaveCert Value="yes">',
            '<Input Type=Submit ID=btnSubmit Value="Submit &gt;">', '</Form>'],
            self.cfg['ca_name']), []

    # ---- certfnsh.asp
    def _r_certfnsh(self, h, method, query, body, entry):
        ctype = (h.headers.get('Content-Type') or '').split(';')[0].strip().lower()
        if method != 'POST' or entry['probe']:
            if entry['probe']:
                entry['outcome'] = 'empty probe'
            return self._error(entry, 'newreq', 'No form data was received.', 0x80070057,
                               outcome=entry['outcome'] or 'error: no form data')
        if ctype != 'application/x-www-form-urlencoded' or not body:
            entry['multipart'] = ctype.startswith('multipart/')
            return self._error(entry, 'newreq', 'No form data was received.', 0x80070057,
                               outcome='error: no form data')
        form = {}
        for k, v in urllib.parse.parse_qsl(body.decode('utf-8', 'replace'), keep_blank_values=True):
            form.setdefault(k.lower(), v)
        mode = form.get('mode', '')
        attrs, attr_names = {}, []
        for line in form.get('certattrib', '').split('\n'):
            line = line.strip('\r')
            if ':' in line:
                n, _, v = line.partition(':')
                attr_names.append(n.strip())
                attrs.setdefault(n.strip().lower(), v.strip())
        entry['form'] = {'mode': mode, 'template': attrs.get('certificatetemplate'),
                         'attributes': attr_names, 'fields': sorted(form)}
        if self.cfg['ca_down']:
            return self._error(entry, mode or 'newreq', '(none)', 0x800706BA,
                               outcome='error: ca down',
                               cause='The Certification Authority Service has not been started.')
        if mode == 'chkpnd':
            return self._chkpnd(form.get('reqid', ''), entry)
        if mode != 'newreq':
            return self._error(entry, mode, '(none)', 0x80070057, outcome='error: bad mode')
        with self._lock:
            rid = self.next_id
            self.next_id += 1
            req = Request(rid, entry.get('user'), attrs.get('certificatetemplate'), None)
            req.friendly = form.get('friendlytype', '')
            self.requests[rid] = req
        entry['req_id'] = rid
        csr_text = form.get('certrequest', '')
        csr, err = self._parse_csr(csr_text)
        with self._lock:
            if csr is not None:
                req.csr_der = csr.public_bytes(serialization.Encoding.DER)
                req.csr_sha256 = hashlib.sha256(req.csr_der).hexdigest()
            if err is not None:
                code, text = err
                return self._deny(req, entry, 'Error Parsing Request  %s 0x%x' % (text, code), code)
            tname = attrs.get('certificatetemplate')
            if not tname:
                req.state, req.hresult, req.message = 'error', 0x80094801, HRESULTS[0x80094801][1]
                return self._error(entry, 'newreq', req.message, 0x80094801,
                                   outcome='error: no template')
            t = self.templates.get(tname)
            if t is None or not t.published:
                return self._deny(req, entry, 'Denied by Policy Module  0x80094800, The request '
                                  'was for a certificate template that is not supported by the '
                                  'Active Directory Certificate Services policy: %s.' % tname,
                                  0x80094800)
            req.template = t.name
            if t.users is not None and self._user_of(entry) not in t.users:
                return self._deny(req, entry, 'Denied by Policy Module  0x80094012, The '
                                  'permissions on the certificate template do not allow the '
                                  'current user to enroll for this type of certificate.', 0x80094012)
            bits = getattr(csr.public_key(), 'key_size', 0)
            if t.min_key_bits and bits < t.min_key_bits:
                return self._deny(req, entry, 'Denied by Policy Module  0x80094811, The public key '
                                  'does not meet the minimum size required by the specified '
                                  'certificate template.', 0x80094811)
            if t.policy == 'deny':
                code = t.deny_code
                msg = t.deny_message or 'Denied by Policy Module  0x%x, %s' % (
                    code, HRESULTS.get(code, ('', 'Denied by policy.'))[1])
                return self._deny(req, entry, msg, code)
            if self.pending_next > 0 or t.policy == 'manual':
                if self.pending_next > 0:
                    self.pending_next -= 1
                req.state, req.message, req.hresult = 'pending', 'Taken Under Submission', 0
                entry['outcome'] = 'pending'
                cookie = 'Requests=%s; path=/certsrv' % urllib.parse.quote(
                    '[%d,0,yes,%s]' % (rid, req.friendly.replace(',', ' ').replace(']', ' ')),
                    safe='[],')
                return 200, pending_page(rid), [('Set-Cookie', cookie)]
            self._issue(req)
            entry['outcome'] = 'issued'
            entry['variant'] = self._variant(h)
            return 200, issued_page(rid, req.ca_index, entry['variant']), []

    def _parse_csr(self, text):
        """-> (csr, None) or (None, (hresult, text))."""
        try:
            if 'BEGIN' in text:
                m = re.search(r'-----BEGIN [A-Z0-9 ]+-----(.*?)-----END', text, re.S)
                b64 = m.group(1) if m else ''
            else:
                b64 = text
            b64 = re.sub(r'\s+', '', b64)
            der = base64.b64decode(b64, validate=True)
            csr = x509.load_der_x509_csr(der)
        except Exception:
            return None, (0x8009310B, HRESULTS[0x8009310B][1])
        try:
            if csr.is_signature_valid or self._ra_signed(csr):
                return csr, None
        except Exception:
            pass
        return csr, (0x80090006, HRESULTS[0x80090006][1])

    def _ra_signed(self, csr):
        """True if a configured registration authority signed `csr`."""
        for pem in self.cfg['ra_certs']:
            key = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem).public_key()
            try:
                if isinstance(key, ec.EllipticCurvePublicKey):
                    key.verify(csr.signature, csr.tbs_certrequest_bytes,
                               ec.ECDSA(csr.signature_hash_algorithm))
                else:
                    key.verify(csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(),
                               csr.signature_hash_algorithm)
                return True
            except Exception:
                continue
        return False

    def _deny(self, req, entry, message, code):
        req.state, req.message, req.hresult = 'denied', message, code
        req.updated = time.time()
        entry['outcome'] = 'denied 0x%08x' % code
        return 200, denied_page(req.id, message), []

    def _error(self, entry, mode, disp_msg, code, outcome, cause='(none)', disposition=1):
        entry['outcome'] = outcome
        return 200, error_page(mode, disposition, disp_msg, format_hresult(code), cause=cause), []

    def _chkpnd(self, rid_text, entry):
        if not re.fullmatch(r'[0-9]{1,10}', rid_text or ''):
            return self._error(entry, 'chkpnd', '(none)', 0x80070057, outcome='error: bad id')
        with self._lock:
            r = self.requests.get(int(rid_text))
        entry['req_id'] = int(rid_text)
        if r is None:
            return self._error(entry, 'chkpnd', '(none)', 0x80094004, outcome='error: unknown id')
        if r.state == 'issued':
            entry['outcome'] = 'issued'
            entry['variant'] = self._variant_from(entry)
            return 200, issued_page(r.id, r.ca_index, entry['variant']), []
        if r.state == 'pending':
            entry['outcome'] = 'pending'
            return 200, pending_page(r.id, recheck=True), []
        if r.state == 'denied':
            entry['outcome'] = 'denied 0x%08x' % r.hresult
            return 200, denied_page(r.id, r.message), []
        return self._error(entry, 'chkpnd', r.message or '(none)', r.hresult or 0x80070057,
                           outcome='error')

    def _variant_from(self, entry):
        if self.cfg['force_variant'] in ('text', 'script'):
            return self.cfg['force_variant']
        return 'script' if 'Mozilla' in entry['ua'] else 'text'

    def _issue(self, req):
        gen = self.generations[-1]
        t = self.templates.get(req.template)
        csr = x509.load_der_x509_csr(req.csr_der)
        san = None
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            pass
        eku = [_EKU[e] for e in (t.eku if t else ('serverAuth',)) if e in _EKU]
        req.cert = _make_cert(csr.subject, csr.public_key(), gen.cert.subject, gen.key,
                              gen.key.public_key(), ca=False, days=(-1, t.days if t else 365),
                              san=san, eku=eku or None,
                              extra=[(_ms_template_name_ext(req.template or ''), False)])
        req.state, req.ca_index, req.hresult = 'issued', gen.index, 0
        req.message = 'Issued'
        req.updated = time.time()

    # ---- certnew.cer / certnew.p7b (E21, E22)
    _FETCH_MODE = '(certnew.cer/certnew.p7b/certcrl.crl certificate/crl fetch)'

    def _fetch(self, h, query, entry, p7b):
        q = _ci_query(query)
        reqid, enc = q.get('reqid', ''), q.get('enc', '')
        ua_browser = 'Mozilla' in entry['ua']
        if self.cfg['ca_down']:
            return self._error(entry, self._FETCH_MODE, '(none)', 0x800706BA, outcome='error: ca down',
                               disposition=0, cause='The Certification Authority Service has '
                               'not been started.')
        with self._lock:
            if reqid == 'CACert':
                ren = q.get('renewal')
                if ren is None or not re.fullmatch(r'[0-9]{1,5}', ren) or \
                        int(ren) >= len(self.generations):
                    return self._error(entry, self._FETCH_MODE, '(none)', 0x80070057,
                                       outcome='error: bad renewal index', disposition=0)
                gen = self.generations[int(ren)]
                entry['outcome'] = 'ca cert %d' % gen.index
                certs = [self.ca_root, gen.cert]
                kind = 'ca'
            elif re.fullmatch(r'[0-9]{1,10}', reqid):
                entry['req_id'] = int(reqid)
                r = self.requests.get(int(reqid))
                if r is None:
                    return self._error(entry, self._FETCH_MODE, '(none)', 0x80094004,
                                       outcome='error: unknown id', disposition=0)
                if r.state == 'pending':
                    return self._error(entry, self._FETCH_MODE, 'Taken Under Submission', 0,
                                       outcome='pending', disposition=5)
                if r.state == 'denied':
                    return self._error(entry, self._FETCH_MODE, r.message, r.hresult,
                                       outcome='denied 0x%08x' % r.hresult, disposition=2)
                if r.state != 'issued':
                    return self._error(entry, self._FETCH_MODE, r.message or '(none)',
                                       r.hresult or 0x80070057, outcome='error', disposition=1)
                entry['outcome'] = 'certificate'
                gen = self.generations[r.ca_index]
                # unsorted on purpose: issuing CA, root, leaf
                certs = [gen.cert, self.ca_root, r.cert]
                kind = 'user'
            else:
                return self._error(entry, self._FETCH_MODE, '(none)', 0x80070057,
                                   outcome='error: bad ReqID', disposition=0)
        if p7b:
            der = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
            ctype = 'application/x-pkcs7-certificates'
        else:
            der = certs[-1 if kind == 'user' else 1].public_bytes(serialization.Encoding.DER)
            if self.cfg['legacy_content_type']:
                ctype = 'application/x-x509-%s-cert' % kind
            elif not ua_browser and self.cfg['non_browser_content_type']:
                ctype = self.cfg['non_browser_content_type']
            else:
                ctype = 'application/pkix-cert'
        body = der if enc == 'bin' else _crlf_pem(der, 'CERTIFICATE')
        return 200, body, [('Content-Type', ctype)]

    def _r_certnew_cer(self, h, method, query, body, entry):
        return self._fetch(h, query, entry, False)

    def _r_certnew_p7b(self, h, method, query, body, entry):
        return self._fetch(h, query, entry, True)

    # ---- certcarc.asp (E23), certckpn.asp (E24)
    def _r_certcarc(self, h, method, query, body, entry):
        if self.cfg['ca_down']:
            entry['outcome'] = 'error: ca down'
            return 200, page('Error', [
                '<P ID=locErrorMsg>An unexpected error has occurred: The Certification Authority '
                'Service has not been started.</P>'], self.cfg['ca_name']), []
        with self._lock:
            k = self.renewal_index
        crl = ', '.join('"%d"' % (1 if i == k else 0) for i in range(k + 1))
        script = ['<Script Language="JavaScript">', '<!--',
                  '\tvar nRenewals=%d;' % k,
                  '\tvar rgCrlState=new Array(%s);' % crl,
                  '//-->', '</Script>']
        opts = ['<Option Value="%d"%s>%s [%s]</Option>' % (
            i, ' Selected' if i == k else '', _esc(self.cfg['ca_name']),
            'Current' if i == k else 'Previous %d' % i) for i in range(k, -1, -1)]
        entry['outcome'] = 'nRenewals=%d' % k
        return 200, page('Download a CA Certificate, Certificate Chain, or CRL', [
            '<P ID=locInfoCA>To trust certificates issued from this certification authority, '
            'install this CA certificate.</P>',
            '<Select Name=lbCAVersion ID=lbCAVersionID Size=%d>' % min(4, k + 1)] + opts + [
            '</Select>'], self.cfg['ca_name'], head_extra=script), []

    def _r_certckpn(self, h, method, query, body, entry):
        cookie = h.headers.get('Cookie') or ''
        m = re.search(r'(?:^|;\s*)Requests=([^;]*)', cookie)
        ids = []
        if m:
            ids = [int(x) for x in re.findall(r'\[([0-9]{1,10}),', urllib.parse.unquote(m.group(1)))]
        entry['outcome'] = 'pending list %s' % ids
        if not ids:
            lines = ['<P ID=locNoPending>There are no pending certificate requests.</P>']
        else:
            lines = ['<P ID=locSelectReq>Select the certificate request you want to view:</P>']
            lines += ['<A Href="certfnsh.asp?ReqID=%d&amp;Mode=chkpnd">Saved-Request Certificate '
                      '(%d)</A><BR>' % (i, i) for i in ids]
        return 200, page('View the Status of a Pending Certificate Request', lines,
                         self.cfg['ca_name']), []


# ------------------------------------------------------------------ control channel (E27)

class _ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, emu):
        self.emu = emu
        super().__init__(addr, _ControlHandler)


class _ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def _reply(self, status, obj):
        data = json.dumps(obj, default=str).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        emu = self.server.emu
        p = self.path.split('?')[0]
        q = _ci_query(urllib.parse.urlsplit(self.path).query)
        if p == '/control/state':
            return self._reply(200, emu.state())
        if p == '/control/log':
            return self._reply(200, emu.log(q.get('route'), int(q['conn']) if 'conn' in q else None))
        if p == '/control/counts':
            return self._reply(200, emu.counts())
        if p == '/control/connections':
            return self._reply(200, emu.connections())
        self._reply(404, {'error': 'unknown'})

    def do_POST(self):
        emu = self.server.emu
        n = int(self.headers.get('Content-Length') or 0)
        try:
            args = json.loads(self.rfile.read(n) or b'{}') if n <= MAX_BODY else {}
            op = self.path.split('?')[0].rsplit('/', 1)[-1]
            fn = {'configure': emu.configure, 'approve': lambda id: emu.approve(id),
                  'deny': lambda id, officer=None: emu.deny(id, officer),
                  'roll-ca': lambda: {'renewal_index': emu.roll_ca()},
                  'pending-next': lambda count=1: emu.set_pending_next(count),
                  'fault': emu.set_fault, 'clear-faults': emu.clear_faults,
                  'template': lambda name, **kw: emu.set_template(name, **kw),
                  'add-template': lambda **kw: emu.add_template(Template(**kw)),
                  'reset': lambda keep_ca=True: emu.reset(keep_ca)}.get(op)
            if fn is None or not self.path.startswith('/control/'):
                return self._reply(404, {'error': 'unknown operation %s' % op})
            res = fn(**args)
            self._reply(200, {'ok': True, 'result': res})
        except (KeyError, ValueError, TypeError) as e:
            self._reply(400, {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)})


# ------------------------------------------------------------------ CLI

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog='adcs_emulator.py',
        description='ADCS web enrollment (/certsrv) emulator for tests. Binds 127.0.0.1 only; '
                    'prints one JSON ready line on stdout; exits 0 on SIGTERM/SIGINT.')
    ap.add_argument('--port', type=int, default=0, help='HTTPS port (0 = any free port)')
    ap.add_argument('--http-port', type=int, default=None,
                    help='also serve plain HTTP that answers 403 everywhere (0 = any)')
    ap.add_argument('--control-port', type=int, default=0,
                    help='JSON control channel port (0 = any; -1 = none)')
    ap.add_argument('--workdir', default=None, help='where to write tls-root.pem etc. '
                    '(default: a temporary directory removed on exit)')
    ap.add_argument('--host', default=DEFAULTS['host'], help='TLS host name (SAN of the good cert)')
    ap.add_argument('--tls-name', action='append', default=None,
                    help='SAN name(s) of the server certificate (repeat; default --host)')
    ap.add_argument('--tls-profile', default='good',
                    choices=['good', 'self-signed', 'wrong-name', 'not-yet-valid', 'expired',
                             'leaf-only'])
    ap.add_argument('--auth', default=DEFAULTS['auth'],
                    help="'+'-joined schemes: none | negotiate | ntlm | basic (e.g. "
                         "negotiate+ntlm+basic, negotiate-only)")
    ap.add_argument('--user', default=DEFAULTS['user'])
    ap.add_argument('--password', default=None, help='(default: a random one, printed in the '
                    'ready line)')
    ap.add_argument('--domain', default=DEFAULTS['domain'], help='NetBIOS domain')
    ap.add_argument('--dns-domain', default=DEFAULTS['dns_domain'])
    ap.add_argument('--realm', default=DEFAULTS['realm'], help='Basic realm')
    ap.add_argument('--epa', default='off', choices=['off', 'accept', 'require'])
    ap.add_argument('--per-request-auth', action='store_true',
                    help='NTLM identity not kept on the connection (authPersistSingleRequest)')
    ap.add_argument('--first-id', type=int, default=DEFAULTS['first_id'])
    ap.add_argument('--force-variant', choices=['text', 'script'], default=None)
    ap.add_argument('--idle-timeout', type=float, default=DEFAULTS['idle_timeout'])
    ap.add_argument('--ca-down', action='store_true')
    ap.add_argument('--seed', type=int, default=None, help='seed for challenges, cookies')
    ap.add_argument('--ra-cert', action='append', default=[], metavar='PEM_FILE',
                    help='accept requests signed by this registration authority certificate '
                         '(repeatable; default: only self-signed PKCS#10, as ADCS)')
    ap.add_argument('--template', action='append', default=[], metavar='NAME[:POLICY[:DISPLAY]]',
                    help='add a template (policy auto|manual|deny); repeatable')
    a = ap.parse_args(argv)
    password = a.password or secrets.token_urlsafe(12)
    emu = AdcsEmulator(port=a.port, http_port=a.http_port,
                       control_port=None if a.control_port < 0 else a.control_port,
                       workdir=a.workdir, seed=a.seed, host=a.host, tls_names=a.tls_name,
                       tls_profile=a.tls_profile, auth=a.auth, user=a.user, password=password,
                       domain=a.domain, dns_domain=a.dns_domain, realm=a.realm, epa=a.epa,
                       per_request_auth=a.per_request_auth, first_id=a.first_id,
                       force_variant=a.force_variant, idle_timeout=a.idle_timeout,
                       ca_down=a.ca_down)
    if a.ra_cert:
        certs = []
        for path in a.ra_cert:
            with open(path) as f:
                certs.append(f.read())
        emu.configure(ra_certs=certs)
    for spec in a.template:
        parts = spec.split(':')
        emu.add_template(Template(parts[0], parts[2] if len(parts) > 2 else None,
                                  policy=parts[1] if len(parts) > 1 and parts[1] else 'auto'))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emu.start()
    print(json.dumps({'ready': True, 'https_port': emu.port, 'http_port': emu.http_port,
                      'control_port': emu.control_port, 'host': a.host,
                      'tls_root': emu.tls_root_path, 'adcs_root': emu.ca_root_path,
                      'workdir': emu.workdir, 'user': a.user, 'domain': a.domain,
                      'password': password}), flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
