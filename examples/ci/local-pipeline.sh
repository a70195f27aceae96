#!/usr/bin/env bash
# The CI pipeline on the local target (vLLM on this machine's CPU) instead of a cloud:
#   review -> deploy -> smoke -> bench -> gate -> teardown (always, by PID, also when a step fails).
# The GitHub workflow examples/ci/github/deploy.yml runs the same steps against the cloud endpoint.
#
#   examples/ci/local-pipeline.sh SPEC OUT_DIR [selfhost gate options, e.g. --min-ratio 0.8]
#
# Environment: SELFHOST (command, default `selfhost`), PYTHON (for reading JSON, default python3),
# PORT (default 8000), BENCH_CONCURRENCY / BENCH_INPUT_TOKENS / BENCH_OUTPUT_TOKENS / BENCH_PROMPTS (default:
# the review's concurrency and workload tokens).
set -euo pipefail

spec=${1:?usage: local-pipeline.sh SPEC OUT_DIR [gate options]}
out=${2:?usage: local-pipeline.sh SPEC OUT_DIR [gate options]}
shift 2
read -r -a selfhost <<<"${SELFHOST:-selfhost}"
py=${PYTHON:-python3}
mkdir -p "$out"

json_field() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

echo "== review"
"${selfhost[@]}" plan --spec "$spec" --format json >"$out/review.json"

# `up --format json` holds the API key: it is written only to a 0600 file in a private (0700) folder outside
# OUT_DIR (which CI may upload), removed at teardown; OUT_DIR/endpoint.json keeps the rest (url, model, pid, log).
secrets_dir=$(umask 077 && mktemp -d)
teardown() {
  echo "== teardown"
  "${selfhost[@]}" down local
  rm -rf "$secrets_dir"
}
trap teardown EXIT

echo "== deploy"
(umask 077 && "${selfhost[@]}" up local --spec "$spec" --port "${PORT:-8000}" --format json >"$secrets_dir/endpoint.json")
"$py" - "$secrets_dir/endpoint.json" >"$out/endpoint.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("api_key", None)
print(json.dumps(d, indent=2))
PY
url=$(json_field "$out/endpoint.json" url)
model=$(json_field "$out/endpoint.json" model)
VLLM_API_KEY=$(json_field "$secrets_dir/endpoint.json" api_key)
export VLLM_API_KEY # smoke and bench read the key from the environment, never from argv
rm -f "$secrets_dir/endpoint.json"

echo "== smoke"
"${selfhost[@]}" smoke "$url" --model "$model" --format json >"$out/smoke.json"

echo "== bench"
conc=${BENCH_CONCURRENCY:-$(json_field "$out/review.json" max_concurrency)}
"$py" - "$out/review.json" "$conc" >"$out/bench-shape" <<'PY'
import json, sys
rv = json.load(open(sys.argv[1]))
print(rv["workload"]["input_tokens"], rv["workload"]["output_tokens"])
PY
read -r in_tokens out_tokens <"$out/bench-shape"
"${selfhost[@]}" bench "$url" --model "$model" --concurrency "$conc" \
  --input-tokens "${BENCH_INPUT_TOKENS:-$in_tokens}" --output-tokens "${BENCH_OUTPUT_TOKENS:-$out_tokens}" \
  --num-prompts "${BENCH_PROMPTS:-$conc}" --output "$out/bench.json" --chart "$out/bench.png" >"$out/bench.txt"

echo "== gate"
"${selfhost[@]}" gate --bench "$out/bench.json" --review "$out/review.json" "$@"
