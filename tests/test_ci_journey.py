"""The journey a user takes, across the pieces (issue 20): `selfhost init --ci github` in a fresh git repository,
then the workflows it wrote, run as GitHub would run them (tests/gha_harness.py): every `run:` script as written,
with the workflow's env, vars and secrets.

What stands in, and only for what cannot be reached here (tests/journey_stand_ins.py):
- the package index: the runner's preinstalled packages are this checkout's dependencies (a folder on PYTHONPATH
  without selfhost), so `pip install` of the committed wheel installs that wheel and only it (hash-checked first);
- `actions/setup-python`: a fresh interpreter environment per job, with nothing of the kit in it;
- `aws-actions/configure-aws-credentials`: AssumeRoleWithWebIdentity on a moto server (kubernetes: the cluster is
  the kubeconfig the workflow writes from its secret, which the `pulumi` stand-in reads as pulumi-kubernetes
  does); `google-github-actions/auth`:
  an external-account credentials file; `pulumi/actions`: the `pulumi` stand-in on PATH, which runs the folder's
  own program with the folder's own venv (the committed kit) under Pulumi's mocks; `sky`: a stand-in of the CLI
  and its API server;
- the cloud: a deployment comes up as the local OpenAI-compatible stand-in server, which smoke and bench measure.

The walk: PR → cost comment (gate exit 2 over the spec's own budget); a fork's PR → job summary, green; merge →
deploy → smoke → bench → gate → tagged good; a release failing its gate → the tagged commit redeployed, never
destroyed; the same by workflow_dispatch; a first deployment failing with nothing recorded → left as is, red.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gha_harness as gha
import journey_stand_ins as cloud_stand_in
import pytest
import yaml
from conftest import ROOT

KEY = "journey-key-0123456789abcdef"  # the production environment's VLLM_API_KEY secret
KUBE_TOKEN = "journey-kube-token-0123456789"  # in the KUBECONFIG secret: never in a log
KUBECONFIG = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "team", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "deployer", "user": {"token": KUBE_TOKEN}}],
        "contexts": [{"name": "team", "context": {"cluster": "team", "user": "deployer"}}],
        "current-context": "team",
    }
)
REPOSITORY = "octo-org/llama-deploy"
BROKEN = "name: bad-release"  # a spec carrying this line comes up misconfigured in the stand-in cloud


def lint_workflows(paths: list[Path]) -> None:
    """actionlint (with shellcheck on every `run:`) and zizmor on the workflows init wrote."""
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    lint = subprocess.run([str(bin_dir / "actionlint"), *map(str, paths)], capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    zz = subprocess.run(
        [str(bin_dir / "zizmor"), "--offline", "--no-progress", *map(str, paths)], capture_output=True, text=True
    )
    assert zz.returncode == 0 and "No findings" in zz.stdout + zz.stderr, zz.stdout + zz.stderr


def git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return p.stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("journey-dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = dist.glob("selfhost_llm-*.whl")
    return found


@pytest.fixture(scope="module")
def runner_site(tmp_path_factory) -> Path:
    """The runner's preinstalled packages: this environment's site-packages without the kit."""
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    out = tmp_path_factory.mktemp("runner-site")
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("selfhost", "__editable__", "costing")) or name.endswith(".pth"):
            continue
        (out / entry.name).symlink_to(entry)
    return out


class Journey:
    """One user's repository, its origin, the stand-in cloud, and the runs of its workflows."""

    def __init__(self, base: Path, cloud: str, wheel: Path, runner_site: Path) -> None:
        self.base, self.cloud, self.wheel = base, cloud, wheel
        self.repo, self.origin, self.cloud_dir = base / "repo", base / "origin.git", base / "cloud"
        self.cloud_dir.mkdir(parents=True)
        # pulumi/actions puts `pulumi` on PATH; `sky` is what `pip install selfhost-llm[sky]` would bring along
        self.pulumi_bin = cloud_stand_in.write_bin(base / "pulumi-bin", "pulumi")
        sky_bin = cloud_stand_in.write_bin(base / "sky-bin", "sky")
        self.env = {
            "PATH": f"/usr/bin:/bin:{sky_bin}",
            "PYTHONPATH": str(runner_site),
            "HOME": str(base / "home"),
            "JOURNEY_CLOUD": str(self.cloud_dir),
            "PIP_NO_INDEX": "1",  # the runner's packages are all there is: nothing is fetched by name
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        (base / "home").mkdir()
        self.runs = 0
        self.folder = f"deploy/llama-{cloud}"

    # -- the user's side ------------------------------------------------------------------------------------------
    def init(self, *extra: str) -> subprocess.CompletedProcess:
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "config", "user.email", "dev@example.invalid")
        git(self.repo, "config", "user.name", "dev")
        cmd = [sys.executable, "-m", "selfhost", "init", self.folder, "--cloud", self.cloud, "--ci", "github"]
        out = subprocess.run(
            [*cmd, "--kit-wheel", str(self.wheel), *extra], cwd=self.repo, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        if self.cloud == "kubernetes":  # the user names their cluster, as the folder's README says
            config = self.repo / self.folder / "Pulumi.production.yaml"
            text = config.read_text()
            assert "# selfhost-kubernetes:clusterName:" in text  # init does not guess it
            config.write_text(re.sub(r"# (selfhost-kubernetes:clusterName:) \S+", r"\1 team", text))
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "selfhost init")
        git(self.repo, "clone", "-q", "--bare", str(self.repo), str(self.origin))
        git(self.repo, "remote", "add", "origin", str(self.origin))
        git(self.repo, "fetch", "-q", "origin")
        return out

    @property
    def spec_path(self) -> Path:
        return self.repo / self.folder / "selfhost.yaml"

    def spec(self) -> dict:
        return yaml.safe_load(self.spec_path.read_text())

    def commit_spec(self, change, message: str, branch: str = "main") -> str:
        """Edit the spec on `branch` (created from main if new), commit, push; the new commit's sha."""
        if branch == "main":
            git(self.repo, "checkout", "-q", "main")
        else:
            git(self.repo, "checkout", "-q", "-B", branch, "main")
        text = self.spec_path.read_text()
        self.spec_path.write_text(change(text))
        git(self.repo, "commit", "-q", "-am", message)
        git(self.repo, "push", "-q", "--force", "origin", branch)
        sha = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "checkout", "-q", "main")
        return sha

    def workflow(self, kind: str) -> Path:
        slug = self.folder.replace("/", "-")
        return self.repo / ".github" / "workflows" / f"selfhost-{slug}-{kind}.yml"

    # -- GitHub's side --------------------------------------------------------------------------------------------
    def run(self, kind: str, event: gha.Event, changed: list[str] | None = None) -> gha.Run:
        path = self.workflow(kind)
        if changed is not None:
            assert gha.triggers(path, event, changed), f"{path.name} is not triggered by {event.name} on {changed}"
        self.runs += 1
        return gha.run_workflow(
            path,
            event,
            self.origin,
            actions=self.actions(),
            vars={
                "PULUMI_BACKEND_URL": f"file://{self.cloud_dir}",
                "AWS_DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/github-deploy",
                "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/gh/providers/gh",
                "GCP_DEPLOY_SERVICE_ACCOUNT": "deploy@my-project.iam.gserviceaccount.com",
                "SKYPILOT_API_SERVER_ENDPOINT": "http://127.0.0.1:9",
                "SELFHOST_MIN_RATIO": "0.5",
            },
            secrets={
                "VLLM_API_KEY": KEY,
                "HF_TOKEN": "hf_journey",
                "PULUMI_CONFIG_PASSPHRASE": "journey-passphrase",
                "RUNPOD_API_KEY": "rp_journey",
                "SKYPILOT_SERVICE_ACCOUNT_TOKEN": "sky_journey_token",
                "SELFHOST_TLS_KEY": "-----BEGIN PRIVATE KEY-----\njourney\n-----END PRIVATE KEY-----",
                "SELFHOST_TLS_CERT": "-----BEGIN CERTIFICATE-----\njourney\n-----END CERTIFICATE-----",
                "KUBECONFIG": KUBECONFIG,
            },
            base_env=self.env,
            workdir=self.base / f"run-{self.runs}",
            repository=REPOSITORY,
            step_timeout=600,
        )

    def actions(self) -> dict:
        def setup_python(ctx: gha.StepContext) -> dict:
            """A fresh environment per job: nothing of the kit installed (pip comes from the runner's packages)."""
            env = ctx.run.workdir / f"python-{ctx.job_id}"
            if not env.exists():
                subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
            ctx.add_path(env / "bin")
            return {"python-version": "3.11"}

        def aws_credentials(ctx: gha.StepContext) -> dict:
            role = ctx.with_.get("role-to-assume", "")
            if not role.startswith("arn:aws:iam::") or not ctx.can_write("id-token"):
                raise gha.ActionFailed("Could not assume role with OIDC: no role or no id-token permission")
            with_moto = os.environ.get("JOURNEY_MOTO")
            if not with_moto:
                raise gha.ActionFailed("no moto server")
            import boto3

            sts = boto3.client("sts", endpoint_url=with_moto, region_name=ctx.with_["aws-region"])
            creds = sts.assume_role_with_web_identity(
                RoleArn=role, RoleSessionName="GitHubActions", WebIdentityToken="github-oidc-token"
            )["Credentials"]
            for name, value in (
                ("AWS_ACCESS_KEY_ID", creds["AccessKeyId"]),
                ("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"]),
                ("AWS_SESSION_TOKEN", creds["SessionToken"]),
                ("AWS_REGION", ctx.with_["aws-region"]),
                ("AWS_ENDPOINT_URL", with_moto),
            ):
                ctx.set_env(name, value)
            return {"aws-account-id": "123456789012"}

        def gcp_auth(ctx: gha.StepContext) -> dict:
            if not ctx.with_.get("workload_identity_provider") or not ctx.with_.get("service_account"):
                raise gha.ActionFailed("the GitHub Action workflow must specify exactly one of ...")
            if not ctx.can_write("id-token"):
                raise gha.ActionFailed("GitHub Actions did not inject $ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            creds = ctx.run.workdir / f"gha-creds-{ctx.job_id}.json"
            creds.write_text(
                json.dumps({"type": "external_account", "audience": ctx.with_["workload_identity_provider"]})
            )
            ctx.set_env("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
            ctx.set_env("GOOGLE_CLOUD_PROJECT", "my-project")
            return {"credentials_file_path": str(creds)}

        def pulumi_cli(ctx: gha.StepContext) -> dict:
            if ctx.with_.get("command"):
                raise gha.ActionFailed("the journey expects pulumi/actions only to install the CLI")
            ctx.add_path(self.pulumi_bin)
            return {}

        return {
            "actions/setup-python": setup_python,
            "aws-actions/configure-aws-credentials": aws_credentials,
            "google-github-actions/auth": gcp_auth,
            "pulumi/actions": pulumi_cli,
        }

    # -- the cloud's side -----------------------------------------------------------------------------------------
    def deployments(self) -> list[dict]:
        if self.cloud == "sky":
            path = self.cloud_dir / "sky" / f"{self.folder.replace('/', '-')}.json"
            return json.loads(path.read_text())["versions"] if path.exists() else []
        path = self.cloud_dir / "pulumi" / f"selfhost-{self.cloud}" / "production.json"
        return json.loads(path.read_text())["deployments"] if path.exists() else []

    def good_tag(self) -> str | None:
        p = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/tags/selfhost-good/{self.folder.replace('/', '-')}"],
            cwd=self.origin,
            capture_output=True,
            text=True,
        )
        return p.stdout.strip() or None

    def destroyed_nothing(self) -> None:
        for argv in cloud_stand_in.calls(self.cloud_dir):
            assert argv[:1] != ["destroy"] and argv[:2] != ["serve", "down"], f"CI tore down production: {argv}"

    def stop(self) -> None:
        for pid in cloud_stand_in.endpoint_pids(self.cloud_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@pytest.fixture
def moto():
    from sky_stand_ins import moto_aws

    with moto_aws() as env:
        os.environ["JOURNEY_MOTO"] = env["AWS_ENDPOINT_URL"]
        try:
            yield env
        finally:
            os.environ.pop("JOURNEY_MOTO", None)


def push_event(sha: str, before: str) -> gha.Event:
    return gha.Event("push", {"before": before, "after": sha, "ref": "refs/heads/main"}, sha)


def pr_event(sha: str, number: int, branch: str, fork: bool = False) -> gha.Event:
    head_repo = "someone/llama-deploy" if fork else REPOSITORY
    payload = {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"ref": branch, "sha": sha, "repo": {"full_name": head_repo, "fork": fork}},
            "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
        },
    }
    return gha.Event("pull_request", payload, sha, ref=f"refs/pull/{number}/merge", base_ref="main", head_ref=branch)


