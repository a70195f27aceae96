"""The three-way review: the self-hosted VM fleet, managed endpoints and pay-per-token APIs for one workload,
with the traffic at which each pair's cheaper option changes (the break-even).

Each option's monthly bill is a function of requests/day at the workload's shape: the VM fleet and the
instance-billed endpoints step with the replicas the peak needs, Bedrock follows its billed windows, an API
is a line through zero. A break-even is where two of those functions cross, found on a log grid of traffic
(1 to 10^8 requests/day) and refined by bisection."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from costing.money.managed import ManagedReview, managed_reviews, monthly_at
from costing.money.review import HIGH_AVAILABILITY_REPLICAS, CostReview
from costing.money.spend import MILLION, Traffic, operating_days_per_month, replicas_needed

LOW_RPD, HIGH_RPD, GRID = 1.0, 1e8, 240  # requests/day searched for crossings


@dataclass(frozen=True)
class Option:
    kind: str  # "self-hosted" | "managed" | "api"
    label: str
    monthly_usd: float
    cost_at: Callable[[float], float]  # monthly USD at a requests/day of the same shape
    max_rpd: float = HIGH_RPD  # the traffic up to which cost_at is known (Bedrock: until every window is billed)


@dataclass(frozen=True)
class PairBreakEven:
    a: str
    b: str
    cheaper_now: str  # label of the cheaper option at the workload
    requests_per_day: float | None  # the first crossing; None: one is cheaper at every traffic searched
    cheaper_above: str | None  # which one is cheaper just above the crossing
    searched_to: float = HIGH_RPD  # requests/day


@dataclass
class ThreeWay:
    selfhost: Option
    managed: list[ManagedReview]
    options: list[Option]  # the cheapest of each kind at the workload
    pairs: list[PairBreakEven]
    managed_vs: dict[str, list[PairBreakEven]]  # each managed option against the VM fleet and the cheapest API


def crossing(f: Callable[[float], float], g: Callable[[float], float], high: float = HIGH_RPD) -> float | None:
    """The lowest requests/day in [LOW_RPD, high] where f - g changes sign (None: it never does)."""
    xs = [LOW_RPD * (high / LOW_RPD) ** (i / GRID) for i in range(GRID + 1)]
    prev_x, prev = xs[0], f(xs[0]) - g(xs[0])
    for x in xs[1:]:
        d = f(x) - g(x)
        if (prev < 0) != (d < 0):
            lo, hi = prev_x, x
            for _ in range(50):
                mid = math.sqrt(lo * hi)
                if (f(mid) - g(mid) < 0) == (prev < 0):
                    lo = mid
                else:
                    hi = mid
            return hi
        prev_x, prev = x, d
    return None


def pair(a: Option, b: Option) -> PairBreakEven:
    cheaper = a if a.monthly_usd <= b.monthly_usd else b
    high = min(a.max_rpd, b.max_rpd)
    at = crossing(a.cost_at, b.cost_at, high)
    above = None
    if at is not None:
        x = at * 1.0001
        above = a.label if a.cost_at(x) < b.cost_at(x) else b.label
    return PairBreakEven(a.label, b.label, cheaper.label, at, above, high)


def _selfhost_option(review: CostReview) -> Option:
    """The reviewed fleet: each replica's monthly cost times the replicas the peak needs at that traffic."""
    per_replica = review.monthly_usd / max(1, review.replicas)
    capacity = review.fleet.requests_per_s_per_replica if review.fleet else 0.0
    floor = HIGH_AVAILABILITY_REPLICAS if review.spec.effective_availability == "high" else 1
    schedule, workload = review.spec.schedule, review.workload

    def cost_at(rpd: float) -> float:
        peak = Traffic.of(workload.model_copy(update={"requests_per_day": rpd}), schedule).peak_requests_per_s
        return max(floor, replicas_needed(peak, capacity)) * per_replica

    where = review.offer.id if review.offer else f"{review.fit.total_gpus}x {review.fit.gpu.name}"
    return Option("self-hosted", f"self-hosted {where} ({review.spec.target.pricing})", review.monthly_usd, cost_at)


def _saturation_rpd(cost_at: Callable[[float], float]) -> float:
    """The traffic from which a window-billed option's bill stops growing (every window billed): past it the
    copies Bedrock adds, unpublished, decide the bill, so no break-even is claimed there."""
    top = cost_at(HIGH_RPD)
    lo, hi = LOW_RPD, HIGH_RPD
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if cost_at(mid) >= 0.99 * top:
            hi = mid
        else:
            lo = mid
    return hi


def _api_options(review: CostReview) -> list[Option]:
    workload, days = review.workload, operating_days_per_month(review.spec.schedule)
    options = []
    for b in review.breakeven:
        if b.api.closed:  # a different model: no like-for-like break-even
            continue
        per_request = (workload.input_tokens * b.api.input + workload.output_tokens * b.api.output) / MILLION
        options.append(Option("api", f"API {b.api.label}", b.api_monthly_usd, _linear(per_request * days)))
    return options


