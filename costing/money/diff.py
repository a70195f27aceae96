"""Cost diff: two cost reviews (base → head) of each deployment spec → one diff document, like `infracost diff`.

The engine part only: inputs are review dicts (`costing.money.report.review_dict`, schema selfhost.review/v1) or None
for a
deployment added or removed; output is a JSON-ready document (schema selfhost.diff/v1), its renderings (table,
markdown for the pull-request comment, JSON) and the budget gates. No cloud or git access here.

Gates: the flags (`Gates`: head total, increase in $ and %) and each head spec's own `budget.max_monthly_usd`,
judged exactly as `selfhost plan --spec` and the stacks judge it (`costing.money.review.enforce_budget`: the review's
unrounded monthly total above the budget), so the pull-request check and the deploy never disagree on a spec.
Base specs' budgets are not gates (the base is what runs today).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

SCHEMA = "selfhost.diff/v1"
FORMATS = ("table", "markdown", "json")
COMMENT_MARKER = "<!-- selfhost-cost-diff -->"


@dataclass(frozen=True)
class DiffInput:
    """One deployment: its name, where base and head came from, and their reviews (None: absent on that side)."""

    name: str
    base_source: str | None
    head_source: str | None
    base: dict[str, Any] | None
    head: dict[str, Any] | None


@dataclass(frozen=True)
class Gates:
    max_monthly_usd: float | None = None
    max_increase_usd: float | None = None
    max_increase_percent: float | None = None
    allow_unpriced: bool = False  # gate on the priced totals though head rows are not priced


NOT_PRICED = ": not priced: "  # costing.money.review.NOT_PRICED (the review JSON is what the diff reads)


def unpriced(review: dict[str, Any] | None) -> list[str]:
    """The rows of a review JSON that run but have no dated price (left out of its monthly_usd)."""
    lines = (review or {}).get("cost_lines") or []
    return [str(c["item"]).split(NOT_PRICED)[0] for c in lines if NOT_PRICED in str(c.get("item", ""))]


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _side(review: dict[str, Any] | None) -> dict[str, Any] | None:
    """The compared fields of one review."""
    if review is None:
        return None
    t = review["target"]
    gpus = (t.get("gpus_per_node") or 1) * (t.get("nodes") or 1)
    return {
        "model": f"{review['model']['id']} {review['model']['precision']}",
        "offer": t.get("offer"),
        "pricing": t.get("pricing"),
        "hourly_usd": t.get("hourly_usd"),
        "gpus": f"{gpus}x {t['gpu']}",
        "replicas": review["replicas"],
        "requests_per_day": review["workload"]["requests_per_day"],
        "monthly_usd": review["monthly_usd"],
        "usd_per_million_output_tokens": review["usd_per_million_output_tokens"],
        "slo_p90_latency_s": review["slo"]["p90_latency_s"],
        "slo_met": review["slo"]["met"],
        "breakeven": {
            b["api"]: {
                "cheaper": b["cheaper"],
                "api_monthly_usd": b["api_monthly_usd"],
                "breakeven_requests_per_day": b["breakeven_requests_per_day"],
            }
            for b in review["breakeven"]
        },
        **_three_way_side(review.get("three_way")),
        **_kubernetes_side(review),
    }


def _kubernetes_side(review: dict[str, Any]) -> dict[str, Any]:
    """A review of pods on a team's cluster (`plan --kubernetes`, a kubernetes stack folder): the cluster kind and
    the replica range KEDA scales over, which the Offer and Replicas rows name as the plan does."""
    kind = review["target"].get("kubernetes")
    if not kind:
        return {}
    fleet = review.get("fleet") or {}
    return {"kubernetes": kind, "min_replicas": fleet.get("min_replicas", review["replicas"])}


def _offer_text(side: dict[str, Any]) -> str:
    from costing.money.kubernetes import on_cluster

    offer = str(side["offer"])
    return f"{offer} {on_cluster(side['kubernetes'])}" if side.get("kubernetes") else offer


def _replicas_text(side: dict[str, Any]) -> str:
    from costing.money.kubernetes import pods_text

    if side.get("kubernetes"):
        return f"{pods_text(side['min_replicas'], side['replicas'])} (KEDA)"
    return str(side["replicas"])


def _three_way_side(three: dict[str, Any] | None) -> dict[str, Any]:
    """The cheapest managed endpoint and the cheapest of the three kinds (self-hosted, managed, API)."""
    if not three:
        return {}
    managed = [o for o in three["options"] if o["kind"] == "managed"]
    cheapest = min(three["options"], key=lambda o: o["monthly_usd"])
    return {
        "cheapest_managed": f"{managed[0]['label']} {_money(managed[0]['monthly_usd'])}/mo" if managed else None,
        "cheapest_kind": f"{cheapest['kind']}: {cheapest['label']}",
    }


def _get(side: dict[str, Any] | None, key: str) -> float | None:
    return None if side is None else side.get(key)


def _api_monthly(side: dict[str, Any] | None, api: str) -> float | None:
    return None if side is None else side["breakeven"].get(api, {}).get("api_monthly_usd")


def _delta(base: float | None, head: float | None) -> float | None:
    if base is None and head is None:
        return None
    return _r((head or 0.0) - (base or 0.0), 4)


def _percent(base: float | None, head: float | None) -> float | None:
    """Relative change; None when the base is zero (a deployment added from nothing)."""
    if not base:
        return None
    return _r(((head or 0.0) - base) / base * 100, 2)


def _status(base: dict | None, head: dict | None) -> str:
    if base is None:
        return "added"
    if head is None:
        return "removed"
    return "unchanged" if base == head else "changed"


def _project(item: DiffInput) -> dict[str, Any]:
    base, head = _side(item.base), _side(item.head)
    b_month = base["monthly_usd"] if base else 0.0
    h_month = head["monthly_usd"] if head else 0.0
    apis = list((head or base or {}).get("breakeven", {}))
    return {
        "name": item.name,
        "base_source": item.base_source,
        "head_source": item.head_source,
        "status": _status(base, head),
        "base": base,
        "head": head,
        "delta": {
            "monthly_usd": _r(h_month - b_month),
            "monthly_percent": _percent(b_month, h_month),
            "replicas": (head["replicas"] if head else 0) - (base["replicas"] if base else 0),
            "usd_per_million_output_tokens": _delta(
                _get(base, "usd_per_million_output_tokens"), _get(head, "usd_per_million_output_tokens")
            ),
            "api_monthly_usd": {api: _delta(_api_monthly(base, api), _api_monthly(head, api)) for api in apis},
        },
    }


def diff_reviews(items: list[DiffInput], gates: Gates | None = None) -> dict[str, Any]:
    """The diff document: one entry per deployment, totals, and the gates' verdicts."""
    projects = [_project(i) for i in items]
    base_total = sum((p["base"] or {}).get("monthly_usd", 0.0) for p in projects)
    head_total = sum((p["head"] or {}).get("monthly_usd", 0.0) for p in projects)
    totals = {
        "base_monthly_usd": _r(base_total),
        "head_monthly_usd": _r(head_total),
        "delta_monthly_usd": _r(head_total - base_total),
        "delta_percent": _percent(base_total, head_total),
    }
    gates = gates or Gates()
    budgets = spec_budgets(items)
    return {
        "schema": SCHEMA,
        "projects": projects,
        "totals": totals,
        "gates": {
            "max_monthly_usd": gates.max_monthly_usd,
            "max_increase_usd": gates.max_increase_usd,
            "max_increase_percent": gates.max_increase_percent,
            "spec_budgets": budgets,
            "breaches": breaches(totals, gates)
            + partial_breaches(items, gates)
            + [b["breach"] for b in budgets if b["breach"]],
        },
    }


