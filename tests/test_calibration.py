"""The projection's parameters: bounds, sources, load and save (costing/performance/calibration.py)."""

from __future__ import annotations

from costing.performance.calibration import FITTED, Params, load_params, load_params_file, save_params


def test_shipped_parameters_are_physical_and_carry_sources():
    p = load_params()
    for name, (lo, hi) in FITTED.items():
        assert lo <= getattr(p, name) <= hi
        assert p.source_of(name) != "built-in default (not fitted)"
    assert 0 < p.bw_eff <= 1 and 0 < p.mfu_prefill <= 1 and 0 < p.mfu_decode <= 1
    assert p.provenance["median_abs_error"]["output_tokens_per_s"] <= 0.15


def test_save_and_load_round_trip(tmp_path):
    p = Params(bw_eff=0.7, step_overhead_ms=1.5, sources={"bw_eff": "test"}, provenance={"date": "2026-01-01"})
    path = save_params(p, tmp_path / "c.json")
    back = load_params_file(path)
    assert back.values() == p.values() and back.sources == p.sources and back.provenance == p.provenance


def test_make_calibrate_reproduces_the_shipped_parameters():
    """`make calibrate` (scripts/fit_calibration.py) on the shipped CSV gives the shipped values."""
    import hashlib

    from costing.performance.published import DEFAULT_CSV, fit_params

    shipped = load_params()
    assert shipped.provenance["csv_sha256"] == hashlib.sha256(DEFAULT_CSV.read_bytes()).hexdigest()
    fitted, _ = fit_params(DEFAULT_CSV, Params())
    for name in FITTED:
        assert abs(getattr(fitted, name) - getattr(shipped, name)) <= 1e-4 * max(1.0, abs(getattr(shipped, name)))
