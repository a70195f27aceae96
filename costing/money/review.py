"""The cost review: fit, vLLM settings, projection, spend and break-even for one deployment spec."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from costing.data.catalog import apis_for, offers_for, rate_regions, regional_rate, stack_rate
from costing.data.cluster_offer import KUBERNETES
from costing.data.resolve import Resolved, across_zones, resolve
from costing.data.spec import DeploymentSpec, WorkloadSpec
from costing.errors import OverBudget, UserError
from costing.money.spend import (
    COMMITTED_PRICING,
    HOURS_PER_MONTH,
    BreakEven,
    Traffic,
    billed_hours_per_month,
    break_even,
    hours_per_month,
    monthly_usd,
    replicas_needed,
    usd_per_million,
)
from costing.money.spot_risk import SpotRisk, spot_risk
from costing.performance import projection as proj
from costing.performance import scaling
from costing.performance.drain import drain_timeout_s
from costing.performance.scaling import inflight_target, reclaim_note
from costing.performance.vllm_args import VLLM_VERSION

WEIGHT_DISK_HEADROOM = 1.3  # weights + safetensors index/tokenizer + HF cache slack
# A SkyPilot replica's disk (the task's `disk_size`, selfhost.skypilot.render): the weights' part plus this
# system part (OS image, CUDA, torch and vLLM), rounded up to SKY_DISK_STEP_GB. The review costs all of it.
SKY_SYSTEM_DISK_GB = 60
SKY_DISK_STEP_GB = 10


# The peak profile the expected replica-hours assume: the peak rate holds for this share of the
# operating hours and the rest runs at the off-peak rate that keeps the daily mean (an assumption,
# printed with the review; a measured traffic profile replaces it).
PEAK_HOURS_SHARE = 0.25
HIGH_AVAILABILITY_REPLICAS = 2  # one zone's outage or a spot preemption leaves one replica serving
BASE_ONDEMAND_REPLICAS = 1  # SkyServe spot services keep one on-demand replica once two or more run


class SloUnreachable(UserError):
    """No concurrency of this configuration meets the latency SLO (even one client alone misses it)."""

    def __init__(self, problem: str, fix: str | None, p90_s: float) -> None:
        super().__init__(problem, fix)
        self.p90_s = p90_s


@dataclass(frozen=True)
class Fleet:
    """What runs: replica counts, the autoscaler's target and the expected replica-hours a month."""

    min_replicas: int
    max_replicas: int
    base_ondemand_replicas: int  # of min_replicas, on-demand in a spot service
    autoscaled: bool  # SkyServe scales between min and max on QPS; otherwise max runs all the time
    requests_per_s_per_replica: float  # SLO-bound capacity x target utilization: the autoscaler's target
    off_peak_requests_per_s: float
    availability: str
    # requests in flight per replica the aws/gcp groups track (costing.performance.scaling):
    # SLO-bound concurrency x utilization
    inflight_per_replica: float = 0.0


@dataclass(frozen=True)
class CostLine:
    """One row of the monthly cost table: replicas x hours x $/h (or storage)."""

    item: str
    pricing: str
    replicas: float
    hours: float  # billed hours a month, each
    usd_per_hour: float
    usd: float


@dataclass
class CostReview:
    spec: DeploymentSpec
    resolved: Resolved
    workload: WorkloadSpec
    traffic: Traffic
    projection: proj.Projection  # at the SLO-bound (or maximal) concurrency: what one replica serves
    full_load: proj.Projection
    replicas: int  # the most replicas that run (at peak)
    hours_per_month: float  # hours the schedule runs
    storage_gb: float
    storage_usd_per_gb_month: float
    monthly_usd: float
    usd_per_million_output_tokens: float
    usd_per_million_output_tokens_full_load: float
    breakeven: list[BreakEven]
    slo_met: bool | None
    calibration: str
    notes: list[str] = field(default_factory=list)
    fleet: Fleet | None = None
    cost_lines: list[CostLine] = field(default_factory=list)
    billed_hours_per_month: float = HOURS_PER_MONTH
    no_workload: bool = False  # a price review: one replica at full load at DEFAULT_SHAPE (see full_load_review)
    confidence: str = "p50"  # sizing on the projection (p50) or on the conservative end of its band (p90)
    engine: str = "vllm"  # the engine projected (costing.performance.engines); the deployment runs the pinned vLLM V1
    spot_risk: SpotRisk | None = None  # spot pricing only: interruptions, cold start, fallback cost
    three_way: Any = (
        None  # costing.money.three_way.ThreeWay, set by `plan` (managed endpoints and APIs beside the fleet)
    )
    replica_monthly_usd: float = 0.0  # one replica a month as the table costs it (its disks too): the break-evens' base
    kubernetes: str | None = None  # eks | gke: the replicas are pods on the team's cluster (costing.money.kubernetes)

    @property
    def fit(self):
        return self.resolved.fit

    @property
    def offer(self):
        return self.resolved.offer

    @property
    def hourly_usd(self) -> float:
        return self.resolved.hourly_usd or 0.0

    @property
    def max_monthly_usd(self) -> float | None:
        return self.spec.budget.max_monthly_usd


def require_workload(spec: DeploymentSpec) -> WorkloadSpec:
    if spec.workload is None:
        raise UserError(
            "no workload given",
            "pass --requests-per-day, --input-tokens and --output-tokens (or a `workload:` section in the spec)",
        )
    return spec.workload


def with_drain(resolved: Resolved, point: proj.Projection) -> Resolved:
    """The resolution with vLLM's shutdown timeout sized from the projected point's p99 latency
    (costing.performance.drain)."""
    settings = replace(resolved.fit.settings, shutdown_timeout_s=drain_timeout_s(point.e2e_p99_s))
    return replace(resolved, fit=replace(resolved.fit, settings=settings))


