"""What a Pulumi stack runs besides its replicas (load balancer, WAF policy, weights mirror) is costed in
its review, from the prices in costing/data/offers.yaml; `selfhost plan` of the same spec has none of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_stack_aws import BASE as AWS
from test_stack_gcp import BASE as GCP

from costing.money.price_age import dated_prices
from costing.money.review import BYTES_PER_TOKEN, GIB_IN_GB, PEAK_HOURS_SHARE, cost_review
from costing.money.spend import HOURS_PER_MONTH
from selfhost.stack import aws_config, gcp_config
from selfhost.stack.preview import ZONE_IDS

OFFERS = yaml.safe_load((Path(__file__).parent.parent / "costing/data/offers.yaml").read_text())["clouds"]
STACK_ROWS = ("Application Load Balancer", "external Application Load Balancer", "Cloud Armor", "weights mirror")


def rows(review, prefix):
    return [line for line in review.cost_lines if line.item.startswith(prefix)]


def test_an_aws_stack_review_costs_its_load_balancer_and_weights_mirror():
    review = aws_config.plan(AWS).review
    region = review.resolved.price.region
    what = OFFERS["aws"]["stack_resources"]["load_balancer"]["what"]
    alb = OFFERS["aws"]["stack_resources"]["load_balancer"]["regions"][region]
    [fixed] = [line for line in review.cost_lines if line.item == what]
    assert fixed.usd == pytest.approx(alb["usd_per_hour"] * HOURS_PER_MONTH)
    # LCUs, a labelled minimum: one new connection per request, `new_connections_per_s_per_lcu` per LCU
    [lcu] = rows(review, f"{what} LCUs, minimum: new connections")
    lcu_hours = review.traffic.requests_per_month / 3600 / alb["new_connections_per_s_per_lcu"]
    assert lcu.usd == pytest.approx(lcu_hours * alb["lcu_usd_per_hour"]) and lcu.usd > 0
    [mirror] = rows(review, "weights mirror bucket")
    gb = round(review.fit.weight_gib * GIB_IN_GB, 1)
    assert mirror.usd == pytest.approx(gb * OFFERS["aws"]["bucket"][region]["usd_per_gb_month"])
    # the total is the plain review's plus these rows and the public IPv4 and secret rows (their own test);
    # no WAF row (AWS limits callers with a security group)
    plain = cost_review(review.spec, cloud_group=True, boot_disk_gb=aws_config.ROOT_BASE_GB)
    extra = sum(
        line.usd
        for line in review.cost_lines
        if line.item.startswith(("public IPv4", "Secrets Manager", "internet egress"))
    )
    assert extra > 0
    assert review.monthly_usd == pytest.approx(plain.monthly_usd + fixed.usd + lcu.usd + mirror.usd + extra)
    assert not rows(review, "Cloud Armor")
    listed = {what: (as_of, source) for what, as_of, source in dated_prices(review)}
    assert listed[f"aws load_balancer ({region})"] == (alb["as_of"], alb["source"])
    assert f"aws bucket ({region})" in listed


def test_a_gcp_stack_review_shows_what_has_no_dated_price_as_not_priced():
    review = gcp_config.plan(GCP).review
    priced = OFFERS["gcp"]["stack_resources"]
    for kind in ("load_balancer", "waf"):
        [line] = rows(review, priced[kind]["what"])
        assert f"not priced: {priced[kind]['not_priced']}" in line.item and line.usd == 0
        assert any(note.startswith(line.item) for note in review.notes)
    [mirror] = rows(review, "weights mirror bucket")
    gb = round(review.fit.weight_gib * GIB_IN_GB, 1)
    region = review.resolved.price.region
    assert mirror.usd == pytest.approx(gb * OFFERS["gcp"]["bucket"][region]["usd_per_gb_month"])
    plain = cost_review(review.spec, cloud_group=True, boot_disk_gb=gcp_config.BOOT_BASE_GB)
    [secrets] = rows(review, "Secret Manager secret versions")
    version = OFFERS["gcp"]["stack_resources"]["secrets"]["regions"]["*"]["usd_per_month"]
    assert secrets.usd == pytest.approx(2 * version)  # the API key's and the HF token's, one location each
    [ips] = rows(review, OFFERS["gcp"]["stack_resources"]["public_ipv4"]["what"])  # the VMs' accessConfigs
    assert "not priced" in ips.item and ips.usd == 0
    [egress] = rows(review, OFFERS["gcp"]["stack_resources"]["egress"]["what"])
    assert review.monthly_usd == pytest.approx(plain.monthly_usd + mirror.usd + secrets.usd + egress.usd)


@pytest.mark.parametrize("cloud,region", [("aws", "us-east-1"), ("gcp", "us-central1")])
def test_a_stack_review_prices_the_responses_internet_egress_from_its_workload(cloud, region):
    """The workload says what leaves for the internet: requests a month x output tokens x BYTES_PER_TOKEN (a
    minimum), at the cloud's dated first-tier egress rate; an AWS region without a dated rate: not priced."""
    plan = aws_config.plan if cloud == "aws" else gcp_config.plan
    review = plan(AWS if cloud == "aws" else GCP).review
    rate = OFFERS[cloud]["stack_resources"]["egress"]["regions"]
    per_gb = (rate.get(region) or rate["*"])["usd_per_gb"]
    [egress] = rows(review, OFFERS[cloud]["stack_resources"]["egress"]["what"])
    gb = review.traffic.requests_per_month * review.workload.output_tokens * BYTES_PER_TOKEN / 1e9
    assert egress.usd == pytest.approx(gb * per_gb) and egress.usd > 0 and "minimum" in egress.item
    assert any(what == f"{cloud} egress ({region})" for what, _, _ in dated_prices(review))
    if cloud == "aws":
        eu = aws_config.plan({**AWS, "region": "eu-west-1", "maxMonthlyUsd": None}).review
        [unpriced] = rows(eu, "internet egress")
        assert "not priced: no dated internet egress rate" in unpriced.item and unpriced.usd == 0


