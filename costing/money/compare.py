"""`selfhost compare`: every catalog offer that fits the model, ranked by monthly cost at the workload."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from costing.data.catalog import PRICINGS, Offer, catalog, get_gpu, get_model
from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from costing.money.managed import PRICING as MANAGED_PRICING
from costing.money.managed import ManagedReview, managed_reviews
from costing.money.review import CostReview, cost_review, priced_region, require_workload


@dataclass(frozen=True)
class Skipped:
    offer_id: str
    reason: str
    p90_s: float | None = None  # set when the offer fits but misses the latency SLO
    region: str | None = None
    pricing: str | None = None


@dataclass(frozen=True)
class Space:
    """The filters of `selfhost compare` (None: every cloud, region, pricing)."""

    cloud: str | None = None
    region: str | None = None
    pricing: str | None = None


def _candidates(offer: Offer, space: Space) -> list[tuple[str | None, str]]:
    """(region, pricing) pairs the snapshot prices for this offer within the filters (a pricing the cloud
    derives from its discount rule counts: `plan` prices it so, labelled). An offer with no price at all
    yields a pair per region of its cloud so each refusal is reported."""
    regions = offer.regions
    if not regions:  # unpriced everywhere (RunPod Community): each of the cloud's regions, refused with the fix
        wanted: list[str | None] = [r for r in cloud_regions(offer.cloud) if not space.region or r == space.region]
        return [(r, space.pricing or "on-demand") for r in wanted or [space.region]]
    if space.region:
        regions = [r for r in regions if r == space.region] or [space.region]  # unpriced: refused, with the reason
    pricings = [space.pricing] if space.pricing else list(PRICINGS)
    return [(r, p) for r in regions for p in pricings if r not in offer.regions or offer.price(p, r) is not None]


Candidate = CostReview | ManagedReview


def cloud_regions(cloud: str) -> tuple[str, ...]:
    """Regions where the snapshot prices some offer of `cloud` on demand."""
    return tuple(sorted({r for o in catalog().offers.values() if o.cloud == cloud for r in o.regions}))


def compare_offers(spec: DeploymentSpec, space: Space | None = None) -> tuple[list[Candidate], list[Skipped]]:
    """Cost reviews of every offer x region x pricing and every managed endpoint x region (within `space`;
    the cloud defaults to spec.target.cloud) that fits; the rest with the reason. The projections are
    shared across one machine's regions and pricings, and with the managed machines of the same GPUs."""
    get_model(spec.model)  # errors common to every offer are raised once, here;
    require_workload(spec)  # any UserError below is about that offer alone
    space = space or Space(cloud=spec.target.cloud)
    reviews: list[Candidate] = []
    skipped: list[Skipped] = []
    memo: dict = {}
    for offer in catalog().offers.values():
        if space.cloud and offer.cloud != space.cloud:
            continue
        for region, pricing in _candidates(offer, space):
            target = {"offer": offer.id, "gpu": None, "gpus": None, "cloud": None, "replicas": None}
            candidate = spec.model_copy(
                update={"target": spec.target.model_copy(update={**target, "region": region, "pricing": pricing})}
            )
            try:
                reviews.append(cost_review(candidate, suggest=False, projections=memo, breakevens=False))
            except UserError as err:
                skipped.append(Skipped(offer.id, err.problem, getattr(err, "p90_s", None), region, pricing))
    if space.pricing in (None, MANAGED_PRICING):
        managed, missed = managed_reviews(spec, cloud=space.cloud, region=space.region, memo=memo)
        reviews += managed
        skipped += [Skipped(m.label, m.reason, m.p90_s, m.region, MANAGED_PRICING) for m in missed]
    reviews.sort(key=_rank)
    if not reviews and space.region and all(s.region == space.region and "price" in s.reason for s in skipped):
        priced = sorted({r for o in catalog().offers.values() for r in o.regions})
        raise UserError(
            f"nothing{' on ' + space.cloud if space.cloud else ''} has a price for region {space.region}",
            f"use --region with one of: {', '.join(priced)} "
            f"(or `selfhost prices refresh --cloud CLOUD --region {space.region}`)",
        )
    if not reviews:
        where = " on " + space.cloud if space.cloud else ""
        raise UserError(
            f"no offer{where} fits {spec.model} "
            f"{spec.precision}{' within the SLO' if spec.slo.p90_latency_s else ''} at this workload; closest misses: "
            + "; ".join(f"{s.offer_id} ({s.reason})" for s in closest_misses(skipped)),
            "relax --p90-latency-s, shorten the requests, pick another --precision or drop --cloud/--region/--pricing",
        )
    return reviews, skipped


