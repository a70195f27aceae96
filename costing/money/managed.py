"""Managed endpoints as offers: SageMaker real-time, Vertex AI prediction and Bedrock Custom Model Import.

The cloud runs the serving machines and bills them its own way: SageMaker and Vertex AI per instance-hour
(node-hour) while the endpoint exists, the count scaled out on the same projection a VM replica gets;
Bedrock Custom Model Import per Custom Model Unit-minute in 5-minute windows, the copy unloaded after 5
idle minutes, so its bill follows the workload's hourly arrival profile. Prices come from
costing/data/managed.yaml, laid under a refreshed snapshot's `sagemaker` and `vertex` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from costing.data.catalog import Catalog, PriceRow, _read, catalog, get_gpu, get_model
from costing.data.resolve import fit_request
from costing.data.spec import DeploymentSpec, ScheduleSpec, WorkloadSpec
from costing.errors import UserError
from costing.money.spend import HOURS_PER_MONTH, Traffic, hours_per_month, replicas_needed
from costing.performance.fit import FitResult, fit_check

SERVICES = ("sagemaker", "vertex", "bedrock-cmi")
INSTANCE_SERVICES = ("sagemaker", "vertex")  # billed per machine-hour; their snapshot rows use these as `cloud`
PRICING = "on-demand"  # what `compare --pricing` filters managed rows by
# The peak profile the review assumes (costing.money.review.PEAK_HOURS_SHARE): the peak rate for this share of
# the operating hours, the rest at the off-peak rate that keeps the daily mean.
PEAK_HOURS_SHARE = 0.25


@dataclass(frozen=True)
class Machine:
    service: str
    name: str
    gpu: str
    gpus: int


@dataclass(frozen=True)
class CmuRate:
    region: str
    usd_per_cmu_minute: float
    storage_usd_per_cmu_month: float
    source: str
    as_of: str


@dataclass(frozen=True)
class ManagedCatalog:
    services: dict[str, dict[str, Any]]
    machines: dict[tuple[str, str], Machine]
    prices: dict[tuple[str, str, str], PriceRow]  # (service, machine, region) -> on-demand hourly row
    cmu_per_copy: dict[str, dict[str, Any]]
    cmu_rates: dict[str, CmuRate]


def shipped_managed_rows() -> list[PriceRow]:
    """managed.yaml's dated instance prices as price rows (`cloud` is the service)."""
    rows = []
    raw = _read("managed.yaml")["services"]
    for service in INSTANCE_SERVICES:
        for p in raw[service]["prices"]:
            rows.append(
                PriceRow(
                    service,
                    str(p["machine"]),
                    str(p["region"]),
                    PRICING,
                    float(p["usd_per_hour"]),
                    str(p["source"]),
                    str(p["as_of"]),
                )
            )
    return rows


_LOADED: dict[int, tuple[Catalog, ManagedCatalog]] = {}


def managed_catalog() -> ManagedCatalog:
    """The managed services and their prices, laid under the price snapshot the catalog loaded (reloaded
    with it: tests clear the catalog's cache to switch snapshots)."""
    cat = catalog()
    found = _LOADED.get(id(cat))
    if found is None or found[0] is not cat:
        _LOADED.clear()
        found = _LOADED[id(cat)] = (cat, _load(cat))
    return found[1]


def _load(cat: Catalog) -> ManagedCatalog:
    raw = _read("managed.yaml")["services"]
    machines = {
        (s, name): Machine(s, name, str(m["gpu"]), int(m["gpus"]))
        for s in INSTANCE_SERVICES
        for name, m in raw[s]["machines"].items()
    }
    prices = {(r.cloud, r.instance_type, r.region): r for r in shipped_managed_rows()}
    for r in cat.other_rows:  # a refreshed snapshot's rows replace the shipped ones
        if r.cloud in INSTANCE_SERVICES and r.pricing == PRICING and (r.cloud, r.instance_type) in machines:
            prices[(r.cloud, r.instance_type, r.region)] = r
    cmi = raw["bedrock-cmi"]
    rates = {
        str(r["region"]): CmuRate(
            str(r["region"]),
            float(r["usd_per_cmu_minute"]),
            float(r["storage_usd_per_cmu_month"]),
            str(r["source"]),
            str(r["as_of"]),
        )
        for r in cmi["rates"]
    }
    return ManagedCatalog(raw, machines, prices, dict(cmi["cmu_per_copy"]), rates)


