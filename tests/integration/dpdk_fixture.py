"""dpdk_fixture: the DPDK side of the integration fixture.

With STAMPEDE_TRANSPORT=dpdk (or Daemon(..., transport='dpdk')) a
stampede_fixture.Daemon runs stampeded with `--transport dpdk` on a tap
interface of its own (DPDK net_tap + lwIP inside the daemon). A `TapNet`
is that interface seen from the kernel side:

* a unique name (IFNAMSIZ: at most 15 characters), `stpt<pid%10000><n>`,
  and a unique /24 in 10.77.0.0-10.99.255.0 (checked against the
  addresses already on this machine): the kernel side is .1, stampeded's
  lwIP is .2 (`host`, the address clients connect to);
* the daemon's flags (`args`): --transport dpdk, --dpdk-eal with
  `iface=NAME` (no --file-prefix, so the daemon picks
  stampeded-<pid> and is expected to remove /var/run/dpdk/stampeded-<pid>
  at exit), --dpdk-addr HOST/24, and --tls-names with HOST added so curl
  and Python verify the server certificate on that address; a flag the
  test already gives is not added again;
* after the ready line (the daemon has created the interface by then):
  `ip addr add .1/24`, `ip link set up`, IPv6 off on the interface, and a
  bounded wait until lwIP answers ping (ARP + ICMP);
* after the daemon exits: the interface must disappear (bounded wait);
  /var/run/dpdk/<prefix> is removed if it was left behind.

`counters(d)` sends SIGUSR1 and parses the lines each polling core logs
("dpdk core<i>: k=v ...", "dpdk port: k=v ...").

`require()` raises unittest.SkipTest (and prints "SKIP: ...") when this
machine cannot run the DPDK transport: no /dev/net/tun, or no
CAP_NET_ADMIN (creating a tap interface is refused). Any other failure is
an error, not a skip. Python 3.11 standard library only.
"""
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

DPDK_RUN_DIR = '/var/run/dpdk'
EAL_BASE = '-l 0 --no-huge --no-pci -m 512 --no-shconf --no-telemetry'
IFACE_BOUND = 10.0        # seconds for the interface to appear / disappear
PING_BOUND = 15.0         # seconds for lwIP to answer the first ping after start
COUNTERS_BOUND = 10.0     # seconds for the SIGUSR1 counter lines

_counter = itertools.count()
_probe = None             # None: not probed; '': usable; else the skip reason
_taken = set()            # the /24s handed out by this process


