"""Prices per region and zone: --region chooses the price, spot names its zone and date, stale prices warn."""

from __future__ import annotations

import json

PLAN = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--pricing", "spot"]
WORK = ["--requests-per-day", "3000", "--input-tokens", "1000", "--output-tokens", "250"]


def _json(selfhost, *args):
    out = selfhost(*PLAN, *WORK, *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_region_chooses_the_spot_market_and_the_review_names_zone_and_date(selfhost):
    from costing.data.catalog import get_offer

    eu, us = _json(selfhost, "--region", "eu-west-1"), _json(selfhost)
    offer = get_offer("aws-g5.xlarge")
    eu_zones = {r.zone: r.usd_per_hour for r in offer.prices if r.region == "eu-west-1" and r.pricing == "spot"}
    assert eu["target"]["region"] == "eu-west-1" and eu["target"]["zone"] in eu_zones
    assert eu["target"]["hourly_usd"] == min(eu_zones.values()) != us["target"]["hourly_usd"]
    assert us["target"]["region"] == "us-east-1" and eu["target"]["price_derived"] is False
    assert eu["target"]["price_as_of"] and all(p["as_of"] for p in eu["prices"]["used"])
    table = selfhost(*PLAN, *WORK, "--region", "eu-west-1").stdout
    assert f"eu-west-1 {eu['target']['zone']}" in table and f"price as of {eu['target']['price_as_of']}" in table


def test_an_unpriced_region_is_refused_listing_the_priced_ones(selfhost):
    out = selfhost(*PLAN, *WORK, "--region", "ap-south-1")
    assert out.returncode == 2 and "no price for region ap-south-1" in out.stderr
    priced = "ap-northeast-1, eu-central-1, eu-west-1, us-east-1, us-east-2, us-west-2"
    assert priced in out.stderr and "Traceback" not in out.stderr
    out = selfhost("plan", "--model", "llama-3.1-8b", "--gpu", "L4", "--cloud", "gcp", *WORK, "--region", "mars-1")
    assert out.returncode == 2 and "us-central1" in out.stderr


def test_old_prices_warn_and_max_price_age_days_fails_ci(selfhost):
    old = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", *WORK]  # its disk rate is of 2026-02-24
    out = selfhost(*old)
    warned = [line for line in out.stdout.splitlines() if line.startswith("warning:")]
    assert out.returncode == 0 and len(warned) == 1, warned  # one line, naming the oldest
    warning = " ".join(out.stdout[out.stdout.index("warning:") :].split())
    assert "the oldest aws storage (us-east-1): 279 days old" in warning
    gate = selfhost(*old, "--max-price-age-days", "30")
    assert gate.returncode == 2 and "older than 30 days" in gate.stderr
    fresh = selfhost("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", *WORK, "--format", "json")
    assert not [w for w in json.loads(fresh.stdout)["prices"]["warnings"] if "aws-g5.xlarge" in w]
    bad = selfhost(*PLAN, *WORK, "--max-price-age-days", "-1")
    assert bad.returncode == 2 and "--max-price-age-days" in bad.stderr


def test_the_stack_provider_region_chooses_the_price(monkeypatch):
    """AWS_REGION (aws:region) and a GCP zone are where the stack runs: the review prices that region."""
    import base64

    from stack_mocks import plain, refused, stack

    from costing.data.spec import spec_from_dict
    from costing.money.review import cost_review
    from selfhost.stack import aws_config, gcp_config
    from selfhost.stack.plan import stack_parts

    work = {
        "requestsPerDay": "3000",
        "inputTokens": "1000",
        "outputTokens": "250",
        "apiKey": "sk-test-key-0123456789",
        "hfToken": "h",
    }
    base = {
        "model": "llama-3.1-8b",
        "pricing": "spot",
        "allowedCidrs": ["203.0.113.0/24"],
        "allowPlainHttp": "true",
        **work,
    }
    spec = {"model": "llama-3.1-8b", "workload": {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250}}

    def monthly(offer, region, zones=()):  # the fleet the stacks run (sized as a service) plus what they run beside it
        target = {"offer": offer, "pricing": "spot", "region": region}
        cloud = offer.split("-", 1)[0]
        resources, counts = stack_parts(cloud, ("203.0.113.0/24",), zones)
        review = cost_review(
            spec_from_dict({**spec, "target": target, "sky": {"service": True}}),
            weights_mirror=f"the stack's {'S3' if cloud == 'aws' else 'GCS'} weights mirror",
            stack_resources=resources,
            stack_counts=counts,
            spot_zones=zones,
            cloud_group=True,
            boot_disk_gb=aws_config.ROOT_BASE_GB if cloud == "aws" else gcp_config.BOOT_BASE_GB,  # disks as declared
        )
        return round(review.monthly_usd, 2)

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    mocks, out = stack("aws", {**base, "instanceType": "g5.xlarge"})
    # the group spans the mock VPC's three zones: its spot replicas cost their mean market price
    zones = ("euw1-az1", "euw1-az2", "euw1-az3")
    assert out["projectedMonthlyUsd"] == monthly("aws-g5.xlarge", "eu-west-1", zones)
    assert monthly("aws-g5.xlarge", "eu-west-1", zones) > monthly("aws-g5.xlarge", "eu-west-1")  # cheapest zone
    assert out["projectedMonthlyUsd"] != monthly("aws-g5.xlarge", "us-east-1", ("use1-az1", "use1-az4", "use1-az6"))
    script = base64.b64decode(plain(mocks.one("aws:ec2/launchTemplate:LaunchTemplate")["userData"])).decode()
    assert "--region eu-west-1" in script
    mocks, out = stack("gcp", {**base, "machineType": "g2-standard-8", "gcp:zone": "europe-west4-b"})
    assert out["projectedMonthlyUsd"] == monthly("gcp-g2-standard-8", "europe-west4")
    assert out["projectedMonthlyUsd"] != monthly("gcp-g2-standard-8", "us-central1")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    mocks, err = refused("aws", {**base, "instanceType": "g5.xlarge"})
    assert "no price for region ap-south-1" in str(err) and mocks.resources == []


def test_compare_in_a_region_ranks_the_offers_priced_there(selfhost):
    args = ["compare", "--model", "llama-3.1-8b", "--pricing", "spot", "--region", "europe-west4", *WORK]
    out = json.loads(selfhost(*args, "--format", "json").stdout)
    assert out["offers"] and {o["cloud"] for o in out["offers"]} == {"gcp"}
    assert all(
        "no price for region europe-west4" in s["reason"] for s in out["skipped"] if s["offer"].startswith("aws")
    )


def test_skypilot_tasks_pin_the_region_the_review_priced():
    from costing.data.spec import spec_from_dict
    from selfhost.skypilot import render as sky

    def task(**target):
        return sky.render_task(spec_from_dict({"model": "llama-3.1-8b", "target": target}))["resources"]

    assert task(offer="aws-g5.xlarge", pricing="spot", region="eu-west-1")["region"] == "eu-west-1"
    assert task(offer="aws-g5.xlarge")["region"] == "us-east-1"  # the offer's default, as `plan` prices it
    assert task(cloud="gcp", gpu="L4", region="europe-west4")["region"] == "europe-west4"
    assert task(cloud="runpod", gpu="A40", region="RO")["region"] == "RO"  # Community -> Secure, same region
