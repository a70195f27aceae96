"""The auth layer (selfhost/auth_middleware.py) as an ASGI app, as the shipped module, and as each target
installs it: the boot script's and SkyPilot's shell lines and RunPod's start command run in bash.
The layer inside the real vLLM server is tested in test_e2e_auth.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhost import auth_install
from selfhost.auth_middleware import MIN_KEY_CHARS, BearerAuth, load_key

KEY = "k" * 8 + "-secret-key-123"


async def _inner(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})
    else:
        await send({"type": "websocket.accept"})


def call(path: str, method: str = "GET", auth: str | None = None, kind: str = "http", **scope_extra):
    """One request through BearerAuth(KEY) around an app that answers 200 'inner'; the messages sent."""
    headers = [(b"host", b"x")] + ([(b"authorization", auth.encode())] if auth is not None else [])
    scope = {"type": kind, "path": path, "method": method, "headers": headers, "root_path": "", **scope_extra}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        sent.append(msg)

    asyncio.run(BearerAuth(_inner, key=KEY)(scope, receive, send))
    return sent


def status(sent) -> int:
    return next(m["status"] for m in sent if m["type"].endswith("response.start"))


@pytest.mark.parametrize(
    "path",
    [
        *("/invocations", "/tokenize", "/detokenize", "/metrics", "/version", "/load", "/openapi.json", "/docs"),
        *("/redoc", "/scale_elastic_ep", "/pooling", "/ping", "/v1/models", "/v2/x", "/health/", "//health", "/"),
    ],
)
def test_every_route_but_health_needs_the_key(path):
    for method in ("GET", "POST", "OPTIONS"):
        sent = call(path, method)
        assert status(sent) == 401
        body = json.loads(sent[1]["body"])
        assert body["error"]["code"] == 401 and "Bearer" in body["error"]["message"]
        assert (b"www-authenticate", b'Bearer realm="vllm"') in sent[0]["headers"]
    assert status(call(path, "POST", f"Bearer {KEY}")) == 200
    assert sent[1]["body"] != b"inner"


@pytest.mark.parametrize(
    "auth",
    [
        *(f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", f"Basic {KEY}", KEY, "Bearer", "Bearer ", f"Token {KEY}", ""),
        *(f"Bearer  {KEY}", f"Bearer {KEY} "),  # exactly the key, as vLLM's own /v1 check compares it
    ],
)
def test_wrong_keys_and_schemes_are_refused(auth):
    assert status(call("/v1/models", auth=auth)) == 401


def test_the_right_key_passes_in_any_scheme_case():
    for auth in (f"Bearer {KEY}", f"bearer {KEY}", f"BEARER {KEY}"):
        sent = call("/metrics", auth=auth)
        assert status(sent) == 200 and sent[1]["body"] == b"inner"


def test_health_is_open_for_reads_only_and_under_a_root_path():
    assert status(call("/health")) == 200 and status(call("/health", "HEAD")) == 200
    assert status(call("/health", "POST")) == 401
    assert status(call("/api/health", root_path="/api")) == 200
    assert status(call("/api/metrics", root_path="/api")) == 401


def test_websockets_need_the_key_too():
    assert call("/v1/realtime", kind="websocket") == [{"type": "websocket.close", "code": 1008}]
    denial = call("/v1/realtime", kind="websocket", extensions={"websocket.http.response": {}})
    assert denial[0] == {"type": "websocket.http.response.start", "status": 401, "headers": denial[0]["headers"]}
    assert call("/v1/realtime", kind="websocket", auth=f"Bearer {KEY}") == [{"type": "websocket.accept"}]


def test_lifespan_passes_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BearerAuth(app, key=KEY)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


@pytest.mark.parametrize("value", [None, "", "   ", "short-key"])
def test_no_key_or_a_short_one_refuses_to_load(value):
    env = {} if value is None else {"VLLM_API_KEY": value}
    with pytest.raises(RuntimeError, match="refusing to serve without a usable API key"):
        load_key(env)
    assert load_key({"VLLM_API_KEY": KEY}) == KEY.encode()
    assert len(KEY) >= MIN_KEY_CHARS


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a" * 16, "different characters"),
        ("abcabcabcabcabcabc", "different characters"),
        (KEY + "\n", "newline"),
        (" " + KEY, "space"),
        (KEY + "é", "non-ASCII"),  # vLLM's /v1 check compares latin-1: the right key would be refused there
    ],
)
def test_a_weak_or_unsendable_key_refuses_to_load(value, why):
    with pytest.raises(RuntimeError, match=why):
        load_key({"VLLM_API_KEY": value})


def test_the_local_launcher_checks_the_key_before_vllm_loads(tmp_path):
    """vllm_main.py imports the auth layer (its key checks) before vLLM: a bad key stops it at once, exit 2,
    before any model load. Run by this test's Python, which has no vLLM: getting past the check would fail
    differently (ImportError)."""
    auth_install.write_module(tmp_path)
    launcher = Path(__file__).resolve().parents[1] / "selfhost" / "local" / "vllm_main.py"
    for key, why in ((None, "is not set"), ("a" * 20, "different characters"), (KEY + "\n", "newline")):
        env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
        env["PYTHONPATH"] = str(tmp_path)
        if key is not None:
            env["VLLM_API_KEY"] = key
        argv = [sys.executable, str(launcher), "serve", "m", "--middleware", "selfhost_auth.BearerAuth"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    env["VLLM_API_KEY"] = KEY  # a good key gets past the check (then fails: no vLLM in this interpreter)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode not in (0, 2) and "vllm" in proc.stderr


def _import_shipped(folder: Path, key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    env["PYTHONPATH"] = str(folder)
    if key is not None:
        env["VLLM_API_KEY"] = key
    code = "import selfhost_auth; print(selfhost_auth.BearerAuth.__name__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, cwd=folder)


def test_the_shipped_module_refuses_to_import_without_a_key(tmp_path):
    auth_install.write_module(tmp_path)
    missing = _import_shipped(tmp_path, None)
    assert missing.returncode != 0 and "VLLM_API_KEY is not set" in missing.stderr
    short = _import_shipped(tmp_path, "abc")
    assert short.returncode != 0 and "shorter than 16" in short.stderr
    ok = _import_shipped(tmp_path, KEY)
    assert ok.returncode == 0 and ok.stdout.strip() == "BearerAuth"


def test_stdlib_only():
    """It must import inside any vLLM image: no third-party module, no selfhost/costing import."""
    tree = __import__("ast").parse(auth_install.source())
    names = {a.name.split(".")[0] for n in tree.body if type(n).__name__ == "Import" for a in n.names}
    names |= {n.module.split(".")[0] for n in tree.body if type(n).__name__ == "ImportFrom" and n.module}
    assert names and names <= set(sys.stdlib_module_names)


def test_install_lines_write_the_module_byte_for_byte(tmp_path):
    for folder in (str(tmp_path / "opt" / "py"), "$HOME/.selfhost/python"):
        lines = auth_install.install_shell(folder)
        assert "sha256 " + auth_install.sha256() in lines
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", lines],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        written = Path(folder.replace("$HOME", str(tmp_path))) / "selfhost_auth.py"
        assert written.read_bytes() == auth_install.source()


def test_runpod_start_command_writes_the_module_and_execs_vllm_with_it(tmp_path):
    """RunPod's JSON start command, run as docker would (entrypoint + cmd), with a stand-in `vllm`."""
    args = ["meta-llama/Llama-3.1-8B-Instruct", "--port", "8000", "--middleware", "selfhost_auth.BearerAuth"]
    doc = json.loads(auth_install.runpod_docker_args(args))
    assert doc["entrypoint"] == ["bash", "-c"] and len(doc["cmd"]) == 1
    assert auth_install.runpod_serve_args(auth_install.runpod_docker_args(args)) == args
    folder = tmp_path / "container-dir"
    script = doc["cmd"][0].replace(auth_install.CONTAINER_DIR, str(folder))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # the stand-in `vllm` imports the middleware as vLLM's --middleware does, then records its argv
    (bin_dir / "vllm").write_text(
        f'#!/bin/bash\n{sys.executable} -c \'import selfhost_auth\' || exit 9\nprintf "%s\\n" "$@" > {tmp_path}/argv\n'
    )
    (bin_dir / "vllm").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "VLLM_API_KEY": KEY}
    done = subprocess.run([*doc["entrypoint"], script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (folder / "selfhost_auth.py").read_bytes() == auth_install.source()
    assert (tmp_path / "argv").read_text().splitlines() == ["serve", *args]
    (tmp_path / "argv").unlink()
    for weak in ("a" * 20, KEY + "\n", None):  # the key checks run before vLLM starts: vLLM never runs
        bad = {k: v for k, v in env.items() if k != "VLLM_API_KEY"} | ({"VLLM_API_KEY": weak} if weak else {})
        done = subprocess.run([*doc["entrypoint"], script], env=bad, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "VLLM_API_KEY" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "argv").exists()
    no_key = subprocess.run([*doc["entrypoint"], script], env={"PATH": env["PATH"]}, capture_output=True, timeout=30)
    assert no_key.returncode == 2  # refused by the key check before vLLM (and its import of the module) runs


def test_vm_boot_script_writes_the_module_and_mounts_it_into_the_container():
    from costing.performance.vllm_args import VLLM_IMAGE
    from selfhost.stack import aws_config as aws
    from selfhost.stack.boot_script import boot_script, exec_start_argv

    plan = aws.plan(
        {
            "model": "llama-3.1-8b",
            "instanceType": "g5.xlarge",
            "allowedCidrs": "203.0.113.0/24",
            "allowPlainHttp": "true",
            "requestsPerDay": "3000",
            "inputTokens": "1000",
            "outputTokens": "250",
            "apiKey": KEY,
            "hfToken": "hf",
        }
    )
    script = boot_script(plan, {"VLLM_API_KEY": "fetch-api-key", "HF_TOKEN": "fetch-hf"})
    assert auth_install.install_shell(auth_install.CONTAINER_DIR) in script
    assert subprocess.run(["bash", "-n", "-c", script], timeout=30).returncode == 0
    argv = exec_start_argv(script)
    d = auth_install.CONTAINER_DIR
    assert argv[argv.index("-v", argv.index("-v") + 1) + 1] == f"{d}:{d}:ro"
    assert f"PYTHONPATH={d}" in argv
    serve = argv[argv.index(VLLM_IMAGE) + 1 :]
    assert serve[serve.index("--middleware") + 1] == "selfhost_auth.BearerAuth"
    assert KEY not in script and not [a for a in argv if "api-key" in a or "API_KEY=" in a]


def test_no_api_key_flag_in_any_template_or_emitted_command():
    root = Path(__file__).resolve().parents[1]
    templates = sorted((root / "templates").glob("*.yaml"))
    assert templates
    for path in templates:
        text = path.read_text()
        assert "--api-key" not in text and "--middleware selfhost_auth.BearerAuth" in text, path.name
    from costing.data.spec import load_spec
    from costing.money.report import review_dict
    from costing.money.review import cost_review

    command = review_dict(cost_review(load_spec(root / "examples" / "llama-3.1-8b-runpod-a40.yaml")))["vllm"]["command"]
    assert "--api-key" not in command and " --middleware selfhost_auth.BearerAuth " in f"{command} "


@settings(max_examples=300, deadline=None)
@given(
    path=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40).map(lambda p: "/" + p),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    root=st.sampled_from(["", "/api"]),
)
def test_without_the_key_only_reading_health_passes(path, method, root):
    sent = call(root + path, method, root_path=root)
    if path == "/health" and method in ("GET", "HEAD"):
        assert status(sent) == 200
    else:
        assert status(sent) == 401
    assert status(call(root + path, method, f"Bearer {KEY}", root_path=root)) == 200
