"""`make accuracy`: the projection against every calibration row (costing/data/published-benchmarks.csv):
measured, projected and relative error of output tokens/s and TPOT, then the median absolute errors.

LambdaLabs rows (N prompts sent at once) are projected by simulating that burst with the same
step model; the other rows by costing.projection.project at the stated (or admissible) concurrency."""

from __future__ import annotations

import argparse
from pathlib import Path

from costing.calibration import load_params, load_params_file
from costing.published import DEFAULT_CSV, errors, median_abs


def _f(v: float | None, fmt: str) -> str:
    if v is None:
        width = "".join(ch for ch in fmt.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width or 1))
    return format(v, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--params", default=None, help="a calibration JSON (default: the shipped one)")
    args = ap.parse_args()
    params = load_params_file(args.params) if args.params else load_params()
    recs = errors(Path(args.csv), params)
    head = (
        f"{'row':>3} {'gpu':15} {'n':>1} {'model':14} {'prec':4} {'engine':7} {'in':>5} {'out':>5} {'conc':>9} "
        f"{'tok/s meas':>10} {'proj':>8} {'err':>6}  {'TPOT ms':>7} {'proj':>6} {'err':>6}  note"
    )
    print(head)
    print("-" * len(head))
    for r in recs:
        row, pred = r["row"], r["pred"]
        conc = f"burst {row.burst}" if row.burst else str(row.concurrency) if row.concurrency else "max"
        if pred is not None and not row.burst and not row.concurrency:
            conc = f"max={pred.concurrency:.0f}"
        note = row.note or ("" if r["fit"] is not None else "does not fit per costing.fit: not projected")
        if row.tpot_kind and row.tpot_kind != "median TPOT":
            note = (note + "; " if note else "") + f"TPOT column = {row.tpot_kind}"
        print(
            f"{row.index:>3} {row.gpu_raw:15} {row.gpus:>1} {row.model:14} {row.precision:4} {row.engine:7} "
            f"{row.input_tokens:>5} {row.output_tokens:>5} {conc:>9} "
            f"{_f(row.output_tok_s, '10.1f')} {_f(pred and pred.output_tok_s, '8.1f')} {_f(r['tok_err'], '+6.0%')}  "
            f"{_f(row.tpot_ms, '7.2f')} {_f(pred.tpot_ms if pred and row.tpot_ms else None, '6.1f')} "
            f"{_f(r['tpot_err'], '+6.0%')}  {note}"
        )
    print()
    groups = {
        "all rows": recs,
        "vLLM/NIM rows": [r for r in recs if r["row"].engine == "vllm-v0"],
        "TensorRT-LLM rows": [r for r in recs if r["row"].engine == "trtllm"],
    }
    for name, rs in groups.items():
        tok = [r["tok_err"] for r in rs if r["tok_err"] is not None]
        tpot = [r["tpot_err"] for r in rs if r["tpot_err"] is not None]
        print(
            f"median absolute error, {name:18}: output tok/s {_f(median_abs(tok), '.1%'):>6} over {len(tok):3} rows; "
            f"TPOT {_f(median_abs(tpot), '.1%'):>6} over {len(tpot):2} rows"
        )
    print("targets (issue 2): output tok/s <= 15%, TPOT <= 20% (all rows)")
    print("parameters: " + ", ".join(f"{k}={v:g}" for k, v in params.values().items()))


if __name__ == "__main__":
    main()
