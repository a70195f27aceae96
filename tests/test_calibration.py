"""The projection's parameters: bounds, sources, load and save (costing/calibration.py)."""

from __future__ import annotations

from costing.calibration import FITTED, Params, load_params, load_params_file, save_params


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
