"""stampeded loads BoringSSL and never OpenSSL (both export the same symbol
names): every libssl/libcrypto that `ldd` resolves lives in Debian's
BoringSSL directory (/usr/lib/x86_64-linux-gnu/android) or the fast
BoringSSL built into the build tree, no libssl.so.3/libcrypto.so.3 appears,
and a running, enrolling daemon has none mapped either, on the kernel
transport and on the DPDK one."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

ALLOWED_DIRS = [os.path.realpath('/usr/lib/x86_64-linux-gnu/android'),
                os.path.realpath(os.path.join(fx.BUILD_ROOT, 'boringssl-fast', 'lib'))]
OPENSSL_SONAMES = ('libssl.so.3', 'libcrypto.so.3', 'libssl.so.1.1', 'libcrypto.so.1.1')
TLS_LIB = re.compile(r'\blib(ssl|crypto)\.so')


def allowed(path):
    real = os.path.realpath(path)
    return any(real.startswith(d + os.sep) for d in ALLOWED_DIRS)


class TestNoOpenSSL(fx.DaemonTestCase):

    def test_ldd(self):
        cp = fx.run(['ldd', fx.STAMPEDED])
        out = cp.stdout.decode()
        self.assertNotIn('not found', out, out)
        tls = [l.strip() for l in out.splitlines() if TLS_LIB.search(l)]
        self.assertTrue(any(l.startswith('libssl.so') for l in tls), 'libssl not linked?\n' + out)
        self.assertTrue(any(l.startswith('libcrypto.so') for l in tls), 'libcrypto not linked?\n' + out)
        for line in tls:
            m = re.match(r'(\S+) => (\S+) \(0x[0-9a-f]+\)$', line)
            self.assertIsNotNone(m, 'unresolved: ' + line)
            self.assertTrue(allowed(m.group(2)), '%s resolves outside the BoringSSL dirs %s' % (line, ALLOWED_DIRS))
        for soname in OPENSSL_SONAMES:
            self.assertNotIn(soname, out)

    def test_running_daemon_maps_no_openssl(self):
        self.check_maps(self.daemon())

    def test_running_dpdk_daemon_maps_no_openssl(self):
        """DPDK's shared build would load its crypto_openssl plugin at EAL
        init; stampeded links DPDK statically with chosen drivers instead."""
        import dpdk_fixture
        dpdk_fixture.require()
        self.check_maps(self.daemon(transport='dpdk'))

    def check_maps(self, d):
        key = fx.gen_key(os.path.join(self.tmp, 'k.key'))
        csr = fx.make_csr(key, '/CN=maps', os.path.join(self.tmp, 'k.csr'))
        self.assertEqual(fx.curl_enroll(d, csr).status, 200)   # TLS, key offload, crypt(3), signing
        with open('/proc/%d/maps' % d.proc.pid) as f:
            maps = f.read()
        libs = set()
        for line in maps.splitlines():
            parts = line.split()
            if len(parts) >= 6 and TLS_LIB.search(os.path.basename(parts[5])):
                libs.add(parts[5])
        self.assertTrue(libs, 'no libssl/libcrypto mapped?')
        for path in sorted(libs):
            self.assertTrue(allowed(path), '%s mapped into stampeded' % path)
            self.assertFalse(os.path.basename(path) in OPENSSL_SONAMES, path)
        d.stop()


if __name__ == '__main__':
    fx.main()