@dataclass(frozen=True)
class ManagedReview:
    """One managed option for the workload: what runs, how it is billed, what it costs a month."""

    service: str
    name: str  # the service's display name
    cloud: str
    machine: str | None  # None: Bedrock (no machine to choose)
    region: str
    gpus: str  # "1x A10G", or "2 CMU/copy"
    units: int  # instances, nodes or model copies at the peak
    usd_per_hour: float  # per unit while billed
    billed_hours: float  # per unit a month (expected, for Bedrock)
    monthly_usd: float
    usd_per_million_output_tokens: float
    output_tokens_per_s: float | None  # per unit; None: not projected (Bedrock)
    p90_s: float | None
    slo_met: bool | None
    capacity_rps: float | None  # per unit at the SLO-bound concurrency x utilization; None: not projected
    source: str
    as_of: str
    billing: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    fit: FitResult | None = None

    @property
    def label(self) -> str:
        return f"{self.service}:{self.machine}" if self.machine else self.service


@dataclass(frozen=True)
class ManagedSkip:
    label: str
    region: str | None
    reason: str
    p90_s: float | None = None


# ------------------------------------------------------------------------------ the arrival profile


def hourly_profile(workload: WorkloadSpec, schedule: ScheduleSpec) -> list[tuple[float, float]]:
    """(hours a month, requests/s) segments of the month: the peak rate for PEAK_HOURS_SHARE of the operating
    hours, the off-peak rate that keeps the daily mean for the rest, nothing outside the schedule."""
    traffic = Traffic.of(workload, schedule)
    operating = hours_per_month(schedule)
    peak = traffic.peak_requests_per_s
    mean = peak / workload.peak_to_mean
    segments = []
    if workload.peak_to_mean > 1:
        off_peak = max(0.0, (mean - PEAK_HOURS_SHARE * peak) / (1 - PEAK_HOURS_SHARE))
        segments = [(operating * PEAK_HOURS_SHARE, peak), (operating * (1 - PEAK_HOURS_SHARE), off_peak)]
    else:
        segments = [(operating, mean)]
    idle = HOURS_PER_MONTH - operating
    return segments + ([(idle, 0.0)] if idle > 0 else [])


def billed_windows(profile: list[tuple[float, float]], window_min: float, idle_min: float) -> float:
    """Expected 5-minute windows billed a month when a copy loads on a request and unloads after `idle_min`
    idle minutes: a window is billed when a request arrives in it or in the `idle_min` before it (Poisson
    arrivals at each segment's rate), so P(billed) = 1 - exp(-rate x (window + idle))."""
    per_hour = 60 / window_min
    return sum(
        hours * per_hour * (1 - math.exp(-rate * 60 * (window_min + idle_min))) for hours, rate in profile if hours > 0
    )


def unit_hours(profile: list[tuple[float, float]], capacity_rps: float, floor: int) -> float:
    """Instance- (node-) hours a month of an endpoint that scales out on the load (target tracking) but never
    below `floor`: each segment of the profile runs the units its rate needs at `capacity_rps` each."""
    return sum(hours * max(floor, replicas_needed(rate, capacity_rps)) for hours, rate in profile if hours > 0)


# ------------------------------------------------------------------------------ the reviews


