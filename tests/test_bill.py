"""`selfhost bill`: the declared resources priced from the catalog.

The previews are what `pulumi preview --json` prints, produced by running the real programs (the shipped
stacks/<cloud>/__main__.py and tests/data/bill/small, a program the kit did not write) under Pulumi's
mocks (selfhost.bill.mock_preview); the bill runs through the real console entry point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_selfhost
from stack_mocks import example_config
from test_golden import check_golden

from costing.data.catalog import offers_for
from costing.money.spend import HOURS_PER_MONTH
from selfhost.bill.declared import parse_preview
from selfhost.bill.mock_preview import preview_json
from selfhost.bill.price import Usage, bill_preview
from selfhost.stack.preview import ZONE_IDS

SMALL = ROOT / "tests" / "data" / "bill" / "small" / "__main__.py"
US_EAST_1 = tuple(ZONE_IDS["us-east-1"].values())  # the zones the mocks' subnets are in


def shipped_preview(cloud: str, **extra) -> dict:
    config = {**example_config(cloud), "apiKey": "sk-test-key-0123456789", "hfToken": "t", **extra}
    if cloud != "runpod":
        config.setdefault("allowPlainHttp", "true")
    return preview_json(ROOT / "stacks" / cloud / "__main__.py", f"selfhost-{cloud}", config)


def small_preview() -> dict:
    return preview_json(SMALL, "bill-small", {"aws:region": "us-east-1"})


def bill_cli(tmp_path: Path, doc: dict | str, *args: str):
    path = tmp_path / "preview.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return run_selfhost("bill", str(path), *args)


USAGE = ("--requests-per-day", "3000", "--input-tokens", "1000", "--output-tokens", "250", "--bucket-gb", "16.1")
GOLDEN_CASES = {
    "bill/aws.txt": ("aws", (*USAGE, "--zones", ",".join(US_EAST_1))),
    "bill/gcp.txt": ("gcp", USAGE),
    "bill/runpod.txt": ("runpod", ()),
    "bill/small.txt": ("small", ()),
    "bill/small.md": ("small", ("--format", "markdown")),
    "bill/small.json": ("small", ("--format", "json")),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_bill_of_a_preview_matches_golden(name: str, tmp_path: Path, update_golden: bool) -> None:
    what, args = GOLDEN_CASES[name]
    doc = small_preview() if what == "small" else shipped_preview(what)
    out = bill_cli(tmp_path, doc, *args)
    assert out.returncode == 0, out.stderr
    check_golden(name, out.stdout.replace(str(tmp_path), "<tmp>"), update_golden)


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_bill_of_a_rendered_skypilot_template_matches_golden(fmt: str, update_golden: bool) -> None:
    out = run_selfhost("bill", "templates/llama-3.1-8b-aws-a10g-spot-service.yaml", "--format", fmt)
    assert out.returncode == 0, out.stderr
    check_golden(f"bill/sky-8b-aws-a10g-spot-service.{'txt' if fmt == 'table' else 'md'}", out.stdout, update_golden)


def test_small_program_bill_is_its_declared_resources_at_catalog_prices() -> None:
    """Each row follows from a declared figure and a catalog rate (not from a stored total)."""
    bill = bill_preview(parse_preview(small_preview()))
    by = {(line.resource.rsplit("::", 1)[-1], line.item.split(",")[0]): line for line in bill.lines}
    od = {o.instance_type: o.price("on-demand", "us-east-1").usd_per_hour for o in offers_for(cloud="aws")}
    assert by[("box", "g5.xlarge on-demand")].usd == pytest.approx(od["g5.xlarge"] * HOURS_PER_MONTH)
    group = [line for line in bill.lines if line.resource.endswith("::workers")]
    compute = sum(line.usd for line in group if "g5.2xlarge" in line.item)
    # min 2 always, the 2 above min for the peak share of the hours
    assert compute == pytest.approx(od["g5.2xlarge"] * HOURS_PER_MONTH * (2 + 2 * Usage().peak_hours_share))
    disks = [line for line in bill.lines if "GB" in line.item]
    assert {round(line.usd / line.units / 0.08, 3) for line in disks} == {60, 200, 80}  # gp3 GB as declared
    assert not bill.unpriced
    assert "aws:ec2/launchTemplate:LaunchTemplate::workers" in bill.free


def test_budget_gate_passes_and_fails_on_a_complete_bill(tmp_path: Path) -> None:
    doc = small_preview()
    total = bill_preview(parse_preview(doc)).monthly_usd
    ok = bill_cli(tmp_path, doc, "--max-monthly-usd", str(round(total + 1)))
    assert ok.returncode == 0, ok.stderr
    over = bill_cli(tmp_path, doc, "--max-monthly-usd", str(round(total - 1)))
    assert over.returncode == 2
    assert over.stderr.count("\n") == 1 and "over the budget" in over.stderr


def test_budget_gate_is_refused_when_it_passes_only_on_unpriced_resources(tmp_path: Path) -> None:
    """The shipped GCP stack runs a forwarding rule, a Cloud Armor policy and VMs' external addresses the
    catalog has no dated rate for: a budget its priced total meets is refused (one line naming every unpriced
    item and the opt-in), unless --allow-unpriced gates on the priced total, which the output says."""
    doc = shipped_preview("gcp")
    unpriced = json.loads(bill_cli(tmp_path, doc, *USAGE, "--format", "json").stdout)["not_priced"]
    assert any(u["resource"].startswith("gcp:compute/globalForwardingRule:") for u in unpriced)
    out = bill_cli(tmp_path, doc, *USAGE, "--max-monthly-usd", "1000000")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert "\n" not in line and "Fix:" in line and "--allow-unpriced" in line
    assert f"{len(unpriced)} unpriced item(s)" in line and all(u["resource"] in line for u in unpriced)
    allowed = bill_cli(tmp_path, doc, *USAGE, "--max-monthly-usd", "1000000", "--allow-unpriced")
    assert allowed.returncode == 0, allowed.stderr
    assert "budget gate on the priced total (--allow-unpriced)" in allowed.stderr
    # over budget on the priced part alone: over budget, whatever is unpriced
    over = bill_cli(tmp_path, doc, *USAGE, "--max-monthly-usd", "10")
    assert over.returncode == 2 and "over the budget" in over.stderr


def test_aws_stack_secrets_and_public_ipv4_are_billed_at_dated_rates(tmp_path: Path) -> None:
    """The shipped AWS stack's two Secrets Manager secrets, its internet-facing ALB's addresses (one per
    subnet it is in) and each instance's auto-assigned address are priced; with usage given nothing is
    unpriced, so a budget gate on it passes or fails on the whole bill."""
    from costing.data.catalog import stack_rate

    bill = bill_preview(
        parse_preview(shipped_preview("aws")),
        Usage(requests_per_day=3000, input_tokens=1000, output_tokens=250, bucket_gb=16.1, zones=US_EAST_1),
    )
    assert not bill.unpriced
    ipv4 = stack_rate("aws", "public_ipv4", "us-east-1")[1]["usd_per_hour"]
    secret = stack_rate("aws", "secrets", "us-east-1")[1]["usd_per_month"]
    secrets = [line for line in bill.lines if line.resource.startswith("aws:secretsmanager/secret:Secret::")]
    assert len(secrets) == 2 and all(line.usd == pytest.approx(secret) for line in secrets)
    [lb_ips] = [line for line in bill.lines if "load balancer (3 subnets)" in line.item]
    assert lb_ips.usd == pytest.approx(3 * ipv4 * HOURS_PER_MONTH)
    [own] = [line for line in bill.lines if line.item.startswith("public IPv4 address per instance")]
    assert own.usd == pytest.approx(own.units * ipv4 * HOURS_PER_MONTH) and own.units > 0
    # the stack declares the address either way: a subnet's default does not change the bill
    assert "(associatePublicIpAddress)" in own.item
    same = bill_preview(parse_preview(shipped_preview("aws")), Usage(subnet_public_ip=False))
    assert [line.item for line in same.lines if line.item.startswith("public IPv4 address per instance")] == [own.item]
    # a launch template that declares none gets its subnet's default: assumed on (a default VPC's), or off
    doc = shipped_preview("aws")
    for step in doc["steps"]:
        if step["newState"]["type"] == "aws:ec2/launchTemplate:LaunchTemplate":
            del step["newState"]["inputs"]["networkInterfaces"]
    for subnet_ip, expected in ((True, 1), (False, 0)):
        undeclared = bill_preview(parse_preview(doc), Usage(subnet_public_ip=subnet_ip))
        lines = [line for line in undeclared.lines if line.item.startswith("public IPv4 address per instance")]
        assert len(lines) == expected and all("its subnet assigns one" in line.item for line in lines)


def test_unknown_types_are_listed_never_zero_and_deletes_are_not_billed(tmp_path: Path) -> None:
    doc = small_preview()
    doc["steps"].append(
        {
            "op": "create",
            "urn": "u::rds",
            "newState": {"type": "aws:rds/instance:Instance", "urn": "u::db", "inputs": {}},
        }
    )
    deleted = {"op": "delete", "urn": "u::old", "oldState": {"type": "aws:ec2/instance:Instance"}}
    doc["steps"].append(
        {**deleted, "newState": {"type": "aws:ec2/instance:Instance", "inputs": {"instanceType": "p4d.24xlarge"}}}
    )
    bill = bill_preview(parse_preview(doc))
    assert [u.resource for u in bill.unpriced] == ["aws:rds/instance:Instance::db"]
    assert not any("p4d" in line.item for line in bill.lines)
    out = bill_cli(tmp_path, doc, "--format", "json")
    listed = json.loads(out.stdout)["not_priced"]
    assert listed[0]["resource"].endswith("::db") and "not recognised" in listed[0]["why"]


UNKNOWN_ID = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # an id a preview of a create cannot know


def _step(typ: str, name: str, inputs: dict) -> dict:
    return {"op": "create", "urn": f"x::{name}", "newState": {"type": typ, "urn": f"x::{name}", "inputs": inputs}}


def _group(overrides: list[str], schedules: list[dict] | None = None, dist: dict | None = None) -> dict:
    """A preview of a launch template and an Auto Scaling group of 1 (written by hand, as a third party would)."""
    disk = {"ebs": {"volumeSize": 50, "volumeType": "gp3"}}
    template = {"instanceType": overrides[0], "blockDeviceMappings": [disk]}
    policy = {
        "instancesDistribution": dist or {"onDemandPercentageAboveBaseCapacity": 100},
        "launchTemplate": {
            "launchTemplateSpecification": {"launchTemplateId": UNKNOWN_ID},
            "overrides": [{"instanceType": t} for t in overrides],
        },
    }
    steps = [
        _step("aws:ec2/launchTemplate:LaunchTemplate", "lt", template),
        _step("aws:autoscaling/group:Group", "g", {"minSize": 1, "maxSize": 1, "mixedInstancesPolicy": policy}),
    ]
    steps += [_step("aws:autoscaling/schedule:Schedule", f"s{i}", s) for i, s in enumerate(schedules or [])]
    return {"config": {"aws:region": "us-east-1"}, "steps": steps}


def test_on_demand_group_is_priced_at_the_priciest_type_it_may_launch() -> None:
    """Prioritized on-demand launches a later type when the first is short: the bill can only promise the worst."""
    od = {o.instance_type: o.price("on-demand", "us-east-1").usd_per_hour for o in offers_for(cloud="aws")}
    one = bill_preview(parse_preview(_group(["g5.xlarge"])))
    many = bill_preview(parse_preview(_group(["g5.xlarge", "g5.16xlarge"])))
    compute = next(line for line in many.lines if "on-demand" in line.item)
    assert compute.usd_per_hour == od["g5.16xlarge"] > one.lines[0].usd_per_hour == od["g5.xlarge"]


def test_scheduled_actions_bill_only_the_window() -> None:
    """Start Mon-Fri 08:00 at 1, stop 18:00 at 0: 50 h a week of the 168."""
    start = {"recurrence": "0 8 * * 1,2,3,4,5", "minSize": 1, "maxSize": 1}
    stop = {"recurrence": "0 18 * * 1-5", "minSize": 0, "maxSize": 0}
    always = bill_preview(parse_preview(_group(["g5.xlarge"]))).monthly_usd
    part = bill_preview(parse_preview(_group(["g5.xlarge"], [start, stop]))).monthly_usd
    assert part == pytest.approx(always * 50 / 168)


def test_spot_group_on_demand_base_and_zone_mean() -> None:
    dist = {"onDemandBaseCapacity": 1, "onDemandPercentageAboveBaseCapacity": 0}
    doc = _group(["g5.xlarge"], dist=dist)
    doc["steps"][1]["newState"]["inputs"].update(minSize=3, maxSize=3)
    bill = bill_preview(parse_preview(doc), Usage(zones=US_EAST_1))
    offer = next(o for o in offers_for(cloud="aws") if o.instance_type == "g5.xlarge")
    zones = offer.by_zone("spot", "us-east-1")
    mean = sum(zones[z].usd_per_hour for z in US_EAST_1) / len(US_EAST_1)
    spot = next(line for line in bill.lines if line.pricing == "spot")
    base = next(line for line in bill.lines if line.pricing == "on-demand")
    assert (spot.units, base.units) == (2, 1) and spot.usd_per_hour == pytest.approx(mean)


@pytest.mark.parametrize(
    "content, words",
    [("not json", "is not JSON"), ('{"steps": 3}', "not `pulumi preview --json` output"), ("[]", "no steps")],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: str, words: str) -> None:
    out = bill_cli(tmp_path, content)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and words in out.stderr and "Fix:" in out.stderr


def test_bill_golden_files_have_a_case() -> None:
    known = {n.split("/", 1)[1] for n in GOLDEN_CASES} | {
        "sky-8b-aws-a10g-spot-service.txt",
        "sky-8b-aws-a10g-spot-service.md",
    }
    stale = sorted(p.name for p in (ROOT / "tests" / "golden" / "bill").iterdir() if p.name not in known)
    assert not stale, f"golden files with no case: {stale}"


def test_a_task_without_disk_size_is_billed_skypilots_default_disk(tmp_path: Path) -> None:
    """SkyPilot gives a node its default disk when the task declares none: billed, not left out."""
    from sky import resources as sky_resources

    from selfhost.bill.sky import SKY_DEFAULT_DISK_SIZE_GB, bill_task

    assert SKY_DEFAULT_DISK_SIZE_GB == sky_resources.DEFAULT_DISK_SIZE_GB
    task = tmp_path / "task.yaml"
    task.write_text("name: t\nresources:\n  instance_type: g5.xlarge\n  cloud: aws\n  region: us-east-1\n")
    disks = [line for line in bill_task(task).lines if "disk" in line.item]
    assert [line.item for line in disks] == [f"disk {SKY_DEFAULT_DISK_SIZE_GB} GB per node"]
    assert disks[0].usd > 0
