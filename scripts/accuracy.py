"""`make accuracy`: how far the projection is from the published measurements
(costing/data/published-benchmarks.csv, sources in published-benchmarks.md), from the project's data only.

1. Leave-one-source-out cross-validation: the efficiency parameters are fitted on every source but one
   (as `make calibrate` does) and that source's rows are projected with them; median |error| per metric
   (output tok/s, TPOT, TTFT, e2e) and per regime (light, moderate, saturated), and the ten worst rows.
2. Error bands: the P10-P90 of the held-out log(measured / projected) by metric, regime and context are
   written to costing/data/error-bands.json (dated; every projection carries its interval from it), and their
   coverage is checked the same way: each source's rows against bands built from the other sources' errors
   (the nominal 80% band should hold 70-90% of them).
3. In-sample: the shipped parameters (costing/data/calibration.json) on every row (`--rows` prints them).

It starts with what the calibration has: rows and sources per engine, and the vLLM V1 (>= 0.8) rows per GPU
(`--counts` prints only that, without the fits).

Bursts of N prompts (LambdaLabs) are projected by simulating the burst with the same step model; the
other rows by costing.performance.projection.project at the stated (or admissible) concurrency."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from costing.data import DATA_DIR
from costing.data.catalog import get_model
from costing.performance import bands
from costing.performance.calibration import load_params, load_params_file
from costing.performance.published import (
    DEFAULT_CSV,
    METRICS,
    cross_validate,
    errors,
    median_abs,
    read_rows,
    source_group,
)

NAMES = {"output_tok_s": "tok/s", "tpot_ms": "TPOT", "ttft_ms": "TTFT", "e2e_s": "e2e"}
TARGETS = {"output_tok_s": 0.10, "tpot_ms": 0.12, "ttft_ms": 0.25}  # issue 26, cross-validated
BAND_METHOD = "80% prediction interval of log(measured/projected), leave-one-source-out (`make accuracy`)"
ENGINE_GROUPS = {"vllm": "vLLM V1", "vllm-v0": "vLLM V0", "vllm-v0-multistep": "vLLM V0", "trtllm": "TensorRT-LLM"}


def _f(v: float | None, fmt: str) -> str:
    if v is None:
        width = "".join(ch for ch in fmt.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width or 1))
    return format(v, fmt)


def _cell(errs: list[float]) -> str:
    m = median_abs(errs)
    return f"{_f(m, '.1%'):>6} ({len(errs):>3})" if errs else f"{'-':>6} (  0)"


def cv_report(csv: Path) -> list[dict[str, Any]]:
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
    print("by engine: median |error| (rows)")
    engines = sorted(set(ENGINE_GROUPS.values()))
    print(f"{'metric':8} " + " ".join(f"{e:>14}" for e in engines))
    for m in METRICS:
        cells = []
        for e in engines:
            errs = [r["errors"][m] for r in recs if m in r["errors"] and ENGINE_GROUPS[r["row"].engine] == e]
            cells.append(f"{_cell(errs):>14}")
        print(f"{NAMES[m]:8} " + " ".join(cells))
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
    return recs


def samples(recs: list[dict[str, Any]]) -> list[bands.Sample]:
    """A sample (with its held-out source) for every cross-validated metric of every row."""
    out = []
    for r in recs:
        row = r["row"]
        ctx = bands.context_of(row.input_tokens, row.output_tokens)
        for m, err in r["errors"].items():
            if 1 + err > 0:
                out.append(bands.Sample(m, r["regime"], ctx, -math.log(1 + err), row.engine, r["source"]))
    return out


def _width(band: dict[str, float]) -> float:
    """A band's P10-P90 width as a share of the projection (exp(p90) - exp(p10)): a band that covers by
    being enormous shows here."""
    return math.exp(band["p90"]) - math.exp(band["p10"])


def coverage(held_out: list[bands.Sample]) -> dict[str, dict[str, float]]:
    """Each source's samples against bands built without that source: the share inside P10-P90, and the
    median width of the bands they met ("width") and of the shipped table's band for the same rows
    ("shipped_width")."""
    hits: dict[str, list[bool]] = defaultdict(list)
    widths: dict[str, list[float]] = defaultdict(list)
    for src in sorted({x.source for x in held_out}):
        table = bands.build_table(x for x in held_out if x.source != src)
        for x in held_out:
            if x.source != src:
                continue
            found = bands.lookup(table, x.metric, x.regime, x.context)
            if found is not None:
                for key in (x.metric, "all"):
                    hits[key].append(bands.within(found[1], x.log_ratio))
                    widths[key].append(_width(found[1]))
    full = bands.build_table(held_out)
    shipped: dict[str, list[float]] = defaultdict(list)
    for x in held_out:
        found = bands.lookup(full, x.metric, x.regime, x.context)
        if found is not None:
            shipped[x.metric].append(_width(found[1]))
            shipped["all"].append(_width(found[1]))
    return {
        k: {
            "share": round(sum(v) / len(v), 4),
            "rows": len(v),
            "width": round(statistics.median(widths[k]), 4),
            "shipped_width": round(statistics.median(shipped[k]), 4),
        }
        for k, v in hits.items()
    }


def print_coverage(cov: dict[str, dict[str, float]]) -> None:
    """The coverage lines `make accuracy` and `--from-samples` print (target 70-90%), with the median widths."""
    for k in (*METRICS, "all"):
        if k in cov:
            c = cov[k]
            ok = "met" if 0.70 <= c["share"] <= 0.90 else "NOT met"
            print(
                f"  {NAMES.get(k, k):8} {c['share']:6.1%} of {c['rows']:>3} rows   {ok:7}  median width "
                f"{c['width']:5.0%} held out, {c['shipped_width']:5.0%} shipped"
            )


def band_report(csv: Path, held_out: list[bands.Sample], recs: list[dict[str, Any]], out: Path | None) -> None:
    cov = coverage(held_out)
    print(
        "error bands (P10-P90 of the held-out errors): coverage of the nominal 80% band, each source against "
        "bands from the other sources (target 70-90%); width: P10-P90 as a share of the projection"
    )
    print_coverage(cov)
    if out is None:
        return
    table = bands.build_table(held_out)
    fitted = [r for r in recs if r["fit"] is not None and "pred" in r]
    rows = [r["row"] for r in fitted]
    gpu_counts: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        gpu_counts[row.gpu].add(row.gpus)
    points = []
    for r in fitted:
        row = r["row"]
        conc = max(1, round(r["pred"].concurrency))
        points.append({
            "gpu": row.gpu, "gpus": row.gpus, "params_b": float(get_model(row.model).params_b),
            "engine": row.engine, "context": row.input_tokens + row.output_tokens, "concurrency": conc,
            "label": f"{row.label()} {row.input_tokens}/{row.output_tokens} at {conc} "
            f"(published-benchmarks.csv row {row.index}, {r['source']})",
        })  # fmt: skip
    engines: dict[str, int] = defaultdict(int)
    for row in rows:
        engines[row.engine] += 1
    data = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "csv": csv.name,
        "csv_sha256": hashlib.sha256(csv.read_bytes()).hexdigest(),
        "method": BAND_METHOD,
        "quantiles": list(bands.QUANTILES),
        "min_rows": bands.MIN_ROWS,
        "coverage": cov,
        "bands": table,
        "range": {
            "gpus": sorted({row.gpu for row in rows}),
            "gpu_counts": {g: sorted(v) for g, v in sorted(gpu_counts.items())},
            "params_b": [min(p["params_b"] for p in points), max(p["params_b"] for p in points)],
            "context": max(p["context"] for p in points),
            "concurrency": max(p["concurrency"] for p in points),
            "engines": dict(sorted(engines.items())),
            "v1_rows_per_gpu": v1_rows(points),
        },
        "points": points,
        # the held-out errors the bands are computed from (`--from-samples` recomputes bands and coverage)
        "samples": [[x.source, x.metric, x.regime, x.context, round(x.log_ratio, 5), x.engine] for x in held_out],
    }
    print_v1_rows(data["range"]["v1_rows_per_gpu"])
    print(f"wrote {bands.save_bands(data, out)}")


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


DEFAULT_BANDS = DATA_DIR / bands.BANDS_FILE


def row_counts(csv: Path) -> dict[str, Any]:
    """What the calibration has, from the CSV as the reader maps it: rows and sources (publications, as the
    cross-validation holds them out) per engine, and per catalog GPU the vLLM V1 rows (>= 0.8, the engine the
    kit deploys) beside all rows."""
    rows = read_rows(csv)
    engines: dict[str, dict[str, Any]] = defaultdict(lambda: {"rows": 0, "sources": set()})
    gpus: dict[str, dict[str, int]] = defaultdict(lambda: {"v1": 0, "all": 0})
    for row in rows:
        group = ENGINE_GROUPS[row.engine]
        engines[group]["rows"] += 1
        engines[group]["sources"].add(source_group(row))
        gpus[row.gpu]["all"] += 1
        gpus[row.gpu]["v1"] += row.engine == "vllm"
    return {
        "rows": len(rows),
        "sources": len({source_group(row) for row in rows}),
        "engines": {e: {"rows": v["rows"], "sources": len(v["sources"])} for e, v in sorted(engines.items())},
        "gpus": dict(sorted(gpus.items())),
    }


def print_row_counts(csv: Path) -> None:
    counts = row_counts(csv)
    print(f"published rows by engine ({csv.name}; the reader's engine mapping)")
    print(f"  {'engine':14} {'rows':>5} {'sources':>8}")
    for engine, c in counts["engines"].items():
        print(f"  {engine:14} {c['rows']:>5} {c['sources']:>8}")
    print(f"  {'all':14} {counts['rows']:>5} {counts['sources']:>8}")
    print("vLLM V1 (>= 0.8) rows per GPU (catalog name)")
    print(f"  {'gpu':14} {'V1 rows':>7} {'all rows':>8}")
    for gpu, c in counts["gpus"].items():
        print(f"  {gpu:14} {c['v1']:>7} {c['all']:>8}")


def v1_rows(points: list[dict[str, Any]]) -> dict[str, int]:
    """Published rows of the vLLM V1 engine (>= 0.8, what the kit deploys) per GPU."""
    out: dict[str, int] = defaultdict(int)
    for pt in points:
        if pt["engine"] == "vllm":
            out[pt["gpu"]] += 1
    return dict(sorted(out.items()))


def print_v1_rows(counts: dict[str, int]) -> None:
    text = ", ".join(f"{g} {n}" for g, n in counts.items()) or "none"
    print(f"vLLM V1 (>= 0.8) rows per GPU: {text}")


def rebuild_bands(path: Path) -> None:
    """The band table and its coverage again from the held-out errors it ships (after a change of method)."""
    import json

    data = json.loads(DEFAULT_BANDS.read_text())
    held_out = [bands.Sample(s[1], s[2], s[3], s[4], s[5], s[0]) for s in data["samples"]]
    cov = coverage(held_out)
    print_coverage(cov)
    data.update(coverage=cov, bands=bands.build_table(held_out), min_rows=bands.MIN_ROWS)
    data["range"]["v1_rows_per_gpu"] = v1_rows(data["points"])
    print_v1_rows(data["range"]["v1_rows_per_gpu"])
    data["method"] = BAND_METHOD
    print(f"wrote {bands.save_bands(data, path)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--params", default=None, help="a calibration JSON for the in-sample part (default: shipped)")
    ap.add_argument("--rows", action="store_true", help="print every row in-sample")
    ap.add_argument(
        "--counts", action="store_true", help="print only the rows per engine and the V1 rows per GPU (no fits)"
    )
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation (its fits take minutes)")
    ap.add_argument("--bands-out", default=None, help="where to write the band table (default: the shipped one)")
    ap.add_argument("--no-bands", action="store_true", help="do not write the band table")
    ap.add_argument(
        "--from-samples",
        action="store_true",
        help="recompute the bands and their coverage from the shipped table's held-out errors (no fits)",
    )
    args = ap.parse_args()
    csv = Path(args.csv)
    if args.from_samples:
        rebuild_bands(Path(args.bands_out or DEFAULT_BANDS))
        return
    print_row_counts(csv)
    print()
    if args.counts:
        return
    if not args.no_cv:
        recs = cv_report(csv)
        print()
        band_report(csv, samples(recs), recs, None if args.no_bands else Path(args.bands_out or DEFAULT_BANDS))
        print()
    in_sample_report(csv, load_params_file(args.params) if args.params else load_params(), args.rows)


if __name__ == "__main__":
    main()