def explain(run: gha.Run) -> str:
    """The failed steps' output, for an assertion message."""
    out = []
    for job in run.jobs.values():
        for s in job.steps:
            if s.outcome == "failure":
                out.append(f"--- {job.id} / {s.name} (exit {s.exit_code})\n{s.stdout[-3000:]}\n{s.stderr[-3000:]}")
    return "\n".join(out) or run.log[-5000:]


def failed_step(run: gha.Run, job: str) -> gha.StepResult:
    return next(s for s in run.job(job).steps if s.outcome == "failure")


def _rpd(n: int):
    return lambda text: text.replace("requests_per_day: 3000", f"requests_per_day: {n}")


def _budget(usd: int):
    return lambda text: re.sub(r"max_monthly_usd: [0-9.]+", f"max_monthly_usd: {usd}", text)


@pytest.fixture
def journey(request, tmp_path, wheel, runner_site, moto):
    j = Journey(tmp_path, request.param, wheel, runner_site)
    try:
        yield j
    finally:
        j.stop()


@pytest.mark.parametrize("journey", ["aws", "gcp", "runpod", "kubernetes", "sky"], indirect=True)
def test_init_then_pull_requests_then_deploys_and_rollbacks(journey: Journey):
    j = journey
    j.init(*(["--domain", "api.example.com"] if j.cloud in ("aws", "gcp") else []))
    root_workflows = sorted(p.name for p in (j.repo / ".github" / "workflows").iterdir())
    assert root_workflows == [j.workflow("cost-diff").name, j.workflow("deploy").name]
    lint_workflows([j.workflow("cost-diff"), j.workflow("deploy")])

    # -- a pull request within budget: the cost comment, green ------------------------------------------------
    sha = j.commit_spec(_rpd(3500), "a bit more traffic", branch="more-traffic")
    pr = j.run("cost-diff", pr_event(sha, 11, "more-traffic"), changed=[f"{j.folder}/selfhost.yaml"])
    assert pr.job("diff").result == "success", explain(pr)
    comment = (pr.comments / f"selfhost-cost-diff-{j.folder.replace('/', '-')}.md").read_text()
    assert "<!-- selfhost-cost-diff -->" in comment and "selfhost.yaml" in comment
    assert (
        "Successfully installed selfhost-llm-"
        in pr.job("diff").step("Install selfhost (the committed wheel, hash-checked)").stdout
    )

    # -- over the spec's own budget: the same comment, and the check fails with exit 2 --------------------------
    sha = j.commit_spec(_budget(100), "a budget below the projection", branch="tight-budget")
    over = j.run("cost-diff", pr_event(sha, 12, "tight-budget"), changed=[f"{j.folder}/selfhost.yaml"])
    assert over.job("diff").result == "failure"
    gate = over.job("diff").step("Budget gate")
    assert gate.exit_code == 2 and "$100.00" in over.log and "exceeds" in over.log
    assert (over.comments / f"selfhost-cost-diff-{j.folder.replace('/', '-')}.md").exists()

    # -- a fork's pull request: read-only token, the diff in the job summary, green on cost ----------------------
    fork = j.run("cost-diff", pr_event(j.commit_spec(_rpd(3200), "fork", branch="fork"), 13, "fork", fork=True))
    assert fork.job("diff").result == "success", explain(fork)
    assert "<!-- selfhost-cost-diff -->" in fork.summary("diff")
    assert not (fork.comments / f"selfhost-cost-diff-{j.folder.replace('/', '-')}.md").exists()

    # -- merge: deploy → smoke → bench → gate → recorded as good -------------------------------------------------
    before = git(j.repo, "rev-parse", "main")
    git(j.repo, "merge", "-q", "--no-edit", "more-traffic")
    git(j.repo, "push", "-q", "origin", "main")
    good = git(j.repo, "rev-parse", "main")
    deploy = j.run("deploy", push_event(good, before), changed=[f"{j.folder}/selfhost.yaml"])
    assert [deploy.job(x).result for x in ("deploy", "verify", "record", "rollback")] == [
        "success", "success", "success", "skipped"
    ], explain(deploy)  # fmt: skip
    assert j.good_tag() == good
    first = j.deployments()
    assert len(first) == 1
    if j.cloud != "sky":  # the program ran from the committed wheel, in the folder's own venv
        assert first[0]["commit"] == good and "/venv/" in first[0]["kit"]
    if j.cloud == "kubernetes":  # applied to the secret kubeconfig's cluster, the file private to the job
        assert first[0]["cluster"] == {"context": "team", "mode": "0o600"}
        review = json.loads((deploy.artifacts / "review" / "review.json").read_text())
        assert review["target"]["kubernetes"] == "eks"  # the gate costed the nodes on the cluster
        assert first[0]["outputs"]["projectedMonthlyUsd"] == review["monthly_usd"]
        assert KUBE_TOKEN not in deploy.log
    assert KEY not in deploy.log

    # -- a release that fails its gate: the tagged commit is redeployed, nothing destroyed -----------------------
    (j.cloud_dir / "broken.txt").write_text(BROKEN + "\n")
    bad_before = good
    bad = j.commit_spec(lambda t: t.replace(f"name: {j.spec()['name']}", BROKEN), "bad release")
    red = j.run("deploy", push_event(bad, bad_before), changed=[f"{j.folder}/selfhost.yaml"])
    assert [red.job(x).result for x in ("deploy", "verify", "record", "rollback")] == [
        "success", "failure", "skipped", "success"
    ], explain(red)  # fmt: skip
    smoke = json.loads((red.artifacts / "bench" / "smoke.json").read_text())
    open_routes = next(c for c in smoke["checks"] if c["name"] == "every route needs the key")
    assert not smoke["ok"] and not open_routes["ok"]  # the misconfigured release answers without the key
    after = j.deployments()
    assert len(after) == 3  # the bad release, then the good one again
    if j.cloud != "sky":
        assert [d["commit"] for d in after] == [good, bad, good]
        assert after[2]["spec_sha256"] == after[0]["spec_sha256"]
    else:
        assert after[2]["task_sha256"] == after[0]["task_sha256"] != after[1]["task_sha256"]
    assert j.good_tag() == good
    j.destroyed_nothing()

    # -- the same by hand (workflow_dispatch has no `before`): the same path ------------------------------------
    if j.cloud == "aws":
        manual = j.run("deploy", gha.Event("workflow_dispatch", {"inputs": {}}, bad))
        assert manual.job("verify").result == "failure" and manual.job("rollback").result == "success", manual.log
        assert len(j.deployments()) == 5
        j.destroyed_nothing()


