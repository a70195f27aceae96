"""The cost review end to end (in-process) and its sanity properties."""

from __future__ import annotations

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from costing.data.spec import load_spec
from costing.errors import OverBudget
from costing.money.review import SloUnreachable, cost_review, enforce_budget


def _spec(**kw):
    base = {
        "model": "llama-3.1-8b",
        "target": {"offer": "aws-g5.xlarge"},
        "workload": {"requests_per_day": 10_000, "input_tokens": 1000, "output_tokens": 200},
    }
    for key, value in kw.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_spec(None, **base)


def test_review_numbers_hang_together():
    rv = cost_review(_spec())
    assert rv.replicas >= 1
    # each replica: its hours, and SkyPilot's disk_size (the weights' part + the system part, 10 GB steps) at gp3
    disk_gb = -(-(rv.storage_gb + 60) // 10) * 10
    assert rv.monthly_usd == pytest.approx(rv.replicas * (1.006 * 730 + disk_gb * 0.08))
    assert rv.storage_gb >= rv.fit.weight_gib  # the disk holds the weights
    out_tokens = rv.traffic.output_tokens_per_month
    assert rv.usd_per_million_output_tokens == pytest.approx(rv.monthly_usd / out_tokens * 1e6)
    assert rv.usd_per_million_output_tokens_full_load < rv.usd_per_million_output_tokens
    assert rv.full_load.output_tokens_per_s >= rv.projection.output_tokens_per_s * 0.999
    assert {b.api.provider for b in rv.breakeven} >= {"groq", "together", "bedrock", "azure", "openai"}


def test_the_slo_bounds_the_concurrency_and_adds_replicas():
    loose = cost_review(_spec(workload={"requests_per_day": 200_000}, slo={"p90_latency_s": 120}))
    tight = cost_review(_spec(workload={"requests_per_day": 200_000}, slo={"p90_latency_s": 8}))
    assert tight.projection.concurrency <= loose.projection.concurrency
    assert tight.projection.p90_e2e_latency_s <= 8 or tight.slo_met is False
    assert tight.replicas >= loose.replicas


def test_enforce_budget_refuses_over_budget():
    rv = cost_review(_spec())
    enforce_budget(rv, rv.monthly_usd + 1)  # within: no error
    with pytest.raises(OverBudget, match="exceeds the budget"):
        enforce_budget(rv, rv.monthly_usd - 1)


def test_spot_and_reserved_lower_the_monthly_cost_at_the_apis_prices(aws_reserved_prices):
    on_demand = cost_review(_spec()).monthly_usd
    spot = cost_review(_spec(target={"pricing": "spot"}))
    reserved = cost_review(_spec(target={"pricing": "reserved-3y"}))
    assert spot.monthly_usd < on_demand and reserved.monthly_usd < on_demand
    assert spot.resolved.price.zone and not any("derived" in n for n in spot.notes)  # the zone's market price
    # the Price List's Reserved term, dated by the refresh that read it: never on-demand x a factor
    assert not reserved.resolved.price.derived and "Price List" in reserved.resolved.price.source
    assert reserved.resolved.price.as_of == "2026-11-30" and not any("derived" in n for n in reserved.notes)


@settings(max_examples=40, deadline=None)
@given(
    rpd=st.floats(10, 2_000_000),
    more=st.floats(1.01, 10),
    tin=st.integers(50, 4000),
    tout=st.integers(10, 1000),
    offer=st.sampled_from(["aws-g5.xlarge", "runpod-a40x1-secure", "gcp-g2-standard-8", "aws-g5.12xlarge"]),
    slo=st.one_of(st.none(), st.floats(5, 120)),
)
def test_more_traffic_never_costs_less(rpd, more, tin, tout, offer, slo):
    def monthly(r):
        return cost_review(
            _spec(
                target={"offer": offer},
                slo={"p90_latency_s": slo},
                workload={"requests_per_day": r, "input_tokens": tin, "output_tokens": tout},
            ),
            suggest=False,
        ).monthly_usd

    try:
        low = monthly(rpd)
    except SloUnreachable:  # no traffic level meets it: refused at every rate, nothing to compare
        reject()
    assert monthly(rpd * more) >= low