def _rank(r: Candidate) -> tuple:
    if isinstance(r, ManagedReview):
        return (r.slo_met is False, round(r.monthly_usd, 6), r.label, r.region, MANAGED_PRICING)
    return (r.slo_met is False, round(r.monthly_usd, 6), r.offer.id, priced_region(r.resolved), r.spec.target.pricing)


def closest_misses(skipped: list[Skipped], limit: int = 3) -> list[Skipped]:
    """SLO misses first (they fit; nearest p90 first), then the offers with the most GPU memory."""

    def key(s: Skipped) -> tuple[int, float]:
        if s.p90_s is not None:
            return (0, s.p90_s)
        offer = catalog().offers.get(s.offer_id)
        memory = offer.gpus * get_gpu(offer.gpu).usable_gib if offer else 0.0
        return (1, -memory)

    first = {s.offer_id: s for s in sorted(skipped, key=key, reverse=True)}  # each offer once, its nearest miss
    return sorted(first.values(), key=key)[:limit]


def _row(r: Candidate) -> dict:
    from costing.money.report import bands_dict

    if isinstance(r, ManagedReview):
        return {
            "kind": "managed",
            "offer": r.label,
            "cloud": r.cloud,
            "instance_type": r.machine,
            "gpus": r.gpus,
            "region": r.region,
            "pricing": MANAGED_PRICING,
            "hourly_usd": round(r.usd_per_hour, 4),
            "price_derived": False,
            "price_as_of": r.as_of,
            "replicas": r.units,
            "monthly_usd": round(r.monthly_usd, 2),
            "usd_per_million_output_tokens": round(r.usd_per_million_output_tokens, 4),
            "usd_per_million_output_tokens_full_load": None,
            "output_tokens_per_s": None if r.output_tokens_per_s is None else round(r.output_tokens_per_s, 1),
            "p90_e2e_latency_s": None if r.p90_s is None else round(r.p90_s, 3),
            "meets_slo": r.slo_met,
            "max_model_len": r.fit.max_model_len if r.fit else None,
            "billing": r.billing,
            "not_priced": [],
            "bands": None,
        }
    return {
        "kind": "self-hosted",
        "offer": r.offer.id,
        "cloud": r.offer.cloud,
        "instance_type": r.offer.instance_type,
        "gpus": f"{r.fit.total_gpus}x {r.fit.gpu.name}",
        "region": priced_region(r.resolved),
        "pricing": r.spec.target.pricing,
        "hourly_usd": round(r.hourly_usd, 4),
        "price_derived": bool(r.resolved.price and r.resolved.price.derived),
        "price_as_of": r.resolved.price.as_of if r.resolved.price else None,
        "replicas": r.replicas,
        "monthly_usd": round(r.monthly_usd, 2),
        "usd_per_million_output_tokens": round(r.usd_per_million_output_tokens, 4),
        "usd_per_million_output_tokens_full_load": round(r.usd_per_million_output_tokens_full_load, 4),
        "output_tokens_per_s": round(r.projection.output_tokens_per_s, 1),
        "p90_e2e_latency_s": round(r.projection.p90_e2e_latency_s, 3),
        "meets_slo": r.slo_met,
        "max_model_len": r.fit.max_model_len,
        "bands": bands_dict(r.projection.bands),
        "not_priced": not_priced(r),
    }


NOT_PRICED = ": not priced: "


def not_priced(r: CostReview) -> list[str]:
    """The parts of a candidate that run but have no dated price (a disk in a region without a disk rate): left
    out of its monthly_usd, which is then a lower bound; the table marks such a $/month with "+"."""
    return [line.item for line in r.cost_lines if NOT_PRICED in line.item]


def compare_rows(reviews: list[Candidate]) -> list[dict]:
    return [{"rank": i, **_row(r)} for i, r in enumerate(reviews, 1)]


