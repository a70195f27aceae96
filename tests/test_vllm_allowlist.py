"""Issue 24: `vllm.extra_args` and the server's environment carry only what the kit reviewed safe.

The allowlist (costing/data/vllm_allowlist.json) is generated from the pinned vLLM's own parser and
`vllm.envs` table by scripts/vllm_allowlist.py; the first test regenerates it and fails when it is stale.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from costing.data.spec import load_spec
from costing.errors import UserError
from costing.performance.vllm_allowlist import DATA, allowlist, check_env, check_extra_args
from tests.cli_inprocess import one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
KEY = "sk-Zq8vR2mWx4Tn7LpB9cYd"


def test_shipped_allowlist_is_what_the_pinned_vllm_generates(tmp_path):
    if not VLLM_PY.exists():
        pytest.fail(f"{VLLM_PY} missing: run `make vllm-venv`")
    out = tmp_path / "allowlist.json"
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("VLLM_USE_RUST_FRONTEND", None)
    proc = subprocess.run(
        [str(VLLM_PY), str(ROOT / "scripts" / "vllm_allowlist.py"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(out.read_text())
    assert fresh == json.loads(DATA.read_text()), (
        "costing/data/vllm_allowlist.json is stale: regenerate it with "
        "`VLLM_TARGET_DEVICE=cpu .venv-vllm/bin/python scripts/vllm_allowlist.py costing/data/vllm_allowlist.json`"
    )
    # vLLM's own parser knows these (the measured holes), and the file classes each refused
    for flag in ("--api-key", "--grpc", "--root-path", "--middleware", "--host", "--port"):
        assert fresh["flags"][flag]["class"] != "safe", flag
    assert fresh["env"]["VLLM_USE_RUST_FRONTEND"]["class"] == "refused"


def _spec(tmp_path: Path, extra) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "target": {"gpu": "A40"}, "vllm": {"extra_args": extra}}))
    return path


REFUSED = [
    (["--api-key", KEY], "--api-key", "secret"),
    ([f"--api-key={KEY}"], "--api-key", "secret"),
    ([f"--api_key={KEY}"], "--api-key", "secret"),  # vLLM's parser reads underscores as dashes
    (["--hf-token", KEY], "--hf-token", "secret"),
    (["--grpc"], "--grpc", "another server"),
    (["--grpc-port", "50051"], "--grpc-port", "another server"),
    (["--root-path", "/api"], "--root-path", "root path"),
    (["--middleware", "x.Y"], "--middleware", "auth layer"),
    (["--host", "0.0.0.0"], "--host", "bind address"),
    (["--port", "9000"], "--port", "bind address"),
    (["--uds", "/tmp/s"], "--uds", "bind address"),
    (["--headless"], "--headless", "another server"),
    (["--config", "more.yaml"], "--config", "loads code, flags"),
    (["--trust-remote-code"], "--trust-remote-code", "loads code"),
    (["--root", "/api"], "--root", "does not know"),  # an abbreviation argparse would expand
    (["--seed", "1", "--api-key", KEY], "--api-key", "secret"),  # after a safe flag
    (["--seed", "--grpc"], "--grpc", "another server"),  # in a value's place
    (["--max-model-len", "4096"], "--max-model-len", "set by the kit"),
    (["-tp", "2"], "-tp", "set by the kit"),
    (["--bogus-flag"], "--bogus-flag", "does not know"),
    (["extra-model"], "item 1", "value without a flag"),
]


@pytest.mark.parametrize(("extra", "flag", "why"), REFUSED, ids=[r[1] + ":" + r[2] for r in REFUSED])
def test_refused_extra_args_exit_2_at_spec_parse_without_echoing_values(tmp_path, extra, flag, why):
    result = run_cli("plan", "--spec", str(_spec(tmp_path, extra)))
    line = one_line_error(result, flag, why)
    assert KEY not in result.stderr + result.stdout and KEY[3:] not in line


def test_safe_extra_args_reach_the_command_line(tmp_path):
    from costing.data.resolve import resolve
    from costing.performance.vllm_args import serve_args

    extra = ["--enforce-eager", "--seed=-1", "--scheduling-policy", "priority", "--disable-log-stats"]
    spec = load_spec(_spec(tmp_path, extra))
    args = serve_args(resolve(spec, need_offer=False).fit.settings)
    assert args[-len(extra) :] == extra
    assert args.count("--middleware") == 1


def test_settings_built_elsewhere_are_checked_too():
    from dataclasses import replace

    from costing.data.resolve import resolve
    from costing.performance.vllm_args import serve_args

    settings = resolve(load_spec(None, model="llama-3.1-8b", target={"gpu": "A40"}), need_offer=False).fit.settings
    with pytest.raises(UserError, match="--grpc"):
        serve_args(replace(settings, extra_args=("--grpc",)))


def test_every_flag_the_kit_sets_is_refused_in_extra_args():
    """A user cannot repeat (override) a flag the kit itself puts on the line."""
    from costing.data.resolve import resolve
    from costing.performance.vllm_args import serve_args

    settings = resolve(load_spec(None, model="llama-3.1-8b", target={"gpu": "A40"}), need_offer=False).fit.settings
    flags = [a for a in serve_args(settings) if a.startswith("-")]
    assert "--middleware" in flags
    for flag in flags:
        with pytest.raises(UserError):
            check_extra_args([flag, "1"] if allowlist()["flags"][flag]["takes_value"] else [flag])


@pytest.mark.parametrize("name", ["VLLM_USE_RUST_FRONTEND", "VLLM_RUST_FRONTEND_PATH", "VLLM_SERVER_DEV_MODE"])
def test_refused_environment(name, monkeypatch, tmp_path):
    from selfhost.local import server

    with pytest.raises(UserError, match=name):
        check_env({name: "1"})
    monkeypatch.setenv("SELFHOST_SCRATCH", str(tmp_path))
    monkeypatch.setenv(name, "1")
    with pytest.raises(UserError, match=name):
        server.check_can_start(None, 1)  # before the port check: nothing is probed or started
    with pytest.raises(UserError, match=name):
        server.server_env(KEY, 1.0)
    monkeypatch.delenv(name)
    env = server.server_env(KEY, 1.0)
    assert env["VLLM_API_KEY"] == KEY and name not in env


def test_kit_environment_passes_and_unknown_vllm_variables_are_refused():
    check_env({"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "PATH": "/bin", "HOME": "/root"})
    with pytest.raises(UserError, match="VLLM_NOT_A_REAL_ONE"):
        check_env({"VLLM_NOT_A_REAL_ONE": "1"})


def test_container_environment_is_checked():
    from types import SimpleNamespace

    from selfhost.stack import boot_script

    with pytest.raises(UserError, match="VLLM_USE_RUST_FRONTEND"):
        boot_script.docker_run(SimpleNamespace(port=8000), env={"VLLM_USE_RUST_FRONTEND": "1"})  # type: ignore[arg-type]