def partial_breaches(items: list[DiffInput], gates: Gates) -> list[str]:
    """A --max-* gate on head totals that leave out not-priced rows passes on a partial figure: a breach,
    unless gates.allow_unpriced (--allow-unpriced) says to gate on the priced totals."""
    if gates.allow_unpriced or all(
        g is None for g in (gates.max_monthly_usd, gates.max_increase_usd, gates.max_increase_percent)
    ):
        return []
    out = []
    for item in items:
        left_out = unpriced(item.head)
        if left_out:
            out.append(
                f"{item.name} ({item.head_source}): its total leaves out {len(left_out)} part(s) with no dated "
                f"price ({'; '.join(left_out)}): the gates cannot pass on a partial total (--allow-unpriced "
                "gates on the priced totals)"
            )
    return out


def spec_budgets(items: list[DiffInput]) -> list[dict[str, Any]]:
    """Each head spec's own budget as a gate: the verdict is the review's (`budget.within`, computed like
    `costing.money.review.enforce_budget` from the unrounded total), the sentence worded like plan's refusal."""
    out = []
    for item in items:
        head = item.head
        if head is None or (head.get("budget") or {}).get("max_monthly_usd") is None:
            continue
        budget = float(head["budget"]["max_monthly_usd"])
        over = head["budget"]["within"] is False
        t = head["target"]
        what = t.get("offer") or t.get("gpu")
        left_out = [] if head["budget"].get("allow_unpriced") else unpriced(head)
        breach = (
            f"{item.name} ({item.head_source}): projected {_money(head['monthly_usd'])}/month for "
            f"{head['replicas']} replica(s) of {what} exceeds the budget of {_money(budget)} "
            "(budget.max_monthly_usd in the spec)"
            if over
            else f"{item.name} ({item.head_source}): the budget of {_money(budget)} would pass only on a partial "
            f"total: {_money(head['monthly_usd'])}/month leaves out {len(left_out)} part(s) with no dated price "
            f"({'; '.join(left_out)}) (budget.allow_unpriced: true in the spec gates on the priced total)"
            if left_out
            else None
        )
        out.append(
            {
                "name": item.name,
                "head_source": item.head_source,
                "monthly_usd": head["monthly_usd"],
                "max_monthly_usd": budget,
                "within": not over,
                "breach": breach,
            }
        )
    return out