def test_an_aws_stack_review_costs_its_public_ipv4_and_secrets_as_declared():
    """Each public IPv4 address (the internet-facing ALB's, one per zone it spans; each replica's) and
    each Secrets Manager secret the stack creates is a row at its dated rate: the review used to leave them
    out while the stack declared them. A secret given by ARN is not the stack's, so not its cost."""
    zones = tuple(sorted(ZONE_IDS["us-east-1"].values()))
    review = aws_config.plan(AWS, zones=zones).review
    ipv4 = OFFERS["aws"]["stack_resources"]["public_ipv4"]["regions"]["*"]["usd_per_hour"]
    secret = OFFERS["aws"]["stack_resources"]["secrets"]["regions"]["*"]["usd_per_month"]
    [lb] = rows(review, "public IPv4 addresses of the load balancer (3 zones")
    assert lb.usd == pytest.approx(3 * ipv4 * HOURS_PER_MONTH)
    [own] = rows(review, "public IPv4 addresses of the replicas")
    fleet = review.fleet
    replicas = fleet.min_replicas + (fleet.max_replicas - fleet.min_replicas) * PEAK_HOURS_SHARE
    assert own.usd == pytest.approx(replicas * review.hours_per_month * ipv4)
    [both] = rows(review, "Secrets Manager secrets")
    assert both.usd == pytest.approx(2 * secret)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbCdEf"
    referenced = aws_config.plan(
        {**{k: v for k, v in AWS.items() if k != "hfToken"}, "hfTokenSecretArn": arn}, zones=zones
    ).review
    [one] = rows(referenced, "Secrets Manager secret")
    assert one.usd == pytest.approx(secret) and referenced.monthly_usd == pytest.approx(review.monthly_usd - secret)
    listed = {what for what, _, _ in dated_prices(review)}
    assert {"aws public_ipv4 (us-east-1)", "aws secrets (us-east-1)"} <= listed


def test_a_gcp_stack_open_to_all_runs_no_cloud_armor_and_costs_none():
    review = gcp_config.plan({**GCP, "allowedCidrs": ["0.0.0.0/0"]}).review
    assert not rows(review, "Cloud Armor")
    assert rows(review, OFFERS["gcp"]["stack_resources"]["load_balancer"]["what"])


@pytest.mark.parametrize("plan", [aws_config.plan, gcp_config.plan])
def test_selfhost_plan_of_the_same_spec_has_no_stack_rows(plan):
    spec = plan(AWS if plan is aws_config.plan else GCP).spec
    review = cost_review(spec)
    assert not [line for line in review.cost_lines if line.item.startswith(STACK_ROWS)]
    assert not any(line.pricing == "stack" for line in review.cost_lines)


def test_the_skypilot_weights_bucket_stays_one_row():
    spec = aws_config.plan(AWS).spec
    review = cost_review(spec.model_copy(update={"sky": spec.sky.model_copy(update={"weights_store": "s3://b/w"})}))
    assert len(rows(review, "weights bucket")) == 1 and not rows(review, "weights mirror bucket")
