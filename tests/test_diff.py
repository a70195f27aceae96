"""`selfhost diff` (issue 14): golden table/markdown/JSON, signed deltas, gates (exit 2), `--base-ref` from git."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from costing.data.spec import load_spec, spec_from_dict
from costing.money.diff import DiffInput, Gates, diff_reviews
from costing.money.report import review_dict
from costing.money.review import cost_review

EXAMPLE = "examples/llama-3.1-8b-runpod-a40.yaml"
GOLDEN = ROOT / "tests" / "golden"
PAIRS = [
    "--base", EXAMPLE, "--head", "tests/golden/diff/head-20x.yaml",
    "--base", "tests/golden/diff/base-gcp.yaml", "--head", "tests/golden/diff/head-gcp.yaml",
]  # fmt: skip


def review(path: str | Path, **overrides) -> dict:
    return review_dict(cost_review(load_spec(ROOT / path, **overrides)))


@pytest.mark.parametrize("fmt,suffix", [("table", "txt"), ("markdown", "md"), ("json", "json")])
def test_golden(selfhost, update_golden, fmt, suffix):
    p = selfhost("diff", *PAIRS, "--format", fmt)
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"diff.{'table.' if fmt == 'table' else ''}{suffix}"
    if update_golden:
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text(), f"{golden} differs: rerun with `pytest --update-golden` and review the diff"


def test_twenty_x_traffic_shows_positive_api_deltas_and_consistent_monthly_delta(selfhost, tmp_path):
    head = yaml.safe_load((ROOT / EXAMPLE).read_text())
    head["workload"]["requests_per_day"] *= 20
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(head))
    p = selfhost("diff", "--base", EXAMPLE, "--head", str(tmp_path / "head.yaml"), "--format", "json")
    assert p.returncode == 0, p.stderr
    proj = json.loads(p.stdout)["projects"][0]
    assert proj["status"] == "changed"
    # What the same traffic costs on each API grows with it: 20x, so +19x of the base.
    for api, delta in proj["delta"]["api_monthly_usd"].items():
        base_api = proj["base"]["breakeven"][api]["api_monthly_usd"]
        assert delta > 0 and math.isclose(delta, 19 * base_api, rel_tol=1e-3, abs_tol=0.02), api
    # Self-host spend moves by whole replicas: the engine's monthly $ per replica times the replica delta.
    base_rv = review(EXAMPLE)
    per_replica = base_rv["monthly_usd"] / base_rv["replicas"]
    assert math.isclose(proj["delta"]["monthly_usd"], proj["delta"]["replicas"] * per_replica, abs_tol=0.02)
    assert proj["head"]["usd_per_million_output_tokens"] < proj["base"]["usd_per_million_output_tokens"]


def heavier(tmp_path) -> Path:
    """The example at the traffic that needs one more replica than the base (from the base review's capacity)."""
    base = review(EXAMPLE)
    per_replica_rps = base["projection"]["requests_per_s"]
    spec = yaml.safe_load((ROOT / EXAMPLE).read_text())
    peak = spec["workload"]["peak_to_mean"]
    spec["workload"]["requests_per_day"] = math.ceil((base["replicas"] + 0.5) * per_replica_rps * 86400 / peak)
    del spec["budget"]  # the spec's own budget is a gate too (tested below): these tests exercise the flags
    path = tmp_path / "heavier.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_more_traffic_adds_replicas_and_dollars_and_the_increase_gate_exits_2(selfhost, tmp_path):
    head = heavier(tmp_path)
    p = selfhost("diff", "--base", EXAMPLE, "--head", str(head), "--format", "json", "--max-increase-usd", "1")
    assert p.returncode == 2
    doc = json.loads(p.stdout)  # the diff is printed before the gate refuses
    assert doc["totals"]["delta_monthly_usd"] > 1 and doc["projects"][0]["delta"]["replicas"] >= 1
    assert p.stderr.count("\n") == 1 and "--max-increase-usd" in p.stderr and "Traceback" not in p.stderr
    table = selfhost("diff", "--base", EXAMPLE, "--head", str(head))
    assert "+$" in table.stdout and table.returncode == 0


@pytest.mark.parametrize(
    "flag,value,breached",
    [
        ("--max-monthly-usd", "100", True),
        ("--max-monthly-usd", "100000", False),
        ("--max-increase-percent", "10", True),
        ("--max-increase-percent", "1000", False),
        ("--max-increase-usd", "100000", False),
    ],
)
def test_gates(selfhost, tmp_path, flag, value, breached):
    p = selfhost("diff", "--base", EXAMPLE, "--head", str(heavier(tmp_path)), flag, value, "--format", "markdown")
    assert p.returncode == (2 if breached else 0), p.stderr
    assert (flag in p.stderr) == breached
    assert ("BUDGET GATE FAILED" in p.stdout) == breached and ("budget gates passed" in p.stdout) != breached


def test_gates_in_the_engine_name_each_breach():
    base, head = review(EXAMPLE), review(EXAMPLE, target={"replicas": 3})
    doc = diff_reviews([DiffInput("x", "a", "b", base, head)], Gates(1.0, 1.0, 1.0))
    # the three flags, then the head spec's own budget (3 replicas cost more than the example's budget)
    assert head["monthly_usd"] > head["budget"]["max_monthly_usd"]
    assert len(doc["gates"]["breaches"]) == 4 and doc["gates"]["breaches"][3].startswith("x (b): projected ")
    assert doc["totals"]["delta_monthly_usd"] == pytest.approx(2 * base["monthly_usd"], abs=0.02)
    added = diff_reviews([DiffInput("x", None, "b", None, head)], Gates(max_increase_percent=50))
    assert added["projects"][0]["status"] == "added" and added["totals"]["delta_percent"] is None
    assert "from $0" in added["gates"]["breaches"][0]
    same = diff_reviews([DiffInput("x", "a", "b", base, base)], Gates(None, 0, 0))
    assert same["projects"][0]["status"] == "unchanged" and same["gates"]["breaches"] == []


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--head", EXAMPLE], "no base given"),
        (["--base", EXAMPLE], "no head spec given"),
        (["--base", EXAMPLE, "--base", EXAMPLE, "--head", EXAMPLE], "2 --base for 1 head"),
        (["--base", EXAMPLE, "--base-ref", "main", "--head", EXAMPLE], "alternatives"),
        (["--base", EXAMPLE, "--head", EXAMPLE, "--max-increase-usd", "-1"], "--max-increase-usd must be"),
        (["--base", EXAMPLE, "--head", EXAMPLE, "--max-monthly-usd", "nan"], "--max-monthly-usd must be"),
        (["--base", EXAMPLE, "--head", EXAMPLE, "--format", "html"], "unknown format"),
        (["--base", "nope.yaml", "--head", EXAMPLE], "'nope.yaml' not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(selfhost, args, problem):
    p = selfhost("diff", *args)
    assert p.returncode == 2 and problem in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and p.stdout == ""


def test_a_spec_that_does_not_cost_is_refused_naming_the_file(selfhost, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llama-3.1-405b\ntarget: {offer: runpod-a40x1-secure}\n"
                   "workload: {requests_per_day: 10, input_tokens: 10, output_tokens: 10}\n")  # fmt: skip
    p = selfhost("diff", "--base", EXAMPLE, "--head", str(bad))
    assert p.returncode == 2 and str(bad) in p.stderr and p.stderr.count("\n") == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_base_ref_reads_the_base_from_git_and_marks_new_specs_added(selfhost, tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    spec = yaml.safe_load((ROOT / EXAMPLE).read_text())
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "a.yaml").write_text(yaml.safe_dump(spec))
    git("add", ".")
    git("commit", "-q", "-m", "base")
    spec["target"]["replicas"] = 2
    spec["budget"]["max_monthly_usd"] *= 2  # each head's own budget is a gate: it grows with the replicas
    (tmp_path / "deploy" / "a.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "deploy" / "b.yaml").write_text(yaml.safe_dump({**spec, "name": "new-one"}))
    p = selfhost(
        "diff", "--base-ref", "main", str(tmp_path / "deploy" / "a.yaml"), str(tmp_path / "deploy" / "b.yaml"),
        "--format", "json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    a, b = doc["projects"]
    assert a["status"] == "changed" and a["delta"]["replicas"] == 1 and a["base_source"].startswith("main:")
    assert b["status"] == "added" and b["base"] is None
    assert doc["totals"]["delta_monthly_usd"] == pytest.approx(3 * a["base"]["monthly_usd"], abs=0.05)
    git("add", ".")
    git("commit", "-q", "-m", "b")
    git("branch", "with-b")
    (tmp_path / "deploy" / "b.yaml").unlink()  # a deployment removed by the change
    p = selfhost("diff", "--base-ref", "with-b", str(tmp_path / "deploy" / "b.yaml"), "--format", "json")
    assert p.returncode == 0, p.stderr
    gone = json.loads(p.stdout)
    assert gone["projects"][0]["status"] == "removed" and gone["totals"]["head_monthly_usd"] == 0
    assert gone["totals"]["delta_monthly_usd"] == pytest.approx(-gone["totals"]["base_monthly_usd"])
    bad = selfhost("diff", "--base-ref", "no-such-ref", str(tmp_path / "deploy" / "a.yaml"))
    assert bad.returncode == 2 and "--base-ref" in bad.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize(
    "content, words",
    [
        (b"model: [unclosed\n", "is not valid YAML"),
        (b"model: caf\xe9\n", "is not UTF-8 text"),
        (b"- a list\n", "must hold a mapping"),
        (b"1: one\n", "has a key that is not a name"),
    ],
)
def test_a_bad_base_at_a_git_ref_is_refused_in_one_line(selfhost, tmp_path, content, words):
    """The base read from git goes through the same checks as a spec file (costing.data.spec.parse_spec_yaml)."""

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    head = tmp_path / "a.yaml"
    head.write_bytes(content)
    git("add", ".")
    git("commit", "-q", "-m", "base")
    head.write_text((ROOT / EXAMPLE).read_text())
    p = selfhost("diff", "--base-ref", "main", str(head))
    assert p.returncode == 2 and f"at main {words}" in p.stderr and p.stderr.count("\n") == 1
    assert "Traceback" not in p.stderr


# --- each head spec's own budget is a gate, judged as `selfhost plan --spec` judges it ----------------------------

# Two deployments as specs carry them: the example (one RunPod A40, on-demand) and an AWS spot service (the
# group the stack runs, as `selfhost init --cloud aws` wrote it before availability was chosen).
BUDGET_SPECS = {
    "runpod": yaml.safe_load((ROOT / EXAMPLE).read_text()),
    "aws-spot": {
        "name": "llama-3-1-8b-aws",
        "model": "llama-3.1-8b",
        "precision": "bf16",
        "target": {"offer": "aws-g5.xlarge", "pricing": "spot"},
        "workload": {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 2.0},
        "slo": {"p90_latency_s": 20},
        "sky": {"service": True},
    },
}


def _budget_cases() -> list[tuple[str, int, str]]:
    """(spec, requests/day, how the budget sits against that spec's projected total)."""
    where = ("exactly", "cent-below", "cent-above", "as-displayed", "half", "double")
    return [(s, rpd, w) for s in BUDGET_SPECS for rpd in (3000, 60000, 600000) for w in where]


def _budget_for(monthly: float, where: str) -> float:
    return {
        "exactly": monthly,  # the unrounded projection: within (plan refuses only above the budget)
        "cent-below": monthly - 0.01,
        "cent-above": monthly + 0.01,
        "as-displayed": round(monthly, 2),  # what a user copies from the plan's output
        "half": monthly / 2,
        "double": monthly * 2,
    }[where]


@pytest.mark.parametrize("name,requests_per_day,where", _budget_cases())
def test_diff_refuses_a_head_over_its_own_budget_exactly_when_plan_does(tmp_path, name, requests_per_day, where):
    """The PR check (`selfhost diff`) and the deploy (`selfhost plan --spec`, then the stack) never disagree."""
    from cli_inprocess import run_cli

    data = yaml.safe_load(yaml.safe_dump(BUDGET_SPECS[name]))
    data["workload"]["requests_per_day"] = requests_per_day
    data.pop("budget", None)
    monthly = cost_review(spec_from_dict(data)).monthly_usd
    data["budget"] = {"max_monthly_usd": _budget_for(monthly, where)}
    spec = tmp_path / "head.yaml"
    spec.write_text(yaml.safe_dump(data))
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**data, "budget": {"max_monthly_usd": monthly / 2}}))  # not a gate

    plan = run_cli("plan", "--spec", spec, "--format", "json")
    diff = run_cli("diff", "--base", base, "--head", spec, "--format", "json")
    assert plan.code in (0, 2) and diff.code in (0, 2), (plan, diff)
    # over the budget is refused, at or under it passes (as-displayed: either, as long as both agree)
    assert plan.code == {"exactly": 0, "cent-below": 2, "cent-above": 0, "half": 2, "double": 0}.get(where, plan.code)
    assert diff.code == plan.code, f"plan exit {plan.code}, diff exit {diff.code}: {plan.stderr}{diff.stderr}"
    doc = json.loads(diff.stdout)  # printed before the gate refuses
    [gate] = doc["gates"]["spec_budgets"]
    assert gate["within"] == (plan.code == 0) and gate["max_monthly_usd"] == data["budget"]["max_monthly_usd"]
    if plan.code == 2:
        refusal = plan.stderr.strip()
        assert "exceeds the budget of" in refusal
        # diff names the spec and says what plan says: the same projection, replicas, offer and budget
        problem = refusal.removeprefix("error: ").split(". Fix:")[0]
        assert diff.stderr.count("\n") == 1 and problem in diff.stderr and str(spec) in diff.stderr
        assert doc["gates"]["breaches"] == [gate["breach"]] and data["name"] in gate["breach"]
    else:
        assert doc["gates"]["breaches"] == [] and gate["breach"] is None and diff.stderr == ""


def test_a_base_over_its_budget_is_not_a_gate_and_each_head_is_named(tmp_path):
    from cli_inprocess import run_cli

    over = yaml.safe_load((ROOT / EXAMPLE).read_text())
    over["budget"]["max_monthly_usd"] = review(EXAMPLE)["monthly_usd"] / 2
    (tmp_path / "over.yaml").write_text(yaml.safe_dump(over))
    # base over budget, head within (the change fixes it): passes, and says which budget it checked
    p = run_cli("diff", "--base", tmp_path / "over.yaml", "--head", EXAMPLE)
    assert p.code == 0, p.stderr
    assert f"budget gates passed: {over['name']} budget $600.00" in p.stdout
    # two heads, one over: the gate names that one only, in the table, the markdown and the JSON
    for fmt, mark in (("table", "BUDGET GATE FAILED: "), ("markdown", "> ❌ BUDGET GATE FAILED: ")):
        p = run_cli(
            "diff", "--base", EXAMPLE, "--head", tmp_path / "over.yaml",
            "--base", "tests/golden/diff/base-gcp.yaml", "--head", "tests/golden/diff/head-gcp.yaml", "--format", fmt,
        )  # fmt: skip
        assert p.code == 2
        failed = [line for line in p.stdout.splitlines() if line.startswith(mark)]
        assert len(failed) == 1 and str(tmp_path / "over.yaml") in failed[0], p.stdout
        assert f"exceeds the budget of ${over['budget']['max_monthly_usd']:,.2f}" in failed[0]
        assert p.stderr.count("\n") == 1 and "budget gate breached" in p.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("ref", ["--output=x", "-p", "--output", "main --output=x", "main:x", "-"])
def test_an_option_shaped_base_ref_is_refused_before_git_runs(selfhost, tmp_path, ref):
    """Issue 24: `--base-ref=--output=FILE` was handed to `git show` as an option (git wrote FILE)."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    head = tmp_path / "a.yaml"
    head.write_text((ROOT / EXAMPLE).read_text())
    before = sorted(p.name for p in tmp_path.iterdir())
    p = selfhost("diff", f"--base-ref={ref}", str(head))
    assert p.returncode == 2 and "--base-ref" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == before and not (ROOT / "x").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_ref_is_resolved_to_a_commit_id_before_git_show(tmp_path, monkeypatch):
    from selfhost.diff import commands

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    (tmp_path / "a.yaml").write_text((ROOT / EXAMPLE).read_text())
    git("add", ".")
    git("commit", "-q", "-m", "base")
    calls = []
    real = subprocess.run
    monkeypatch.setattr(commands.subprocess, "run", lambda argv, **kw: calls.append(argv) or real(argv, **kw))
    assert commands.base_spec_from_git("main", tmp_path / "a.yaml")
    rev_parse, show = calls
    assert rev_parse[:5] == ["git", "rev-parse", "--verify", "--quiet", "--end-of-options"]
    commit = real(["git", "rev-parse", "main"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert show == ["git", "show", f"{commit}:./a.yaml"]


STACK_CASES = {  # cloud -> (stack config keys, the spec's target)
    "aws": ({"aws:region": "us-east-1", "instanceType": "g5.xlarge"}, {"offer": "aws-g5.xlarge", "pricing": "spot"}),
    "gcp": (
        {"gcp:region": "us-central1", "gcp:project": "p", "machineType": "g2-standard-8"},
        {"offer": "gcp-g2-standard-8", "pricing": "on-demand"},
    ),
}


def _stack_folder(folder: Path, cloud: str, requests_per_day: int) -> dict:
    """A folder as `selfhost init --cloud CLOUD` lays it out: the spec, the kit's Pulumi.yaml, a stack config
    whose specFile names the spec. Returns the stack config as `pulumi config` would hold it."""
    keys, target = STACK_CASES[cloud]
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": f"llama-{cloud}", "model": "llama-3.1-8b", "target": target,
        "workload": {"requests_per_day": requests_per_day, "input_tokens": 1000, "output_tokens": 250},
    }  # fmt: skip
    (folder / "selfhost.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ROOT / "stacks" / cloud / "Pulumi.yaml", folder / "Pulumi.yaml")
    project = f"selfhost-{cloud}"
    own = {"specFile": "selfhost.yaml", "allowedCidrs": ["203.0.113.0/24"]}
    config = {k if ":" in k else f"{project}:{k}": v for k, v in {**keys, **own}.items()}
    (folder / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    return {**keys, **own, "specFile": str(folder / "selfhost.yaml")}


def _bill_of_stack(cloud: str, config: dict, requests_per_day: int) -> float:
    """`selfhost bill` of what the stack declares (the real program under Pulumi's mocks) for that workload."""
    from costing.money.review import GIB_IN_GB
    from selfhost.bill.declared import parse_preview
    from selfhost.bill.mock_preview import preview_json
    from selfhost.bill.price import Usage, bill_preview

    secrets = {"apiKey": "sk-test-key-0123456789", "hfToken": "hf_abcdefghijklmnopqrstuvwxyz0123"}
    outputs: dict = {}
    doc = preview_json(
        ROOT / "stacks" / cloud / "__main__.py",
        f"selfhost-{cloud}",
        {**config, **secrets, "allowPlainHttp": "true"},
        outputs=outputs,
    )
    weights_gb = round(cost_review(load_spec(config["specFile"])).fit.weight_gib * GIB_IN_GB, 1)
    usage = Usage(requests_per_day=requests_per_day, input_tokens=1000, output_tokens=250, bucket_gb=weights_gb)
    return bill_preview(parse_preview(doc), usage).monthly_usd


def _commit_base(repo: Path) -> None:
    """`repo` as a new git repository whose one commit (the diff's base) holds everything in it."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "base"], check=True)


@pytest.mark.parametrize("cloud", list(STACK_CASES))
def test_diff_of_a_stack_folder_uses_the_figures_its_bill_has(cloud, selfhost, tmp_path):
    """A spec beside the kit's Pulumi stack is deployed by that stack: diff shows the stack's review (its load
    balancer, WAF and weights mirror rows too), which equals `selfhost bill` of what the stack declares, at the
    base (from git) and the head."""
    repo = tmp_path / "repo"
    folder = repo / "deploy" / cloud
    base_config = _stack_folder(folder, cloud, 3000)
    _commit_base(repo)
    base_bill = _bill_of_stack(cloud, base_config, 3000)
    head_config = _stack_folder(folder, cloud, 30000)
    head_bill = _bill_of_stack(cloud, head_config, 30000)
    out = selfhost("diff", "--base-ref", "HEAD", str(folder / "selfhost.yaml"), "--format", "json")
    assert out.returncode == 0, out.stderr
    (project,) = json.loads(out.stdout)["projects"]
    assert project["base"]["monthly_usd"] == pytest.approx(base_bill, rel=0.01)
    assert project["head"]["monthly_usd"] == pytest.approx(head_bill, rel=0.01)
    # the bare spec (no stack beside it) is the plan's figure, below the stack's
    plain = review_dict(cost_review(load_spec(folder / "selfhost.yaml")))["monthly_usd"]
    assert plain < project["head"]["monthly_usd"]


def test_gates_on_a_head_total_with_unpriced_rows_are_breached_unless_allowed():
    """eu-west-1 has no dated EBS rate: the head's disk row is left out of its total. A --max-monthly-usd gate
    (or the head spec's own budget) that total meets would pass on a partial figure: a breach naming the row,
    unless --allow-unpriced (budget.allow_unpriced in the spec) gates on the priced total."""
    eu = {"offer": "aws-g5.xlarge", "region": "eu-west-1"}
    head = review(EXAMPLE, target=eu, budget={"max_monthly_usd": 100000})
    base = review(EXAMPLE)
    assert head["budget"]["within"] is True
    doc = diff_reviews([DiffInput("x", "a", "b", base, head)], Gates(max_monthly_usd=100000))
    partial = [b for b in doc["gates"]["breaches"] if "partial total" in b]
    assert len(partial) == 2 and all("disk " in b for b in partial)  # the flag's gate and the spec's own
    allowed = diff_reviews([DiffInput("x", "a", "b", base, head)], Gates(max_monthly_usd=100000, allow_unpriced=True))
    assert [b for b in allowed["gates"]["breaches"] if "partial total" in b] == [partial[1]]  # the spec's own
    own = review(EXAMPLE, target=eu, budget={"max_monthly_usd": 100000, "allow_unpriced": True})
    doc = diff_reviews([DiffInput("x", "a", "b", base, own)], Gates(max_monthly_usd=100000, allow_unpriced=True))
    assert doc["gates"]["breaches"] == []
    # a head with every row priced passes the same gates
    priced = review(EXAMPLE, budget={"max_monthly_usd": 100000})
    assert (
        diff_reviews([DiffInput("x", "a", "b", base, priced)], Gates(max_monthly_usd=100000))["gates"]["breaches"] == []
    )


K8S_CASES = {  # cluster -> (the stack's own keys, the spec's target)
    "eks": ({"cluster": "eks", "instanceType": "g5.xlarge", "clusterName": "team"}, {"offer": "aws-g5.xlarge"}),
    "gke": (
        {"cluster": "gke", "instanceType": "g2-standard-8", "clusterName": "team", "location": "us-central1"},
        {"offer": "gcp-g2-standard-8"},
    ),
}


def _k8s_folder(folder: Path, cluster: str, requests_per_day: int, **spec_keys) -> dict:
    """A kubernetes stack folder: the spec, stacks/kubernetes' Pulumi.yaml, Pulumi.dev.yaml naming the spec."""
    keys, target = K8S_CASES[cluster]
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": f"llama-{cluster}", "model": "llama-3.1-8b", "target": {**target, "pricing": "spot"},
        "workload": {"requests_per_day": requests_per_day, "input_tokens": 1000, "output_tokens": 250},
        **spec_keys,
    }  # fmt: skip
    (folder / "selfhost.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ROOT / "stacks" / "kubernetes" / "Pulumi.yaml", folder / "Pulumi.yaml")
    own = {**keys, "specFile": "selfhost.yaml", "allowedCidrs": ["10.0.0.0/16"]}
    (folder / "Pulumi.dev.yaml").write_text(
        yaml.safe_dump({"config": {f"selfhost-kubernetes:{k}": v for k, v in own.items()}})
    )
    return {**own, "specFile": str(folder / "selfhost.yaml")}


@pytest.mark.parametrize("cluster", list(K8S_CASES))
def test_diff_of_a_kubernetes_stack_folder_is_the_review_the_stack_deploys(cluster, selfhost, tmp_path):
    """A spec beside stacks/kubernetes is deployed on the team's cluster: diff shows the review of the nodes its
    pods need (what the program computes under Pulumi's mocks and `plan --kubernetes` shows), not the bare
    spec's plan, at the base (from git) and the head."""
    from stack_mocks import stack

    repo = tmp_path / "repo"
    folder = repo / "deploy" / cluster
    base_config = _k8s_folder(folder, cluster, 3000)
    _commit_base(repo)
    secrets = {"apiKey": "sk-test-key-0123456789", "hfToken": "hf_test_token"}
    _, base_out = stack("kubernetes", {**base_config, **secrets})
    head_config = _k8s_folder(folder, cluster, 400000)
    _, head_out = stack("kubernetes", {**head_config, **secrets})
    out = selfhost("diff", "--base-ref", "HEAD", str(folder / "selfhost.yaml"), "--format", "json")
    assert out.returncode == 0, out.stderr
    (project,) = json.loads(out.stdout)["projects"]
    assert project["base"]["monthly_usd"] == pytest.approx(base_out["projectedMonthlyUsd"], abs=0.01)
    assert project["head"]["monthly_usd"] == pytest.approx(head_out["projectedMonthlyUsd"], abs=0.01)
    assert head_out["projectedMonthlyUsd"] > base_out["projectedMonthlyUsd"]
    plan = selfhost("plan", "--spec", str(folder / "selfhost.yaml"), "--kubernetes", cluster, "--format", "json")
    assert json.loads(plan.stdout)["monthly_usd"] == project["head"]["monthly_usd"]
    # the bare spec (no stack beside it) is a SkyPilot plan, another figure
    plain = review_dict(cost_review(load_spec(folder / "selfhost.yaml")))["monthly_usd"]
    assert plain != pytest.approx(project["head"]["monthly_usd"], abs=0.01)


@pytest.mark.parametrize("fmt,suffix", [("table", "table.txt"), ("markdown", "md")])
def test_golden_diff_of_a_kubernetes_stack_folder_names_the_cluster(update_golden, monkeypatch, tmp_path, fmt, suffix):
    """What a reviewer reads for a spec beside stacks/kubernetes: the offer on EKS and the pods KEDA scales,
    as `selfhost plan --kubernetes eks` says them (the Target and Replicas rows)."""
    from cli_inprocess import run_cli
    from test_golden import ENV, check_golden

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    slo = {"p90_latency_s": 20}
    _k8s_folder(tmp_path / "base", "eks", 20000, slo=slo)
    peak = {"requests_per_day": 150000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 3}
    _k8s_folder(tmp_path / "head", "eks", 150000, slo=slo, workload=peak)
    monkeypatch.chdir(tmp_path)
    out = run_cli("diff", "--base", "base/selfhost.yaml", "--head", "head/selfhost.yaml", "--format", fmt)
    assert out.code == 0, out.stderr
    check_golden(f"diff-k8s.{suffix}", out.stdout, update_golden)
    plan = run_cli("plan", "--spec", "head/selfhost.yaml", "--kubernetes", "eks", "--format", "json")
    fleet = json.loads(plan.stdout)["fleet"]
    assert fleet["min_replicas"] < fleet["max_replicas"]  # a range: the diff shows both ends, as the plan does
    pods = f"{fleet['min_replicas']} to {fleet['max_replicas']} pods"
    text = run_cli("plan", "--spec", "head/selfhost.yaml", "--kubernetes", "eks").stdout
    assert "aws-g5.xlarge (g5.xlarge" in text and ") on EKS, 1x A10G" in text and f"{pods}, autoscaled by KEDA" in text
    assert "aws-g5.xlarge on EKS" in out.stdout and f"{pods} (KEDA)" in out.stdout and "2 pods (KEDA)" in out.stdout
