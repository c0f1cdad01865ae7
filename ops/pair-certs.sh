#!/usr/bin/env bash
# Make the TLS files for a pair's replication link with openssl: a private
# CA, and a certificate and key per node (and, if you like, one for
# quarryctl) signed by it.
#
#   ops/pair-certs.sh OUT_DIR NAME=SAN[,SAN...] ...
#   ops/pair-certs.sh /etc/quarry/tls node-a=DNS:node-a,IP:10.0.0.1 \
#                                     node-b=DNS:node-b,IP:10.0.0.2 ops=DNS:ops
#
# Writes OUT_DIR/ca.crt (give it to both nodes as tls_ca), OUT_DIR/ca.key
# (keep it off the nodes), and NAME.crt and NAME.key for each NAME (a node's
# tls_cert and tls_key). The SANs are the names the peer dials: the host in
# its replication.peer, or tls_server_name. An existing ca.crt/ca.key in
# OUT_DIR is reused (to add a node or renew one); an existing NAME.crt is
# never overwritten. Keys are EC P-256 (PKCS#8); certificates last DAYS days
# (default 825). Each certificate is good for both TLS server and client.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR NAME=SAN[,SAN...] ... (e.g. node-a=DNS:node-a,IP:10.0.0.1)" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl is required (apt-get install openssl)" >&2; exit 1; }
out=$1; shift
days=${DAYS:-825}
mkdir -p "$out"
umask 077
if [ ! -e "$out/ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=quarry pair CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt"
  chmod 644 "$out/ca.crt"
  echo "made $out/ca.crt and $out/ca.key (keep ca.key off the nodes)"
fi
for spec in "$@"; do
  name=${spec%%=*}
  san=${spec#*=}
  if [ "$name" = "$spec" ] || [ -z "$name" ] || [ -z "$san" ]; then
    echo "$0: '$spec' is not NAME=SAN[,SAN...] (e.g. node-a=DNS:node-a,IP:10.0.0.1)" >&2
    exit 2
  fi
  if [ -e "$out/$name.crt" ]; then
    echo "$0: $out/$name.crt exists; remove it to make a new one" >&2
    exit 1
  fi
  ext=$(mktemp)
  trap 'rm -f "$ext"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/$name.key" 2>/dev/null
  openssl req -new -key "$out/$name.key" -subj "/CN=$name" -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr" "$ext"
  chmod 644 "$out/$name.crt"
  echo "made $out/$name.crt and $out/$name.key ($san)"
done
