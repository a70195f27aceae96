"""The divergences the bill found between what the stacks declared and what the review costed (issue 22),
each closed by deploying what is costed or refusing what cannot be deployed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from stack_mocks import example_config, refused, stack

from costing.data.catalog import offers_for, stack_rate
from costing.data.spec import MAX_REPLICAS
from costing.money.spend import HOURS_PER_MONTH
from selfhost.bill.declared import parse_preview
from selfhost.bill.mock_preview import preview_json
from selfhost.bill.price import bill_preview
from selfhost.stack.preview import ZONE_IDS

ROOT = Path(__file__).resolve().parents[1]


def config(cloud: str, **extra) -> dict:
    base = {**example_config(cloud), "apiKey": "sk-test-key-0123456789", "hfToken": "t", "maxMonthlyUsd": None}
    if cloud != "runpod":
        base["allowPlainHttp"] = "true"
    return {**base, **extra}


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_days_per_month_is_refused_not_costed(cloud: str, tmp_path: Path) -> None:
    """A scheduler runs days of the week: 10 days a month would have run (and billed) every day."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"schedule": {"hours_per_day": 24, "days_per_month": 10}}))
    mocks, err = refused(cloud, config(cloud, specFile=str(spec)))
    assert not mocks.resources
    assert "days_per_month" in err.problem and "hoursPerDay and daysPerWeek" in (err.fix or "")


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_reserved_pricing_needs_an_owned_reservation(cloud: str, aws_reserved_prices) -> None:
    """The stacks buy no RI, Savings Plan or commitment: reserved is refused with the on-demand figure,
    unless reservationOwned says one already covers the instances."""
    _, on_demand = stack(cloud, config(cloud, pricing="on-demand"))
    mocks, err = refused(cloud, config(cloud, pricing="reserved-1y"))
    assert not mocks.resources
    # refused before any cloud call, the AWS figure counts the load balancer's public IPv4 addresses in the
    # two zones it spans at least; the stack, once its subnets are known, in each of their zones
    figure = float(re.search(r"\$([\d,.]+)/month on demand", err.problem).group(1).replace(",", ""))
    extra_zones = len(ZONE_IDS["us-east-1"]) - 2 if cloud == "aws" else 0
    ipv4 = stack_rate("aws", "public_ipv4", "us-east-1")[1]["usd_per_hour"] * HOURS_PER_MONTH
    assert on_demand["projectedMonthlyUsd"] - figure == pytest.approx(extra_zones * ipv4, abs=0.01)
    assert 'reservationOwned "true"' in (err.fix or "") and "pricing on-demand" in (err.fix or "")
    _, owned = stack(cloud, config(cloud, pricing="reserved-1y", reservationOwned="true"))
    assert owned["projectedMonthlyUsd"] < on_demand["projectedMonthlyUsd"]


@pytest.mark.parametrize("pricing", ["on-demand", "spot"])
@pytest.mark.parametrize("instance_type", ["g5.xlarge", "g5.2xlarge", "g5.12xlarge"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_group_types_cost_at_most_the_costed_type_on_demand(pricing: str, instance_type: str, region: str) -> None:
    """Prioritized on-demand (an on-demand group, a spot group's base) may launch any listed type."""
    mocks, _out = stack("aws", config("aws", pricing=pricing, instanceType=instance_type, **{"aws:region": region}))
    group = mocks.one("aws:autoscaling/group:Group")
    types = [o["instanceType"] for o in group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]]
    od = {o.instance_type: o.price("on-demand", region) for o in offers_for(cloud="aws")}
    assert types[0] == instance_type
    assert all(od[t].usd_per_hour <= od[instance_type].usd_per_hour for t in types), types


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_disks_are_costed_as_declared(cloud: str) -> None:
    """The review's disk row is the declared volume (system + weights), not the weights' part alone."""
    outputs: dict = {}
    doc = preview_json(ROOT / "stacks" / cloud / "__main__.py", f"selfhost-{cloud}", config(cloud), outputs=outputs)
    declared = []
    for step in doc["steps"]:
        inputs = step["newState"]["inputs"]
        declared += [m["ebs"]["volumeSize"] for m in inputs.get("blockDeviceMappings", [])]
        declared += [
            d["diskSizeGb"] for d in inputs.get("disks", []) if step["newState"]["type"].endswith("InstanceTemplate")
        ]
    from selfhost.stack import aws_config, gcp_config

    settings = {**config(cloud)}
    p = aws_config.plan(settings) if cloud == "aws" else gcp_config.plan(settings)
    disk_rows = [line for line in p.review.cost_lines if line.item.startswith("disk ")]
    assert disk_rows and {int(r.item.split()[1]) for r in disk_rows} == {int(d) for d in declared}
    usage_zones = tuple(ZONE_IDS["us-east-1"].values()) if cloud == "aws" else ()
    from selfhost.bill.price import Usage

    bill = bill_preview(parse_preview(doc), Usage(zones=usage_zones))
    billed = sum(line.usd for line in bill.lines if "disk" in line.item)
    assert billed == pytest.approx(sum(r.usd for r in disk_rows), rel=1e-6)


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_group_beyond_the_replica_cap_is_refused(cloud: str) -> None:
    mocks, err = refused(cloud, config(cloud, requestsPerDay=1e9))
    assert not mocks.resources
    assert f"more than the {MAX_REPLICAS:,} a stack declares" in err.problem and "requestsPerDay" in (err.fix or "")
