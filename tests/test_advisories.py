"""The vLLM advisory floor (issue 24): the shipped OSV snapshot, OSV's range semantics, the pinned version against
it, and `selfhost plan` / `selfhost smoke` warning (and refusing with --strict) on an affected version."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from cli_inprocess import one_line_error, run_cli
from conftest import stand_in_server
from packaging.version import Version

from costing.data import advisories
from costing.performance.vllm_args import VLLM_VERSION

SNAPSHOT = json.loads(advisories.DATA.read_text())
KEY = "sk-test-key-0123456789"


def entry(*ranges: list[dict[str, str]], versions: tuple[str, ...] = ()) -> dict:
    """A one-entry snapshot in OSV's schema."""
    affected = {"package": {"ecosystem": "PyPI", "name": "vllm"}, "ranges": [], "versions": list(versions)}
    affected["ranges"] = [{"type": "ECOSYSTEM", "events": events} for events in ranges]
    return {
        "snapshot_date": "2026-12-06",
        "vulns": [
            {
                "id": "TEST-1",
                "summary": "s",
                "modified": "2026-12-06T00:00:00Z",
                "affected": [affected],
                "database_specific": {"source": "x"},
            }
        ],
    }


def hit(version: str, data: dict) -> bool:
    return [a.id for a in advisories.affecting(version, data)] == ["TEST-1"]


# ---- the pinned version ---------------------------------------------------------------------------------------


def test_the_pinned_vllm_is_affected_by_no_advisory_in_the_snapshot():
    found = advisories.affecting(VLLM_VERSION)
    assert found == [], f"vLLM {VLLM_VERSION} (costing/performance/vllm_args.py) is affected by {[a.id for a in found]}"


def test_the_pinned_vllm_is_past_every_fix_the_snapshot_records():
    ranges = [r for v in SNAPSHOT["vulns"] for a in v["affected"] for r in a["ranges"]]
    pinned = Version(VLLM_VERSION)
    fixed = [Version(e["fixed"]) for r in ranges for e in r["events"] if "fixed" in e]
    last = [Version(e["last_affected"]) for r in ranges for e in r["events"] if "last_affected" in e]
    assert fixed and max(fixed) <= pinned and all(v < pinned for v in last)


# ---- the data --------------------------------------------------------------------------------------------------


def test_every_entry_is_osv_shaped_sourced_and_dated():
    snapshot = dt.date.fromisoformat(SNAPSHOT["snapshot_date"])
    assert snapshot <= dt.date.today()
    ids = [v["id"] for v in SNAPSHOT["vulns"]]
    assert len(ids) == len(set(ids)) >= 10
    for v in SNAPSHOT["vulns"]:
        assert re.fullmatch(r"(PYSEC-\d{4}-\d+|GHSA(-[23456789cfghjmpqrvwx]{4}){3}|CVE-\d{4}-\d{4,})", v["id"]), v["id"]
        dt.datetime.fromisoformat(v["modified"].replace("Z", "+00:00"))  # OSV requires `modified`
        meta = v["database_specific"]
        assert meta["source"].startswith("https://") and dt.date.fromisoformat(meta["checked"]) <= snapshot
        assert v["summary"] and len(v["summary"]) < 300
        (affected,) = v["affected"]
        assert affected["package"]["ecosystem"] == "PyPI" and affected["package"]["name"] == "vllm"
        for rng in affected["ranges"]:
            assert rng["type"] == "ECOSYSTEM"
            kinds = [next(iter(e)) for e in rng["events"]]
            assert kinds[0] == "introduced" and set(kinds) <= {"introduced", "fixed", "last_affected"}
            for e in rng["events"]:
                (value,) = e.values()
                Version(value)
    assert all(n["id"] not in ids for n in SNAPSHOT["not_included"])  # what could not be confirmed is not used


# ---- OSV's range semantics (https://ossf.github.io/osv-schema/#evaluation) ------------------------------------


@pytest.mark.parametrize(
    "version, affected",
    [
        ("0.0.1", False),
        ("0.19.0", True),  # introduced: inclusive
        ("0.31.9", True),
        ("0.32.0rc1", True),  # a pre-release of the fix is before it
        ("0.32.0", False),  # fixed: exclusive
        ("0.32.0+cpu", False),  # a local build of the fixed release is the release
        ("0.33.0", False),
    ],
)
def test_introduced_and_fixed(version, affected):
    assert hit(version, entry([{"introduced": "0.19.0"}, {"fixed": "0.32.0"}])) is affected


@pytest.mark.parametrize(
    "version, affected", [("0.22.0", False), ("0.22.1", True), ("0.28.0", True), ("0.28.1", False)]
)
def test_last_affected_is_inclusive(version, affected):
    assert hit(version, entry([{"introduced": "0.22.1"}, {"last_affected": "0.28.0"}])) is affected


