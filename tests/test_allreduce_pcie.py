"""The measured PCIe all-reduce (gpus.yaml `allreduce`): read from the data, faithful to what nccl-tests printed,
and the term the one scheduler model uses for PCIe-only parts at every GPU count (NVLink parts keep the fitted
term)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from costing.data.catalog import allreduce_curve, catalog, get_gpu
from costing.performance.calibration import load_params
from costing.performance.fit import FitRequest, fit_check
from costing.performance.projection import project
from costing.performance.published import fit_for_row, read_rows
from costing.performance.scheduler import Hardware, step_parts

PCIE_PARTS = ("A40", "A10G", "L4", "L40S")


def bus_gbs(gpus: int, nbytes: float, seconds: float) -> float:
    """nccl-tests' busbw of one all-reduce of `nbytes` in `seconds`: size / time x 2(n-1)/n, in GB/s."""
    return nbytes / seconds * 2 * (gpus - 1) / gpus / 1e9


def test_every_curve_is_the_busbw_nccl_tests_printed_and_carries_its_source():
    """busbw = size / time x 2(n-1)/n (nccl-tests doc/PERFORMANCE.md): each row's size and times give back the busbw
    columns printed beside them, and their mean the 'Avg bus bandwidth' the projection uses, so a mistyped figure
    fails here."""
    curves = catalog().allreduce
    assert curves, "gpus.yaml has no measured all-reduce"
    for curve in curves.values():
        assert curve.source.startswith("https://") and curve.as_of and curve.system
        sizes = [r[0] for r in curve.rows]
        assert sizes == sorted(sizes) and len(sizes) >= 2
        printed = []
        for size, t_out, bw_out, t_in, bw_in in curve.rows:
            assert bus_gbs(curve.gpus, size, t_out * 1e-6) == pytest.approx(bw_out, abs=0.011), (curve.gpus, size)
            assert bus_gbs(curve.gpus, size, t_in * 1e-6) == pytest.approx(bw_in, abs=0.011), (curve.gpus, size)
            printed += [bw_out, bw_in]
        assert curve.avg_busbw_gbs == pytest.approx(sum(printed) / len(printed), abs=0.005)
        assert curve.avg_busbw_gbs < max(printed)  # not the peak


def test_pcie_parts_name_the_measured_fabric_and_nvlink_parts_keep_the_fitted_term():
    for name in PCIE_PARTS:
        assert get_gpu(name).allreduce == "pcie4"
        assert allreduce_curve(get_gpu(name), 8) is catalog().allreduce[("pcie4", 8)]
    for name in ("A100", "A100-80GB", "H100"):
        assert get_gpu(name).allreduce is None and allreduce_curve(get_gpu(name), 8) is None
    assert allreduce_curve(get_gpu("L40S"), 1) is None  # one GPU: no all-reduce


def test_a_gpu_count_the_fabric_has_no_rows_for_takes_its_measured_bus_bandwidth():
    """busbw is corrected by 2(n-1)/n to be independent of the number of ranks (nccl-tests doc/PERFORMANCE.md), so
    the 8-GPU run's bus bandwidth stands for 2 and 4 GPUs on the same fabric; the step applies the ring factor of
    its own GPU count, so 4 GPUs move 3/4 of a batch's activations per all-reduce where 8 move 7/8."""
    curve = catalog().allreduce[("pcie4", 8)]
    assert {n for fabric, n in catalog().allreduce if fabric == "pcie4"} == {8}  # else the rule below is not tested
    for name in PCIE_PARTS:
        for gpus in (2, 4):
            assert allreduce_curve(get_gpu(name), gpus) is curve, (name, gpus)
    p = load_params()
    hw = Hardware.of(fit_check(FitRequest(model="llama-3.1-70b", precision="fp8", gpu="L40S", gpus=4)))
    assert hw.tp == 4 and hw.allreduce_curve is curve
    batch = 128.0
    latency = (p.allreduce_latency_us + 2 * p.allreduce_hop_us) * 1e-6
    ring = 2 * 3 / 4 * batch * hw.hidden * 2
    comm = step_parts(hw, p, batch, 1000.0, 0.0, 1000.0).comm
    assert comm == pytest.approx(2 * hw.layers * (latency + ring / (curve.avg_busbw_gbs * 1e9)))


def _l40s_8x():
    return fit_check(FitRequest(model="llama-3.1-70b", precision="fp8", gpu="L40S", gpus=8))


def test_a_pcie_step_spends_the_measured_time_per_all_reduce_and_an_nvlink_step_the_fitted_term():
    p = load_params()
    fit = _l40s_8x()
    hw = Hardware.of(fit)
    curve = catalog().allreduce[("pcie4", 8)]
    assert hw.tp == 8 and hw.pp == 1 and hw.allreduce_curve is curve
    batch = 256.0
    ring = 2 * 7 / 8 * batch * hw.hidden * 2
    latency = (p.allreduce_latency_us + 6 * p.allreduce_hop_us) * 1e-6
    comm = step_parts(hw, p, batch, 1000.0, 0.0, 1000.0).comm
    assert comm == pytest.approx(2 * hw.layers * (latency + ring / (curve.avg_busbw_gbs * 1e9)))
    fitted = replace(hw, allreduce_curve=None)
    per = latency + ring / (hw.interconnect * p.allreduce_bw_eff)
    assert step_parts(fitted, p, batch, 1000.0, 0.0, 1000.0).comm == pytest.approx(2 * hw.layers * per)
    assert comm != pytest.approx(2 * hw.layers * per)
    h100 = Hardware.of(fit_check(FitRequest(model="llama-3.1-70b", precision="fp8", gpu="H100", gpus=8)))
    assert h100.allreduce_curve is None


def test_the_projection_follows_the_measured_curve(monkeypatch):
    """A slower measured bus (half the bandwidth) projects fewer tokens/s for 8x L40S: the data reaches `project`,
    which the plan, the replay of the published rows and the bench refit share."""
    fit = _l40s_8x()
    base = project(fit, 1000, 500, 64).output_tokens_per_s
    curve = catalog().allreduce[("pcie4", 8)]
    slower = replace(curve, avg_busbw_gbs=curve.avg_busbw_gbs / 2)
    monkeypatch.setitem(catalog().allreduce, ("pcie4", 8), slower)
    assert project(fit, 1000, 500, 64).output_tokens_per_s < 0.97 * base


def test_the_vendor_tables_multi_gpu_a100_pcie_rows_use_the_measured_curve_and_the_sxm_rows_the_fitted_term():
    seen = set()
    for row in read_rows():
        if row.gpu_raw not in ("A100-PCIe-80GB", "A100-SXM4-80GB") or row.gpus < 2:
            continue
        fit = fit_for_row(row)
        if fit is None:
            continue
        curve = Hardware.of(fit).allreduce_curve
        assert (curve is not None) == (row.gpu_raw == "A100-PCIe-80GB"), row.index
        seen.add((row.gpu_raw, row.gpus))
    assert seen == {(gpu, n) for gpu in ("A100-PCIe-80GB", "A100-SXM4-80GB") for n in (2, 4, 8)}
