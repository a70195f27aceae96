"""The bill as a rich table (like the review's), JSON or Markdown."""

from __future__ import annotations

import json
from typing import Any

from selfhost.bill.price import Bill


def bill_dict(bill: Bill) -> dict[str, Any]:
    return {
        "source": bill.source,
        "monthly_usd": round(bill.monthly_usd, 2),
        "complete": not bill.unpriced,
        "lines": [
            {
                "resource": line.resource,
                "item": line.item,
                "pricing": line.pricing,
                "units": round(line.units, 4),
                "hours": round(line.hours, 2),
                "usd_per_hour": round(line.usd_per_hour, 6),
                "monthly_usd": round(line.usd, 2),
                "source": line.source,
            }
            for line in bill.lines
        ],
        "not_priced": [{"resource": u.resource, "why": u.why} for u in bill.unpriced],
        "no_charge_of_their_own": sorted(bill.free),
        "notes": list(bill.notes),
    }


def _short(resource: str) -> str:
    typ, _, name = resource.rpartition("::")
    return f"{typ.rsplit(':', 1)[-1]} {name}" if typ else name


def _rows(bill: Bill) -> list[tuple[str, ...]]:
    return [
        (
            _short(line.resource),
            line.item,
            line.pricing,
            f"{line.units:,.2f}",
            f"{line.hours:,.0f}",
            f"${line.usd_per_hour:,.4f}",
            f"${line.usd:,.2f}",
        )
        for line in bill.lines
    ]


HEADERS = ("Resource", "Item", "Pricing", "Units", "Hours", "$/h", "$/month")


def _footer(bill: Bill) -> list[str]:
    out = [f"total ${bill.monthly_usd:,.2f}/month" + (" (priced resources only)" if bill.unpriced else "")]
    if bill.unpriced:
        out.append(f"not priced ({len(bill.unpriced)}, not in the total):")
        out += [f"  - {_short(u.resource)}: {u.why}" for u in bill.unpriced]
    if bill.free:
        out.append(f"{len(bill.free)} resource(s) carry no charge of their own (configuration, IAM, templates)")
    out += [f"note: {n}" for n in bill.notes]
    return out


def render_table(bill: Bill) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"selfhost bill: {bill.source}", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("Units", "Hours", "$/h", "$/month") else "left")
    for row in _rows(bill):
        table.add_row(*row)
    console = Console(width=160, record=True, color_system=None, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
        for line in _footer(bill):
            console.print(line, highlight=False, markup=False)
    return "\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n"


def render_markdown(bill: Bill) -> str:
    lines = [f"### selfhost bill: `{bill.source}`", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(bill)]
    lines += ["", *(f"- {x.strip()}" if not x.startswith("  - ") else "  " + x.strip() for x in _footer(bill))]
    return "\n".join(lines) + "\n"


def render(bill: Bill, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(bill_dict(bill), indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(bill)
    return render_table(bill)