@pytest.mark.parametrize("journey", ["aws"], indirect=True)
def test_a_first_deployment_that_fails_is_left_as_is_and_the_run_says_what_to_do(journey: Journey):
    j = journey
    j.init("--domain", "api.example.com")
    (j.cloud_dir / "broken.txt").write_text(BROKEN + "\n")
    before = git(j.repo, "rev-parse", "main")
    bad = j.commit_spec(lambda t: t.replace(f"name: {j.spec()['name']}", BROKEN), "first release, broken")
    red = j.run("deploy", push_event(bad, before))
    assert [red.job(x).result for x in ("deploy", "verify", "record", "rollback")] == [
        "success", "failure", "skipped", "failure"
    ], explain(red)  # fmt: skip
    msg = failed_step(red, "rollback")
    assert "no deployment of deploy/llama-aws has passed its gates yet" in msg.stdout + msg.stderr
    assert "left as this run deployed it" in msg.stdout + msg.stderr
    assert len(j.deployments()) == 1 and j.good_tag() is None
    j.destroyed_nothing()


@pytest.mark.parametrize("journey", ["aws", "kubernetes"], indirect=True)
def test_a_budget_refusal_before_pulumi_up_changes_nothing_and_rolls_nothing_back(journey: Journey):
    j = journey
    j.init(*(["--domain", "api.example.com"] if j.cloud == "aws" else []))
    before = git(j.repo, "rev-parse", "main")
    sha = j.commit_spec(_budget(100), "over budget")
    run = j.run("deploy", push_event(sha, before))
    assert run.job("deploy").result == "failure" and run.job("rollback").result == "skipped", run.log
    assert failed_step(run, "deploy").name.startswith("Cost review and budget gate")
    assert j.deployments() == [] and cloud_stand_in.calls(j.cloud_dir, "pulumi") == []


