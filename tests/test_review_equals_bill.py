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
import pytest
import yaml
from conftest import ROOT
from stack_mocks import expected

from costing.money.review import GIB_IN_GB
from selfhost.bill.declared import parse_preview
from selfhost.bill.mock_preview import preview_json
from selfhost.bill.price import Usage, bill_preview
from selfhost.stack.preview import ZONE_IDS

TOLERANCE = 0.01
# Declared parts besides the replicas and disks that the totals compare (each must occur in some bill)
PARTS = (
    "Secrets Manager secret", "Secret Manager secret version", "public IPv4 address", "Application Load Balancer",
    "internet egress",
)  # fmt: skip
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
        "inputTokens": 1000, "outputTokens": 250, "peakToMean": 2, "apiKey": "sk-test-key-0123456789", "hfToken": "t",
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


def test_generated_stack_configurations_bill_what_the_review_costs(tmp_path: Path, aws_reserved_prices) -> None:
    cases = configs()
    assert len(cases) >= 200
    accepted, refused, divergent = 0, 0, []
    worst = 0.0
    billed: set[str] = set()  # the parts besides compute the bills priced (the review must have them too)
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
        priced = bill_preview(parse_preview(doc), usage_for(case, outputs))
        billed |= {part for part in PARTS if any(line.item.startswith(part) for line in priced.lines)}
        bill = priced.monthly_usd
        gap = abs(bill - review) / review
        worst = max(worst, gap)
        if gap > TOLERANCE:
            divergent.append(f"{case}: review ${review:,.2f}, bill ${bill:,.2f} ({gap:+.1%})")
    print(f"{len(cases)} configurations: {accepted} accepted, {refused} refused; max divergence {worst:.3%}")
    assert accepted >= 50, f"only {accepted} of {len(cases)} configurations accepted: the generator tests little"
    assert not divergent, f"{len(divergent)} of {accepted} accepted configurations bill != review:\n" + "\n".join(
        divergent
    )
    assert billed == set(PARTS), f"no accepted configuration billed {sorted(set(PARTS) - billed)}"


TEMPLATES = sorted((ROOT / "templates").glob("*.yaml"))


def _review_of(spec_path: Path):
    from costing.data.spec import load_spec
    from costing.money.review import cost_review, full_load_review

    spec = load_spec(str(spec_path))
    return cost_review(spec) if spec.workload else full_load_review(spec)


def _template_bills() -> list[tuple[str, float, float, float, float]]:
    """(template, review total, bill total, review's disk $, bill's disk $) for every shipped template."""
    from selfhost.bill.sky import bill_task

    rows = []
    for template in TEMPLATES:
        review = _review_of(ROOT / "templates" / "specs" / template.name)
        bill = bill_task(template)
        review_disk = sum(line.usd for line in review.cost_lines if line.item.startswith("disk "))
        bill_disk = sum(line.usd for line in bill.lines if "disk" in line.item)
        rows.append((template.name, review.monthly_usd, bill.monthly_usd, review_disk, bill_disk))
    return rows


def test_every_skypilot_template_bills_what_its_review_costs() -> None:
    """templates/X.yaml is rendered from templates/specs/X.yaml: SkyPilot runs what that review priced, disks
    included (the task's disk_size per node: the weights' part and the system part)."""
    assert len(TEMPLATES) >= 10
    divergent = [
        f"{name}: review ${review:,.2f}, bill ${bill:,.2f} ({bill / review - 1:+.1%})"
        for name, review, bill, _, _ in _template_bills()
        if abs(bill - review) / review > TOLERANCE
    ]
    assert not divergent, f"{len(divergent)} of {len(TEMPLATES)} templates bill != review:\n" + "\n".join(divergent)


@pytest.mark.parametrize("availability", ["high", "standard"])
def test_a_spot_service_rendered_without_a_workload_is_priced_as_skyserve_runs_it(
    availability: str, tmp_path: Path
) -> None:
    """No workload: SkyServe runs min = max = 2 (one on-demand base) for availability high; the review too."""
    from conftest import run_selfhost

    from selfhost.bill.sky import bill_task

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "nowl",
                "model": "llama-3.1-8b",
                "target": {"cloud": "aws", "offer": "aws-g5.2xlarge", "pricing": "spot"},
                "sky": {"service": True, "allow_plain_http": True},  # pricing, not transport, is tested here
                "availability": availability,
            }
        )
    )
    task = tmp_path / "task.yaml"
    out = run_selfhost("render", "sky", "--spec", str(spec), "--out", str(task))
    assert out.returncode == 0, out.stderr
    policy = yaml.safe_load(task.read_text())["service"]["replica_policy"]
    review = _review_of(spec)
    assert review.fleet.max_replicas == policy["max_replicas"] and review.fleet.min_replicas == policy["min_replicas"]
    assert review.fleet.base_ondemand_replicas == policy.get("base_ondemand_fallback_replicas", 0)
    assert bill_task(task).monthly_usd == pytest.approx(review.monthly_usd, rel=TOLERANCE)
