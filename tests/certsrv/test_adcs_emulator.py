#!/usr/bin/env python3
"""Self-test of the ADCS web-enrollment emulator (adcs_emulator.py), driven by real
clients: curl (Basic, --ntlm), Python http.client/ssl (page shapes, keep-alive,
TLS verify results) and the emulator's own small NTLM client where curl cannot do
what a scenario needs (type-3 on another connection, channel bindings).

Each §7.5 scenario the emulator must be able to play is checked here from the
client side. Every subprocess and socket operation is time-bounded; the emulators
bind 127.0.0.1 only and are stopped in tearDown/tearDownClass.
"""
import base64
import faulthandler
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import adcs_emulator as emu_mod  # noqa: E402
import adcs_fixture  # noqa: E402
from adcs_emulator import AdcsEmulator, NtlmClient  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

CMD_TIMEOUT = 30.0
NET_TIMEOUT = 10.0
USER, PASSWORD, DOMAIN = 'svc-stampede', 'S3cret+pw:with colon', 'EMU'
UA_BROWSER = 'Mozilla/5.0 (X11; Linux x86_64) stampede-control/1.0'
UA_PLAIN = 'stampede-selftest/1.0'

_KEY = None


def rsa_key():
    global _KEY
    if _KEY is None:
        _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY


def make_csr(cn='device-1.example', key=None):
    key = key or rsa_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def form(csr_pem, template='WebServer', mode='newreq', extra=None):
    f = {'Mode': mode, 'CertRequest': csr_pem, 'FriendlyType': 'Saved-Request Certificate',
         'ThumbPrint': '', 'TargetStoreFlags': '0', 'SaveCert': 'yes'}
    if template is not None:
        f['CertAttrib'] = 'CertificateTemplate:%s\r\nUserAgent:%s\r\n' % (template, UA_BROWSER)
    f.update(extra or {})
    return urllib.parse.urlencode(f).encode()


def classify(body):
    """The §3.2 classifier, written from the spec (not from the emulator), in order:
    ISSUED, DENIED, PENDING, ERROR, DENIED-by-message, UNKNOWN."""
    t = body.decode('utf-8', 'replace')
    out = {'kind': 'UNKNOWN', 'id': None, 'message': None, 'hresult': None, 'disposition': None}
    rid = re.search(r'Your Request Id is ([0-9]{1,10})', t)
    msg = re.search(r'The disposition message is "([^"]*)"', t)

    def has(eid):
        return re.search(r'ID=%s[\s>/]' % eid, t) is not None

    def dd(eid):
        m = re.search(r'ID=%s>[^<]*</DT>\s*<DD>([^<]*)</DD>' % eid, t)
        return m.group(1) if m else None

    def hres(s):
        m = re.search(r'0x[0-9A-Fa-f]{1,8}', s or '')
        return int(m.group(0), 16) if m else None
    m = re.search(r'certnew\.cer\?ReqID=([0-9]{1,10})&', t)
    if m:
        out.update(kind='ISSUED', id=int(m.group(1)))
    elif has('locDenied') or has('locIssRev'):
        out.update(kind='DENIED', id=rid and int(rid.group(1)), message=msg and msg.group(1))
        out['hresult'] = hres(out['message'])
    elif has('locInfoNewReq') or has('locInfoChkPnd') or has('locInfoReqID'):
        out.update(kind='PENDING', id=rid and int(rid.group(1)))
        out['recheck'] = has('locInfoChkPnd')
    elif has('locDispMsgLabel') or has('locResultLabel') or has('locReqFailed'):
        out.update(kind='ERROR', message=dd('locDispMsgLabel'), result=dd('locResultLabel'))
        d = dd('locDispLabel')
        dm = re.match(r'\s*([0-9A-Fa-f]{1,8})', d or '')
        out['disposition'] = int(dm.group(1), 16) if dm else None
        out['hresult'] = hres(out['result'])
        if out['hresult'] == 0 and hres(out['message']):
            out['hresult'] = hres(out['message'])
    elif msg:
        out.update(kind='DENIED', id=rid and int(rid.group(1)), message=msg.group(1))
        out['hresult'] = hres(out['message'])
    return out


def pem_or_der(body):
    """§3.5: HTML -> None, PEM -> decoded DER, else the bytes."""
    s = body.lstrip()
    if s.startswith(b'<'):
        return None
    if b'-----BEGIN ' in body:
        m = re.search(rb'-----BEGIN [A-Z0-9 ]+-----(.*?)-----END', body, re.S)
        return base64.b64decode(re.sub(rb'\s+', b'', m.group(1)))
    return body


