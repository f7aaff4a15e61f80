#!/usr/bin/env bash
# The CAPF benchmark set: start stampeded on a fresh data dir (embedded Redis,
# CAPF and EST on free loopback ports), then run `stampede-bench capf` RUNS
# times for version 2 phones with RSA-2048 keys and RUNS times for version 3
# phones with P-256 keys, alternating. Every run installs COUNT devices of its
# own (prefix SEPR<i> or SEPE<i>, provisioned by the bench through
# `stampedectl import`), each with a key of its own: stampeded refuses a
# public key bound to another device, so no run may meet the devices or keys
# of another. Prints each result line and the medians.
# Keys: the bench caches them per device prefix in the data dir; this script
# keeps those files across its runs in KEY_CACHE, so RSA keys (~0.1 s each on
# one core) are generated only the first time.
# Usage: benches/run-bench-capf.sh [BUILD_DIR]       (default build-release)
#   COUNT (default 3000), RUNS (default 3), CONCURRENCY (default 64),
#   KEY_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/stampede-bench-capf),
#   CA_KEY (stampeded's ca_key for the fresh CA, which is also the CAPF TLS
#   certificate: default stampeded's, ec256; rsa2048 is what phones expect)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
count=${COUNT:-3000}
runs=${RUNS:-3}
conc=${CONCURRENCY:-64}
cache=${KEY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stampede-bench-capf}
ca_args=()
[[ -n ${CA_KEY:-} ]] && ca_args=(--ca-key "$CA_KEY")

for exe in dataplane/stampeded benches/stampede-bench ra/stampedectl; do
  [[ -x $build/$exe ]] || { echo "run-bench-capf: $build/$exe missing (build first)" >&2; exit 2; }
done

. benches/lib.sh

data=$(mktemp -d /tmp/stampede-bench-capf.XXXXXX)
pid=
cleanup() {
  # Keep the generated keys for the next run of this script.
  if compgen -G "$data/bench-capf-keys-*.pem" >/dev/null; then
    mkdir -p "$cache" && chmod 700 "$cache" && cp -p "$data"/bench-capf-keys-*.pem "$cache"/ || true
  fi
  [[ -n $pid ]] && stop_pids 50 "$pid"
  rm -rf "$data" "$data".*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

capf_port=$(free_port)
est_port=$(free_port)
while [[ $est_port == "$capf_port" ]]; do est_port=$(free_port); done
"$build/dataplane/stampeded" --data-dir "$data" --est-listen "127.0.0.1:$est_port" \
  --capf-listen "127.0.0.1:$capf_port" "${ca_args[@]}" >"$data.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [[ -S $data/redis.sock && -f $data/stampeded.pid ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "run-bench-capf: stampeded exited:" >&2; cat "$data.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $data/stampeded.pid ]] || { echo "run-bench-capf: stampeded did not start" >&2; cat "$data.log" >&2; exit 1; }
compgen -G "$cache/bench-capf-keys-*.pem" >/dev/null && cp -p "$cache"/bench-capf-keys-*.pem "$data"/
echo "== $build: stampeded pid $pid, CAPF 127.0.0.1:$capf_port, CA key ${CA_KEY:-default}," \
  "$count devices per run, concurrency $conc" \
  "($(ldd "$build/dataplane/stampeded" | grep -o '/[^ ]*libcrypto[^ ]*'))"

status=0
: >"$data.v2"
: >"$data.v3"
for i in $(seq "$runs"); do
  for mode in v2 v3; do
    if [[ $mode == v2 ]]; then args=(--version 2 --key rsa2048 --devices "SEPR$i")
    else args=(--version 3 --key ec256 --devices "SEPE$i"); fi
    # Bounded: the first run may generate COUNT RSA keys; a hung server must
    # not hang the script.
    if line=$(timeout 1800 "$build/benches/stampede-bench" capf --connect "127.0.0.1:$capf_port" \
        --data-dir "$data" --count "$count" --concurrency "$conc" "${args[@]}" --quiet | tail -1); then :
    else status=1; fi
    echo "$mode run $i: $line"
    [[ $line == enrollments=* ]] && echo "$line" >>"$data.$mode"
  done
done
for mode in v2 v3; do
  [[ -s $data.$mode ]] || continue
  label=$([[ $mode == v2 ]] && echo "v2/RSA-2048" || echo "v3/P-256")
  echo "$label median: rate=$(field rate <"$data.$mode" | median)/s" \
    "server_cpu_us=$(field server_cpu_us_per_enroll <"$data.$mode" | median)" \
    "crypto_us=$(field crypto_us_per_enroll <"$data.$mode" | median)" \
    "overhead=$(field overhead <"$data.$mode" | median)" \
    "crypto_quiet_us=$(field crypto_quiet_us <"$data.$mode" | median)" \
    "overhead_quiet=$(field overhead_quiet <"$data.$mode" | median)" \
    "redis_cmds=$(field redis_cmds_per_enroll <"$data.$mode" | median)"
done
echo "stampeded log: $(wc -l <"$data.log") lines, $(grep -c ' WARN ' "$data.log" || true) WARN," \
  "$(grep -c ' ERROR ' "$data.log" || true) ERROR"
grep -E ' (WARN|ERROR) ' "$data.log" | grep -v '\[main\]' | sed -E 's/peer=[^ ]+ //; s/device=[^ :]+/device=D/' |
  cut -c26- | sort | uniq -c | sort -rn | head -5 || true
exit $status
