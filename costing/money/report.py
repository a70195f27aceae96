"""Render a cost review: a stable JSON dict, a terminal table, and markdown for a pull-request comment."""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from costing.performance.vllm_args import shell_command, vllm_serve_argv

if TYPE_CHECKING:
    from costing.money.review import CostReview
    from costing.performance.projection import Projection


def _r(x: float | None, nd: int = 4) -> float | None:
    """Rounded; None for 'does not apply' and for a non-finite value (JSON has no inf or NaN)."""
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def projection_dict(p: Projection) -> dict[str, Any]:
    """The projection's stable JSON fields (documented in docs/concepts/review.md, 'JSON fields')."""
    return {
        "concurrency": p.concurrency,
        "requested_concurrency": p.requested_concurrency,
        "capped": p.capped,
        "cap_reason": p.cap_reason,
        "ttft_ms": _r(p.ttft_ms, 2),
        "tpot_ms": _r(p.tpot_ms, 3),
        "e2e_latency_s": _r(p.e2e_latency_s, 3),
        "p90_e2e_latency_s": _r(p.p90_e2e_latency_s, 3),
        "output_tokens_per_s": _r(p.output_tokens_per_s, 2),
        "requests_per_s": _r(p.requests_per_s, 4),
        "bands": bands_dict(p.bands),
        "assumptions": jsonable(p.assumptions),
    }


BAND_DIGITS = {"output_tok_s": 1, "tpot_ms": 2, "ttft_ms": 1, "e2e_s": 3}


def bands_dict(b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The projection's P10-P90 intervals (metric -> p10, p90, the band's bucket and rows), rounded."""
    if not b:
        return None
    intervals = {
        m: {"p10": _r(iv["p10"], BAND_DIGITS[m]), "p90": _r(iv["p90"], BAND_DIGITS[m]), **{
            k: iv[k] for k in ("bucket", "rows")
        }}
        for m, iv in b["intervals"].items()
    }  # fmt: skip
    return {**jsonable(b), "intervals": intervals}


def band_text(b: dict[str, Any] | None, metric: str, fmt: str) -> str:
    """' (P10-P90 a-b)' for a table or markdown cell; empty without a band."""
    iv = (b or {}).get("intervals", {}).get(metric)
    if not iv:
        return ""
    return f" (P10-P90 {format(iv['p10'], fmt)}-{format(iv['p90'], fmt)})"


def extrapolation_text(b: dict[str, Any] | None) -> str | None:
    """One line when the configuration is outside the calibrated range, naming the nearest calibrated point."""
    if not b or not b.get("extrapolated"):
        return None
    return f"extrapolated: {'; '.join(b['extrapolated'])}; nearest calibrated: {b['nearest_calibrated']}"


def jsonable(value: Any) -> Any:
    """JSON all the way down: mappings and sequences kept as JSON objects and arrays, floats finite."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool, type(None))):
        return value
    return str(value)


