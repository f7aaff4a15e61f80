"""stampede_fixture: shared helpers of the stampeded integration tests.

A `Daemon` starts the real stampeded (path from $STAMPEDED) on a free
127.0.0.1 port with a fresh temporary data directory, waits for its ready
line, captures stderr to a file, and on stop() sends SIGTERM and checks that
it exits 0 in time with no AddressSanitizer/LeakSanitizer/UBSan report in
stderr. Every wait is bounded; every process the fixture starts is killed
on the way out (try/finally, unittest cleanups and an atexit hook).

Clients are the real ones: curl and the openssl CLI (subprocesses with
timeouts), and Python's ssl + http.client for keep-alive, raw sockets and
threads. Keys, CSRs and foreign CAs are made with the openssl CLI at test
time in temporary directories. Python 3.11 standard library only.
"""
import atexit
import base64
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
STAMPEDED = os.environ.get('STAMPEDED') or os.path.join(
    os.environ.get('STAMPEDE_BUILD', '/tmp/bt'), 'dataplane', 'stampeded')
BUILD_ROOT = os.environ.get('STAMPEDE_BUILD', os.path.dirname(os.path.dirname(STAMPEDED)))
VERSION = '0.1.0'
READY_LINE = 'stampeded %s: EST on' % VERSION
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:')
EST = '/.well-known/est/'
P7_TYPE = 'application/pkcs7-mime; smime-type=certs-only'

READY_TIMEOUT = 20.0      # seconds for the ready line (ASan builds start slower)
STOP_TIMEOUT = 30.0       # SIGTERM -> exit (drain_timeout 10 s + slack)
CMD_TIMEOUT = 60.0        # any one curl/openssl subprocess
NET_TIMEOUT = 30.0        # any one socket operation

_live = set()             # Popen objects still running, killed at exit
KEEP = os.environ.get('STAMPEDE_IT_KEEP') == '1'   # keep temp dirs (debugging)
# kernel (default) or dpdk: stampeded's --transport for every Daemon (dpdk_fixture.py).
TRANSPORT = os.environ.get('STAMPEDE_TRANSPORT') or 'kernel'


def rmtree(path):
    if KEEP:
        print('kept %s' % path, flush=True)
    else:
        shutil.rmtree(path, True)


def wait_for(pred, bound, step=0.05):
    """wait_for polls pred() until it is true or `bound` seconds passed;
    returns its last value."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def _kill_leftovers():
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _live.discard(p)


atexit.register(_kill_leftovers)


def free_port():
    """free_port binds port 0 on 127.0.0.1 and returns the port it got."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(args, input=None, timeout=CMD_TIMEOUT, check=True, env=None):
    """run executes a command with a time bound; returns CompletedProcess
    with bytes stdout/stderr. check=True raises AssertionError on failure."""
    try:
        cp = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError('command timed out after %ss: %s' % (timeout, ' '.join(map(str, args))))
    if check and cp.returncode != 0:
        raise AssertionError('command failed (%d): %s\nstdout: %s\nstderr: %s' % (
            cp.returncode, ' '.join(map(str, args)), cp.stdout.decode(errors='replace')[-2000:],
            cp.stderr.decode(errors='replace')[-2000:]))
    return cp


def openssl(*args, input=None, timeout=CMD_TIMEOUT, check=True):
    return run(['openssl'] + [str(a) for a in args], input=input, timeout=timeout, check=check)


# ---------------------------------------------------------------- the daemon

