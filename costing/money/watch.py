"""`selfhost watch`: re-review deployment specs under a fresh price snapshot and name the decisions that flip.

A decision is what a review concludes and a price can change: the cheapest candidate `compare` finds (offer,
region, pricing, or managed endpoint), which kind is cheapest for the spec's workload (its self-hosted fleet,
the cheapest managed endpoint, the cheapest open-model API), and whether the spec's own deployment stays within
its budget. Each spec is reviewed under the baseline snapshot and under the new one; a decision that differs
is a flip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from costing.data.catalog import priced_by
from costing.errors import UserError


@dataclass(frozen=True)
class Decisions:
    spec: str
    cheapest: str
    cheapest_usd: float
    kind: str  # "self-hosted" | "managed" | "api"
    kind_label: str
    monthly_usd: float  # the spec's own deployment
    within_budget: bool | None  # None: no budget set


@dataclass(frozen=True)
class Flip:
    spec: str
    decision: str  # "cheapest offer" | "self-host vs managed vs API" | "budget"
    before: str
    after: str


def decisions(path: Path) -> Decisions:
    """The decisions of one spec under the snapshot in use."""
    from costing.data.spec import load_spec
    from costing.money.compare import compare_offers, compare_rows
    from costing.money.review import cost_review
    from costing.money.three_way import three_way

    spec = load_spec(path)
    if spec.workload is None:
        raise UserError(
            f"{path} has no workload: watch re-reviews decisions made for a workload",
            "add a `workload:` section to the spec, or leave it out of the watch",
        )
    top = compare_rows(compare_offers(spec)[0])[0]
    review = cost_review(spec)
    tw = three_way(review)
    cheapest_kind = min(tw.options, key=lambda o: o.monthly_usd)
    budget = spec.budget.max_monthly_usd
    return Decisions(
        str(path),
        f"{top['offer']} {top['region']} {top['pricing']}",
        float(top["monthly_usd"]),
        cheapest_kind.kind,
        cheapest_kind.label,
        review.monthly_usd,
        None if budget is None else review.monthly_usd <= budget,
    )


def _snapshot(path: Path | None, flag: str) -> Path | None:
    if path is not None and not path.is_file():
        raise UserError(
            f"{flag} {path} is not a file",
            "pass a snapshot written by `selfhost prices refresh` (JSON) or a prices.yaml",
        )
    return path


def watch(specs: list[Path], new: Path, baseline: Path | None) -> tuple[list[Decisions], list[Decisions], list[Flip]]:
    """Decisions of every spec under the baseline (None: the shipped snapshot) and under `new`, and the flips."""
    if not specs:
        raise UserError("no spec given", "pass one or more deployment spec files: selfhost watch SPEC... --prices NEW")
    for s in specs:
        if not s.is_file():
            raise UserError(f"spec {s} is not a file", "pass deployment spec files (YAML)")
    before_path, after_path = _snapshot(baseline, "--baseline"), _snapshot(new, "--prices")
    with priced_by(before_path):
        before = [decisions(s) for s in specs]
    with priced_by(after_path):
        after = [decisions(s) for s in specs]
    flips: list[Flip] = []
    for b, a in zip(before, after, strict=True):
        if b.cheapest != a.cheapest:
            flips.append(
                Flip(
                    b.spec,
                    "cheapest offer",
                    f"{b.cheapest} (${b.cheapest_usd:,.2f})",
                    f"{a.cheapest} (${a.cheapest_usd:,.2f})",
                )
            )
        if b.kind != a.kind:
            flips.append(Flip(b.spec, "self-host vs managed vs API", b.kind_label, a.kind_label))
        if b.within_budget != a.within_budget:
            word = {True: "within budget", False: "OVER budget", None: "no budget"}
            flips.append(
                Flip(
                    b.spec,
                    "budget",
                    f"{word[b.within_budget]} (${b.monthly_usd:,.2f})",
                    f"{word[a.within_budget]} (${a.monthly_usd:,.2f})",
                )
            )
    return before, after, flips


def render_watch(
    result: tuple[list[Decisions], list[Decisions], list[Flip]], fmt: str, new: Path, baseline: Path | None
) -> str:
    before, after, flips = result
    base = str(baseline) if baseline else "the shipped snapshot"
    if fmt == "json":

        def d(x: Decisions) -> dict:
            return {
                "spec": x.spec,
                "cheapest": x.cheapest,
                "cheapest_monthly_usd": round(x.cheapest_usd, 2),
                "cheapest_kind": x.kind,
                "cheapest_kind_option": x.kind_label,
                "monthly_usd": round(x.monthly_usd, 2),
                "within_budget": x.within_budget,
            }

        return (
            json.dumps(
                {
                    "schema": "selfhost.watch/v1",
                    "baseline": base,
                    "prices": str(new),
                    "flipped": bool(flips),
                    "flips": [f.__dict__ for f in flips],
                    "before": [d(x) for x in before],
                    "after": [d(x) for x in after],
                },
                indent=2,
            )
            + "\n"
        )
    md = fmt == "markdown"
    lines = [("### " if md else "") + f"selfhost watch: {len(flips)} decision(s) flipped ({base} -> {new})", ""]
    if flips:
        lines += ["| spec | decision | before | after |", "|---|---|---|---|"] if md else []
        for f in flips:
            lines.append(
                f"| {f.spec} | {f.decision} | {f.before} | {f.after} |"
                if md
                else f"FLIPPED {f.spec}: {f.decision}: {f.before} -> {f.after}"
            )
    else:
        lines.append("no decision flipped")
    lines.append("")
    for b, a in zip(before, after, strict=True):
        lines.append(
            f"{'- ' if md else ''}{a.spec}: cheapest {a.cheapest} ${a.cheapest_usd:,.2f}/month; "
            f"cheapest kind {a.kind_label}; the spec's deployment ${b.monthly_usd:,.2f} -> "
            f"${a.monthly_usd:,.2f}/month"
        )
    return "\n".join(lines) + "\n"