def review_dict(rv: CostReview) -> dict[str, Any]:
    fit, offer, price, s = rv.fit, rv.offer, rv.resolved.price, rv.fit.settings
    p = rv.projection
    return {
        "schema": "selfhost.review/v1",
        "engine": rv.engine,
        "confidence": rv.confidence,
        "model": {
            "id": fit.model.id,
            "hf_repo": s.model_repo,
            "precision": fit.precision.id,
            "source": fit.model.source,
            "as_of": fit.model.as_of,
        },
        "target": {
            "offer": offer.id if offer else None,
            "cloud": offer.cloud if offer else None,
            "instance_type": offer.instance_type if offer else None,
            "region": (price.region or offer.region) if offer and price else None,
            "zone": price.zone if price else None,
            "gpu": fit.gpu.name,
            "gpus_per_node": fit.gpus_per_node,
            "nodes": fit.nodes,
            "pricing": rv.spec.target.pricing,
            **({"kubernetes": rv.kubernetes} if rv.kubernetes else {}),  # eks | gke: pods on the team's cluster
            "hourly_usd": _r(rv.hourly_usd, 4),
            "price_source": price.source if price else None,
            "price_derived": price.derived if price else None,
            "price_as_of": price.as_of if price else None,
            "gpu_source": f"{fit.gpu.source} ({fit.gpu.as_of})",
        },
        "fit": {
            "fits": True,
            "weight_gib": _r(fit.weight_gib, 2),
            "weight_gib_per_gpu": _r(fit.weight_gib_per_gpu, 2),
            "runtime_overhead_gib_per_gpu": _r(fit.overhead_gib_per_gpu, 2),
            "kv_cache_gib_per_gpu": _r(fit.kv_gib_per_gpu, 2),
            "kv_bytes_per_token": int(fit.kv_bytes_per_token),
            "kv_capacity_tokens": fit.kv_capacity_tokens,
            "max_model_len": fit.max_model_len,
            "max_concurrency": fit.max_concurrent_seqs(rv.workload.input_tokens + rv.workload.output_tokens),
            "notes": list(fit.notes),
        },
        "vllm": {
            **asdict(s),
            "extra_args": list(s.extra_args),
            "command": shell_command(vllm_serve_argv(s)),
        },
        "workload": None
        if rv.no_workload
        else {
            "requests_per_day": rv.workload.requests_per_day,
            "input_tokens": rv.workload.input_tokens,
            "output_tokens": rv.workload.output_tokens,
            "peak_to_mean": rv.workload.peak_to_mean,
            "requests_per_month": _r(rv.traffic.requests_per_month, 1),
            "input_tokens_per_month": _r(rv.traffic.input_tokens_per_month, 0),
            "output_tokens_per_month": _r(rv.traffic.output_tokens_per_month, 0),
            "peak_requests_per_s": _r(rv.traffic.peak_requests_per_s, 4),
        },
        **({"no_workload": no_workload_dict(rv)} if rv.no_workload else {}),
        "slo": {"p90_latency_s": rv.spec.slo.p90_latency_s, "met": rv.slo_met},
        "drain": drain_dict(rv),
        "projection": projection_dict(p),
        "full_load": projection_dict(rv.full_load),
        # Top-level shortcuts (stable): one replica at the SLO-bound concurrency.
        "output_tokens_per_s": _r(p.output_tokens_per_s, 2),
        "ttft_ms": _r(p.ttft_ms, 2),
        "tpot_ms": _r(p.tpot_ms, 3),
        "e2e_latency_s": _r(p.e2e_latency_s, 3),
        "max_concurrency": p.concurrency,
        "replicas": rv.replicas,
        "target_utilization": rv.spec.target_utilization,
        "fleet": fleet_dict(rv),
        "schedule": schedule_dict(rv),
        "hours_per_month": _r(rv.hours_per_month, 2),
        "billed_hours_per_month": _r(rv.billed_hours_per_month, 2),
        "storage_gb": rv.storage_gb,
        "monthly_usd": _r(rv.monthly_usd, 2),
        "monthly_breakdown": {
            "compute_usd": _r(sum(c.usd for c in rv.cost_lines if c.pricing != "storage"), 2),
            "storage_usd": _r(sum(c.usd for c in rv.cost_lines if c.pricing == "storage"), 2),
        },
        "cost_lines": [
            {
                "item": c.item,
                "pricing": c.pricing,
                "replicas": _r(c.replicas, 3),
                "hours": _r(c.hours, 2),
                "usd_per_hour": _r(c.usd_per_hour, 4),
                "usd": _r(c.usd, 2),
            }
            for c in rv.cost_lines
        ],
        "usd_per_million_output_tokens": _r(rv.usd_per_million_output_tokens, 4),
        "usd_per_million_output_tokens_full_load": _r(rv.usd_per_million_output_tokens_full_load, 4),
        "budget": {
            "max_monthly_usd": rv.max_monthly_usd,
            "within": None if rv.max_monthly_usd is None else rv.monthly_usd <= rv.max_monthly_usd,
            "allow_unpriced": rv.spec.budget.allow_unpriced,
        },
        "breakeven": [
            {
                "api": b.api.label,
                "provider": b.api.provider,
                "api_model": b.api.api_model,
                "closed_model": b.api.closed,
                "input_usd_per_million": b.api.input,
                "output_usd_per_million": b.api.output,
                "api_monthly_usd": _r(b.api_monthly_usd, 2),
                "selfhost_monthly_usd": _r(b.selfhost_monthly_usd, 2),
                "cheaper": b.cheaper,
                "breakeven_requests_per_day": _r(b.requests_per_day, 1),
                "breakeven_input_tokens_per_month": _r(b.input_tokens_per_month, 0),
                "breakeven_output_tokens_per_month": _r(b.output_tokens_per_month, 0),
                "reason": b.reason,
                "source": b.api.source,
                "as_of": b.api.as_of,
            }
            for b in rv.breakeven
        ],
        "calibration": rv.calibration,
        "notes": rv.notes,
        "prices": _prices_dict(rv),
        **({"spot_risk": spot_risk_dict(rv)} if rv.spot_risk else {}),
        **({"three_way": _three_way_dict(rv)} if rv.three_way is not None else {}),
    }


