"""`selfhost plan` without a workload: a price review of one always-on replica at full load (issue #11's
"Done when" command), and the commands that size replicas still refusing without one."""

from __future__ import annotations

import json

import pytest
from conftest import run_selfhost

from costing.data.catalog import get_offer

ENV = {"SELFHOST_TODAY": "2026-11-30", "SELFHOST_PRICES": "shipped", "COLUMNS": "200"}
ISSUE = ("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--pricing", "spot")


def _plan(*args: str) -> str:
    out = run_selfhost(*ISSUE, *args, env=ENV)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _json(region: str) -> dict:
    return json.loads(_plan("--region", region, "--format", "json"))


def test_issue_command_prices_eu_west_1_spot_zone_and_date():
    text = _plan("--region", "eu-west-1")
    row = get_offer("aws-g5.xlarge").price("spot", "eu-west-1")
    assert row is not None and row.zone
    assert "no workload given: one replica, full load" in text
    assert f"eu-west-1 {row.zone}" in text and f"as of {row.as_of}" in text
    us = _plan("--region", "us-east-1")
    assert "eu-west-1" not in us and us != text


def test_json_carries_one_replica_full_load_and_price_date():
    eu, us = _json("eu-west-1"), _json("us-east-1")
    for d, region in ((eu, "eu-west-1"), (us, "us-east-1")):
        assert d["workload"] is None and d["no_workload"]["replicas"] == 1
        assert d["target"]["region"] == region and d["target"]["zone"] and d["target"]["price_as_of"]
        assert d["fleet"]["min_replicas"] == d["fleet"]["max_replicas"] == 1
        compute = [c for c in d["cost_lines"] if c["pricing"] == "spot"]
        assert len(compute) == 1 and compute[0]["replicas"] == 1
        assert compute[0]["usd_per_hour"] == pytest.approx(d["target"]["hourly_usd"], abs=1e-4)
        tok_s = d["full_load"]["output_tokens_per_s"]
        assert d["no_workload"]["full_load_output_tokens_per_s"] == tok_s
        per_m = d["target"]["hourly_usd"] / (tok_s * 3600) * 1e6
        assert d["usd_per_million_output_tokens_full_load"] == pytest.approx(per_m, rel=1e-3)
    assert eu["target"]["hourly_usd"] != us["target"]["hourly_usd"]
    assert eu["target"]["zone"] != us["target"]["zone"]


def test_breakeven_is_where_the_api_bill_meets_one_replica():
    d = _json("eu-west-1")
    shape = d["no_workload"]["default_shape"]
    ratio = shape["input_tokens"] / shape["output_tokens"]
    volume = d["no_workload"]["full_load_output_tokens_per_month"]
    crossed = 0
    for b in d["breakeven"]:
        assert b["selfhost_monthly_usd"] == pytest.approx(d["monthly_usd"], abs=0.01)
        api_at_full = (volume * ratio * b["input_usd_per_million"] + volume * b["output_usd_per_million"]) / 1e6
        assert b["api_monthly_usd"] == pytest.approx(api_at_full, rel=1e-3)
        out = b["breakeven_output_tokens_per_month"]
        if out is None:  # the API is cheaper even with the replica saturated
            assert api_at_full <= d["monthly_usd"]
            continue
        crossed += 1
        bill = (out * ratio * b["input_usd_per_million"] + out * b["output_usd_per_million"]) / 1e6
        assert bill == pytest.approx(d["monthly_usd"], rel=1e-3) and out <= volume
    assert crossed


def test_markdown_is_labelled():
    md = _plan("--region", "eu-west-1", "--format", "markdown")
    assert md.startswith("### selfhost price review (no workload given: one replica, full load)")
    assert "break-even: output tokens/month" in md


@pytest.mark.parametrize(
    "args",
    [
        ("compare", "--model", "llama-3.1-8b"),
        ("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--chart", "cost.png"),
    ],
)
def test_commands_that_size_by_traffic_still_refuse(args):
    out = run_selfhost(*args, env=ENV)
    assert out.returncode == 2 and "no workload" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_diff_refuses_a_spec_without_workload(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: llama-3.1-8b\ntarget: {offer: aws-g5.xlarge}\n")
    out = run_selfhost("diff", "--base", str(spec), "--head", str(spec), env=ENV)
    assert out.returncode == 2 and "no workload" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_stack_plan_refuses_without_workload():
    from costing.errors import UserError
    from selfhost.stack import plan

    with pytest.raises(UserError, match="no workload"):
        plan.plan_stack(
            "aws",
            {
                "model": "llama-3.1-8b",
                "allowPlainHttp": True,
                "allowedCidrs": ["203.0.113.7/32"],
                "apiKey": "sk-test-key-0123456789",
                "hfToken": "t",
            },
            {"offer": "aws-g5.xlarge"},
        )


def test_fixed_replicas_without_workload_are_refused_and_high_availability_is_noted():
    out = run_selfhost(*ISSUE, "--replicas", "3", env=ENV)
    assert out.returncode == 2 and "no workload" in out.stderr and "--replicas" in out.stderr
    d = json.loads(_plan("--availability", "high", "--p90-latency-s", "5", "--format", "json"))
    assert d["fleet"]["max_replicas"] == 1 and d["slo"]["p90_latency_s"] is None
    assert any("availability high" in n for n in d["notes"]) and any("SLO is not checked" in n for n in d["notes"])