def test_a_tampered_wheel_is_refused_before_anything_runs(tmp_path, wheel, runner_site):
    j = Journey(tmp_path, "runpod", wheel, runner_site)
    j.init()
    vendored = next((j.repo / j.folder / "vendor").glob("*.whl"))
    vendored.write_bytes(vendored.read_bytes() + b"\0")
    git(j.repo, "commit", "-q", "-am", "tamper")
    git(j.repo, "push", "-q", "origin", "main")
    sha = git(j.repo, "rev-parse", "HEAD")
    run = j.run("deploy", push_event(sha, sha))
    step = failed_step(run, "deploy")
    assert step.name.startswith("Install selfhost") and "FAILED" in step.stdout + step.stderr
    assert cloud_stand_in.calls(j.cloud_dir) == []
    shutil.rmtree(tmp_path / "repo", ignore_errors=True)


@pytest.mark.parametrize("journey", ["runpod"], indirect=True)
def test_a_pull_request_removing_the_deployment_prices_what_goes_away(journey: Journey):
    j = journey
    j.init()
    git(j.repo, "checkout", "-q", "-b", "retire")
    git(j.repo, "rm", "-q", "-r", j.folder)
    git(j.repo, "commit", "-q", "-m", "retire the deployment")
    git(j.repo, "push", "-q", "origin", "retire")
    sha = git(j.repo, "rev-parse", "HEAD")
    run = j.run("cost-diff", pr_event(sha, 21, "retire"), changed=[f"{j.folder}/selfhost.yaml"])
    assert run.job("diff").result == "success", explain(run)
    comment = (run.comments / f"selfhost-cost-diff-{j.folder.replace('/', '-')}.md").read_text()
    assert "removed" in comment and "-$" in comment  # the base's monthly cost goes away


