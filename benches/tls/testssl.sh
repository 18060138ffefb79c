#!/usr/bin/env bash
# testssl.sh (the Debian package) against portcullis's TLS listener: a manual check, it takes minutes.
#
#   bash benches/tls/testssl.sh
#
# Starts a release build with a fresh ECDSA P-256 certificate for localhost on an ephemeral port, runs
# testssl.sh against it (every check, no DNS lookups), prints the findings rated HIGH or CRITICAL (there
# should be none) and the summary lines, then stops everything. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
command -v testssl >/dev/null || command -v testssl.sh >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh >/dev/null
}
TESTSSL=$(command -v testssl || command -v testssl.sh)
cargo build --release --quiet
work=$(mktemp -d); pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# A test CA (given to testssl.sh as trusted) and a certificate for localhost it signs, valid 300 days, with a
# CRL distribution point (not served: the certificate's own checks are not what is tested).
openssl req -x509 -nodes -days 300 -subj "/CN=portcullis test CA" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -addext crlDistributionPoints=URI:http://localhost/test.crl -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/key.pem" -out "$work/cert.csr" 2>/dev/null
openssl x509 -req -days 300 -in "$work/cert.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -copy_extensions copy \
  -out "$work/cert.pem" 2>/dev/null
PORT=$(free_port)
./target/release/portcullis --listen '' --tls-listen 127.0.0.1:$PORT --tls-cert "$work/cert.pem" \
  --tls-key "$work/key.pem" --workers 1 2>"$work/portcullis.log" &
pid=$!
wait_port "$PORT"
"$TESTSSL" --quiet --nodns min --warnings off --color 0 --add-ca "$work/ca.pem" --ip 127.0.0.1 \
  --jsonfile "$work/out.json" "localhost:$PORT" \
  > "$work/out.txt" 2>&1 || true
python3 - "$work/out.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
by = {}
for f in findings:
    by[f.get("severity")] = by.get(f.get("severity"), 0) + 1
print("findings by severity:", dict(sorted(by.items(), key=lambda kv: str(kv[0]))))
for f in findings:
    if f.get("severity") in ("LOW", "MEDIUM", "WARN"):
        print(f"{f['severity']}: {f['id']}: {f['finding']}")
for f in bad:
    print(f"{f['severity']}: {f['id']}: {f['finding']}")
print("HIGH or CRITICAL:", len(bad))
for f in findings:
    if f["id"] in ("overall_grade", "protocol_negotiated", "cipher_negotiated", "TLS1_3", "TLS1_2", "TLS1_1",
                   "TLS1", "SSLv3", "SSLv2", "ALPN", "sessionresumption_ticket", "sessionresumption_ID"):
        print(f"{f['id']}: {f['finding']}")
PY
