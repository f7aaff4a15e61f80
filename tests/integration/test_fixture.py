"""Self-test of stampede_fixture: a fake daemon (a shell script that prints
the ready line) shows that Daemon.stop() fails on sanitizer reports, on a
non-zero exit and on a process that ignores SIGTERM, and that start() fails
on an early exit and on a missing ready line, all within their bounds."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

FAKE = r'''#!/bin/bash
# fake stampeded: $FAKE_MODE selects the misbehaviour.
case "$FAKE_MODE" in
  early-exit) echo "stampeded: cannot listen" >&2; exit 1 ;;
  never-ready) exec sleep 30 ;;
esac
trap 'on_term' TERM
on_term() {
  case "$FAKE_MODE" in
    asan) echo "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1" >&2; exit 0 ;;
    lsan) echo "==1==ERROR: LeakSanitizer: detected memory leaks" >&2; exit 0 ;;
    ubsan) echo "x.c:1:2: runtime error: signed integer overflow" >&2; exit 0 ;;
    exit3) exit 3 ;;
    ignore-term) return ;;
    *) exit 0 ;;
  esac
}
echo "INFO [main] stampeded 0.1.0: EST on https://127.0.0.1:1/.well-known/est/" >&2
for i in $(seq 1 600); do sleep 0.05; done
'''


class TestFixture(fx.DaemonTestCase):

    def fake(self, mode):
        path = fx.write(os.path.join(self.tmp, 'fake-stampeded'), FAKE)
        os.chmod(path, 0o755)
        os.environ['FAKE_MODE'] = mode
        self.addCleanup(os.environ.pop, 'FAKE_MODE', None)
        d = fx.Daemon(self.tmp, name='fake-' + mode)
        d.command = lambda: [path]
        self.addCleanup(d.kill)
        return d

    def test_clean_exit_passes(self):
        d = self.fake('clean').start()
        d.stop()
        self.assertEqual(d.returncode, 0)

    def test_sanitizer_reports_fail(self):
        for mode in ('asan', 'lsan', 'ubsan'):
            d = self.fake(mode).start()
            with self.assertRaises(AssertionError) as cm:
                d.stop()
            self.assertIn('sanitizer report', str(cm.exception), mode)

    def test_nonzero_exit_fails(self):
        d = self.fake('exit3').start()
        with self.assertRaises(AssertionError) as cm:
            d.stop()
        self.assertIn('exited 3', str(cm.exception))

    def test_ignored_sigterm_fails_in_bound(self):
        d = self.fake('ignore-term').start()
        t0 = time.monotonic()
        with self.assertRaises(AssertionError) as cm:
            d.stop(timeout=2)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn('did not exit', str(cm.exception))
        self.assertFalse(d.running(), 'the fixture must kill what it started')

    def test_early_exit_and_never_ready_fail_start(self):
        with self.assertRaises(AssertionError) as cm:
            self.fake('early-exit').start()
        self.assertIn('cannot listen', str(cm.exception))
        d = self.fake('never-ready')
        t0 = time.monotonic()
        with self.assertRaises(AssertionError):
            d.start(ready_timeout=1)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertFalse(d.running())


if __name__ == '__main__':
    fx.main()
