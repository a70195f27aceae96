"""The cost review: fit, vLLM settings, projection, spend and break-even for one deployment spec."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from costing import projection as proj
from costing.catalog import apis_for, cloud_info
from costing.errors import OverBudget, UserError
from costing.resolve import Resolved, resolve
from costing.spec import DeploymentSpec, WorkloadSpec
from costing.spend import BreakEven, Traffic, break_even, hours_per_month, monthly_usd, replicas_needed, usd_per_million

WEIGHT_DISK_HEADROOM = 1.3  # weights + safetensors index/tokenizer + HF cache slack


@dataclass
class CostReview:
    spec: DeploymentSpec
    resolved: Resolved
    workload: WorkloadSpec
    traffic: Traffic
    projection: proj.Projection  # at the SLO-bound (or maximal) concurrency: what one replica serves
    full_load: proj.Projection
    replicas: int
    hours_per_month: float
    storage_gb: float
    storage_usd_per_gb_month: float
    monthly_usd: float
    usd_per_million_output_tokens: float
    usd_per_million_output_tokens_full_load: float
    breakeven: list[BreakEven]
    slo_met: bool | None
    calibration: str
    notes: list[str] = field(default_factory=list)

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


def storage_gb_for(spec: DeploymentSpec, weight_gib: float) -> float:
    """Disk for the weights: the spec's storage_gb, else the weights plus headroom, rounded up to 10 GB."""
    if spec.storage_gb:
        return spec.storage_gb
    return float(math.ceil(weight_gib * 1.0737 * WEIGHT_DISK_HEADROOM / 10) * 10)


def cost_review(
    spec: DeploymentSpec,
    *,
    params: proj.Params | None = None,
    calibration: str | None = None,
    resolved: Resolved | None = None,
) -> CostReview:
    """Everything `selfhost plan` reports. Raises UserError for bad input or a model that doesn't fit."""
    workload = require_workload(spec)
    resolved = resolved or resolve(spec)
    fit = resolved.fit
    I, O = workload.input_tokens, workload.output_tokens
    slo = spec.slo.p90_latency_s
    full = proj.max_throughput(fit, I, O, params=params)
    point = proj.slo_concurrency(fit, I, O, slo, params=params) if slo else full
    traffic = Traffic.of(workload, spec.schedule)
    needed = replicas_needed(traffic.peak_requests_per_s, point.requests_per_s)
    replicas = spec.target.replicas or needed
    notes = list(fit.notes)
    if spec.target.replicas and spec.target.replicas < needed:
        notes.append(f"{spec.target.replicas} replica(s) fixed by the spec; the peak load needs {needed}")
    if resolved.price and resolved.price.derived:
        notes.append(f"{spec.target.pricing} price is derived: {resolved.price.source}")
    hourly = resolved.hourly_usd or 0.0
    cloud = cloud_info(resolved.offer.cloud) if resolved.offer else {"storage_usd_per_gb_month": 0.0}
    storage = storage_gb_for(spec, fit.weight_gib)
    storage_price = float(cloud["storage_usd_per_gb_month"])
    monthly = monthly_usd(hourly, spec.schedule, replicas, storage, storage_price)
    replica_monthly = monthly_usd(hourly, spec.schedule, 1, storage, storage_price)
    per_m_workload = monthly / traffic.output_tokens_per_month * 1e6
    per_m_full = usd_per_million(hourly, full.output_tokens_per_s)
    slo_met = None if not slo else point.p90_e2e_latency_s <= slo
    if slo and not slo_met:
        notes.append(
            f"the p90 latency SLO of {slo:g} s is missed even at concurrency 1 "
            f"(p90 {point.p90_e2e_latency_s:.2f} s): pick a faster GPU or a smaller model"
        )
    evens = [
        break_even(api, workload, spec.schedule, replica_monthly, point.requests_per_s, traffic, monthly)
        for api in apis_for(fit.model.id)
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
    )


def enforce_budget(review: CostReview, max_monthly_usd: float | None = None) -> None:
    """The CI gate: refuse when the projection is over budget (exit code 2, nothing launched)."""
    budget = max_monthly_usd if max_monthly_usd is not None else review.max_monthly_usd
    if budget is not None and review.monthly_usd > budget:
        raise OverBudget(
            f"projected ${review.monthly_usd:,.2f}/month for {review.replicas} replica(s) of "
            f"{review.offer.id if review.offer else review.fit.gpu.name} exceeds the budget of ${budget:,.2f}",
            "raise --max-monthly-usd, lower the traffic, or pick a cheaper offer/pricing (see `selfhost compare`)",
        )
