"""Process lifecycle: SIGTERM drains in-flight enrollments (every response
that arrives is a complete 200) and exits 0, after which the port refuses
connections; SIGINT/SIGHUP; --help, --version, unknown flags, the INI config
file and flag precedence, and a port that is already in use."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

ENROLL = fx.EST + 'simpleenroll'


def refused(port, timeout=5):
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def run_daemon_cmd(args, timeout=30):
    return fx.run([fx.STAMPEDED] + list(args), timeout=timeout, check=False)


class TestDrain(fx.DaemonTestCase):

    def make_csrs(self, n):
        keys = [fx.gen_key(os.path.join(self.tmp, 'k%d.key' % i), 'ec256') for i in range(2)]
        return [fx.make_csr(keys[i % 2], '/CN=SEPD4A1N%06d' % i, os.path.join(self.tmp, 'c%d.der' % i))
                for i in range(n)]

    def enroll_bytes(self, d, csr):
        body = fx.b64(csr)
        return fx.raw_request('POST', ENROLL, [
            'Authorization: ' + fx.basic('est', d.password), 'Content-Type: application/pkcs10',
            'Content-Transfer-Encoding: base64', 'Content-Length: %d' % len(body)], body)

    def check_outcomes(self, outcomes):
        """Every response that arrived is a complete 200 with one certificate."""
        answered = 0
        for i, (kind, val) in sorted(outcomes.items()):
            if kind == 'response':
                answered += 1
                self.assertEqual(val.status, 200, 'request %d: %r' % (i, val))
                self.assertEqual(val.header('content-type'), fx.P7_TYPE)
                self.assertEqual(len(fx.p7_to_pem(val.body, self.tmp, 'drain%d' % i)), 1)
            else:
                # No response at all is fine; a partial one is not (read_response
                # raises "inside the response body" / bad status for those).
                self.assertNotIn('inside the response body', val, 'request %d: %s' % (i, val))
                self.assertNotIn('bad status line', val, 'request %d: %s' % (i, val))
        return answered

    def test_sigterm_with_enrollments_in_flight(self):
        d = self.daemon()
        csrs = self.make_csrs(20)
        # Handshakes first, so that the requests themselves are in flight.
        socks = [fx.tls_connect(d) for _ in csrs]
        reqs = [self.enroll_bytes(d, c) for c in csrs]
        outcomes = {}
        go = threading.Barrier(len(socks) + 1, timeout=30)

        def client(i):
            s = socks[i]
            try:
                go.wait()
                s.sendall(reqs[i])
                outcomes[i] = ('response', fx.read_response(s, timeout=30))
            except Exception as e:
                outcomes[i] = ('error', str(e))
            finally:
                s.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(socks))]
        for t in threads:
            t.start()
        go.wait()
        time.sleep(0.01)
        self.sigterm_and_join(d, threads)
        answered = self.check_outcomes(outcomes)
        errs = sorted(set(v.split(':')[0][:60] for k, v in outcomes.values() if k == 'error'))
        print('\n  %d of %d in-flight enrollments answered before exit; others: %s' % (
            answered, len(socks), errs or '-'), flush=True)
        self.assertIn('draining', d.stderr())
        self.assertTrue(refused(d.port), 'port still accepts connections after exit')

    def sigterm_and_join(self, d, threads):
        """SIGTERM `d`, wait (bounded) for the client threads, and check the
        daemon drained and exited 0 with no sanitizer report."""
        d.signal(signal.SIGTERM)
        for t in threads:
            t.join(40)
        self.assertFalse(any(t.is_alive() for t in threads))
        rc = d.wait(fx.STOP_TIMEOUT)
        d.assert_clean()
        self.assertEqual(rc, 0, d.stderr()[-3000:])

    def test_sigterm_during_stream_of_new_connections(self):
        d = self.daemon()
        csrs = self.make_csrs(20)
        outcomes = {}
        password = d.password

        def client(i):
            try:
                time.sleep(0.005 * i)
                outcomes[i] = ('response', fx.py_enroll(d, csrs[i], password=password, timeout=30))
            except Exception as e:
                outcomes[i] = ('error', repr(e))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(csrs))]
        for t in threads:
            t.start()
        time.sleep(0.04)
        self.sigterm_and_join(d, threads)
        self.check_outcomes(outcomes)
        self.assertTrue(refused(d.port))

    def test_idle_connections_do_not_delay_exit(self):
        d = self.daemon()
        socks = []
        try:
            for _ in range(5):
                s = fx.tls_connect(d)
                s.sendall(fx.raw_request('GET', fx.EST + 'cacerts'))
                self.assertEqual(fx.read_response(s).status, 200)
                socks.append(s)
            t0 = time.monotonic()
            d.stop()
            self.assertLess(time.monotonic() - t0, 5.0, 'idle keep-alive sessions must be closed at once')
            for s in socks:
                self.assertTrue(fx.wait_closed(s, 5)[0])
        finally:
            for s in socks:
                s.close()

    def test_drain_timeout_bounds_exit_with_stalled_client(self):
        d = self.daemon(['--drain-timeout', '1', '--header-timeout', '60'])
        s = fx.tls_connect(d)
        try:
            s.sendall(b'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n')   # never finished
            time.sleep(0.2)
            t0 = time.monotonic()
            d.stop(timeout=15)
            self.assertLess(time.monotonic() - t0, 8.0)
            self.assertTrue(fx.wait_closed(s, 5)[0])
        finally:
            s.close()

    def test_sigint_exits_0(self):
        d = self.daemon()
        d.signal(signal.SIGINT)
        self.assertEqual(d.wait(), 0)
        d.assert_clean()
        self.assertIn('SIGINT', d.stderr())

    def test_sighup_keeps_running(self):
        d = self.daemon()
        d.signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertTrue(d.running(), 'SIGHUP must not stop the daemon')
        r = fx.curl(d, 'cacerts')
        self.assertEqual(r.status, 200)
        d.stop()


class TestCommandLine(fx.DaemonTestCase):

    def test_help(self):
        cp = run_daemon_cmd(['--help'])
        self.assertEqual(cp.returncode, 0)
        out = cp.stdout.decode()
        for flag in ('--data-dir', '--est-listen', '--capf-listen', '--est-users', '--cores', '--signers',
                     '--config', '--version', '--csrattrs', '--client-ca', '--max-body'):
            self.assertIn(flag, out)
        self.assertEqual(cp.stderr, b'')
        self.assertEqual(run_daemon_cmd(['-h']).returncode, 0)

    def test_version(self):
        cp = run_daemon_cmd(['--version'])
        self.assertEqual(cp.returncode, 0)
        self.assertEqual(cp.stdout.decode(), 'stampeded 0.1.0\n')

    def test_unknown_flag_exits_2_naming_it(self):
        dd = os.path.join(self.tmp, 'never-created')
        for args in (['--data-dir', dd, '--bogus-flag', '1'], ['--data-dir', dd, '--bogus-flag=1'],
                     ['--bogus-flag', 'x', '--data-dir', dd], ['--data-dir', dd, '--bogus-flag']):
            cp = run_daemon_cmd(args)
            self.assertEqual(cp.returncode, 2, args)
            self.assertIn('bogus-flag', cp.stderr.decode(), args)
        self.assertFalse(os.path.exists(dd), 'a usage error must not touch the data directory')

    def test_unknown_flag_without_value_is_reported_as_unknown(self):
        # "--bogus-flag needs a value" would suggest the flag exists.
        dd = os.path.join(self.tmp, 'never-created')
        for args in (['--data-dir', dd, '--bogus-flag'], ['--data-dir', dd, '--bogus-flag', '1']):
            cp = run_daemon_cmd(args)
            self.assertEqual(cp.returncode, 2, args)
            self.assertIn('unknown', cp.stderr.decode().lower(), '%s: %s' % (args, cp.stderr.decode()))

    def test_usage_errors(self):
        cases = [
            ([], 'data-dir'),
            (['--data-dir', self.tmp + '/x', 'positional'], 'positional'),
            (['--data-dir', self.tmp + '/x', '--cores', 'many'], 'cores'),
            (['--data-dir', self.tmp + '/x', '--max-body', '1'], 'max_body'),
            (['--data-dir', self.tmp + '/x', '--leaf-copy-san', 'maybe'], 'leaf_copy_san'),
            (['--data-dir', self.tmp + '/x', '--est-listen'], 'est-listen'),
            (['--data-dir', self.tmp + '/x', '--config', self.tmp + '/missing.conf'], 'missing.conf'),
        ]
        for args, word in cases:
            cp = run_daemon_cmd(args)
            self.assertEqual(cp.returncode, 2, '%s: %s' % (args, cp.stderr))
            self.assertIn(word, cp.stderr.decode(), args)

    def test_config_file_and_flag_precedence(self):
        port_a, port_b = fx.free_port(), fx.free_port()
        while port_b == port_a:
            port_b = fx.free_port()
        dd = os.path.join(self.tmp, 'cfg-data')
        conf = fx.write(os.path.join(self.tmp, 'stampeded.conf'),
                        '; test config\n[stampeded]\ndata_dir = %s\nest_listen = 127.0.0.1:%d\ncapf_listen =\n'
                        'leaf_server_auth = true\ncsrattrs = 1.2.840.113549.1.9.7\n'
                        '[stampede-control]\nsomething_else = 1\n' % (dd, port_a))
        d = self.daemon(['--config', conf], data_dir=dd, port=port_a, listen_flag=False, start=False)
        d.command = lambda: [fx.STAMPEDED] + d.args
        d.start()
        self.assertIn('127.0.0.1:%d' % port_a, d.stderr())
        self.assertEqual(fx.curl(d, 'csrattrs').status, 200, 'csrattrs from the file')
        d.stop()
        # A flag overrides the file.
        d.args = ['--config', conf, '--est-listen', '127.0.0.1:%d' % port_b, '--csrattrs', '']
        d.port = port_b
        d.start()
        self.assertIn('127.0.0.1:%d' % port_b, d.stderr())
        self.assertTrue(refused(port_a), 'the file\'s est_listen must be overridden by the flag')
        self.assertEqual(fx.curl(d, 'csrattrs').status, 204, 'flag --csrattrs "" overrides the file')
        key = fx.gen_key(os.path.join(self.tmp, 'cfg.key'))
        csr = fx.make_csr(key, '/CN=cfg', os.path.join(self.tmp, 'cfg.csr'))
        r = fx.curl_enroll(d, csr)
        self.assertEqual(r.status, 200)
        leaf = fx.write(os.path.join(self.tmp, 'cfg.pem'), fx.p7_to_pem(r.body, self.tmp, 'cfg')[0])
        self.assertIn('TLS Web Server Authentication', fx.x509_text(leaf), 'leaf_server_auth from the file')
        d.stop()

    def test_config_file_errors(self):
        dd = os.path.join(self.tmp, 'bad-cfg-data')
        bad_key = fx.write(os.path.join(self.tmp, 'bad1.conf'), 'data_dir = %s\nno_such_setting = 1\n' % dd)
        cp = run_daemon_cmd(['--config', bad_key])
        self.assertEqual(cp.returncode, 2)
        self.assertIn('no_such_setting', cp.stderr.decode())
        bad_line = fx.write(os.path.join(self.tmp, 'bad2.conf'), 'data_dir = %s\nthis is not ini\n' % dd)
        cp = run_daemon_cmd(['--config', bad_line])
        self.assertEqual(cp.returncode, 2)
        self.assertIn('bad2.conf', cp.stderr.decode())
        self.assertFalse(os.path.exists(dd))

    def test_port_in_use(self):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            holder.bind(('127.0.0.1', 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            d = self.daemon(port=port, start=False)
            with self.assertRaises(AssertionError):
                d.start()
            self.assertNotEqual(d.returncode, 0)
            self.assertIsNotNone(d.returncode)
            err = d.stderr()
            self.assertIn('127.0.0.1:%d' % port, err)
            self.assertRegex(err, r'(?i)address already in use|cannot listen')
            d.assert_clean()
        finally:
            holder.close()

    def test_port_in_use_by_another_stampeded(self):
        first = self.daemon(name='first')
        second = self.daemon(name='second', port=first.port, start=False)
        with self.assertRaises(AssertionError):
            second.start()
        self.assertNotEqual(second.returncode, 0)
        self.assertRegex(second.stderr(), r'(?i)address already in use')
        second.assert_clean()
        self.assertEqual(fx.curl(first, 'cacerts').status, 200)
        first.stop()


if __name__ == '__main__':
    fx.main()