def breaches(totals: dict[str, Any], gates: Gates) -> list[str]:
    """Each gate the head breaches, as one sentence (empty: all pass)."""
    out = []
    head, delta, pct = totals["head_monthly_usd"], totals["delta_monthly_usd"], totals["delta_percent"]
    if gates.max_monthly_usd is not None and head > gates.max_monthly_usd:
        out.append(f"monthly total {_money(head)} exceeds --max-monthly-usd {_money(gates.max_monthly_usd)}")
    if gates.max_increase_usd is not None and delta > gates.max_increase_usd:
        out.append(f"monthly increase {_signed(delta)} exceeds --max-increase-usd {_money(gates.max_increase_usd)}")
    if gates.max_increase_percent is not None and delta > 0:
        if pct is None:
            out.append(
                f"monthly increase {_signed(delta)} from $0 exceeds --max-increase-percent "
                f"{gates.max_increase_percent:g}%"
            )
        elif pct > gates.max_increase_percent:
            out.append(f"monthly increase {pct:+.1f}% exceeds --max-increase-percent {gates.max_increase_percent:g}%")
    return out


def check_gate_values(gates: Gates) -> None:
    """Gate thresholds are finite and not negative (UserError otherwise)."""
    from costing.errors import UserError

    for flag, value in (
        ("--max-monthly-usd", gates.max_monthly_usd),
        ("--max-increase-usd", gates.max_increase_usd),
        ("--max-increase-percent", gates.max_increase_percent),
    ):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UserError(f"{flag} must be a finite number >= 0 (got {value})", f"e.g. {flag} 100")


# --- rendering -------------------------------------------------------------------------------------------------


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def _signed(x: float | None, unit: str = "$") -> str:
    if x is None:
        return ""
    if abs(x) < 0.005:
        return f"{unit}0" if unit else "0"
    sign = "+" if x > 0 else "-"
    return f"{sign}{unit}{abs(x):,.2f}" if unit else f"{sign}{abs(x):,g}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"({x:+.1f}%)"


def _count(x: float | None) -> str:
    if x is None:
        return "never"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:,.1f}{unit}"
    return f"{x:,.0f}"


def _slo(side: dict | None) -> str:
    if side is None:
        return "-"
    if not side["slo_p90_latency_s"]:
        return "no SLO"
    return f"p90 <= {side['slo_p90_latency_s']:g} s {'met' if side['slo_met'] else 'MISSED'}"


def _be(side: dict | None, api: str) -> str:
    if side is None or api not in side["breakeven"]:
        return "-"
    b = side["breakeven"][api]
    who = "self-host" if b["cheaper"] == "selfhost" else "API"
    per_day = b["breakeven_requests_per_day"]
    even = "never breaks even" if per_day is None else f"even at {_count(per_day)} req/d"
    return f"{_money(b['api_monthly_usd'])}/mo, {who} cheaper ({even})"