def _linear(usd_per_request_day: float) -> Callable[[float], float]:
    return lambda rpd: rpd * usd_per_request_day


def _managed_cost(m: ManagedReview, spec) -> Callable[[float], float]:
    return lambda rpd: monthly_at(m, spec, rpd)


def three_way(review: CostReview, memo: dict | None = None) -> ThreeWay:
    """The VM fleet of `review`, every managed option for its workload, and the open-model APIs: the
    cheapest of each kind paired, and each managed option against the fleet and the cheapest API."""
    spec = review.spec
    managed, _ = managed_reviews(spec, memo=memo)
    managed = [m for m in managed if m.slo_met is not False]
    vm = _selfhost_option(review)
    apis = sorted(_api_options(review), key=lambda o: o.monthly_usd)
    managed_opts = []
    for m in managed:
        cost_at = _managed_cost(m, spec)
        limit = _saturation_rpd(cost_at) if m.service == "bedrock-cmi" else HIGH_RPD
        managed_opts.append(Option("managed", f"managed {m.label} ({m.region})", m.monthly_usd, cost_at, limit))
    cheapest = [vm, *([managed_opts[0]] if managed_opts else []), *([apis[0]] if apis else [])]
    pairs = [pair(a, b) for i, a in enumerate(cheapest) for b in cheapest[i + 1 :]]
    managed_vs = {
        f"{m.label} ({m.region})": [pair(o, vm), *([pair(o, apis[0])] if apis else [])]
        for m, o in zip(managed, managed_opts, strict=True)
    }
    return ThreeWay(vm, managed, cheapest, pairs, managed_vs)


def pair_text(p: PairBreakEven) -> str:
    if p.requests_per_day is None:
        return f"{p.cheaper_now} is cheaper at every traffic from {LOW_RPD:g} to {p.searched_to:,.0f} requests/day"
    other = p.b if p.cheaper_above == p.a else p.a
    return f"{p.cheaper_above} is cheaper above {p.requests_per_day:,.0f} requests/day ({other} below)"


def three_way_dict(tw: ThreeWay) -> dict:
    def r(x: float | None, nd: int = 2) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x, nd)

    return {
        "options": [{"kind": o.kind, "label": o.label, "monthly_usd": r(o.monthly_usd)} for o in tw.options],
        "break_even": [
            {
                "a": p.a,
                "b": p.b,
                "cheaper_at_workload": p.cheaper_now,
                "requests_per_day": r(p.requests_per_day, 1),
                "cheaper_above": p.cheaper_above,
                "searched_to_requests_per_day": r(p.searched_to, 1),
            }
            for p in tw.pairs
        ],
        "managed": [
            {
                "service": m.service,
                "name": m.name,
                "cloud": m.cloud,
                "machine": m.machine,
                "region": m.region,
                "gpus": m.gpus,
                "units": m.units,
                "usd_per_hour": r(m.usd_per_hour, 4),
                "billed_hours_per_unit": r(m.billed_hours, 1),
                "monthly_usd": r(m.monthly_usd),
                "usd_per_million_output_tokens": r(m.usd_per_million_output_tokens, 4),
                "p90_e2e_latency_s": r(m.p90_s, 3),
                "meets_slo": m.slo_met,
                "billing": m.billing,
                "source": m.source,
                "as_of": m.as_of,
                "notes": list(m.notes),
                "break_even": [
                    {
                        "against": p.b,
                        "cheaper_at_workload": p.cheaper_now,
                        "requests_per_day": r(p.requests_per_day, 1),
                        "cheaper_above": p.cheaper_above,
                        "searched_to_requests_per_day": r(p.searched_to, 1),
                    }
                    for p in tw.managed_vs[f"{m.label} ({m.region})"]
                ],
            }
            for m in tw.managed
        ],
    }


def three_way_lines(tw: ThreeWay) -> list[str]:
    """Plain lines for the table and markdown renderings."""
    lines = ["Three-way: self-hosted VM, managed endpoint, pay-per-token API (cheapest of each, this workload)"]
    lines += [f"  {o.label}: ${o.monthly_usd:,.2f}/month" for o in tw.options]
    lines += [f"  break-even: {pair_text(p)}" for p in tw.pairs]
    lines.append("Managed endpoints (dated prices; break-even against the self-hosted fleet and the cheapest API):")
    for m in tw.managed:
        slo = {True: "meets SLO", False: "MISSES SLO", None: "latency not projected"}[m.slo_met]
        what = " ".join(x for x in (m.name, m.machine, m.region) if x)
        lines.append(
            f"  {what}: {m.units} x {m.gpus}, ${m.usd_per_hour:,.4f}/h, "
            f"${m.monthly_usd:,.2f}/month, {slo}; price as of {m.as_of}"
        )
        lines += [f"    {pair_text(p)}" for p in tw.managed_vs[f"{m.label} ({m.region})"]]
    return lines