def drained(spec: DeploymentSpec, resolved: Resolved, params: proj.Params | None = None) -> Resolved:
    """`resolved` with the shutdown timeout the review of `spec` sizes (its point: the SLO-bound concurrency,
    else full load; without a workload, full load at DEFAULT_SHAPE): for targets rendered from a resolution
    (SkyPilot) rather than from the review, so they run the same `vllm serve` line."""
    fit, w = resolved.fit, spec.workload
    if w is None:
        point = _projections(fit, *DEFAULT_SHAPE, None, params, None)[0]
    else:  # the review's own point (cost_review computes it with the same function)
        point = _projections(fit, w.input_tokens, w.output_tokens, spec.slo.p90_latency_s, params, None)[1]
    return with_drain(resolved, point)


def storage_gb_for(spec: DeploymentSpec, weight_gib: float) -> float:
    """Disk for the weights: the spec's storage_gb, else the weights plus headroom, rounded up to 10 GB."""
    if spec.storage_gb:
        return spec.storage_gb
    return float(math.ceil(weight_gib * 1.0737 * WEIGHT_DISK_HEADROOM / 10) * 10)


def sky_disk_size_gb(weights_gb: float) -> int:
    """The `disk_size` a SkyPilot task declares per node for `weights_gb` of weights (render and review share it)."""
    return int(math.ceil((weights_gb + SKY_SYSTEM_DISK_GB) / SKY_DISK_STEP_GB) * SKY_DISK_STEP_GB)


def refuse_unschedulable(spec: DeploymentSpec, resolved: Resolved) -> None:
    """A part-time schedule is billed only where something stops the machines: not RunPod pods."""
    offer = resolved.offer
    if spec.schedule.part_time and offer is not None and offer.cloud == "runpod":
        raise UserError(
            f"RunPod pods run until deleted: a schedule of {spec.schedule.hours_per_day:g} h/day, "
            f"{spec.schedule.days_per_week:g} days/week cannot be deployed there",
            "use the full schedule (--hours-per-day 24 --days-per-week 7) on RunPod, or an aws/gcp target, "
            "whose stacks deploy scheduled scaling",
        )


def _slo_reason(point: proj.Projection, workload: WorkloadSpec, slo: float) -> str:
    """Which term breaks the SLO at one client: the prefill (TTFT) or the decode (output x TPOT)."""
    ttft_s = point.ttft_ms / 1e3
    decode_s = (workload.output_tokens - 1) * point.tpot_ms / 1e3
    term = "decode" if decode_s >= ttft_s else "TTFT"
    return (
        f"at one client p90 is {point.p90_e2e_latency_s:,.2f} s (TTFT {ttft_s:,.2f} s for "
        f"{workload.input_tokens:,} input tokens + {workload.output_tokens - 1:,} x TPOT {point.tpot_ms:,.1f} ms "
        f"decode = {decode_s:,.2f} s): the {term} term alone "
        f"{'exceeds' if max(ttft_s, decode_s) > slo else 'takes most of'} the {slo:g} s SLO"
    )


def cheapest_meeting_slo(spec: DeploymentSpec, params: proj.Params | None = None) -> str | None:
    """The cheapest catalog offer and precision whose one-client p90 meets the SLO, as text (None: none does)."""
    from costing.data.catalog import catalog, get_model

    workload, slo = require_workload(spec), spec.slo.p90_latency_s
    if slo is None:
        return None
    model = get_model(spec.model)
    precisions = dict.fromkeys([spec.precision, "bf16", "fp8", "int8", "awq"])
    best: tuple[float, str] | None = None
    for offer in catalog().offers.values():
        price = offer.price(spec.target.pricing) or offer.price("on-demand")
        if price is None or (best and price.usd_per_hour > best[0]):
            continue
        for precision in precisions:
            if model.repo_for(precision) is None:
                continue
            cand = spec.model_copy(
                update={
                    "precision": precision,
                    "target": spec.target.model_copy(
                        update={"offer": offer.id, "gpu": None, "gpus": None, "cloud": None, "nodes": 1}
                    ),
                }
            )
            try:
                fit = resolve(cand).fit
                one = proj.project(fit, workload.input_tokens, workload.output_tokens, 1, params)
            except UserError:
                continue
            if one.p90_e2e_latency_s <= slo and (best is None or price.usd_per_hour < best[0]):
                best = (
                    price.usd_per_hour,
                    f"{offer.id} at {precision} (${price.usd_per_hour:.2f}/h {price.pricing}, "
                    f"p90 {one.p90_e2e_latency_s:.2f} s at one client)",
                )
    return best[1] if best else None


def _fleet(spec: DeploymentSpec, traffic: Traffic, capacity_rps: float, concurrency: int = 1) -> Fleet:
    """Replica counts from the peak (max) and the off-peak rate (min), each replica at the target utilization."""
    workload = require_workload(spec)
    peak = traffic.peak_requests_per_s
    mean = peak / workload.peak_to_mean
    share = PEAK_HOURS_SHARE if workload.peak_to_mean > 1 else 1.0
    off_peak = max(0.0, (mean - share * peak) / (1 - share)) if share < 1 else mean
    availability = spec.effective_availability
    floor = HIGH_AVAILABILITY_REPLICAS if availability == "high" else 1
    at_peak = replicas_needed(peak, capacity_rps)
    fixed = spec.target.replicas
    if fixed and fixed < floor:
        raise UserError(
            f"availability high needs at least {floor} replicas; {fixed} is fixed (a stack runs one machine)",
            "drop `availability: high`, or fix --replicas at 2 or more where the target runs several",
        )
    autoscaled = spec.sky.service and not fixed
    if autoscaled:
        low = max(floor, replicas_needed(off_peak, capacity_rps))
        high = max(low, at_peak)
    else:
        low = high = fixed or max(floor, at_peak)
    spot_service = spec.sky.service and spec.target.pricing == "spot"
    base = BASE_ONDEMAND_REPLICAS if spot_service and low > BASE_ONDEMAND_REPLICAS else 0
    inflight = inflight_target(concurrency, spec.target_utilization)
    return Fleet(low, high, base, autoscaled, capacity_rps, off_peak, availability, inflight)


