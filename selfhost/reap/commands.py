"""`selfhost reap`: tear down this owner's deployments past their `expires-at` mark (issues 14, 21).

Only what is managed-by selfhost AND of this owner (--owner, else $GITHUB_REPOSITORY) AND expired is touched;
`--preview NAME` also tears down that preview of this owner before its time (a pull request closed). Anything else
is listed as skipped with the reason under --dry-run / --all, never touched. Each cloud is on its own: one that
cannot be reached or listed is one line on stderr, the others are still reaped, and the exit code is 1. The table
(or markdown, for the PR comment) is the cost receipt: hours up x the hourly price.
"""

from __future__ import annotations

import io
import json
import math
import sys

import typer

from costing.errors import UserError


def _receipt_rows(results, now):
    rows = []
    for d, action, why in results:
        hours = d.hours(now)
        cost = None if hours is None or d.hourly_usd is None else hours * d.hourly_usd
        rows.append(
            {
                "cloud": d.cloud,
                "kind": d.kind,
                "name": d.name,
                "id": d.id,
                "where": d.where,
                "state": d.state,
                "expires_at": d.expires_at.isoformat() if d.expires_at else d.marks.get("expires-at"),
                "preview": d.preview,
                "owner": d.marks.get("owner") or d.marks.get("owner-hash"),
                "action": action,
                "why": why,
                "hours": None if hours is None else round(hours, 2),
                "hourly_usd": d.hourly_usd,
                "cost_usd": None if cost is None else round(cost, 2),
            }
        )
    return rows


def _money(x):
    return "-" if x is None else f"${x:,.2f}"


def render(rows: list[dict], fmt: str) -> str:
    total = sum(r["cost_usd"] or 0 for r in rows if r["action"] in ("terminated", "would terminate"))
    if fmt == "json":
        return json.dumps(
            {"schema": "selfhost.reap/v1", "deployments": rows, "total_cost_usd": round(total, 2)}, indent=2
        )
    headers = ("cloud", "kind", "name", "where", "expires at", "action", "why", "hours", "$/h", "cost")
    cells = [
        (
            r["cloud"], r["kind"], r["name"], r["where"], r["expires_at"] or "-", r["action"], r["why"],
            "-" if r["hours"] is None else f"{r['hours']:,.2f}", _money(r["hourly_usd"]), _money(r["cost_usd"]),
        )
        for r in rows
    ]  # fmt: skip
    if fmt == "markdown":
        lines = ["<!-- selfhost-reap-receipt -->", "### selfhost: preview torn down", ""]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines += ["", f"**Total: {_money(total)}** (hours up x hourly price)"]
        return "\n".join(lines)
    if not rows:
        return "nothing to tear down: none of this owner's deployments is past its expires-at"
    from rich.console import Console
    from rich.table import Table

    table = Table(title="this owner's deployments (and what carries the marks but was skipped)", title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in ("hours", "$/h", "cost") else "left")
    for row in cells:
        table.add_row(*row)
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    console.print(f"total torn down: {_money(total)}")
    return console.export_text().rstrip()


