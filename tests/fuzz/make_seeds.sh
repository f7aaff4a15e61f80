#!/usr/bin/env bash
# Writes seed corpora for the fuzz targets into DIR/<target>/ (generated at
# test time: no key material is kept in the repository).
set -euo pipefail
d="$1"
mkdir -p "$d/fuzz_csr" "$d/fuzz_b64" "$d/fuzz_http" "$d/fuzz_device" "$d/fuzz_capf_msg" "$d/fuzz_capf_spki"
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

# CAPF (capf-protocol.md §2.9): hex examples, plus messages around keys and a
# certificate made now. hexbytes "55 01 |..." writes the bytes; capf_msg OP
# wraps stdin in a header (session id 0x123) with the right body length.
hexbytes() { printf "$(printf '%s' "$1" | tr -cd '0-9a-fA-F' | sed 's/../\\x&/g')"; }
capf_msg() {
  local body n
  body=$(mktemp -p "$t")
  cat > "$body"
  n=$(stat -c %s "$body")
  hexbytes "55 $1 00 00 01 23 $(printf '%02x %02x' $((n >> 8)) $((n & 255)))"
  cat "$body"
}
c="$d/fuzz_capf_msg"
hexbytes "55 01 00 00 01 23 00 04 07 00 01 03" > "$c/auth_request"
hexbytes "55 01 00 00 01 23 00 08 07 00 01 03 08 00 01 00" > "$c/auth_request_type"
hexbytes "55 02 00 00 01 23 00 12 07 00 01 02 0d 00 07 43 53 46 31 32 33 00 01 00 01 01" > "$c/auth_response_jabber"
hexbytes "55 02 00 00 01 23 00 25 01 00 01 01 07 00 01 03 0b 00 07 31 32 33 34 35 36 00
          0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00" > "$c/auth_response_phone"
hexbytes "55 03 00 00 01 23 00 05 0a 00 02 08 00" > "$c/keygen_v2"
hexbytes "55 03 00 00 01 23 00 09 0a 00 02 08 00 11 00 01 00" > "$c/keygen_v3_rsa"
hexbytes "55 03 00 00 01 23 00 08 11 00 01 01 12 00 01 01" > "$c/keygen_v3_ec"
hexbytes "55 11 00 00 01 23 00 00" > "$c/in_progress"
hexbytes "55 0a 00 00 01 23 00 04 01 00 01 01" > "$c/store_response"
hexbytes "55 0f 00 00 01 23 00 04 01 00 01 07" > "$c/end_session"
hexbytes "55 0b 00 00 01 23 00 00" > "$c/fetch_request"
hexbytes "55 0e 00 00 01 23 00 04 01 00 01 07" > "$c/delete_response"
hexbytes "55 04 00 00 01 23 00 04 01 00 01 07" > "$c/keygen_failed"
hexbytes "55 0f 00 00 01 23 00 04 01 00 01 01 55 11 00 00 01 23 00 00" > "$c/pipelined"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$t/capf_rsa" 2>/dev/null
openssl pkey -in "$t/capf_rsa" -pubout -outform DER -out "$t/capf_rsa.spki" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$t/capf_ec" 2>/dev/null
openssl pkey -in "$t/capf_ec" -pubout -outform DER -out "$t/capf_ec.spki" 2>/dev/null
for k in rsa ec; do
  n=$(stat -c %s "$t/capf_$k.spki")
  { hexbytes "09 $(printf '%02x %02x' $((n >> 8)) $((n & 255)))"; cat "$t/capf_$k.spki"; } |
    capf_msg 04 > "$c/keygen_response_$k"
done
openssl req -x509 -new -key "$t/capf_ec" -subj "/CN=SEP74A02FC0A675" -days 30 -outform DER \
  -out "$t/capf_lsc.der" 2>/dev/null
