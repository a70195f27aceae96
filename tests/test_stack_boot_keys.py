"""The boot wrappers run under bash: a missing or weak API key never reaches vLLM (AWS and GCP boot scripts
whole; the SkyPilot task's run script at the end of this file).

Stand-ins only for what a VM has and this machine does not: the cloud CLIs (`aws`, `gcloud`, `curl` for the
metadata servers) answering with a chosen key, `nvidia-smi`, `docker`, and `systemctl`, which starts
vllm.service the way systemd does (each ExecStartPre in order, a failing one ends the start before
ExecStart). The auth layer's key check runs for real, from the module the script itself writes.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from selfhost.stack import aws_config, gcp_config
from selfhost.stack.boot_script import SECRETS_FILE, UNIT

CONFIG = {
    "model": "llama-3.1-8b",
    "allowedCidrs": "203.0.113.0/24",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_x",
    "allowPlainHttp": "true",
}
GOOD = "sk-live-0123456789abcdef"
WEAK = {
    "missing": None,
    "empty": "",
    "short": "Ab3$efG7",
    "one-char": "a" * 32,
    "two-chars": "ab" * 16,
    "space": "sk live 0123456789abcdef",
    "non-ascii": "sk-live-0123456789abcdé",
}
# The paths the script writes on a VM, moved under the test's folder (none exists on this machine).
MOVED = ("/opt/selfhost", "/run/selfhost", "/var/lib/selfhost", "/etc/systemd/system")

SYSTEMCTL = r"""
import os, subprocess, sys
from pathlib import Path
units, log = Path(os.environ["UNITS"]), Path(os.environ["SYSTEMD_LOG"])
args = sys.argv[1:]
if args[:2] != ["enable", "--now"]:
    sys.exit(0)
for unit in args[2:]:
    if unit != "vllm.service":
        continue
    lines = (units / unit).read_text().splitlines()
    for line in lines:
        if line.startswith("ExecStartPre="):
            cmd = line.split("=", 1)[1]
            optional = cmd.startswith("-")
            rc = subprocess.run(["bash", "-c", cmd.lstrip("-")]).returncode
            if rc and not optional:
                with log.open("a") as f:
                    f.write(f"{unit} failed in ExecStartPre={cmd}\n")
                break
    else:
        with log.open("a") as f:
            f.write(f"{unit} ExecStart " + next(x for x in lines if x.startswith("ExecStart=")) + "\n")
"""


def stand_ins(bin_dir: Path, root: Path) -> None:
    bin_dir.mkdir()
    tools = {
        # AWS: Secrets Manager by ARN (the api-key ARN answers the chosen key); IMDS for the instance id
        "aws": 'case "$*" in *api-key*) [ -n "${KEY+x}" ] || exit 254; printf "%s\\n" "$KEY" ;; '
        "*get-secret-value*) echo hf_token ;; esac",
        # GCP: Secret Manager by name; the metadata server's project id
        "gcloud": 'case "$*" in *api-key*) [ -n "${KEY+x}" ] || exit 1; printf "%s\\n" "$KEY" ;; '
        "*) echo hf_token ;; esac",
        "curl": "echo i-0123456789abcdef0",
        "nvidia-smi": "exit 0",
        "docker": f'echo "$*" >> {shlex.quote(str(root / "docker.log"))}',
        "systemctl": f'exec {shlex.quote(sys.executable)} -c {shlex.quote(SYSTEMCTL)} "$@"',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)


def boot(script: str, tmp_path: Path, key: str | None) -> tuple[subprocess.CompletedProcess, Path, str]:
    """Run the whole boot script in bash with the stand-ins; returns the run, the env file and systemd's log."""
    root = tmp_path / "vm"
    for path in MOVED:
        (root / path.strip("/")).mkdir(parents=True, exist_ok=True)
        script = script.replace(path, str(root / path.strip("/")))
    bin_dir = tmp_path / "bin"
    stand_ins(bin_dir, root)
    (tmp_path / "boot.sh").write_text(script)
    env = {
        **{k: v for k, v in os.environ.items() if k != "KEY"},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "UNITS": str(root / "etc/systemd/system"),
        "SYSTEMD_LOG": str(root / "systemd.log"),
        **({"KEY": key} if key is not None else {}),
    }
    done = subprocess.run(["bash", str(tmp_path / "boot.sh")], env=env, capture_output=True, text=True, timeout=60)
    log = root / "systemd.log"
    return done, root / SECRETS_FILE.strip("/"), log.read_text() if log.exists() else ""