def register(app: typer.Typer) -> None:
    @app.command()
    def reap(
        cloud: list[str] | None = typer.Option(None, "--cloud", help="aws | gcp | runpod | sky (repeat; default all)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list what would go and what is skipped, touch nothing"),
        preview: str | None = typer.Option(None, "--preview", help="also tear down this preview now (PR closed)"),
        owner: str | None = typer.Option(
            None, "--owner", help="whose deployments (default $GITHUB_REPOSITORY); nothing else is ever touched"
        ),
        region: list[str] | None = typer.Option(
            None, "--region", help="AWS region (repeat); default every region enabled in the account"
        ),
        gcp_project: str | None = typer.Option(None, "--gcp-project", help="default $GOOGLE_CLOUD_PROJECT"),
        hourly_usd: float | None = typer.Option(
            None, "--hourly-usd", help="price for the receipt where none is tagged"
        ),
        fmt: str = typer.Option("table", "--format", help="table | json | markdown (the cost receipt)"),
        show_all: bool = typer.Option(False, "--all", help="also list what was skipped, and why"),
    ) -> None:
        """Tear down this owner's deployments past their expires-at mark; never anything else."""
        from selfhost.reap import ttl
        from selfhost.reap.clouds import CLOUDS, reaper

        if fmt not in ("table", "json", "markdown"):
            raise UserError(f"unknown --format {fmt}", "use table, json or markdown")
        if hourly_usd is not None and (not math.isfinite(hourly_usd) or hourly_usd < 0):
            raise UserError(f"--hourly-usd {hourly_usd} is not a price", "e.g. --hourly-usd 0.39")
        clouds = list(dict.fromkeys(cloud or CLOUDS))
        for c in clouds:
            if c not in CLOUDS:
                raise UserError(f"unknown cloud '{c}'", f"use --cloud with one of: {', '.join(CLOUDS)}")
        who = ttl.resolve_owner(owner)
        now = ttl.now_utc()
        results, failures = [], 0

        def failed(c: str, what: str, err: BaseException) -> None:
            text = err.line().removeprefix("error: ") if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            print(f"error: {c}: {what}: {' '.join(text.split())[:400]}", file=sys.stderr)

        for c in clouds:
            try:
                r = reaper(c, regions=region, gcp_project=gcp_project, hourly_usd=hourly_usd)
            except Exception as err:  # noqa: BLE001 - one cloud must not stop the others
                if cloud:  # asked for by name: a failure
                    failures += 1
                    failed(c, "not reaped", err)
                else:
                    problem = err.problem if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
                    print(f"skipping {c}: {' '.join(str(problem).split())[:400]}", file=sys.stderr)
                continue
            try:
                found = r.list_marked()
            except Exception as err:  # noqa: BLE001
                failures += 1
                failed(c, "listing failed, nothing reaped there", err)
                continue
            due = []
            for d in found:
                go, why = ttl.decide(d.marks, owner=who, preview=preview, now=now)
                if why.startswith("malformed"):
                    print(f"warning: {c} {d.kind} {d.name}: {why}, kept (the kit writes e.g. 20261130t0900z)",
                          file=sys.stderr)  # fmt: skip
                if go:
                    due.append((d, why))
                elif dry_run or show_all:
                    results.append((d, "skipped", why))
            for d, why in sorted(due, key=lambda item: item[0].order):  # dependency order
                if dry_run:
                    results.append((d, "would terminate", why))
                    continue
                try:
                    r.terminate(d)
                    results.append((d, "terminated", why))
                except Exception as err:  # noqa: BLE001 - one failure must not stop the others
                    failures += 1
                    failed(c, f"tearing down {d.kind} {d.name} failed", err)
                    results.append((d, "FAILED", why))
        print(render(_receipt_rows(results, now), fmt))
        if failures:
            raise typer.Exit(1)


def register_ttl(app: typer.Typer) -> None:
    @app.command("ttl")
    def ttl_command(
        ttl_text: str = typer.Option(..., "--ttl", help="time to live: 90m, 8h, 3d (5m..90d)"),
        name: str = typer.Option(..., "--name", help="deployment or preview name, e.g. pr-12"),
        owner: str | None = typer.Option(None, "--owner", help="whose deployment (default $GITHUB_REPOSITORY)"),
        hourly_usd: float | None = typer.Option(None, "--hourly-usd", help="recorded for the cost receipt"),
        fmt: str = typer.Option("json", "--format", help="json, or github (key=value lines for $GITHUB_OUTPUT)"),
    ) -> None:
        """The marks for a new deployment: owner and expires-at as AWS tags / GCP labels, RunPod env, the SkyPilot
        name, and SkyPilot's autostop (the minutes to the same expiry: never before it)."""
        from selfhost.reap import ttl

        if fmt not in ("json", "github"):
            raise UserError(f"unknown --format {fmt}", "use json or github")
        who = ttl.resolve_owner(owner)
        now = ttl.now_utc()
        expiry = ttl.expires_at(ttl_text, now)
        tags = ttl.ttl_tags(None, expires=expiry, owner=who, preview=name, hourly_usd=hourly_usd)
        out = {
            "expires_at": expiry.isoformat(),
            "owner": who,
            "name": ttl.named(name, expiry, who),
            "tags": tags,
            "runpod_env": ttl.runpod_env(tags),
            "autostop_minutes": ttl.autostop_minutes(expiry, now),
        }
        if fmt == "json":
            print(json.dumps(out, indent=2))
            return
        print(f"name={out['name']}\nexpires_at={out['expires_at']}\nautostop_minutes={out['autostop_minutes']}")
        print(f"tags={json.dumps(tags, separators=(',', ':'))}")