def _instance_review(
    spec: DeploymentSpec, machine: Machine, row: PriceRow, memo: dict | None
) -> ManagedReview | ManagedSkip:
    from costing.money.review import HIGH_AVAILABILITY_REPLICAS, _projections

    workload = _workload(spec)
    label = f"{machine.service}:{machine.name}"
    try:
        fit = fit_check(replace(fit_request(spec, get_gpu(machine.gpu).name, machine.gpus), nodes=1))
    except UserError as err:
        return ManagedSkip(label, row.region, err.problem)
    slo = spec.slo.p90_latency_s
    _full, point = _projections(fit, workload.input_tokens, workload.output_tokens, slo, None, memo)
    if slo and point.p90_e2e_latency_s > slo:
        p90 = point.p90_e2e_latency_s
        return ManagedSkip(label, row.region, f"misses the {slo:g} s p90 SLO ({p90:.2f} s)", p90)
    traffic = Traffic.of(workload, spec.schedule)
    capacity = point.requests_per_s * spec.target_utilization
    floor = HIGH_AVAILABILITY_REPLICAS if spec.effective_availability == "high" else 1
    units = max(floor, replicas_needed(traffic.peak_requests_per_s, capacity))
    hours = unit_hours(hourly_profile(workload, spec.schedule), capacity, floor)
    monthly = hours * row.usd_per_hour
    svc = managed_catalog().services[machine.service]
    unit = "instance" if machine.service == "sagemaker" else "node"
    notes = [
        f"target-tracking autoscaling between {floor} and {units} {unit}(s) at {spec.target_utilization:.0%} "
        f"utilization: {hours:,.0f} {unit}-hours a month (the peak profile; never below {floor}: no scale to zero)"
    ]
    if spec.schedule.part_time:
        notes.append("the schedule does not stop an endpoint: it is billed every hour it exists")
    return ManagedReview(
        machine.service,
        str(svc["name"]),
        str(svc["cloud"]),
        machine.name,
        row.region,
        f"{fit.total_gpus}x {fit.gpu.name}",
        units,
        row.usd_per_hour,
        hours / units,
        monthly,
        monthly / traffic.output_tokens_per_month * 1e6,
        point.output_tokens_per_s,
        point.p90_e2e_latency_s,
        (point.p90_e2e_latency_s <= slo) if slo else None,
        capacity,
        f"{row.source} ({row.region})",
        row.as_of,
        str(svc["billing"]),
        tuple(notes),
        fit,
    )


def _bedrock_review(spec: DeploymentSpec, rate: CmuRate) -> ManagedReview | ManagedSkip:
    cat = managed_catalog()
    cmi = cat.services["bedrock-cmi"]
    model = get_model(spec.model)
    units = cat.cmu_per_copy.get(model.id)
    if units is None:
        return ManagedSkip(
            "bedrock-cmi", rate.region, f"no Custom Model Unit count known for {model.id} (costing/data/managed.yaml)"
        )
    workload = _workload(spec)
    cmu = int(units["cmu"])
    window, idle = float(cmi["window_minutes"]), float(cmi["idle_minutes"])
    windows = billed_windows(hourly_profile(workload, spec.schedule), window, idle)
    copies = 1
    compute = copies * cmu * rate.usd_per_cmu_minute * window * windows
    storage = cmu * rate.storage_usd_per_cmu_month
    monthly = compute + storage
    traffic = Traffic.of(workload, spec.schedule)
    hours = windows * window / 60
    notes = (
        f"{windows:,.0f} of {HOURS_PER_MONTH * 60 / window:,.0f} {window:g}-minute windows billed a month "
        f"({hours:,.0f} h active): a window is billed when a request arrives in it or in the {idle:g} idle "
        f"minutes before it (Poisson arrivals, the peak profile: peak rate for {PEAK_HOURS_SHARE:.0%} of the "
        "operating hours)",
        f"{cmu} CMU per copy ({units['source']}); storage {cmu} x ${rate.storage_usd_per_cmu_month:g} a month",
        "one model copy assumed, a minimum: Bedrock adds copies under load and does not publish a copy's throughput",
        "latency not projected (Bedrock's hardware is not published); a copy unloaded when idle cold-starts "
        "on the next request",
        *(
            [f"Bedrock serves the imported weights as imported ({spec.precision} here is not what it bills)"]
            if spec.precision != "bf16"
            else []
        ),
    )
    return ManagedReview(
        "bedrock-cmi",
        str(cmi["name"]),
        str(cmi["cloud"]),
        None,
        rate.region,
        f"{cmu} CMU/copy",
        copies,
        cmu * rate.usd_per_cmu_minute * 60,
        hours,
        monthly,
        monthly / traffic.output_tokens_per_month * 1e6,
        None,
        None,
        None,
        None,
        f"{rate.source} ({rate.region})",
        rate.as_of,
        str(cmi["billing"]),
        notes,
    )