def test_previews_run_only_for_this_repositorys_labelled_pull_requests_and_a_failed_one_says_so(tmp_path):
    """preview.yml: no job for an unlabelled or a fork's pull request (no install, no receipt, no cloud login for
    a fork's code); a preview that fails still posts its comment, saying it failed."""
    workflow = ROOT / "examples" / "ci" / "github" / "preview.yml"
    repo, origin = tmp_path / "repo", tmp_path / "origin.git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("no deploy/preview folder here: the install step fails\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@example.invalid", "-c", "user.name=d", "commit", "-q", "-m", "x")
    git(repo, "clone", "-q", "--bare", str(repo), str(origin))
    sha = git(repo, "rev-parse", "HEAD")

    def event(action: str, labels: list[str], fork: bool = False) -> gha.Event:
        ev = pr_event(sha, 31, "feature", fork=fork)
        ev.payload["action"] = action
        ev.payload["pull_request"]["labels"] = [{"name": n} for n in labels]
        return ev

    def run(ev: gha.Event, name: str) -> gha.Run:
        return gha.run_workflow(
            workflow, ev, origin, workdir=tmp_path / name, repository=REPOSITORY, base_env={"PATH": "/usr/bin:/bin"}
        )

    closed = run(event("closed", []), "closed")
    assert closed.job("up").result == "skipped" and closed.job("down").result == "skipped"
    fork = run(event("labeled", ["preview"], fork=True), "fork")
    assert fork.job("up").result == "skipped"
    failed = run(event("labeled", ["preview"]), "failed")
    assert failed.job("up").result == "failure"
    assert failed_step(failed, "up").name.startswith("Install selfhost")
    comment = (failed.comments / "selfhost-preview.md").read_text()
    assert "selfhost preview: failed" in comment and "/actions/runs/" in comment