def rows(p: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, base, head, delta) for one deployment."""
    b, h, d = p["base"], p["head"], p["delta"]

    def get(side, key, fmt=str):
        return "-" if side is None or side.get(key) is None else fmt(side[key])

    def same(key):
        return "" if b is None or h is None or b.get(key) == h.get(key) else "changed"

    out = [
        ("Model", get(b, "model"), get(h, "model"), same("model")),
        ("Offer", _text(b, "offer", _offer_text), _text(h, "offer", _offer_text),
         same("offer") or same("kubernetes")),
        ("GPUs", get(b, "gpus"), get(h, "gpus"), same("gpus")),
        ("Pricing", get(b, "pricing"), get(h, "pricing"), same("pricing")),
        ("Requests/day", get(b, "requests_per_day", "{:,.0f}".format), get(h, "requests_per_day", "{:,.0f}".format),
         _pct(_percent(b and b["requests_per_day"], h and h["requests_per_day"]))),
        ("Replicas", _text(b, "replicas", _replicas_text), _text(h, "replicas", _replicas_text),
         _signed(d["replicas"], "") if d["replicas"] else ""),
        ("Monthly", get(b, "monthly_usd", _money), get(h, "monthly_usd", _money),
         f"{_signed(d['monthly_usd'])} {_pct(d['monthly_percent'])}".strip()),
        ("$/1M output tokens", get(b, "usd_per_million_output_tokens", _money),
         get(h, "usd_per_million_output_tokens", _money), _signed(d["usd_per_million_output_tokens"])),
        ("SLO", _slo(b), _slo(h), "" if _slo(b) == _slo(h) or b is None or h is None else "changed"),
        ("Cheapest managed endpoint", get(b, "cheapest_managed"), get(h, "cheapest_managed"), same("cheapest_managed")),
        ("Cheapest of the three", get(b, "cheapest_kind"), get(h, "cheapest_kind"), same("cheapest_kind")),
    ]  # fmt: skip
    for api, api_delta in d["api_monthly_usd"].items():
        out.append((f"vs {api}", _be(b, api), _be(h, api), f"API {_signed(api_delta)}" if api_delta else ""))
    return out


def _text(side: dict[str, Any] | None, key: str, fmt) -> str:
    """A cell made from the whole side (`fmt(side)`), "-" where the side or its `key` is missing."""
    return "-" if side is None or side.get(key) is None else fmt(side)


HEADERS = ("", "base", "head", "delta")


def summary_line(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    n = len(doc["projects"])
    changed = sum(p["status"] != "unchanged" for p in doc["projects"])
    pct = "" if t["delta_percent"] is None else f", {t['delta_percent']:+.1f}%"
    return (
        f"{n} deployment(s), {changed} changed: monthly {_money(t['base_monthly_usd'])} → "
        f"{_money(t['head_monthly_usd'])} ({_signed(t['delta_monthly_usd'])}{pct})"
    )


def _gate_lines(doc: dict[str, Any]) -> list[str]:
    g = doc["gates"]
    set_gates = [k for k in ("max_monthly_usd", "max_increase_usd", "max_increase_percent") if g[k] is not None]
    budgets = g.get("spec_budgets") or []
    if not set_gates and not budgets:
        return []
    if not g["breaches"]:
        return [
            "budget gates passed: "
            + ", ".join(
                [f"--{k.replace('_', '-')} {g[k]:g}" for k in set_gates]
                + [f"{b['name']} budget {_money(b['max_monthly_usd'])}" for b in budgets]
            )
        ]
    return [f"BUDGET GATE FAILED: {b}" for b in g["breaches"]]


def _title(p: dict[str, Any]) -> str:
    src = p["head_source"] or p["base_source"]
    return f"{p['name']} ({src}, {p['status']})"


def render_table(doc: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, file=io.StringIO(), width=160, force_terminal=False, color_system=None)
    console.print("selfhost cost diff", soft_wrap=True)
    for p in doc["projects"]:
        table = Table(title=_title(p), title_justify="left")
        for h in HEADERS:
            table.add_column(h, justify="right" if h == "delta" else "left", overflow="fold", no_wrap=not h)
        for row in rows(p):
            table.add_row(*row)
        console.print(table)
    console.print(summary_line(doc), soft_wrap=True)
    for line in _gate_lines(doc):
        console.print(line, soft_wrap=True)
    return console.export_text()


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: dict[str, Any]) -> str:
    lines = [COMMENT_MARKER, "### selfhost cost diff", "", f"**{summary_line(doc)}**", ""]
    for line in _gate_lines(doc):
        lines += [f"> {'❌' if 'FAILED' in line else '✅'} {line}", ""]
    for p in doc["projects"]:
        lines += [f"#### {_md(_title(p))}", "", "| | base | head | delta |", "|---|---|---|---:|"]
        for what, base, head, delta in rows(p):
            lines.append(f"| **{_md(what)}** | {_md(base)} | {_md(head)} | {_md(delta)} |")
        lines.append("")
    lines.append(
        "<sub>Projected by `selfhost diff` from each spec's cost review (`selfhost plan --format json` shows every "
        "price's source and date). API $/mo: what the same traffic would cost on that API.</sub>"
    )
    return "\n".join(lines) + "\n"


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(doc)
    return render_table(doc)
