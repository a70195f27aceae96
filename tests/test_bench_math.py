"""Bench metrics against hand-computed examples (definitions of `vllm bench serve`)."""

from __future__ import annotations

import pytest

from selfhost.check.bench_math import RequestResult, Slo, meets_slo, metrics, percentile, summary_ms


def test_percentile_interpolates_linearly_between_ranks():
    xs = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4; rank = 3p/100
    assert percentile(xs, 50) == pytest.approx(2.5)  # rank 1.5
    assert percentile(xs, 90) == pytest.approx(3.7)  # rank 2.7: 3 + 0.7
    assert percentile(xs, 99) == pytest.approx(3.97)  # rank 2.97
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile([7.0], 90) == 7.0
    assert percentile([], 50) == 0.0  # vLLM reports 0 for no samples


def test_percentile_agrees_with_numpy():
    np = pytest.importorskip("numpy")
    xs = [0.3, 0.01, 5.0, 2.2, 2.2, 9.9, 0.7]
    for p in (1, 25, 50, 90, 99):
        assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))


def test_tpot_excludes_the_first_token():
    # 1.0 s latency, 0.1 s to the first token, 10 tokens: (1.0 - 0.1) / 9 = 0.1 s per token
    assert RequestResult(ok=True, ttft=0.1, latency=1.0, output_tokens=10).tpot == pytest.approx(0.1)
    assert RequestResult(ok=True, ttft=0.1, latency=0.1, output_tokens=1).tpot is None


def test_summary_in_milliseconds():
    s = summary_ms([0.010, 0.020, 0.030, 0.040])
    assert s["mean"] == pytest.approx(25.0)
    assert s["median"] == pytest.approx(25.0)
    assert s["p90"] == pytest.approx(37.0)  # rank 2.7 -> 30 + 0.7 * 10


def _two_requests_and_a_failure():
    a = RequestResult(ok=True, ttft=0.2, latency=2.2, itl=[0.5, 0.5, 1.0], output_tokens=5, input_tokens=100)
    b = RequestResult(ok=True, ttft=0.4, latency=1.4, itl=[0.25], output_tokens=3, input_tokens=50)
    c = RequestResult(ok=False, error="HTTP 401: unauthorized")
    return [a, b, c]


def test_metrics_of_a_run_by_hand():
    m = metrics(_two_requests_and_a_failure(), duration_s=4.0)
    assert (m["completed"], m["failed"]) == (2, 1)
    assert m["errors"] == {"HTTP 401: unauthorized": 1}
    assert m["requests_per_s"] == pytest.approx(0.5)  # 2 completed / 4 s
    assert m["output_tokens_per_s"] == pytest.approx(2.0)  # (5 + 3) / 4
    assert m["total_tokens_per_s"] == pytest.approx(39.5)  # (150 + 8) / 4
    assert m["mean_output_tokens"] == pytest.approx(4.0)
    # TPOT: a (2.2 - 0.2) / 4 = 0.5 s, b (1.4 - 0.4) / 2 = 0.5 s
    assert m["tpot_ms"]["mean"] == pytest.approx(500.0)
    # TTFT 0.2, 0.4 -> mean 300 ms, p90 = 0.2 + 0.9 * 0.2 = 0.38 s
    assert m["ttft_ms"]["mean"] == pytest.approx(300.0)
    assert m["ttft_ms"]["p90"] == pytest.approx(380.0)
    # ITL pools every gap: 0.25 0.5 0.5 1.0 -> mean 0.5625 s, median 0.5 s
    assert m["itl_ms"]["mean"] == pytest.approx(562.5)
    assert m["itl_ms"]["median"] == pytest.approx(500.0)
    assert m["e2el_ms"]["p50"] == pytest.approx(1800.0)
    assert m["goodput_rps"] is None  # no SLO given


def test_goodput_counts_requests_meeting_every_slo():
    runs = _two_requests_and_a_failure()
    # a: TTFT 200 ms, E2E 2200 ms; b: TTFT 400 ms, E2E 1400 ms; both TPOT 500 ms
    assert metrics(runs, 4.0, Slo(ttft_ms=300))["goodput_rps"] == pytest.approx(0.25)  # only a
    assert metrics(runs, 4.0, Slo(e2el_ms=2000))["goodput_rps"] == pytest.approx(0.25)  # only b
    assert metrics(runs, 4.0, Slo(ttft_ms=300, e2el_ms=2000))["goodput_rps"] == 0.0
    assert metrics(runs, 4.0, Slo(tpot_ms=500))["goodput_rps"] == pytest.approx(0.5)  # at the bound counts
    assert metrics(runs, 4.0, Slo(tpot_ms=499))["goodput_rps"] == 0.0


def test_single_token_request_has_tpot_zero_for_goodput():
    one = RequestResult(ok=True, ttft=0.05, latency=0.05, output_tokens=1)
    assert meets_slo(one, Slo(tpot_ms=0.001))
    assert not meets_slo(RequestResult(ok=False), Slo())


def test_all_failed_run_reports_zeros_not_errors():
    m = metrics([RequestResult(ok=False, error="x")] * 3, 1.0)
    assert (m["completed"], m["failed"], m["output_tokens_per_s"]) == (0, 3, 0.0)
    assert m["ttft_ms"]["p99"] == 0.0 and m["errors"] == {"x": 3}
