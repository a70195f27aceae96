"""What is costed is what runs, checked from the declaration: for generated stack configurations (cloud x
pricing x replicas x schedule x region x domain, seeded) each one the stack accepts is run under Pulumi's
mocks, its declared resources are billed by `selfhost bill` (selfhost.bill), and the bill must equal the
cost review's monthly total (the stack's projectedMonthlyUsd) within 1%. The same for every SkyPilot
template against its spec's review. A divergence fails with every case listed: fix the stack or the
review, never this tolerance.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pulumi
import yaml
from conftest import ROOT
from stack_mocks import expected

from costing.review import GIB_IN_GB
from selfhost.bill.declared import parse_preview
from selfhost.bill.mock_preview import preview_json
from selfhost.bill.price import Usage, bill_preview
from selfhost.stack.preview import ZONE_IDS

TOLERANCE = 0.01
SEED = 22
SAMPLE = 210

OFFERS = {"aws": ("g5.xlarge", "g5.2xlarge"), "gcp": ("g2-standard-8", "g2-standard-12"), "runpod": ("1", "2")}
PRICING = {
    "aws": ("on-demand", "spot", "reserved-1y"),
    "gcp": ("on-demand", "spot", "reserved-1y"),
    "runpod": ("on-demand",),
}
REGIONS = {"aws": tuple(ZONE_IDS), "gcp": ("us-central1", "us-east4", "europe-west4"), "runpod": ("US-KS-2",)}
TRAFFIC = (300, 3000, 60000, 1_000_000)  # requests a day: 1 to many replicas
SCHEDULES = ("24x7", "10hx5d", "24h-10dpm")
DOMAINS = (None, "api.example.com")
AVAILABILITY = ("standard", "high")


def space() -> list[tuple]:
    out = []
    for cloud in ("aws", "gcp", "runpod"):
        out += itertools.product(
            [cloud], OFFERS[cloud], PRICING[cloud], TRAFFIC, SCHEDULES, REGIONS[cloud], DOMAINS, AVAILABILITY,
            ("owned", "not owned"),
        )  # fmt: skip
    return out


def configs() -> list[tuple]:
    rng = random.Random(SEED)
    return sorted(rng.sample(space(), SAMPLE), key=str)


def stack_config(case: tuple, tmp: Path) -> dict[str, Any]:
    cloud, offer, pricing, rpd, schedule, region, domain, availability, owned = case
    config: dict[str, Any] = {
        "model": "llama-3.1-8b", "precision": "bf16", "pricing": pricing, "requestsPerDay": rpd,
        "inputTokens": 1000, "outputTokens": 250, "peakToMean": 2, "apiKey": "k", "hfToken": "t",
        "availability": availability,
    }  # fmt: skip
    if pricing.startswith("reserved") and owned == "owned":
        config["reservationOwned"] = "true"
    if cloud == "aws":
        config.update({"instanceType": offer, "aws:region": region, "allowedCidrs": ["203.0.113.0/24"]})
    elif cloud == "gcp":
        config.update({"machineType": offer, "gcp:region": region, "gcp:project": "p"})
        config["allowedCidrs"] = ["0.0.0.0/0"] if domain else ["203.0.113.0/24"]
    else:
        config.update({"gpuCount": offer, "cloudType": "SECURE", "dataCenterId": region})
    if cloud != "runpod":
        config.update({"domain": domain} if domain else {"allowPlainHttp": "true"})
    if schedule == "10hx5d":
        config.update(hoursPerDay=10, daysPerWeek=5)
    elif schedule == "24h-10dpm":
        spec = tmp / "spec.yaml"
        spec.write_text(yaml.safe_dump({"schedule": {"hours_per_day": 24, "days_per_month": 10}}))
        config["specFile"] = str(spec)
    return config


def usage_for(case: tuple, outputs: dict) -> Usage:
    cloud, _offer, pricing, rpd, schedule, region, *_ = case
    _, fit = expected(cloud, "llama-3.1-8b", outputs["offer"], "on-demand")
    return Usage(
        requests_per_day=rpd,
        input_tokens=1000,
        output_tokens=250,
        days_per_week=5 if schedule == "10hx5d" else 7,
        zones=tuple(ZONE_IDS[region].values()) if cloud == "aws" else (),
        bucket_gb=round(fit.weight_gib * GIB_IN_GB, 1),
        reserved=pricing if pricing.startswith("reserved") else None,
    )


def test_generated_stack_configurations_bill_what_the_review_costs(tmp_path: Path) -> None:
    cases = configs()
    assert len(cases) >= 200
    accepted, refused, divergent = 0, 0, []
    worst = 0.0
    for case in cases:
        cloud = case[0]
        outputs: dict[str, Any] = {}
        try:
            doc = preview_json(
                ROOT / "stacks" / cloud / "__main__.py",
                f"selfhost-{cloud}",
                stack_config(case, tmp_path),
                outputs=outputs,
            )
        except pulumi.RunError:
            refused += 1
            continue
        accepted += 1
        review = float(outputs["projectedMonthlyUsd"])
        bill = bill_preview(parse_preview(doc), usage_for(case, outputs)).monthly_usd
        gap = abs(bill - review) / review
        worst = max(worst, gap)
        if gap > TOLERANCE:
            divergent.append(f"{case}: review ${review:,.2f}, bill ${bill:,.2f} ({gap:+.1%})")
    print(f"{len(cases)} configurations: {accepted} accepted, {refused} refused; max divergence {worst:.3%}")
    assert accepted >= 50, f"only {accepted} of {len(cases)} configurations accepted: the generator tests little"
    assert not divergent, f"{len(divergent)} of {accepted} accepted configurations bill != review:\n" + "\n".join(
        divergent
    )
