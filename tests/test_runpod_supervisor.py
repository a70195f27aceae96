"""RunPod pods have no health check or restart of their own: the pod's start command supervises vLLM. Run
as docker would run it (entrypoint + cmd) under bash, with a stand-in `vllm` on PATH that serves on an
ephemeral loopback port and can be wedged (500s) or crash; the supervisor restarts it on either, spares
its start grace, and passes RunPod's SIGTERM on to vLLM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfhost import auth_install
from selfhost.stack import runpod_config

KEY = "sk-test-8f3Kq2Lx9Vb7Nw4Zr6Tp1Yc5"
STAND_IN = """#!{python}
import http.server, os, signal, sys
here, port = {here!r}, int(sys.argv[sys.argv.index("--port") + 1])
with open(os.path.join(here, "starts"), "a") as f:
    f.write(f"{{os.getpid()}}\\n")
def term(*_):
    with open(os.path.join(here, "signals"), "a") as f:
        f.write("SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        wedged = os.path.exists(os.path.join(here, "wedged"))
        ok = self.headers.get("Authorization") == "Bearer " + os.environ["VLLM_API_KEY"] and not wedged
        self.send_response(200 if ok else 500)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plan():
    return runpod_config.plan(
        {
            "model": "llama-3.1-8b",
            "requestsPerDay": "3000",
            "inputTokens": "1000",
            "outputTokens": "250",
            "apiKey": "sk-test-key-0123456789",
            "hfToken": "y",
        }
    )


def starts(tmp: Path) -> list[int]:
    path = tmp / "starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def run(plan, tmp_path: Path, grace_s: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(STAND_IN.format(python=sys.executable, here=str(tmp_path)))
    (bin_dir / "vllm").chmod(0o755)
    supervise = runpod_config.supervisor(plan).replace(f"127.0.0.1:{plan.port}/", f"127.0.0.1:{port}/")
    doc = json.loads(auth_install.runpod_docker_args(["m", "--port", str(port)], supervise))
    assert auth_install.runpod_serve_args(json.dumps(doc)) == ["m", "--port", str(port)]
    script = doc["cmd"][0].replace(auth_install.CONTAINER_DIR, str(tmp_path / "python"))
    env = {
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "VLLM_API_KEY": KEY,
        "SELFHOST_SUPERVISOR_PERIOD_S": "0.2",
        "SELFHOST_SUPERVISOR_GRACE_S": grace_s,
        "SELFHOST_RESTART_DELAY_S": "0",
    }
    proc = subprocess.Popen([*doc["entrypoint"], script], env=env, start_new_session=True)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_supervisor_restarts_a_wedged_or_crashed_vllm_and_passes_on_sigterm(plan, tmp_path):
    proc, _ = run(plan, tmp_path, grace_s="0")
    try:
        wait_for(lambda: len(starts(tmp_path)) == 1)
        time.sleep(1.0)  # probes pass: no restart
        assert len(starts(tmp_path)) == 1
        (tmp_path / "wedged").touch()  # answers 500: three failed probes restart it
        wait_for(lambda: len(starts(tmp_path)) == 2)
        assert (tmp_path / "signals").read_text() == "SIGTERM\n"  # stopped gracefully, then started again
        (tmp_path / "wedged").unlink()
        os.kill(starts(tmp_path)[-1], signal.SIGKILL)  # a crash: restarted
        wait_for(lambda: len(starts(tmp_path)) == 3)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # RunPod stops the pod: vLLM gets SIGTERM, the supervisor exits
        assert proc.wait(timeout=20) == 0
        assert (tmp_path / "signals").read_text() == "SIGTERM\nSIGTERM\n"
        assert len(starts(tmp_path)) == 3
    finally:
        stop(proc)


def test_the_supervisor_spares_vllm_while_it_starts(plan, tmp_path):
    """A vLLM that does not generate yet (loading weights) is not restarted during the start grace."""
    (tmp_path / "wedged").touch()
    proc, _ = run(plan, tmp_path, grace_s="60")
    try:
        wait_for(lambda: len(starts(tmp_path)) == 1)
        time.sleep(2.0)  # ten probe periods
        assert len(starts(tmp_path)) == 1 and not (tmp_path / "signals").exists()
    finally:
        stop(proc)
    assert int(runpod_config.supervisor(plan).split("SELFHOST_SUPERVISOR_GRACE_S:-")[1].split("}")[0]) == (
        plan.readiness.initial_delay_s
    )
