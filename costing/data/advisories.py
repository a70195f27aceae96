"""vLLM's published security advisories: which ones a vLLM version is affected by.

The data is a dated snapshot in OSV's schema (costing/data/vllm_advisories.json, each entry with its source
and the date it was checked). A version is affected by an entry when it falls in one of its ECOSYSTEM
ranges, read as OSV specifies (https://ossf.github.io/osv-schema/#evaluation): the range's events in
version order, `introduced` opens it, `fixed` closes it before that version, `last_affected` after it;
or when the entry lists the version itself. Versions compare as PyPI does (packaging: PEP 440), so
0.32.0rc1 is before 0.32.0 and a local build 0.32.0+cpu is 0.32.0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from costing.data import DATA_DIR
from costing.errors import UserError

DATA = DATA_DIR / "vllm_advisories.json"
PACKAGE = ("PyPI", "vllm")


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: str | None  # the first fixed version of the range that matched (None: no fix recorded)
    source: str


def parse_version(text: str, what: str = "vLLM version") -> Version:
    try:
        return Version(str(text).strip().removeprefix("v"))
    except InvalidVersion:
        raise UserError(f"{what} {text!r} is not a version", "give a PyPI version, e.g. 0.32.0") from None


def _event_version(event: dict[str, str]) -> Version:
    (value,) = event.values()
    return Version("0") if value == "0" else Version(value)


def in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV's evaluation of one ECOSYSTEM range's events for `version` (limit events are not used by OSV's
    ECOSYSTEM ranges and are ignored)."""
    affected = False
    for event in sorted(events, key=_event_version):
        kind = next(iter(event))
        at = _event_version(event)
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


def _matches(entry: dict[str, Any], version: Version) -> tuple[bool, str | None]:
    for affected in entry.get("affected") or []:
        pkg = affected.get("package") or {}
        if (pkg.get("ecosystem"), pkg.get("name")) != PACKAGE:
            continue
        if any(Version(v) == version for v in affected.get("versions") or []):
            return True, None
        for rng in affected.get("ranges") or []:
            if rng.get("type") != "ECOSYSTEM":
                continue
            events = rng.get("events") or []
            if in_range(version, events):
                fixed = [e["fixed"] for e in events if "fixed" in e and Version(e["fixed"]) > version]
                return True, min(fixed, key=Version) if fixed else None
    return False, None


@cache
def snapshot(path: Path = DATA) -> dict[str, Any]:
    return json.loads(path.read_text())


def affecting(version: str, data: dict[str, Any] | None = None) -> list[Advisory]:
    """The snapshot's advisories `version` is affected by, newest first as listed."""
    v = parse_version(version)
    out = []
    for entry in (data or snapshot())["vulns"]:
        hit, fixed = _matches(entry, v)
        if hit:
            source = (entry.get("database_specific") or {}).get("source", "")
            out.append(Advisory(entry["id"], tuple(entry.get("aliases") or ()), entry["summary"], fixed, source))
    return out


def warning_lines(version: str, where: str, data: dict[str, Any] | None = None) -> list[str]:
    """One warning line per advisory (empty when none): for stderr, before any refusal."""
    snap = data or snapshot()
    lines = []
    for a in affecting(version, snap):
        names = ", ".join((a.id, *a.aliases))
        fix = f"fixed in {a.fixed}" if a.fixed else "no fixed version recorded"
        lines.append(f"warning: vLLM {version} ({where}) is affected by {names}: {a.summary} ({fix}; {a.source})")
    return lines


def enforce(version: str, where: str, *, strict: bool, data: dict[str, Any] | None = None) -> list[str]:
    """The warnings for `version`; with `strict`, a UserError (exit 2) when there is any."""
    snap = data or snapshot()
    lines = warning_lines(version, where, snap)
    if lines and strict:
        fixes = [a.fixed for a in affecting(version, snap) if a.fixed]
        floor = max(fixes, key=Version) if fixes else None
        raise UserError(
            f"vLLM {version} ({where}) is affected by {len(lines)} published advisor"
            f"{'y' if len(lines) == 1 else 'ies'} (snapshot of {snap['snapshot_date']})",
            f"deploy vLLM {floor} or later" if floor else "deploy a vLLM release the advisories name as fixed",
        )
    return lines
