"""The bench result document (JSON, read by `selfhost plan --calibration`) and its table.

Schema "selfhost-bench/1" (times in ms unless the name says _s; token counts per request):

    {"schema": "selfhost-bench/1", "created_at": ISO-8601, "url": str, "model": str, "api": "completions"|"chat",
     "input_tokens": I, "output_tokens": O, "num_prompts": N, "mode": "concurrency"|"request-rate",
     "slo": {"ttft_ms", "tpot_ms", "e2el_ms"} (null = not checked),
     "timeouts": {"request_s", "read_s"},
     "target": {"model", "precision", "gpu", "gpus"} or null (what the projection was computed for),
     "failed_requests": total over points,
     "delivered_output_tokens", "requested_output_tokens": totals over points, every request (failed ones too),
     "points": [{"concurrency": C (or mean in flight for request-rate), "request_rate": R | null,
                 "num_requests", "completed", "failed", "errors": {cause: count}, "duration_s",
                 "requests_per_s", "output_tokens_per_s", "total_tokens_per_s", "goodput_rps" (null without SLO),
                 "total_input_tokens", "total_output_tokens" (completed requests), "mean_input_tokens",
                 "mean_output_tokens", "delivered_output_tokens", "requested_output_tokens" (every request),
                 "ttft_ms" | "tpot_ms" | "itl_ms" | "e2el_ms": {"mean", "median", "p50", "p90", "p99"},
                 "client": {"cpu_s", "cpu_percent", "cpu_us_per_output_token"},
                 "projection": {Projection.to_dict()} | null (the steady state, with its error bands),
                 "replay": {"output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_latency_s", "requests", "method"}
                     (a concurrency point's own closed loop replayed: its clients start together) | absent,
                 "error_pct": {"output_tokens_per_s", "ttft_ms", "tpot_ms", "e2el_ms"} | null}]}

error_pct = 100 * (measured - projected) / projected, with means for the latencies; projected is the replay where
there is one, else the steady state.
A request is completed only when it delivered every requested token, a normal finish reason and [DONE]
(selfhost.check.bench.delivery_problem); the causes of the others are the "errors" keys (e.g. "short: ...",
"cut: ...", "aborted: finish_reason abort").
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

SCHEMA = "selfhost-bench/1"


@dataclass(frozen=True)
class ProjectionTarget:
    model: str
    precision: str
    gpu: str
    gpus: int
    label: str | None = None  # what the projection stands for, when not the catalog model on the GPU
    calibration: str | None = None  # the efficiency parameters' file (None: the shipped published-data fit)


REPLAY = (
    "this point's closed loop replayed step by step (costing.performance.bench_refit.simulate_bench_point): "
    "its clients start together and send the next request as one ends, as the bench ran them"
)
REPLAYED = ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_latency_s")

# The local target's speed probe (`bench --local-profile`, on by default): a short closed loop before the sweep,
# at one client (each request's TTFT is its own prompt's, no other's) and a seed of its own (its prompts are not the
# sweep's, so they leave nothing in the prefix cache the sweep could hit), after one untimed request that takes the
# server's first-request costs off the probe.
PROBE_CONCURRENCY, PROBE_REQUESTS, PROBE_WARMUP = 1, 8, 1


def _fit_of(target: ProjectionTarget, input_tokens: int, output_tokens: int):
    from costing.performance.fit import FitRequest, fit_check

    return fit_check(
        FitRequest(
            model=target.model,
            precision=target.precision,
            gpu=target.gpu,
            gpus=target.gpus,
            seq_len=input_tokens + output_tokens,
        )
    )


def set_to_probe(probe_point: dict, target: ProjectionTarget, input_tokens: int, output_tokens: int, params):
    """The device profile at this machine's speed now, and the record of it (the bench JSON's "probe"): the
    probe's mean TPOT over its closed-loop replay is the factor every time takes, and its median TTFT beyond the
    replay's at that speed a wait each request adds (costing.performance.bench_refit.speed_factor). The profile
    was fitted on recorded runs of this target; the machine that runs it now may be busier or idler (a shared
    2-vCPU host ran the same bench ~30% apart, and its first tokens slowed more than its steps), so its shape (how
    the times grow with clients) is the profile's, its scale today's."""
    from dataclasses import replace

    from costing.performance.bench_refit import at_speed, bench_points, engine_latencies, probe_basis, speed_factor

    fit = _fit_of(target, input_tokens, output_tokens)
    doc = {"mode": "concurrency", "input_tokens": input_tokens, "output_tokens": output_tokens}
    points = bench_points({**doc, "points": [probe_point]})  # none when the probe completed nothing
    probe = points[0] if points else None
    ttft = engine_latencies(probe_point)[0]
    median = ttft.get("median") if isinstance(ttft, dict) else None
    if probe and isinstance(median, (int, float)) and median > 0:
        # the median: one of 8 requests slow to its first token (a stall of the shared CPU, a new connection)
        # would move the mean, and with it every projected TTFT, by an eighth of its delay
        probe = replace(probe, ttft_ms=float(median))
    k, wait = speed_factor(fit, params, probe)  # refuses a probe that completed nothing
    basis = probe_basis(probe) if probe else "e2e"
    record = {
        "concurrency": PROBE_CONCURRENCY,
        "requests": probe_point["completed"],
        "ttft_median_ms": probe.ttft_ms if probe else None,
        "tpot_ms": probe.tpot_ms if probe else None,
        "e2e_latency_s": probe.e2e_mean_s if probe else None,
        "speed_factor": round(k, 4),
        "request_latency_ms": round(wait, 3),
        "basis": basis,
        "method": (
            "every projected time x speed_factor = the probe's mean end-to-end latency over its closed-loop "
            "replay with the recorded profile (its streams did not time TTFT and TPOT apart: one factor)"
            if basis == "e2e"
            else "every projected time x speed_factor = the probe's mean TPOT over its closed-loop replay with the "
            "recorded profile; each request then waits request_latency_ms more, the probe's median TTFT "
            "(ttft_median_ms) beyond the replay's at that speed (none when below it), a wait that does not queue "
            "(costing.performance.bench_refit.speed_factor)"
        ),
    }
    return at_speed(params, k, wait), record


def attach_projections(
    points: list[dict], target: ProjectionTarget, input_tokens: int, output_tokens: int, params=None
) -> None:
    """Add the projection for each point's concurrency, and the error of the measurement against it.
    `params`: the efficiency parameters (default the shipped fit; a device profile for the local target).

    A concurrency point is also replayed as it ran ("replay"): the bench starts its clients together, so the
    first requests' prompts queue behind each other, which the steady state ("projection", with its error
    bands) leaves out; its mean TTFT can be several times the steady state's. The errors are against the
    replay where there is one: the same closed loop the refit (`make calibrate`) fits the device profile on."""
    from costing.performance.bench_refit import simulate_bench_point
    from costing.performance.calibration import load_params
    from costing.performance.projection import project

    fit = _fit_of(target, input_tokens, output_tokens)
    for pt in points:
        conc = max(1, round(pt["concurrency"] or 1))
        proj = project(fit, input_tokens, output_tokens, conc, params)
        pt["projection"] = proj.to_dict()
        if pt["request_rate"] is None and pt["num_requests"]:
            run = simulate_bench_point(
                fit, params or load_params(), input_tokens, output_tokens, conc, pt["num_requests"]
            )
            pt["replay"] = {**{k: getattr(run, k) for k in REPLAYED}, "requests": pt["num_requests"], "method": REPLAY}
        if not pt["completed"]:
            pt["error_pct"] = None
            continue
        ref = compared(pt)
        ttft, tpot = measured_latencies(pt)
        pairs = {
            "output_tokens_per_s": (pt["output_tokens_per_s"], ref["output_tokens_per_s"]),
            "ttft_ms": (ttft, ref["ttft_ms"]),
            "tpot_ms": (tpot, ref["tpot_ms"]),
            "e2el_ms": (pt["e2el_ms"]["mean"], ref["e2e_latency_s"] * 1000),
        }
        pt["error_pct"] = {k: (100 * (m - p) / p if p and m is not None else None) for k, (m, p) in pairs.items()}


def measured_latencies(pt: dict) -> tuple[float | None, float | None]:
    """The mean TTFT and TPOT set beside the projection: over the requests streamed as generated when some
    arrived merged (their figures time the delivery), none when all did (bench_refit.engine_latencies, which
    the refit reads too); tok/s and e2e keep every request."""
    from costing.performance.bench_refit import engine_latencies

    ttft, tpot = engine_latencies(pt)
    return (ttft["mean"] if ttft else None), (tpot["mean"] if tpot else None)


def compared(pt: dict) -> dict:
    """The projected figures a point's measurement is set beside: its closed-loop replay, else the steady state."""
    return pt.get("replay") or pt["projection"]