def _three_way_dict(rv: CostReview) -> dict[str, Any]:
    from costing.money.three_way import three_way_dict

    return three_way_dict(rv.three_way)


def _three_way_lines(rv: CostReview) -> list[str]:
    if rv.three_way is None:
        return []
    from costing.money.three_way import three_way_lines

    return three_way_lines(rv.three_way)


def _bounds(values: tuple[float | None, float | None, float | None], nd: int) -> dict[str, float | None]:
    low, central, high = values
    return {"low": _r(low, nd), "central": _r(central, nd), "high": _r(high, nd)}


def spot_risk_dict(rv: CostReview) -> dict[str, Any] | None:
    """Spot reviews only: cold start, interruptions a month (published band), minutes without a replica,
    and the on-demand fallback cost beside the spot saving (docs/concepts/review.md)."""
    risk = rv.spot_risk
    if risk is None:
        return None
    cs, rate = risk.cold_start, risk.rate
    return {
        "cold_start_s": _r(cs.seconds, 1),
        "cold_start": {
            "weight_gib": _r(cs.weight_gib, 2),
            "weights_from": cs.weights_from,
            "read_bytes_per_s": cs.read_bytes_per_s,
            "read_basis": cs.read_basis,
            "weights_s": _r(cs.weights_s, 1),
            "engine_start_s": cs.engine_start_s,
            "engine_start_basis": cs.engine_start_basis,
        },
        "interruption_rate": {
            "published": rate.published,
            "band": rate.band,
            "low_share_per_month": rate.low,
            "high_share_per_month": rate.high,
            "central_share_per_month": _r(rate.central, 4),
            "central_basis": rate.basis,
            "source": rate.source,
            "as_of": rate.as_of,
            "note": rate.note or None,
        },
        "spot_replica_months": _r(risk.spot_replica_months, 3),
        "interruptions_per_month": _bounds(risk.interruptions_per_month, 3),
        "minutes_without_replica_per_month": _bounds(risk.minutes_without_replica, 1),
        "ondemand_fallback_replicas": risk.ondemand_fallback_replicas,
        "ondemand_fallback_usd": _r(risk.ondemand_fallback_usd, 2),
        "all_ondemand_compute_usd": _r(risk.all_ondemand_usd, 2),
        "spot_compute_usd": _r(risk.spot_compute_usd, 2),
        "spot_saving_usd": _r(risk.spot_saving_usd, 2),
    }


def no_workload_dict(rv: CostReview) -> dict[str, Any]:
    """What a review without a workload assumed: one replica saturated at the default shape all its hours."""
    from costing.money.review import NO_WORKLOAD_LABEL

    w, t = rv.workload, rv.traffic
    return {
        "label": NO_WORKLOAD_LABEL,
        "replicas": 1,
        "default_shape": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens},
        "full_load_requests_per_s": _r(rv.full_load.requests_per_s, 4),
        "full_load_output_tokens_per_s": _r(rv.full_load.output_tokens_per_s, 2),
        "full_load_output_tokens_per_month": _r(t.output_tokens_per_month, 0),
        "breakeven_basis": (
            "breakeven_output_tokens_per_month: the output tokens a month (with input at the default shape's "
            "ratio) at which the API's bill equals one replica's monthly cost; api_monthly_usd: the API's bill "
            "for the replica's full-load volume"
        ),
    }


