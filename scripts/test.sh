#!/usr/bin/env bash
# The whole Stampede test suite, from a fresh Debian 12 machine:
#   1. installs the Debian packages (scripts/deps.sh --test),
#   2. builds and runs every unit + integration test (build/),
#   3. builds and runs them all again under AddressSanitizer + UBSan (build-asan/),
#   4. builds the libFuzzer targets with clang-14 and runs each for a bounded
#      number of inputs (build-fuzz/).
# The last line is "N passed, N failed". Exit status 0 only if nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"

# count_results DIR: add meson's per-test results (testlog.json) to the totals.
count_results() {
  local log="$1/meson-logs/testlog.json"
  [[ -f "$log" ]] || { failed=$((failed + 1)); return; }
  read -r p f < <(python3 - "$log" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL", "SKIP"): p += 1
    else: f += 1
print(p, f)
PY
)
  passed=$((passed + p))
  failed=$((failed + f))
}

# suite NAME DIR MESON-OPTIONS...: configure, build, run all tests.
suite() {
  local name="$1" dir="$2"
  shift 2
  echo "=== $name: configure + build ($dir)"
  if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; failed=$((failed + 1)); return; }
  fi
  if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    tail -50 "$dir.build.log"
    failed=$((failed + 1))
    return
  fi
  echo "=== $name: tests"
  rm -f "$dir/meson-logs/testlog.json"
  meson test -C "$dir" --print-errorlogs --num-processes 2 || true
  count_results "$dir"
}

suite "normal build" build
suite "ASan+UBSan build" build-asan -Db_sanitize=address,undefined -Db_lundef=false

echo "=== fuzz: clang-14 libFuzzer targets, bounded runs"
fuzzdir=build-fuzz
if [[ ! -f "$fuzzdir/build.ninja" ]]; then
  CC=clang-14 meson setup "$fuzzdir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    >"$fuzzdir.setup.log" 2>&1 || { cat "$fuzzdir.setup.log"; failed=$((failed + 1)); }
fi
if [[ -f "$fuzzdir/build.ninja" ]] && ninja -C "$fuzzdir" >"$fuzzdir.build.log" 2>&1; then
  seeds=$(mktemp -d)
  trap 'rm -rf "$seeds"' EXIT
  tests/fuzz/make_seeds.sh "$seeds" >/dev/null 2>&1 || true
  for f in fuzz_csr fuzz_b64 fuzz_http fuzz_device fuzz_capf_msg fuzz_capf_spki fuzz_capf_certauth \
      fuzz_ctl_page fuzz_rxgate; do
    mkdir -p "$seeds/$f"
    if "$fuzzdir/tests/fuzz/$f" -runs="${FUZZ_RUNS:-30000}" -max_len=8192 -max_total_time=120 \
        "$seeds/$f" >"$fuzzdir/$f.log" 2>&1; then
      echo "fuzz $f: ok ($(grep -o 'Done [0-9]* runs' "$fuzzdir/$f.log" | head -1))"
      passed=$((passed + 1))
    else
      echo "fuzz $f: FAILED"; tail -30 "$fuzzdir/$f.log"
      failed=$((failed + 1))
    fi
  done
else
  [[ -f "$fuzzdir.build.log" ]] && tail -30 "$fuzzdir.build.log"
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