class Daemon:
    """Daemon is one stampeded process. `args` are extra flags; `data_dir`
    defaults to a fresh directory inside `workdir`; the port is free_port()
    unless `port` is given. Use as a context manager or call start()/stop()
    and always kill() in a finally. A subclass for another program sets
    PROG (its name in messages) and READY (the text of its ready line) and
    overrides command().

    `transport` (default $STAMPEDE_TRANSPORT, else kernel): with 'dpdk' a
    stampeded (not a subclass for another program) serves on a tap
    interface of its own (dpdk_fixture.TapNet, in `tap`; SkipTest if this
    machine cannot); clients then connect to `host` and the daemon sees them
    as `peer_host` (both 127.0.0.1 with kernel)."""
    PROG = 'stampeded'
    READY = READY_LINE

    def __init__(self, workdir, args=(), data_dir=None, port=None, name='stampeded',
                 listen_flag=True, transport=None):
        self.transport = transport or TRANSPORT
        self.tap = None
        self._tap_err = ''
        if self.transport == 'dpdk' and self.PROG == 'stampeded':
            import dpdk_fixture
            self.tap = dpdk_fixture.TapNet()
        self.workdir = workdir
        self.args = [str(a) for a in args]
        self.data_dir = data_dir or os.path.join(workdir, name + '-data')
        self.port = port or free_port()
        self.capf_port = free_port()
        self.name = name
        self.listen_flag = listen_flag
        self.proc = None
        self.returncode = None
        self.stderr_path = None
        self._runs = 0

    # paths and credentials
    @property
    def ca_path(self):
        return os.path.join(self.data_dir, 'ca.crt')

    @property
    def password(self):
        with open(os.path.join(self.data_dir, 'est-initial-password')) as f:
            return f.read().strip()

    @property
    def host(self):
        """The address clients connect to."""
        return self.tap.host if self.tap else '127.0.0.1'

    @property
    def peer_host(self):
        """The address the daemon sees clients come from (its log's peer=)."""
        return self.tap.peer if self.tap else '127.0.0.1'

    def url(self, op):
        return 'https://%s:%d%s%s' % (self.host, self.port, EST, op)

    def command(self):
        cmd = [STAMPEDED, '--data-dir', self.data_dir]
        if self.listen_flag:
            cmd += ['--est-listen', '127.0.0.1:%d' % self.port,
                    '--capf-listen', '127.0.0.1:%d' % self.capf_port]
        if self.tap:
            cmd += self.tap.args(self.args)
        return cmd + self.args

    def start(self, ready_timeout=READY_TIMEOUT):
        """start launches the daemon and waits for the ready line; raises
        AssertionError (with stderr) if it exits or is not ready in time."""
        self._runs += 1
        self.stderr_path = os.path.join(self.workdir, '%s-%d.stderr' % (self.name, self._runs))
        self.returncode = None
        if self.tap:
            self.tap.before_start()
        with open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         cwd=self.workdir)
        _live.add(self.proc)
        if self.tap:
            self.tap.started(self.proc.pid)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.READY in self.stderr():
                if self.tap:
                    try:
                        self.tap.configure()
                    except BaseException:
                        self.kill()
                        raise
                return self
            if self.proc.poll() is not None:
                self._reap()
                raise AssertionError('%s exited with %s before it was ready:\n%s' % (
                    self.PROG, self.returncode, self.stderr()[-4000:]))
            time.sleep(0.05)
        self.kill()
        raise AssertionError('%s not ready within %ss:\n%s' % (self.PROG, ready_timeout,
                                                               self.stderr()[-4000:]))

    def stderr(self):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ''
        with open(self.stderr_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def sanitizer_reports(self):
        text = self.stderr()
        return [m for m in SANITIZER_MARKERS if m in text]

    def assert_clean(self):
        bad = self.sanitizer_reports()
        if bad:
            raise AssertionError('sanitizer report(s) %s in %s stderr (%s):\n%s' % (
                bad, self.PROG, self.stderr_path, self.stderr()[-8000:]))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _reap(self):
        if self.proc is not None:
            self.returncode = self.proc.returncode
            _live.discard(self.proc)
            if self.tap:
                self._tap_err = self.tap.after_exit()

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """wait returns the exit code, killing the process (and failing) if
        it does not exit within `timeout`."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError('%s did not exit within %ss of SIGTERM:\n%s' % (
                self.PROG, timeout, self.stderr()[-4000:]))
        self._reap()
        return self.returncode

    def stop(self, timeout=STOP_TIMEOUT):
        """stop sends SIGTERM and asserts: exit code 0 within `timeout`, no
        sanitizer report in stderr."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        self.assert_clean()
        if self._tap_err:
            raise AssertionError(self._tap_err)
        if rc != 0:
            raise AssertionError('%s exited %s after SIGTERM (expected 0):\n%s' % (
                self.PROG, rc, self.stderr()[-4000:]))

    def kill(self):
        """kill ends the process at once if it is still running (cleanup)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.stop()
        finally:
            self.kill()
        return False


class DaemonTestCase(unittest.TestCase):
    """DaemonTestCase gives each test a temporary directory (self.tmp) and
    a helper that starts a daemon which is stopped (and checked) or killed
    when the test ends."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='stampede-it-')
        self.addCleanup(rmtree, self.tmp)

    def daemon(self, args=(), start=True, **kw):
        d = Daemon(self.tmp, args, **kw)
        self.addCleanup(d.kill)
        if start:
            d.start()
        return d

    def stop_ok(self, d):
        d.stop()


class SharedDaemonTestCase(DaemonTestCase):
    """SharedDaemonTestCase runs one daemon (flags in DAEMON_ARGS, transport
    TRANSPORT: None = $STAMPEDE_TRANSPORT) for the whole class; tearDownClass
    stops it and fails on a non-zero exit or a sanitizer report."""
    DAEMON_ARGS = ()
    TRANSPORT = None

    @classmethod
    def setUpClass(cls):
        cls.class_tmp = tempfile.mkdtemp(prefix='stampede-it-cls-')
        cls.d = Daemon(cls.class_tmp, cls.DAEMON_ARGS, name='shared', transport=cls.TRANSPORT)
        try:
            cls.d.start()
        except BaseException:
            cls.d.kill()
            rmtree(cls.class_tmp)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.d.kill()
            rmtree(cls.class_tmp)


# ---------------------------------------------------------------- keys, CSRs, certs

def gen_key(path, kind='ec256'):
    """gen_key writes a PEM private key: rsa2048 or ec256 (P-256)."""
    if kind == 'rsa2048':
        openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path)
    elif kind == 'ec256':
        openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path)
    else:
        raise ValueError(kind)
    return path


