"""`make accuracy`: how far the projection is from the published measurements
(costing/data/published-benchmarks.csv, sources in published-benchmarks.md), from the project's data only.

1. Leave-one-source-out cross-validation: the efficiency parameters are fitted on every source but one
   (as `make calibrate` does) and that source's rows are projected with them; median |error| per metric
   (output tok/s, TPOT, TTFT, e2e) and per regime (light, moderate, saturated), and the ten worst rows.
2. In-sample: the shipped parameters (costing/data/calibration.json) on every row (`--rows` prints them).

Bursts of N prompts (LambdaLabs) are projected by simulating the burst with the same step model; the
other rows by costing.projection.project at the stated (or admissible) concurrency."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from costing.calibration import load_params, load_params_file
from costing.published import DEFAULT_CSV, METRICS, cross_validate, errors, median_abs

NAMES = {"output_tok_s": "tok/s", "tpot_ms": "TPOT", "ttft_ms": "TTFT", "e2e_s": "e2e"}
TARGETS = {"output_tok_s": 0.15, "tpot_ms": 0.15, "ttft_ms": 0.30}  # issue 12, cross-validated


def _f(v: float | None, fmt: str) -> str:
    if v is None:
        width = "".join(ch for ch in fmt.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width or 1))
    return format(v, fmt)


def _cell(errs: list[float]) -> str:
    m = median_abs(errs)
    return f"{_f(m, '.1%'):>6} ({len(errs):>3})" if errs else f"{'-':>6} (  0)"


def cv_report(csv: Path) -> None:
    recs = cross_validate(csv)
    print("Leave-one-source-out cross-validation: median |error| (rows)")
    regimes = ("light", "moderate", "saturated")
    print(f"{'metric':8} {'all':>12} " + " ".join(f"{r:>12}" for r in regimes) + "   target")
    for m in METRICS:
        allerr = [r["errors"][m] for r in recs if m in r["errors"]]
        by = {g: [r["errors"][m] for r in recs if m in r["errors"] and r["regime"] == g] for g in regimes}
        target = f"<= {TARGETS[m]:.0%}" if m in TARGETS else ""
        met = "" if m not in TARGETS or not allerr else (" met" if median_abs(allerr) <= TARGETS[m] else " NOT met")
        print(
            f"{NAMES[m]:8} {_cell(allerr):>12} "
            + " ".join(f"{_cell(by[g]):>12}" for g in regimes)
            + f"   {target}{met}"
        )
    print()
    print("per held-out source: median |error| of tok/s, TPOT, TTFT, e2e (rows)")
    by_source = defaultdict(list)
    for r in recs:
        by_source[r["source"]].append(r)
    for src, rs in sorted(by_source.items()):
        cells = [_cell([r["errors"][m] for r in rs if m in r["errors"]]) for m in METRICS]
        print(f"  {src:36} " + " ".join(f"{c:>12}" for c in cells))
    print()
    print("ten worst rows (largest held-out |error| of any metric)")
    scored = [(max(abs(v) for v in r["errors"].values()), r) for r in recs if r["errors"]]
    for _worst, r in sorted(scored, key=lambda t: -t[0])[:10]:
        row = r["row"]
        conc = f"burst {row.burst}" if row.burst else str(row.concurrency) if row.concurrency else "max"
        errs = ", ".join(f"{NAMES[m]} {v:+.0%}" for m, v in r["errors"].items())
        print(f"  row {row.index:>3} {row.label():42} {row.input_tokens:>5}/{row.output_tokens:<5} {conc:>9}: {errs}")


def in_sample_report(csv: Path, params, show_rows: bool) -> None:
    recs = errors(csv, params)
    if show_rows:
        head = (
            f"{'row':>3} {'gpu':15} {'n':>1} {'model':14} {'prec':4} {'engine':7} {'in':>5} {'out':>5} {'conc':>9} "
            f"{'tok/s meas':>10} {'proj':>8} {'err':>6}  {'TPOT ms':>7} {'proj':>6} {'err':>6}"
        )
        print(head)
        print("-" * len(head))
        for r in recs:
            row, pred = r["row"], r["pred"]
            conc = f"burst {row.burst}" if row.burst else str(row.concurrency) if row.concurrency else "max"
            if pred is not None and not row.burst and not row.concurrency:
                conc = f"max={pred.concurrency:.0f}"
            print(
                f"{row.index:>3} {row.gpu_raw:15} {row.gpus:>1} {row.model:14} {row.precision:4} {row.engine:7} "
                f"{row.input_tokens:>5} {row.output_tokens:>5} {conc:>9} "
                f"{_f(row.output_tok_s, '10.1f')} {_f(pred and pred.output_tok_s, '8.1f')} "
                f"{_f(r['tok_err'], '+6.0%')}  "
                f"{_f(row.tpot_ms, '7.2f')} {_f(pred.tpot_ms if pred and row.tpot_ms else None, '6.1f')} "
                f"{_f(r['tpot_err'], '+6.0%')}"
            )
        print()
    tok = [r["tok_err"] for r in recs if r["tok_err"] is not None]
    tpot = [r["tpot_err"] for r in recs if r["tpot_err"] is not None]
    print(
        f"in-sample (shipped parameters): output tok/s {_f(median_abs(tok), '.1%')} over {len(tok)} rows; "
        f"TPOT {_f(median_abs(tpot), '.1%')} over {len(tpot)} rows"
    )
    print("parameters: " + ", ".join(f"{k}={v:g}" for k, v in params.values().items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--params", default=None, help="a calibration JSON for the in-sample part (default: shipped)")
    ap.add_argument("--rows", action="store_true", help="print every row in-sample")
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation (its fits take a minute)")
    args = ap.parse_args()
    csv = Path(args.csv)
    if not args.no_cv:
        cv_report(csv)
        print()
    in_sample_report(csv, load_params_file(args.params) if args.params else load_params(), args.rows)


if __name__ == "__main__":
    main()