def aws_script() -> str:
    p = aws_config.plan({**CONFIG, "instanceType": "g5.xlarge"})
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:selfhost/{}-AbCdEf"
    return aws_config.user_data(p, {"apiKey": arn.format("api-key"), "hfToken": arn.format("hf-token")}, "us-east-1")


def gcp_script() -> str:
    p = gcp_config.plan({**CONFIG, "machineType": "g2-standard-8"})
    return gcp_config.startup_script(p, {"apiKey": "selfhost-api-key", "hfToken": "selfhost-hf-token"})


SCRIPTS = {"aws": aws_script, "gcp": gcp_script}


@pytest.fixture(scope="module", params=sorted(SCRIPTS))
def script(request) -> str:
    return SCRIPTS[request.param]()


def test_a_good_key_starts_vllm_from_a_private_env_file(script, tmp_path):
    done, env_file, log = boot(script, tmp_path, GOOD)
    assert done.returncode == 0, done.stderr
    assert f"{UNIT} ExecStart ExecStart=/usr/bin/docker run" in log, log  # the control: the stand-ins start vLLM
    assert env_file.read_text() == f"VLLM_API_KEY={GOOD}\nHF_TOKEN=hf_token\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("key", list(WEAK.values()), ids=list(WEAK))
def test_a_missing_or_weak_key_never_starts_vllm(script, tmp_path, key):
    done, env_file, log = boot(script, tmp_path, key)
    assert "ExecStart " not in log and "failed in ExecStartPre=" in log and "fetch-secrets.sh" in log, log
    assert not env_file.exists() and not list(env_file.parent.glob("env.*"))  # nothing for docker to read
    if key:
        assert "VLLM_API_KEY" in done.stderr and key not in done.stderr + done.stdout  # named, never printed


# ---- SkyPilot: the task's run script (every template), under bash with stand-ins for the GPU and vllm ----------


@pytest.mark.parametrize("key", [*WEAK.values(), GOOD], ids=[*WEAK, "good"])
@pytest.mark.parametrize("name", ["llama-3.1-8b-aws-a10g-spot-service", "llama-3.1-405b-gcp-2x8xl4-awq"])
def test_skypilot_run_script_starts_vllm_only_with_a_good_key(tmp_path, name, key):
    import sky_scripts
    import yaml

    task = yaml.safe_load((Path(__file__).resolve().parents[1] / "templates" / f"{name}.yaml").read_text())
    smi = "NVIDIA L4" if "l4" in name else "NVIDIA A10G"
    env = {"VLLM_API_KEY": key} if key is not None else {}
    if task.get("num_nodes", 1) > 1:
        env = sky_scripts.node_env(0, ["10.0.0.1", "10.0.0.2"], **env)
    out, calls = sky_scripts.run_script(tmp_path, task["run"], smi, env)
    if key == GOOD:
        assert out.returncode == 0 and len(calls) == 1, out.stderr  # the control: the stand-in vllm starts
    else:
        assert out.returncode == 2 and calls == [] and "VLLM_API_KEY" in out.stderr, out.stderr


def test_the_key_check_runs_on_the_vms_own_python():
    """The boot scripts run `python3 -m selfhost_auth` on the host, whose python3 is 3.9 on Debian 11 (the GCP Deep
    Learning VM) and Amazon Linux 2023: the module's syntax is 3.9's and no annotation is evaluated (`str | None`
    raises TypeError at import on 3.9)."""
    import __future__

    import ast

    from selfhost import auth_install

    source = auth_install.source().decode()
    ast.parse(source, feature_version=(3, 9))
    code = compile(source, "selfhost_auth.py", "exec", dont_inherit=True)
    assert code.co_flags & __future__.annotations.compiler_flag