def _prices_dict(rv: CostReview) -> dict[str, Any]:
    """Each price the review used, with its date and source, and the ones older than 30 days."""
    from costing.data.catalog import snapshot_label
    from costing.money.price_age import age_days, dated_prices, warnings

    return {
        "snapshot": snapshot_label(),
        "used": [{"what": w, "as_of": a, "age_days": age_days(a), "source": s} for w, a, s in dated_prices(rv)],
        "warnings": warnings(rv),
    }


def price_rows(rv: CostReview) -> list[str]:
    """One line per price: what, date, source (the table and markdown show these under the review)."""
    from costing.money.price_age import dated_prices

    return [f"{w}: as of {a}, {s}" for w, a, s in dated_prices(rv)]


def fleet_dict(rv: CostReview) -> dict[str, Any]:
    """What the deployment must run: replica counts and the autoscaler's target (SkyServe takes these)."""
    f = rv.fleet
    if f is None:
        return {}
    return {
        "min_replicas": f.min_replicas,
        "max_replicas": f.max_replicas,
        "base_ondemand_replicas": f.base_ondemand_replicas,
        "autoscaled": f.autoscaled,
        "target_qps_per_replica": _r(f.requests_per_s_per_replica, 4),
        "target_inflight_per_replica": f.inflight_per_replica,
        "off_peak_requests_per_s": _r(f.off_peak_requests_per_s, 4),
        "availability": f.availability,
    }


def schedule_dict(rv: CostReview) -> dict[str, Any]:
    """The schedule the deployment must run (a stack turns a part-time one into scheduled scaling)."""
    sc = rv.spec.schedule
    return {
        "hours_per_day": sc.hours_per_day,
        "days_per_week": sc.days_per_week,
        "days_per_month": sc.days_per_month,
        "part_time": sc.part_time,
        "runs_hours_per_month": _r(rv.hours_per_month, 2),
        "billed_hours_per_month": _r(rv.billed_hours_per_month, 2),
    }


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def _count(x: float | None) -> str:
    if x is None:
        return "never"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:,.1f}{unit}"
    return f"{x:,.0f}"


def drain_dict(rv: CostReview) -> dict[str, Any]:
    """vLLM's shutdown timeout the review chose (costing.performance.drain), with what it came from."""
    from costing.performance.drain import DRAIN_MAX_S, DRAIN_MIN_S

    return {
        "shutdown_timeout_s": rv.fit.settings.shutdown_timeout_s,
        "p99_e2e_latency_s": _r(rv.projection.e2e_p99_s, 3),
        "concurrency": rv.projection.concurrency,
        "bounds_s": [DRAIN_MIN_S, DRAIN_MAX_S],
    }


def drain_text(rv: CostReview) -> str:
    d = drain_dict(rv)
    low, high = d["bounds_s"]
    return (
        f"--shutdown-timeout {d['shutdown_timeout_s']} s: a stopped replica (SIGTERM) finishes its in-flight "
        f"requests for up to that long (p99 e2e {d['p99_e2e_latency_s']:,.2f} s at concurrency {d['concurrency']}, "
        f"within {low}-{high} s)"
    )