def managed_reviews(
    spec: DeploymentSpec,
    *,
    cloud: str | None = None,
    region: str | None = None,
    services: tuple[str, ...] = SERVICES,
    memo: dict | None = None,
) -> tuple[list[ManagedReview], list[ManagedSkip]]:
    """Every managed option (within the filters) for the spec's workload, cheapest first, and the skipped ones."""
    _workload(spec)
    cat = managed_catalog()
    found: list[ManagedReview | ManagedSkip] = []
    for (service, name), machine in cat.machines.items():
        if service not in services or (cloud and cat.services[service]["cloud"] != cloud):
            continue
        rows = [r for (s, m, _), r in cat.prices.items() if s == service and m == name]
        if region:
            rows = [r for r in rows if r.region == region]
        if not rows:
            where = f" in {region}" if region else ""
            fix = f"`selfhost prices refresh --cloud {cat.services[service]['cloud']}`"
            found.append(ManagedSkip(f"{service}:{name}", region, f"no dated price{where}; {fix} prices it"))
        for row in sorted(rows, key=lambda r: r.region):
            found.append(_instance_review(spec, machine, row, memo))
    if "bedrock-cmi" in services and cloud in (None, "aws"):
        for rate in sorted(cat.cmu_rates.values(), key=lambda r: r.region):
            if not region or rate.region == region:
                found.append(_bedrock_review(spec, rate))
    reviews = [f for f in found if isinstance(f, ManagedReview)]
    reviews.sort(key=lambda r: (r.slo_met is False, round(r.monthly_usd, 6), r.label, r.region))
    return reviews, [f for f in found if isinstance(f, ManagedSkip)]


def monthly_at(option: ManagedReview, spec: DeploymentSpec, requests_per_day: float) -> float:
    """The option's monthly bill if the workload ran at `requests_per_day` (same shape): for break-evens."""
    workload = _workload(spec)
    scaled = workload.model_copy(update={"requests_per_day": requests_per_day})
    if option.service == "bedrock-cmi":
        cmi = managed_catalog().services["bedrock-cmi"]
        window, idle = float(cmi["window_minutes"]), float(cmi["idle_minutes"])
        rate = managed_catalog().cmu_rates[option.region]
        cmu = managed_catalog().cmu_per_copy[get_model(spec.model).id]["cmu"]
        windows = billed_windows(hourly_profile(scaled, spec.schedule), window, idle)
        return cmu * rate.usd_per_cmu_minute * window * windows + cmu * rate.storage_usd_per_cmu_month
    from costing.money.review import HIGH_AVAILABILITY_REPLICAS

    floor = HIGH_AVAILABILITY_REPLICAS if spec.effective_availability == "high" else 1
    profile = hourly_profile(scaled, spec.schedule)
    return unit_hours(profile, option.capacity_rps or 0.0, floor) * option.usd_per_hour


def _workload(spec: DeploymentSpec) -> WorkloadSpec:
    if spec.workload is None:
        raise UserError("managed endpoints are costed for a workload", "pass --requests-per-day and the token counts")
    return spec.workload
