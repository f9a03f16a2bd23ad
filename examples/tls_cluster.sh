#!/usr/bin/env bash
# A cluster whose every TCP socket uses mutual TLS, with a throwaway CA made by openssl.
# Run from the repository: bash examples/tls_cluster.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'skate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=skate-example-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=skate-node" \
    -keyout "$dir/node.key" -out "$dir/node.csr" 2>/dev/null
openssl x509 -req -in "$dir/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 1 -out "$dir/node.pem" 2>/dev/null
chmod 600 "$dir"/*.key
export SKATE_USE_TLS=1 SKATE_TLS_CA_CERT="$dir/ca.pem"
export SKATE_TLS_SERVER_CERT="$dir/node.pem" SKATE_TLS_SERVER_KEY="$dir/node.key"
skate start --head --port 0 --num-cpus 2
python - <<'PY'
import numpy as np
import skate as ray

ray.init(address="auto")

@ray.remote
def total(arr):
    return float(arr.sum())

print("over TLS:", ray.get(total.remote(np.ones(1_000_000))))
ray.shutdown()
PY