def spki(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def aki(cert):
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def ski(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


class Conn(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 while verifying the emulator's certificate for its host name."""

    def __init__(self, emu, timeout=NET_TIMEOUT, verify=True):
        ctx = ssl.create_default_context(cafile=emu.tls_root_path) if verify else \
            ssl._create_unverified_context()
        super().__init__(emu.cfg['host'], emu.port, timeout=timeout, context=ctx)

    def connect(self):
        sock = socket.create_connection(('127.0.0.1', self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    def req(self, method, path, body=None, headers=None, ua=UA_BROWSER):
        h = {'User-Agent': ua}
        if body is not None:
            h['Content-Type'] = 'application/x-www-form-urlencoded'
        h.update(headers or {})
        self.request(method, path, body=body, headers=h)
        r = self.getresponse()
        return r, r.read()


def basic_header(user=USER, password=PASSWORD, domain=DOMAIN):
    u = ('%s\\%s' % (domain, user)) if domain else user
    return {'Authorization': 'Basic ' + base64.b64encode(('%s:%s' % (u, password)).encode()).decode()}


def ntlm_login(c, path='/certsrv/', user=USER, password=PASSWORD, domain=DOMAIN, cbt=None,
               tamper=False, type3_conn=None):
    """NTLM handshake on http.client connection c; returns (response, body) of the type-3 leg."""
    cl = NtlmClient(user, password, domain)
    r, _ = c.req('GET', path, headers={'Authorization': 'NTLM ' + base64.b64encode(
        cl.negotiate()).decode()})
    assert r.status == 401, r.status
    chal = [v for k, v in r.getheaders() if k.lower() == 'www-authenticate']
    assert len(chal) == 1 and chal[0].startswith('NTLM '), chal
    t3 = cl.authenticate(base64.b64decode(chal[0][5:]), channel_bindings=cbt, nt_proof_tamper=tamper)
    return (type3_conn or c).req('GET', path, headers={'Authorization': 'NTLM ' +
                                                         base64.b64encode(t3).decode()})


class EmuCase(unittest.TestCase):
    """One emulator per class; state reset before every test."""
    opts = dict(auth='negotiate+ntlm+basic')

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='adcs-emu-test-')
        cls.emu = AdcsEmulator(user=USER, password=PASSWORD, domain=DOMAIN, **cls.opts).start()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        import shutil
        shutil.rmtree(cls.tmp, True)

    def setUp(self):
        self.emu.reset()
        self.emu.configure(**{k: v for k, v in emu_mod.DEFAULTS.items()
                              if k not in ('host', 'tls_names', 'tls_profile', 'user', 'password',
                                           'domain')})
        self.emu.configure(**{k: v for k, v in self.opts.items()
                              if k not in ('tls_profile', 'tls_names', 'host')})

    # clients
    def curl(self, *args, user=None, ntlm=False, timeout=CMD_TIMEOUT, check_exit=True):
        cmd = ['curl', '-sS', '--max-time', '20', '--cacert', self.emu.tls_root_path,
               '--resolve', self.emu.curl_resolve(), '-A', UA_BROWSER]
        if user is not None:
            cmd += (['--ntlm'] if ntlm else ['--basic']) + ['-u', user]
        cmd += [str(a) for a in args]
        try:
            cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail('curl timed out: %s' % ' '.join(cmd))
        if check_exit and cp.returncode != 0:
            self.fail('curl exit %d: %s\n%s' % (cp.returncode, ' '.join(cmd), cp.stderr.decode()))
        return cp

    def basic_user(self, user=USER, password=PASSWORD, domain=DOMAIN):
        return '%s\\%s:%s' % (domain, user, password)

    def submit_curl(self, template='WebServer', csr_pem=None, user=None, ntlm=False, raw=None):
        csr_pem = csr_pem or make_csr()[1]
        path = os.path.join(self.tmp, 'form.txt')
        with open(path, 'wb') as f:
            f.write(raw if raw is not None else form(csr_pem, template))
        cp = self.curl('--data-binary', '@' + path, self.emu.url('/certsrv/certfnsh.asp'),
                       user=user or self.basic_user(), ntlm=ntlm)
        return classify(cp.stdout), cp.stdout

    def get(self, path, ua=UA_BROWSER, headers=None, conn=None):
        c = conn or Conn(self.emu)
        try:
            h = basic_header()
            h.update(headers or {})
            return c.req('GET', path, headers=h, ua=ua)
        finally:
            if conn is None:
                c.close()

    def post(self, body, ua=UA_BROWSER, ctype=None):
        c = Conn(self.emu)
        try:
            h = basic_header()
            if ctype:
                h['Content-Type'] = ctype
            return c.req('POST', '/certsrv/certfnsh.asp', body=body, headers=h, ua=ua)
        finally:
            c.close()


class T01_Basics(EmuCase):
    def test_md4_vectors(self):
        for msg, hexd in [(b'', '31d6cfe0d16ae931b73c59d7e0c089c0'),
                          (b'abc', 'a448017aaf21d8525fc10ae87aa6729d'),
                          (b'message digest', 'd9130a8164549fe818874806e1c7014b'),
                          (b'1234567890' * 8, 'e33b4ddc9c38f2199c3e7b164fcc0536')]:
            self.assertEqual(emu_mod.md4(msg).hex(), hexd)

    def test_401_challenge_shape(self):
        c = Conn(self.emu)
        r, body = c.req('GET', '/certsrv/')
        c.close()
        self.assertEqual(r.status, 401)
        ch = [v for k, v in r.getheaders() if k.lower() == 'www-authenticate']
        self.assertEqual(ch, ['Negotiate', 'NTLM', 'Basic realm="adcs.test"'])
        self.assertEqual(r.getheader('Server'), 'Microsoft-IIS/10.0')
        self.assertRegex(body.decode(), r'<title>401 - Unauthorized: Access is denied due to '
                                        r'invalid credentials\.')

    def test_iis_headers_cookie_crlf(self):
        r, body = self.get('/certsrv/')
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader('X-Powered-By'), 'ASP.NET')
        self.assertTrue(r.getheader('Content-Type').startswith('text/html'))
        self.assertRegex(r.getheader('Set-Cookie') or '', r'^ASPSESSIONID[A-Z]{8}=[A-Z]+; secure; path=/$')
        self.assertIn(b'\r\n', body)
        self.assertNotRegex(body, rb'[^\r]\n')

    def test_redirect_only_after_auth(self):
        c = Conn(self.emu)
        r, _ = c.req('GET', '/certsrv')
        self.assertEqual(r.status, 401)
        r, _ = c.req('GET', '/certsrv', headers=basic_header())
        c.close()
        self.assertEqual(r.status, 301)
        self.assertEqual(r.getheader('Location'), 'https://adcs.test:%d/certsrv/' % self.emu.port)

    def test_404_and_http_listener_absent(self):
        r, _ = self.get('/certsrv/nosuch.asp')
        self.assertEqual(r.status, 404)
        self.assertIsNone(self.emu.http_port)

    def test_basic_user_forms_and_failure(self):
        for u in ['EMU\\%s' % USER, '%s@emu.test' % USER, USER, 'emu\\%s' % USER.upper()]:
            cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/'),
                           user='%s:%s' % (u, PASSWORD))
            self.assertEqual(cp.stdout, b'200', u)
        for u, p in [(USER, PASSWORD + 'x'), ('OTHER\\' + USER, PASSWORD), ('mallory', PASSWORD)]:
            cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/'),
                           user='%s:%s' % (u, p))
            self.assertEqual(cp.stdout, b'401', u)
        bad = [e for e in self.emu.log() if e['auth_result'] == 'bad credentials']
        self.assertEqual(len(bad), 3)
        self.assertFalse(any(PASSWORD in json.dumps(e) for e in self.emu.log()), 'secret logged')

    def test_certrqxt_template_list(self):
        r, body = self.get('/certsrv/certrqxt.asp')
        t = body.decode()
        self.assertIn('<Select Name=lbCertTemplate ID=lbCertTemplateID>', t)
        opts = re.findall(r'<Option Value="([^"]*)">', t)
        rec = [o.split(';') for o in opts]
        self.assertTrue(all(len(f) == 14 and f[0] == 'E' for f in rec), rec)
        names = {f[1]: f[13] for f in rec}
        self.assertEqual(names['WebServer'], 'Web Server')
        self.assertNotIn('StampedeRestricted', names)     # user not allowed
        self.emu.set_template('StampedeRestricted', users=[USER])
        _, body = self.get('/certsrv/certrqxt.asp')
        self.assertIn(';StampedeRestricted;', body.decode())


class T02_Enrollment(EmuCase):
    def test_issued_curl_basic_and_download(self):
        key, csr_pem = make_csr('issued.example')
        res, _ = self.submit_curl(csr_pem=csr_pem)
        self.assertEqual(res['kind'], 'ISSUED', res)
        rid = res['id']
        self.assertEqual(rid, 61100)
        cp = self.curl('-D', '-', self.emu.url('/certsrv/certnew.cer?ReqID=%d&Enc=bin' % rid),
                       user=self.basic_user())
        head, _, der = cp.stdout.partition(b'\r\n\r\n')
        self.assertIn(b'Content-Type: application/pkix-cert', head)
        cert = x509.load_der_x509_certificate(der)
        self.assertEqual(spki(cert), spki(key))
        self.assertEqual(aki(cert), ski(self.emu.ca_cert(0)))
        tmpl = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier('1.3.6.1.4.1.311.20.2'))
        self.assertIn('WebServer'.encode('utf-16-be'), tmpl.value.value)
        cp = self.curl(self.emu.url('/certsrv/certnew.cer?ReqID=%d&Enc=b64' % rid),
                       user=self.basic_user())
        self.assertTrue(cp.stdout.startswith(b'-----BEGIN CERTIFICATE-----\r\n'))
        self.assertEqual(pem_or_der(cp.stdout), der)
        # Enc values are case-sensitive: BIN -> PEM (pitfall 16); names are not: ENC works
        cp = self.curl(self.emu.url('/certsrv/certnew.cer?ReqID=%d&Enc=BIN' % rid),
                       user=self.basic_user())
        self.assertIn(b'-----BEGIN CERTIFICATE-----', cp.stdout)
        cp = self.curl(self.emu.url('/certsrv/certnew.cer?reqid=%d&ENC=bin' % rid),
                       user=self.basic_user())
        self.assertEqual(cp.stdout, der)
        st = self.emu.request_state(rid)
        self.assertEqual((st['state'], st['template'], st['ca_index']), ('issued', 'WebServer', 0))

    def test_page_variants_by_ua_and_knob(self):
        _, csr_pem = make_csr()
        r, body = self.post(form(csr_pem), ua=UA_PLAIN)
        t = body.decode()
        res = classify(body)
        self.assertEqual(res['kind'], 'ISSUED')
        rid = res['id']
        self.assertIn('<A Href="certnew.cer?ReqID=%d&amp;Enc=bin">' % rid, t)
        self.assertIn('certnew.p7b?ReqID=%d&amp;Enc=bin' % rid, t)
        self.assertIn('certnew.cer?ReqID=CACert&amp;Renewal=0&amp;Mode=inst&amp;Enc=b64', t)
        self.assertEqual(re.search(r'ReqID=(.*?)&', t).group(1), 'CACert',
                         'the naive ReqID=(.*?)& trap of §3.2 must be present')
        self.assertNotIn('location=', t)
        r, body = self.post(form(csr_pem), ua=UA_BROWSER)
        t = body.decode()
        rid2 = classify(body)['id']
        self.assertEqual(rid2, rid + 1)
        self.assertIn('location="certnew.cer?ReqID=%d&"+getEncoding();' % rid2, t)
        self.assertIn('location="certnew.p7b?ReqID=%d&"+getEncoding();' % rid2, t)
        self.emu.configure(force_variant='text')
        _, body = self.post(form(csr_pem), ua=UA_BROWSER)
        self.assertIn('&amp;Enc=bin">', body.decode())
        self.emu.configure(force_variant='script')
        _, body = self.post(form(csr_pem), ua=UA_PLAIN)
        self.assertIn('+getEncoding();', body.decode())
        self.assertEqual([e['variant'] for e in self.emu.log('/certsrv/certfnsh.asp')],
                         ['text', 'script', 'text', 'script'])      # logged (E29)

    def test_unencoded_plus_is_parse_error_and_consumes_id(self):
        _, csr_pem = make_csr()
        b64 = ''.join(csr_pem.splitlines()[1:-1])
        self.assertIn('+', b64, 'need a CSR whose base64 contains + (regenerate)')
        raw = ('Mode=newreq&CertRequest=%s&CertAttrib=CertificateTemplate:WebServer%%0D%%0A'
               '&TargetStoreFlags=0&SaveCert=yes' % b64).encode()
        res, _ = self.submit_curl(raw=raw)
        self.assertEqual(res['kind'], 'DENIED', res)
        self.assertIn('Error Parsing Request', res['message'])
        self.assertEqual(res['hresult'] >> 16, 0x8009)
        self.assertEqual(res['id'], 61100)
        res, _ = self.submit_curl()                      # bare base64 is fine when encoded
        self.assertEqual((res['kind'], res['id']), ('ISSUED', 61101))
        res, _ = self.submit_curl(raw=form(b64))
        self.assertEqual((res['kind'], res['id']), ('ISSUED', 61102))

    def test_denied_bad_template(self):
        res, _ = self.submit_curl(template='Web Server')          # display name, not cn
        self.assertEqual(res['kind'], 'DENIED')
        self.assertEqual(res['hresult'], 0x80094800)
        self.assertTrue(res['message'].startswith('Denied by Policy Module  0x80094800, The '
                                                  'request was for a certificate template that is '
                                                  'not supported'), res['message'])
        _, body = self.get('/certsrv/certnew.cer?ReqID=%d&Enc=bin' % res['id'])
        e = classify(body)
        self.assertEqual((e['kind'], e['disposition'], e['hresult']), ('ERROR', 2, 0x80094800))

    def test_denied_no_permission_and_key_size_and_policy(self):
        res, _ = self.submit_curl(template='StampedeRestricted')
        self.assertEqual((res['kind'], res['hresult']), ('DENIED', 0x80094012))
        res, _ = self.submit_curl(template='StampedeBigKey')
        self.assertEqual((res['kind'], res['hresult']), ('DENIED', 0x80094811))
        res, _ = self.submit_curl(template='StampedeDeny')
        self.assertEqual((res['kind'], res['hresult']), ('DENIED', 0x80094012))
        self.assertEqual(self.emu.state()['next_id'], 61103)

    def test_error_missing_template_bad_mode_multipart(self):
        _, csr_pem = make_csr()
        _, body = self.post(form(csr_pem, template=None))
        e = classify(body)
        self.assertEqual((e['kind'], e['hresult'], e['disposition']), ('ERROR', 0x80094801, 1))
        self.assertIn('(-2146875391 CERTSRV_E_NO_CERT_TYPE)', e['result'])
        _, body = self.post(form(csr_pem, mode='NewReq'))
        self.assertEqual(classify(body)['kind'], 'ERROR')
        cp = self.curl('-F', 'Mode=newreq', '-F', 'CertRequest=' + csr_pem, '-F',
                       'CertAttrib=CertificateTemplate:WebServer',
                       self.emu.url('/certsrv/certfnsh.asp'), user=self.basic_user())
        self.assertEqual(classify(cp.stdout)['kind'], 'ERROR')
        self.assertTrue(self.emu.log(route='/certsrv/certfnsh.asp')[-1]['multipart'])
        for b in (b'', ):
            _, body = self.post(b)
            self.assertEqual(classify(body)['kind'], 'ERROR')

    def test_pending_then_issued(self):
        key, csr_pem = make_csr('pending.example')
        self.emu.set_pending_next(1)
        c = Conn(self.emu)
        r, body = c.req('POST', '/certsrv/certfnsh.asp', body=form(csr_pem),
                        headers=basic_header())
        res = classify(body)
        self.assertEqual(res['kind'], 'PENDING', body)
        self.assertFalse(res['recheck'])
        rid = res['id']
        cookie = r.getheader('Set-Cookie')
        self.assertRegex(cookie, r'^Requests=\[%d,0,yes,Saved-Request' % rid)
        self.assertIn('path=/certsrv', cookie)
        r, body = c.req('GET', '/certsrv/certnew.cer?ReqID=%d&Enc=bin' % rid, headers=basic_header())
        e = classify(body)
        self.assertEqual((e['kind'], e['disposition'], e['message']),
                         ('ERROR', 5, 'Taken Under Submission'))
        self.assertIn('0x0 (WIN32: 0)', e['result'])
        r, body = c.req('POST', '/certsrv/certfnsh.asp', headers=basic_header(), body=form(
            '', mode='chkpnd', template=None, extra={'ReqID': str(rid)}))
        res = classify(body)
        self.assertEqual((res['kind'], res['id'], res['recheck']), ('PENDING', rid, True))
        r, body = c.req('GET', '/certsrv/certckpn.asp',
                        headers=dict(basic_header(), Cookie=cookie.split(';')[0]))
        self.assertIn('ReqID=%d&amp;Mode=chkpnd' % rid, body.decode())
        # next submission is auto again
        _, body2 = c.req('POST', '/certsrv/certfnsh.asp', body=form(csr_pem), headers=basic_header())
        self.assertEqual(classify(body2)['kind'], 'ISSUED')
        self.emu.approve(rid)
        r, der = c.req('GET', '/certsrv/certnew.cer?ReqID=%d&Enc=bin' % rid, headers=basic_header())
        self.assertEqual(spki(x509.load_der_x509_certificate(der)), spki(key))
        r, body = c.req('POST', '/certsrv/certfnsh.asp', headers=basic_header(), body=form(
            '', mode='chkpnd', template=None, extra={'ReqID': str(rid)}))
        self.assertEqual(classify(body)['kind'], 'ISSUED')
        c.close()
        with self.assertRaises(ValueError):
            self.emu.approve(rid)

    def test_manual_template_then_denied_by_officer(self):
        res, _ = self.submit_curl(template='StampedeManual')
        self.assertEqual(res['kind'], 'PENDING')
        self.emu.deny(res['id'])
        _, body = self.get('/certsrv/certnew.cer?ReqID=%d&Enc=bin' % res['id'])
        e = classify(body)
        self.assertEqual((e['kind'], e['disposition'], e['hresult']), ('ERROR', 2, 0x80094014))
        self.assertEqual(e['message'], 'Denied by EMU\\ca-officer')
        _, body = self.post(form('', mode='chkpnd', template=None, extra={'ReqID': str(res['id'])}))
        d = classify(body)
        self.assertEqual((d['kind'], d['id'], d['message']), ('DENIED', res['id'],
                                                              'Denied by EMU\\ca-officer'))

    def test_unknown_id(self):
        _, body = self.get('/certsrv/certnew.cer?ReqID=4000000000&Enc=bin')
        e = classify(body)
        self.assertEqual((e['kind'], e['hresult']), ('ERROR', 0x80094004))
        self.assertIn('The requested property value is empty. 0x80094004 (-2146877436 '
                      'CERTSRV_E_PROPERTY_EMPTY)', e['result'])

    def test_ca_down(self):
        self.emu.configure(ca_down=True)
        res, _ = self.submit_curl()
        self.assertEqual((res['kind'], res['hresult']), ('ERROR', 0x800706BA))
        _, body = self.get('/certsrv/certcarc.asp')
        self.assertIn(b'The Certification Authority Service has not been started.', body)
        self.assertNotIn(b'nRenewals', body)
        _, body = self.get('/certsrv/certnew.p7b?ReqID=CACert&Renewal=0&Enc=bin')
        self.assertEqual(classify(body)['kind'], 'ERROR')
        self.emu.configure(ca_down=False)
        _, body = self.get('/certsrv/certcarc.asp')
        self.assertIn(b'var nRenewals=0;', body)

    def test_injected_500_503_drop(self):
        self.emu.set_fault('/certsrv/certfnsh.asp', status=503, times=1)
        cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', '--data-binary', 'x=1',
                       self.emu.url('/certsrv/certfnsh.asp'), user=self.basic_user())
        self.assertEqual(cp.stdout, b'503')
        self.emu.set_fault('*', status=500, times=1)
        r, _ = self.get('/certsrv/')
        self.assertEqual(r.status, 500)
        r, _ = self.get('/certsrv/')
        self.assertEqual(r.status, 200)
        self.emu.set_fault('/certsrv/', drop=True, times=1)
        cp = self.curl(self.emu.url('/certsrv/'), user=self.basic_user(), check_exit=False)
        self.assertEqual(cp.returncode, 52, cp.stderr)        # empty reply from server

    def test_injected_reset_mid_answer(self):
        # rst_after: part of the answer, then a TCP RST; certfnsh.asp commits the request first
        self.emu.set_fault('/certsrv/certfnsh.asp', rst_after=60, times=1)
        path = os.path.join(self.tmp, 'form-rst.txt')
        with open(path, 'wb') as f:
            f.write(form(make_csr()[1]))
        cp = self.curl('--data-binary', '@' + path, self.emu.url('/certsrv/certfnsh.asp'),
                       user=self.basic_user(), check_exit=False)
        self.assertEqual(cp.returncode, 56, cp.stderr)  # CURLE_RECV_ERROR: reset by peer
        self.assertIn(b'reset by peer', cp.stderr)
        cp = self.curl('-o', '/dev/null', self.emu.url('/certsrv/'), user=self.basic_user())
        self.assertEqual(cp.returncode, 0)              # once only
        (e,) = self.emu.log('/certsrv/certfnsh.asp')
        self.assertIn('fault: reset after 60 of', e['outcome'])
        self.assertEqual([r['state'] for r in self.emu.state()['requests']], ['issued'])
        # a reset, not a clean close (curl tells them apart: 52 empty reply / 56 reset); on a
        # GET too, and the client had the status line first (written with --include)
        self.emu.set_fault('/certsrv/', rst_after=40, times=1)
        cp = self.curl('--include', self.emu.url('/certsrv/'), user=self.basic_user(),
                       check_exit=False)
        self.assertEqual(cp.returncode, 56, cp.stderr)
        self.assertIn(b'reset by peer', cp.stderr)
        self.assertTrue(cp.stdout.startswith(b'HTTP/1.1 200 OK\r\n'), cp.stdout)

    def test_content_type_knobs_and_lowercase_redirect(self):
        res, _ = self.submit_curl()
        path = '/certsrv/certnew.cer?ReqID=%d&Enc=bin' % res['id']
        self.assertEqual(self.get(path, ua=UA_PLAIN)[0].getheader('Content-Type'),
                         'application/pkix-cert')
        self.emu.configure(non_browser_content_type='application/octet-stream')
        self.assertEqual(self.get(path, ua=UA_PLAIN)[0].getheader('Content-Type'),
                         'application/octet-stream')
        self.assertEqual(self.get(path)[0].getheader('Content-Type'), 'application/pkix-cert')
        self.emu.configure(legacy_content_type=True)
        self.assertEqual(self.get(path)[0].getheader('Content-Type'), 'application/x-x509-user-cert')
        r, _ = self.get('/certsrv/certnew.cer?ReqID=CACert&Renewal=0&Enc=bin')
        self.assertEqual(r.getheader('Content-Type'), 'application/x-x509-ca-cert')
        r, body = self.get('/CertSrv/certcarc.asp')
        self.assertEqual(r.status, 200)                 # IIS is case-insensitive by default
        self.emu.configure(lowercase_redirect=True)
        r, _ = self.get('/CertSrv/certcarc.asp')
        self.assertEqual(r.status, 302)
        self.assertEqual(r.getheader('Location'),
                         'https://adcs.test:%d/certsrv/certcarc.asp' % self.emu.port)

    def test_expect_100_continue(self):
        _, csr_pem = make_csr()
        cp = self.curl('-H', 'Expect: 100-continue', '--expect100-timeout', '5', '-D', '-',
                       '--data-binary', form(csr_pem).decode(),
                       self.emu.url('/certsrv/certfnsh.asp'), user=self.basic_user())
        self.assertIn(b'HTTP/1.1 100 Continue', cp.stdout)
        self.assertEqual(classify(cp.stdout)['kind'], 'ISSUED')


