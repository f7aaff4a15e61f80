"""stampedectl against a real redis-server: device add/show/list/delete,
refusals with their exit codes and messages, hashed authentication strings,
CSV import with good and bad lines, the CAPF report (table, CSV, expiring
filter), the request list (open index, stale entries, --all with archived
records, --state, --prune), the audit stream, and Redis down -> exit 4
naming the URL; with stampeded, a rejected enrollment listed by
`requests`. Needs STAMPEDECTL (the executable), redis-server and redis-cli."""
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_fixture as fx  # noqa: E402

CTL = os.environ.get('STAMPEDECTL', '')
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_PARTIAL, EXIT_REDIS = 0, 1, 2, 3, 4
REQ_CSV_HEADER = 'id,identity,protocol,state,reason,peer,received,updated,attempts,serial,not_after,note'


def utc(t):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))


class RedisServer:
    """A private redis-server on a unix socket in `tmp` (no TCP, no disk)."""

    def __init__(self, tmp):
        self.sock = os.path.join(tmp, 'redis.sock')
        self.proc = None

    def start(self, wait=10.0):
        self.proc = subprocess.Popen(
            ['redis-server', '--port', '0', '--unixsocket', self.sock, '--unixsocketperm', '700',
             '--save', '', '--appendonly', 'no'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError('redis-server exited %d' % self.proc.returncode)
            if os.path.exists(self.sock) and self.cli('PING').strip() == 'PONG':
                return self
            time.sleep(0.05)
        raise AssertionError('redis-server not ready within %.0f s' % wait)

    def cli(self, *args):
        r = subprocess.run(['redis-cli', '-s', self.sock] + list(args), capture_output=True, text=True,
                           timeout=10)
        return r.stdout

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class TestStampedectl(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not CTL or not os.access(CTL, os.X_OK):
            raise unittest.SkipTest('STAMPEDECTL not set')
        if not shutil.which('redis-server') or not shutil.which('redis-cli'):
            raise unittest.SkipTest('redis-server/redis-cli not installed')
        cls.tmp = tempfile.mkdtemp(prefix='stampedectl-test.')
        cls.redis = RedisServer(cls.tmp)
        try:
            cls.redis.start()
        except BaseException:
            cls.redis.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.redis.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def ctl(self, *args, data_dir=None):
        r = subprocess.run([CTL, '--data-dir', data_dir or self.tmp] + list(args), capture_output=True,
                           text=True, timeout=60)
        for bad in ('runtime error:', 'Sanitizer'):  # ASan/UBSan builds
            self.assertNotIn(bad, r.stderr, args)
        return r.returncode, r.stdout, r.stderr

    def add(self, name, *extra):
        return self.ctl('device', 'add', name, *extra)

    def test_add_show_list_delete(self):
        rc, out, err = self.add('SEP74A02FC0A675', '--op', 'install', '--auth', 'null', '--key', 'ec256',
                                '--key', 'rsa2048,rsa4096', '--by', '2030-12-31T23:00Z')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn('SEP74A02FC0A675', out)
        rc, out, err = self.ctl('device', 'show', 'SEP74A02FC0A675', '--json')
        self.assertEqual(rc, EXIT_OK, err)
        d = json.loads(out)
        self.assertEqual((d['op'], d['auth'], d['status']), ('install', 'null', 'pending'))
        self.assertEqual(d['keys'], ['ec256', 'rsa2048', 'rsa4096'])
        self.assertEqual(d['by'], 1924988400)
        rc, out, _ = self.ctl('device', 'show', 'SEP74A02FC0A675')
        self.assertIn('operation       install', out)
        self.assertIn('LSC expires     NA', out)
        rc, out, _ = self.ctl('device', 'list')
        self.assertIn('SEP74A02FC0A675', out.split())
        self.assertEqual(self.redis.cli('SISMEMBER', 'stp:devices', 'SEP74A02FC0A675').strip(), '1')
        rc, out, err = self.ctl('device', 'delete', 'SEP74A02FC0A675')
        self.assertEqual(rc, EXIT_OK, err)
        rc, _, err = self.ctl('device', 'show', 'SEP74A02FC0A675')
        self.assertEqual(rc, EXIT_NOT_FOUND)
        self.assertIn('no device SEP74A02FC0A675', err)
        rc, _, err = self.ctl('device', 'delete', 'SEP74A02FC0A675')
        self.assertEqual(rc, EXIT_NOT_FOUND)
        self.assertNotIn('SEP74A02FC0A675', self.ctl('device', 'list')[1].split())

    def test_duplicate_refused_unless_replace(self):
        self.assertEqual(self.add('DUP1', '--op', 'install', '--auth', 'null')[0], EXIT_OK)
        rc, _, err = self.add('DUP1', '--op', 'delete', '--auth', 'mic')
        self.assertEqual(rc, EXIT_USAGE)
        self.assertIn('DUP1 already exists', err)
        self.assertEqual(json.loads(self.ctl('device', 'show', 'DUP1', '--json')[1])['op'], 'install')
        rc, _, err = self.add('DUP1', '--op', 'delete', '--auth', 'mic', '--replace')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertEqual(json.loads(self.ctl('device', 'show', 'DUP1', '--json')[1])['op'], 'delete')

    def test_bad_input_refused(self):
        cases = [
            (['bad name', '--op', 'install', '--auth', 'null'], "device name 'bad name'"),
            (['A' * 65, '--op', 'install', '--auth', 'null'], 'bad device name'),
            (['BAD1', '--op', 'upgrade', '--auth', 'null'], "operation 'upgrade'"),
            (['BAD1', '--auth', 'null'], "operation '(missing)'"),
            (['BAD1', '--op', 'install', '--auth', 'password'], "auth 'password'"),
            (['BAD1', '--op', 'install', '--auth', 'string'], 'needs an authentication string'),
            (['BAD1', '--op', 'install', '--auth', 'string', '--auth-string', '123'], '4 to 10 digits'),
            (['BAD1', '--op', 'install', '--auth', 'string', '--auth-string', '12345678901'], '4 to 10 digits'),
            (['BAD1', '--op', 'install', '--auth', 'string', '--auth-string', '12ab'], '4 to 10 digits'),
            (['BAD1', '--op', 'install', '--auth', 'null', '--auth-string', '1234'], 'only used with auth string'),
            (['BAD1', '--op', 'install', '--auth', 'null', '--key', 'rsa1536'], "keys 'rsa1536'"),
            (['BAD1', '--op', 'install', '--auth', 'null', '--key', 'ec256', '--key', 'ec256'], 'each once'),
            (['BAD1', '--op', 'install', '--auth', 'null', '--by', '31.12.2026'], "deadline '31.12.2026'"),
            (['BAD1', '--op', 'install', '--auth', 'null', '--bogus'], "unexpected argument '--bogus'"),
        ]
        for args, msg in cases:
            rc, _, err = self.add(*args)
            self.assertEqual(rc, EXIT_USAGE, args)
            self.assertIn(msg, err, args)
            self.assertNotIn('12345678901', err.replace(' '.join(args), ''))
        self.assertEqual(self.ctl('device', 'show', 'BAD1')[0], EXIT_NOT_FOUND)

    def test_past_deadline_warns(self):
        rc, _, err = self.add('PAST1', '--op', 'install', '--auth', 'lsc', '--by', '2020-01-01T00:00')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn('warning: device PAST1: deadline 2020-01-01T00:00 is in the past', err)

    def test_auth_string_stored_hashed(self):
        rc, _, err = self.add('SEPHASH00001', '--op', 'install', '--auth', 'string', '--auth-string', '73914286')
        self.assertEqual(rc, EXIT_OK, err)
        key = 'stp:dev:{SEPHASH00001}'
        self.assertTrue(self.redis.cli('HGET', key, 'auth_hash').startswith('$6$'))
        everything = self.redis.cli('HGETALL', key)
        self.assertNotIn('73914286', everything)
        out = self.ctl('device', 'show', 'SEPHASH00001', '--json')[1]
        self.assertTrue(json.loads(out)['auth_string_set'])
        self.assertNotIn('73914286', out)
        self.assertNotIn('73914286', self.redis.cli('XRANGE', 'stp:audit', '-', '+'))

    def test_import_good_and_bad_lines(self):
        path = os.path.join(self.tmp, 'devices.csv')
        with open(path, 'w') as f:
            f.write('name,op,auth,auth_string,keys,by\n'
                    'IMP1,install,null,,,\n'
                    'IMP2,bogus,null,,,\n'                        # line 3: bad op
                    'IMP3,install,string,99,,\n'                  # line 4: short string
                    'IMP4,delete,mic,,"ec256,rsa2048",2031-01-01T00:00Z\n'
                    '\n'
                    '# a comment\n'
                    'IMP5,install\n'                              # line 8: too few fields
                    'IMP6,troubleshoot,string,4321,rsa3072;ec384,\n'
                    'bad name,install,null,,,\n')                # line 10
        rc, out, err = self.ctl('import', path)
        self.assertEqual(rc, EXIT_PARTIAL, err)
        self.assertIn('imported 3, failed 4', out)
        for line, cause in ((3, "operation 'bogus'"), (4, '4 to 10 digits'), (8, '2 fields, expected 6'),
                            (10, "device name 'bad name'")):
            self.assertIn('%s:%d: ' % (path, line), err)
            self.assertRegex(err, r'%s:%d: .*%s' % (path.replace('.', r'\.'), line, cause.replace('(', r'\(')))
        names = self.ctl('device', 'list')[1].split()
        for n in ('IMP1', 'IMP4', 'IMP6'):
            self.assertIn(n, names)
        for n in ('IMP2', 'IMP3', 'IMP5'):
            self.assertNotIn(n, names)
        d = json.loads(self.ctl('device', 'show', 'IMP4', '--json')[1])
        self.assertEqual(d['keys'], ['ec256', 'rsa2048'])
        d = json.loads(self.ctl('device', 'show', 'IMP6', '--json')[1])
        self.assertEqual((d['keys'], d['auth_string_set']), (['rsa3072', 'ec384'], True))
        good = os.path.join(self.tmp, 'good.csv')
        with open(good, 'w') as f:
            f.write('name,op,auth,auth_string,keys,by\nIMP7,install,null,,,\n')
        rc, out, err = self.ctl('import', good)
        self.assertEqual((rc, out.strip()), (EXIT_OK, 'imported 1, failed 0'), err)
        last = self.redis.cli('XREVRANGE', 'stp:audit', '+', '-', 'COUNT', '1')
        self.assertIn('import', last)
        self.assertIn('imported 1, failed 0', last)
        badhdr = os.path.join(self.tmp, 'badhdr.csv')
        with open(badhdr, 'w') as f:
            f.write('device,operation\nX,install\n')
        rc, _, err = self.ctl('import', badhdr)
        self.assertEqual(rc, EXIT_USAGE)
        self.assertIn(badhdr + ':1: header must be', err)
        self.assertEqual(self.ctl('import', os.path.join(self.tmp, 'missing.csv'))[0], EXIT_USAGE)

    def test_import_pid_sn_columns(self):
        """The optional pid,sn columns give the CUCM-style LSC subject's model
        and serial number; empty means unknown; bad characters fail the line."""
        path = os.path.join(self.tmp, 'pidsn.csv')
        with open(path, 'w') as f:
            f.write('name,op,auth,auth_string,keys,by,pid,sn\n'
                    'PS1,install,null,,,,CP-8861,FCH18198CNQ\n'
                    'PS2,install,null,,,,,\n'
                    'PS3,install,null,,,,CP 8861,X\n'            # line 4: space in the PID
                    'PS4,install,null,,,\n')                     # line 5: 6 fields under an 8-field header
        rc, out, err = self.ctl('import', path)
        self.assertEqual(rc, EXIT_PARTIAL, err)
        self.assertIn('imported 2, failed 2', out)
        self.assertRegex(err, r':4: .*--pid/--sn')
        self.assertRegex(err, r':5: 6 fields, expected 8')
        self.assertIn('PID / SN        CP-8861 / FCH18198CNQ', self.ctl('device', 'show', 'PS1')[1])
        self.assertNotIn('PID / SN', self.ctl('device', 'show', 'PS2')[1])
        self.assertEqual(self.redis.cli('HGET', 'stp:dev:{PS1}', 'sn').strip(), 'FCH18198CNQ')

    def test_report_and_expiring_filter(self):
        now = int(time.time())
        self.add('REP1', '--op', 'install', '--auth', 'null')
        self.add('REP2', '--op', 'install', '--auth', 'null')
        self.redis.cli('HSET', 'stp:dev:{REP1}', 'lsc_serial', '0A1B2C', 'lsc_not_after', str(now + 5 * 86400 + 600),
                       'status', 'success', 'op', 'none')
        self.redis.cli('HSET', 'stp:dev:{REP2}', 'lsc_serial', 'FF01', 'lsc_not_after', str(now + 90 * 86400 + 600),
                       'status', 'failed', 'reason', 'deadline passed, late')
        rc, out, err = self.ctl('report')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn('DAYS LEFT', out.splitlines()[0])
        rep1 = [ln for ln in out.splitlines() if ln.startswith('REP1 ')][0]
        self.assertIn('0A1B2C', rep1)
        self.assertIn('success', rep1)
        self.assertRegex(rep1, r'\b5\b')
        rc, out, err = self.ctl('report', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        rows = {r['device']: r for r in csv.DictReader(io.StringIO(out))}
        self.assertEqual(rows['REP1']['lsc_serial'], '0A1B2C')
        self.assertEqual(rows['REP1']['days_left'], '5')
        self.assertEqual(rows['REP1']['operation'], 'none')
        self.assertEqual(rows['REP2']['reason'], 'deadline passed, late')
        self.assertEqual(rows['REP2']['days_left'], '90')
        self.assertEqual(rows['REP2']['status'], 'failed')
        rc, out, _ = self.ctl('report', '--csv', '--expiring-days', '30')
        names = [r['device'] for r in csv.DictReader(io.StringIO(out))]
        self.assertIn('REP1', names)
        self.assertNotIn('REP2', names)
        self.assertNotIn('REP3', names)
        self.assertEqual(self.ctl('report', '--expiring-days', 'soon')[0], EXIT_USAGE)

    def test_report_many_stale_and_malformed(self):
        path = os.path.join(self.tmp, 'many.csv')
        with open(path, 'w') as f:
            f.write('name,op,auth,auth_string,keys,by\n')
            f.writelines('MANY%04d,install,null,,,\n' % i for i in range(600))
        rc, out, err = self.ctl('import', path)
        self.assertEqual((rc, out.strip()), (EXIT_OK, 'imported 600, failed 0'), err)
        self.redis.cli('SADD', 'stp:devices', 'GHOST1')                  # index entry, no record
        self.redis.cli('HSET', 'stp:dev:{MAL1}', 'op', 'install', 'by', 'soon')
        self.redis.cli('SADD', 'stp:devices', 'MAL1')
        rc, out, err = self.ctl('report', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        names = [r['device'] for r in csv.DictReader(io.StringIO(out))]
        self.assertEqual(len([n for n in names if n.startswith('MANY')]), 600)
        self.assertNotIn('GHOST1', names)
        self.assertNotIn('MAL1', names)
        self.assertIn('skipped MAL1', err)
        rc, _, err = self.ctl('device', 'show', 'MAL1')
        self.assertEqual(rc, EXIT_REDIS)
        self.assertIn("field 'by' of MAL1", err)
        self.assertEqual(self.ctl('device', 'delete', 'GHOST1')[0], EXIT_NOT_FOUND)
        self.assertNotIn('GHOST1', self.ctl('device', 'list')[1].split())
        self.assertEqual(self.ctl('device', 'delete', 'MAL1')[0], EXIT_OK)

    def req_record(self, identity, csr, state, updated, key_suffix='', **fields):
        """req_record writes a request record as the request script would
        (csr/cert blobs included) and returns its id."""
        h = hashlib.sha256(csr).hexdigest()
        rid = '%s:%s' % (identity, h)
        args = ['HSET', 'stp:req:{%s}:%s%s' % (identity, h, key_suffix), 'id', rid, 'identity', identity,
                'protocol', 'est', 'peer', '192.0.2.1:40000', 'csr', 'CSRBLOB', 'mode', 'local', 'state', state,
                'received', str(updated - 60), 'updated', str(updated), 'attempts', '2']
        for k, v in fields.items():
            args += [k, str(v)]
        self.redis.cli(*args)
        return rid

    def test_requests(self):
        now = int(time.time())
        na = now + 86400
        alice = self.req_record('rq-alice', b'csr-a', 'rejected', now - 100,
                                reason='CSR signature does not verify, "really"')
        self.redis.cli('ZADD', 'stp:reqs:open', str(now - 100), alice)
        bob = self.req_record('rq-bob', b'csr-b', 'issued', now - 50, serial='0b0b', not_after=na, cert='CERTBLOB')
        self.redis.cli('ZADD', 'stp:reqs:open', str(now - 200), bob)           # stale: already issued
        gone = 'rq-gone:' + hashlib.sha256(b'csr-g').hexdigest()
        self.redis.cli('ZADD', 'stp:reqs:open', str(now - 300), gone)          # stale: no record
        carol = self.req_record('rq-carol', b'csr-c', 'issued', now - 40, serial='0c02', not_after=na, cert='C2')
        self.req_record('rq-carol', b'csr-c', 'issued', now - 400, key_suffix=':0c01', serial='0c01',
                        not_after=now - 10, cert='C1')                          # archived by a renewal
        mal = self.req_record('rq-mal', b'csr-m', 'rejected', now)
        self.redis.cli('HSET', 'stp:req:{rq-mal}:' + mal.split(':')[1], 'updated', 'soon')
        self.redis.cli('ZADD', 'stp:reqs:open', str(now), mal)

        rc, out, err = self.ctl('requests')
        self.assertEqual(rc, EXIT_OK, err)
        lines = out.splitlines()
        self.assertRegex(lines[0], r'^ID +IDENTITY +PROTO +STATE +UPDATED +ATTEMPTS +PEER +NOTE +REASON$')
        row = [ln for ln in lines if ln.startswith(alice[:len('rq-alice:') + 16] + ' ')]
        self.assertEqual(len(row), 1, out)
        self.assertRegex(row[0], r' rq-alice +est +rejected +%s +2 +192\.0\.2\.1:40000 +- +CSR signature does '
                                 r'not verify, "really"$' % utc(now - 100))
        self.assertRegex([ln for ln in lines if ln.startswith('rq-bob:')][0], r' issued .* stale ')
        self.assertRegex([ln for ln in lines if ln.startswith('rq-gone:')][0], r' missing .* stale +no record$')
        self.assertFalse([ln for ln in lines if 'rq-carol' in ln or 'rq-mal' in ln])
        self.assertIn("skipped stp:req:{rq-mal}:", err)
        self.assertIn("field 'updated' is not a number", err)
        self.assertIn('2 stale index entries', err)
        self.assertNotIn('BLOB', out)

        rc, out, err = self.ctl('requests', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertEqual(out.splitlines()[0], REQ_CSV_HEADER)
        rows = {r['id']: r for r in csv.DictReader(io.StringIO(out))}
        self.assertEqual(set(rows), {alice, bob, gone})
        a = rows[alice]
        self.assertEqual((a['identity'], a['protocol'], a['state'], a['reason'], a['peer'], a['attempts']),
                         ('rq-alice', 'est', 'rejected', 'CSR signature does not verify, "really"',
                          '192.0.2.1:40000', '2'))
        self.assertEqual((a['updated'], a['received'], a['serial'], a['not_after'], a['note']),
                         (utc(now - 100), utc(now - 160), '', '', ''))
        self.assertEqual((rows[bob]['state'], rows[bob]['serial'], rows[bob]['note']), ('issued', '0b0b', 'stale'))
        self.assertEqual((rows[gone]['state'], rows[gone]['identity'], rows[gone]['attempts'], rows[gone]['note']),
                         ('missing', 'rq-gone', '', 'stale'))

        rc, out, _ = self.ctl('requests', '--csv', '--state', 'rejected')
        self.assertEqual([r['id'] for r in csv.DictReader(io.StringIO(out))], [alice])
        rc, out, err = self.ctl('requests', '--all', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        rows = list(csv.DictReader(io.StringIO(out)))
        mine = [r for r in rows if r['identity'].startswith('rq-')]
        self.assertEqual(sorted((r['identity'], r['state'], r['serial']) for r in mine),
                         [('rq-alice', 'rejected', ''), ('rq-bob', 'issued', '0b0b'), ('rq-carol', 'archived', '0c01'),
                          ('rq-carol', 'issued', '0c02')])
        c2 = [r for r in mine if r['serial'] == '0c02'][0]
        self.assertEqual((c2['id'], c2['not_after'], c2['note']), (carol, utc(na), ''))
        rc, out, _ = self.ctl('requests', '--all', '--state', 'archived')
        self.assertRegex(out.splitlines()[0], r'SERIAL +NOT AFTER +REASON$')
        self.assertEqual([ln.split()[1] for ln in out.splitlines()[1:]], ['rq-carol'])
        self.assertIn(' 0c01 ', out)

        for bad in (['--state', 'bogus'], ['--state'], ['--all', '--prune'], ['--frob'], ['extra']):
            rc, _, err = self.ctl('requests', *bad)
            self.assertEqual(rc, EXIT_USAGE, bad)
            self.assertIn('requests:', err)

        rc, out, err = self.ctl('requests', '--prune', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn('removed 2 stale entries from stp:reqs:open', err)
        self.assertEqual({r['id']: r['note'] for r in csv.DictReader(io.StringIO(out))},
                         {alice: '', bob: 'pruned', gone: 'pruned'})
        self.assertEqual(self.redis.cli('ZSCORE', 'stp:reqs:open', bob).strip(), '')
        self.assertEqual(self.redis.cli('ZCARD', 'stp:reqs:open').strip(), '2')     # alice, mal
        self.assertEqual(self.redis.cli('HGET', 'stp:req:{rq-bob}:' + bob.split(':')[1], 'state').strip(), 'issued')
        last = self.redis.cli('XREVRANGE', 'stp:audit', '+', '-', 'COUNT', '1')
        self.assertIn('index-prune', last)
        self.assertIn('stampedectl:', last)
        rc, out, err = self.ctl('requests', '--prune')
        self.assertEqual(rc, EXIT_OK, err)
        self.assertNotIn('stale', err)
        self.assertNotIn('removed', err)

        r = subprocess.run([CTL, 'requests', '--help'], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, EXIT_OK)
        for word in ('--all', '--prune', '--state', 'archived', REQ_CSV_HEADER, 'Exit codes'):
            self.assertIn(word, r.stdout)
        rc, _, err = self.ctl('requests', data_dir=os.path.join(self.tmp, 'nowhere'))
        self.assertEqual(rc, EXIT_REDIS)
        self.assertIn('nowhere/redis.sock', err)

    def test_audit_stream(self):
        before = int(self.redis.cli('XLEN', 'stp:audit').strip() or 0)
        self.add('AUD1', '--op', 'install', '--auth', 'null')
        self.ctl('device', 'delete', 'AUD1')
        self.assertEqual(int(self.redis.cli('XLEN', 'stp:audit').strip()), before + 2)
        entries = self.redis.cli('XREVRANGE', 'stp:audit', '+', '-', 'COUNT', '2')
        self.assertIn('device-delete-record', entries)
        self.assertIn('device-add', entries)
        self.assertIn('AUD1', entries)
        self.assertIn('stampedectl:', entries)

    def test_redis_down(self):
        rc, _, err = self.ctl('device', 'list', data_dir=os.path.join(self.tmp, 'nowhere'))
        self.assertEqual(rc, EXIT_REDIS)
        self.assertIn('unix:%s/nowhere/redis.sock' % self.tmp, err)
        r = subprocess.run([CTL, '--redis', 'redis://127.0.0.1:1/0', 'device', 'show', 'X'], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, EXIT_REDIS)
        self.assertIn('redis://127.0.0.1:1/0', r.stderr)
        r = subprocess.run([CTL, '--redis', 'http://x', 'device', 'list'], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, EXIT_USAGE)

    def test_help_version_usage(self):
        r = subprocess.run([CTL, '--help'], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, EXIT_OK)
        self.assertIn('Exit codes', r.stdout)
        r = subprocess.run([CTL, 'device', 'add', '--help'], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, EXIT_OK)
        self.assertIn('--auth-string', r.stdout)
        r = subprocess.run([CTL, '--version'], capture_output=True, text=True, timeout=10)
        self.assertRegex(r.stdout, r'^stampedectl \d')
        r = subprocess.run([CTL, 'device', 'list'], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, EXIT_USAGE)
        self.assertIn('--data-dir DIR or --redis URL', r.stderr)
        self.assertEqual(self.ctl('frobnicate')[0], EXIT_USAGE)


class TestStampedectlEmbedded(fx.DaemonTestCase):
    """stampedectl --data-dir finds the Redis that stampeded embeds."""

    def ctl(self, data_dir, *args):
        r = subprocess.run([CTL, '--data-dir', data_dir] + list(args), capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def test_data_dir_reaches_embedded_redis(self):
        if not CTL or not os.environ.get('STAMPEDED'):
            self.skipTest('STAMPEDECTL/STAMPEDED not set')
        d = self.daemon()
        rc, _, err = self.ctl(d.data_dir, 'device', 'add', 'SEPEMBED00001', '--op', 'install', '--auth', 'null')
        self.assertEqual(rc, EXIT_OK, err)
        rc, out, err = self.ctl(d.data_dir, 'device', 'list')
        self.assertEqual((rc, out.split()), (EXIT_OK, ['SEPEMBED00001']), err)
        self.stop_ok(d)
        rc, _, err = self.ctl(d.data_dir, 'device', 'list')
        self.assertEqual(rc, EXIT_REDIS)
        self.assertIn(os.path.join(d.data_dir, 'redis.sock'), err)

    def test_requests_lists_rejected_enrollment(self):
        if not CTL or not os.environ.get('STAMPEDED'):
            self.skipTest('STAMPEDECTL/STAMPEDED not set')
        d = self.daemon()
        key = fx.gen_key(os.path.join(self.tmp, 'rq.key'), 'rsa2048')
        good = fx.make_csr(key, '/CN=rq-good', os.path.join(self.tmp, 'rq-good.csr'))
        bad = bytearray(fx.make_csr(key, '/CN=rq-bad', os.path.join(self.tmp, 'rq-bad.csr')))
        bad[-5] ^= 0x01   # inside the RSA signature BIT STRING
        bad = bytes(bad)
        r = fx.curl_enroll(d, bad)
        self.assertEqual(r.status, 400, r)
        r = fx.curl_enroll(d, good)
        self.assertEqual(r.status, 200, r)
        bad_id = 'est:' + hashlib.sha256(bad).hexdigest()
        good_id = 'est:' + hashlib.sha256(good).hexdigest()

        rc, out, err = self.ctl(d.data_dir, 'requests')
        self.assertEqual(rc, EXIT_OK, err)
        lines = out.splitlines()
        self.assertIn('REASON', lines[0])
        self.assertEqual(len(lines), 2, out)   # the header and the rejected request only
        self.assertRegex(lines[1], r'^%s +est +est +rejected +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +1 +127\.0\.0\.1:\d+ +- '
                                   r'+CSR signature does not verify' % bad_id[:4 + 16])

        rc, out, err = self.ctl(d.data_dir, 'requests', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual([r['id'] for r in rows], [bad_id])
        row = rows[0]
        self.assertEqual((row['identity'], row['protocol'], row['state'], row['attempts'], row['note']),
                         ('est', 'est', 'rejected', '1', ''))
        self.assertIn('signature', row['reason'])
        self.assertTrue(row['peer'].startswith('127.0.0.1:'), row)
        self.assertRegex(row['updated'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')

        rc, out, err = self.ctl(d.data_dir, 'requests', '--all', '--csv')
        self.assertEqual(rc, EXIT_OK, err)
        rows = {r['id']: r for r in csv.DictReader(io.StringIO(out))}
        self.assertEqual(set(rows), {bad_id, good_id})
        self.assertEqual(rows[good_id]['state'], 'issued')
        self.assertRegex(rows[good_id]['serial'], r'^[0-9a-f]+$')
        self.assertRegex(rows[good_id]['not_after'], r'Z$')
        self.stop_ok(d)


if __name__ == '__main__':
    unittest.main(verbosity=2)
