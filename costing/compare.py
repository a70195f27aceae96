"""`selfhost compare`: every catalog offer that fits the model, ranked by monthly cost at the workload."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from costing.catalog import catalog, get_gpu, get_model
from costing.errors import UserError
from costing.review import CostReview, cost_review, require_workload
from costing.spec import DeploymentSpec


@dataclass(frozen=True)
class Skipped:
    offer_id: str
    reason: str
    p90_s: float | None = None  # set when the offer fits but misses the latency SLO


def compare_offers(spec: DeploymentSpec) -> tuple[list[CostReview], list[Skipped]]:
    """Cost reviews of every offer (on spec.target.cloud when given) that fits; the rest with the reason."""
    get_model(spec.model)  # errors common to every offer are raised once, here;
    require_workload(spec)  # any UserError below is about that offer alone
    reviews: list[CostReview] = []
    skipped: list[Skipped] = []
    for offer in catalog().offers.values():
        if spec.target.cloud and offer.cloud != spec.target.cloud:
            continue
        candidate = spec.model_copy(
            update={
                "target": spec.target.model_copy(
                    update={"offer": offer.id, "gpu": None, "gpus": None, "cloud": None, "replicas": None}
                )
            }
        )
        try:
            reviews.append(cost_review(candidate, suggest=False))
        except UserError as err:
            skipped.append(Skipped(offer.id, err.problem, getattr(err, "p90_s", None)))
    reviews.sort(key=lambda r: (r.slo_met is False, r.monthly_usd))
    if not reviews:
        raise UserError(
            f"no offer{' on ' + spec.target.cloud if spec.target.cloud else ''} fits {spec.model} "
            f"{spec.precision}{' within the SLO' if spec.slo.p90_latency_s else ''} at this workload; closest misses: "
            + "; ".join(f"{s.offer_id} ({s.reason})" for s in closest_misses(skipped)),
            "relax --p90-latency-s, shorten the requests, pick another --precision or drop --cloud",
        )
    return reviews, skipped


def closest_misses(skipped: list[Skipped], limit: int = 3) -> list[Skipped]:
    """SLO misses first (they fit; nearest p90 first), then the offers with the most GPU memory."""

    def key(s: Skipped) -> tuple[int, float]:
        if s.p90_s is not None:
            return (0, s.p90_s)
        offer = catalog().offers.get(s.offer_id)
        memory = offer.gpus * get_gpu(offer.gpu).usable_gib if offer else 0.0
        return (1, -memory)

    return sorted(skipped, key=key)[:limit]


def compare_rows(reviews: list[CostReview]) -> list[dict]:
    from costing.report import bands_dict

    return [
        {
            "rank": i,
            "offer": r.offer.id,
            "cloud": r.offer.cloud,
            "instance_type": r.offer.instance_type,
            "gpus": f"{r.fit.total_gpus}x {r.fit.gpu.name}",
            "pricing": r.spec.target.pricing,
            "hourly_usd": round(r.hourly_usd, 4),
            "replicas": r.replicas,
            "monthly_usd": round(r.monthly_usd, 2),
            "usd_per_million_output_tokens": round(r.usd_per_million_output_tokens, 4),
            "usd_per_million_output_tokens_full_load": round(r.usd_per_million_output_tokens_full_load, 4),
            "output_tokens_per_s": round(r.projection.output_tokens_per_s, 1),
            "p90_e2e_latency_s": round(r.projection.p90_e2e_latency_s, 3),
            "meets_slo": r.slo_met,
            "max_model_len": r.fit.max_model_len,
            "bands": bands_dict(r.projection.bands),
        }
        for i, r in enumerate(reviews, 1)
    ]


HEADERS = ("#", "offer", "GPUs", "$/h", "replicas", "$/month", "$/1M out", "tok/s/replica", "p90 s", "SLO")


def _cells(row: dict) -> tuple[str, ...]:
    slo = {True: "meets", False: "MISSES", None: "-"}[row["meets_slo"]]
    return (
        str(row["rank"]),
        row["offer"],
        row["gpus"],
        f"{row['hourly_usd']:.3f}",
        str(row["replicas"]),
        f"{row['monthly_usd']:,.2f}",
        f"{row['usd_per_million_output_tokens']:.3f}",
        f"{row['output_tokens_per_s']:,.0f}",
        f"{row['p90_e2e_latency_s']:.2f}",
        slo,
    )


def render_compare(result: tuple[list[CostReview], list[Skipped]], fmt: str) -> str:
    reviews, skipped = result
    rows = compare_rows(reviews)
    if fmt == "json":
        return (
            json.dumps(
                {
                    "schema": "selfhost.compare/v1",
                    "offers": rows,
                    "skipped": [{"offer": s.offer_id, "reason": s.reason} for s in skipped],
                },
                indent=2,
            )
            + "\n"
        )
    if fmt == "markdown":
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
        lines += (
            [f"\n{len(skipped)} offer(s) skipped (do not fit, or no price): " + ", ".join(s.offer_id for s in skipped)]
            if skipped
            else []
        )
        return "\n".join(lines) + "\n"
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, file=io.StringIO(), width=140, force_terminal=False, color_system=None)
    table = Table(title="Offers that fit, cheapest first at this workload", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("offer", "GPUs", "SLO") else "right")
    for r in rows:
        table.add_row(*_cells(r))
    console.print(table)
    if skipped:
        console.print(
            f"{len(skipped)} offer(s) skipped (do not fit, or no price; reasons in --format json): "
            + ", ".join(s.offer_id for s in skipped),
            soft_wrap=True,
        )
    return console.export_text()
