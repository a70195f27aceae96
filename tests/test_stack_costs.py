"""What a Pulumi stack runs besides its replicas (load balancer, WAF policy, weights mirror) is costed in
its review, from the prices in costing/data/offers.yaml; `selfhost plan` of the same spec has none of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_stack_aws import BASE as AWS
from test_stack_gcp import BASE as GCP

from costing.money.price_age import dated_prices
from costing.money.review import GIB_IN_GB, cost_review
from costing.money.spend import HOURS_PER_MONTH
from selfhost.stack import aws_config, gcp_config

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
    # the total is the plain review's plus these rows; no WAF row (AWS limits callers with a security group)
    plain = cost_review(review.spec, cloud_group=True, boot_disk_gb=aws_config.ROOT_BASE_GB)
    assert review.monthly_usd == pytest.approx(plain.monthly_usd + fixed.usd + lcu.usd + mirror.usd)
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
    assert review.monthly_usd == pytest.approx(plain.monthly_usd + mirror.usd)


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
