"""How every target puts the auth layer (selfhost/auth_middleware.py) where vLLM's `--middleware` finds it.

The one `vllm serve` builder (costing.performance.vllm_args) always adds `--middleware selfhost_auth.BearerAuth`;
each target writes the module as `selfhost_auth.py` into a folder on vLLM's PYTHONPATH:
- local target: `<scratch>/auth/selfhost_auth.py` (write_module), PYTHONPATH in the server's env;
- AWS/GCP VMs: the boot script writes `/opt/selfhost/python/selfhost_auth.py` on the host
  (install_shell) and `docker run` mounts it read-only at the same path with PYTHONPATH set
  (docker_run_flags);
- RunPod: the pod's start command (runpod_docker_args) writes it inside the container, then execs vLLM;
- SkyPilot: the task's run script writes it (install_shell) and exports PYTHONPATH.
The module travels gzipped in base64 (about 1.6 kB; shell-safe in user-data, systemd, YAML and RunPod's
start command); its sha256 is printed beside it so a reviewer can match it to the file in the repo.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shlex
from pathlib import Path

from costing.performance.vllm_args import AUTH_MIDDLEWARE
from selfhost.auth_middleware import KEY_ENV, MIN_KEY_CHARS

MODULE = AUTH_MIDDLEWARE.rsplit(".", 1)[0]  # selfhost_auth
FILENAME = f"{MODULE}.py"
SOURCE_FILE = Path(__file__).resolve().with_name("auth_middleware.py")
CONTAINER_DIR = "/opt/selfhost/python"  # on AWS/GCP hosts, inside their container and inside RunPod's
SKY_DIR = "$HOME/.selfhost/python"


__all__ = ["KEY_ENV", "MIN_KEY_CHARS"]  # the variable the layer reads (vLLM reads it too), its minimum length


def source() -> bytes:
    return SOURCE_FILE.read_bytes()


def sha256() -> str:
    return hashlib.sha256(source()).hexdigest()


def write_module(folder: Path) -> Path:
    """Write selfhost_auth.py into `folder` (the local target); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / FILENAME
    out.write_bytes(source())
    return out


def install_shell(folder: str) -> str:
    """Shell lines writing the module into `folder` (a literal path or `$HOME/...`, expanded by the shell)."""
    b64 = base64.b64encode(gzip.compress(source(), mtime=0)).decode()
    where = f'"{folder}"' if folder.startswith("$") else shlex.quote(folder)
    return (
        f"# selfhost auth layer: selfhost/auth_middleware.py (sha256 {sha256()})\n"
        f"mkdir -p {where}\n"
        f"echo {b64} | base64 -d | gunzip > {where}/{FILENAME}"
    )


def docker_run_flags() -> list[str]:
    """`docker run` flags that give the container the module the host's boot script wrote."""
    return ["-v", f"{CONTAINER_DIR}:{CONTAINER_DIR}:ro", "-e", f"PYTHONPATH={CONTAINER_DIR}"]


# The auth layer's key rules (selfhost.auth_middleware.key_problem) before vLLM loads a model: a missing or weak
# key stops the start in seconds, not after the weights are loaded (vLLM imports --middleware last).
KEY_CHECK = f"python3 -m {MODULE}"


def runpod_docker_args(serve_args: list[str], supervise: str | None = None) -> str:
    """RunPod's start command for the vllm/vllm-openai image: its JSON form replaces the image's
    entrypoint (`vllm serve`) with `bash -c SCRIPT`, which writes the module and execs vLLM, or, with
    `supervise` (shell text calling `serve`, which execs vLLM), runs vLLM under that supervisor."""
    serve = "exec vllm serve " + shlex.join(serve_args)
    script = "\n".join(
        [
            "set -e",
            install_shell(CONTAINER_DIR),
            f"export PYTHONPATH={CONTAINER_DIR}",
            KEY_CHECK,
            *([f"serve() {{ {serve}; }}", "set +e", supervise] if supervise else [serve]),
        ]
    )
    return json.dumps({"entrypoint": ["bash", "-c"], "cmd": [script]})


def runpod_serve_args(docker_args: str) -> list[str]:
    """The `vllm serve` arguments inside a runpod_docker_args string (for tests and inspection)."""
    script = json.loads(docker_args)["cmd"][0]
    line = next(ln for ln in script.splitlines() if "exec vllm serve " in ln)
    line = line.split("exec vllm serve ", 1)[1].removesuffix("; }")
    return shlex.split(line)