GIB_IN_GB = 1024**3 / 1e9
SPOT_HEDGE_CLOUDS = ("aws", "gcp")


def spot_hedge(spec: DeploymentSpec, resolved: Resolved) -> bool:
    """Whether a SkyServe service runs its spot replicas with SpotHedge (`spot_placer: dynamic_fallback`).

    SkyPilot accepts it only when every placement asks for the same resources but the location, and it
    picks the instance itself (no pinned instance type): so the offer must be the cheapest one with its
    GPUs and at least its vCPUs and memory, the one SkyPilot picks from `accelerators` + `cpus` + `memory`."""
    offer = resolved.offer
    if not (spec.sky.service and spec.target.pricing == "spot" and not spec.sky.any_of and offer is not None):
        return False
    if offer.cloud not in SPOT_HEDGE_CLOUDS or resolved.price is None:
        return False
    region = resolved.price.region
    same_shape = [
        o
        for o in offers_for(gpu=offer.gpu, gpus=offer.gpus, cloud=offer.cloud)
        if o.vcpus >= offer.vcpus and o.ram_gb >= offer.ram_gb and o.price("spot", region) is not None
    ]
    cheapest = min(same_shape, key=lambda o: (o.price("spot", region).usd_per_hour, o.id))  # type: ignore[union-attr]
    return cheapest.id == offer.id


def spot_zone_hourly(resolved: Resolved, first: int, count: int) -> float:
    """Mean hourly price of spot replicas `first`..`first + count` under SpotHedge: it places each new
    replica in the cheapest zone not yet used (cycling when replicas outnumber zones), so replica i runs
    at the i-th cheapest zone price of the region."""
    offer, price = resolved.offer, resolved.price
    zones = sorted(r.usd_per_hour for r in offer.rows("spot", price.region)) if offer and price else []
    if not zones or count <= 0:
        return resolved.hourly_usd or 0.0
    return sum(zones[i % len(zones)] for i in range(first, first + count)) / count * resolved.fit.nodes


def _cost_lines(
    spec: DeploymentSpec,
    resolved: Resolved,
    fleet: Fleet,
    storage_gb: float,
    storage_price: float | None,
    cloud_group: bool = False,
    boot_disk_gb: float = 0.0,
    sky_disk: bool = False,
) -> list[CostLine]:
    """The monthly table: expected replica-hours over the schedule and the peak profile, plus disks."""
    pricing = spec.target.pricing
    hourly = resolved.hourly_usd or 0.0
    run_hours = hours_per_month(spec.schedule)
    billed = billed_hours_per_month(spec.schedule, pricing)
    committed = pricing in COMMITTED_PRICING
    lines: list[CostLine] = []

    def add(item: str, pricing_: str, replicas: float, hours: float, usd_per_hour: float) -> None:
        if replicas > 0:
            lines.append(CostLine(item, pricing_, replicas, hours, usd_per_hour, replicas * hours * usd_per_hour))

    always = fleet.min_replicas - fleet.base_ondemand_replicas
    hedge = spot_hedge(spec, resolved) and not cloud_group
    spread = " (SpotHedge: one zone each, cheapest first)" if hedge else ""
    if cloud_group and resolved.price and resolved.price.zone and "," in resolved.price.zone:
        spread = f" (balanced across zones {resolved.price.zone})"
    label = "replicas, always on" if fleet.autoscaled else "replicas"
    add(label + spread, pricing, always, billed, spot_zone_hourly(resolved, 0, always) if hedge else hourly)
    if fleet.base_ondemand_replicas:
        offer = resolved.offer
        od = offer.price("on-demand", priced_region(resolved)) if offer else None  # the region priced, not the default
        od_hourly = (od.usd_per_hour if od else hourly) * resolved.fit.nodes
        add("on-demand base replica (spot fallback)", "on-demand", fleet.base_ondemand_replicas, run_hours, od_hourly)
    extra = fleet.max_replicas - fleet.min_replicas
    if extra:
        share = 1.0 if committed else PEAK_HOURS_SHARE
        peak_hourly = spot_zone_hourly(resolved, always, extra) if hedge else hourly
        add(f"peak replicas (autoscaled, {share:.0%} of hours){spread}", pricing, extra, billed * share, peak_hourly)
    disks = (fleet.min_replicas + extra * (1.0 if committed else PEAK_HOURS_SHARE)) * resolved.fit.nodes
    if cloud_group:  # the group deletes a replica's disk with it: disks live the replicas' running hours
        disks = (fleet.min_replicas + extra * PEAK_HOURS_SHARE) * run_hours / HOURS_PER_MONTH
    if spec.sky.weights_store and resolved.offer is not None:  # one copy of the weights, shared by the replicas
        cloud, region = resolved.offer.cloud, priced_region(resolved)
        rate = regional_rate(cloud, "bucket", region)
        if rate is None and not rate_regions(cloud, "bucket"):
            raise UserError(
                f"a weights bucket on {cloud} is not offered here (no bucket price in the catalog)",
                "drop sky.weights_store, or deploy on aws (s3://) or gcp (gs://)",
            )
        if rate is None:
            raise UserError(
                f"no dated {cloud} bucket rate is shipped for region {region}: the weights bucket cannot be costed",
                f"drop sky.weights_store, or use --region with one of: {', '.join(rate_regions(cloud, 'bucket'))}",
            )
        bucket_gb = round(resolved.fit.weight_gib * GIB_IN_GB, 1)
        item = f"weights bucket {bucket_gb:,.0f} GB ({spec.sky.weights_store})"
        lines.append(_storage_line(item, 1, bucket_gb, float(rate["usd_per_gb_month"])))
    disk_gb = storage_gb + boot_disk_gb
    node = "node" if resolved.fit.nodes > 1 else "replica"
    item = f"disk {disk_gb:,.0f} GB per {node}"
    if sky_disk:
        item += f" (disk_size: {storage_gb:,.0f} GB weights + system)"
    elif boot_disk_gb:
        item += f" ({boot_disk_gb:,.0f} GB system + {storage_gb:,.0f} GB weights)"
    if storage_gb and storage_price is None and resolved.offer is not None:
        where = f"{resolved.offer.cloud} {priced_region(resolved)}"
        lines.append(_not_priced(item, f"no dated disk rate for {where}", "storage", disks))
    if storage_gb and storage_price:
        lines.append(_storage_line(item, disks, disk_gb, storage_price))
    return lines


