#!/usr/bin/env bash
# Makes a local CA and certificates for TLS and mutual TLS between the services, the gateway and
# dronectl, with the openssl command-line tool. For development, tests and a containerized
# deployment of your own; not for the public internet (use your organisation's CA there).
#
#   tools/make-certs.sh [DIR]          (default DIR: certs)
#
# DIR gets (PEM; keys are P-256 ECDSA, readable by the owner only):
#   ca.pem, ca-key.pem          the local CA (keep ca-key.pem private; only ca.pem is distributed)
#   server.pem, server-key.pem  one server certificate for every service and the gateway, with SANs
#                               localhost, 127.0.0.1, ::1, each service name of compose.yaml and
#                               deploy/services.tsv, and their Kubernetes forms (NAME.NAMESPACE.svc,
#                               ..svc.cluster.local); extra names in FABRIKAM_CERT_NAMES (space-separated)
#   client.pem, client-key.pem  a client certificate (CN fabrikam-client) for mutual TLS
# With FABRIKAM_CERT_TEST_EXTRAS=1 it also makes what the failure tests need:
#   other-ca.pem, other-server.pem, other-server-key.pem, other-client.pem, other-client-key.pem
#                               certificates of a second, untrusted CA
#   expired-server.pem, expired-server-key.pem, expired-client.pem, expired-client-key.pem
#                               certificates of the CA that expired in 2020
#   named-server.pem, named-server-key.pem
#                               a server certificate for the name "delivery" only (no IP SANs)
# Days of validity: FABRIKAM_CERT_DAYS (default 825). An existing CA in DIR is reused, so certificates can
# be renewed (rotated) without redistributing ca.pem.
set -euo pipefail

dir=${1:-certs}
days=${FABRIKAM_CERT_DAYS:-825}
namespace=${FABRIKAM_CERT_NAMESPACE:-fabrikam}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

names="localhost"
if [[ -f "$root/deploy/services.tsv" ]]; then
    for service in $(awk '!/^#/ && NF { print $1 }' "$root/deploy/services.tsv"); do
        names+=" $service $service.$namespace $service.$namespace.svc $service.$namespace.svc.cluster.local"
    done
fi
names+=" ${FABRIKAM_CERT_NAMES:-}"

san_list() {
    local list="IP:127.0.0.1,IP:::1" name
    for name in $1; do list+=",DNS:$name"; done
    echo "$list"
}

# make_ca NAME SUBJECT
make_ca() {
    [[ -f "$dir/$1.pem" && -f "$dir/$1-key.pem" ]] && return
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$1-key.pem"
    openssl req -x509 -new -key "$dir/$1-key.pem" -sha256 -days 3650 -subj "$2" -out "$dir/$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# issue CA NAME CN USAGE SANS [STARTDATE ENDDATE]: signed with `openssl ca`, which (unlike x509 -req
# in OpenSSL 3.0) can date a certificate in the past for the expiry tests.
issue() {
    local ca=$1 name=$2 cn=$3 usage=$4 sans=$5 start=${6:-} end=${7:-}
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name-key.pem"
    openssl req -new -key "$dir/$name-key.pem" -subj "/O=Fabrikam Drone Delivery/CN=$cn" -out "$work/$name.csr"
    mkdir -p "$work/ca-$name"
    : > "$work/ca-$name/index.txt"
    cat > "$work/ca-$name/ca.cnf" <<EOF
[ ca ]
default_ca = local
[ local ]
database = $work/ca-$name/index.txt
new_certs_dir = $work/ca-$name
certificate = $dir/$ca.pem
private_key = $dir/$ca-key.pem
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
rand_serial = yes
[ anything ]
organizationName = optional
commonName = supplied
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = $usage
subjectAltName = $sans
EOF
    local dates=(-days "$days")
    [[ -n "$start" ]] && dates=(-startdate "$start" -enddate "$end")
    openssl ca -batch -notext -config "$work/ca-$name/ca.cnf" -extensions leaf "${dates[@]}" \
        -in "$work/$name.csr" -out "$dir/$name.pem" 2>"$work/ca-$name/log" || { cat "$work/ca-$name/log" >&2; exit 1; }
}

make_ca ca "/O=Fabrikam Drone Delivery/CN=Fabrikam local CA"
issue ca server "${names%% *}" serverAuth "$(san_list "$names")"
issue ca client fabrikam-client clientAuth "DNS:fabrikam-client"

if [[ "${FABRIKAM_CERT_TEST_EXTRAS:-0}" == 1 ]]; then
    make_ca other-ca "/O=Somebody Else/CN=Other CA"
    issue other-ca other-server localhost serverAuth "$(san_list localhost)"
    issue other-ca other-client other-client clientAuth "DNS:other-client"
    issue ca named-server delivery serverAuth "DNS:delivery"
    issue ca expired-server localhost serverAuth "$(san_list localhost)" 20200101000000Z 20200201000000Z
    issue ca expired-client expired-client clientAuth "DNS:expired-client" 20200101000000Z 20200201000000Z
fi
chmod 644 "$dir"/*.pem
chmod 600 "$dir"/*-key.pem
echo "make-certs: CA and certificates in $dir (server names: localhost 127.0.0.1 ::1 and $(echo "$names" | wc -w) others)"