def _ip(*args, check=True, timeout=15):
    cp = subprocess.run(['ip'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError('ip %s failed (%d): %s' % (' '.join(args), cp.returncode,
                                                         cp.stderr.decode(errors='replace').strip()))
    return cp


def require():
    """require raises unittest.SkipTest (after printing 'SKIP: <why>') if
    tap interfaces cannot be created here; the probe runs once."""
    global _probe
    if _probe is None:
        _probe = _probe_tap()
    if _probe:
        print('SKIP: %s' % _probe, file=sys.stderr, flush=True)
        raise unittest.SkipTest(_probe)
    if shutil.which('ping') is None:
        raise AssertionError('the DPDK tests need ping (iputils-ping): it tells when lwIP answers')


def _probe_tap():
    if not os.path.exists('/dev/net/tun'):
        return 'no /dev/net/tun (the DPDK transport needs net_tap)'
    if shutil.which('ip') is None:
        return 'no `ip` command (iproute2) to configure the tap interface'
    name = 'stpq%d' % (os.getpid() % 100000)
    cp = _ip('tuntap', 'add', 'dev', name, 'mode', 'tap', check=False)
    err = cp.stderr.decode(errors='replace').strip()
    if cp.returncode != 0:
        if 'not permitted' in err.lower() or 'permission denied' in err.lower():
            return 'no CAP_NET_ADMIN (ip tuntap add: %s)' % err
        raise AssertionError('probing for tap support: ip tuntap add %s failed: %s' % (name, err))
    _ip('link', 'del', name, check=False)
    return ''


def link_exists(name):
    return os.path.exists('/sys/class/net/%s' % name)


def wait_for(pred, bound, step=0.05):
    import stampede_fixture  # imported here: stampede_fixture imports this module lazily
    return stampede_fixture.wait_for(pred, bound, step)


def _used_subnets():
    """The /24s of every IPv4 address on this machine."""
    out = _ip('-j', 'addr', 'show', check=False).stdout.decode(errors='replace') or '[]'
    nets = set()
    for link in json.loads(out):
        for a in link.get('addr_info', []):
            if a.get('family') == 'inet':
                nets.add(ipaddress.ip_network('%s/24' % a['local'], strict=False))
    return nets


class TapNet:
    """TapNet: the tap interface and /24 of one Daemon (kept across its
    restarts, so a restarted daemon gets the same addresses)."""

    def __init__(self):
        require()
        n = next(_counter)
        self.name = 'stpt%d%d' % (os.getpid() % 10000, n)
        assert len(self.name) <= 15, self.name
        used = _used_subnets() | _taken
        start = (os.getpid() * 7 + n * 131) % (23 * 256)
        for i in range(23 * 256):
            k = (start + i) % (23 * 256)
            net = ipaddress.ip_network('10.%d.%d.0/24' % (77 + k // 256, k % 256))
            if net not in used:
                break
        else:
            raise AssertionError('no free /24 in 10.77-10.99')
        _taken.add(net)
        self.net = net
        self.peer = str(net.network_address + 1)     # the kernel side (clients' source address)
        self.host = str(net.network_address + 2)     # stampeded's lwIP
        self.pid = None                               # of the daemon run using the interface
        self.left_prefixes = []                       # /var/run/dpdk dirs we had to remove

    def eal(self):
        return '%s --vdev=net_tap0,iface=%s' % (EAL_BASE, self.name)

    def args(self, given):
        """The flags the daemon needs, except those in `given`."""
        out = []

        def add(flag, value):
            if flag not in given and not any(g.startswith(flag + '=') for g in given):
                out.extend([flag, value])
        add('--transport', 'dpdk')
        add('--dpdk-eal', self.eal())
        add('--dpdk-addr', '%s/24' % self.host)
        add('--tls-names', 'localhost,127.0.0.1,%s' % self.host)
        return out

    def before_start(self):
        """A previous run's interface must be gone (it is, once that process
        exited: a crash too)."""
        if link_exists(self.name) and not wait_for(lambda: not link_exists(self.name), IFACE_BOUND):
            raise AssertionError('tap %s still exists before the daemon starts' % self.name)

    def started(self, pid):
        """The daemon run `pid` owns the interface (and the EAL prefix
        stampeded-<pid>) from now on."""
        self.pid = pid

    def configure(self):
        """The kernel side, after the ready line: address, link up, no IPv6;
        then waits (bounded) until lwIP answers ping."""
        if not wait_for(lambda: link_exists(self.name), IFACE_BOUND):
            raise AssertionError('stampeded is ready but tap %s does not exist' % self.name)
        subprocess.run(['sysctl', '-qw', 'net.ipv6.conf.%s.disable_ipv6=1' % self.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
        _ip('addr', 'add', '%s/24' % self.peer, 'dev', self.name)
        _ip('link', 'set', self.name, 'up')
        if not self.wait_ping(PING_BOUND):
            raise AssertionError('lwIP on %s (%s) does not answer ping within %.0f s'
                                 % (self.host, self.name, PING_BOUND))

    def wait_ping(self, bound):
        """True once one ping to the daemon is answered within `bound` s."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            cp = subprocess.run(['ping', '-n', '-q', '-c', '1', '-W', '1', self.host],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            if cp.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def prefix_dir(self):
        return os.path.join(DPDK_RUN_DIR, 'stampeded-%d' % self.pid) if self.pid else None

    def after_exit(self):
        """After the daemon run exited: waits (bounded) for the interface to
        disappear and deletes it if it did not; removes a left EAL runtime
        directory. Returns an error text (interface lingered) or ''."""
        if self.pid is None:
            return ''
        err = ''
        if not wait_for(lambda: not link_exists(self.name), IFACE_BOUND):
            err = 'tap %s still existed %.0f s after stampeded (pid %d) exited' % (self.name, IFACE_BOUND,
                                                                                  self.pid)
            _ip('link', 'del', self.name, check=False)
        d = self.prefix_dir()
        if d and os.path.isdir(d):
            self.left_prefixes.append(d)
            print('note: stampeded (pid %d) left %s behind; removed' % (self.pid, d), file=sys.stderr,
                  flush=True)
            shutil.rmtree(d, True)
        self.pid = None
        return err

    # ---- kernel-side view

    def link_stats(self):
        """The kernel's counters of the interface (ip -s -j link show):
        {'rx': {...}, 'tx': {...}}; 'tx' is what the kernel sent to the
        daemon (tx dropped: frames the daemon's RX ring had no room for)."""
        out = _ip('-s', '-j', 'link', 'show', self.name).stdout.decode()
        st = json.loads(out)[0].get('stats64', {})
        return {'rx': st.get('rx', {}), 'tx': st.get('tx', {})}

    def daemon_mac(self):
        """lwIP's MAC, from the kernel's neighbour table (after a ping)."""
        out = _ip('-j', 'neigh', 'show', 'dev', self.name).stdout.decode() or '[]'
        for n in json.loads(out):
            if n.get('dst') == self.host and n.get('lladdr'):
                return n['lladdr']
        return None

    def mac(self):
        with open('/sys/class/net/%s/address' % self.name) as f:
            return f.read().strip()


# ---------------------------------------------------------------- counters

_CORE = re.compile(r'dpdk core(\d+): (.*)$')
_PORT = re.compile(r'dpdk port: (.*)$')
_KV = re.compile(r'(\w+)=(\S+)')


def _fields(text):
    out = {}
    for k, v in _KV.findall(text):
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    return out


def parse_counters(text):
    """parse_counters returns (cores {i: {field: value}}, port {field:
    value}) from the last counter lines in `text`."""
    cores, port = {}, {}
    for line in text.splitlines():
        m = _CORE.search(line)
        if m:
            cores[int(m.group(1))] = _fields(m.group(2))
            continue
        m = _PORT.search(line)
        if m:
            port = _fields(m.group(1))
    return cores, port


class Counters:
    """One SIGUSR1 snapshot: cores {i: {..}}, port {..}, total(field) over
    cores, and the raw lines."""

    def __init__(self, cores, port, lines):
        self.cores, self.port, self.lines = cores, port, lines

    def total(self, field):
        return sum(c.get(field, 0) for c in self.cores.values() if isinstance(c.get(field, 0), int))

    def __repr__(self):
        return '\n'.join(self.lines)


def counters(d, bound=COUNTERS_BOUND):
    """counters sends SIGUSR1 to daemon `d` and returns a Counters from the
    lines it logs (waits, bounded, for the port line and every core line
    seen in earlier snapshots, then 0.3 s for stragglers)."""
    before = len(d.stderr())
    want_cores = getattr(d, '_dpdk_cores', 1)
    d.signal(signal.SIGUSR1)

    def new():
        t = d.stderr()[before:]
        c, p = parse_counters(t)
        return (t, c, p) if p and len(c) >= want_cores else None
    got = wait_for(new, bound)
    if not got:
        raise AssertionError('no "dpdk port:" counter lines within %.0f s of SIGUSR1:\n%s'
                             % (bound, d.stderr()[before:][-3000:]))
    time.sleep(0.3)
    text = d.stderr()[before:]
    c, p = parse_counters(text)
    d._dpdk_cores = max(want_cores, len(c))
    lines = [ln for ln in text.splitlines() if _CORE.search(ln) or _PORT.search(ln)]
    return Counters(c, p, lines)
