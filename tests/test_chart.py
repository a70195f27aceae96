from __future__ import annotations

import pytest

from costing.data.spec import load_spec
from costing.money.cost_chart import cost_chart, cost_curves
from costing.money.review import cost_review
from costing.money.spend import api_usd, operating_days_per_month


@pytest.fixture(scope="module")
def review():
    return cost_review(
        load_spec(
            None,
            model="llama-3.1-8b",
            target={"offer": "aws-g5.xlarge"},
            workload={"requests_per_day": 20_000, "input_tokens": 800, "output_tokens": 200},
        )
    )


def test_self_host_is_a_step_per_replica_and_apis_are_lines(review):
    data = cost_curves(review)
    xs, steps = data["requests_per_day"], data["selfhost_usd"]
    one = steps[0]
    assert all(s == pytest.approx(one * round(s / one)) for s in steps)  # whole replicas only
    assert steps == sorted(steps) and steps[-1] >= 2 * one  # the range shows more than one replica
    days = operating_days_per_month(review.spec.schedule)
    for b in review.breakeven:
        ys = data["api_usd"][b.api.label]
        assert ys[-1] == pytest.approx(api_usd(b.api, xs[-1] * days * 800, xs[-1] * days * 200))


def test_break_even_marks_sit_where_the_api_bill_meets_one_replica(review):
    data = cost_curves(review)
    days = operating_days_per_month(review.spec.schedule)
    for b in review.breakeven:
        if b.requests_per_day is None:
            assert b.api.label not in data["breakeven"]
            continue
        x, y = data["breakeven"][b.api.label]
        assert api_usd(b.api, x * days * 800, x * days * 200) == pytest.approx(y, rel=1e-9)


def test_chart_png_is_written(review, tmp_path):
    out = cost_chart(review, tmp_path / "c.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