def _storage_line(item: str, units: float, gb: float, usd_per_gb_month: float) -> CostLine:
    """`units` copies of `gb` GB of storage, billed every hour of the month."""
    return CostLine(
        item, "storage", units, HOURS_PER_MONTH, gb * usd_per_gb_month / HOURS_PER_MONTH, units * gb * usd_per_gb_month
    )


NOT_PRICED = ": not priced: "  # how a row without a dated price names itself (item, this, why)


def _not_priced(item: str, why: str, pricing: str, units: float = 1) -> CostLine:
    """A row for something that runs but has no dated price: shown, noted, not in the total."""
    return CostLine(f"{item}{NOT_PRICED}{why}", pricing, units, 0, 0.0, 0.0)


STACK_RESOURCES = ("load_balancer", "waf", "weights_mirror", "public_ipv4", "instance_ipv4", "secrets", "egress")
# `counts` of cost_review: how many of a stack resource it declares (default 1 each): `public_ipv4`, the load
# balancer's addresses (one per zone it spans); `secrets`, the secrets the stack creates (not referenced ones).
ALB_MIN_ZONES = 2  # an Application Load Balancer spans two zones or more: its public IPv4 addresses, at least


def priced_region(resolved: Resolved) -> str:
    """The region the review prices: the compute price's, else the offer's default."""
    if resolved.price is not None and resolved.price.region:
        return str(resolved.price.region)
    return str(resolved.offer.region) if resolved.offer else ""


# ALB processed bytes per request: (input + output tokens) x BYTES_PER_TOKEN, an assumption (English text in
# JSON is about 4 bytes a token; request and response framing are not counted).
BYTES_PER_TOKEN = 4


def alb_lcu_hours(row: dict, requests_per_month: float, tokens_per_request: int) -> tuple[str, float]:
    """(the billed dimension, LCU-hours a month) of an ALB: the larger of new connections (one per request)
    and processed bytes (BYTES_PER_TOKEN per token): a minimum, as the rate's dimensions are billed."""
    per_lcu = float(row["new_connections_per_s_per_lcu"])
    by_connections = requests_per_month / 3600 / per_lcu  # LCU-hours a month
    label = f"new connections (1 per request, {per_lcu:g}/s per LCU)"
    gb_per_lcu = float(row.get("processed_gb_per_hour_per_lcu") or 0)
    by_bytes = 0.0
    if gb_per_lcu:
        by_bytes = requests_per_month * tokens_per_request * BYTES_PER_TOKEN / 1e9 / gb_per_lcu
        if by_bytes > by_connections:
            label = f"processed bytes ({gb_per_lcu:g} GB/h per LCU; {BYTES_PER_TOKEN} bytes a token assumed)"
    return label, max(by_connections, by_bytes)


def _stack_lines(
    cloud: str,
    region: str,
    weight_gib: float,
    traffic: Traffic,
    workload: WorkloadSpec,
    resources: tuple[str, ...],
    counts: Mapping[str, int] | None = None,
    replica_units: float = 0.0,
) -> list[CostLine]:
    """Rows for what a Pulumi stack runs besides the replicas: its load balancer, its WAF policy, its
    weights mirror bucket, its public IPv4 addresses and its secrets, at `region`'s rates. Fixed parts are
    exact; the ALB's LCUs are a minimum: the larger of new connections (one per request, at the mean rate)
    and processed bytes (an assumed BYTES_PER_TOKEN per token). `replica_units`: replicas running all
    month that the group's instances amount to (`instance_ipv4`: one address each). A part without a dated
    price in the region says "not priced"."""
    unknown = sorted(set(resources) - set(STACK_RESOURCES))
    if unknown:
        raise ValueError(f"unknown stack resources {unknown}")
    counts = counts or {}
    lines: list[CostLine] = []
    for kind in ("load_balancer", "waf"):
        if kind not in resources:
            continue
        what, row, why = stack_rate(cloud, kind, region)
        if row is None:
            lines.append(_not_priced(what, f"{why} ({region})", "stack"))
            continue
        hourly = float(row["usd_per_hour"])
        lines.append(CostLine(what, "stack", 1, HOURS_PER_MONTH, hourly, hourly * HOURS_PER_MONTH))
        if row.get("lcu_usd_per_hour"):
            request_tokens = workload.input_tokens + workload.output_tokens
            label, lcu_hours = alb_lcu_hours(row, traffic.requests_per_month, request_tokens)
            lcu = float(row["lcu_usd_per_hour"])
            lines.append(CostLine(f"{what} LCUs, minimum: {label}", "stack", 1, lcu_hours, lcu, lcu_hours * lcu))
    if "weights_mirror" in resources:
        rate = regional_rate(cloud, "bucket", region)
        gb = round(weight_gib * GIB_IN_GB, 1)
        item = f"weights mirror bucket {gb:,.0f} GB"
        if rate is not None:
            lines.append(_storage_line(f"{item} (the stack's)", 1, gb, float(rate["usd_per_gb_month"])))
        else:
            lines.append(_not_priced(item, f"no dated bucket rate for {cloud} {region}", "storage"))
    lines += _address_and_secret_lines(cloud, region, resources, counts, replica_units)
    if "egress" in resources:
        lines.append(egress_line(cloud, region, traffic.requests_per_month, workload.output_tokens))
    return lines


