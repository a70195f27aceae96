"""`selfhost watch`: an older price snapshot replayed against the current one names the decisions that flip."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import ROOT

# RunPod A40 Secure Cloud at $0.39/GPU/h as of 2024-09-15 (runpod.io/pricing, as this project first shipped it:
# git 6f8441d costing/data/offers.yaml); the shipped snapshot now has $0.44 (SkyPilot's catalog, 2026-11-30).
OLD = ROOT / "tests" / "data" / "prices-runpod-a40-2024-09.json"
CURRENT = ROOT / "costing" / "data" / "prices.yaml"


def spec_with_budget(tmp_path: Path, budget: float) -> Path:
    spec = yaml.safe_load((ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml").read_text())
    spec["budget"] = {"max_monthly_usd": budget}
    path = tmp_path / "llama-a40.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_old_snapshot_replayed_names_the_budget_decision_that_flipped(selfhost, tmp_path):
    spec = spec_with_budget(tmp_path, 300)
    out = selfhost("watch", str(spec), "--baseline", str(OLD), "--prices", str(CURRENT), "--format", "json")
    assert out.returncode == 2, out.stderr
    assert "decision(s) flipped" in out.stderr and "Traceback" not in out.stderr
    data = json.loads(out.stdout)
    assert [f["decision"] for f in data["flips"]] == ["budget"]
    flip = data["flips"][0]
    assert flip["before"].startswith("within budget") and flip["after"].startswith("OVER budget")
    before, after = data["before"][0], data["after"][0]
    assert before["monthly_usd"] < 300 < after["monthly_usd"]
    assert after["monthly_usd"] - before["monthly_usd"] == pytest_approx((0.44 - 0.39) * 730)
    # the same snapshot on both sides: nothing flips, exit 0
    same = selfhost("watch", str(spec), "--baseline", str(CURRENT), "--prices", str(CURRENT))
    assert same.returncode == 0 and "no decision flipped" in same.stdout
    # a budget the old price already missed: nothing flips either
    roomy = spec_with_budget(tmp_path, 1000)
    assert selfhost("watch", str(roomy), "--baseline", str(OLD), "--prices", str(CURRENT)).returncode == 0


def test_a_flip_of_the_cheapest_offer_is_named(selfhost, tmp_path):
    """A snapshot where RunPod's A40 is far cheaper than anything: the cheapest candidate flips to it."""
    rows = json.loads(OLD.read_text())
    for r in rows["prices"]:
        r["usd_per_hour"] = round(r["usd_per_hour"] / 4, 4)
    cheap = tmp_path / "prices-cheap.json"
    cheap.write_text(json.dumps(rows))
    out = selfhost(
        "watch", str(ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml"), "--prices", str(cheap), "--format", "markdown"
    )
    assert out.returncode == 2
    assert "| cheapest offer |" in out.stdout and "runpod-a40x1-secure US on-demand" in out.stdout


def test_bad_input_is_one_line_and_exit_2(selfhost, tmp_path):
    spec = spec_with_budget(tmp_path, 300)
    for args, words in (
        ([str(spec), "--prices", str(tmp_path / "nope.json")], "--prices"),
        ([str(tmp_path / "none.yaml"), "--prices", str(CURRENT)], "spec"),
        ([str(spec), "--prices", str(spec)], "unreadable"),
    ):
        out = selfhost("watch", *args)
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def pytest_approx(x: float):
    import pytest

    return pytest.approx(x, abs=0.02)


def test_the_weekly_workflow_reviews_against_the_fresh_snapshot_and_opens_one_issue(tmp_path):
    """price-watch.yml's scripts with this checkout's `selfhost` and a `gh` on PATH that records its argv."""
    import datetime as dt
    import subprocess
    import sys

    from selfhost.prices import snapshot

    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github" / "price-watch.yml").read_text())
    steps = {s.get("name"): s["run"] for s in wf["jobs"]["watch"]["steps"] if "run" in s}
    env = dict(wf["env"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "selfhost").write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m selfhost.cli "$@"\n')
    (bin_dir / "gh").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "open(os.environ['GH_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['issue', 'list']:\n    print(os.environ.get('OPEN_ISSUE', ''))\n"
    )
    for tool in ("selfhost", "gh"):
        (bin_dir / tool).chmod(0o755)
    spec = spec_with_budget(tmp_path, 300)
    (tmp_path / env["SPEC"]).parent.mkdir(parents=True)
    (tmp_path / env["SPEC"]).write_text(spec.read_text())
    (tmp_path / env["BASELINE"]).write_text(OLD.read_text())  # decided in September 2024
    cache = tmp_path / "cache"
    snapshot.write_shipped(dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc), cache / "selfhost" / "prices")
    out_file = tmp_path / "github_output"
    base = {
        **env,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "XDG_CACHE_HOME": str(cache),
        "GITHUB_OUTPUT": str(out_file),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_REPOSITORY": "acme/llm",
        "GITHUB_RUN_ID": "7",
        "GH_LOG": str(tmp_path / "gh.log"),
        "HOME": str(tmp_path),
    }
    run = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", steps["Re-review the spec against the fresh prices"]],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "flipped=true" in out_file.read_text()
    assert "| budget |" in (tmp_path / "watch.md").read_text()
    issue = steps["Open or update the price-watch issue"]
    for open_issue, verb in (("", "create"), ("12", "edit")):
        (tmp_path / "gh.log").unlink(missing_ok=True)
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", issue],
            cwd=tmp_path,
            env={**base, "OPEN_ISSUE": open_issue},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        calls = [json.loads(line) for line in (tmp_path / "gh.log").read_text().splitlines()]
        assert calls[0][:2] == ["issue", "list"] and calls[1][:2] == ["issue", verb]
        assert "--body-file" in calls[1] and "watch.md" in calls[1]
        assert (verb == "create") == ("--title" in calls[1] and env["ISSUE_TITLE"] in calls[1])