class T03_Rollover(EmuCase):
    def p7b_certs(self, path):
        _, body = self.get(path)
        self.assertNotEqual(body.lstrip()[:1], b'<', body[:300])
        return pkcs7.load_der_pkcs7_certificates(pem_or_der(body))

    def renewals(self):
        _, body = self.get('/certsrv/certcarc.asp')
        m = re.search(rb'var\s+nRenewals\s*=\s*([0-9]{1,5})\s*;', body)
        self.assertIsNotNone(m, body)
        self.assertIn(b'rgCrlState', body)
        return int(m.group(1))

    def test_renewal_index_changes_under_test(self):
        self.emu.reset(keep_ca=False)
        self.assertEqual(self.renewals(), 0)
        c0 = self.p7b_certs('/certsrv/certnew.p7b?ReqID=CACert&Renewal=0&Enc=bin')
        self.assertEqual({spki(c) for c in c0}, {spki(self.emu.ca_cert(0)), spki(self.emu.ca_root)})
        r, b64 = self.get('/certsrv/certnew.p7b?ReqID=CACert&Renewal=0&Enc=b64')
        self.assertEqual(r.getheader('Content-Type'), 'application/x-pkcs7-certificates')
        self.assertTrue(b64.startswith(b'-----BEGIN CERTIFICATE-----\r\n'))
        self.assertEqual(pkcs7.load_der_pkcs7_certificates(pem_or_der(b64)), c0)
        res, _ = self.submit_curl()
        self.assertEqual(self.emu.roll_ca(), 1)
        self.assertEqual(self.renewals(), 1)
        c1 = self.p7b_certs('/certsrv/certnew.p7b?ReqID=CACert&Renewal=1&Enc=bin')
        self.assertIn(spki(self.emu.ca_cert(1)), {spki(c) for c in c1})
        self.assertNotEqual(spki(self.emu.ca_cert(1)), spki(self.emu.ca_cert(0)))
        # Renewal=0 is still the OLD chain (the CiscoRA start-up fetch pitfall, §4)
        self.assertEqual(self.p7b_certs('/certsrv/certnew.p7b?ReqID=CACert&Renewal=0&Enc=bin'), c0)
        _, der = self.get('/certsrv/certnew.cer?ReqID=CACert&Renewal=1&Enc=bin')
        self.assertEqual(x509.load_der_x509_certificate(der), self.emu.ca_cert(1))
        for bad in ('2', '-1', ''):
            _, body = self.get('/certsrv/certnew.p7b?ReqID=CACert&Renewal=%s&Enc=bin' % bad)
            self.assertEqual(classify(body)['kind'], 'ERROR', bad)
        _, body = self.get('/certsrv/certnew.cer?ReqID=CACert&Enc=bin')
        self.assertEqual(classify(body)['kind'], 'ERROR')
        # new issuance signs with generation 1; issued page hints Renewal=1
        _, csr_pem = make_csr()
        _, page = self.post(form(csr_pem), ua=UA_PLAIN)
        self.assertIn(b'Renewal=1&amp;', page)
        rid = classify(page)['id']
        _, der = self.get('/certsrv/certnew.cer?ReqID=%d&Enc=bin' % rid)
        self.assertEqual(aki(x509.load_der_x509_certificate(der)), ski(self.emu.ca_cert(1)))
        chain = self.p7b_certs('/certsrv/certnew.p7b?ReqID=%d&Enc=bin' % rid)
        self.assertEqual(len(chain), 3)
        # the old request's chain still names generation 0
        old = self.p7b_certs('/certsrv/certnew.p7b?ReqID=%d&Enc=bin' % res['id'])
        self.assertIn(spki(self.emu.ca_cert(0)), {spki(c) for c in old})


