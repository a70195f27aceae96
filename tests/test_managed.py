"""Managed endpoints beside the fleet and the APIs: SageMaker real-time, Vertex AI prediction, Bedrock Custom
Model Import; their prices refreshed from the clouds' APIs (local stand-ins); `plan` and `compare` show them."""

from __future__ import annotations

import datetime as dt
import json
import math
import random

import pytest
from price_stand_ins import JsonServer, billing_service_answer, price_list_answer, sagemaker_answer, sku

from costing.data.spec import spec_from_dict
from costing.money.managed import billed_windows, hourly_profile, managed_reviews
from selfhost.prices import managed_prices

NOW = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.timezone.utc)
SPEC = "examples/llama-3.1-8b-runpod-a40.yaml"

# The analysis this project grew from ("Economics of AI APIs", its "Cost of Hosting Llama 3 on Major Cloud
# Providers" section, after isaacstechblog.com/blog/llama3-cost-analysis): Google Vertex AI, Llama 3 (8B),
# instance type g2-standard-8, cost/instance/month $623.15.
SOURCE_VERTEX_MACHINE = "g2-standard-8"
SOURCE_VERTEX_MONTHLY = 623.15

# Bedrock Custom Model Import as published (aws.amazon.com/bedrock/pricing, as quoted in a 2026-09-20 run):
# $0.05718 per Custom Model Unit per minute in us-east-1, $1.95 per unit a month of storage; Llama 3.1 8B
# imports as 2 units; 5-minute billing windows; unloaded after 5 idle minutes.
CMU_RATE, CMU_STORAGE, CMU_8B, WINDOW_MIN = 0.05718, 1.95, 2, 5