def make_csr(key, subj, out_der, addext=None):
    """make_csr writes a DER PKCS#10 request for `key` and returns its bytes."""
    args = ['req', '-new', '-key', key, '-subj', subj, '-outform', 'DER', '-out', out_der]
    if addext:
        args += ['-addext', addext]
    openssl(*args)
    with open(out_der, 'rb') as f:
        return f.read()


def b64(data):
    """b64 encodes with 64-character lines, like `openssl base64`."""
    s = base64.b64encode(data)
    return b'\n'.join(s[i:i + 64] for i in range(0, len(s), 64)) + b'\n'


def p7_to_pem(p7_b64, workdir, name='p7'):
    """p7_to_pem decodes a base64 certs-only PKCS#7 and returns the list of
    PEM certificates `openssl pkcs7 -print_certs` finds in it."""
    der = base64.b64decode(p7_b64, validate=False)
    path = os.path.join(workdir, name + '.p7.der')
    with open(path, 'wb') as f:
        f.write(der)
    out = openssl('pkcs7', '-inform', 'DER', '-in', path, '-print_certs').stdout.decode()
    return re.findall(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?', out, re.S)


def write(path, data):
    mode = 'wb' if isinstance(data, bytes) else 'w'
    with open(path, mode) as f:
        f.write(data)
    return path


def x509_text(pem_path):
    return openssl('x509', '-in', pem_path, '-noout', '-text').stdout.decode()


def x509_field(pem_path, *opts):
    return openssl('x509', '-in', pem_path, '-noout', *opts).stdout.decode().strip()


def verify(ca_path, *cert_paths):
    """verify runs `openssl verify -CAfile ca` on the certificates; returns
    the CompletedProcess (check returncode)."""
    return openssl('verify', '-CAfile', ca_path, *cert_paths, check=False)


def foreign_ca(workdir, name='foreign'):
    """foreign_ca makes a self-signed CA (EC P-256, CA:TRUE) unrelated to
    stampeded; returns (cert_path, key_path)."""
    key = gen_key(os.path.join(workdir, name + '-ca.key'))
    crt = os.path.join(workdir, name + '-ca.crt')
    openssl('req', '-x509', '-new', '-key', key, '-subj', '/O=Foreign Vendor/CN=%s Manufacturing CA' % name,
            '-days', '30', '-out', crt,
            '-addext', 'basicConstraints=critical,CA:TRUE',
            '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    return crt, key


def foreign_client_cert(workdir, ca_crt, ca_key, cn, name='foreign-client'):
    """foreign_client_cert issues a client certificate (EKU clientAuth) from a
    foreign CA; returns (cert_path, key_path)."""
    key = gen_key(os.path.join(workdir, name + '.key'))
    csr = os.path.join(workdir, name + '.csr')
    openssl('req', '-new', '-key', key, '-subj', '/CN=%s' % cn, '-out', csr)
    ext = write(os.path.join(workdir, name + '.ext'),
                'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n'
                'extendedKeyUsage=clientAuth\n')
    crt = os.path.join(workdir, name + '.crt')
    openssl('x509', '-req', '-in', csr, '-CA', ca_crt, '-CAkey', ca_key, '-CAcreateserial',
            '-days', '7', '-extfile', ext, '-out', crt)
    return crt, key


def der_tlv(buf, pos):
    """der_tlv reads the DER element at `pos`: returns (tag, content_start,
    end). Definite lengths only (what DER allows)."""
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(buf[pos:pos + k], 'big')
        pos += k
    if pos + n > len(buf):
        raise AssertionError('DER element overruns its buffer')
    return tag, pos, pos + n


def p7_cert_ders(p7_b64):
    """p7_cert_ders decodes a base64 certs-only PKCS#7 (ContentInfo ->
    SignedData -> certificates [0]) and returns the certificates' DER, in
    Python (no subprocess), for loads with many responses."""
    der = base64.b64decode(p7_b64, validate=False)
    _, p, _ = der_tlv(der, 0)              # ContentInfo SEQUENCE
    _, _, p = der_tlv(der, p)              # contentType OID
    _, p, _ = der_tlv(der, p)              # [0] EXPLICIT
    _, p, end = der_tlv(der, p)            # SignedData SEQUENCE
    certs = []
    while p < end:
        tag, c, e = der_tlv(der, p)
        if tag == 0xa0:                    # certificates [0] IMPLICIT SET OF
            while c < e:
                _, _, ce = der_tlv(der, c)
                certs.append(der[c:ce])
                c = ce
        p = e
    return certs


def cert_serial_hex(cert_der):
    """cert_serial_hex returns a certificate's serial as lower-case hex of
    its magnitude without leading zero bytes (as `openssl x509 -serial`
    prints it, lower-cased)."""
    _, p, _ = der_tlv(cert_der, 0)         # Certificate
    _, p, _ = der_tlv(cert_der, p)         # tbsCertificate
    tag, _, e = der_tlv(cert_der, p)
    if tag == 0xa0:                        # [0] version
        p = e
    tag, c, e = der_tlv(cert_der, p)
    if tag != 0x02:
        raise AssertionError('no serial INTEGER in the certificate')
    v = cert_der[c:e]
    while len(v) > 1 and v[0] == 0:
        v = v[1:]
    return v.hex()


# ---------------------------------------------------------------- HTTP clients

class Resp:
    """Resp: status, headers (list of (lower-case name, value)), body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def __repr__(self):
        return 'Resp(%d, %r, %r)' % (self.status, self.headers, self.body[:200])


def parse_header_block(text):
    lines = text.split('\r\n')
    m = re.match(r'HTTP/1\.[01] (\d{3})', lines[0])
    if not m:
        raise AssertionError('bad status line %r' % lines[0])
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(':')
        headers.append((k.strip().lower(), v.strip()))
    return int(m.group(1)), headers


def curl(d, op, data=None, method=None, headers=(), user=None, password=None, cert=None,
         key=None, cacert=None, timeout=CMD_TIMEOUT, path=None, extra=()):
    """curl makes one request to daemon `d` (EST operation `op`, or a raw
    `path`) with the curl CLI and returns a Resp. `data` (bytes) is POSTed
    from a file. user/password -> Basic; cert/key -> TLS client certificate."""
    work = tempfile.mkdtemp(prefix='curl-', dir=d.workdir)
    try:
        hdr = os.path.join(work, 'h')
        body = os.path.join(work, 'b')
        url = 'https://%s:%d%s' % (d.host, d.port, path) if path else d.url(op)
        args = ['curl', '-sS', '--max-time', str(int(timeout)), '--cacert', cacert or d.ca_path,
                '-D', hdr, '-o', body, '-w', '%{http_code}']
        if method:
            args += ['-X', method]
        for h in headers:
            args += ['-H', h]
        if user is not None:
            args += ['-u', '%s:%s' % (user, password)]
        if cert:
            args += ['--cert', cert, '--key', key]
        if data is not None:
            args += ['--data-binary', '@' + write(os.path.join(work, 'req'), data)]
        args += list(extra) + [url]
        cp = run(args, timeout=timeout + 10, check=False)
        if cp.returncode != 0:
            raise AssertionError('curl failed (%d): %s' % (cp.returncode, cp.stderr.decode(errors='replace')))
        with open(hdr, 'rb') as f:
            blocks = [b for b in f.read().decode('latin-1').split('\r\n\r\n') if b.strip()]
        # The last header block is the final response (after any 100 Continue).
        status, hdrs = parse_header_block(blocks[-1])
        with open(body, 'rb') if os.path.exists(body) else open(os.devnull, 'rb') as f:
            b = f.read()
        return Resp(status, hdrs, b)
    finally:
        shutil.rmtree(work, True)


def enroll_headers(content_type='application/pkcs10', cte='base64'):
    h = ['Content-Type: ' + content_type]
    if cte is not None:
        h.append('Content-Transfer-Encoding: ' + cte)
    return h


def curl_enroll(d, csr_der, op='simpleenroll', user='est', password=None, **kw):
    """curl_enroll POSTs a DER CSR (base64) with Basic auth (default: the
    initial 'est' user; user=None for none)."""
    if user is not None and password is None:
        password = d.password
    return curl(d, op, data=b64(csr_der), headers=enroll_headers(), user=user, password=password, **kw)


def client_context(d, cert=None, key=None, cafile=None):
    """client_context trusts the daemon's CA (ca.crt) and optionally presents
    a client certificate."""
    ctx = ssl.create_default_context(cafile=cafile or d.ca_path)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def https_conn(d, ctx=None, timeout=NET_TIMEOUT):
    return http.client.HTTPSConnection(d.host, d.port, context=ctx or client_context(d),
                                       timeout=timeout)


def basic(user, password):
    return 'Basic ' + base64.b64encode(('%s:%s' % (user, password)).encode()).decode()


def http_request(conn, method, path, body=None, headers=None):
    """http_request sends one request on an http.client connection and
    returns a Resp (body read fully)."""
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    return Resp(r.status, [(k.lower(), v) for k, v in r.getheaders()], body)


def py_enroll(d, csr_der, password=None, user='est', ctx=None, op='simpleenroll', timeout=NET_TIMEOUT):
    """py_enroll: one enrollment on a fresh TLS connection with http.client."""
    conn = https_conn(d, ctx, timeout)
    try:
        h = {'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64',
             'Connection': 'close'}
        if user is not None:
            h['Authorization'] = basic(user, password if password is not None else d.password)
        return http_request(conn, 'POST', EST + op, b64(csr_der), h)
    finally:
        conn.close()


# ---------------------------------------------------------------- raw sockets

def tcp_connect(d, timeout=NET_TIMEOUT):
    return socket.create_connection((d.host, d.port), timeout=timeout)


def tls_connect(d, ctx=None, timeout=NET_TIMEOUT):
    """tls_connect returns an ssl socket with the handshake done."""
    sock = tcp_connect(d, timeout)
    try:
        return (ctx or client_context(d)).wrap_socket(sock, server_hostname='127.0.0.1')
    except BaseException:
        sock.close()
        raise


def read_response(sock, timeout=NET_TIMEOUT):
    """read_response reads exactly one HTTP/1.1 response (header block plus
    Content-Length bytes) from `sock` and returns a Resp."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = b''
    while b'\r\n\r\n' not in buf:
        if time.monotonic() > deadline:
            raise AssertionError('no complete response header within %ss: %r' % (timeout, buf[:500]))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError('connection closed before a complete response header: %r' % buf[:500])
        buf += chunk
    head, _, rest = buf.partition(b'\r\n\r\n')
    status, headers = parse_header_block(head.decode('latin-1'))
    r = Resp(status, headers, b'')
    n = int(r.header('content-length', '0'))
    while len(rest) < n:
        if time.monotonic() > deadline:
            raise AssertionError('response body incomplete within %ss' % timeout)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError('connection closed inside the response body (%d of %d bytes)' % (len(rest), n))
        rest += chunk
    r.body = rest[:n]
    r.extra = rest[n:]
    return r


def wait_closed(sock, timeout=10.0):
    """wait_closed returns (True, seconds) if the peer closes `sock` (EOF,
    reset, or a TLS error) within `timeout`, discarding any data; else
    (False, timeout)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, timeout
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False, timeout
        except (ConnectionError, ssl.SSLError, OSError):
            return True, time.monotonic() - t0
        if not data:
            return True, time.monotonic() - t0


def raw_request(method, path, headers=(), body=b''):
    """raw_request builds request bytes; headers are 'Name: value' strings."""
    lines = ['%s %s HTTP/1.1' % (method, path), 'Host: 127.0.0.1'] + list(headers)
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


# ---------------------------------------------------------------- Redis (RESP2)

class RedisError(Exception):
    """RedisError: an error reply (-ERR ...) from Redis."""


class RedisClient:
    """RedisClient is a minimal synchronous RESP2 client for reading what
    stampeded wrote: `addr` is a unix socket path or a (host, port) tuple.
    command() returns bytes, int, list or None (nil) and raises RedisError
    on an error reply; binary fields (csr, cert) come back intact, which
    redis-cli output does not guarantee. One connection per call."""

    def __init__(self, addr, timeout=10.0):
        self.addr = addr
        self.timeout = timeout

    def _connect(self):
        if isinstance(self.addr, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(self.timeout)
                s.connect(self.addr)
            except BaseException:
                s.close()
                raise
            return s
        return socket.create_connection(self.addr, timeout=self.timeout)

    def command(self, *args):
        out = [b'*%d\r\n' % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
        with self._connect() as s:
            s.sendall(b''.join(out))
            with s.makefile('rb') as f:
                return self._read(f)

    def _read(self, f):
        line = f.readline()
        if not line.endswith(b'\r\n'):
            raise AssertionError('Redis reply truncated: %r' % line)
        kind, rest = line[:1], line[1:-2]
        if kind == b'+':
            return rest
        if kind == b'-':
            raise RedisError(rest.decode(errors='replace'))
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)
            return data[:-2]
        if kind == b'*':
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise AssertionError('unexpected RESP reply %r' % line)

    def ping(self):
        """ping returns True if Redis answers PONG, False if unreachable."""
        try:
            return self.command('PING') == b'PONG'
        except (OSError, RedisError, AssertionError):
            return False

    def hgetall(self, key):
        """hgetall returns the hash as {str field: bytes value} ({} if absent)."""
        flat = self.command('HGETALL', key) or []
        return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def xrange(self, key, start='-', end='+'):
        """xrange returns [(id str, {str field: str value})] of a stream."""
        out = []
        for ent_id, flat in self.command('XRANGE', key, start, end) or []:
            out.append((ent_id.decode(), {flat[i].decode(): flat[i + 1].decode(errors='replace')
                                          for i in range(0, len(flat), 2)}))
        return out

    def last_id(self, key):
        """last_id returns the newest entry id of a stream, or '0-0'."""
        rev = self.command('XREVRANGE', key, '+', '-', 'COUNT', 1) or []
        return rev[0][0].decode() if rev else '0-0'


def main():
    unittest.main(verbosity=2)


class RedisServer:
    """RedisServer is a redis-server a test owns: on 127.0.0.1:`port`, or on
    the unix socket `unix` (default DIR/redis.sock when neither is given).
    No persistence, or with `aof` an AOF fsynced on every write (a kill -9
    then loses nothing). The Popen is tracked, so a leftover is killed at
    exit."""

    def __init__(self, workdir, port=None, unix=None, name='redis', aof=False):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        if port is None and unix is None:
            unix = os.path.join(self.dir, 'redis.sock')
        self.port, self.unix, self.aof, self.proc = port, unix, aof, None
        self.client = RedisClient(unix if unix else ('127.0.0.1', port))

    @property
    def sock(self):
        return self.unix

    @property
    def url(self):
        return self.unix if self.unix else 'redis://127.0.0.1:%d/0' % self.port

    def start(self, bound=20.0):
        net = (['--port', '0', '--unixsocket', self.unix, '--unixsocketperm', '700'] if self.unix
               else ['--port', str(self.port), '--bind', '127.0.0.1'])
        persist = ['--appendonly', 'yes', '--appendfsync', 'always'] if self.aof else ['--appendonly', 'no']
        self.proc = subprocess.Popen(['redis-server'] + net + ['--save', ''] + persist + ['--dir', self.dir],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        _live.add(self.proc)
        deadline = time.monotonic() + bound
        while self.proc.poll() is None and not self.client.ping() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise AssertionError('redis-server exited %s at start' % self.proc.returncode)
        if not self.client.ping():
            self.kill()
            raise AssertionError('redis-server not answering within %.0f s' % bound)
        return self

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)   # in case a test stopped it
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None:
            _live.discard(self.proc)
