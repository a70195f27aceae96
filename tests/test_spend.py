"""Spend and break-even arithmetic, including the source analyses' worked examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costing.data.catalog import apis_for, get_offer
from costing.data.spec import ScheduleSpec, WorkloadSpec
from costing.money.spend import (
    Traffic,
    api_usd,
    break_even,
    daily_tokens_at,
    hours_per_month,
    monthly_usd,
    replicas_needed,
    usd_per_million,
)


def _api(model, provider, name=None):
    return next(a for a in apis_for(model) if a.provider == provider and (name is None or a.api_model == name))


def test_runpod_a40_is_about_280_a_month_at_24_by_30_hours():
    hourly = 0.39  # the source analysis's RunPod A40 Secure price (2024-09); the catalog's is newer
    assert get_offer("runpod-a40x1-secure").on_demand > 0
    assert monthly_usd(hourly, ScheduleSpec(hours_per_day=24, days_per_month=30)) == pytest.approx(280.8)
    assert hours_per_month(ScheduleSpec()) == 730  # 24x7 convention


def test_schedule_scales_the_billed_hours():
    office = ScheduleSpec(hours_per_day=10, days_per_week=5)
    assert hours_per_month(office) == pytest.approx(730 * 10 / 24 * 5 / 7)
    assert monthly_usd(1.0, office, replicas=2, storage_gb=100, storage_usd_per_gb_month=0.08) == pytest.approx(
        2 * (hours_per_month(office) + 8)
    )


def test_4x_a40_against_azure_70b_breaks_even_near_250k_tokens_each_way_per_hour():
    hourly = 1.56  # the source analysis's 4x A40 price (2024-09); the catalog's is newer
    assert get_offer("runpod-a40x4-secure").gpus == 4
    azure = _api("llama-3.1-70b", "azure")
    workload = WorkloadSpec(requests_per_day=1000, input_tokens=1000, output_tokens=1000)
    sched = ScheduleSpec()
    be = break_even(
        azure,
        workload,
        sched,
        replica_monthly_usd=monthly_usd(hourly, sched),
        requests_per_s_per_replica=10.0,
        traffic=Traffic.of(workload, sched),
        selfhost_monthly=0,
    )
    tokens_per_hour_each_way = be.input_tokens_per_month / 730
    assert tokens_per_hour_each_way == pytest.approx(250_000, rel=0.01)
    assert be.output_tokens_per_month == be.input_tokens_per_month
    assert tokens_per_hour_each_way / 3600 == pytest.approx(70, rel=0.01)  # ~70 output tok/s needed


def test_a10g_int8_case_is_about_4_4x_cheaper_than_gpt_4o_mini():
    daily_in, daily_out = daily_tokens_at(21, 12.29, 2048, 130)
    assert daily_in == pytest.approx(302_350_789, rel=1e-6)
    assert daily_out == pytest.approx(19_192_188, rel=1e-6)
    mini = _api("llama-3.1-8b", "openai", "gpt-4o-mini")
    daily_api = api_usd(mini, daily_in, daily_out)
    assert daily_api == pytest.approx(56.87, abs=0.01)
    assert daily_api / 13.0 == pytest.approx(4.4, abs=0.05)


def test_api_cheaper_at_every_traffic_when_one_replica_costs_more_per_request():
    groq = _api("llama-3.1-8b", "groq")
    w = WorkloadSpec(requests_per_day=1000, input_tokens=500, output_tokens=200)
    be = break_even(
        groq,
        w,
        ScheduleSpec(),
        replica_monthly_usd=5000,
        requests_per_s_per_replica=0.5,
        traffic=Traffic.of(w, ScheduleSpec()),
        selfhost_monthly=5000,
    )
    assert be.requests_per_day is None and "full load" in be.reason and be.cheaper == "api"


def test_cost_per_million_tokens_and_replicas():
    assert usd_per_million(3.6, 1000) == pytest.approx(1.0)
    assert replicas_needed(2.0, 1.0) == 2 and replicas_needed(2.01, 1.0) == 3 and replicas_needed(0.001, 5) == 1


def test_traffic_peak_rate_uses_the_operating_hours():
    w = WorkloadSpec(requests_per_day=86_400, input_tokens=1, output_tokens=1, peak_to_mean=3)
    assert Traffic.of(w, ScheduleSpec()).peak_requests_per_s == pytest.approx(3.0)
    assert Traffic.of(w, ScheduleSpec(hours_per_day=12)).peak_requests_per_s == pytest.approx(6.0)


@settings(max_examples=80, deadline=None)
@given(
    price=st.floats(0.1, 50),
    bump=st.floats(0.01, 20),
    capacity=st.floats(0.05, 50),
    tin=st.integers(1, 8000),
    tout=st.integers(1, 2000),
)
def test_a_higher_gpu_price_never_lowers_the_break_even_traffic(price, bump, capacity, tin, tout):
    w = WorkloadSpec(requests_per_day=100, input_tokens=tin, output_tokens=tout)
    s = ScheduleSpec()
    traffic = Traffic.of(w, s)
    for api in apis_for("llama-3.1-8b"):
        cheap = break_even(api, w, s, monthly_usd(price, s), capacity, traffic, 0).requests_per_day
        dear = break_even(api, w, s, monthly_usd(price + bump, s), capacity, traffic, 0).requests_per_day
        if cheap is None:
            assert dear is None  # never cheaper stays never cheaper
        elif dear is not None:
            assert dear >= cheap


def test_vertex_g2_standard_8_month_matches_the_source_analysis():
    # "Google Vertex AI, Llama 3 (8B), g2-standard-8, Cost/Instance/Month: $623.15" (shared/sources/000)
    assert monthly_usd(get_offer("gcp-g2-standard-8").on_demand, ScheduleSpec()) == pytest.approx(623.15, abs=0.05)
