"""adcs_fixture: shared helpers of the tests that run the ADCS web-enrollment
emulator (adcs_emulator.py) as a process: tests/certsrv/test_ctl_certsrv.py,
test_doctor.py, test_adcs_emulator.py (its command-line test) and
tests/integration/test_control.py, test_control_failures.py, test_online.py.

An `Emulator` is adcs_emulator.py as a process: its JSON ready line on stdout,
its JSON control channel on its own loopback port, stderr in a file. The
process is in stampede_fixture's set of live processes, so one a test leaves
behind is killed at exit. Everything binds 127.0.0.1. Secrets are made at
test time: `emulator()` gives the emulator a random password (with '+' and
':' on purpose), and `secret_file` writes one to a new 0600 file.

Builds on tests/integration/stampede_fixture.py (free_port, rmtree, the live
set, the sanitizer markers); importable from tests/certsrv and
tests/integration alike (it puts tests/integration on sys.path for that).
Python 3.11 standard library + `cryptography`.
"""
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, 'adcs_emulator.py')
_INTEGRATION = os.path.join(os.path.dirname(HERE), 'integration')
if _INTEGRATION not in sys.path:
    sys.path.append(_INTEGRATION)

import stampede_fixture as fx  # noqa: E402

free_port = fx.free_port    # a free 127.0.0.1 port (stampede_fixture's)

# the account the tests log in as, and the TLS host name of the emulator
USER, DOMAIN, HOST = 'svc-stampede', 'EMU', 'adcs.test'
QUALIFIED_USER = DOMAIN + '\\' + USER

# a distinctive piece of the fix text of each failure class (control/ctl_diag.c)
FIX = {
    'dns': 'check the host name in certsrv_url and this host\'s DNS servers',
    'connect': 'check that IIS listens on that host and port',
    'tls-untrusted': 'put the root CA (and intermediates) that issued the IIS certificate into ca_bundle',
    'tls-self-signed': 'replace the self-signed IIS certificate',
    'tls-name': 'use a host name in certsrv_url that the IIS certificate covers',
    'tls-clock': 'check the clock (NTP) of this host and of IIS',
    'timeout-connect': 'or raise connect_timeout_ms',
    'timeout-login': 'or raise login_timeout_ms',
    'timeout-submit': 'the CA may have taken the request: look for it on the CA before resubmitting',
    'auth': 'check user (DOMAIN\\user or user@domain) and password_file',
    'auth-scheme': 'set auth to a scheme the server offers',
    'epa': 'use auth = basic over HTTPS, or set Extended Protection of CertSrv in IIS to Accept',
    'https-required': 'use an https:// certsrv_url',
    'redirect': 'set certsrv_url to the final https://host/certsrv address',
    'http': 'check IIS and the CertSrv application (event log, application pool)',
    'template': 'set template to the template\'s name (cn, not its display name)',
    'permission': 'grant the service account Read and Enroll on the template',
    'bad-csr': 'check the device\'s CSR (encoding, signature, subject, key size)',
    'denied': 'ask the CA administrator why the request was denied',
    'ca-down': 'start Active Directory Certificate Services on the CA',
    'unknown-id': 'the CA does not know this request id',
}


# ---------------------------------------------------------------- waiting

def poll(fn, bound, done=bool, interval=0.05):
    """poll calls fn() until done(value) or `bound` seconds have passed;
    returns the last value."""
    deadline = time.monotonic() + bound
    while True:
        v = fn()
        if done(v) or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_for(fn, bound, what, interval=0.05):
    """wait_for returns fn()'s first truthy value within `bound` seconds,
    else raises AssertionError naming `what`."""
    v = poll(fn, bound, interval=interval)
    if not v:
        raise AssertionError('%s: not within %.0f s' % (what, bound))
    return v


# ---------------------------------------------------------------- files, secrets, output

class LazyTmpDir:
    """A temporary directory made on first use: call it for its path;
    remove() (in tearDownModule) deletes it if it was made."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.path = None

    def __call__(self):
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix=self.prefix)
        return self.path

    def remove(self):
        if self.path:
            fx.rmtree(self.path)


def secret_file(path, text):
    """secret_file writes `text` and a newline to a new file (never an
    existing one) that only its owner may read (0600); returns the path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(text + '\n')
    return path


@contextlib.contextmanager
def temp_secret_file(workdir, text):
    """A secret_file with a random name in `workdir`, removed at the end of
    the with block."""
    path = secret_file(os.path.join(workdir, 'pw-%s' % secrets.token_hex(4)), text)
    try:
        yield path
    finally:
        os.unlink(path)


def setting_flags(settings):
    """setting_flags turns {'connect_timeout_ms': 1500, ...} into
    ['--connect-timeout-ms', '1500', ...] (stampede-control's command line)."""
    args = []
    for k, v in settings.items():
        args += ['--' + k.replace('_', '-'), str(v)]
    return args


def check_sanitizers(err, what, markers=fx.SANITIZER_MARKERS):
    """check_sanitizers raises AssertionError if a sanitizer report (one of
    `markers`) is in the stderr text `err` of `what`."""
    bad = [m for m in markers if m in err]
    if bad:
        raise AssertionError('sanitizer report(s) %s from %s:\n%s' % (bad, what, err[-8000:]))


def doctor_lines(out):
    """The ok/PROBLEM lines of a doctor's output."""
    return [x for x in out.splitlines() if x.startswith('ok ') or x.startswith('PROBLEM ')]