def egress_gb(requests_per_month: float, output_tokens: int) -> float:
    """GB a month the responses carry to the internet: BYTES_PER_TOKEN per output token (a minimum: JSON
    framing, and a streamed response's chunk per token, add to it; requests are ingress, free)."""
    return requests_per_month * output_tokens * BYTES_PER_TOKEN / 1e9


def egress_line(cloud: str, region: str, requests_per_month: float, output_tokens: int) -> CostLine:
    """Internet egress of the responses, a minimum, at the rate's first tier (an upper bound past it)."""
    what, row, why = stack_rate(cloud, "egress", region)
    gb = egress_gb(requests_per_month, output_tokens)
    item = f"{what} {gb:,.2f} GB, minimum: {BYTES_PER_TOKEN} bytes an output token assumed"
    if row is None:
        return _not_priced(item, f"{why} ({region})", "stack", gb)
    per_gb = float(row["usd_per_gb"])
    if gb > float(row.get("tier_gb_month") or math.inf):
        item += f" (first-tier rate; cheaper beyond {float(row['tier_gb_month']):,.0f} GB)"
    return CostLine(item, "stack", gb, HOURS_PER_MONTH, per_gb / HOURS_PER_MONTH, gb * per_gb)


def _address_and_secret_lines(
    cloud: str, region: str, resources: tuple[str, ...], counts: Mapping[str, int], replica_units: float
) -> list[CostLine]:
    """The stack's public IPv4 addresses (the load balancer's, one per zone; the instances', one each) and
    the secrets it creates, each billed every hour of the month it exists."""
    lines: list[CostLine] = []
    parts: list[tuple[str, float, str]] = []
    if "public_ipv4" in resources:
        zones = int(counts.get("public_ipv4", ALB_MIN_ZONES))
        spans = f"{zones} zones" if "public_ipv4" in counts else f"{zones} zones, the fewest it spans"
        parts.append(("public_ipv4", zones, f"of the load balancer ({spans}; one address each)"))
    if "instance_ipv4" in resources and replica_units > 0:
        parts.append(("public_ipv4", replica_units, "of the replicas (one each)"))
    if "secrets" in resources and counts.get("secrets", 1) > 0:
        n = int(counts.get("secrets", 1))
        parts.append(("secrets", n, f"x{n} (the API key and HF token the stack stores)" if n > 1 else "(the stack's)"))
    for kind, units, detail in parts:
        what, row, why = stack_rate(cloud, kind, region)
        plural = "es" if kind == "public_ipv4" else "s"
        item = f"{what}{plural if units != 1 else ''} {detail}"
        if row is None:
            lines.append(_not_priced(item, f"{why} ({region})", "stack", units))
            continue
        hourly = float(row.get("usd_per_hour") or float(row["usd_per_month"]) / HOURS_PER_MONTH)
        lines.append(CostLine(item, "stack", units, HOURS_PER_MONTH, hourly, units * hourly * HOURS_PER_MONTH))
    return lines


def _projections(
    fit,
    tokens_in: int,
    tokens_out: int,
    slo: float | None,
    params: proj.Params | None,
    memo: dict | None,
    engine: str = "vllm",
    confidence: str = "p50",
) -> tuple[proj.Projection, proj.Projection]:
    """(full load, SLO-bound point) of one replica, each with its error band (costing.performance.bands); the point is
    where the latency at `confidence` (p50: the projection; p90: its band's high end) meets the SLO.
    Memoised in `memo` by what they depend on."""
    from costing.performance.bands import conservative, projection_bands

    key = (
        fit.model.id, fit.precision.id, fit.gpu.name, fit.gpus_per_node, fit.nodes, fit.settings,
        fit.kv_capacity_tokens, fit.max_model_len, tokens_in, tokens_out, slo, id(params), engine, confidence,
    )  # fmt: skip
    if memo is not None and key in memo:
        return memo[key]

    def banded(q: proj.Projection) -> proj.Projection:
        return projection_bands(q, fit, tokens_in, tokens_out, engine)

    def latency(q: proj.Projection) -> float:
        return conservative(banded(q), confidence)[1]

    full = banded(proj.max_throughput(fit, tokens_in, tokens_out, params=params, engine=engine))
    point = (
        banded(proj.slo_concurrency(fit, tokens_in, tokens_out, slo, params=params, engine=engine, latency_of=latency))
        if slo
        else full
    )
    if memo is not None:
        memo[key] = (full, point)
    return full, point


def _spot_notes(
    fleet: Fleet, risk: SpotRisk | None, point: proj.Projection, cloud_group: bool, cloud: str
) -> list[str]:
    """Spot only: a fleet with no on-demand replica behind it (availability standard) is warned about, with
    the minutes a month it runs a replica short; a stack's group says what the reclaim notice cannot drain."""
    if risk is None:
        return []
    notes = []
    if fleet.base_ondemand_replicas == 0:
        minutes = risk.minutes_without_replica[1]
        short = "no replica" if fleet.min_replicas <= 1 else "one replica fewer"
        cost = (
            f"about {minutes:,.0f} minutes a month ({risk.rate.band} of spot instances interrupted a month, "
            f"{risk.cold_start.seconds / 60:,.1f} min cold start each)"
            if minutes is not None
            else f"a {risk.cold_start.seconds / 60:,.1f} min cold start per reclaim "
            f"({risk.rate.note or 'no published rate'})"
        )
        notes.append(
            f"WARNING: spot with availability {fleet.availability}: no on-demand replica backs the spot one, "
            f"so each reclaim leaves {short} until its replacement serves: {cost}; set availability: high "
            "for an on-demand base replica"
        )
    if cloud_group:
        note = reclaim_note(cloud, point.e2e_p99_s, point.e2e_latency_s)
        if note:
            notes.append(note)
    return notes