def summary_rows(rv: CostReview) -> list[tuple[str, str]]:
    fit, p, d = rv.fit, rv.projection, review_dict(rv)
    t = d["target"]
    zone = f" {t['zone']}" if t.get("zone") else ""
    where = (
        f"{t['offer']} ({t['instance_type']}, {t['region']}{zone})"
        if t["offer"]
        else f"{fit.total_gpus}x {fit.gpu.name}"
    )
    if rv.kubernetes:  # the nodes of the team's cluster, as the diff of its stack folder says it
        from costing.money.kubernetes import on_cluster

        where += f" {on_cluster(rv.kubernetes)}"
    price = f"{_money(rv.hourly_usd)}/h {rv.spec.target.pricing}" + (" (derived)" if t["price_derived"] else "")
    price += f", price as of {t['price_as_of']}" if t.get("price_as_of") else ""
    slo = rv.spec.slo.p90_latency_s
    if rv.no_workload:
        return _no_workload_rows(rv, where, price)
    return [
        ("Model", f"{fit.model.id} {fit.precision.id} ({fit.settings.model_repo})"),
        ("Target", f"{where}, {fit.total_gpus}x {fit.gpu.name}, {price}"),
        (
            "Fit",
            f"weights {fit.weight_gib:.1f} GiB, KV {fit.kv_gib_per_gpu:.1f} GiB/GPU = "
            f"{fit.kv_capacity_tokens:,} tokens, max_model_len {fit.max_model_len:,}",
        ),
        ("vLLM", d["vllm"]["command"]),
        (
            "Workload",
            f"{rv.workload.requests_per_day:,.0f} req/day x ({rv.workload.input_tokens:,} in + "
            f"{rv.workload.output_tokens:,} out) tokens, peak x{rv.workload.peak_to_mean:g}",
        ),
        (
            "Projection",
            f"concurrency {p.concurrency}{' (capped)' if p.capped else ''}: "
            f"{p.output_tokens_per_s:,.0f} output tok/s, TTFT {p.ttft_ms:,.0f} ms, "
            f"TPOT {p.tpot_ms:,.1f} ms, e2e {p.e2e_latency_s:,.2f} s (p90 {p.p90_e2e_latency_s:,.2f} s), "
            f"{p.requests_per_s:,.2f} req/s per replica",
        ),
        *_band_rows(rv, p),
        ("SLO", "none" if not slo else f"p90 <= {slo:g} s: {'met' if rv.slo_met else 'MISSED'}"),
        ("Drain", drain_text(rv)),
        ("Replicas", _replicas_text(rv)),
        ("Schedule", _schedule_text(rv)),
        ("Monthly", f"{_money(rv.monthly_usd)} (sum of the cost table)"),
        (
            "$/1M output",
            f"{_money(rv.usd_per_million_output_tokens)} at this workload, "
            f"{_money(rv.usd_per_million_output_tokens_full_load)} at full load",
        ),
        (
            "Budget",
            "none"
            if rv.max_monthly_usd is None
            else f"{_money(rv.max_monthly_usd)}: {'within' if rv.monthly_usd <= rv.max_monthly_usd else 'OVER'}",
        ),
        *spot_risk_rows(rv),
    ]


def _band_rows(rv: CostReview, p: Projection) -> list[tuple[str, str]]:
    """The projection's P10-P90 intervals, which end sized the fleet, and any extrapolation."""
    b = p.bands
    if not b:
        return []
    iv = b["intervals"]
    parts = []
    for m, label, unit, fmt in (
        ("output_tok_s", "tok/s", "", ",.0f"),
        ("ttft_ms", "TTFT", " ms", ",.0f"),
        ("tpot_ms", "TPOT", " ms", ",.1f"),
        ("e2e_s", "e2e", " s", ",.2f"),
    ):
        if m in iv:
            parts.append(f"{label} {format(iv[m]['p10'], fmt)}-{format(iv[m]['p90'], fmt)}{unit}")
    end = "the projection (p50)" if rv.confidence == "p50" else "the conservative end of the band (p90)"
    rows = [
        (
            "Error band",
            f"P10-P90 {', '.join(parts)} ({b['regime']} load, {b['context']} context; cross-validated); sized on {end}",
        )
    ]
    extrapolated = extrapolation_text(b)
    if extrapolated:
        rows.append(("Extrapolated", extrapolated.removeprefix("extrapolated: ")))
    return rows


