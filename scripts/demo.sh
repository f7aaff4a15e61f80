#!/usr/bin/env bash
# Stampede demo rollout, from a fresh Debian 12 machine:
#   installs the Debian packages, builds (release), starts stampeded on its
#   embedded defaults (only --data-dir: it generates its CA, TLS certificate
#   and an EST user on first start), runs a short stampede-bench rollout of
#   EST enrollments against it with a progress line, enrolls one device with
#   curl + openssl and verifies the certificate against /cacerts, installs the
#   LSC of one phone over CAPF (TCP 3804) with the test client and verifies
#   it the same way, then stops the daemon with SIGTERM.
# Environment: DEMO_DIR (data dir, default ./demo-data), DEMO_COUNT
# (enrollments, default 5000), DEMO_PORT (EST, default 8443), DEMO_CAPF_PORT
# (default 3804).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=build-release
[[ -f $build/build.ninja ]] || meson setup $build -Dbuildtype=release >/dev/null
ninja -C $build >/dev/null

data=${DEMO_DIR:-$PWD/demo-data}
port=${DEMO_PORT:-8443}
capf_port=${DEMO_CAPF_PORT:-3804}
count=${DEMO_COUNT:-5000}
log=$data.log
echo "== starting stampeded --data-dir $data --est-listen 127.0.0.1:$port --capf-listen 127.0.0.1:$capf_port (log: $log)"
$build/dataplane/stampeded --data-dir "$data" --est-listen "127.0.0.1:$port" \
  --capf-listen "127.0.0.1:$capf_port" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "EST on" "$log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
sed 's/^/   /' "$log"

echo "== rollout: $count EST enrollments (fresh TLS each, RSA-2048 CSRs) with stampede-bench"
$build/benches/stampede-bench est --connect "127.0.0.1:$port" --data-dir "$data" --pid $pid \
  --count "$count" --concurrency 64 --progress

echo "== one device by hand over EST: registered with stampedectl, enrolled with curl + openssl"
ctl="$build/ra/stampedectl --data-dir $data"
$ctl device add SEP74A02FC0A676 --op install --auth null --replace | sed 's/^/   /'
tmp=$(mktemp -d)
openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -subj "/CN=SEP74A02FC0A676" \
  -outform DER -out "$tmp/csr.der" 2>/dev/null
openssl base64 -in "$tmp/csr.der" >"$tmp/csr.b64"
curl -sS --cacert "$data/ca.crt" "https://127.0.0.1:$port/.well-known/est/cacerts" |
  openssl base64 -d | openssl pkcs7 -inform DER -print_certs >"$tmp/ca.pem"
# The device authenticates by null string: its name and an empty password.
curl -sS --fail --cacert "$data/ca.crt" -u "SEP74A02FC0A676:" \
  -H 'Content-Type: application/pkcs10' -H 'Content-Transfer-Encoding: base64' \
  --data-binary @"$tmp/csr.b64" "https://127.0.0.1:$port/.well-known/est/simpleenroll" |
  openssl base64 -d | openssl pkcs7 -inform DER -print_certs >"$tmp/cert.pem"
openssl x509 -in "$tmp/cert.pem" -noout -subject -issuer -serial -enddate | sed 's/^/   /'
openssl verify -CAfile "$tmp/ca.pem" "$tmp/cert.pem" | sed 's/^/   /'

echo "== one phone over CAPF (TCP $capf_port): a Jabber-like version-2 client installs its LSC"
$ctl device add SEP74A02FC0A675 --op install --auth null --replace | sed 's/^/   /'
capf="python3 tests/integration/capf_client.py --connect 127.0.0.1:$capf_port --cafile $data/ca.crt"
$capf --device SEP74A02FC0A675 --version 2 --out-cert "$tmp/lsc.pem" --out-key "$tmp/lsc.key" | sed 's/^/   /'
openssl x509 -in "$tmp/lsc.pem" -noout -subject -issuer -serial -enddate | sed 's/^/   /'
openssl verify -CAfile "$tmp/ca.pem" "$tmp/lsc.pem" | sed 's/^/   /'
echo "   a second attempt (the operation is done, as in CUCM) and an unknown phone:"
$capf --device SEP74A02FC0A675 | sed 's/^/   /' || true
$capf --device SEP000000000000 | sed 's/^/   /' || true
rm -rf "$tmp"
echo "== the registry afterwards (Redis is the system of record)"
$ctl device show SEP74A02FC0A675 | sed 's/^/   /'
$ctl report | sed 's/^/   /'
echo "   audit stream entries: $(redis-cli -s "$data/redis.sock" XLEN stp:audit)"

echo "== stopping stampeded (SIGTERM drains in-flight requests)"
kill -TERM $pid
wait $pid && echo "   stampeded exited 0"
trap - EXIT
