#!/usr/bin/env bash
# Writes seed corpora for the fuzz targets into DIR/<target>/ (generated at
# test time: no key material is kept in the repository).
set -euo pipefail
d="$1"
mkdir -p "$d/fuzz_csr" "$d/fuzz_b64" "$d/fuzz_http" "$d/fuzz_device"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
openssl req -new -newkey rsa:2048 -nodes -keyout "$t/k1" -subj "/CN=SEP001122334455" -outform DER -out "$d/fuzz_csr/rsa.der" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$t/k2" -subj "/CN=dev/O=x" \
  -addext "subjectAltName=DNS:a.example,IP:10.0.0.1" -outform DER -out "$d/fuzz_csr/ec_san.der" 2>/dev/null
openssl base64 -in "$d/fuzz_csr/rsa.der" > "$d/fuzz_b64/csr.b64"
printf 'QUJD\r\nREVG\r\n' > "$d/fuzz_b64/lines"
printf 'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: a\r\nContent-Type: application/pkcs10\r\nContent-Length: 4\r\nAuthorization: Basic ZXN0OnB3\r\nExpect: 100-continue\r\n\r\nQUJD' > "$d/fuzz_http/post"
printf 'GET /.well-known/est/cacerts HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' > "$d/fuzz_http/get"
printf 'op\ninstall\nauth\nstring\nauth_hash\n$6$salt$hash\nkeys\nec256,rsa2048\nby\n1798758000\nstatus\nfailed\nreason\ndeadline passed\nlsc_serial\n0AFF\nlsc_not_after\n1900000000\nauth_failures\n2\ncreated\n1\nupdated\n2' > "$d/fuzz_device/record"
printf 'op\nnone\nauth\nmic\nkeys\nrsa4096' > "$d/fuzz_device/short"