def _no_workload_rows(rv: CostReview, where: str, price: str) -> list[tuple[str, str]]:
    """The summary of a price review (no workload): one replica, saturated at the default shape."""
    from costing.money.review import NO_WORKLOAD_LABEL

    fit, f, w = rv.fit, rv.full_load, rv.workload
    return [
        ("Review", f"{NO_WORKLOAD_LABEL} (pass --requests-per-day/--input-tokens/--output-tokens to size a fleet)"),
        ("Model", f"{fit.model.id} {fit.precision.id} ({fit.settings.model_repo})"),
        ("Target", f"{where}, {fit.total_gpus}x {fit.gpu.name}, {price}"),
        (
            "Fit",
            f"weights {fit.weight_gib:.1f} GiB, KV {fit.kv_gib_per_gpu:.1f} GiB/GPU = "
            f"{fit.kv_capacity_tokens:,} tokens, max_model_len {fit.max_model_len:,}",
        ),
        ("vLLM", shell_command(vllm_serve_argv(fit.settings))),
        (
            "Full load",
            f"default shape {w.input_tokens:,} in / {w.output_tokens:,} out, concurrency {f.concurrency}"
            f"{' (capped)' if f.capped else ''}: {f.output_tokens_per_s:,.0f} output tok/s, "
            f"{f.requests_per_s:,.2f} req/s, TTFT {f.ttft_ms:,.0f} ms, TPOT {f.tpot_ms:,.1f} ms, "
            f"p90 e2e {f.p90_e2e_latency_s:,.2f} s",
        ),
        *_band_rows(rv, f),
        ("Drain", drain_text(rv)),
        ("Volume", f"{_count(rv.traffic.output_tokens_per_month)} output tokens/month at full load over the schedule"),
        ("Schedule", _schedule_text(rv)),
        ("Monthly", f"{_money(rv.monthly_usd)} for one replica (sum of the cost table)"),
        ("$/1M output", f"{_money(rv.usd_per_million_output_tokens_full_load)} at full load"),
        (
            "Budget",
            "none"
            if rv.max_monthly_usd is None
            else f"{_money(rv.max_monthly_usd)}: {'within' if rv.monthly_usd <= rv.max_monthly_usd else 'OVER'}",
        ),
    ]


def _span(values: tuple[float | None, float | None, float | None], fmt: str) -> str:
    low, central, high = values
    if central is None:
        return "-"
    text = format(central, fmt)
    if high is None:
        return f"at least {text}"
    return f"{text} ({format(low or 0.0, fmt)} to {format(high, fmt)})"


def spot_risk_rows(rv: CostReview) -> list[tuple[str, str]]:
    """Spot reviews only: the cold start, the interruption risk and the fallback cost, each with its basis."""
    risk = rv.spot_risk
    if risk is None:
        return []
    cs, rate, offer = risk.cold_start, risk.rate, rv.offer
    cold = (
        f"{cs.seconds / 60:,.1f} min for a replacement replica: engine start {cs.engine_start_s:,.0f} s "
        f"({cs.engine_start_basis}) + reading {cs.weight_gib:,.1f} GiB of weights (the fit) from "
        f"{cs.weights_from} at {cs.read_bytes_per_s / 1e6:,.0f} MB/s, {cs.weights_s:,.0f} s ({cs.read_basis})"
    )
    where = f"{offer.instance_type if offer else '-'} in {rv.resolved.price.region if rv.resolved.price else '-'}"
    if rate.published:
        interrupts = _span(risk.interruptions_per_month, ",.3f")
        minutes = _span(risk.minutes_without_replica, ",.1f")
        risk_text = (
            f"{interrupts} interruptions/month = Spot Advisor band {rate.band} of {where} interrupted a month "
            f"({rate.basis}; bounds in brackets) x {risk.spot_replica_months:,.2f} spot replica-months; "
            f"x cold start = {minutes} min/month without that replica "
            f"(source: {rate.source}, as of {rate.as_of})"
        )
    else:
        risk_text = (
            f"no published rate: {rate.note} (source: {rate.source}, as of {rate.as_of}); expected "
            f"interruptions and minutes without a replica are not projected"
        )
    if risk.ondemand_fallback_replicas:
        fallback = (
            f"on-demand fallback capacity {risk.ondemand_fallback_replicas:g} base replica "
            f"{_money(risk.ondemand_fallback_usd)}/month (in the table)"
        )
    else:
        fallback = "no on-demand fallback capacity: while a replacement starts, one replica fewer serves"
    saving = (
        f"; spot saves {_money(risk.spot_saving_usd)}/month vs all on-demand ({_money(risk.all_ondemand_usd)} compute)"
        if risk.spot_saving_usd is not None
        else "; no on-demand price to compare"
    )
    return [("Cold start", cold), ("Spot risk", risk_text), ("Spot fallback", fallback + saving)]


