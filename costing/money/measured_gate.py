"""The post-deploy gate: a measured bench (`selfhost bench --output`) against the cost review that sized the deployment.

What the review promised one replica serves (output tokens/s at its SLO-bound concurrency) is what the deployment
must deliver: measured >= min_ratio x projected. Pure: two JSON documents in, a verdict out (no I/O, no network).

The bench's rule holds here too: a completed request delivered every requested token (the bench sets
ignore_eos). A bench document whose completed requests hold fewer tokens than they asked for (a cut stream
counted as a success, as benches before this rule did) fails the "every completed request full length" check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from costing.errors import UserError

BENCH_SCHEMA = "selfhost-bench/1"
REVIEW_SCHEMA = "selfhost.review/v1"


@dataclass(frozen=True)
class GateRules:
    min_ratio: float | None = 0.8  # measured output tok/s over the review's projection
    min_output_tokens_per_s: float | None = None  # an absolute floor
    max_failed_requests: int = 0


@dataclass
class GateResult:
    passed: bool
    point_concurrency: float | None
    matched_review_concurrency: bool
    measured_output_tokens_per_s: float
    projected_output_tokens_per_s: float | None
    ratio: float | None
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "selfhost.gate/v1",
            "passed": self.passed,
            "point_concurrency": self.point_concurrency,
            "matched_review_concurrency": self.matched_review_concurrency,
            "measured_output_tokens_per_s": round(self.measured_output_tokens_per_s, 2),
            "projected_output_tokens_per_s": self.projected_output_tokens_per_s,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "checks": self.checks,
            "notes": self.notes,
        }


def check_rules(rules: GateRules) -> None:
    for flag, value in (("--min-ratio", rules.min_ratio), ("--min-output-tokens-per-s", rules.min_output_tokens_per_s)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UserError(f"{flag} must be a finite number >= 0 (got {value})", f"e.g. {flag} 0.8")
    if rules.max_failed_requests < 0:
        raise UserError("--max-failed-requests must be >= 0", "e.g. --max-failed-requests 0")


def _check_schema(doc: Any, schema: str, what: str, produced_by: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise UserError(f"the {what} is not a {schema} document (schema: {got})", f"pass the JSON of `{produced_by}`")
    return doc


def pick_point(bench: dict[str, Any], concurrency: int | None) -> tuple[dict[str, Any], bool]:
    """The bench point at the review's concurrency when the sweep has it, else the highest-throughput point."""
    points = [p for p in bench.get("points", []) if p.get("completed")]
    if not points:
        raise UserError(
            "the bench has no point with a completed request", "rerun `selfhost bench` against a live endpoint"
        )
    if concurrency is not None:
        for p in points:
            if p.get("request_rate") is None and round(p.get("concurrency") or 0) == concurrency:
                return p, True
    return max(points, key=lambda p: p["output_tokens_per_s"]), False


def full_length_check(bench: dict[str, Any]) -> dict[str, Any]:
    """Every completed request of every point delivered the bench's output_tokens (ignore_eos)."""
    want = int(bench.get("output_tokens") or 0)
    short = []
    for p in bench.get("points", []):
        got, expected = int(p.get("total_output_tokens", 0)), int(p.get("completed", 0)) * want
        if got < expected:
            short.append(f"concurrency {p.get('concurrency')}: {got:,} of {expected:,}")
    return {
        "name": "every completed request full length",
        "ok": not short,
        "detail": (
            f"completed requests delivered fewer tokens than requested ({'; '.join(short)}): cut streams "
            "counted as successes"
            if short
            else f"each completed request delivered its {want:,} tokens"
        ),
    }


def evaluate(bench: Any, review: Any, rules: GateRules) -> GateResult:
    """Measured against projected; each rule is one named check."""
    check_rules(rules)
    bench = _check_schema(bench, BENCH_SCHEMA, "bench", "selfhost bench --output FILE")
    review = _check_schema(review, REVIEW_SCHEMA, "review", "selfhost plan --format json")
    conc = review.get("max_concurrency")
    point, matched = pick_point(bench, conc)
    measured = float(point["output_tokens_per_s"])
    projected = review.get("output_tokens_per_s")
    ratio = measured / projected if projected else None
    checks = []
    failed = int(bench.get("failed_requests", 0))
    checks.append(
        {
            "name": "failed requests",
            "ok": failed <= rules.max_failed_requests,
            "detail": f"{failed} failed (at most {rules.max_failed_requests})",
        }
    )
    checks.append(full_length_check(bench))
    if rules.min_ratio is not None:
        ok = ratio is not None and ratio >= rules.min_ratio
        checks.append(
            {
                "name": "output tok/s vs review",
                "ok": ok,
                "detail": f"measured {measured:,.1f} tok/s = {0 if ratio is None else ratio:.1%} of the projected "
                f"{projected or 0:,.1f} (at least {rules.min_ratio:.0%})",
            }
        )
    if rules.min_output_tokens_per_s is not None:
        checks.append(
            {
                "name": "output tok/s floor",
                "ok": measured >= rules.min_output_tokens_per_s,
                "detail": f"measured {measured:,.1f} tok/s (at least {rules.min_output_tokens_per_s:,.1f})",
            }
        )
    notes = []
    if not matched:
        notes.append(
            f"the bench has no point at the review's concurrency {conc}: compared its best point "
            f"(concurrency {point.get('concurrency')}); bench with --concurrency {conc} to compare like with like"
        )
    wl = review.get("workload", {})
    if (bench.get("input_tokens"), bench.get("output_tokens")) != (wl.get("input_tokens"), wl.get("output_tokens")):
        notes.append(
            f"bench tokens {bench.get('input_tokens')} in / {bench.get('output_tokens')} out differ from the "
            f"review's workload {wl.get('input_tokens')} / {wl.get('output_tokens')}"
        )
    return GateResult(
        all(c["ok"] for c in checks), point.get("concurrency"), matched, measured, projected, ratio, checks, notes
    )


def render_text(result: GateResult) -> str:
    lines = [f"{'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in result.checks]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"gate {'passed' if result.passed else 'FAILED'}")
    return "\n".join(lines) + "\n"