n=$(stat -c %s "$t/capf_lsc.der")
cert_el() {   # CERTIFICATE element around $t/capf_lsc.der, type $1 (01 LSC, 02 MIC)
  hexbytes "04 $(printf '%02x %02x' $(((n + 5) >> 8)) $(((n + 5) & 255))) 01
            $(printf '%02x %02x' $(((n + 2) >> 8)) $(((n + 2) & 255))) 00 $1"
  cat "$t/capf_lsc.der"
}
{ hexbytes "03 00 01 01"; cert_el 01; } | capf_msg 09 > "$c/store_request"
{ hexbytes "01 00 01 01"; cert_el 01; } | capf_msg 0c > "$c/fetch_response"
{ hexbytes "01 00 01 01 07 00 01 03 0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00"
  cert_el 02
  hexbytes "06 00 04 aa bb cc dd 14 00 07 03 00 04 aa bb cc dd
            10 00 0c 00 00 01 aa 01 00 01 bb 03 00 01 cc 15 00 00"; } |
  capf_msg 02 > "$c/auth_response_cert"
s="$d/fuzz_capf_spki"
cp "$t/capf_rsa.spki" "$s/rsa2048"
cp "$t/capf_ec.spki" "$s/p384"
for curve in P-256 P-521; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$curve -out "$t/k_$curve" 2>/dev/null
  openssl pkey -in "$t/k_$curve" -pubout -outform DER -out "$s/$curve" 2>/dev/null
done
openssl ec -in "$t/k_P-256" -pubout -conv_form compressed -outform DER -out "$s/P-256c" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -pkeyopt rsa_keygen_pubexp:3 2>/dev/null |
  openssl pkey -pubout -outform DER -out "$s/rsa1024e3" 2>/dev/null

# certsrv pages (certsrv-protocol.md §3, §4): hand-written snippets in the
# shapes of tests/certsrv/adcs_emulator.py, CRLF line ends; a PEM body around
# a small fake DER made here. crlf turns the heredoc's LF into CRLF.
p="$d/fuzz_ctl_page"
mkdir -p "$p"
crlf() { sed 's/$/\r/'; }
crlf > "$p/issued_text" <<'EOF'
<HTML><Head><Title>Microsoft Active Directory Certificate Services</Title></Head><Body>
<P ID=locPageTitle> <B> Certificate Issued </B>
<P ID=locInfoIssued>The certificate you requested was issued to you.</P>
<A Href="certnew.cer?ReqID=CACert&amp;Renewal=3&amp;Mode=inst&amp;Enc=b64" ID=locInstallCA>Install CA certificate</A>
<TR><TD ID=locDerEnc>DER encoded</TD><TD><A Href="certnew.cer?ReqID=61108&amp;Enc=bin">Download certificate</A><BR>
<A Href="certnew.p7b?ReqID=61108&amp;Enc=bin">Download certificate chain</A></TD></TR>
</Body></HTML>
EOF
crlf > "$p/issued_script" <<'EOF'
<HTML><Head><Script Language="JavaScript">
<!--
	function handleInstallCA() {
		location="certnew.cer?ReqID=CACert&Renewal=3&Mode=inst&Enc=b64";
	}
	function handleGetCert() {
		location="certnew.cer?ReqID=61108&"+getEncoding();
	}
//-->
</Script></Head><Body><P ID=locInfoIssued>The certificate you requested was issued to you.</P></Body></HTML>
EOF
crlf > "$p/pending" <<'EOF'
<HTML><Body><P ID=locPageTitle> <B> Certificate Pending </B>
<P ID=locInfoNewReq>Your certificate request has been received.</P>
<P ID=locInfoReqID>Your Request Id is 57.</P>
</Body></HTML>
EOF
crlf > "$p/denied" <<'EOF'
<HTML><Body><P ID=locPageTitle> <B> Certificate Request Denied </B>
<P ID=locDenied>Your certificate request was denied.</P>
<P ID=locInfoReqIDandReason>Your Request Id is 61101. The disposition message is "Denied by Policy Module  0x80094800, The request was for a certificate template that is not supported by the Active Directory Certificate Services policy: WebServerX.".</P>
</Body></HTML>
EOF
crlf > "$p/error" <<'EOF'
<HTML><Body><P ID=locReqFailed>Your request failed. An error occurred while the server was processing your request.</P>
<DL>
<DT ID=locModeLabel>Request Mode:</DT>
		<DD>(certnew.cer/certnew.p7b/certcrl.crl certificate/crl fetch)</DD>
<DT ID=locDispLabel>Disposition:</DT>
		<DD>5 - Under Submission</DD>
<DT ID=locDispMsgLabel>Disposition message:</DT>
		<DD>Taken Under Submission</DD>
<DT ID=locResultLabel>Result:</DT>
		<DD>The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)</DD>
<DT ID=locLastStatLabel>LastStatus:</DT>
		<DD>The requested property value is empty. 0x80094004 (-2146877436 CERTSRV_E_PROPERTY_EMPTY)</DD>
</DL></Body></HTML>
EOF
crlf > "$p/certcarc" <<'EOF'
<HTML><Head><Script Language="JavaScript">
<!--
	var nRenewals=3;
//-->
</Script></Head><Body><P ID=locErrorMsg>The Certification Authority Service has not been started.</P></Body></HTML>
EOF
printf '<p>Num&#233;ro&nbsp;: &#x41;&amp;&lt;&gt;&quot;&apos; &#12345678901; <!-- c --> <style>x</style></p>' > "$p/entities"
printf '\x30\x07\x02\x01\x05\x04\x02\x41\x42' > "$p/der"
{ printf -- '-----BEGIN CERTIFICATE-----\r\n'; base64 < "$p/der" | crlf; printf -- '-----END CERTIFICATE-----\r\n'; } > "$p/pem"

# RX gate (dataplane/dp_rxgate.h): 8 bytes of clock (ms), then an Ethernet
# frame for fuzz_rxgate's gate (02:00:00:00:00:01, 192.0.2.10/24) from
# 198.51.100.1.
r="$d/fuzz_rxgate"
mkdir -p "$r"
clk="00 00 00 00 00 0f 42 40"
hexbytes "$clk ff ff ff ff ff ff 02 11 22 33 44 55 08 06
          00 01 08 00 06 04 00 01 02 11 22 33 44 55 c6 33 64 01 00 00 00 00 00 00 c0 00 02 0a" \
  > "$r/arp_request"
hexbytes "$clk 02 00 00 00 00 01 02 11 22 33 44 55 08 00
          45 00 00 28 12 34 40 00 40 06 00 00 c6 33 64 01 c0 00 02 0a
          9c 40 01 bb 00 00 00 01 00 00 00 00 50 02 ff ff 00 00 00 00" > "$r/tcp_syn"
hexbytes "$clk 02 00 00 00 00 01 02 11 22 33 44 55 08 00
          45 00 00 1c 12 34 00 00 40 01 00 00 c6 33 64 01 c0 00 02 0a
          08 00 f7 fd 00 01 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00" > "$r/icmp_echo"