@pytest.mark.parametrize(
    "version, affected",
    [("0.1.0", True), ("0.9.9", True), ("1.0.0", False), ("1.5.0", False), ("2.0.0", True), ("2.1.0", False)],
)
def test_events_are_read_in_version_order_and_reopen(version, affected):
    """One range, events out of order: affected from 0, fixed at 1.0.0, re-introduced at 2.0.0, fixed at 2.0.1."""
    events = [{"fixed": "2.0.1"}, {"introduced": "2.0.0"}, {"fixed": "1.0.0"}, {"introduced": "0"}]
    assert hit(version, entry(events)) is affected


def test_any_range_or_listed_version_affects():
    data = entry([{"introduced": "0.5.0"}, {"fixed": "0.6.0"}], [{"introduced": "0.9.0"}, {"fixed": "0.9.2"}])
    assert [hit(v, data) for v in ("0.5.1", "0.7.0", "0.9.1", "0.9.2")] == [True, False, True, False]
    listed = entry(versions=("0.4.2",))
    assert hit("0.4.2", listed) and not hit("0.4.3", listed)


def test_an_introduced_only_range_has_no_fix():
    data = entry([{"introduced": "0.30.0"}])
    (found,) = advisories.affecting("0.40.0", data)
    assert found.fixed is None


def test_the_snapshot_entries_read_as_recorded():
    """Ranges of real entries, at their edges (PYSEC-2026-4344: 0.19.0 to 0.32.0; PYSEC-2026-4324: 0.22.1 through
    0.28.0; CVE-2026-114053, the /tokenize code execution: 0.7.3 to 0.31.0)."""

    def ids(version: str) -> set[str]:
        return {a.id for a in advisories.affecting(version)}

    assert "PYSEC-2026-4344" in ids("0.31.0") and "PYSEC-2026-4344" not in ids("0.18.1")
    assert "PYSEC-2026-4324" in ids("0.28.0") and "PYSEC-2026-4324" not in ids("0.28.1")
    assert "CVE-2026-114053" in ids("0.30.0") and "CVE-2026-114053" not in ids("0.7.2")
    (tokenize,) = [a for a in advisories.affecting("0.30.0") if a.id == "CVE-2026-114053"]
    assert tokenize.fixed == "0.31.0"


# ---- plan -----------------------------------------------------------------------------------------------------

PLAN = ("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--requests-per-day", "3000")
PLAN += ("--input-tokens", "1000", "--output-tokens", "250")


def test_plan_is_silent_on_the_pinned_version():
    r = run_cli(*PLAN)
    assert r.code == 0 and "warning: vLLM" not in r.stderr, r.stderr


def test_plan_warns_on_an_affected_version_and_strict_refuses_before_the_review():
    r = run_cli(*PLAN, "--vllm-version", "0.31.0")
    assert r.code == 0 and r.stdout  # the review still prints
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: vLLM 0.31.0")]
    assert {w.split(" is affected by ")[1].split(",")[0].split(":")[0] for w in warned} == {
        a.id for a in advisories.affecting("0.31.0")
    }
    strict = run_cli(*PLAN, "--vllm-version", "0.31.0", "--strict")
    assert strict.code == 2 and strict.stdout == ""
    assert strict.stderr.splitlines()[-1].startswith("error: vLLM 0.31.0") and "0.32.0" in strict.stderr
    assert run_cli(*PLAN, "--vllm-version", VLLM_VERSION, "--strict").code == 0


def test_plan_refuses_a_version_that_is_not_one():
    one_line_error(run_cli(*PLAN, "--vllm-version", "latest"), "--vllm-version", "not a version")


# ---- smoke ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("served, warned", [("0.30.0", True), (VLLM_VERSION, False)])
def test_smoke_reads_the_servers_version_and_warns(served, warned):
    with stand_in_server("--api-key", KEY, "--vllm-version", served) as url:
        r = run_cli("smoke", url, "--api-key", KEY)
        strict = run_cli("smoke", url, "--api-key", KEY, "--strict")
    assert r.code == 0, r.stdout + r.stderr  # the checks themselves pass
    assert ("CVE-2026-114053" in r.stderr) is warned and (f"warning: vLLM {served}" in r.stderr) is warned
    assert strict.code == (2 if warned else 0), strict.stderr
    if warned:
        assert strict.stderr.splitlines()[-1].startswith(f"error: vLLM {served}")


def test_smoke_strict_refuses_when_the_version_is_unknown():
    with stand_in_server("--api-key", KEY) as url:  # the stand-in's default: {"version": "fake"}
        r = run_cli("smoke", url, "--api-key", KEY)
        strict = run_cli("smoke", url, "--api-key", KEY, "--strict")
    assert r.code == 0 and "advisories not checked" in r.stderr
    assert strict.code == 2 and "--strict" in strict.stderr.splitlines()[-1]
