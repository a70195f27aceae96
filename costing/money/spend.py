"""Monthly spend, cost per 1M tokens, API bills and break-even traffic. Pure arithmetic, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass

from costing.data.catalog import ApiPrice
from costing.data.spec import ScheduleSpec, WorkloadSpec

HOURS_PER_MONTH = 730.0  # 8,760 h / 12, the convention of AWS/GCP monthly estimates
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
MILLION = 1_000_000


def hours_per_month(schedule: ScheduleSpec) -> float:
    """Billed hours a month: 730 for 24x7, scaled by hours/day and days/week (or days/month)."""
    if schedule.days_per_month:
        return schedule.hours_per_day * schedule.days_per_month
    return HOURS_PER_MONTH * (schedule.hours_per_day / 24) * (schedule.days_per_week / 7)


COMMITTED_PRICING = ("reserved-1y", "reserved-3y")  # AWS reserved instances, GCP committed use


def billed_hours_per_month(schedule: ScheduleSpec, pricing: str = "on-demand") -> float:
    """Hours a month one replica is billed: a commitment (reserved / committed use) is paid for all 730
    hours whether the machine runs or not; on-demand and spot only for the hours it runs."""
    return HOURS_PER_MONTH if pricing in COMMITTED_PRICING else hours_per_month(schedule)


def operating_days_per_month(schedule: ScheduleSpec) -> float:
    if schedule.days_per_month:
        return schedule.days_per_month
    return DAYS_PER_MONTH * schedule.days_per_week / 7


def monthly_usd(
    hourly_usd: float,
    schedule: ScheduleSpec,
    replicas: int = 1,
    storage_gb: float = 0.0,
    storage_usd_per_gb_month: float = 0.0,
    pricing: str = "on-demand",
) -> float:
    """Compute for the billed hours plus storage (billed all month, one volume per replica)."""
    hours = billed_hours_per_month(schedule, pricing)
    return replicas * (hourly_usd * hours + storage_gb * storage_usd_per_gb_month)


def usd_per_million(hourly_usd: float, tokens_per_s: float) -> float:
    """Cost of 1M tokens when the machine produces `tokens_per_s` while it is billed."""
    if tokens_per_s <= 0:
        return math.inf
    return hourly_usd / (tokens_per_s * 3600) * MILLION


@dataclass(frozen=True)
class Traffic:
    """A workload turned into monthly volumes and the peak request rate the fleet must serve."""

    requests_per_month: float
    input_tokens_per_month: float
    output_tokens_per_month: float
    peak_requests_per_s: float

    @classmethod
    def of(cls, workload: WorkloadSpec, schedule: ScheduleSpec) -> Traffic:
        days = operating_days_per_month(schedule)
        requests = workload.requests_per_day * days
        mean_rps = workload.requests_per_day / (schedule.hours_per_day * 3600)
        return cls(
            requests,
            requests * workload.input_tokens,
            requests * workload.output_tokens,
            mean_rps * workload.peak_to_mean,
        )


def replicas_needed(peak_requests_per_s: float, requests_per_s_per_replica: float, utilization: float = 1.0) -> int:
    """Replicas to serve the peak rate, each loaded to `utilization` of its SLO-bound capacity (at least one)."""
    capacity = requests_per_s_per_replica * utilization
    if capacity <= 0:
        return 1 if peak_requests_per_s <= 0 else 10**6
    return max(1, math.ceil(peak_requests_per_s / capacity - 1e-9))


def api_usd(api: ApiPrice, input_tokens: float, output_tokens: float) -> float:
    """What an API charges for these token volumes."""
    return (input_tokens * api.input + output_tokens * api.output) / MILLION


def daily_tokens_at(concurrency: int, latency_s: float, input_tokens: int, output_tokens: int) -> tuple[float, float]:
    """Tokens a day served by `concurrency` clients back to back, each request taking `latency_s`."""
    requests = concurrency * 86_400 / latency_s
    return requests * input_tokens, requests * output_tokens


@dataclass(frozen=True)
class BreakEven:
    """Where one API's bill meets the self-hosted fleet's cost for the same workload shape."""

    api: ApiPrice
    api_monthly_usd: float
    selfhost_monthly_usd: float
    requests_per_day: float | None  # None: the API is cheaper at every traffic level
    input_tokens_per_month: float | None
    output_tokens_per_month: float | None
    reason: str

    @property
    def cheaper(self) -> str:
        return "selfhost" if self.selfhost_monthly_usd < self.api_monthly_usd else "api"


def break_even(
    api: ApiPrice,
    workload: WorkloadSpec,
    schedule: ScheduleSpec,
    replica_monthly_usd: float,
    requests_per_s_per_replica: float,
    traffic: Traffic,
    selfhost_monthly: float,
) -> BreakEven:
    """Requests/day at which the API bill equals the self-host cost.

    Self-host cost is a step (one replica's monthly cost per step of capacity); the API bill is a line
    through zero. They cross on the first step when one replica at full capacity costs less per
    request than the API; otherwise the API is cheaper at every traffic level.
    """
    per_request = (workload.input_tokens * api.input + workload.output_tokens * api.output) / MILLION
    api_monthly = traffic.requests_per_month * per_request
    days = operating_days_per_month(schedule)
    capacity_per_day = requests_per_s_per_replica * schedule.hours_per_day * 3600 / workload.peak_to_mean
    if per_request <= 0:
        return BreakEven(api, api_monthly, selfhost_monthly, None, None, None, "the API is free")
    crossing = replica_monthly_usd / (per_request * days)  # requests/day where one replica's cost = API bill
    if crossing > capacity_per_day:
        full_load = replica_monthly_usd / (capacity_per_day * days) if capacity_per_day > 0 else math.inf
        return BreakEven(
            api,
            api_monthly,
            selfhost_monthly,
            None,
            None,
            None,
            f"one replica at full load costs ${full_load:.4f}/request, more than the API's ${per_request:.4f}",
        )
    monthly_requests = crossing * days
    return BreakEven(
        api,
        api_monthly,
        selfhost_monthly,
        crossing,
        monthly_requests * workload.input_tokens,
        monthly_requests * workload.output_tokens,
        f"above {crossing:,.0f} requests/day self-hosting is cheaper",
    )
