#!/usr/bin/env bash
# Audit a deployed model, both sides on loopback (needs: pip install ".[serve]").
#   bash examples/audit_endpoint.sh            # in a scratch folder of its own
set -euo pipefail
work=$(mktemp -d)
port=${PORT:-8731}
cd "$work"

# defender: a key with a budget, then the defended CIFAR model as a v2 service (labels only)
KEY=$(probe serve keys add auditor --budget 3000 --keys keys.sqlite)
probe serve --model cifar10-cnn --sigma 0.05 --n 10 --keys keys.sqlite --port "$port" --log requests.jsonl \
    --metrics-port "$((port + 1))" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.2; done

# attacker: the same attacks through the endpoint, as a remote adversary sees it
probe attack --endpoint "http://127.0.0.1:$port" --protocol probe --model cifar10-cnn --defended \
    --api-key "$KEY" --attack hsja,rays --budget 300 --p-adv-samples 20 --limit 2 --out remote

# operator: what the attack looked like from the server (metrics on their own loopback port)
probe serve keys list --keys keys.sqlite
echo "requests logged: $(wc -l < requests.jsonl)"
curl -s "http://127.0.0.1:$((port + 1))/metrics" | grep -E '^probe_(queries|inferences)_total'
echo "results in $work/remote"
