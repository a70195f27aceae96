"""What has no dated 2026 price is not costed: RunPod Community Cloud is refused, disks, buckets and a stack's
load balancer in a region without a dated rate are "not priced" rows, and rates differ per region."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from costing.money.price_age import dated_prices
from costing.money.review import BYTES_PER_TOKEN, GIB_IN_GB, cost_review, sky_disk_size_gb

WORK = ["--requests-per-day", "1000", "--input-tokens", "1000", "--output-tokens", "250"]
CLOUDS = yaml.safe_load(resources.files("costing").joinpath("data", "offers.yaml").read_text())["clouds"]


def spec(target: dict, workload: dict | None = None, **extra) -> DeploymentSpec:
    work = workload or {"requests_per_day": 1000, "input_tokens": 1000, "output_tokens": 250}
    return DeploymentSpec.model_validate({"model": "llama-3.1-8b", "target": target, "workload": work, **extra})


def rows(review, prefix):
    return [line for line in review.cost_lines if line.item.startswith(prefix)]


@pytest.mark.parametrize("offer", ["runpod-a40x1-community", "runpod-a40x4-community"])
def test_runpod_community_is_refused_naming_the_refresh_and_secure_cloud(selfhost, offer):
    out = selfhost("plan", "--model", "llama-3.1-8b", "--offer", offer, *WORK)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert f"no dated RunPod Community Cloud price is shipped for {offer}" in line
    assert "selfhost prices refresh --cloud runpod" in line and "RUNPOD_API_KEY" in line
    assert f"--offer {offer.replace('-community', '-secure')}" in line


def test_runpod_a40_without_an_offer_picks_the_priced_secure_cloud():
    review = cost_review(spec({"cloud": "runpod", "gpu": "A40"}))
    assert review.offer.cloud_type == "SECURE" and review.resolved.price.as_of >= "2026-01-01"


def test_disk_and_bucket_rates_are_the_regions_own():
    stored = "gs://weights-bucket/llama"
    by_region = {
        region: cost_review(spec({"cloud": "gcp", "gpu": "L4", "region": region}, sky={"weights_store": stored}))
        for region in ("us-central1", "us-east4", "europe-west4")
    }
    for region, review in by_region.items():
        [disk] = rows(review, "disk ")
        [bucket] = rows(review, "weights bucket")
        rates = CLOUDS["gcp"]
        gb = round(review.fit.weight_gib * GIB_IN_GB, 1)
        assert bucket.usd == pytest.approx(gb * rates["bucket"][region]["usd_per_gb_month"])
        disk_gb = sky_disk_size_gb(review.storage_gb)  # SkyPilot's disk_size: the weights' part + the system's
        assert disk.usd_per_hour * 730 / disk_gb == pytest.approx(rates["storage"][region]["usd_per_gb_month"])
        listed = {what for what, _, _ in dated_prices(review)}
        assert {f"gcp storage ({region})", f"gcp bucket ({region})"} <= listed
    # us-east4 buckets and disks cost more than us-central1's (0.023 vs 0.020, 0.11 vs 0.10 per GB-month)
    assert (
        rows(by_region["us-east4"], "weights bucket")[0].usd > rows(by_region["us-central1"], "weights bucket")[0].usd
    )
    assert rows(by_region["us-east4"], "disk ")[0].usd > rows(by_region["us-central1"], "disk ")[0].usd


def test_an_aws_region_without_a_dated_disk_rate_shows_a_not_priced_row():
    review = cost_review(spec({"offer": "aws-g5.xlarge", "region": "eu-west-1"}))
    [disk] = rows(review, "disk ")
    assert "not priced: no dated disk rate for aws eu-west-1" in disk.item and disk.usd == 0
    assert any(note.startswith(disk.item) and "not in the monthly total" in note for note in review.notes)
    assert not [what for what, _, _ in dated_prices(review) if what.startswith("aws storage")]
    us = cost_review(spec({"offer": "aws-g5.xlarge"}))
    [priced] = rows(us, "disk ")
    assert priced.usd > 0 and "not priced" not in priced.item


def test_a_weights_bucket_in_a_region_without_a_dated_rate_is_refused():
    with pytest.raises(UserError) as err:
        cost_review(
            spec({"offer": "aws-g5.xlarge", "region": "eu-west-1"}, sky={"weights_store": "s3://weights-bucket/llama"})
        )
    assert "no dated aws bucket rate is shipped for region eu-west-1" in err.value.problem
    assert "us-east-1" in err.value.fix


def test_a_stack_in_a_region_without_dated_rates_shows_its_alb_and_mirror_as_not_priced():
    resources_ = ("load_balancer", "weights_mirror")
    eu = cost_review(spec({"offer": "aws-g5.xlarge", "region": "eu-west-1"}), stack_resources=resources_)
    what = CLOUDS["aws"]["stack_resources"]["load_balancer"]["what"]
    [alb] = rows(eu, what)
    assert "not priced" in alb.item and "(eu-west-1)" in alb.item and alb.usd == 0
    assert not rows(eu, f"{what} LCUs")
    [mirror] = rows(eu, "weights mirror bucket")
    assert "not priced: no dated bucket rate for aws eu-west-1" in mirror.item and mirror.usd == 0
    assert eu.monthly_usd == pytest.approx(sum(line.usd for line in eu.cost_lines))
    us = cost_review(spec({"offer": "aws-g5.xlarge"}), stack_resources=resources_)
    assert rows(us, what)[0].usd > 0 and rows(us, "weights mirror bucket")[0].usd > 0


def test_alb_lcus_count_processed_bytes_when_they_exceed_new_connections():
    alb = CLOUDS["aws"]["stack_resources"]["load_balancer"]
    rate = alb["regions"]["us-east-1"]
    # long requests, few of them: bytes drive the LCUs; short requests, many: new connections do
    heavy = cost_review(
        spec({"offer": "aws-g5.xlarge"}, {"requests_per_day": 20000, "input_tokens": 20000, "output_tokens": 2000}),
        stack_resources=("load_balancer",),
    )
    [lcu] = rows(heavy, f"{alb['what']} LCUs, minimum")
    assert "processed bytes" in lcu.item and f"{BYTES_PER_TOKEN} bytes a token assumed" in lcu.item
    gb = heavy.traffic.requests_per_month * (20000 + 2000) * BYTES_PER_TOKEN / 1e9
    assert lcu.hours == pytest.approx(gb / rate["processed_gb_per_hour_per_lcu"])
    assert lcu.hours > heavy.traffic.requests_per_month / 3600 / rate["new_connections_per_s_per_lcu"]
    light = cost_review(
        spec({"offer": "aws-g5.xlarge"}, {"requests_per_day": 20000, "input_tokens": 20, "output_tokens": 5}),
        stack_resources=("load_balancer",),
    )
    [lcu] = rows(light, f"{alb['what']} LCUs, minimum")
    assert "new connections" in lcu.item
    assert lcu.hours == pytest.approx(light.traffic.requests_per_month / 3600 / rate["new_connections_per_s_per_lcu"])


def test_gcp_commitments_are_dated_rows_and_aws_reserved_needs_the_price_list():
    from costing.data.catalog import cloud_info, get_offer

    g2 = get_offer("gcp-g2-standard-8")
    for pricing in ("reserved-1y", "reserved-3y"):
        for region in ("us-central1", "us-east4", "europe-west4"):
            price = g2.price(pricing, region)
            assert price is not None and not price.derived and price.as_of >= "2026-01-01"
            assert price.usd_per_hour < g2.price("on-demand", region).usd_per_hour
    # no AWS reserved price is shipped: refused with the refresh that reads the Price List's Reserved terms,
    # never derived from a dated discount factor
    assert "reserved-1y" not in cloud_info("aws")["discounts"]
    with pytest.raises(UserError, match="never derived from a discount factor") as err:
        cost_review(spec({"offer": "aws-g5.xlarge", "pricing": "reserved-1y"}))
    assert "selfhost prices refresh --cloud aws" in (err.value.fix or "")


EU_PLAN = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--region", "eu-west-1", *WORK]


def test_a_budget_the_priced_total_meets_is_refused_while_a_row_is_not_priced(selfhost):
    """eu-west-1 has no dated EBS rate: its disk row is left out of the total, so a budget that total meets
    would pass on a partial figure. Refused (exit 2, one line naming the row and the opt-in), nothing else
    printed to stderr; --allow-unpriced gates on the priced total and the review says so."""
    total = cost_review(spec({"offer": "aws-g5.xlarge", "region": "eu-west-1"})).monthly_usd
    budget = str(round(total * 2))
    out = selfhost(*EU_PLAN, "--max-monthly-usd", budget)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.strip().splitlines() if x.startswith("error:")]
    assert "would pass only on a partial total" in line and "disk " in line and "--allow-unpriced" in line
    allowed = selfhost(*EU_PLAN, "--max-monthly-usd", budget, "--allow-unpriced", "--format", "json")
    assert allowed.returncode == 0, allowed.stderr
    assert any("budget gate on the priced total" in note for note in json.loads(allowed.stdout)["notes"])
    # over budget on the priced rows alone: refused as over budget, unpriced rows or not
    over = selfhost(*EU_PLAN, "--max-monthly-usd", str(round(total / 2)), "--allow-unpriced")
    assert over.returncode == 2 and "exceeds the budget" in over.stderr
    # a region with every row priced: the same budget passes without the opt-in
    us = selfhost("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", *WORK, "--max-monthly-usd", budget)
    assert us.returncode == 0, us.stderr


def test_a_stack_budget_is_refused_on_unpriced_rows_unless_allow_unpriced():
    """An AWS stack in eu-west-1 (no dated ALB, EBS or S3 rate there) with a budget its priced rows meet:
    `pulumi up` would have passed the gate on a partial total; refused before anything is declared."""
    from test_stack_aws import BASE

    from selfhost.stack import aws_config

    config = {**BASE, "region": "eu-west-1", "maxMonthlyUsd": "100000"}
    with pytest.raises(UserError) as err:
        aws_config.plan(config)
    assert (
        "would pass only on a partial total" in err.value.problem and "Application Load Balancer" in err.value.problem
    )
    assert "config allowUnpriced" in (err.value.fix or "")
    plan = aws_config.plan({**config, "allowUnpriced": "true"})
    assert plan.review.monthly_usd < 100000


def test_launch_sky_refuses_a_budget_met_only_by_a_partial_total(tmp_path):
    """`selfhost launch sky --max-monthly-usd` gates the same review: refused before anything is rendered or
    launched while the disk row (eu-west-1) is not priced, unless --allow-unpriced."""
    from selfhost.skypilot import launch

    eu = spec({"offer": "aws-g5.xlarge", "region": "eu-west-1"})
    with pytest.raises(UserError) as err:
        launch.plan_launch(eu, max_monthly_usd=100000, out_dir=tmp_path)
    assert "would pass only on a partial total" in err.value.problem and not list(tmp_path.iterdir())
    plan = launch.plan_launch(eu, max_monthly_usd=100000, out_dir=tmp_path, allow_unpriced=True)
    assert plan.review.monthly_usd < 100000
