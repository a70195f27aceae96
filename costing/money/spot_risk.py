"""Spot risk for the cost review: how often a spot replica is interrupted (a published, dated figure, or
"no published rate"), how long its replacement takes to serve (cold start), the minutes a month the fleet
runs without that replica, and what the on-demand fallback capacity costs beside the spot saving.

Every figure carries its source or is labelled an assumption; nothing here is invented."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from costing.money.spend import HOURS_PER_MONTH
from costing.performance.readiness import (
    BUCKET_READ_BYTES_PER_S,
    ENGINE_START_S,
    GIB,
    HF_DOWNLOAD_BYTES_PER_S,
    cold_start_s,
)

if TYPE_CHECKING:
    from costing.data.resolve import Resolved
    from costing.money.review import CostLine, Fleet

DATA_FILE = "costing/data/spot_risk.yaml"
ENGINE_START_BASIS = "assumption: image pull, weight load, torch.compile and CUDA graph capture"
READ_BASIS = {
    True: "assumption: a conservative single-instance S3/GCS read rate",
    False: "assumption: a conservative Hugging Face download rate",
}


@lru_cache(maxsize=1)
def spot_risk_data() -> dict[str, Any]:
    text = resources.files("costing").joinpath("data", "spot_risk.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass(frozen=True)
class InterruptionRate:
    """The interrupted share of spot instances a month (a band), or why there is no published figure."""

    published: bool
    source: str
    as_of: str
    band: str | None = None  # the published label, e.g. '15-20%'
    low: float | None = None  # share of instances interrupted per month
    high: float | None = None  # None: the band has no upper bound (>20%)
    note: str = ""

    @property
    def central(self) -> float | None:
        """The band's midpoint; its lower bound where the band is open-ended."""
        if self.low is None:
            return None
        return self.low if self.high is None else (self.low + self.high) / 2

    @property
    def basis(self) -> str:
        if self.low is None:
            return "none"
        return "midpoint of the band" if self.high is not None else "lower bound (the band has no upper bound)"


def interruption_rate(cloud: str, instance_type: str, region: str) -> InterruptionRate:
    """The published interruption figure for one instance type in one region (costing/data/spot_risk.yaml)."""
    data = spot_risk_data()
    if cloud == "aws":
        aws = data["aws"]
        index = (aws["regions"].get(region) or {}).get(instance_type)
        if index is None:
            return InterruptionRate(
                False,
                aws["source"],
                str(aws["as_of"]),
                note=f"no Spot Advisor band recorded for {instance_type} in {region} ({DATA_FILE})",
            )
        band = aws["bands"][index]
        high = band["high_pct"]
        return InterruptionRate(
            True,
            aws["source"],
            str(aws["as_of"]),
            band["label"],
            band["low_pct"] / 100,
            None if high is None else high / 100,
        )
    entry = data.get(cloud) or {}
    return InterruptionRate(
        False,
        str(entry.get("source") or f"{DATA_FILE} has no {cloud} entry"),
        str(entry.get("as_of") or "-"),
        note=f"{cloud.upper() if cloud == 'gcp' else cloud} publishes no spot preemption rate",
    )


@dataclass(frozen=True)
class ColdStart:
    """Projected time until a replacement replica serves: engine start plus reading the weights."""

    weight_gib: float
    weights_from: str
    read_bytes_per_s: float
    read_basis: str
    engine_start_s: float
    engine_start_basis: str
    seconds: float

    @property
    def weights_s(self) -> float:
        return self.weight_gib * GIB / self.read_bytes_per_s


def cold_start(weight_gib: float, weights_from: str | None) -> ColdStart:
    """`weights_from`: the bucket replicas restore the weights from (None: Hugging Face)."""
    bucket = weights_from is not None
    return ColdStart(
        weight_gib,
        weights_from or "Hugging Face",
        BUCKET_READ_BYTES_PER_S if bucket else HF_DOWNLOAD_BYTES_PER_S,
        READ_BASIS[bucket],
        ENGINE_START_S,
        ENGINE_START_BASIS,
        cold_start_s(weight_gib, bucket),
    )


@dataclass(frozen=True)
class SpotRisk:
    cold_start: ColdStart
    rate: InterruptionRate
    spot_replica_months: float  # spot replicas x hours / 730: full-time spot replicas
    ondemand_fallback_replicas: float
    ondemand_fallback_usd: float
    all_ondemand_usd: float | None  # the same compute, every replica on-demand
    spot_compute_usd: float

    def _times(self, share: float | None) -> float | None:
        return None if share is None else share * self.spot_replica_months

    @property
    def interruptions_per_month(self) -> tuple[float | None, float | None, float | None]:
        """(lower bound, central, upper bound) expected interruptions a month across the spot replicas."""
        r = self.rate
        return self._times(r.low), self._times(r.central), self._times(r.high)

    @property
    def minutes_without_replica(self) -> tuple[float | None, float | None, float | None]:
        """Expected minutes a month with one replica fewer: interruptions x cold start."""
        minutes = self.cold_start.seconds / 60
        return tuple(None if n is None else n * minutes for n in self.interruptions_per_month)  # type: ignore[return-value]

    @property
    def spot_saving_usd(self) -> float | None:
        return None if self.all_ondemand_usd is None else self.all_ondemand_usd - self.spot_compute_usd


def spot_risk(resolved: Resolved, fleet: Fleet, lines: list[CostLine], weights_from: str | None) -> SpotRisk | None:
    """The spot figures for a spot review (None for any other pricing)."""
    offer, price = resolved.offer, resolved.price
    if offer is None or price is None or price.pricing != "spot":
        return None
    region = price.region or offer.region
    compute = [c for c in lines if c.pricing != "storage"]
    spot_months = sum(c.replicas * c.hours for c in compute if c.pricing == "spot") / HOURS_PER_MONTH
    fallback = [c for c in compute if c.pricing == "on-demand"]
    od = offer.price("on-demand", region)
    all_od = None if od is None else sum(c.replicas * c.hours for c in compute) * od.usd_per_hour * resolved.fit.nodes
    return SpotRisk(
        cold_start(resolved.fit.weight_gib, weights_from),
        interruption_rate(offer.cloud, offer.instance_type, region),
        spot_months,
        float(fleet.base_ondemand_replicas),
        sum(c.usd for c in fallback),
        all_od,
        sum(c.usd for c in compute),
    )
