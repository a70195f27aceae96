"""The review's LLM scaling target and drain figures (costing.performance.scaling): the requests in flight per
replica the
aws/gcp groups track, beside SkyServe's QPS; the drain time from the projection's p99; the spot warnings."""

from __future__ import annotations

import pytest

from costing.data.spec import spec_from_dict
from costing.money.report import summary_rows
from costing.money.review import cost_review
from costing.performance import scaling
from costing.performance.vllm_args import vllm_serve_argv

WORKLOAD = {"requests_per_day": 200000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 3}


def review(pricing="on-demand", offer="aws-g5.xlarge", availability=None, output_tokens=250, cloud_group=False):
    spec = {
        "model": "llama-3.1-8b",
        "workload": {**WORKLOAD, "output_tokens": output_tokens},
        "target": {"offer": offer, "pricing": pricing},
        "sky": {"service": True},
    }
    if availability:
        spec["availability"] = availability
    return cost_review(spec_from_dict(spec), cloud_group=cloud_group)


def test_the_inflight_target_is_the_slo_bound_concurrency_at_the_target_utilization():
    rv = review()
    p, f = rv.projection, rv.fleet
    assert f.inflight_per_replica == round(p.concurrency * rv.spec.target_utilization, 1) > 0
    # the same projection point as SkyServe's QPS target: QPS per replica = concurrency / mean e2e, both x util
    assert f.requests_per_s_per_replica == pytest.approx(p.requests_per_s * rv.spec.target_utilization)
    text = dict(summary_rows(rv))["Replicas"]
    assert f"{f.requests_per_s_per_replica:,.2f} req/s each (SkyServe's QPS)" in text
    assert f"{f.inflight_per_replica:g} requests in flight each" in text


def test_the_stacks_drain_for_what_vllm_drains():
    # one drain time: the load balancer's deregistration delay and the hook follow vLLM's --shutdown-timeout
    rv = review()
    drain = scaling.drain_seconds(rv)
    assert drain >= rv.projection.e2e_p99_s
    assert drain == rv.resolved.fit.settings.shutdown_timeout_s
    assert f"--shutdown-timeout {drain}" in " ".join(vllm_serve_argv(rv.resolved.fit.settings))


def test_spot_with_availability_standard_warns_with_the_minutes_without_a_replica():
    rv = review("spot", availability="standard")
    [warning] = [n for n in rv.notes if n.startswith("WARNING: spot with availability standard")]
    minutes = rv.spot_risk.minutes_without_replica[1]
    assert f"about {minutes:,.0f} minutes a month" in warning
    assert not [n for n in review("spot", availability="high").notes if n.startswith("WARNING: spot")]
    assert not [n for n in review("on-demand").notes if n.startswith("WARNING: spot")]


@pytest.mark.parametrize("output_tokens, cut", [(40, False), (2000, True)])
def test_a_stack_spot_review_says_what_the_reclaim_notice_cannot_drain(output_tokens, cut):
    rv = review("spot", offer="gcp-g2-standard-8", output_tokens=output_tokens, cloud_group=True)
    [note] = [n for n in rv.notes if n.startswith("a spot reclaim gives 30 s notice")]
    assert (rv.projection.e2e_p99_s > 30 - scaling.DRAIN_MARGIN_S) is cut
    assert ("are cut" in note) is cut and ("none is cut" in note) is (not cut)


def test_a_stack_review_says_the_published_metrics_are_not_in_the_total():
    assert any(
        "CloudWatch custom metrics" in n and "not in the monthly total" in n for n in review(cloud_group=True).notes
    )
    assert not any("custom metrics" in n for n in review().notes)  # SkyServe publishes none of them


def test_the_skyserve_figures_are_skypilots_own():
    from sky.serve import constants, replica_managers

    assert scaling.SKYSERVE_SCALE_DOWN_DRAIN_S == replica_managers._DEFAULT_DRAIN_SECONDS
    assert scaling.SKYSERVE_LB_SYNC_S == constants.LB_CONTROLLER_SYNC_INTERVAL_SECONDS
    assert scaling.SKYSERVE_LB_RETRIES == constants.LB_MAX_RETRY


@pytest.mark.parametrize(("output_tokens", "cut"), [(250, False), (4000, True)])
@pytest.mark.parametrize("pricing", ["on-demand", "spot"])
def test_a_skyserve_review_says_what_a_replica_stop_does_to_requests_in_flight(output_tokens, cut, pricing):
    rv = review(pricing, output_tokens=output_tokens, availability="high" if pricing == "spot" else None)
    (note,) = [n for n in rv.notes if n.startswith("SkyServe's scale-down")]
    assert ("longer requests in flight are cut" in note) is cut
    assert (rv.projection.e2e_p99_s > scaling.SKYSERVE_SCALE_DOWN_DRAIN_S - scaling.SKYSERVE_LB_SYNC_S) is cut
    assert ("a spot preemption gets no drain" in note) is (pricing == "spot")
    # a stack's own group drains itself: no SkyServe note
    assert not [n for n in review(pricing, cloud_group=True).notes if n.startswith("SkyServe's")]