def cost_review(
    spec: DeploymentSpec,
    *,
    params: proj.Params | None = None,
    calibration: str | None = None,
    resolved: Resolved | None = None,
    suggest: bool = True,
    weights_mirror: str | None = None,
    stack_resources: tuple[str, ...] = (),
    stack_counts: Mapping[str, int] | None = None,
    spot_zones: tuple[str, ...] = (),
    cloud_group: bool = False,
    boot_disk_gb: float | None = None,
    projections: dict | None = None,
    breakevens: bool = True,
    engine: str = "vllm",
    confidence: str = "p50",
) -> CostReview:
    """Everything `selfhost plan` reports. Raises UserError for bad input, a model that doesn't fit, a
    schedule the target cannot run, or an SLO no concurrency meets (with the cheapest fix when `suggest`).

    `weights_mirror`: the bucket a deployment restores the weights from (the Pulumi stacks' mirror); the
    spec's `sky.weights_store` otherwise; neither: replicas download from Hugging Face (the cold start).
    `stack_resources`: what a Pulumi stack runs besides the replicas (STACK_RESOURCES), each a cost row;
    `stack_counts`: how many of one it declares (the load balancer's zones, the secrets it creates).
    `spot_zones`: the zones a spot group spreads its replicas over (AWS's Auto Scaling group): each
    replica costs their mean market price; none: the cheapest zone (where SkyPilot launches).
    `cloud_group`: the replicas run in the cloud's own instance group (the Pulumi stacks' Auto Scaling
    group or managed instance group), not SkyServe: no SpotHedge placement, and a preempted spot replica
    comes back as spot (the on-demand base keeps serving), not as an on-demand fallback; its disks are deleted
    with the replicas. `boot_disk_gb`: the system part of each replica's disk, costed with the weights' part;
    None (the default): the deployment is a SkyPilot task, whose `disk_size` per node is sky_disk_size_gb.
    `projections`: a memo of the projections by fit and request shape, shared by the candidates of
    `selfhost compare` (regions and pricings of one machine project the same). `breakevens`: False skips
    the break-even against each API (compare ranks hundreds of candidates and shows none).
    `engine`: project another engine than the deployed vLLM (costing.performance.engines; to compare with measurements).
    `confidence`: p50 sizes on the projection; p90 on the conservative end of its error band
    (costing.performance.bands):
    the band's low throughput and high latency."""
    from costing.performance.bands import CONFIDENCES, conservative
    from costing.performance.engines import fit_for_engine

    if confidence not in CONFIDENCES:
        raise UserError(f"unknown confidence '{confidence}'", f"use --confidence with one of: {', '.join(CONFIDENCES)}")
    workload = require_workload(spec)
    resolved = across_zones(resolved or resolve(spec), spot_zones)
    refuse_unschedulable(spec, resolved)
    if engine != "vllm":
        resolved = replace(resolved, fit=fit_for_engine(spec, resolved.fit, engine))
    fit = resolved.fit
    tokens_in, tokens_out = workload.input_tokens, workload.output_tokens
    slo = spec.slo.p90_latency_s
    full, point = _projections(fit, tokens_in, tokens_out, slo, params, projections, engine, confidence)
    capacity_rps, point_latency = conservative(point, confidence)
    if slo and point_latency > slo:
        where = resolved.offer.id if resolved.offer else f"{fit.total_gpus}x {fit.gpu.name}"
        problem = f"the p90 latency SLO of {slo:g} s is missed on {where} at {fit.precision.id}: " + _slo_reason(
            point, workload, slo
        )
        fix = None
        if suggest:
            best = cheapest_meeting_slo(spec, params)
            fix = (
                f"the cheapest catalog configuration that meets it is {best}"
                if best
                else "no catalog configuration meets it; raise --p90-latency-s or shorten the requests"
            )
        raise SloUnreachable(problem, fix or "raise --p90-latency-s, or pick a faster GPU", point.p90_e2e_latency_s)
    resolved = with_drain(resolved, point)  # every target's `vllm serve` drains for the point's p99 latency
    fit = resolved.fit
    traffic = Traffic.of(workload, spec.schedule)
    utilization = spec.target_utilization
    fleet = _fleet(spec, traffic, capacity_rps * utilization, point.concurrency)
    replicas = fleet.max_replicas
    notes = list(fit.notes) + list(resolved.notes)
    if engine != "vllm":
        notes.append(
            f"projected for {engine} (its scheduler defaults): the deployment runs vLLM {VLLM_VERSION} (V1); "
            "this review compares with measurements, it is not what deploys"
        )
    if confidence == "p90":
        notes.append(
            f"sized at p90 confidence: {capacity_rps:,.3f} req/s per replica (the P10 of the throughput band, "
            f"projection {point.requests_per_s:,.3f}) and p90 latency {point_latency:,.2f} s (the P90 of the "
            "latency band)"
        )
    needed = replicas_needed(traffic.peak_requests_per_s, capacity_rps, utilization)
    if spec.target.replicas and spec.target.replicas < needed:
        notes.append(
            f"{spec.target.replicas} replica(s) fixed by the spec; the peak load needs {needed} "
            f"at {utilization:.0%} utilization"
        )
    if resolved.price and resolved.price.derived:
        notes.append(f"{spec.target.pricing} price is derived: {resolved.price.source}")
    if spec.target.pricing in COMMITTED_PRICING:
        notes.append(
            f"{spec.target.pricing} is a commitment: billed {HOURS_PER_MONTH:g} h a month per replica "
            f"whatever the schedule (it runs {hours_per_month(spec.schedule):,.0f} h)"
        )
    if fleet.autoscaled and fleet.max_replicas > fleet.min_replicas:
        notes.append(
            f"peak profile assumed: the peak rate for {PEAK_HOURS_SHARE:.0%} of operating hours, "
            f"{fleet.off_peak_requests_per_s:,.3f} req/s off-peak (keeps the daily mean)"
        )
    if fleet.base_ondemand_replicas and cloud_group:
        notes.append(
            "a preempted spot replica is replaced by spot capacity when the market has it (the group's own "
            "rebalancing); the on-demand base replica serves meanwhile: no on-demand fallback beyond the table"
        )
    elif fleet.base_ondemand_replicas:
        notes.append(
            "spot replicas that are preempted are replaced by on-demand ones until spot returns "
            "(dynamic fallback): not in the table, a preemption costs the on-demand price for its duration"
        )
    hourly = resolved.hourly_usd or 0.0
    region = priced_region(resolved)
    disk_rate = regional_rate(resolved.offer.cloud, "storage", region) if resolved.offer else None
    storage = storage_gb_for(spec, fit.weight_gib)
    storage_price = float(disk_rate["usd_per_gb_month"]) if disk_rate else (None if resolved.offer else 0.0)
    if resolved.offer is not None and resolved.offer.cloud == KUBERNETES:
        storage_price = 0.0  # the pod's disk is the node's: in the stated node rate
        notes.append(
            f"Kubernetes context {resolved.offer.region}: priced at the stated rate ({resolved.offer.gpus} GPU(s) x "
            f"${resolved.offer.on_demand / resolved.offer.gpus:.4f}/GPU-hour); the node's disk, the cluster's "
            "control plane and its other nodes are in that rate or the team's, not priced here"
        )
    sky_disk = boot_disk_gb is None
    system_gb = sky_disk_size_gb(storage) - storage if boot_disk_gb is None else boot_disk_gb
    lines = _cost_lines(spec, resolved, fleet, storage, storage_price, cloud_group, system_gb, sky_disk)
    # the group's instances over the month, in replicas running all month (as its disks are costed)
    replica_units = (
        (fleet.min_replicas + (fleet.max_replicas - fleet.min_replicas) * PEAK_HOURS_SHARE)
        * hours_per_month(spec.schedule)
        / HOURS_PER_MONTH
        * fit.nodes
    )
    stack = (
        _stack_lines(
            resolved.offer.cloud,
            region,
            fit.weight_gib,
            traffic,
            workload,
            stack_resources,
            stack_counts,
            replica_units if cloud_group else 0.0,
        )
        if resolved.offer
        else []
    )
    risk = spot_risk(resolved, fleet, lines, weights_mirror or spec.sky.weights_store)
    if cloud_group and resolved.offer and (metrics := scaling.metrics_note(resolved.offer.cloud)):
        notes.append(metrics)
    notes += _spot_notes(fleet, risk, point, cloud_group, resolved.offer.cloud if resolved.offer else "")
    if spec.sky.service and not cloud_group:  # SkyServe, not the kit, ends a replica: say what that cuts
        notes.append(
            scaling.skyserve_stop_note(spec.target.pricing == "spot", point.e2e_p99_s, fit.settings.shutdown_timeout_s)
        )
    lines += stack
    notes += [f"{line.item}; not in the monthly total" for line in lines if NOT_PRICED in line.item]
    if (
        spec.budget.max_monthly_usd is not None
        and spec.budget.allow_unpriced
        and any(NOT_PRICED in line.item for line in lines)
    ):
        notes.append(
            "budget gate on the priced total (allow_unpriced): the rows not priced are left out of what it compares"
        )
    storage_price = storage_price or 0.0
    monthly = sum(line.usd for line in lines)
    if risk and risk.rate.published:
        from costing.money.price_age import WARN_AFTER_DAYS, age_days

        age = age_days(risk.rate.as_of)
        if age is None or age > WARN_AFTER_DAYS:
            notes.append(
                f"the spot interruption band is {age if age is not None else 'of unknown'} days old (as of "
                f"{risk.rate.as_of}; the Spot Instance Advisor reports the trailing month): refresh "
                "costing/data/spot_risk.yaml from AWS's spot-advisor-data.json"
            )
    replica_disk_gb = (storage + system_gb) * fit.nodes  # what one replica's disks hold, as the table costs them
    replica_monthly = monthly_usd(hourly, spec.schedule, 1, replica_disk_gb, storage_price, spec.target.pricing)
    per_m_workload = monthly / traffic.output_tokens_per_month * 1e6
    per_m_full = usd_per_million(hourly, full.output_tokens_per_s)
    slo_met = None if not slo else True
    evens = [
        break_even(api, workload, spec.schedule, replica_monthly, fleet.requests_per_s_per_replica, traffic, monthly)
        for api in (apis_for(fit.model.id) if breakevens else [])
    ]
    evens.sort(key=lambda b: b.api_monthly_usd)
    return CostReview(
        spec,
        resolved,
        workload,
        traffic,
        point,
        full,
        replicas,
        hours_per_month(spec.schedule),
        storage,
        storage_price,
        monthly,
        per_m_workload,
        per_m_full,
        evens,
        slo_met,
        calibration or str(point.assumptions.get("calibration", "built-in (costing/data/calibration.json)")),
        notes,
        fleet,
        lines,
        billed_hours_per_month(spec.schedule, spec.target.pricing),
        spot_risk=risk,
        replica_monthly_usd=replica_monthly,
        confidence=confidence,
        engine=engine,
    )


