"""The VM boot script: its secret-fetch step run for real in bash, and the systemd quoting."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from costing.performance.vllm_args import VLLM_IMAGE
from selfhost import auth_install
from selfhost.stack import aws_config as aws
from selfhost.stack.boot_script import DELIM, SECRETS_FILE, boot_script, exec_start_argv, systemd_arg

CONFIG = {
    "model": "llama-3.1-8b",
    "instanceType": "g5.xlarge",
    "allowedCidrs": "203.0.113.0/24",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "y",
    "allowPlainHttp": "true",
}


@pytest.fixture(scope="module")
def plan():
    return aws.plan(CONFIG)  # Pulumi-free: validation and cost review only


def fetch_script(script: str, run_dir: str, auth_dir: str) -> str:
    body = re.search(rf"cat > /opt/selfhost/fetch-secrets.sh <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S).group(1)
    return body.replace(os.path.dirname(SECRETS_FILE), run_dir).replace(auth_install.CONTAINER_DIR, auth_dir)


def run_fetch(plan, tmp_path, api_key: str | None, hf_token: str = "hf_abc"):
    """Run the generated fetch step with a stand-in secret store on PATH (`store NAME` prints the value)."""
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    values = {"api": api_key, "hf": hf_token}
    lines = ["#!/bin/bash", 'case "$1" in']
    for name, value in values.items():
        lines.append(f"  {name}) " + ("exit 3 ;;" if value is None else f"printf '%s\\n' '{value}' ;;"))
    lines.append("esac")
    store = bin_dir / "store"
    store.write_text("\n".join(lines) + "\n")
    store.chmod(0o755)
    script = boot_script(plan, {"VLLM_API_KEY": "store api", "HF_TOKEN": "store hf"})
    path = tmp_path / "fetch.sh"
    auth_dir = auth_install.write_module(tmp_path / "python").parent  # what the boot script writes before
    path.write_text(fetch_script(script, str(run_dir), str(auth_dir)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=30)
    return done, run_dir / os.path.basename(SECRETS_FILE)


def test_fetch_writes_a_private_env_file(plan, tmp_path):
    done, env_file = run_fetch(plan, tmp_path, "sk-live=0123456789abcdef")
    assert done.returncode == 0, done.stderr
    assert env_file.read_text() == "VLLM_API_KEY=sk-live=0123456789abcdef\nHF_TOKEN=hf_abc\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("api_key", [None, ""], ids=["store-fails", "empty"])
def test_no_api_key_means_no_start(plan, tmp_path, api_key):
    done, env_file = run_fetch(plan, tmp_path, api_key)
    assert done.returncode != 0
    assert not env_file.exists()
    assert not list((tmp_path / "run").glob("env.*"))  # no half-written file left behind


def test_unit_restarts_and_runs_the_container_with_gpus(plan):
    script = boot_script(plan, {"VLLM_API_KEY": "true", "HF_TOKEN": "true"})
    assert "Restart=always" in script and "StartLimitIntervalSec=0" in script
    argv = exec_start_argv(script)
    assert argv[:2] == ["/usr/bin/docker", "run"]
    assert argv[argv.index("--gpus") + 1] == "all"
    assert argv[argv.index("-p") + 1] == f"{plan.port}:{plan.port}"
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == plan.container_args
    assert "vllm-watchdog" not in script
    assert "vllm-watchdog.service" in boot_script(plan, {}, watchdog_action="true")


@pytest.mark.parametrize("arg", ["plain", "--flag=1", "with space", "a$HOME", "100%", 'quo"te', "back\\slash"])
def test_systemd_quoting_round_trips(arg):
    quoted = systemd_arg(arg)
    assert "$" not in quoted.replace("$$", "") and "%" not in quoted.replace("%%", "")
    assert exec_start_argv(f"ExecStart=/usr/bin/docker run {quoted}\n")[2] == arg


def ready_script(script: str, env_file: str, base_url: str) -> str:
    body = re.search(rf"cat > /opt/selfhost/ready.sh <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S).group(1)
    return body.replace(SECRETS_FILE, env_file).replace("http://127.0.0.1:8000", base_url)


@pytest.mark.parametrize(
    "env_line, ok",
    [("VLLM_API_KEY=sk-ready=1", True), ("VLLM_API_KEY=sk-wrong", False), ("HF_TOKEN=only", False)],
    ids=["right-key", "wrong-key", "no-key"],
)
def test_readiness_probe_is_an_authenticated_completion(plan, tmp_path, env_line, ok):
    """The AWS readiness gate and watchdog run ready.sh: run for real in bash against the local stand-in
    (auth on every route but /health, like the kit's layer), it passes only with the right key."""
    from conftest import stand_in_server

    script = aws.user_data(plan, {"apiKey": "arn:aws:ssm:us-east-1:1:parameter/k", "hfToken": "arn:aws:ssm:x"}, "r")
    assert "vllm-watchdog.service" in script and "selfhost-ready.service" in script
    assert "--lifecycle-hook-name selfhost-ready --lifecycle-action-result CONTINUE" in script
    env_file = tmp_path / "vllm.env"
    env_file.write_text(env_line + "\nHF_TOKEN=hf_x\n")
    with stand_in_server("--api-key", "sk-ready=1", "--model", plan.fit.settings.served_model_name) as url:
        path = tmp_path / "ready.sh"
        path.write_text(ready_script(script, str(env_file), url))
        done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) is ok, done.stderr
    assert "sk-ready" not in script


