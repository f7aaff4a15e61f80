#!/usr/bin/env bash
# The online CA benchmark: EST enrollments per second through the whole
# online path, and upstream HTTP requests per enrollment.
#   stampede-bench est -> stampeded --ca-mode online -> embedded Redis
#     -> stampede-control (POOL connections, NTLM) -> the ADCS web-enrollment
#     emulator (tests/certsrv/adcs_emulator.py, HTTPS + NTLM, auto template)
# It starts the three servers on free loopback ports, warms the pool with
# WARM enrollments, then runs RUNS timed runs of COUNT enrollments each and
# prints per run: the bench's result line, the emulator's request counts
# during the run (total, POST certfnsh.asp, GET certnew.cer, login legs)
# divided by the enrollments, and the CPU per enrollment of stampeded,
# stampede-control and the emulator (/proc/PID/stat utime+stime).
# The emulator is a Python test fixture (one thread per connection): it, not
# Stampede, bounds the rate here; the figure that carries over to a real
# ADCS is requests per enrollment.
# Usage: benches/run-bench-online.sh [BUILD_DIR]   (default build-release)
#   COUNT (default 1000), RUNS (default 3), CONCURRENCY (default 32),
#   POOL (stampede-control pool_size, default 4), WARM (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
count=${COUNT:-1000}
runs=${RUNS:-3}
conc=${CONCURRENCY:-32}
pool=${POOL:-4}
warm=${WARM:-50}
for exe in dataplane/stampeded benches/stampede-bench control/stampede-control; do
  [[ -x $build/$exe ]] || { echo "run-bench-online: $build/$exe missing (build first)" >&2; exit 2; }
done

. benches/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
counts() { curl -s "http://127.0.0.1:$cport/control/counts"; }

work=$(mktemp -d /tmp/stampede-bench-online.XXXXXX)
pids=()
cleanup() {
  stop_pids 50 "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. the emulator (its password is generated here and given to both sides)
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
mkfifo "$work/ready"
mkdir -p "$work/emu"
python3 tests/certsrv/adcs_emulator.py --workdir "$work/emu" --auth ntlm --user svc-stampede \
  --domain EMU --password "$password" >"$work/ready" 2>"$work/emu.log" &
pids+=($!)
emu_pid=$!
read -r -t 60 ready <"$work/ready" || { echo "run-bench-online: emulator not ready" >&2; cat "$work/emu.log" >&2; exit 1; }
eport=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["https_port"])' "$ready")
cport=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["control_port"])' "$ready")
tls_root=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tls_root"])' "$ready")

# 2. stampeded in online mode (one enrollment waits up to 30 s: no 202s here)
data=$work/data
est_port=$(free_port)
"$build/dataplane/stampeded" --data-dir "$data" --est-listen "127.0.0.1:$est_port" --capf-listen "" \
  --ca-mode online --online-wait-ms 30000 --queue-bound 8192 >"$work/stampeded.log" 2>&1 &
pids+=($!)
sd_pid=$!
for _ in $(seq 100); do [[ -f $data/stampeded.pid ]] && break; sleep 0.1; done
[[ -f $data/stampeded.pid ]] || { echo "run-bench-online: stampeded did not start" >&2; cat "$work/stampeded.log" >&2; exit 1; }

# 3. stampede-control on stampeded's embedded Redis
install -m 600 /dev/null "$work/upstream-password"
echo "$password" >"$work/upstream-password"
"$build/control/stampede-control" --data-dir "$data" --certsrv-url "https://adcs.test:$eport/certsrv" \
  --resolve "adcs.test:$eport:127.0.0.1" --ca-bundle "$tls_root" --auth ntlm --user 'EMU\svc-stampede' \
  --password-file "$work/upstream-password" --template WebServer --pool-size "$pool" >"$work/control.log" 2>&1 &
pids+=($!)
ctl_pid=$!
for _ in $(seq 100); do grep -q ' ready:' "$work/control.log" && break; sleep 0.1; done
grep -q ' ready:' "$work/control.log" || { echo "run-bench-online: stampede-control not ready" >&2; cat "$work/control.log" >&2; exit 1; }

echo "== online CA bench: $build, emulator :$eport (NTLM), stampede-control pool $pool, stampeded :$est_port," \
  "$count enrollments per run, concurrency $conc"
bench() { timeout 1800 "$build/benches/stampede-bench" est --connect "127.0.0.1:$est_port" --data-dir "$data" \
  --quiet "$@" | tail -1; }
bench --count "$warm" --concurrency "$pool" >/dev/null   # log the pool in: every connection warm

status=0
for i in $(seq "$runs"); do
  before=$(counts); s0=$(cpu_ticks "$sd_pid"); c0=$(cpu_ticks "$ctl_pid"); e0=$(cpu_ticks "$emu_pid")
  line=$(bench --count "$count" --concurrency "$conc") || status=1
  after=$(counts); s1=$(cpu_ticks "$sd_pid"); c1=$(cpu_ticks "$ctl_pid"); e1=$(cpu_ticks "$emu_pid")
  echo "run $i: $line"
  python3 - "$before" "$after" "$count" "$s0" "$s1" "$c0" "$c1" "$e0" "$e1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
b, a, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
s0, s1, c0, c1, e0, e1, hz = map(int, sys.argv[4:])
d = lambda k: a['routes'].get(k, 0) - b['routes'].get(k, 0)
total = a['total'] - b['total']
us = lambda t0, t1: (t1 - t0) * 1e6 / hz / n
print('  upstream per enrollment: requests=%.2f (POST certfnsh.asp %.2f, GET certnew.cer %.2f, GET /certsrv/ %.2f)'
      ' new_connections=%d' % (total / n, d('/certsrv/certfnsh.asp') / n, d('/certsrv/certnew.cer') / n,
                                d('/certsrv/') / n, len(a['connections']) - len(b['connections'])))
print('  cpu per enrollment: stampeded %.0f us, stampede-control %.0f us, emulator %.0f us'
      % (us(s0, s1), us(c0, c1), us(e0, e1)))
PY
done
grep -E 'summary|submitted' "$work/control.log" | tail -1 || true
echo "logs: stampeded $(grep -c ' WARN \| ERROR ' "$work/stampeded.log" || true) WARN/ERROR," \
  "stampede-control $(grep -c ' WARN \| ERROR ' "$work/control.log" || true) WARN/ERROR"
exit $status
