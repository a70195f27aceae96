"""No vLLM the kit starts reports usage to stats.vllm.ai: SERVE_ENV is in every target's server environment,
and vLLM's own usage_lib (the pinned vLLM, its CPU build here) reads it as "disabled"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

from test_k8s_manifests import eks  # noqa: F401  (the fixture)

from costing.performance.vllm_args import SERVE_ENV
from selfhost.local.server import server_env
from selfhost.stack import boot_script

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
CHECK = "from vllm.usage.usage_lib import is_usage_stats_enabled as f; print(f())"


def test_vllm_reads_the_serve_env_as_usage_stats_off(tmp_path):
    """.venv-vllm is part of `make test` (the vLLM the local target runs, the pinned release)."""
    unset = ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "VLLM_DO_NOT_TRACK")
    base = {k: v for k, v in os.environ.items() if k not in unset}
    base |= {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}  # no do_not_track file
    for env, expected in ((base, "True"), ({**base, **SERVE_ENV}, "False")):
        out = subprocess.run([str(VLLM_PY), "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == expected


def test_every_target_starts_vllm_with_the_serve_env(eks):  # noqa: F811
    _review, docs = eks
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    k8s = {e["name"]: e.get("value") for e in container["env"]}
    plan = SimpleNamespace(port=8000, image="vllm/vllm-openai:test", container_args=["--model", "m"])
    argv = boot_script.docker_run(plan)  # type: ignore[arg-type]
    docker = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-e")
    local = server_env("k" * 40, 1.0)
    templates = sorted((ROOT / "templates").glob("*.yaml"))
    assert templates
    for name, value in SERVE_ENV.items():
        assert k8s[name] == value and docker[name] == value and local[name] == value
        for t in templates:
            assert f"export {name}={value}" in t.read_text(), t.name