def spec(rpd: float, peak: float = 1.0, **extra):
    return spec_from_dict(
        {
            "model": "llama-3.1-8b",
            "target": {"offer": "runpod-a40x1-secure"},
            "workload": {"requests_per_day": rpd, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": peak},
            **extra,
        }
    )


def by_label(reviews):
    return {(r.label, r.region): r for r in reviews}


def test_vertex_reproduces_the_source_analysis_example():
    """One g2-standard-8 node serves a light Llama 8B workload; always on: the analysis' $623.15 a month."""
    reviews, _ = managed_reviews(spec(3000, slo={"p90_latency_s": 20}))
    vertex = by_label(reviews)[(f"vertex:{SOURCE_VERTEX_MACHINE}", "us-central1")]
    assert vertex.units == 1 and vertex.slo_met is True
    assert vertex.monthly_usd == pytest.approx(SOURCE_VERTEX_MONTHLY, abs=0.01)
    assert vertex.as_of and "623.15" in vertex.source


def test_instance_endpoints_scale_out_on_the_projection_and_never_to_zero():
    light, heavy = (by_label(managed_reviews(spec(rpd))[0]) for rpd in (10, 400_000))
    key = ("sagemaker:ml.g5.xlarge", "us-east-1")
    assert light[key].units == 1 and light[key].monthly_usd == pytest.approx(1.41 * 730)  # idle: still billed
    assert heavy[key].units > 1
    assert heavy[key].monthly_usd == pytest.approx(heavy[key].units * 1.41 * 730)
    # a peaky day (peak 4x the mean for a quarter of the hours, so nothing off-peak): target tracking runs the
    # peak's instances for 182.5 h and one for the other 547.5 h
    peaky = by_label(managed_reviews(spec(400_000, peak=4.0))[0])[key]
    assert peaky.units > heavy[key].units
    assert peaky.monthly_usd == pytest.approx(1.41 * (182.5 * peaky.units + 547.5 * 1))
    # the count is what one instance's SLO-bound capacity needs for the peak, at the target utilization
    assert (
        heavy[key].capacity_rps * (heavy[key].units - 1) < 400_000 / 86400 <= heavy[key].capacity_rps * heavy[key].units
    )


def test_bedrock_bills_windows_from_the_arrival_profile_and_scales_to_zero():
    def bedrock(s):
        return by_label(managed_reviews(s)[0])[("bedrock-cmi", "us-east-1")]

    one_a_day = bedrock(spec(1))
    p_window = 1 - math.exp(-(1 / 86400) * 60 * (WINDOW_MIN + 5))
    expected = CMU_8B * CMU_RATE * WINDOW_MIN * (730 * 12 * p_window) + CMU_8B * CMU_STORAGE
    assert one_a_day.monthly_usd == pytest.approx(expected, rel=1e-9)
    busy = bedrock(spec(100_000))  # every window billed: the always-on ceiling
    assert busy.monthly_usd == pytest.approx(CMU_8B * CMU_RATE * 60 * 730 + CMU_8B * CMU_STORAGE, rel=1e-6)
    # a business-hours schedule: nothing billed outside it (scaled to zero), so less than around the clock
    office = bedrock(spec(1000, schedule={"hours_per_day": 10, "days_per_week": 5}))
    assert office.monthly_usd < bedrock(spec(1000)).monthly_usd
    seventy = spec_from_dict(
        {
            "model": "llama-3.1-70b",
            "target": {"gpu": "A100"},
            "workload": {"requests_per_day": 100_000, "input_tokens": 1000, "output_tokens": 250},
        }
    )
    assert by_label(managed_reviews(seventy)[0])[("bedrock-cmi", "us-east-1")].gpus == "8 CMU/copy"


def test_the_window_formula_matches_a_simulated_month_of_poisson_arrivals():
    """Billing rule, simulated: a copy loads on a request and unloads 5 idle minutes after the last one; every
    5-minute window in which it is loaded is billed. The closed form must match the count."""
    rng = random.Random(7)
    workload = spec(300, peak=3.0).workload
    schedule = spec(300).schedule
    profile = hourly_profile(workload, schedule)
    hours = [rate for h, rate in profile for _ in range(round(h))]
    rng.shuffle(hours)  # the profile's hours in any order: the bill counts them, not their sequence
    billed, t, loaded_until = set(), 0.0, -1.0
    for hour, rate in enumerate(hours):
        t = max(t, hour * 3600.0)
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= (hour + 1) * 3600:
                t = (hour + 1) * 3600.0
                break
            start = max(t, loaded_until)
            loaded_until = t + 300
            billed.update(range(int(start // 300), int(loaded_until // 300) + 1))
    expected = billed_windows(profile, WINDOW_MIN, 5)
    assert len(billed) == pytest.approx(expected, rel=0.05)


# ------------------------------------------------------------------------------ prices refresh


@pytest.fixture
def aws_keys(monkeypatch, tmp_path):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }.items():
        monkeypatch.setenv(key, value)


def test_sagemaker_hosting_prices_from_the_price_list_api(aws_keys, monkeypatch):
    prices = {("ml.g6.xlarge", "us-east-1"): 1.2, ("ml.g5.xlarge", "eu-west-1"): 1.58}
    ec2 = price_list_answer({("g5.xlarge", "us-east-1"): (1.0, 0.6, 0.4)})
    with JsonServer(sagemaker_answer(prices, fallback=ec2)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        rows = managed_prices.refresh_sagemaker(["us-east-1", "eu-west-1"], NOW)
    got = {(r["instance_type"], r["region"]): r for r in rows}
    assert {k: r["usd_per_hour"] for k, r in got.items()} == prices  # exactly what the API priced, nothing invented
    assert all(
        r["cloud"] == "sagemaker" and r["as_of"] == "2026-11-30" and "AmazonSageMaker" in r["source"] for r in rows
    )
    bodies = [body for _, _, body in server.requests]
    assert {b["ServiceCode"] for b in bodies} == {"AmazonSageMaker"}
    assert all({f["Field"]: f["Value"] for f in b["Filters"]}["component"] == "Hosting" for b in bodies)


VERTEX_SKUS = [
    sku("Vertex AI: Online/Batch Prediction G2 Instance Core running in Americas", "OnDemand", ["us-central1"], 0.0287),
    sku(
        "Vertex AI: Online/Batch Prediction G2 Instance Ram running in Americas",
        "OnDemand",
        ["us-central1"],
        0.00337,
        "GiBy.h",
    ),
    sku("Vertex AI: Online/Batch Prediction Nvidia L4 GPU running in Americas", "OnDemand", ["us-central1"], 0.644),
    sku("Vertex AI: Training G2 Instance Core running in Americas", "OnDemand", ["us-central1"], 9.0),  # not serving
    sku("Vertex AI: Online/Batch Prediction G2 Instance Core running in EMEA", "OnDemand", ["europe-west4"], 0.03),
]


def test_vertex_prediction_node_hours_from_the_billing_catalog():
    from google.auth.credentials import AnonymousCredentials

    from selfhost.prices import gcp_billing

    with JsonServer(billing_service_answer("C7E2-9256-1C43", VERTEX_SKUS)) as server:
        client = gcp_billing.client(endpoint=server.url, credentials=AnonymousCredentials())
        rows = managed_prices.refresh_vertex(["us-central1", "europe-west4"], NOW, client)
    got = {(r["instance_type"], r["region"]): r["usd_per_hour"] for r in rows}
    assert got[("g2-standard-8", "us-central1")] == pytest.approx(8 * 0.0287 + 32 * 0.00337 + 0.644)
    assert got[("g2-standard-48", "us-central1")] == pytest.approx(48 * 0.0287 + 192 * 0.00337 + 4 * 0.644)
    assert not [k for k in got if k[1] == "europe-west4"]  # a region without all three parts stays unpriced
    assert {r["cloud"] for r in rows} == {"vertex"}


def test_a_refreshed_snapshot_prices_the_managed_rows_plan_shows(aws_keys, monkeypatch, tmp_path, selfhost):
    from selfhost.prices import snapshot

    with JsonServer(sagemaker_answer({("ml.g6.xlarge", "us-east-1"): 1.01})) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        rows = managed_prices.refresh_sagemaker(["us-east-1"], NOW)
    snapshot.write(rows, NOW, folder=tmp_path / "selfhost" / "prices")
    env = {"XDG_CACHE_HOME": str(tmp_path), "SELFHOST_PRICES": ""}
    out = selfhost("plan", "--spec", SPEC, "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    managed = {(m["service"], m["machine"], m["region"]): m for m in json.loads(out.stdout)["three_way"]["managed"]}
    g6 = managed[("sagemaker", "ml.g6.xlarge", "us-east-1")]
    assert g6["usd_per_hour"] == 1.01 and g6["as_of"] == "2026-11-30" and "Price List" in g6["source"]


# ------------------------------------------------------------------------------ plan and compare


def test_plan_lists_sagemaker_bedrock_and_vertex_with_dated_prices_and_break_evens(selfhost):
    out = selfhost("plan", "--spec", SPEC, "--format", "json")
    assert out.returncode == 0, out.stderr
    three = json.loads(out.stdout)["three_way"]
    services = {m["service"] for m in three["managed"]}
    assert services == {"sagemaker", "bedrock-cmi", "vertex"}
    for m in three["managed"]:
        assert m["as_of"] and m["source"] and m["monthly_usd"] > 0
        assert {b["against"].split()[0] for b in m["break_even"]} == {"self-hosted", "API"}
    kinds = [o["kind"] for o in three["options"]]
    assert kinds == ["self-hosted", "managed", "api"]
    assert len(three["break_even"]) == 3  # each pair of the three
    table = selfhost("plan", "--spec", SPEC).stdout
    assert "Three-way" in table and "Bedrock Custom Model Import" in table and "SageMaker" in table


def test_break_even_is_where_the_bills_cross():
    from costing.money.review import cost_review
    from costing.money.three_way import three_way

    s = spec(20, slo={"p90_latency_s": 20})
    tw = three_way(cost_review(s))
    bedrock = next(v for k, v in tw.managed_vs.items() if k.startswith("bedrock-cmi (us-east-1)"))
    vs_vm = bedrock[0]
    assert vs_vm.requests_per_day is not None
    below, above = vs_vm.requests_per_day * 0.9, vs_vm.requests_per_day * 1.1
    bed = next(m for m in tw.managed if m.service == "bedrock-cmi" and m.region == "us-east-1")
    from costing.money.managed import monthly_at

    vm = tw.selfhost.cost_at
    assert (monthly_at(bed, s, below) < vm(below)) and (monthly_at(bed, s, above) > vm(above))


def test_compare_searches_every_offer_region_pricing_and_managed_endpoint(selfhost):
    out = json.loads(selfhost("compare", "--spec", SPEC, "--format", "json").stdout)
    assert out["candidates"] >= 300
    rows = out["offers"]
    assert {r["kind"] for r in rows} == {"self-hosted", "managed"}
    assert {r["pricing"] for r in rows} >= {"on-demand", "spot", "reserved-1y", "reserved-3y"}
    assert len({r["region"] for r in rows}) >= 9
    costs = [r["monthly_usd"] for r in rows if r["meets_slo"] is not False]
    assert costs == sorted(costs)
    gcp = json.loads(selfhost("compare", "--spec", SPEC, "--cloud", "gcp", "--format", "json").stdout)["offers"]
    assert {r["cloud"] for r in gcp} == {"gcp"} and any(r["offer"].startswith("vertex:") for r in gcp)
    spot = json.loads(selfhost("compare", "--spec", SPEC, "--pricing", "spot", "--format", "json").stdout)["offers"]
    assert {r["pricing"] for r in spot} == {"spot"}  # managed endpoints have no spot price
    east = json.loads(selfhost("compare", "--spec", SPEC, "--region", "us-east-1", "--format", "json").stdout)
    assert {r["region"] for r in east["offers"]} == {"us-east-1"}


def test_compare_marks_a_candidate_whose_disk_has_no_dated_rate(selfhost):
    from costing.data.catalog import regional_rate

    out = json.loads(selfhost("compare", "--spec", SPEC, "--cloud", "aws", "--format", "json").stdout)
    rows = [r for r in out["offers"] if r["kind"] == "self-hosted"]
    unpriced = [r for r in rows if regional_rate("aws", "storage", r["region"]) is None]
    assert unpriced and len(unpriced) < len(rows)
    assert all(len(r["not_priced"]) == 1 and "no dated disk rate for aws" in r["not_priced"][0] for r in unpriced)
    assert all(r["not_priced"] == [] for r in rows if r not in unpriced)
    table = selfhost("compare", "--spec", SPEC, "--cloud", "aws", "--top", "0").stdout
    assert f"{unpriced[0]['monthly_usd']:,.2f}+" in table and "a lower bound" in table
    priced = next(r for r in rows if not r["not_priced"])
    assert f"{priced['monthly_usd']:,.2f}+" not in table


def test_the_chart_draws_the_cheapest_endpoint_of_each_managed_service(tmp_path, selfhost):
    from costing.money.cost_chart import cost_curves
    from costing.money.managed import monthly_at
    from costing.money.review import cost_review
    from costing.money.three_way import three_way

    s = spec(3000, slo={"p90_latency_s": 20})
    review = cost_review(s)
    assert cost_curves(review)["managed_usd"] == {}  # a review without the three-way draws no managed line
    review.three_way = three_way(review)
    data = cost_curves(review)
    assert {k.split(":")[1].split()[0] for k in data["managed_usd"]} == {"vertex", "sagemaker", "bedrock-cmi"}
    sagemaker = next(m for m in review.three_way.managed if m.service == "sagemaker")  # the cheapest first
    line = data["managed_usd"][f"managed: {sagemaker.label} ({sagemaker.region})"]
    assert line == [monthly_at(sagemaker, s, x) for x in data["requests_per_day"]]
    out = selfhost("plan", "--spec", SPEC, "--chart", str(tmp_path / "c.png"))
    assert out.returncode == 0 and (tmp_path / "c.png").stat().st_size > 10_000


def test_compare_in_a_region_nothing_prices_names_the_priced_regions(selfhost):
    out = selfhost("compare", "--spec", SPEC, "--region", "mars")
    assert out.returncode == 2 and "has a price for region mars" in out.stderr
    assert "us-east-1" in out.stderr and "Traceback" not in out.stderr