HEADERS = (
    "#", "offer", "region", "pricing", "GPUs", "$/h", "replicas", "$/month", "$/1M out", "tok/s/replica",
    "p90 s", "SLO",
)  # fmt: skip


def _cells(row: dict) -> tuple[str, ...]:
    slo = {True: "meets", False: "MISSES", None: "-"}[row["meets_slo"]]
    return (
        str(row["rank"]),
        row["offer"],
        row["region"],
        row["pricing"] + (" (derived)" if row["price_derived"] else ""),
        row["gpus"],
        f"{row['hourly_usd']:.3f}",
        str(row["replicas"]),
        f"{row['monthly_usd']:,.2f}" + ("+" if row["not_priced"] else ""),
        f"{row['usd_per_million_output_tokens']:.3f}",
        "-" if row["output_tokens_per_s"] is None else f"{row['output_tokens_per_s']:,.0f}",
        "-" if row["p90_e2e_latency_s"] is None else f"{row['p90_e2e_latency_s']:.2f}",
        slo,
    )


def _summary(rows: list[dict], skipped: list[Skipped]) -> str:
    managed = sum(1 for r in rows if r["kind"] == "managed")
    return (
        f"{len(rows) + len(skipped)} candidates (offer x region x pricing, managed endpoints x region): "
        f"{len(rows)} fit and are priced ({managed} managed)"
    )


def _lower_bound_line(rows: list[dict]) -> str:
    """What a "+" after $/month means, when a shown row has one ("" otherwise)."""
    marked = [r for r in rows if r["not_priced"]]
    if not marked:
        return ""
    example = marked[0]["not_priced"][0].split(NOT_PRICED)[-1]
    return (
        f'"+" after $/month: {len(marked)} row(s) leave out a part with no dated price ({example}), a lower bound '
        "(--format json: not_priced)"
    )


def _skipped_line(skipped: list[Skipped]) -> str:
    offers = list(dict.fromkeys(s.offer_id for s in skipped))
    return f"{len(skipped)} skipped (do not fit, miss the SLO, or no price) on {len(offers)} offer(s): " + ", ".join(
        offers
    )


TOP = 20  # rows the table and markdown show by default (JSON has them all)


def render_compare(result: tuple[list[Candidate], list[Skipped]], fmt: str, top: int = TOP) -> str:
    """The ranking as text (`top` rows; 0: all) or JSON (every row)."""
    reviews, skipped = result
    rows = compare_rows(reviews)
    shown = rows if fmt == "json" or top <= 0 else rows[:top]
    more = ""
    if len(shown) < len(rows):
        more = f"the {len(shown)} cheapest of {len(rows)} shown (--top N, or --format json for all)"
    if fmt == "json":
        return (
            json.dumps(
                {
                    "schema": "selfhost.compare/v2",
                    "candidates": len(rows) + len(skipped),
                    "offers": rows,
                    "skipped": [
                        {"offer": s.offer_id, "region": s.region, "pricing": s.pricing, "reason": s.reason}
                        for s in skipped
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    if fmt == "markdown":
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in shown]
        lines += [f"\n{_summary(rows, skipped)}" + (f"; {more}" if more else "")]
        lines += [_lower_bound_line(shown)] if _lower_bound_line(shown) else []
        lines += [f"{_skipped_line(skipped)}"] if skipped else []
        return "\n".join(lines) + "\n"
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, file=io.StringIO(), width=150, force_terminal=False, color_system=None)
    table = Table(title="Offers that fit, cheapest first at this workload", title_justify="left")
    for h in HEADERS:
        left = h in ("offer", "region", "pricing", "GPUs", "SLO")
        table.add_column(h, justify="left" if left else "right", no_wrap=h in ("offer", "region", "pricing"))
    for r in shown:
        table.add_row(*_cells(r))
    console.print(table)
    console.print(_summary(rows, skipped) + (f"; {more}" if more else ""), soft_wrap=True)
    if _lower_bound_line(shown):
        console.print(_lower_bound_line(shown), soft_wrap=True)
    if skipped:
        console.print(_skipped_line(skipped) + " (reasons in --format json)", soft_wrap=True)
    return console.export_text()
