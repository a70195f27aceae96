"""Random strings (newlines, quotes, `$()`, backticks) in every value a boot script interpolates: the
script is refused or it parses (`bash -n`), runs the same commands as with a plain value (traced by
bash itself, nothing executed), and the value reaches its command as one literal argument."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from costing.errors import UserError
from selfhost import auth_install
from selfhost.stack import aws_config, gcp_config
from selfhost.stack.boot_script import DELIM, exec_start_argv

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
PIECES = st.sampled_from([*"ab/$()`'\"\\;|&<>\n \t*?{}!#=-~", DELIM, "EOF", "$(touch /tmp/pwned)", "`id`"])
NASTY = st.lists(PIECES, max_size=20).map("".join)
PLAIN_REF = "arn:aws:secretsmanager:us-east-1:123456789012:secret:plain-AbCdEf"


@pytest.fixture(scope="module")
def plan():
    return aws_config.plan(CONFIG)


def trace(script: str, tmp: Path) -> list[str]:
    """The simple commands bash would run, in order, none of them executed (extdebug: a DEBUG trap that
    returns non-zero skips the command). `for` headers run so their bodies are traced too."""
    path, log = tmp / "script.sh", tmp / "trace.log"
    path.write_text(script)
    log.unlink(missing_ok=True)
    trap = (
        'case "$BASH_COMMAND" in "source "*|"for "*) ;; '
        f'*) printf "%s\\0" "$BASH_COMMAND" >> {shlex.quote(str(log))}; false ;; esac'
    )
    wrapper = f"shopt -s extdebug; trap {shlex.quote(trap)} DEBUG; source {shlex.quote(str(path))}"
    subprocess.run(["bash", "-c", wrapper], capture_output=True, timeout=30, cwd=tmp)
    return [c for c in log.read_text().split("\0") if c] if log.exists() else []


def syntax_ok(script: str) -> bool:
    return subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, timeout=30).returncode == 0


def shape(commands: list[str]) -> list[str]:
    """Each command's first word (the assignment name for `x=$(...)`)."""
    return [re.split(r"[\s=]", c, maxsplit=1)[0] for c in commands]


def fetch_body(script: str) -> str:
    return re.search(rf"<<'{DELIM}'\n(#!/bin/bash\nset -euo pipefail\numask 077.*?)\n{DELIM}\n", script, re.S).group(1)


def run_fetch(body: str, tmp: Path) -> list[list[str]]:
    """Run the fetch step for real with a stand-in `aws`/`gcloud` that records its argv and prints a value."""
    bin_dir, run_dir = tmp / "bin", tmp / "run"
    bin_dir.mkdir(exist_ok=True)
    record = tmp / "argv.log"
    record.unlink(missing_ok=True)
    for tool in ("aws", "gcloud", "curl"):
        stub = bin_dir / tool
        log = shlex.quote(str(record))
        stub.write_text(
            f'#!/bin/bash\nprintf "%s\\0" "$@" >> {log}\nprintf "\\n" >> {log}\necho value-0123456789abcdef\n'
        )
        stub.chmod(0o755)
    script = tmp / "fetch.sh"
    auth_dir = auth_install.write_module(tmp / "python").parent  # the module the boot script writes first
    script.write_text(body.replace("/run/selfhost", str(run_dir)).replace(auth_install.CONTAINER_DIR, str(auth_dir)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30, cwd=tmp)
    if not record.exists():
        return []
    return [line.split("\0")[:-1] for line in record.read_text().split("\0\n") if line]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=NASTY)
@example(value="x\nSELFHOST_EOF\ntouch /tmp/pwned\n")
@example(value="$(touch /tmp/pwned)")
@example(value="'; touch /tmp/pwned; '")
def test_aws_secret_refs_and_region_stay_one_argument(plan, tmp_path, value):
    ref = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{value}"
    try:
        script = aws_config.user_data(plan, {"apiKey": ref, "hfToken": PLAIN_REF}, value or "r")
    except UserError:
        assert any(c in value for c in "\n\r")  # only a line break is refused here; the rest is quoted
        return
    benign = aws_config.user_data(plan, {"apiKey": PLAIN_REF, "hfToken": PLAIN_REF}, "us-east-1")
    assert syntax_ok(script)
    assert shape(trace(script, tmp_path)) == shape(trace(benign, tmp_path))
    calls = run_fetch(fetch_body(script), tmp_path)
    assert [c[:2] for c in calls] == [["secretsmanager", "get-secret-value"]] * 2
    assert calls[0][calls[0].index("--secret-id") + 1] == ref
    assert calls[0][calls[0].index("--region") + 1] == (value or "r")
    assert not list(tmp_path.glob("pwned*")) and not Path("/tmp/pwned").exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=NASTY)
@example(value="a\n" + DELIM + "\nreboot")
def test_gcp_secret_names_stay_one_argument(tmp_path, value):
    p = gcp_config.plan({**CONFIG, "instanceType": None, "machineType": "g2-standard-8"})
    try:
        script = gcp_config.startup_script(p, {"apiKey": value, "hfToken": "hf"})
    except UserError:
        assert any(c in value for c in "\n\r")
        return
    assert syntax_ok(script)
    benign = gcp_config.startup_script(p, {"apiKey": "plain", "hfToken": "hf"})
    assert shape(trace(script, tmp_path)) == shape(trace(benign, tmp_path))
    calls = [c for c in run_fetch(fetch_body(script), tmp_path) if c[:1] == ["secrets"]]
    assert calls[0][calls[0].index("latest") + 1] == f"--secret={value}"


@settings(max_examples=60, deadline=None)
@given(repo=NASTY, name=NASTY)
@example(repo="meta-llama/Llama-3.1-8B-Instruct", name="llama")
@example(repo="/models/llama", name="team/llama:8b")
def test_model_repo_and_served_name_are_validated_then_passed_literally(repo, name):
    config = {**CONFIG, "modelRepo": repo or None, "servedModelName": name or None}
    try:
        p = aws_config.plan({k: v for k, v in config.items() if v is not None})
    except UserError as err:
        assert "modelRepo" in str(err) or "servedModelName" in str(err)
        return
    script = aws_config.user_data(p, {"apiKey": PLAIN_REF, "hfToken": PLAIN_REF}, "us-east-1")
    assert syntax_ok(script)
    argv = exec_start_argv(script)
    if repo:
        assert repo in argv
    if name:
        assert argv[argv.index("--served-model-name") + 1] == name
