"""The embedded Redis: with no --redis, stampeded runs a private
redis-server child on DATA/redis.sock (no TCP port, AOF on), restarts it with
back-off when it dies, and stops it on SIGTERM. Real redis-server, real
redis-cli; every wait is bounded."""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

BOUND = 10.0


def redis_cli(sock, *args):
    r = subprocess.run(['redis-cli', '-s', sock] + list(args), capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def child_pids(sock):
    r = subprocess.run(['pgrep', '-f', 'redis-server.*' + sock], capture_output=True, text=True, timeout=10)
    return [int(p) for p in r.stdout.split()]


def wait_for(pred, bound=BOUND):
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        if pred():
            return True
        time.sleep(0.1)
    return False


class TestEmbeddedRedis(fx.DaemonTestCase):
    def test_private_redis_started_and_stopped(self):
        d = self.daemon()
        sock = os.path.join(d.data_dir, 'redis.sock')
        self.assertEqual(redis_cli(sock, 'PING'), 'PONG')
        self.assertEqual(redis_cli(sock, 'CONFIG', 'GET', 'appendonly').split('\n')[-1], 'yes')
        self.assertEqual(redis_cli(sock, 'CONFIG', 'GET', 'appendfsync').split('\n')[-1], 'everysec')
        self.assertEqual(redis_cli(sock, 'CONFIG', 'GET', 'port').split('\n')[-1], '0', 'no TCP port')
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(os.path.join(d.data_dir, 'redis')).st_mode & 0o777, 0o700)
        self.assertIn('embedded Redis pid', d.stderr())
        self.assertTrue(child_pids(sock))
        self.stop_ok(d)
        self.assertTrue(wait_for(lambda: not child_pids(sock)), 'redis-server outlived stampeded')

    def test_fsync_always(self):
        d = self.daemon(['--redis-fsync', 'always'])
        sock = os.path.join(d.data_dir, 'redis.sock')
        self.assertEqual(redis_cli(sock, 'CONFIG', 'GET', 'appendfsync').split('\n')[-1], 'always')
        self.stop_ok(d)

    def test_killed_redis_is_restarted_and_keeps_data(self):
        d = self.daemon()
        sock = os.path.join(d.data_dir, 'redis.sock')
        self.assertEqual(redis_cli(sock, 'SET', 'stp:test', 'kept'), 'OK')
        # AOF everysec: give it the second it needs before the crash.
        time.sleep(1.5)
        pids = child_pids(sock)
        self.assertEqual(len(pids), 1)
        os.kill(pids[0], 9)
        self.assertTrue(wait_for(lambda: redis_cli(sock, 'PING') == 'PONG' and child_pids(sock) != pids),
                        'embedded Redis not restarted')
        self.assertEqual(redis_cli(sock, 'GET', 'stp:test'), 'kept')
        self.assertIn('restarting in', d.stderr())
        # The daemon kept serving meanwhile.
        out = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', d.ca_path,
                              d.url('cacerts')], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.stdout, '200')
        self.stop_ok(d)

    def test_external_redis_starts_no_child(self):
        d = self.daemon(['--redis', 'redis://127.0.0.1:1/0'])
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, 'redis.sock')))
        self.assertIn('Redis: external redis://127.0.0.1:1/0', d.stderr())
        self.stop_ok(d)

    def test_bad_fsync_policy_refused(self):
        d = self.daemon(['--redis-fsync', 'sometimes'], start=False)
        r = subprocess.run(d.command(), capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('redis_fsync', r.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
