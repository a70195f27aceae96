"""`make bench` (costing part): wall time of `selfhost plan` as a whole process. Prints figures, asserts nothing."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELFHOST = str(Path(sys.executable).with_name("selfhost"))
CASES = {
    "plan (default spec, table)": ["plan", "--spec", "examples/llama-3.1-8b-runpod-a40.yaml"],
    "plan 70B 4x A40, SLO, json": [
        "plan",
        "--model",
        "llama-3.1-70b",
        "--gpu",
        "A40",
        "--gpus",
        "4",
        "--requests-per-day",
        "20000",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "300",
        "--p90-latency-s",
        "30",
        "--format",
        "json",
    ],
    "plan markdown (PR comment)": ["plan", "--spec", "examples/llama-3.1-8b-runpod-a40.yaml", "--format", "markdown"],
    "estimate": [
        "estimate",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "A10G",
        "--input-tokens",
        "550",
        "--output-tokens",
        "150",
        "--concurrency",
        "16",
    ],
    "compare (all offers)": [
        "compare",
        "--model",
        "llama-3.1-8b",
        "--requests-per-day",
        "5000",
        "--input-tokens",
        "800",
        "--output-tokens",
        "200",
    ],
    "compare (whole space, default spec)": ["compare", "--spec", "examples/llama-3.1-8b-runpod-a40.yaml"],
}
TARGET_S = 0.5  # issue 2: `selfhost plan` as a whole process; issue 28: `compare` over >= 300 candidates
COMPARE_SPACE = "compare (whole space, default spec)"
MIN_CANDIDATES = 300


def candidates(args: list[str]) -> int:
    """How many candidates (offer x region x pricing, managed endpoint x region) `compare` evaluated."""
    import json

    out = subprocess.run([SELFHOST, *args, "--format", "json"], cwd=ROOT, capture_output=True, check=True, text=True)
    return int(json.loads(out.stdout)["candidates"])


def timed(args: list[str], runs: int) -> list[float]:
    subprocess.run([SELFHOST, *args], cwd=ROOT, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([SELFHOST, *args], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(f"selfhost command wall time, whole process, {runs} runs each (target for plan and compare: <= {TARGET_S} s)")
    print(f"{'command':38} {'median s':>9} {'p90 s':>7} {'max s':>7}")
    for name, args in CASES.items():
        t = sorted(timed(args, runs))
        p90 = t[min(len(t) - 1, round(0.9 * (len(t) - 1)))]
        gated = name.startswith("plan") or name == COMPARE_SPACE
        flag = "" if not gated else ("  ok" if statistics.median(t) <= TARGET_S else "  OVER TARGET")
        print(f"{name:38} {statistics.median(t):9.3f} {p90:7.3f} {t[-1]:7.3f}{flag}")
    n = candidates(CASES[COMPARE_SPACE])
    verdict = "ok" if n >= MIN_CANDIDATES else "SHORT"
    print(f"{COMPARE_SPACE}: {n} candidates evaluated (target >= {MIN_CANDIDATES}: {verdict})")


if __name__ == "__main__":
    main()
