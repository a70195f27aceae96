"""Smoke checks against the local stand-in server (tests/fake_vllm_server.py), stalled and down servers.
The same checks against the real vLLM server are in test_e2e_local.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from fake_vllm_server import free_port

from selfhost.check.smoke import render, run_smoke
from tests.conftest import stand_in_server

KEY = "sk-test"


@pytest.fixture(scope="module")
def server():
    with stand_in_server("--api-key", KEY, "--model", "tiny") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def open_server():
    """A server that accepts any request without a key."""
    with stand_in_server("--model", "tiny") as base_url:
        yield base_url


def by_name(checks):
    return {c.name: c for c in checks}


def test_every_check_passes_on_a_healthy_protected_endpoint(server):
    checks = run_smoke(server, KEY)
    assert [c.name for c in checks] == [
        "health",
        "models",
        "no key refused",
        "wrong key refused",
        "chat completion",
        "streamed chat",
        "metrics",
    ]
    assert all(c.ok for c in checks), render(checks)
    assert "tiny" in by_name(checks)["models"].detail


def test_wrong_key_fails_the_authenticated_checks(server):
    c = by_name(run_smoke(server, "not-the-key"))
    assert c["health"].ok and c["metrics"].ok  # unauthenticated routes
    assert not c["models"].ok and "401" in c["models"].detail
    assert not c["chat completion"].ok and "401" in c["chat completion"].detail
    assert not c["streamed chat"].ok


def test_unprotected_endpoint_fails_the_auth_checks(open_server):
    c = by_name(run_smoke(open_server, KEY))
    assert not c["no key refused"].ok and "not protected" in c["no key refused"].detail
    assert not c["wrong key refused"].ok
    assert c["chat completion"].ok


def test_wrong_model_name_is_reported(server):
    c = by_name(run_smoke(server, KEY, model="llama-9000"))
    assert not c["models"].ok
    assert "llama-9000" in c["models"].detail and "tiny" in c["models"].detail
    assert not c["chat completion"].ok


def test_server_down_fails_every_check_quickly():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    checks = run_smoke(f"http://127.0.0.1:{port}", KEY, timeout_s=5)
    assert time.monotonic() - t0 < 5
    assert not any(c.ok for c in checks)
    assert all("cannot connect" in c.detail for c in checks)


def test_stream_that_stalls_mid_way_fails_within_the_timeout():
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--stall-after", "3") as stalling:
        t0 = time.monotonic()
        c = by_name(run_smoke(stalling, KEY, timeout_s=1.5))
        elapsed = time.monotonic() - t0
    assert not c["streamed chat"].ok and "stalled" in c["streamed chat"].detail
    assert c["chat completion"].ok  # not streamed: unaffected
    assert elapsed < 10


def test_server_that_accepts_and_never_answers_fails_by_timeout():
    """A raw TCP server: accepts connections, reads, never writes a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        checks = run_smoke(f"http://127.0.0.1:{srv.getsockname()[1]}", KEY, timeout_s=0.5)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        srv.close()
    assert not any(c.ok for c in checks)
    assert elapsed < 7 * 0.5 + 3  # each of the 7 checks bounded by its timeout


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfhost.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_exit_codes_and_json(server):
    ok = _cli("smoke", server, "--api-key", KEY, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] is True and len(doc["checks"]) == 7
    bad = _cli("smoke", server, "--api-key", "wrong")
    assert bad.returncode == 1
    assert "FAIL  models" in bad.stdout and "checks passed" in bad.stdout
    usage = _cli("smoke", "not-a-url", "--api-key", KEY)
    assert usage.returncode == 2 and usage.stderr.startswith("error:") and "Traceback" not in usage.stderr
