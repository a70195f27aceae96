"""Sanity properties of the projection over random valid inputs (hypothesis): no crash, monotonic where physics
says so."""

from __future__ import annotations

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from costing.data.catalog import catalog
from costing.errors import UserError
from costing.performance.fit import FitRequest, fit_check
from costing.performance.projection import project

MODELS = sorted(catalog().models)
GPUS = sorted(catalog().gpus)


def _fit(model, precision, gpu, gpus):
    try:
        return fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus))
    except UserError:
        return None


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    precision=st.sampled_from(["bf16", "fp8", "int8", "awq"]),
    gpu=st.sampled_from(GPUS),
    gpus=st.sampled_from([1, 2, 4, 8]),
    tin=st.integers(1, 16_000),
    tout=st.integers(1, 4000),
    extra=st.integers(1, 2000),
    conc=st.integers(1, 2048),
)
def test_no_crash_and_a_longer_output_never_shortens_latency(model, precision, gpu, gpus, tin, tout, extra, conc):
    fit = _fit(model, precision, gpu, gpus)
    assume(fit is not None and tin + tout + extra <= fit.max_model_len)
    short = project(fit, tin, tout, conc)
    long = project(fit, tin, tout + extra, conc)
    for p in (short, long):
        for value in (p.ttft_ms, p.tpot_ms, p.e2e_latency_s, p.output_tokens_per_s, p.requests_per_s):
            assert math.isfinite(value) and value > 0
        assert 1 <= p.concurrency <= conc and p.capped == (p.concurrency < conc)
        assert p.p90_e2e_latency_s >= p.e2e_latency_s
    if long.concurrency == short.concurrency:
        assert long.e2e_latency_s >= short.e2e_latency_s
