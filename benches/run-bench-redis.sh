#!/usr/bin/env bash
# The cost of Redis in the enrollment path. For one build directory (default
# build-release) start two stampeded on fresh data dirs (P-256 CA and TLS key):
# "redis" with its embedded Redis (the default, DATA/redis.sock) and "off" with
# --redis off (nothing recorded). Then run stampede-bench est with RSA-2048
# CSRs over TLS 1.3 against them in turn, redis, off, redis, off... (so drift
# of the shared host hits both): RUNS fresh-handshake runs each, then RUNS
# keep-alive runs each. Prints each result line (and, for redis, the bench's
# Redis cost line), per configuration and mode the medians, and the ratio
# rate(redis)/rate(off) for fresh and keep-alive (the target is >= 0.80): the
# ratio of the medians and the median of the per-round ratios.
# Usage: benches/run-bench-redis.sh [BUILD_DIR]
#   COUNT (fresh, default 8000), KA_COUNT (keep-alive, default 20000), RUNS (default 3),
#   PORT (the redis daemon's; the off daemon listens on PORT+1; default 18653),
#   CONC (client concurrency, default 64; both daemons get the same),
#   TMPDIR (where the data dirs go, default /tmp: the AOF is written there)
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build-release}
count=${COUNT:-8000}
ka_count=${KA_COUNT:-20000}
runs=${RUNS:-3}
port=${PORT:-18653}
conc=${CONC:-64}
bench="$b/benches/stampede-bench"
[[ -x $b/dataplane/stampeded && -x $bench ]] || { echo "no stampeded/stampede-bench in $b" >&2; exit 2; }

. benches/lib.sh
# bytes: the "N B in + M B out" of the bench's redis line; $1 = 1 (in) or 2 (out)
bytes() { grep -oE '[0-9]+ B in \+ [0-9]+ B out' | awk -v k="$1" '{print k == 1 ? $1 : $5}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {print (a == "na" || b == "na" || b == 0) ? "na" : sprintf("%.3f", a / b)}'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/stampede-bench-redis.XXXXXX")
declare -A pid=() dir=() prt=()

# stop: SIGTERM each daemon (it stops its own redis-server), wait at most
# 10 s, then SIGKILL it and its children (the embedded redis-server).
stop() {
  local c p kids
  for c in "${!pid[@]}"; do kill -TERM "${pid[$c]}" 2>/dev/null || true; done
  for c in "${!pid[@]}"; do
    p=${pid[$c]}
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      kids=$(pgrep -P "$p" || true)
      kill -KILL "$p" $kids 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  pid=()
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

# start NAME PORT [stampeded options...]: a daemon on a fresh data dir; waits
# for its pid file (written once enrollments work, Redis connected).
start() {
  local name=$1 p=$2
  shift 2
  dir[$name]="$work/$name"
  prt[$name]=$p
  "$b/dataplane/stampeded" --data-dir "${dir[$name]}" --est-listen "127.0.0.1:$p" --capf-listen "" "$@" \
    >"$work/$name.log" 2>&1 &
  pid[$name]=$!
  for _ in $(seq 200); do
    [[ -f ${dir[$name]}/stampeded.pid ]] && return 0
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "stampeded ($name) did not come up:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

start redis "$port"
start off $((port + 1)) --redis off
echo "== $b: redis (embedded, port $port) vs off (port $((port + 1)));" \
  "fresh COUNT=$count, keep-alive KA_COUNT=$ka_count, RUNS=$runs"

# one MODE CONFIG: one bench run; prints and keeps its result line.
one() {
  local mode=$1 c=$2 n=$count ka=() redis=() out rc=0
  [[ $mode == keepalive ]] && n=$ka_count && ka=(--keepalive)
  [[ $c == off ]] && redis=(--redis off)
  out=$("$bench" est --connect "127.0.0.1:${prt[$c]}" --data-dir "${dir[$c]}" --count "$n" \
    --concurrency "$conc" "${ka[@]}" "${redis[@]}" 2>"$work/bench.err") || rc=$?
  if ((rc != 0)); then
    echo "$mode $c: stampede-bench exit $rc" >&2
    tail -5 "$work/bench.err" >&2
  fi
  echo "$mode $c: $(tail -1 <<<"$out")"
  [[ $c == redis ]] && grep -m1 '^  redis: ' <<<"$out" | sed "s/^ /$mode $c:/"
  tail -1 <<<"$out" >>"$work/$mode.$c"
  grep -m1 '^  redis: ' <<<"$out" >>"$work/$mode.$c.redis" || true
}

for mode in fresh keepalive; do
  for i in $(seq "$runs"); do
    for c in redis off; do one "$mode" "$c"; done
  done
done

echo "== medians"
declare -A rate=()
for mode in fresh keepalive; do
  for c in redis off; do
    f="$work/$mode.$c"
    rate[$mode.$c]=$(field rate <"$f" | median)
    echo "$mode $c: rate=${rate[$mode.$c]}/s" \
      "p50_ms=$(field p50_ms <"$f" | median) p99_ms=$(field p99_ms <"$f" | median)" \
      "server_cpu_us=$(field server_cpu_us_per_enroll <"$f" | median)" \
      "overhead=$(field overhead <"$f" | median)" \
      "redis_cmds=$(field redis_cmds_per_enroll <"$f" | median)" \
      "redis_reads=$(field redis_reads_per_enroll <"$f" | median)" \
      "redis_cpu_us=$(field redis_cpu_us_per_enroll <"$f" | median)" \
      "redis_bytes_in=$(bytes 1 <"$f.redis" | median)" \
      "redis_bytes_out=$(bytes 2 <"$f.redis" | median)"
  done
done

echo "== rate(redis)/rate(off) (target >= 0.80)"
for mode in fresh keepalive; do
  pairs=$(paste -d' ' <(field rate <"$work/$mode.redis") <(field rate <"$work/$mode.off") |
    awk '$2 > 0 {printf "%.3f\n", $1 / $2}' | median)
  echo "$mode: $(ratio "${rate[$mode.redis]}" "${rate[$mode.off]}") (ratio of medians)," \
    "$pairs (median of the $runs per-round ratios)"
done
