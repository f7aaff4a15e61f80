#!/usr/bin/env bash
# The transport benchmark: stampede-bench est against stampeded on the kernel
# transport and on the DPDK transport, in one run on the same machine, runs
# alternating so both see the same noise.
#   kernel: stampeded --transport kernel on 127.0.0.1 (loopback)
#   dpdk:   stampeded --transport dpdk on a net_tap interface (stpbench,
#           10.79.0.2/24; the kernel side is 10.79.0.1), same cores/signers
# Each run is COUNT fresh-handshake enrollments (RSA-2048 CSRs, TLS 1.3,
# CONCURRENCY clients) and prints the bench's line. Per transport it prints
# the medians of enrollments/s and server CPU per enrollment, then the ratio
# dpdk/kernel. For the DPDK runs it also reads the transport's counters
# (SIGUSR1) to get frames per enrollment, and, when `perf` works here,
# profiles one extra DPDK run to split stampeded's CPU into crypto, lwIP,
# the DPDK user-space path (PMD + our glue), and the kernel (the tap
# device's system calls and signals, plus the client's TCP receive work that
# tun runs inside our writev). From that it prints the measured cycles per
# frame of the user-space network path and a paper estimate for a real NIC.
# Needs root (tap), /dev/net/tun, iproute2.
# Usage: benches/run-bench-dpdk.sh [BUILD_DIR]   (default build-release)
#   COUNT (default 3000), RUNS (default 3), CONCURRENCY (default 64),
#   CORES (default 2), SIGNERS (default 2), SPIN_US (dpdk_spin_us, default 0).
# The DPDK daemon runs with dpdk_syn_rate 0: the bench is one source address
# opening connections faster than the default per-source SYN limit.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
count=${COUNT:-3000}
runs=${RUNS:-3}
conc=${CONCURRENCY:-64}
cores=${CORES:-2}
signers=${SIGNERS:-2}
spin=${SPIN_US:-0}
iface=stpbench
for exe in dataplane/stampeded benches/stampede-bench; do
  [[ -x $build/$exe ]] || { echo "run-bench-dpdk: $build/$exe missing (build first)" >&2; exit 2; }
done
[[ -c /dev/net/tun ]] || { echo "run-bench-dpdk: no /dev/net/tun: cannot make a tap device" >&2; exit 2; }

. benches/lib.sh