# The request shape a review without a workload assumes (the spec example's; printed with the review).
DEFAULT_SHAPE = (1000, 250)  # input tokens, output tokens per request
NO_WORKLOAD_LABEL = "no workload given: one replica, full load"


def full_load_review(
    spec: DeploymentSpec,
    *,
    params: proj.Params | None = None,
    calibration: str | None = None,
    engine: str = "vllm",
    confidence: str = "p50",
) -> CostReview:
    """The price review of one always-on replica when no workload is given: the replica saturated (at the
    default request shape) for every hour of the schedule. What is costed is one replica of the offer;
    the break-even is the output volume a month at which each API's bill equals that replica's cost."""
    if spec.workload is not None:
        raise UserError("full_load_review is for a spec without a workload", "call cost_review")
    if spec.target.replicas and spec.target.replicas > 1:
        raise UserError(
            f"{spec.target.replicas} replicas fixed but no workload given: the price review costs one replica",
            "drop --replicas, or pass a workload (--requests-per-day, --input-tokens, --output-tokens)",
        )
    tokens_in, tokens_out = DEFAULT_SHAPE
    probe = spec.model_copy(
        update={"workload": WorkloadSpec(requests_per_day=1, input_tokens=tokens_in, output_tokens=tokens_out)}
    )
    resolved = resolve(probe)
    if engine != "vllm":
        from costing.performance.engines import fit_for_engine

        resolved = replace(resolved, fit=fit_for_engine(probe, resolved.fit, engine))
    full = proj.max_throughput(resolved.fit, tokens_in, tokens_out, params=params, engine=engine)
    if confidence == "p90":  # the volume at full load at the conservative end of the throughput band
        from costing.performance.bands import conservative, projection_bands

        rps = conservative(projection_bands(full, resolved.fit, tokens_in, tokens_out, engine), "p90")[0]
        full = replace(full, requests_per_s=rps, output_tokens_per_s=rps * tokens_out)
    per_day = full.requests_per_s * spec.schedule.hours_per_day * 3600
    if not (per_day > 0 and math.isfinite(per_day)):
        raise UserError(
            f"{resolved.fit.describe()} serves no requests of {tokens_in} in / {tokens_out} out at full load",
            "pass a workload (--requests-per-day, --input-tokens, --output-tokens) or a larger target",
        )
    # A SkyServe service with availability high runs two replicas (a spot one with its on-demand base):
    # priced as it runs. Otherwise one replica.
    high_service = spec.sky.service and spec.effective_availability == "high"
    replicas = HIGH_AVAILABILITY_REPLICAS if high_service else 1
    saturated = spec.model_copy(
        update={
            "workload": WorkloadSpec(requests_per_day=per_day, input_tokens=tokens_in, output_tokens=tokens_out),
            "target": spec.target.model_copy(update={"replicas": replicas}),
            "slo": spec.slo.model_copy(update={"p90_latency_s": None}),
            "availability": "high" if high_service else "standard",
            "target_utilization": 1.0,
        }
    )
    review = cost_review(
        saturated,
        params=params,
        calibration=calibration,
        resolved=resolve(saturated),
        engine=engine,
        confidence=confidence,
    )
    review.no_workload = True
    review.notes = [
        f"{NO_WORKLOAD_LABEL}: {full.requests_per_s:,.3f} req/s of {tokens_in:,} in / {tokens_out:,} out "
        f"(the default shape) for every scheduled hour; pass a workload to size replicas",
        *(["the latency SLO is not checked without a workload"] if spec.slo.p90_latency_s else []),
        *(
            [f"availability high: the service runs {HIGH_AVAILABILITY_REPLICAS} replicas, each priced here"]
            if high_service
            else [f"availability high runs at least {HIGH_AVAILABILITY_REPLICAS} replicas: this review costs one"]
            if spec.effective_availability == "high"
            else []
        ),
        *review.notes,
    ]
    return review