class T04_Ntlm(EmuCase):
    opts = dict(auth='negotiate+ntlm')

    def ntlm_user(self, password=PASSWORD):
        return '%s\\%s:%s' % (DOMAIN, USER, password)

    def test_curl_ntlm_bound_to_connection(self):
        cp = self.curl('-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\n',
                       self.emu.url('/certsrv/'), self.emu.url('/certsrv/certcarc.asp'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertEqual(cp.stdout.split(), [b'200', b'1', b'200', b'0'])
        log = self.emu.log()
        first = log[0]['conn']
        self.assertEqual([(e['conn'], e['status'], e['ntlm_leg'], e['auth']) for e in log],
                         [(first, 401, 1, 'ntlm'), (first, 200, 3, 'ntlm'),
                          (first, 200, None, 'ntlm:connection')])
        # a new connection (new curl) must authenticate again
        cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/certcarc.asp'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertEqual(cp.stdout, b'200')
        second = self.emu.log()[-1]['conn']
        self.assertNotEqual(second, first)
        log = self.emu.log(conn=second)
        self.assertEqual([e['ntlm_leg'] for e in log], [1, 3])
        self.assertEqual([c['handshakes'] for c in self.emu.connections()], [1, 1])

    def test_curl_ntlm_post_probe_creates_nothing(self):
        key, csr_pem = make_csr()
        path = os.path.join(self.tmp, 'f.txt')
        with open(path, 'wb') as f:
            f.write(form(csr_pem))
        cp = self.curl('--data-binary', '@' + path, self.emu.url('/certsrv/certfnsh.asp'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertEqual(classify(cp.stdout)['kind'], 'ISSUED')
        log = self.emu.log(route='/certsrv/certfnsh.asp')
        self.assertEqual([(e['probe'], e['status'], e['ntlm_leg']) for e in log],
                         [(True, 401, 1), (False, 200, 3)])
        self.assertEqual(self.emu.state()['next_id'], 61101)

    def test_curl_ntlm_wrong_password(self):
        cp = self.curl('-o', '/dev/null', '-D', '-', self.emu.url('/certsrv/'),
                       user=self.ntlm_user('wrong'), ntlm=True)
        self.assertRegex(cp.stdout, rb'HTTP/1.1 401[^\n]*\r\n(?:.*\r\n)*WWW-Authenticate: '
                                    rb'Negotiate\r\nWWW-Authenticate: NTLM\r\n')
        self.assertIn('NTProofStr mismatch', self.emu.log()[-1]['auth_result'])

    def test_type3_on_other_connection_fails(self):
        a, b = Conn(self.emu), Conn(self.emu)
        try:
            r, _ = ntlm_login(a, type3_conn=b)
            self.assertEqual(r.status, 401)
            self.assertEqual(self.emu.log()[-1]['auth_result'],
                             'type-3 without a type-2 on this connection')
            r, _ = ntlm_login(b)
            self.assertEqual(r.status, 200)
            r, _ = b.req('GET', '/certsrv/certcarc.asp')             # no Authorization
            self.assertEqual(r.status, 200)
            r, _ = a.req('GET', '/certsrv/certcarc.asp')             # other connection: no
            self.assertEqual(r.status, 401)
        finally:
            a.close()
            b.close()

    def test_warm_enrollment_is_two_requests(self):
        key, csr_pem = make_csr()
        c = Conn(self.emu)
        try:
            r, _ = ntlm_login(c)
            self.assertEqual(r.status, 200)
            conn_id = self.emu.log()[-1]['conn']
            before = self.emu.count(conn=conn_id)
            r, body = c.req('POST', '/certsrv/certfnsh.asp', body=form(csr_pem))
            rid = classify(body)['id']
            r, der = c.req('GET', '/certsrv/certnew.cer?ReqID=%d&Enc=bin' % rid)
            self.assertEqual(spki(x509.load_der_x509_certificate(der)), spki(key))
            self.assertEqual(self.emu.count(conn=conn_id) - before, 2)
            counts = self.emu.counts()
            self.assertEqual(counts['routes']['/certsrv/certfnsh.asp'], 1)
            self.assertEqual(counts['routes']['/certsrv/certnew.cer'], 1)
            self.assertEqual(counts['connections'], {conn_id: 4}, self.emu.log())
        finally:
            c.close()

    def test_per_request_auth_knob(self):
        self.emu.configure(per_request_auth=True)
        c = Conn(self.emu)
        try:
            self.assertEqual(ntlm_login(c)[0].status, 200)
            self.assertEqual(c.req('GET', '/certsrv/')[0].status, 401)
        finally:
            c.close()

    def test_ntlmv1_and_tampered_rejected(self):
        c = Conn(self.emu)
        try:
            self.assertEqual(ntlm_login(c, tamper=True)[0].status, 401)
            cl = NtlmClient(USER, PASSWORD, DOMAIN)
            r, _ = c.req('GET', '/certsrv/', headers={'Authorization': 'NTLM ' + base64.b64encode(
                cl.negotiate()).decode()})
            t2 = base64.b64decode(r.getheader('WWW-Authenticate')[5:])
            t3 = bytearray(cl.authenticate(t2))
            # rewrite the NT response security buffer to 24 bytes (NTLMv1 shape)
            t3[20:22] = t3[22:24] = (24).to_bytes(2, 'little')
            r, _ = c.req('GET', '/certsrv/', headers={'Authorization': 'NTLM ' + base64.b64encode(
                bytes(t3)).decode()})
            self.assertEqual(r.status, 401)
            self.assertEqual(self.emu.log()[-1]['auth_result'], 'LM/NTLMv1 response rejected')
        finally:
            c.close()

    def test_negotiate_only(self):
        self.emu.configure(auth='negotiate-only')
        cp = self.curl('-o', '/dev/null', '-D', '-', self.emu.url('/certsrv/'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertIn(b'WWW-Authenticate: Negotiate\r\n', cp.stdout)
        self.assertNotIn(b'WWW-Authenticate: NTLM', cp.stdout)
        self.assertNotIn(b' 200 ', cp.stdout)
        c = Conn(self.emu)
        try:
            cl = NtlmClient(USER, PASSWORD, DOMAIN)
            r, _ = c.req('GET', '/certsrv/', headers={
                'Authorization': 'Negotiate ' + base64.b64encode(cl.negotiate()).decode()})
            self.assertEqual(r.status, 401)
            self.assertEqual(self.emu.log()[-1]['auth_result'], 'NTLM provider disabled')
            r, _ = c.req('GET', '/certsrv/', headers={'Authorization': 'Negotiate YIIBkw=='})
            self.assertEqual(self.emu.log()[-1]['auth_result'], 'unsupported token (no Kerberos)')
        finally:
            c.close()

    def test_ntlm_inside_negotiate_accepted(self):
        c = Conn(self.emu)
        try:
            cl = NtlmClient(USER, PASSWORD, DOMAIN)
            r, _ = c.req('GET', '/certsrv/', headers={
                'Authorization': 'Negotiate ' + base64.b64encode(cl.negotiate()).decode()})
            self.assertTrue(r.getheader('WWW-Authenticate').startswith('Negotiate TlRMTVNT'))
            t3 = cl.authenticate(base64.b64decode(r.getheader('WWW-Authenticate')[10:]))
            r, _ = c.req('GET', '/certsrv/', headers={
                'Authorization': 'Negotiate ' + base64.b64encode(t3).decode()})
            self.assertEqual(r.status, 200)
        finally:
            c.close()

    def test_epa(self):
        self.emu.configure(epa='require', auth='negotiate+ntlm+basic')
        cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertEqual(cp.stdout, b'401')          # libcurl sends no channel binding
        self.assertEqual(self.emu.log()[-1]['auth_result'], 'EPA: channel binding missing')
        cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/'),
                       user=self.ntlm_user())        # Basic over TLS still works
        self.assertEqual(cp.stdout, b'200')
        for epa, cbt, want in [('require', self.emu.channel_bindings, 200),
                               ('require', b'\x11' * 16, 401),
                               ('accept', None, 200), ('accept', b'\x11' * 16, 401),
                               ('accept', self.emu.channel_bindings, 200),
                               ('off', b'\x11' * 16, 200)]:
            self.emu.configure(epa=epa)
            c = Conn(self.emu)
            try:
                self.assertEqual(ntlm_login(c, cbt=cbt)[0].status, want, (epa, cbt))
            finally:
                c.close()
        self.emu.configure(epa='accept')
        cp = self.curl('-o', '/dev/null', '-w', '%{http_code}', self.emu.url('/certsrv/'),
                       user=self.ntlm_user(), ntlm=True)
        self.assertEqual(cp.stdout, b'200')

    def test_idle_timeout_drops_authenticated_connection(self):
        self.emu.configure(idle_timeout=0.5)
        c = Conn(self.emu)
        try:
            self.assertEqual(ntlm_login(c)[0].status, 200)
            time.sleep(1.2)
            with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
                c.req('GET', '/certsrv/')
        finally:
            c.close()
        c = Conn(self.emu)
        try:
            self.assertEqual(c.req('GET', '/certsrv/')[0].status, 401)     # new connection
        finally:
            c.close()


class T05_Slow(EmuCase):
    def test_slow_login_challenge(self):
        self.emu.configure(challenge_delay=2.0)
        t0 = time.monotonic()
        cp = self.curl('--max-time', '0.7', self.emu.url('/certsrv/'), user=self.basic_user('x'),
                       check_exit=False)
        self.assertEqual(cp.returncode, 28, cp.stderr)
        self.assertLess(time.monotonic() - t0, 5)

    def test_slow_enrollment_commits_request(self):
        self.emu.set_fault('/certsrv/certfnsh.asp', delay=2.0, times=1)
        _, csr_pem = make_csr()
        path = os.path.join(self.tmp, 'slow.txt')
        with open(path, 'wb') as f:
            f.write(form(csr_pem))
        cp = self.curl('--max-time', '1', '--data-binary', '@' + path,
                       self.emu.url('/certsrv/certfnsh.asp'), user=self.basic_user(),
                       check_exit=False)
        self.assertEqual(cp.returncode, 28, cp.stderr)
        time.sleep(1.3)
        self.assertEqual(self.emu.request_state(61100)['state'], 'issued')   # outcome unknown
        res, _ = self.submit_curl(csr_pem=csr_pem)                            # the retry
        self.assertEqual((res['kind'], res['id']), ('ISSUED', 61101))
        hashes_ = [self.emu.request_state(i)['csr_sha256'] for i in (61100, 61101)]
        self.assertEqual(hashes_[0], hashes_[1])                              # duplicate visible


class T06_Tls(unittest.TestCase):
    def verify(self, emu):
        ctx = ssl.create_default_context(cafile=emu.tls_root_path)
        with socket.create_connection(('127.0.0.1', emu.port), NET_TIMEOUT) as s:
            try:
                with ctx.wrap_socket(s, server_hostname='adcs.test') as t:
                    return 0, t.selected_alpn_protocol()
            except ssl.SSLCertVerificationError as e:
                return e.verify_code, None

    def curl_code(self, emu):
        cp = subprocess.run(['curl', '-sS', '--max-time', '10', '-o', '/dev/null', '--cacert',
                             emu.tls_root_path, '--resolve', emu.curl_resolve(),
                             emu.url('/certsrv/')], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        return cp.returncode, cp.stderr.decode()

    def test_profiles(self):
        want = {'good': 0, 'self-signed': 18, 'wrong-name': 62, 'not-yet-valid': 9, 'expired': 10,
                'leaf-only': 20}
        for prof, code in want.items():
            with self.subTest(profile=prof):
                with AdcsEmulator(tls_profile=prof) as emu:
                    got, alpn = self.verify(emu)
                    self.assertEqual(got, code)
                    rc, err = self.curl_code(emu)
                    self.assertEqual(rc, 0 if code == 0 else 60, err)
                    if prof == 'good':
                        self.assertEqual(alpn, None)   # client offered none; never h2
                    if prof == 'wrong-name':
                        self.assertIn('adcs.test', err)

    def test_alpn_never_h2_and_https_required_and_stall(self):
        with AdcsEmulator(http_port=0) as emu:
            ctx = ssl.create_default_context(cafile=emu.tls_root_path)
            ctx.set_alpn_protocols(['h2', 'http/1.1'])
            with socket.create_connection(('127.0.0.1', emu.port), NET_TIMEOUT) as s:
                with ctx.wrap_socket(s, server_hostname='adcs.test') as t:
                    self.assertEqual(t.selected_alpn_protocol(), 'http/1.1')
            cp = subprocess.run(['curl', '-sS', '--max-time', '10', '-w', '%{http_code}', '-o',
                                 '/dev/null', 'http://127.0.0.1:%d/certsrv/' % emu.http_port],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
            self.assertEqual(cp.stdout, b'403')
            emu.configure(tls_stall=True)
            with socket.create_connection(('127.0.0.1', emu.port), NET_TIMEOUT) as s:
                s.settimeout(1.0)
                with self.assertRaises((socket.timeout, TimeoutError)):
                    ssl._create_unverified_context().wrap_socket(s, server_hostname='adcs.test')


class T07_Cli(unittest.TestCase):
    def test_cli_subprocess_control_channel(self):
        emu = adcs_fixture.Emulator(args=['--auth', 'basic', '--user', USER, '--control-port', '0'],
                                    timeout=NET_TIMEOUT)
        try:
            emu.start(bound=30)
            info = emu.ready
            self.assertTrue(info['ready'])
            port = info['https_port']
            self.assertTrue(os.path.exists(info['tls_root']))

            def ctl(op, **args):
                if op.startswith('GET '):
                    return emu.request('GET', op[4:])
                return emu.request('POST', op, args)

            base = ['curl', '-sS', '--max-time', '10', '--cacert', info['tls_root'], '--resolve',
                    'adcs.test:%d:127.0.0.1' % port, '-u', '%s:%s' % (USER, info['password'])]

            def curl(*a):
                return subprocess.run(base + list(a), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=CMD_TIMEOUT).stdout
            url = 'https://adcs.test:%d/certsrv/' % port
            self.assertEqual(ctl('pending-next', count=1)[0], 200)
            _, csr_pem = make_csr()
            res = classify(curl('--data-binary', form(csr_pem).decode(), url + 'certfnsh.asp'))
            self.assertEqual(res['kind'], 'PENDING')
            self.assertEqual(ctl('approve', id=res['id'])[1]['result']['state'], 'issued')
            der = curl(url + 'certnew.cer?ReqID=%d&Enc=bin' % res['id'])
            self.assertEqual(spki(x509.load_der_x509_certificate(der)), spki(rsa_key()))
            self.assertIn(b'var nRenewals=0;', curl(url + 'certcarc.asp'))
            self.assertEqual(ctl('roll-ca')[1]['result'], {'renewal_index': 1})
            self.assertIn(b'var nRenewals=1;', curl(url + 'certcarc.asp'))
            self.assertEqual(ctl('fault', route='/certsrv/', status=503, times=1)[0], 200)
            self.assertIn(b'503', curl(url))
            st, counts = ctl('GET counts')
            self.assertEqual(counts['routes']['/certsrv/certcarc.asp'], 2)
            self.assertEqual(ctl('configure', nosuch=1)[0], 400)
            self.assertEqual(ctl('deny', id=res['id'])[0], 400)            # not pending
            st, log = ctl('GET log?route=/certsrv/certfnsh.asp')
            self.assertEqual(log[0]['form']['template'], 'WebServer')
            self.assertEqual(ctl('reset')[0], 200)
            self.assertEqual(ctl('GET counts')[1]['total'], 0)
        finally:
            rc = emu.stop()
        self.assertEqual(rc, 0, emu.stderr())


if __name__ == '__main__':
    faulthandler.dump_traceback_later(280, exit=True)   # hard bound below meson's 300 s
    unittest.main(verbosity=2)
