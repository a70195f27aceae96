"""Stopping a replica with streams in flight loses nothing when vLLM drains (issue 25), measured on the local
target: the real vLLM on the CPU (tiny random-weight Llama), `selfhost bench` at concurrency 16, and
`selfhost down local` while all 16 streams are generating. `down` sends the signal every cloud target sends a
stopping replica (SIGTERM), then waits for vLLM's drain.

- With a drain (`up local` as the kit starts it: `--shutdown-timeout` the bound) every request completes at
  its full length: 0 failed of the 16 in flight, and the bench's own count of completed requests agrees with
  the tokens it received (each completed request delivered its requested tokens).
- Without (`up local --shutdown-timeout 0`: vLLM aborts its in-flight requests) the bench counts the loss.

Both in one run, one server after the other (2-6 minutes on 2 CPUs, mostly the two starts). The figures are
printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_vllm_server import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
IN_FLIGHT = 16
OUTPUT_TOKENS = 1536  # 16 streams: 7-20 s on 2 CPUs, so `down` (a new process) lands mid-flight; 1,552 < 2,048 context
RUNNING = re.compile(r"^vllm:num_requests_running(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)
# vLLM's own account of its stop: the mode its shutdown timeout gives (vllm/entrypoints/launchers/launcher.py), and
# when draining, the requests in flight at the SIGTERM (vllm/v1/engine/core.py _handle_shutdown; with no drain the
# engine process is killed before it logs them)
STOP_MODE = re.compile(r"\[shutdown\] API server: stopping engine client mode=(\w+) timeout=(\d+)s")
DRAINING = re.compile(r"\[shutdown\] EngineCore: draining in-flight requests count=(\d+)")
# `selfhost down local`, imported ahead and run on a line from stdin: the signal lands when the test says, not a
# loaded machine's Python start-up later
DOWN_WHEN_TOLD = (
    "import sys; from selfhost.cli import main; import selfhost.local.server; print('ready', flush=True); "
    "sys.stdin.readline(); main(['down', 'local'])"
)


def cli(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfhost.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=timeout,
    )


def running_requests(url: str, key: str) -> int:
    import httpx

    try:
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    except httpx.HTTPError:
        return -1
    m = RUNNING.search(r.text) if r.status_code == 200 else None
    return int(float(m.group(1))) if m else -1


def stop_mid_flight(env: dict, *up_args: str, tmp: Path) -> dict:
    """Start the local server, bench IN_FLIGHT streams of OUTPUT_TOKENS, stop it (`down local`) once all of
    them are generating; the bench's JSON, the `down` output and the server's drain setting."""
    up = cli("up", "local", "--port", str(free_port()), "--format", "json", "--timeout", "400", *up_args, env=env)
    if up.returncode != 0:
        pytest.fail(f"`selfhost up local` failed:\n{up.stderr[-3000:]}", pytrace=False)
    info = json.loads(up.stdout)
    out = tmp / f"bench-{info['shutdown_timeout_s']}.json"
    down = subprocess.Popen(
        [sys.executable, "-c", DOWN_WHEN_TOLD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    ready = down.stdout.readline() if down.stdout else ""
    assert ready == "ready\n", ready
    bench_args = ["--input-tokens", "16", "--output-tokens", str(OUTPUT_TOKENS), "--concurrency", str(IN_FLIGHT)]
    bench_args += ["--num-prompts", str(IN_FLIGHT), "--read-timeout", "15", "--format", "json", "--output", str(out)]
    bench = subprocess.Popen(
        [sys.executable, "-m", "selfhost.cli", "bench", info["url"], "--model", info["model"], *bench_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, **env, "VLLM_API_KEY": info["api_key"]},
    )
    try:
        deadline, seen = time.monotonic() + 60, -1
        while time.monotonic() < deadline and (seen := running_requests(info["url"], info["api_key"])) < IN_FLIGHT:
            time.sleep(0.1)
        assert seen == IN_FLIGHT, f"only {seen} requests were running"
        said, _ = down.communicate("stop\n", timeout=400)
        bench.wait(timeout=120)
    finally:
        for proc in (bench, down):
            if proc.poll() is None:
                proc.kill()
        if Path(f"/proc/{info['pid']}").exists():
            os.kill(info["pid"], 9)
    log = Path(info["log"]).read_text(errors="replace")
    mode, draining = STOP_MODE.search(log), DRAINING.search(log)
    assert down.returncode == 0 and f"PID {info['pid']}" in said, said
    assert not Path(f"/proc/{info['pid']}").exists(), "`selfhost down local` did not stop the server"
    assert mode, "vLLM logged no stop"
    return {
        "bench": json.loads(out.read_text()),
        "down": said.strip(),
        "drain_s": info["shutdown_timeout_s"],
        "mode": f"{mode.group(1)} {mode.group(2)} s",
        "running_before_stop": seen,  # the server's /metrics just before `down` was told to stop
        "engine_in_flight": int(draining.group(1)) if draining else None,
    }


def test_a_stop_with_streams_in_flight_loses_none_with_the_drain_and_some_without(tmp_path):
    from costing.performance.drain import DRAIN_MAX_S

    env = {
        "SELFHOST_SCRATCH": str(tmp_path / "scratch"),
        "SELFHOST_LOCAL_API_KEY": secrets.token_urlsafe(24),
    }
    drained = stop_mid_flight(env, tmp=tmp_path)
    aborted = stop_mid_flight(env, "--shutdown-timeout", "0", tmp=tmp_path)
    for run in (drained, aborted):
        b = run["bench"]
        pt = b["points"][0]
        print(
            f"\ndrain {run['drain_s']} s ({run['mode']}): {run['running_before_stop']} running before the stop, "
            f"{run['engine_in_flight']} in flight at the SIGTERM by the engine's log, "
            f"{pt['completed']} completed, {b['failed_requests']} failed {pt['errors']}, "
            f"{b['delivered_output_tokens']:,} of {b['requested_output_tokens']:,} requested tokens delivered; "
            f"{run['down']}"
        )
    assert drained["drain_s"] == DRAIN_MAX_S and aborted["drain_s"] == 0
    assert (drained["mode"], aborted["mode"]) == (f"drain {DRAIN_MAX_S} s", "abort 0 s")
    assert drained["engine_in_flight"] == IN_FLIGHT  # the SIGTERM came with every stream generating
    b, pt = drained["bench"], drained["bench"]["points"][0]
    assert (pt["num_requests"], pt["completed"], b["failed_requests"]) == (IN_FLIGHT, IN_FLIGHT, 0), pt["errors"]
    # the bench's own count agrees with the tokens it received: each completed request, every requested token
    assert b["delivered_output_tokens"] == b["requested_output_tokens"] == IN_FLIGHT * OUTPUT_TOKENS
    assert pt["total_output_tokens"] == pt["completed"] * OUTPUT_TOKENS
    assert "killed" not in drained["down"]  # it exited by itself once drained
    b, pt = aborted["bench"], aborted["bench"]["points"][0]
    # requests vLLM aborted are failures in the bench, none counted ok
    assert aborted["running_before_stop"] == IN_FLIGHT
    assert b["failed_requests"] > 0 and pt["completed"] + pt["failed"] == IN_FLIGHT
    assert b["delivered_output_tokens"] < b["requested_output_tokens"]
    assert pt["total_output_tokens"] == pt["completed"] * OUTPUT_TOKENS  # whatever completed, completed whole