def ec_csr(cn, bad_signature=False):
    """ec_csr makes a P-256 key and a PKCS#10 request for CN=`cn`; returns
    (key, DER request). `bad_signature`: well-formed DER whose signature is
    of other bytes (a CA must refuse it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.DER)
    if bad_signature:
        der = der[:-8] + bytes(b ^ 0x5A for b in der[-8:])
        x509.load_der_x509_csr(der)
    return key, der


# ---------------------------------------------------------------- the emulator process

class Emulator:
    """Emulator is adcs_emulator.py as a process with the flags `args`.

    With `workdir`, the emulator keeps its files (TLS PKI, CA) in
    workdir/name, its stderr goes to workdir/name.stderr, and it is told to
    listen on ports it picks (--port 0 --control-port 0); without, it uses a
    temporary directory of its own and its stderr a temporary file.
    `timeout` bounds each control-channel request. start() waits (bounded)
    for the ready line; stop() sends SIGTERM and kills it if it has not
    exited in 15 s."""

    def __init__(self, workdir=None, name='emulator', args=(), timeout=15.0):
        self.dir = os.path.join(workdir, name) if workdir else None
        self.stderr_path = os.path.join(workdir, name + '.stderr') if workdir else None
        self.args = list(args)
        self.timeout = timeout
        self.proc = None
        self.ready = None
        self._own_stderr = False
        self._stderr_text = ''

    def command(self):
        cmd = [sys.executable, EMULATOR]
        if self.dir:
            cmd += ['--port', '0', '--control-port', '0', '--workdir', self.dir]
        return cmd + self.args

    def start(self, bound=60.0):
        """start launches the emulator and reads its ready line; raises
        AssertionError (with its stderr) if that does not come in `bound` s."""
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)
        else:
            fd, self.stderr_path = tempfile.mkstemp(prefix='adcs-emulator-', suffix='.stderr')
            os.close(fd)
            self._own_stderr = True
        with open(self.stderr_path, 'ab') as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err)
        fx._live.add(self.proc)
        deadline = time.monotonic() + bound
        line = b''
        while not line.endswith(b'\n'):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                exited = self.proc.poll() is not None
                self.kill()
                why = ('exited %s before its ready line' % self.proc.returncode if exited
                       else 'not ready within %.0f s' % bound)
                raise AssertionError('emulator %s:\n%s' % (why, self.stderr()[-4000:]))
            r, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        self.ready = json.loads(line.decode())
        if self.ready.get('ready') is not True:
            self.kill()
            raise AssertionError('emulator: unexpected ready line %r' % line)
        return self

    # what the ready line says
    port = property(lambda self: self.ready['https_port'])
    http_port = property(lambda self: self.ready['http_port'])
    control_port = property(lambda self: self.ready['control_port'])
    tls_root = property(lambda self: self.ready['tls_root'])
    password = property(lambda self: self.ready['password'])

    def url(self):
        return 'https://%s:%d/certsrv' % (self.ready['host'], self.port)

    # the control channel
    def request(self, method, what, args=None):
        """request sends one request to /control/`what` (POST: `args` as a
        JSON object) and returns (HTTP status, its JSON answer)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.control_port, timeout=self.timeout)
        try:
            if method == 'GET':
                conn.request('GET', '/control/' + what)
            else:
                conn.request(method, '/control/' + what, body=json.dumps(args or {}).encode(),
                             headers={'Content-Type': 'application/json'})
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b'null')
        finally:
            conn.close()

    def _ok(self, method, what, args=None):
        status, out = self.request(method, what, args)
        if status != 200:
            raise AssertionError('emulator control %s %s: %s %s' % (method, what, status, out))
        return out

    def control(self, op, **args):
        """control runs the control operation `op` (POST); returns its JSON
        answer; AssertionError unless HTTP 200."""
        return self._ok('POST', op, args)

    def get(self, what):
        return self._ok('GET', what)

    def state(self):
        return self.get('state')

    def log(self, route=None):
        """The emulator's request log (of one route)."""
        return self.get('log' if route is None else 'log?route=' + route)

    def requests_for(self, csr_der):
        """The requests the emulator's CA holds for this CSR."""
        h = hashlib.sha256(csr_der).hexdigest()
        return [r for r in self.state()['requests'] if r['csr_sha256'] == h]

    def configure(self, test, **opts):
        """configure changes settings that the control operation reset
        keeps; they are restored when the unittest.TestCase `test` ends."""
        old = self.state()['cfg']
        self.control('configure', **opts)
        test.addCleanup(self.control, 'configure', **{k: old[k] for k in opts})

    # the process
    def stderr(self):
        if self.stderr_path and os.path.exists(self.stderr_path):
            with open(self.stderr_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        return self._stderr_text

    def stop(self, timeout=15):
        """stop sends SIGTERM and waits `timeout` s (then kills it); returns
        the exit code, or None if it had to be killed."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return rc

    def kill(self):
        """kill ends the process at once if it is still running (cleanup)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stdout:
                self.proc.stdout.close()
            fx._live.discard(self.proc)
        if self._own_stderr:
            self._stderr_text = self.stderr()
            os.unlink(self.stderr_path)
            self.stderr_path, self._own_stderr = None, False


def emulator(*args, timeout=10.0, bound=60.0):
    """emulator starts an Emulator (own temporary directory) with the test
    account: --user USER --domain DOMAIN --host HOST and a random password
    with '+' and ':' in it (on purpose), then the flags `args`."""
    password = 'Pw+%s:x' % secrets.token_urlsafe(9)
    return Emulator(args=['--user', USER, '--domain', DOMAIN, '--password', password,
                          '--host', HOST] + list(args), timeout=timeout).start(bound)
