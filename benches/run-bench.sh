#!/usr/bin/env bash
# The benchmark set recorded in BENCHMARKS.md: for each build directory given
# (default: build-release, and build-fast if it exists), start stampeded on a
# fresh data dir (P-256 CA and TLS key), then run stampede-bench est with
# RSA-2048 CSRs over TLS 1.3: RUNS fresh-handshake runs and RUNS keep-alive
# runs, alternating. Prints each result line and the medians.
# Usage: benches/run-bench.sh [BUILD_DIR...]
#   COUNT (fresh, default 8000), KA_COUNT (keep-alive, default 20000), RUNS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
builds=("$@")
if ((${#builds[@]} == 0)); then
  builds=(build-release)
  [[ -x build-fast/dataplane/stampeded ]] && builds+=(build-fast)
fi
count=${COUNT:-8000}
ka_count=${KA_COUNT:-20000}
runs=${RUNS:-3}
port=${PORT:-18643}

. benches/lib.sh

for b in "${builds[@]}"; do
  data=$(mktemp -d /tmp/stampede-bench.XXXXXX)
  "$b/dataplane/stampeded" --data-dir "$data" --est-listen "127.0.0.1:$port" --capf-listen "" \
    >"$data.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [[ -f $data/stampeded.pid ]] && break; sleep 0.1; done
  echo "== $b ($(ldd "$b/dataplane/stampeded" | grep -o '/[^ ]*libcrypto[^ ]*'))"
  for mode in fresh keepalive; do
    : >"$data.$mode"
    for i in $(seq "$runs"); do
      if [[ $mode == fresh ]]; then
        line=$("$b/benches/stampede-bench" est --connect "127.0.0.1:$port" --data-dir "$data" \
          --count "$count" --concurrency 64 --quiet | tail -1)
      else
        line=$("$b/benches/stampede-bench" est --connect "127.0.0.1:$port" --data-dir "$data" \
          --count "$ka_count" --concurrency 64 --keepalive --quiet | tail -1)
      fi
      echo "$mode: $line"
      echo "$line" >>"$data.$mode"
    done
    echo "$mode median: rate=$(field rate <"$data.$mode" | median)/s" \
      "server_cpu_us=$(field server_cpu_us_per_enroll <"$data.$mode" | median)" \
      "crypto_us=$(field crypto_us_per_enroll <"$data.$mode" | median)" \
      "overhead=$(field overhead <"$data.$mode" | median)" \
      "crypto_quiet_us=$(field crypto_quiet_us <"$data.$mode" | median)" \
      "overhead_quiet=$(field overhead_quiet <"$data.$mode" | median)"
  done
  kill -TERM $pid
  wait $pid || true
  trap - EXIT
  rm -rf "$data" "$data".*
done