def _replicas_text(rv: CostReview) -> str:
    f = rv.fleet
    util = f"at {rv.spec.target_utilization:.0%} target utilization"
    peak = f"peak {rv.traffic.peak_requests_per_s:,.3f} req/s"
    if f is None or not f.autoscaled:
        return f"{rv.replicas} ({peak}, {util}, availability {f.availability if f else 'standard'})"
    slo_bound = f"SLO-bound concurrency {rv.projection.concurrency} x {rv.spec.target_utilization:.0%}"
    if rv.kubernetes:
        from costing.money.kubernetes import pods_text

        return (
            f"{pods_text(f.min_replicas, f.max_replicas)}, autoscaled by KEDA at {f.inflight_per_replica:g} "
            f"requests in flight each (vLLM's running + waiting requests: {slo_bound}) "
            f"({peak}, {util}, availability {f.availability})"
        )
    return (
        f"{f.min_replicas} to {f.max_replicas}, autoscaled at {f.requests_per_s_per_replica:,.2f} req/s each "
        f"(SkyServe's QPS) or {f.inflight_per_replica:g} requests in flight each (the aws/gcp stacks' vLLM "
        f"signal: {slo_bound}) ({peak}, {util}, availability {f.availability})"
    )


def _schedule_text(rv: CostReview) -> str:
    sc = rv.spec.schedule
    days = f"{sc.days_per_month:g} days/month" if sc.days_per_month else f"{sc.days_per_week:g} days/week"
    text = f"{sc.hours_per_day:g} h/day, {days}: runs {rv.hours_per_month:,.0f} h/month"
    if rv.billed_hours_per_month != rv.hours_per_month:
        text += f", billed {rv.billed_hours_per_month:,.0f} h ({rv.spec.target.pricing} commitment)"
    return text


COST_HEADERS = ("Item", "Pricing", "Replicas", "Hours/mo", "$/h", "$/month")


def cost_rows(rv: CostReview) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (
            c.item,
            c.pricing,
            f"{c.replicas:,.2f}".rstrip("0").rstrip("."),
            f"{c.hours:,.0f}",
            f"{c.usd_per_hour:,.4f}",
            _money(c.usd),
        )
        for c in rv.cost_lines
    ]
    rows.append(("total", "", "", "", "", _money(rv.monthly_usd)))
    return rows


def breakeven_rows(rv: CostReview) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for b in rv.breakeven:
        rows.append(
            (
                b.api.label,
                f"${b.api.input:.2f}/${b.api.output:.2f}",
                _money(b.api_monthly_usd),
                _money(b.selfhost_monthly_usd),
                "self-host" if b.cheaper == "selfhost" else "API",
                _count(b.requests_per_day),
                _count(b.output_tokens_per_month),
            )
        )
    return rows


BREAKEVEN_HEADERS = (
    "API",
    "$/1M in/out",
    "API $/mo",
    "Self-host $/mo",
    "Cheaper",
    "Break-even req/day",
    "Break-even out tok/mo",
)


def _breakeven_title(rv: CostReview) -> str:
    if not rv.no_workload:
        return "Against pay-per-token APIs (same workload)"
    w = rv.workload
    return (
        f"Against pay-per-token APIs (API $/mo: the replica's full-load volume; break-even: output tokens/month "
        f"where the API costs the replica's monthly price, input at {w.input_tokens:,}:{w.output_tokens:,})"
    )


NARROW_BREAKEVEN = ("API", "API $/mo", "Cheaper", "Break-even req/day")