def test_weights_mirror_is_filled_once_and_restored_with_symlinks_then_offline(plan, tmp_path):
    """weights.sh run for real in bash, with a stand-in `aws` CLI over a local folder as the bucket:
    the first replica (nothing in the bucket) starts online and saves after serving; the next restores
    the Hugging Face cache (symlinks kept), runs offline, and uploads nothing."""
    script = aws.user_data(plan, {"apiKey": "arn:aws:ssm:x", "hfToken": "arn:aws:ssm:y"}, "us-east-1", "my-bucket")
    assert "ExecStartPre=/opt/selfhost/weights.sh restore" in script
    gate = re.search(rf"cat > /opt/selfhost/gate.sh <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S).group(1)
    assert gate.rstrip().endswith("/opt/selfhost/weights.sh save")  # only after the readiness probe passed
    body = re.search(rf"cat > /opt/selfhost/weights.sh <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S).group(1)
    bucket, bin_dir = tmp_path / "bucket", tmp_path / "bin"
    bucket.mkdir()
    bin_dir.mkdir()
    stub = bin_dir / "aws"
    stub.write_text(
        "#!/bin/bash\n"
        'obj="$BUCKET/object"\n'
        'if [ "$1 $2" = "s3api head-object" ]; then [ -f "$obj" ]; exit; fi\n'
        'args=("$@"); n=${#args[@]}\n'
        'if [ "${args[n-2]}" = "-" ]; then cat > "$obj"; echo saved >> "$BUCKET/uploads"; else cat "$obj"; fi\n'
    )
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BUCKET": str(bucket)}

    def replica(name: str) -> tuple:
        root = tmp_path / name
        (root / "run").mkdir(parents=True)
        (root / "var" / "hf").mkdir(parents=True)
        path = root / "weights.sh"
        path.write_text(
            body.replace("/var/lib/selfhost", str(root / "var")).replace("/run/selfhost", str(root / "run"))
        )
        env_file = root / "run" / os.path.basename(SECRETS_FILE)
        env_file.write_text("VLLM_API_KEY=k\n")
        return root, path, env_file

    first, path, env_file = replica("first")
    blobs = first / "var" / "hf" / "hub" / "models--meta-llama--x" / "blobs"
    snap = first / "var" / "hf" / "hub" / "models--meta-llama--x" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "f00d").write_text("weights")
    (snap / "model.safetensors").symlink_to("../../blobs/f00d")
    assert subprocess.run(["bash", str(path), "restore"], env=env, timeout=30).returncode == 0
    assert "HF_HUB_OFFLINE" not in env_file.read_text()  # nothing mirrored yet: it downloads as before
    assert subprocess.run(["bash", str(path), "save"], env=env, timeout=30).returncode == 0
    assert (bucket / "uploads").read_text() == "saved\n"

    second, path, env_file = replica("second")
    assert subprocess.run(["bash", str(path), "restore"], env=env, timeout=30).returncode == 0
    link = second / "var" / "hf" / "hub" / "models--meta-llama--x" / "snapshots" / "abc" / "model.safetensors"
    assert link.is_symlink() and link.read_text() == "weights"
    assert env_file.read_text().endswith("HF_HUB_OFFLINE=1\n")
    assert subprocess.run(["bash", str(path), "save"], env=env, timeout=30).returncode == 0
    assert (bucket / "uploads").read_text() == "saved\n"  # filled once


def test_gcp_readiness_endpoint_follows_the_authenticated_probe(tmp_path):
    """The GCP health check asks GET /ready on the VM: the file appears when the gate's probe passes and
    goes when the watchdog sees three failures (run in bash with a stand-in probe and restart)."""
    from selfhost.stack import gcp_config

    p = gcp_config.plan({**CONFIG, "instanceType": None, "machineType": "g2-standard-8"})
    script = gcp_config.startup_script(p, {"apiKey": "a", "hfToken": "b"})
    assert f"http.server {gcp_config.ready_port(p)} --bind 0.0.0.0 --directory /run/selfhost/health" in script

    def body(name: str) -> str:
        text = re.search(rf"cat > /opt/selfhost/{name}.sh <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S).group(1)
        text = text.replace("/run/selfhost/health", str(tmp_path / "health")).replace("/opt/selfhost", str(tmp_path))
        return text.replace("systemctl restart vllm.service", f"echo restarted >> {tmp_path}/restarts")

    ready = tmp_path / "health" / "ready"
    probe = tmp_path / "ready.sh"
    (tmp_path / "gate.sh").write_text(body("gate"))
    probe.write_text("#!/bin/bash\nexit 0\n")
    probe.chmod(0o755)
    assert subprocess.run(["bash", str(tmp_path / "gate.sh")], timeout=30).returncode == 0
    assert ready.exists()
    # the watchdog after its initial wait: a failing probe three times withdraws readiness and restarts vLLM
    watchdog = body("watchdog").replace("while true", "for i in 1 2 3")
    (tmp_path / "watchdog.sh").write_text(watchdog)
    started = tmp_path / "vllm-started"  # vLLM's last (re)start: long ago, past the start grace
    started.touch()
    os.utime(started, (0, 0))
    env = {**os.environ, "SELFHOST_WATCHDOG_PERIOD_S": "0", "SELFHOST_STARTED_FILE": str(started)}
    probe.write_text("#!/bin/bash\nexit 1\n")
    assert subprocess.run(["bash", str(tmp_path / "watchdog.sh")], env=env, timeout=30).returncode == 0
    assert not ready.exists() and (tmp_path / "restarts").read_text() == "restarted\n"
    probe.write_text("#!/bin/bash\nexit 0\n")
    assert subprocess.run(["bash", str(tmp_path / "watchdog.sh")], env=env, timeout=30).returncode == 0
    assert ready.exists()  # serving again: back in the rotation
