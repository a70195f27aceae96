"""`make accuracy` says what the calibration has: rows per engine and vLLM V1 rows per GPU (scripts/accuracy.py)."""

from __future__ import annotations

import csv
import runpy
import sys
from collections import Counter
from pathlib import Path

from costing.performance.published import DEFAULT_CSV, GPU_NAMES, map_engine

ROOT = Path(__file__).resolve().parents[1]
ENGINE_NAMES = {"vllm": "vLLM V1", "vllm-v0": "vLLM V0", "vllm-v0-multistep": "vLLM V0", "trtllm": "TensorRT-LLM"}


def _counts_output(csv_path: Path, capsys, monkeypatch) -> str:
    """`scripts/accuracy.py --csv PATH --counts` as `make accuracy` runs it (in-process: no fits, no subprocess)."""
    monkeypatch.setattr(sys, "argv", ["accuracy.py", "--csv", str(csv_path), "--counts"])
    runpy.run_path(str(ROOT / "scripts" / "accuracy.py"), run_name="__main__")
    return capsys.readouterr().out


def _tables(text: str) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """The printed tables: rows per engine, and (V1 rows, all rows) per GPU."""
    engines: dict[str, int] = {}
    gpus: dict[str, tuple[int, int]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("published rows by engine"):
            section = "engines"
        elif line.startswith("vLLM V1 (>= 0.8) rows per GPU"):
            section = "gpus"
        elif not line.startswith("  "):
            section = None
        elif line.split()[0] in ("engine", "gpu"):
            continue  # column headings
        elif section == "engines":
            *words, rows, _sources = line.split()
            engines[" ".join(words)] = int(rows)
        elif section == "gpus":
            gpu, v1, every = line.split()
            gpus[gpu] = (int(v1), int(every))
    return engines, gpus


def _expected(csv_path: Path) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Counted from the file itself with the reader's name mappings (engine label, GPU spelling)."""
    with open(csv_path, newline="") as fh:
        raw = list(csv.DictReader(fh))
    engines = Counter(ENGINE_NAMES[map_engine(r["engine"])] for r in raw)
    engines["all"] = len(raw)
    every = Counter(GPU_NAMES[r["gpu"].strip()][0] for r in raw)
    v1 = Counter(GPU_NAMES[r["gpu"].strip()][0] for r in raw if map_engine(r["engine"]) == "vllm")
    return dict(engines), {g: (v1[g], n) for g, n in every.items()}


def test_make_accuracy_prints_the_shipped_rows_per_engine_and_v1_rows_per_gpu(capsys, monkeypatch):
    engines, gpus = _tables(_counts_output(DEFAULT_CSV, capsys, monkeypatch))
    assert (engines, gpus) == _expected(DEFAULT_CSV)
    assert engines["vLLM V1"] == sum(v1 for v1, _ in gpus.values()) > 0


def test_the_counts_follow_the_file_they_read(tmp_path, capsys, monkeypatch):
    with open(DEFAULT_CSV, newline="") as fh:
        header = next(csv.reader(fh))
    rows = [
        ("L4-24GB", "vLLM 0.10.1 (V1)", "src-a (blog)"),
        ("L4-24GB", "vLLM 0.9.2", "src-a (blog)"),
        ("A100-SXM-80GB", "vLLM 0.5.4", "src-b (report)"),
        ("H100-SXM-80GB", "TensorRT-LLM 0.15.0", "src-c (docs)"),
    ]
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for gpu, engine, source in rows:
            values = dict.fromkeys(header, "")
            values.update(
                source=source, gpu=gpu, gpu_count="1", model="Llama-3.1-8B-Instruct", precision="BF16",
                engine=engine, input_tokens="512", output_tokens="128", concurrency="4", output_tok_s="100",
            )  # fmt: skip
            w.writerow(values)
    text = _counts_output(path, capsys, monkeypatch)
    engines, gpus = _tables(text)
    assert engines == {"TensorRT-LLM": 1, "vLLM V0": 1, "vLLM V1": 2, "all": 4}
    assert gpus == {"A100-80GB": (0, 1), "H100": (0, 1), "L4": (2, 2)}
    assert "  vLLM V1            2        1" in text  # two rows, one publication