def render_table(rv: CostReview) -> str:
    """The review for a terminal: as wide as $COLUMNS (up to 132); narrower, the API table keeps 4 of its columns."""
    from rich.console import Console
    from rich.table import Table

    from costing.terminal import NARROW_BELOW, output_width, wrap

    width = output_width(132)
    narrow = width < NARROW_BELOW
    console = Console(record=True, file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    title = "selfhost price review (no workload given: one replica, full load)" if rv.no_workload else None
    summary = Table(show_header=False, title=title or "selfhost cost review", title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    for k, v in summary_rows(rv):
        summary.add_row(k, v)
    console.print(summary)
    costs = Table(title="Monthly cost (what runs)", title_justify="left")
    for h in COST_HEADERS:
        costs.add_column(h, justify="left" if h in ("Item", "Pricing") else "right")
    for row in cost_rows(rv):
        costs.add_row(*row)
    console.print(costs)
    headers = NARROW_BREAKEVEN if narrow else BREAKEVEN_HEADERS
    keep = [BREAKEVEN_HEADERS.index(h) for h in headers]
    table = Table(title=_breakeven_title(rv), title_justify="left")
    for h in headers:
        table.add_column(
            h,
            justify="left" if h in ("API", "Cheaper") else "right",
            no_wrap=h == "API" and not narrow,
            overflow="fold",
        )
    for row in breakeven_rows(rv):
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    from costing.data.catalog import snapshot_label
    from costing.money.price_age import warnings

    lines = [wrap(line, width, indent="  ") for line in _three_way_lines(rv)]
    lines += [wrap(f"note: {note}", width) for note in rv.notes]
    lines.append(wrap(f"prices ({snapshot_label()}):", width))
    lines += [wrap(line, width, indent="  ") for line in price_rows(rv)]
    lines += [wrap(f"warning: {line}", width) for line in warnings(rv)]
    lines.append(wrap(f"calibration: {rv.calibration}", width))
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    return console.export_text()


def render_markdown(rv: CostReview) -> str:
    kind = "price review (no workload given: one replica, full load)" if rv.no_workload else "cost review"
    lines = [f"### selfhost {kind}: {rv.fit.model.id} on {rv.offer.id if rv.offer else rv.fit.gpu.name}", ""]
    lines += ["| | |", "|---|---|"]
    for k, v in summary_rows(rv):
        v = f"`{v}`" if k == "vLLM" else v.replace("|", "\\|")
        lines.append(f"| **{k}** | {v} |")
    lines += ["", "| " + " | ".join(COST_HEADERS) + " |", "|" + "---|" * len(COST_HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in cost_rows(rv)]
    lines += ["", f"**{_breakeven_title(rv)}**"] if rv.no_workload else []
    lines += ["", "| " + " | ".join(BREAKEVEN_HEADERS) + " |", "|" + "---|" * len(BREAKEVEN_HEADERS)]
    for row in breakeven_rows(rv):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    three = _three_way_lines(rv)
    for line in three:  # headings flush left, items indented two spaces a level
        depth = (len(line) - len(line.lstrip())) // 2
        lines.append(f"{'  ' * (depth - 1)}- {line.strip()}" if depth else f"\n**{line.strip()}**\n")
    lines += [""] if three else []
    for note in rv.notes:
        lines.append(f"> note: {note}")
    from costing.money.price_age import warnings

    for line in warnings(rv):
        lines.append(f"> warning: {line}")
    lines += ["", "<details><summary>Prices: date and source</summary>", ""]
    lines += [f"- {line}" for line in price_rows(rv)]
    lines += ["", "</details>", ""]
    lines.append(
        f"<sub>Prices and hardware figures carry their sources in `selfhost plan --format json`. "
        f"Calibration: {rv.calibration}.</sub>"
    )
    return "\n".join(lines) + "\n"


def render(rv: CostReview, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(review_dict(rv), indent=2, allow_nan=False) + "\n"
    if fmt == "markdown":
        return render_markdown(rv)
    return render_table(rv)