work=$(mktemp -d /tmp/stampede-bench-dpdk.XXXXXX)
pids=()
cleanup() {
  stop_pids 100 "${pids[@]}"
  ip link del "$iface" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_pid_file() { for _ in $(seq 200); do [[ -s $1/stampeded.pid ]] && return 0; sleep 0.1; done; return 1; }

kport=$(free_port)
mkdir -m 700 "$work/kernel" "$work/dpdk"
"$build/dataplane/stampeded" --data-dir "$work/kernel" --est-listen "127.0.0.1:$kport" --capf-listen "" \
  --cores "$cores" --signers "$signers" >"$work/kernel.log" 2>&1 &
pids+=($!)
"$build/dataplane/stampeded" --data-dir "$work/dpdk" --transport dpdk --est-listen "0.0.0.0:8443" --capf-listen "" \
  --dpdk-eal "-l 0 --no-huge --no-pci -m 512 --no-shconf --no-telemetry --vdev=net_tap0,iface=$iface" \
  --dpdk-addr 10.79.0.2/24 --dpdk-spin-us "$spin" --dpdk-syn-rate 0 --cores "$cores" --signers "$signers" >"$work/dpdk.log" 2>&1 &
pids+=($!)
wait_pid_file "$work/kernel" && wait_pid_file "$work/dpdk" || { tail "$work"/*.log; exit 1; }
dpid=$(cat "$work/dpdk/stampeded.pid")
ip addr add 10.79.0.1/24 dev "$iface"
ip link set "$iface" up
sysctl -qw "net.ipv6.conf.$iface.disable_ipv6=1" || true
for _ in $(seq 50); do ping -c 1 -W 1 10.79.0.2 >/dev/null 2>&1 && break; sleep 0.1; done

# frames: total rx+tx packets over all cores, from a fresh SIGUSR1 dump
frames() {
  local before
  before=$(grep -c 'dpdk core' "$work/dpdk.log" || true)
  kill -USR1 "$dpid"
  for _ in $(seq 50); do
    (($(grep -c 'dpdk core' "$work/dpdk.log") >= before + cores)) && break
    sleep 0.05
  done
  grep 'dpdk core' "$work/dpdk.log" | tail -n "$cores" |
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^(rx|tx)_packets=/) {split($i, kv, "="); s += kv[2]}} END {print s}'
}

bench() { # bench TRANSPORT: one run, prints the bench line
  local addr data
  if [[ $1 == kernel ]]; then addr=127.0.0.1:$kport; data=$work/kernel; else addr=10.79.0.2:8443; data=$work/dpdk; fi
  "$build/benches/stampede-bench" est --connect "$addr" --data-dir "$data" --count "$count" \
    --concurrency "$conc" --quiet | tail -1
}

echo "== transports: kernel (loopback) vs dpdk (net_tap $iface), cores=$cores signers=$signers" \
  "count=$count concurrency=$conc dpdk_spin_us=$spin"
echo "   machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
bench kernel >/dev/null # warm both (CA caches, Redis AOF, ARP)
bench dpdk >/dev/null
: >"$work/kernel.runs"
: >"$work/dpdk.runs"
: >"$work/frames"
for i in $(seq "$runs"); do
  line=$(bench kernel)
  echo "kernel: $line"
  echo "$line" >>"$work/kernel.runs"
  f0=$(frames)
  line=$(bench dpdk)
  f1=$(frames)
  echo "dpdk:   $line frames_per_enroll=$(awk -v a="$f0" -v b="$f1" -v n="$count" 'BEGIN {printf "%.1f", (b - a) / n}')"
  echo "$line" >>"$work/dpdk.runs"
  awk -v a="$f0" -v b="$f1" -v n="$count" 'BEGIN {printf "%.3f\n", (b - a) / n}' >>"$work/frames"
done
kr=$(field rate <"$work/kernel.runs" | median)
dr=$(field rate <"$work/dpdk.runs" | median)
kc=$(field server_cpu_us_per_enroll <"$work/kernel.runs" | median)
dc=$(field server_cpu_us_per_enroll <"$work/dpdk.runs" | median)
cr=$(field crypto_us_per_enroll <"$work/dpdk.runs" | median)
fpe=$(median <"$work/frames")
echo "kernel median: rate=$kr/s server_cpu_us=$kc"
echo "dpdk median:   rate=$dr/s server_cpu_us=$dc frames_per_enroll=$fpe crypto_us=$cr"
echo "ratio dpdk/kernel: rate=$(awk -v a="$dr" -v b="$kr" 'BEGIN {printf "%.2f", a / b}')" \
  "server_cpu=$(awk -v a="$dc" -v b="$kc" 'BEGIN {printf "%.2f", a / b}')"

# Where each transport's CPU goes: one more run of each under perf.
# profile TRANSPORT PID: prints the split and, for dpdk, cycles per frame.
profile() {
  local t=$1 pid=$2 line f0=0 f1=0 ppid mhz cpu
  perf record -F 2000 -e cpu-clock -p "$pid" -o "$work/perf.$t" >/dev/null 2>&1 &
  ppid=$!
  sleep 0.5
  [[ $t == dpdk ]] && f0=$(frames)
  line=$(bench "$t")
  [[ $t == dpdk ]] && f1=$(frames)
  kill -INT "$ppid"
  wait "$ppid" || true
  echo "profiled $t run: $line"
  mhz=$(grep -m1 'cpu MHz' /proc/cpuinfo | awk '{print $4}')
  cpu=$(echo "$line" | field server_cpu_us_per_enroll)
  perf report -i "$work/perf.$t" --no-children --sort dso,sym -g none --stdio --percent-limit 0 2>/dev/null |
    awk -v t="$t" -v cpu="$cpu" -v n="$count" -v f0="$f0" -v f1="$f1" -v mhz="$mhz" '
      /^#/ || NF < 4 { next }
      { pct = $1; sub(/%/, "", pct); dso = $2; sym = $NF; total += pct
        if (dso ~ /libcrypto|libssl/) c["crypto (BoringSSL)"] += pct
        else if (dso ~ /liblwip/) c["lwIP"] += pct
        else if (dso ~ /kallsyms/) c["kernel: " (t == "dpdk" ? "tap syscalls, per-frame signals, client TCP run by tun, scheduling" : "TCP/IP, epoll, scheduling")] += pct
        else if (sym ~ /^(rte_|pmd_|tap_|eth_|dp_dpdk_|dp_lw_|dp_rxgate_|bucket_|common_ring_)/) c["DPDK user space (PMD, mempool, our glue)"] += pct
        else if (dso ~ /vdso/) c["clock_gettime (vDSO)"] += pct
        else c["rest (engines, Redis client, libc)"] += pct }
      END {
        for (k in c) c[k] = c[k] * 100 / total # perf rounds each line: normalise to 100%
        for (k in c) printf "  %s %-58s %5.1f%%  %6.1f us/enrollment\n", t, k, c[k], c[k] * cpu / 100
        if (t != "dpdk") exit
        fr = (f1 - f0) / n
        us = (c["lwIP"] + c["DPDK user space (PMD, mempool, our glue)"]) * cpu / 100
        printf "  dpdk frames per enrollment: %.1f; user-space network path: %.1f us/enrollment = %.0f cycles/frame at %s MHz\n",
          fr, us, us * mhz / fr, mhz }'
}
if perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
  profile kernel "$(cat "$work/kernel/stampeded.pid")"
  profile dpdk "$dpid"
else
  echo "(perf not usable here: no CPU split)"
fi
