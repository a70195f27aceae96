"""`selfhost estimate`, `selfhost plan`, `selfhost compare`: the cost review commands.

Only the costing engine is imported here (no SkyPilot, Pulumi, boto3 or HTTP clients).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from costing.errors import UserError
from selfhost.spec_options import spec_options

MAX_CONCURRENCY = 100_000  # requests in flight against one server: far beyond any max_num_seqs
# The workload, schedule and SLO flags every costing command takes (costing.data.spec.SPEC_KEYS).
WORKLOAD_FLAGS = (
    "requests_per_day", "input_tokens", "output_tokens", "peak_to_mean", "p90_latency_s",
    "hours_per_day", "days_per_week", "target_utilization",
)  # fmt: skip
FormatOpt = typer.Option("table", "--format", help="table | json | markdown")
TableOrJson = typer.Option("table", "--format", help="table | json")


def _check_format(fmt: str, allowed: tuple[str, ...]) -> str:
    if fmt not in allowed:
        raise UserError(f"unknown format '{fmt}'", f"use --format with one of: {', '.join(allowed)}")
    return fmt


def _load_calibration(path: Path | None, fit):
    """Refit the projection from a `selfhost bench --output` JSON (None: the built-in calibration)."""
    if path is None:
        return None, None
    from costing.performance.bench_refit import refit_from_bench

    if not path.is_file():
        raise UserError(
            f"calibration file '{path}' not found", "pass the JSON written by `selfhost bench --output FILE`"
        )
    try:
        bench = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"calibration file '{path}' is not JSON ({err.msg})", "pass a `selfhost bench` JSON") from None
    params = refit_from_bench(bench, fit)
    summary = params.provenance.get("refit", {}).get("summary")  # the refit's error on the bench's own points
    return params, f"refit from measured bench {path.name} ({params.source})" + (f"; {summary}" if summary else "")


ENGINE_HELP = "vllm-v1 | vllm-v0 | vllm-v0-multistep | trtllm; default: the deployed vLLM (V1, pinned version)"
VLLM_VERSION_HELP = "the vLLM version served (e.g. 0.5.4: V0 before 0.8); default: the pinned one"
REQUESTS_HELP = (
    "with --engine trtllm: a trtllm-bench dataset run, N requests of these lengths queued at once and the engine "
    "sized from them; prints output tok/s over the whole run"
)
CHUNKED_CONTEXT_HELP = "with --engine trtllm: chunked context on (trtllm-bench's TensorRT-engine runs turn it on)"
MAX_REQUESTS = 10_000_000


CONFIDENCE_HELP = "p50: size on the projection; p90: on the conservative end of its error band"


def _check_confidence(confidence: str) -> str:
    from costing.performance.bands import CONFIDENCES

    if confidence not in CONFIDENCES:
        raise UserError(f"unknown confidence '{confidence}'", f"use --confidence with one of: {', '.join(CONFIDENCES)}")
    return confidence


def register(app: typer.Typer) -> None:
    @app.command()
    def estimate(
        model: str = typer.Option(..., "--model", help="llama-3.1-8b, meta-llama/Llama-3.1-8B-Instruct, ..."),
        gpu: str = typer.Option(..., "--gpu", help="A40, A10G, L4, A100, A100-80GB, H100, L40S"),
        gpus: int | None = typer.Option(None, "--gpus", help="GPUs (tensor parallel); default: fewest that fit"),
        nodes: int = typer.Option(1, "--nodes", help="nodes (pipeline parallel stages), 1-4"),
        precision: str = typer.Option("bf16", "--precision", help="bf16 | fp16 | fp8 | int8 | awq"),
        input_tokens: int = typer.Option(..., "--input-tokens", help="prompt tokens per request"),
        output_tokens: int = typer.Option(..., "--output-tokens", help="generated tokens per request"),
        concurrency: int = typer.Option(..., "--concurrency", help="requests in flight"),
        engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
        vllm_version: str | None = typer.Option(None, "--vllm-version", help=VLLM_VERSION_HELP),
        requests: int | None = typer.Option(None, "--requests", help=REQUESTS_HELP),
        chunked_context: bool = typer.Option(False, "--chunked-context", help=CHUNKED_CONTEXT_HELP),
        fmt: str = TableOrJson,
    ) -> None:
        """Project TTFT, TPOT, latency and tokens/s for a model on GPU x count at a concurrency."""
        from costing.data.resolve import resolve
        from costing.data.spec import load_spec
        from costing.money.report import band_text, extrapolation_text, projection_dict
        from costing.performance import projection
        from costing.performance.bands import projection_bands
        from costing.performance.engines import adjust_settings, choose_engine, fit_for_engine

        _check_format(fmt, ("table", "json"))
        for name, value in (
            ("--input-tokens", input_tokens),
            ("--output-tokens", output_tokens),
            ("--concurrency", concurrency),
        ):
            if value < 1:
                raise UserError(f"{name} must be at least 1 (got {value})", f"pass a positive {name}")
        if concurrency > MAX_CONCURRENCY:
            raise UserError(
                f"--concurrency {concurrency} is more clients than one server is ever sent ({MAX_CONCURRENCY:,})",
                f"pass at most {MAX_CONCURRENCY:,}",
            )
        spec = load_spec(
            None,
            model=model,
            precision=precision,
            target={"gpu": gpu, "gpus": gpus, "nodes": nodes},
            workload={"requests_per_day": 1, "input_tokens": input_tokens, "output_tokens": output_tokens},
        )
        eng = choose_engine(engine, vllm_version)
        if (requests is not None or chunked_context) and eng.name != "trtllm":
            flag = "--requests" if requests is not None else "--chunked-context"
            raise UserError(
                f"{flag} describes a TensorRT-LLM (trtllm-bench) run, not {eng.label}", "add --engine trtllm"
            )
        if requests is not None and not 1 <= requests <= MAX_REQUESTS:
            raise UserError(f"--requests must be 1 to {MAX_REQUESTS:,} (got {requests})", "pass the dataset's size")
        resolved = resolve(spec, need_offer=False)
        fit = fit_for_engine(spec, resolved.fit, eng.name)
        if requests is not None:  # trtllm-bench sizes the engine from its dataset's lengths
            fit = adjust_settings(fit, eng.name, (input_tokens, output_tokens))
        chunked = True if chunked_context else None
        p = projection.project(fit, input_tokens, output_tokens, concurrency, engine=eng.name, chunked=chunked)
        p = projection_bands(p, fit, input_tokens, output_tokens, eng.name)
        dataset = None
        if requests is not None:
            tok_s, seconds = projection.dataset_run(
                fit, input_tokens, output_tokens, requests, p, engine=eng.name, chunked=chunked
            )
            dataset = {
                "requests": requests,
                "batch": p.concurrency,
                "output_tokens_per_s": round(tok_s, 2),
                "seconds": round(seconds, 2),
            }
        out = {
            "engine": eng.name,
            "engine_version": eng.version,
            "model": fit.model.id,
            "precision": fit.precision.id,
            "gpu": fit.gpu.name,
            "gpus": fit.total_gpus,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "max_model_len": fit.max_model_len,
            "nodes": fit.nodes,
            "max_concurrency": projection.admissible(fit, input_tokens, output_tokens, eng.name),
            "notes": list(resolved.notes),
            **projection_dict(p),
            "tails": {
                "ttft_ms": {
                    "p50": round(p.ttft_p50_ms, 2),
                    "p90": round(p.ttft_p90_ms, 2),
                    "p99": round(p.ttft_p99_ms, 2),
                },
                "tpot_ms": {
                    "p50": round(p.tpot_p50_ms, 3),
                    "p90": round(p.tpot_p90_ms, 3),
                    "p99": round(p.tpot_p99_ms, 3),
                },
                "e2e_s": {
                    "p50": round(p.e2e_p50_s, 3),
                    "p90": round(p.p90_e2e_latency_s, 3),
                    "p99": round(p.e2e_p99_s, 3),
                },
            },
        }
        if dataset:
            out["dataset_run"] = dataset
        if fmt == "json":
            typer.echo(json.dumps(out, indent=2))
            return
        typer.echo(f"{fit.describe()}, {eng.label}")
        for note in resolved.notes:
            typer.echo(f"note: {note}")
        cap = f" (capped from {p.requested_concurrency}: {p.cap_reason})" if p.capped else ""
        typer.echo(f"concurrency {p.concurrency}{cap}, {input_tokens} in / {output_tokens} out")
        b = p.bands
        typer.echo(f"  output tokens/s   {p.output_tokens_per_s:,.1f}{band_text(b, 'output_tok_s', ',.1f')}")
        typer.echo(f"  requests/s        {p.requests_per_s:,.3f}")
        if dataset:
            typer.echo(
                f"  dataset run       {requests:,} requests at once in batches of {p.concurrency:,}: "
                f"{dataset['output_tokens_per_s']:,.1f} output tokens/s over {dataset['seconds']:,.1f} s"
            )
        typer.echo(f"  TTFT              {p.ttft_ms:,.1f} ms{band_text(b, 'ttft_ms', ',.1f')}")
        typer.echo(f"  TPOT              {p.tpot_ms:,.2f} ms{band_text(b, 'tpot_ms', ',.2f')}")
        typer.echo(
            f"  e2e latency       {p.e2e_latency_s:,.3f} s{band_text(b, 'e2e_s', ',.3f')} "
            f"(p90 {p.p90_e2e_latency_s:,.3f} s)"
        )
        if b:
            typer.echo(f"  error bands       {b['regime']} load, {b['context']} context: {b['source']}")
        extrapolated = extrapolation_text(b)
        if extrapolated:
            typer.echo(f"  {extrapolated}")
        typer.echo(f"  TTFT p50/p90/p99  {p.ttft_p50_ms:,.1f} / {p.ttft_p90_ms:,.1f} / {p.ttft_p99_ms:,.1f} ms")
        typer.echo(f"  TPOT p50/p90/p99  {p.tpot_p50_ms:,.2f} / {p.tpot_p90_ms:,.2f} / {p.tpot_p99_ms:,.2f} ms")
        typer.echo("assumptions:")
        for name, assumed in p.assumptions.items():
            if isinstance(assumed, dict):  # fitted parameters: name -> {value, source}
                assumed = ", ".join(f"{k}={v['value'] if isinstance(v, dict) else v}" for k, v in assumed.items())
            typer.echo(f"  {name}: {assumed}")

    @app.command()
    @spec_options(
        "model", "gpu", "gpus", "cloud", "offer", "precision", "pricing", "region",
        *WORKLOAD_FLAGS, "max_monthly_usd", "allow_unpriced", "replicas", "availability",
    )  # fmt: skip
    def plan(
        flags: dict[str, Any],
        spec_file: Path | None = typer.Option(None, "--spec", help="YAML deployment spec (flags override it)"),
        calibration: Path | None = typer.Option(None, "--calibration", help="bench JSON to refit the projection"),
        chart: Path | None = typer.Option(None, "--chart", help="write a cost-vs-traffic PNG"),
        max_price_age_days: int | None = typer.Option(
            None, "--max-price-age-days", help="CI: exit 2 when a price used is older than this"
        ),
        engine: str | None = typer.Option(None, "--engine", help=ENGINE_HELP),
        vllm_version: str | None = typer.Option(
            None, "--vllm-version", help=VLLM_VERSION_HELP + " (checked against the advisory snapshot)"
        ),
        strict: bool = typer.Option(
            False, "--strict", help="exit 2 when that vLLM version is affected by a published advisory"
        ),
        confidence: str = typer.Option("p50", "--confidence", help=CONFIDENCE_HELP),
        kubernetes: str | None = typer.Option(
            None, "--kubernetes", help="eks | gke: the nodes on a team's cluster (what `selfhost render k8s` deploys)"
        ),
        fmt: str = FormatOpt,
    ) -> None:
        """Cost review: fit, vLLM settings, projection, monthly spend and break-even against every API.

        Without a workload: a price review of one always-on replica at full load. The vLLM version deployed
        is checked against the shipped advisory snapshot (warnings on stderr; --strict refuses)."""
        from costing.data import advisories
        from costing.money import report
        from costing.performance.engines import choose_engine
        from costing.performance.vllm_args import VLLM_VERSION

        version = str(advisories.parse_version(vllm_version, "--vllm-version")) if vllm_version else VLLM_VERSION
        where = "--vllm-version" if vllm_version else "the kit's pinned vLLM"
        for line in advisories.enforce(version, where, strict=strict):
            typer.echo(line, err=True)
        from costing.data.resolve import resolve
        from costing.data.spec import load_spec, overrides_from_flags
        from costing.money.review import cost_review, enforce_budget

        _check_format(fmt, ("table", "json", "markdown"))
        eng = choose_engine(engine, vllm_version).name
        _check_confidence(confidence)
        if chart and not chart.parent.is_dir():
            raise UserError(
                f"--chart folder '{chart.parent}' does not exist", "create it, or give another --chart path"
            )
        spec = load_spec(spec_file, **overrides_from_flags(**flags))
        if kubernetes is not None and spec.workload is None:
            raise UserError(
                "--kubernetes sizes the replicas from a workload: none given",
                "pass --requests-per-day, --input-tokens and --output-tokens (or a spec with `workload:`)",
            )
        if kubernetes is not None:
            from costing.money.kubernetes import kubernetes_review, kubernetes_spec

            resolved = resolve(kubernetes_spec(spec, kubernetes)[0])
            params, label = _load_calibration(calibration, resolved.fit)
            review = kubernetes_review(
                spec, kubernetes, params=params, calibration=label, engine=eng, confidence=confidence
            )
        elif spec.workload is None:  # a price review: one replica of the offer at full load
            from costing.money.review import full_load_review

            if chart:
                raise UserError(
                    "--chart plots cost against traffic: no workload given", "pass a workload, or drop --chart"
                )
            params, label = _load_calibration(calibration, resolve(spec).fit)
            review = full_load_review(spec, params=params, calibration=label, engine=eng, confidence=confidence)
        else:
            resolved = resolve(spec)
            params, label = _load_calibration(calibration, resolved.fit)
            review = cost_review(
                spec, params=params, calibration=label, resolved=resolved, engine=eng, confidence=confidence
            )
        if spec.workload is not None:
            from costing.money.three_way import three_way

            review.three_way = three_way(review)
        typer.echo(report.render(review, fmt), nl=False)
        if chart:
            from costing.money.cost_chart import cost_chart

            cost_chart(review, chart)
            typer.echo(f"chart written to {chart}", err=True)
        from costing.money.price_age import enforce_price_age

        enforce_price_age(review, max_price_age_days)
        enforce_budget(review)

    @app.command()
    @spec_options(
        "model", "precision", "cloud", "pricing", "region", *WORKLOAD_FLAGS,
        help={
            "cloud": "only this cloud",
            "region": "only this region; offers not priced there are skipped",
            "pricing": "only this pricing (default: every pricing the snapshot prices)",
        },
    )  # fmt: skip
    def compare(
        flags: dict[str, Any],
        spec_file: Path | None = typer.Option(None, "--spec", help="YAML deployment spec (flags override it)"),
        top: int = typer.Option(20, "--top", help="rows the table/markdown show, cheapest first (0: all; JSON: all)"),
        fmt: str = FormatOpt,
    ) -> None:
        """Every offer x region x pricing that fits, ranked by monthly cost at the workload, with $/1M tokens
        and the SLO. --cloud, --region and --pricing narrow the space (the spec's own region and pricing do not)."""
        from costing.data.catalog import check_pricing
        from costing.data.spec import load_spec, overrides_from_flags
        from costing.money.compare import Space, compare_offers, render_compare

        _check_format(fmt, ("table", "json", "markdown"))
        if top < 0:
            raise UserError(f"--top must be 0 (all) or more (got {top})", "pass --top 0 for every row, or a positive N")
        spec = load_spec(spec_file, **overrides_from_flags(**flags))
        pricing = check_pricing(flags["pricing"]) if flags.get("pricing") else None
        space = Space(cloud=spec.target.cloud, region=flags.get("region"), pricing=pricing)
        typer.echo(render_compare(compare_offers(spec, space), fmt, top), nl=False)
