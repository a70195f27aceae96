"""Run a rendered SkyPilot `run` script under bash with stand-ins for the GPU and the cluster only.

`vllm` is a stand-in that records its argv and the environment it got (the real server cannot start
without GPUs); `nvidia-smi` prints the GPU name. Everything else (`sed`, `head`, `base64`, `gunzip`, the
shell itself) is real, and no `ray` exists on PATH: a script that needs one fails with 127.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RECORDED_ENV = ("VLLM_HOST_IP", "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "VLLM_API_KEY")


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def run_script(
    tmp_path: Path, script: str, gpu_name: str, env: dict[str, str], timeout: float = 30
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run `script` in a fresh folder under tmp_path; return the process and each `vllm` call
    ({"argv": [...], "env": {...}}). A script that loops or waits forever fails the timeout."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "vllm-calls.jsonl"
    _stub(bin_dir, "nvidia-smi", f"echo '{gpu_name}'")
    vllm = bin_dir / "vllm"
    vllm.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        f"    keys = {RECORDED_ENV!r}\n"
        "    env = {k: os.environ.get(k) for k in keys}\n"
        "    f.write(json.dumps({'argv': ['vllm', *sys.argv[1:]], 'env': env}) + '\\n')\n"
    )
    vllm.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), **env},
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return out, calls


def node_env(rank: int, ips: list[str], **extra: str) -> dict[str, str]:
    """SkyPilot's multi-node variables as it sets them on node `rank` (SKYPILOT_NODE_IPS: one IP a line, head first)."""
    return {
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "\n".join(ips),
        "SKYPILOT_NUM_NODES": str(len(ips)),
        **extra,
    }
