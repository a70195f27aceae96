"""Issue 10: what is costed is what runs (reserved billing, headroom, replicas, schedules, impossible SLOs)."""

from __future__ import annotations

import json

import pytest
from cli_inprocess import one_line_error, run_cli

from costing.data.catalog import get_offer
from costing.data.spec import load_spec
from costing.errors import UserError
from costing.money.review import cost_review
from costing.money.spend import HOURS_PER_MONTH

G5 = ["--offer", "aws-g5.xlarge", "--input-tokens", "1000", "--output-tokens", "250"]


def plan_json(*args: str) -> dict:
    result = run_cli("plan", "--model", "llama-3.1-8b", *args, "--format", "json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("pricing", ["reserved-1y", "reserved-3y"])
def test_a_commitment_bills_730_hours_whatever_the_schedule(pricing, aws_reserved_prices):
    part_time = plan_json(*G5, "--requests-per-day", "3000", "--pricing", pricing, "--hours-per-day", "8")
    full_time = plan_json(*G5, "--requests-per-day", "3000", "--pricing", pricing)
    compute = [c for c in part_time["cost_lines"] if c["pricing"] == pricing]
    assert compute and all(c["hours"] == HOURS_PER_MONTH for c in compute)
    assert part_time["billed_hours_per_month"] == HOURS_PER_MONTH and part_time["hours_per_month"] < 250
    assert part_time["monthly_usd"] == pytest.approx(full_time["monthly_usd"], rel=0.01)
    assert any("commitment" in n and "730" in n for n in part_time["notes"])


def test_reserved_at_8_hours_is_no_cheaper_than_on_demand_at_8_hours_by_accident(aws_reserved_prices):
    on_demand = plan_json(*G5, "--requests-per-day", "3000", "--hours-per-day", "8")
    reserved = plan_json(*G5, "--requests-per-day", "3000", "--hours-per-day", "8", "--pricing", "reserved-3y")
    price = get_offer("aws-g5.xlarge").price("reserved-3y").usd_per_hour
    compute = sum(c["usd"] for c in reserved["cost_lines"] if c["pricing"] == "reserved-3y")
    assert compute == pytest.approx(price * HOURS_PER_MONTH, rel=1e-3)  # $110-ish issue figure becomes ~$330
    assert reserved["monthly_usd"] > on_demand["monthly_usd"]


def test_impossible_slo_exits_2_naming_the_term_and_the_cheapest_fix():
    line = one_line_error(
        run_cli("plan", "--model", "llama-3.1-8b", *G5, "--requests-per-day", "1000000", "--p90-latency-s", "5"),
        "p90 latency SLO of 5 s",
        "decode",
    )
    assert "cheapest catalog configuration that meets it is" in line


def test_slo_no_catalog_configuration_meets_says_so():
    line = one_line_error(
        run_cli(
            "plan",
            "--model",
            "llama-3.1-405b",
            "--precision",
            "awq",
            "--offer",
            "aws-p4d.24xlarge",
            "--requests-per-day",
            "100",
            "--input-tokens",
            "1000",
            "--output-tokens",
            "4000",
            "--p90-latency-s",
            "1",
        ),
        "SLO",
    )
    assert "no catalog configuration meets it" in line


def test_replicas_are_sized_at_the_target_utilization_and_the_review_prints_it():
    # a peak of 3.5 replicas' worth of requests (from the projection itself, whatever the calibration): 4 at
    # full utilization, 5 at 80%, 7 at 50%
    per_replica = plan_json(*G5, "--requests-per-day", "200000", "--peak-to-mean", "2")["projection"]["requests_per_s"]
    args = (*G5, "--requests-per-day", str(round(3.5 * per_replica * 86400 / 2)), "--peak-to-mean", "2")
    full = plan_json(*args, "--target-utilization", "1.0")
    default = plan_json(*args)
    half = plan_json(*args, "--target-utilization", "0.5")
    assert default["target_utilization"] == 0.8
    assert full["replicas"] < default["replicas"] < half["replicas"]
    per_replica = default["projection"]["requests_per_s"]
    assert default["replicas"] * per_replica * 0.8 >= default["workload"]["peak_requests_per_s"]
    table = run_cli("plan", "--model", "llama-3.1-8b", *args)
    assert table.code == 0 and "80% target utilization" in table.stdout


def test_spot_service_prices_its_on_demand_base_replica_as_a_row():
    spec = load_spec("templates/specs/llama-3.1-8b-gcp-l4-spot-service.yaml")
    review = cost_review(spec)
    rows = {c.pricing: c for c in review.cost_lines}
    assert rows["on-demand"].replicas == review.fleet.base_ondemand_replicas == 1
    assert review.fleet.min_replicas >= 2  # availability high is the default for spot services
    assert review.monthly_usd == pytest.approx(sum(c.usd for c in review.cost_lines))
    # expected replica-hours: the peak replicas run only the peak share of the hours
    peak = [c for c in review.cost_lines if c.item.startswith("peak")]
    assert peak and peak[0].hours < review.hours_per_month


def test_review_exposes_the_schedule_the_deployment_must_run():
    d = plan_json(*G5, "--requests-per-day", "3000", "--hours-per-day", "10", "--days-per-week", "5")
    assert d["schedule"]["part_time"] is True
    assert d["schedule"]["hours_per_day"] == 10 and d["schedule"]["days_per_week"] == 5


def test_runpod_refuses_a_part_time_schedule_and_multi_node():
    base = ["plan", "--model", "llama-3.1-8b", "--offer", "runpod-a40x1-secure", "--requests-per-day", "3000"]
    base += ["--input-tokens", "1000", "--output-tokens", "250"]
    one_line_error(run_cli(*base, "--hours-per-day", "8"), "RunPod", "schedule")
    with pytest.raises(UserError, match="single machines"):
        cost_review(
            load_spec(
                None,
                model="llama-3.1-70b",
                target={"cloud": "runpod", "gpu": "A40", "gpus": 8, "nodes": 4},
                workload={"requests_per_day": 10, "input_tokens": 100, "output_tokens": 10},
            )
        )


def test_compare_with_nothing_that_fits_exits_2_with_the_closest_misses():
    line = one_line_error(
        run_cli(
            "compare",
            "--model",
            "llama-3.1-405b",
            "--cloud",
            "runpod",
            "--requests-per-day",
            "10",
            "--input-tokens",
            "100",
            "--output-tokens",
            "10",
        ),
        "closest misses",
    )
    assert "runpod-" in line


def test_json_is_json_all_the_way_down():
    d = plan_json(*G5, "--requests-per-day", "3000")
    params = d["projection"]["assumptions"]["params"]
    assert isinstance(params, dict) and all(isinstance(v, dict) for v in params.values())
    text = run_cli("plan", "--model", "llama-3.1-8b", *G5, "--requests-per-day", "3000", "--format", "json").stdout

    def refuse(name):
        raise AssertionError(f"non-finite {name} in JSON")

    json.loads(text, parse_constant=refuse)


def test_availability_high_is_refused_where_one_machine_runs():
    from selfhost.skypilot import render

    high = {
        "model": "llama-3.1-8b",
        "availability": "high",
        "target": {"offer": "aws-g5.xlarge"},
        "workload": {"requests_per_day": 100, "input_tokens": 100, "output_tokens": 10},
    }
    with pytest.raises(UserError, match="dev cluster is one machine"):
        render.render_task(load_spec(None, **high))
    with pytest.raises(UserError, match="at least 2 replicas"):
        cost_review(load_spec(None, **{**high, "target": {"offer": "aws-g5.xlarge", "replicas": 1}}))
    assert cost_review(load_spec(None, **high)).replicas >= 2  # `plan` prices two machines


def test_a_runpod_stack_refuses_a_part_time_schedule_in_config_words():
    from pathlib import Path

    import yaml

    from selfhost.stack import runpod_config

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "stacks/runpod/Pulumi.dev.yaml").read_text())["config"]
    config = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("selfhost-runpod:")}
    config.update(apiKey="sk-test-key-0123456789", hfToken="hf_test", hoursPerDay="8")
    with pytest.raises(UserError) as err:
        runpod_config.plan(config)
    assert "config hoursPerDay 24" in err.value.line() and "--hours-per-day" not in err.value.line()