def document(
    cfg, points: list[dict], mode: str, target: ProjectionTarget | None, probe: dict | None = None
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "url": cfg.url,
        "model": cfg.model,
        "api": cfg.api,
        "input_tokens": cfg.input_tokens,
        "output_tokens": cfg.output_tokens,
        "num_prompts": cfg.num_prompts,
        "mode": mode,
        "slo": asdict(cfg.slo),
        "timeouts": {"request_s": cfg.timeout_s, "read_s": cfg.read_timeout_s},
        "target": asdict(target) if target else None,
        "probe": probe,
        "failed_requests": sum(p["failed"] for p in points),
        "delivered_output_tokens": sum(p["delivered_output_tokens"] for p in points),
        "requested_output_tokens": sum(p["requested_output_tokens"] for p in points),
        "points": points,
    }


def _f(x: float | None, nd: int = 0) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}%"


def render_table(doc: dict) -> str:
    """Plain-text table: one row per point, the projection and error beside it when there is one."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"{doc['model']} at {doc['url']}: {doc['input_tokens']} in / {doc['output_tokens']} out tokens",
        box=box.SIMPLE,
    )
    has_proj = any(p.get("projection") for p in doc["points"])
    has_goodput = any(p.get("goodput_rps") is not None for p in doc["points"])
    for col in (
        "conc",
        "ok/fail",
        "req/s",
        "out tok/s",
        "TTFT p50/p90/p99 ms",
        "TPOT p50/p90/p99 ms",
        "ITL p50/p99 ms",
        "E2E p50/p90/p99 s",
        "client CPU",
    ):
        t.add_column(col, justify="right")
    if has_goodput:
        t.add_column("goodput req/s", justify="right")
    if has_proj:
        t.add_column("projected tok/s | TTFT | TPOT ms", justify="right")
        t.add_column("error tok/s | TTFT | TPOT | e2e", justify="right")
    for p in doc["points"]:
        ttft, tpot, itl, e2e = p["ttft_ms"], p["tpot_ms"], p["itl_ms"], p["e2el_ms"]
        row = [
            _f(p["concurrency"], 0 if p["request_rate"] is None else 1),
            f"{p['completed']}/{p['failed']}",
            _f(p["requests_per_s"], 2),
            _f(p["output_tokens_per_s"]),
            f"{_f(ttft['p50'], 1)}/{_f(ttft['p90'], 1)}/{_f(ttft['p99'], 1)}",
            f"{_f(tpot['p50'], 2)}/{_f(tpot['p90'], 2)}/{_f(tpot['p99'], 2)}",
            f"{_f(itl['p50'], 2)}/{_f(itl['p99'], 2)}",
            f"{_f(e2e['p50'] / 1000, 2)}/{_f(e2e['p90'] / 1000, 2)}/{_f(e2e['p99'] / 1000, 2)}",
            f"{p['client']['cpu_percent']:.0f}%",
        ]
        if not p["completed"]:  # no latency samples: show none rather than zeros
            row[4:8] = ["-"] * 4
        if has_goodput:
            row.append(_f(p.get("goodput_rps"), 2))
        if has_proj:
            pr, err = (compared(p) if p.get("projection") else None), p.get("error_pct")
            row.append(
                f"{_f(pr['output_tokens_per_s'])} | {_f(pr['ttft_ms'], 1)} | {_f(pr['tpot_ms'], 2)}" if pr else "-"
            )
            row.append(
                " | ".join(_pct(err.get(k)) for k in ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2el_ms"))
                if err
                else "-"
            )
        t.add_row(*row)
    with open(os.devnull, "w") as sink:
        console = Console(width=220, record=True, file=sink)
        console.print(t)
    lines = [ln.rstrip() for ln in console.export_text().strip("\n").splitlines()]
    for p in doc["points"]:
        for msg, n in p["errors"].items():
            lines.append(f"  concurrency {_f(p['concurrency'])}: {n} failed: {msg}")
        if p["failed"]:
            lines.append(
                f"  concurrency {_f(p['concurrency'])}: {p['delivered_output_tokens']:,} of "
                f"{p['requested_output_tokens']:,} requested output tokens delivered"
            )
    if doc.get("target"):
        lines.append(f"projection: {projection_label(doc['target'])}; error = (measured - projected) / projected")
        merged = [p for p in doc["points"] if p.get("merged_requests") and p.get("error_pct")]
        if merged:
            lines.append(
                "TTFT and TPOT errors over the requests streamed as generated; arrived merged (the server's API "
                "process behind its engine, timing the delivery): "
                + ", ".join(f"{p['merged_requests']} of {p['completed']} at {_f(p['concurrency'])}" for p in merged)
            )
        if pr := doc.get("probe"):
            k, wait = pr["speed_factor"], pr.get("request_latency_ms", 0.0)
            lines.append(
                f"projected at this machine's speed now, from a probe ({pr['requests']} requests at "
                f"{pr['concurrency']} client{'s' if pr['concurrency'] != 1 else ''}, before the sweep) over its "
                "replay with the recorded profile: "
                + (
                    f"every time x {k:.2f} (its mean TPOT), and each request waits {wait:.1f} ms more (its median "
                    "TTFT beyond that: a wait of its own, which does not queue)"
                    if pr.get("basis") == "tpot+ttft"
                    else f"every time x {k:.2f} (its mean end-to-end latency"
                    + ("; its streams did not time TTFT and TPOT apart)" if pr.get("basis") == "e2e" else ")")
                )
            )
        if any(p.get("replay") for p in doc["points"]):
            lines.append(
                "projected = each point's closed loop replayed as the bench ran it (clients start together: the "
                "first prompts queue), the means the errors compare; the JSON's projection is the steady state"
            )
    lines.append(
        "client CPU = the bench client's own CPU time over the wall time (near 100% = the client is the bottleneck)"
    )
    return "\n".join(lines)


def projection_label(tg: dict) -> str:
    """What the projection beside the points is of: the target's own label, or the catalog model on the GPU."""
    physics = f"{tg['model']} {tg['precision']} on {tg['gpus']}x {tg['gpu']}"
    if tg.get("label"):
        return f"{tg['label']} ({tg.get('calibration') or 'shipped calibration'}; physics of {physics})"
    return f"{physics} (costing/performance/projection.py)"


def render(doc: dict, fmt: str) -> str:
    return json.dumps(doc, indent=2) if fmt == "json" else render_table(doc)
