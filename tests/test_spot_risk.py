"""Spot risk in the cost review: every figure follows from costing/data/spot_risk.yaml, the fleet and the
cost table; a non-spot review shows none of it; the JSON carries it; no rate is invented where none is
published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from costing.data.spec import load_spec, spec_from_dict
from costing.money.report import render, review_dict, spot_risk_rows
from costing.money.review import cost_review
from costing.money.spend import HOURS_PER_MONTH
from costing.money.spot_risk import interruption_rate, spot_risk_data
from costing.performance import readiness

AWS_SPOT = "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml"
GCP_SPOT = "templates/specs/llama-3.1-8b-gcp-l4-spot-service.yaml"


def review_of(path: str, **changes):
    data = yaml.safe_load(Path(path).read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    return cost_review(spec_from_dict(data))


def test_every_catalog_aws_spot_type_has_a_dated_band_per_priced_region():
    from costing.data.catalog import catalog, price_rows

    data = spot_risk_data()["aws"]
    assert data["source"] and data["as_of"]
    spot = {(r.instance_type, r.region) for r in price_rows() if r.cloud == "aws" and r.pricing == "spot"}
    types = {o.instance_type for o in catalog().offers.values() if o.cloud == "aws"}
    for instance_type, region in spot:
        assert instance_type in types
        rate = interruption_rate("aws", instance_type, region)
        assert rate.published, (instance_type, region)
        band = data["bands"][data["regions"][region][instance_type]]
        assert rate.band == band["label"] and rate.low == band["low_pct"] / 100


def test_aws_spot_figures_follow_from_the_band_the_fleet_and_the_cold_start():
    rv = review_of(AWS_SPOT)
    risk = rv.spot_risk
    assert risk is not None
    data = spot_risk_data()["aws"]
    band = data["bands"][data["regions"][rv.resolved.price.region][rv.offer.instance_type]]
    low, high = band["low_pct"] / 100, band["high_pct"] / 100
    spot_lines = [c for c in rv.cost_lines if c.pricing == "spot"]
    months = sum(c.replicas * c.hours for c in spot_lines) / HOURS_PER_MONTH
    assert risk.spot_replica_months == pytest.approx(months)
    assert risk.interruptions_per_month == pytest.approx((low * months, (low + high) / 2 * months, high * months))
    cold = readiness.ENGINE_START_S + rv.fit.weight_gib * readiness.GIB / readiness.HF_DOWNLOAD_BYTES_PER_S
    assert risk.cold_start.seconds == pytest.approx(cold)
    assert risk.minutes_without_replica[1] == pytest.approx((low + high) / 2 * months * cold / 60)
    # The fallback is the on-demand base replica the table already carries; the saving is against the same
    # compute all on-demand.
    base = [c for c in rv.cost_lines if c.pricing == "on-demand"]
    assert rv.fleet.base_ondemand_replicas == 1 and risk.ondemand_fallback_usd == pytest.approx(base[0].usd)
    od = rv.offer.price("on-demand", rv.resolved.price.region).usd_per_hour
    compute = [c for c in rv.cost_lines if c.pricing != "storage"]
    all_od = sum(c.replicas * c.hours for c in compute) * od
    assert risk.spot_saving_usd == pytest.approx(all_od - sum(c.usd for c in compute))
    assert 0 < risk.spot_saving_usd < all_od


def test_a_bigger_fleet_means_more_minutes_without_a_replica():
    small = review_of(AWS_SPOT).spot_risk
    busy = review_of(AWS_SPOT, workload={"requests_per_day": 200000}).spot_risk
    assert busy.spot_replica_months > small.spot_replica_months
    assert busy.minutes_without_replica[1] > small.minutes_without_replica[1]


def test_a_weights_bucket_shortens_the_cold_start_and_says_so():
    hf = review_of(AWS_SPOT).spot_risk.cold_start
    store = review_of(AWS_SPOT, sky={"weights_store": "s3://team-weights/llama"}).spot_risk.cold_start
    assert store.weights_from == "s3://team-weights/llama" and hf.weights_from == "Hugging Face"
    assert store.read_bytes_per_s == readiness.BUCKET_READ_BYTES_PER_S
    assert store.seconds < hf.seconds
    assert "assumption" in store.read_basis and "assumption" in store.engine_start_basis
    mirror = cost_review(load_spec(AWS_SPOT), weights_mirror="the stack's S3 weights mirror").spot_risk
    assert mirror.cold_start.seconds == pytest.approx(store.seconds)


def test_an_open_ended_band_uses_its_lower_bound_and_says_so():
    data = spot_risk_data()["aws"]
    region, types = next((r, t) for r, t in data["regions"].items() if 4 in t.values())
    instance_type = next(t for t, band in types.items() if band == 4)
    rate = interruption_rate("aws", instance_type, region)
    assert rate.high is None and rate.central == rate.low == 0.2
    assert "lower bound" in rate.basis


def test_gcp_spot_says_no_published_rate_and_invents_none():
    rv = review_of(GCP_SPOT)
    risk = rv.spot_risk
    assert not risk.rate.published
    assert risk.interruptions_per_month == (None, None, None)
    assert risk.minutes_without_replica == (None, None, None)
    text = dict(spot_risk_rows(rv))["Spot risk"]
    assert "no published rate" in text
    d = review_dict(rv)["spot_risk"]
    assert d["interruption_rate"]["published"] is False
    assert d["minutes_without_replica_per_month"] == {"low": None, "central": None, "high": None}
    assert d["cold_start_s"] > 0 and d["ondemand_fallback_usd"] > 0


def test_an_unrecorded_aws_market_is_not_guessed():
    rate = interruption_rate("aws", "g5.xlarge", "ap-south-1")
    assert not rate.published and rate.low is None and "no Spot Advisor band" in rate.note


def test_a_spot_review_without_an_ondemand_base_says_nothing_falls_back():
    rv = review_of(AWS_SPOT, sky={"service": False})
    assert rv.fleet.base_ondemand_replicas == 0
    assert rv.spot_risk.ondemand_fallback_usd == 0
    assert "no on-demand fallback" in dict(spot_risk_rows(rv))["Spot fallback"]


@pytest.mark.parametrize(
    "path", ["templates/specs/llama-3.1-8b-aws-a10g.yaml", "examples/llama-3.1-8b-runpod-a40.yaml"]
)
def test_a_non_spot_review_shows_none_of_it(path):
    rv = review_of(path, workload={"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250})
    assert rv.spot_risk is None
    assert "spot_risk" not in review_dict(rv)
    for fmt in ("table", "markdown", "json"):
        out = render(rv, fmt)
        assert "Spot risk" not in out and "Cold start" not in out and "spot_risk" not in out


def test_every_format_carries_the_spot_figures():
    rv = review_of(AWS_SPOT)
    d = json.loads(render(rv, "json"))["spot_risk"]
    assert d["interruption_rate"]["band"] == rv.spot_risk.rate.band
    assert d["interruption_rate"]["as_of"] == spot_risk_data()["aws"]["as_of"]
    assert d["interruption_rate"]["central_basis"] == "midpoint of the band"
    assert d["minutes_without_replica_per_month"]["central"] == pytest.approx(
        rv.spot_risk.minutes_without_replica[1], abs=0.05
    )
    assert d["spot_saving_usd"] == pytest.approx(rv.spot_risk.spot_saving_usd, abs=0.01)
    for fmt in ("table", "markdown"):
        out = render(rv, fmt)
        assert "Spot risk" in out and "Cold start" in out and "Spot fallback" in out
        assert rv.spot_risk.rate.band in out


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_spot_stack_reviews_its_cold_start_from_its_own_weights_mirror(cloud):
    from selfhost.stack import aws_config, gcp_config

    common = {
        "model": "llama-3.1-8b",
        "requestsPerDay": "200000",
        "inputTokens": "1000",
        "outputTokens": "250",
        "pricing": "spot",
        "apiKey": "sk-test-key-0123456789",
        "hfToken": "hf_test_token",
        "allowedCidrs": ["203.0.113.0/24"],
        "allowPlainHttp": "true",
    }
    if cloud == "aws":
        p = aws_config.plan({**common, "instanceType": "g5.xlarge"})
    else:
        p = gcp_config.plan({**common, "machineType": "g2-standard-8"})
    cold = p.review.spot_risk.cold_start
    assert "weights mirror" in cold.weights_from
    assert cold.read_bytes_per_s == readiness.BUCKET_READ_BYTES_PER_S
    assert cold.seconds == pytest.approx(readiness.cold_start_s(p.fit.weight_gib, from_bucket=True))


def test_an_old_interruption_band_is_flagged_with_its_age(monkeypatch):
    as_of = str(spot_risk_data()["aws"]["as_of"])
    monkeypatch.setenv("SELFHOST_TODAY", as_of)
    assert not [n for n in review_of(AWS_SPOT).notes if "interruption band" in n]
    monkeypatch.setenv("SELFHOST_TODAY", "2099-01-01")
    flagged = [n for n in review_of(AWS_SPOT).notes if "interruption band" in n]
    assert len(flagged) == 1 and as_of in flagged[0]
    assert not [n for n in review_of(GCP_SPOT).notes if "interruption band" in n]  # nothing published to age
