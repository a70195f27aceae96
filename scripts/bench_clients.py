"""Client throughput side by side: our bench client, `vllm bench serve` and GuideLLM, each on ONE core,
against the same local streaming stand-in (tests/fake_vllm_server.py) pinned to another core.

The stand-in emits 256-token streams faster than any client reads them, so the figure is the
client's own ceiling: streamed output tokens per second. Run by `make bench`:

    .venv/bin/python scripts/bench_clients.py [--concurrency 32] [--num-prompts 2000] [--repeats 3]

A client that cannot run (its virtualenv missing, or it fails) is reported with the reason; the others
still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
GUIDELLM = ROOT / ".venv-guidellm" / "bin" / "guidellm"
TARGET_TOKENS_PER_S = 60_000

OURS = """
import asyncio, json, sys
from selfhost.check.bench import BenchConfig, run_point, point_metrics
from selfhost.check.bench_math import Slo
url, c, n, i, o = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = BenchConfig(url=url, api_key=None, model="fake", input_tokens=i, output_tokens=o, num_prompts=n)
warm = BenchConfig(url=url, api_key=None, model="fake", input_tokens=i, output_tokens=o, num_prompts=c)
asyncio.run(run_point(warm, concurrency=c))  # warm-up
pm = point_metrics(asyncio.run(run_point(cfg, concurrency=c)), Slo())
client = pm["client"]
print(json.dumps({"tok_s": pm["output_tokens_per_s"], "failed": pm["failed"], "cpu_percent": client["cpu_percent"],
                  "us_per_token": client["cpu_us_per_output_token"]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int | None):
    return (lambda: os.sched_setaffinity(0, {core})) if core is not None else None


def run(argv: list[str], core: int | None, timeout: float, env: dict | None = None, cwd: Path | None = None) -> str:
    p = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=pinned(core),
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    if p.returncode != 0:
        tail = " | ".join(
            [ln for ln in (p.stderr or p.stdout).strip().splitlines() if "WARNING: Location" not in ln][-3:]
        )
        raise RuntimeError(f"exit {p.returncode}: {tail}")
    return p.stdout


def ours(url: str, a, core: int | None) -> dict:
    out = run(
        [
            sys.executable,
            "-c",
            OURS,
            url,
            str(a.concurrency),
            str(a.num_prompts),
            str(a.input_tokens),
            str(a.output_tokens),
        ],
        core,
        300,
        cwd=ROOT,
    )
    return json.loads(out.strip().splitlines()[-1])


def vllm_bench(url: str, a, core: int | None, tokenizer: Path) -> dict:
    if not VLLM_PY.exists():
        raise RuntimeError(f"{VLLM_PY} missing: run `make vllm-venv`")
    out = run(
        [
            str(VLLM_PY),
            str(ROOT / "costing" / "local" / "vllm_main.py"),
            "bench",
            "serve",
            "--backend",
            "openai",
            "--base-url",
            url,
            "--endpoint",
            "/v1/completions",
            "--model",
            "fake",
            "--tokenizer",
            str(tokenizer),
            "--dataset-name",
            "random",
            "--random-input-len",
            str(a.input_tokens),
            "--random-output-len",
            str(a.output_tokens),
            "--ignore-eos",
            "--max-concurrency",
            str(a.concurrency),
            "--num-prompts",
            str(a.num_prompts),
        ],
        core,
        600,
        env={"VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"},
    )
    tok = float(re.search(r"Output token throughput \(tok/s\):\s+([\d.]+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    return {"tok_s": tok, "failed": failed}


def guidellm(url: str, a, core: int | None, tokenizer: Path) -> dict:
    if not GUIDELLM.exists():
        raise RuntimeError(f"{GUIDELLM} missing: run `make .venv-guidellm/.installed`")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "guidellm.json"
        run(
            [
                str(GUIDELLM),
                "run",
                "--backend",
                f"kind=openai_http,target={url},model=fake",
                "--profile",
                f"kind=concurrent,streams={a.concurrency}",
                "--constraint",
                f"kind=max_requests,count={a.num_prompts}",
                "--tokenizer",
                f"kind=hf_auto,model={tokenizer}",
                "--data",
                f"kind=synthetic_text,prompt_tokens={a.input_tokens},output_tokens={a.output_tokens}",
                "--output",
                f"kind=json,path={out}",
                "--disable-console",
            ],
            core,
            900,
            env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            cwd=Path(tmp),
        )
        bench = json.loads(out.read_text())["benchmarks"][0]
        m = bench["metrics"]
        totals = m["request_totals"]
        return {"tok_s": m["output_tokens_per_second"]["successful"]["mean"], "failed": totals.get("errored", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=2000)
    ap.add_argument("--input-tokens", type=int, default=32)
    ap.add_argument("--output-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default="ours,vllm,guidellm")
    ap.add_argument(
        "--slice-events",
        type=int,
        default=64,
        help="SSE events the stand-in writes per send (each its own HTTP chunk, as vLLM frames them)",
    )
    a = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from selfhost.local.server import ensure_tiny_model

    cores = sorted(os.sched_getaffinity(0))
    client_core, server_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if client_core is None:
        print("warning: one CPU core only: client and server are not pinned apart")
    tokenizer = ensure_tiny_model()  # vllm bench serve and GuideLLM need a tokenizer (the tiny model's)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fake_vllm_server.py"),
            "--port",
            str(port),
            "--slice-events",
            str(a.slice_events),
        ],
        cwd=ROOT,
        preexec_fn=pinned(server_core),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        print(
            f"stand-in server {url} on core {server_core}; clients on core {client_core}; "
            f"{a.output_tokens}-token outputs, {a.input_tokens}-token prompts, concurrency {a.concurrency}, "
            f"{a.num_prompts} requests per run, {a.slice_events} events per server write, median of {a.repeats} runs"
        )
        runners = {
            "ours": ("selfhost bench (aiohttp)", lambda: ours(url, a, client_core)),
            "vllm": ("vllm bench serve", lambda: vllm_bench(url, a, client_core, tokenizer)),
            "guidellm": ("GuideLLM", lambda: guidellm(url, a, client_core, tokenizer)),
        }
        results = {}
        for key in a.clients.split(","):
            name, fn = runners[key]
            runs, why = [], None
            for _ in range(a.repeats):
                try:
                    runs.append(fn())
                except Exception as err:  # noqa: BLE001 - report why and go on with the others
                    why = f"{type(err).__name__}: {err}"[:300]
                    break
            if not runs:
                print(f"{name:<26} could not run: {why}")
                continue
            tok = statistics.median(r["tok_s"] for r in runs)
            extra = ""
            if "cpu_percent" in runs[0]:
                extra = (
                    f"  (client CPU {statistics.median(r['cpu_percent'] for r in runs):.0f}%, "
                    f"{statistics.median(r['us_per_token'] for r in runs):.1f} us/token)"
                )
            fails = sum(r["failed"] for r in runs)
            each = ", ".join(f"{r['tok_s']:,.0f}" for r in runs)
            print(
                f"{name:<26} {tok:>10,.0f} output tokens/s  runs: {each}"
                f"{'  FAILED REQUESTS: ' + str(fails) if fails else ''}{extra}"
            )
            results[key] = tok
        if "ours" in results:
            ok = results["ours"] >= TARGET_TOKENS_PER_S
            print(f"target: our client >= {TARGET_TOKENS_PER_S:,} tokens/s on one core: {'met' if ok else 'NOT MET'}")
            return 0 if ok else 1
        return 1
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