def unpriced_items(review: CostReview) -> list[str]:
    """The rows that run but have no dated price (shown, left out of the monthly total), by their item."""
    return [line.item.split(NOT_PRICED)[0] for line in review.cost_lines if NOT_PRICED in line.item]


def enforce_budget(
    review: CostReview, max_monthly_usd: float | None = None, allow_unpriced: bool | None = None
) -> None:
    """The CI gate: refuse when the projection is over budget (exit code 2, nothing launched), and when it is
    within budget only because some rows are not priced, unless `allow_unpriced` (default: the spec's
    budget.allow_unpriced) says to gate on the priced total: a budget must not pass on a partial total."""
    budget = max_monthly_usd if max_monthly_usd is not None else review.max_monthly_usd
    if budget is None:
        return
    if review.monthly_usd > budget:
        raise OverBudget(
            f"projected ${review.monthly_usd:,.2f}/month for {review.replicas} replica(s) of "
            f"{review.offer.id if review.offer else review.fit.gpu.name} exceeds the budget of ${budget:,.2f}",
            "raise --max-monthly-usd, lower the traffic, or pick a cheaper offer/pricing (see `selfhost compare`)",
        )
    allow = review.spec.budget.allow_unpriced if allow_unpriced is None else allow_unpriced
    unpriced = unpriced_items(review)
    if unpriced and not allow:
        raise UserError(
            f"the budget gate of ${budget:,.2f} would pass only on a partial total: ${review.monthly_usd:,.2f}/month "
            f"leaves out {len(unpriced)} part(s) with no dated price: {'; '.join(unpriced)}",
            "add their dated rates to costing/data/offers.yaml or pick a region that has them, or set "
            "--allow-unpriced to gate on the priced total (budget.allow_unpriced: true in a spec)",
        )
