from __future__ import annotations

from costing.performance.readiness import ENGINE_START_S, GIB, HF_DOWNLOAD_BYTES_PER_S, startup_allowance_s
from selfhost.stack.plan import MAX_HEALTH_GRACE_S, Readiness


def test_allowance_covers_engine_start_and_the_download_in_whole_minutes():
    for weight_gib in (2.3, 15.0, 37.8, 131.4, 206.5):
        allowance = startup_allowance_s(weight_gib)
        assert allowance % 60 == 0
        assert allowance >= ENGINE_START_S + weight_gib * GIB / HF_DOWNLOAD_BYTES_PER_S
        assert allowance < ENGINE_START_S + weight_gib * GIB / HF_DOWNLOAD_BYTES_PER_S + 60
    assert startup_allowance_s(131.4) > startup_allowance_s(15.0)


def test_stack_health_grace_is_the_same_allowance_capped_for_the_clouds():
    assert Readiness.for_weights(8000, 15.0).initial_delay_s == startup_allowance_s(15.0)
    assert Readiness.for_weights(8000, 400.0).initial_delay_s == MAX_HEALTH_GRACE_S < startup_allowance_s(400.0)
