"""vLLM's shutdown timeout (costing/performance/drain.py): the review's p99 latency, bounded, on every emitted line."""

from __future__ import annotations

import math

import pytest

from costing.data.spec import load_spec, spec_from_dict
from costing.money.review import cost_review, full_load_review
from costing.performance.drain import DRAIN_MAX_S, DRAIN_MIN_S, drain_timeout_s
from costing.performance.vllm_args import vllm_serve_argv


@pytest.mark.parametrize(
    ("p99", "drain"),
    [(0.0, DRAIN_MIN_S), (3.2, DRAIN_MIN_S), (10.0, 10), (18.01, 19), (299.5, 300), (1e6, DRAIN_MAX_S)],
)
def test_the_drain_is_the_p99_rounded_up_within_the_bounds(p99, drain):
    assert drain_timeout_s(p99) == drain


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0])
def test_a_latency_that_is_not_a_time_gets_the_bound(bad):
    assert drain_timeout_s(bad) == DRAIN_MAX_S


def _flag(argv: list[str]) -> int:
    return int(argv[argv.index("--shutdown-timeout") + 1])


def test_the_review_sizes_the_drain_from_its_point_and_the_command_carries_it():
    spec = load_spec("examples/llama-3.1-8b-runpod-a40.yaml")
    review = cost_review(spec)
    p99 = review.projection.e2e_p99_s
    assert review.projection.p90_e2e_latency_s <= p99  # the tail, not the p90 the SLO checks
    assert review.fit.settings.shutdown_timeout_s == math.ceil(p99)
    assert _flag(vllm_serve_argv(review.fit.settings)) == math.ceil(p99)


def test_longer_answers_drain_longer():
    base = {"model": "llama-3.1-8b", "target": {"cloud": "runpod", "offer": "runpod-a40x1-secure"}}
    short, long = (
        cost_review(
            spec_from_dict({**base, "workload": {"requests_per_day": 3000, "input_tokens": 500, "output_tokens": out}})
        )
        for out in (100, 1000)
    )
    assert short.fit.settings.shutdown_timeout_s < long.fit.settings.shutdown_timeout_s
    assert long.fit.settings.shutdown_timeout_s == min(DRAIN_MAX_S, math.ceil(long.projection.e2e_p99_s))


def test_a_price_review_drains_for_its_full_load_point():
    review = full_load_review(load_spec(None, model="llama-3.1-8b", target={"offer": "runpod-a40x1-secure"}))
    assert review.fit.settings.shutdown_timeout_s == drain_timeout_s(review.projection.e2e_p99_s)
