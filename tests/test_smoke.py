"""Smoke checks against the local stand-in server (tests/fake_vllm_server.py), stalled and down servers.
The same checks against the real vLLM server are in test_e2e_local.py."""

from __future__ import annotations

import json
import re
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
def v1_only_server():
    """Guards /v1 only, as plain vLLM's --api-key does."""
    with stand_in_server("--api-key", KEY, "--guard", "v1", "--model", "tiny") as base_url:
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
        "every route needs the key",
        "wrong key refused",
        "chat completion",
        "streamed chat",
        "metrics",
    ]
    assert all(c.ok for c in checks), render(checks)
    assert "tiny" in by_name(checks)["models"].detail
    # 8 routes in the schema + FastAPI's 3 unlisted docs routes, all but /health refused
    assert "10 routes refused" in by_name(checks)["every route needs the key"].detail


def test_a_server_guarding_only_v1_fails_naming_each_open_route(v1_only_server):
    c = by_name(run_smoke(v1_only_server, KEY))
    route_check = c["every route needs the key"]
    assert c["no key refused"].ok and not route_check.ok  # /v1 refused, the rest answer
    open_ = re.findall(r"(/[\w./]*) \((\d+)\)", route_check.detail)
    assert dict(open_) == {"/metrics": "200", "/version": "200", "/openapi.json": "200", "/invocations": "405"}
    assert "/health" not in route_check.detail and "/v1/" not in route_check.detail


def test_routes_come_from_the_shipped_list_when_the_schema_is_unreadable(v1_only_server):
    from selfhost.check import smoke

    s = smoke.Smoke(v1_only_server, "not-the-key")  # /openapi.json answers, but the wrong key is ignored there
    try:
        served, maybe, source = s.routes()
    finally:
        s.close()
    assert source == "its /openapi.json" and "/invocations" in served
    assert maybe == ["/docs", "/docs/oauth2-redirect", "/redoc"]  # FastAPI's, unlisted in any schema
    with stand_in_server("--api-key", KEY, "--model", "tiny") as guarded:
        s = smoke.Smoke(guarded, "not-the-key")  # the wrong key: the schema is refused (401)
        try:
            served, maybe, source = s.routes()
        finally:
            s.close()
    version, shipped = smoke.shipped_routes()
    assert source == f"vLLM {version}'s route list (/openapi.json answered 401)"
    assert served == [] and maybe == [p for p in shipped if p != "/health"]
    assert {"/invocations", "/tokenize", "/metrics", "/version", "/load", "/openapi.json", "/docs"} <= set(maybe)


def test_wrong_key_fails_the_authenticated_checks(server):
    c = by_name(run_smoke(server, "not-the-key"))
    assert c["health"].ok and c["every route needs the key"].ok  # checks that need no key
    assert not c["metrics"].ok and "401" in c["metrics"].detail
    assert not c["models"].ok and "401" in c["models"].detail
    assert not c["chat completion"].ok and "401" in c["chat completion"].detail
    assert not c["streamed chat"].ok


def test_unprotected_endpoint_fails_the_auth_checks(open_server):
    c = by_name(run_smoke(open_server, KEY))
    assert not c["no key refused"].ok and "not protected" in c["no key refused"].detail
    assert not c["every route needs the key"].ok and "/v1/models (200)" in c["every route needs the key"].detail
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
    assert elapsed < 8 * 0.5 + 3  # each of the 8 checks bounded by its timeout


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfhost.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_exit_codes_and_json(server, v1_only_server):
    ok = _cli("smoke", server, "--api-key", KEY, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] is True and len(doc["checks"]) == 8
    bad = _cli("smoke", server, "--api-key", "wrong")
    assert bad.returncode == 1
    assert "FAIL  models" in bad.stdout and "checks passed" in bad.stdout
    v1_only = _cli("smoke", v1_only_server, "--api-key", KEY)
    assert v1_only.returncode == 1 and "FAIL  every route needs the key" in v1_only.stdout
    usage = _cli("smoke", "not-a-url", "--api-key", KEY)
    assert usage.returncode == 2 and usage.stderr.startswith("error:") and "Traceback" not in usage.stderr


def test_checks_hold_under_python_O(v1_only_server):
    """No assert in the checks: under -O a server open beyond /v1 still fails the smoke test."""
    p = subprocess.run(
        [sys.executable, "-O", "-m", "selfhost.cli", "smoke", v1_only_server, "--api-key", KEY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "FAIL  every route needs the key" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize(
    ("end_after", "end_as", "stream_problem", "chat_problem"),
    [
        ("5", "cut", "ended without [DONE] after", None),  # cut: streams only, the plain completion is whole
        ("5", "abort", "finish_reason abort", "finish_reason abort"),
        ("5", "short", "cut at 5 of 8 tokens", "cut at 5 of 8 tokens"),
        ("1", "short", "delivered 1 tokens (asked 2 to 8)", "delivered 1 tokens (asked 2 to 8)"),
    ],
)
def test_chat_checks_fail_an_answer_that_does_not_deliver_what_was_asked(
    end_after, end_as, stream_problem, chat_problem
):
    with stand_in_server("--api-key", KEY, "--model", "tiny", "--end-after", end_after, "--end-as", end_as) as ending:
        c = by_name(run_smoke(ending, KEY, timeout_s=5))
    assert not c["streamed chat"].ok and stream_problem in c["streamed chat"].detail, c["streamed chat"].detail
    if chat_problem:
        assert not c["chat completion"].ok and chat_problem in c["chat completion"].detail
    else:
        assert c["chat completion"].ok
    assert c["models"].ok and c["metrics"].ok  # the rest of the endpoint answers
