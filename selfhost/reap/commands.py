"""`selfhost reap`: tear down deployments past their `expires-at` mark (issue 14). Never touches one without it.

`--preview NAME` also tears down that preview's deployments before their time (a pull request closed); the table
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
    for d, action in results:
        hours = d.hours(now)
        cost = None if hours is None or d.hourly_usd is None else hours * d.hourly_usd
        rows.append(
            {
                "cloud": d.cloud,
                "name": d.name,
                "id": d.id,
                "where": d.where,
                "state": d.state,
                "expires_at": d.expires_at.isoformat() if d.expires_at else None,
                "preview": d.preview,
                "action": action,
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
    headers = ("cloud", "name", "where", "expires at", "action", "hours", "$/h", "cost")
    cells = [
        (
            r["cloud"], r["name"], r["where"], r["expires_at"] or "-", r["action"],
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
        return "nothing to tear down: no marked deployment is past its expires-at"
    from rich.console import Console
    from rich.table import Table

    table = Table(title="deployments with an expires-at mark", title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in ("hours", "$/h", "cost") else "left")
    for row in cells:
        table.add_row(*row)
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    console.print(f"total torn down: {_money(total)}")
    return console.export_text().rstrip()


def register(app: typer.Typer) -> None:
    @app.command()
    def reap(
        cloud: list[str] | None = typer.Option(None, "--cloud", help="aws | gcp | runpod | sky (repeat; default all)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list what would be torn down, touch nothing"),
        preview: str | None = typer.Option(None, "--preview", help="also tear down this preview now (PR closed)"),
        region: list[str] | None = typer.Option(None, "--region", help="AWS region (repeat); default $AWS_REGION"),
        gcp_project: str | None = typer.Option(None, "--gcp-project", help="default $GOOGLE_CLOUD_PROJECT"),
        hourly_usd: float | None = typer.Option(
            None, "--hourly-usd", help="price for the receipt where none is tagged"
        ),
        fmt: str = typer.Option("table", "--format", help="table | json | markdown (the cost receipt)"),
        show_all: bool = typer.Option(False, "--all", help="also list marked deployments not yet due (kept)"),
    ) -> None:
        """Tear down deployments past their expires-at mark; never anything without the mark."""
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
        reapers = []
        for c in clouds:
            try:
                reapers.append(reaper(c, regions=region, gcp_project=gcp_project, hourly_usd=hourly_usd))
            except UserError as err:
                if cloud:  # asked for by name: refuse
                    raise
                print(f"skipping {c}: {err.problem}", file=sys.stderr)
        now = ttl.now_utc()
        results, failures = [], 0
        for r in reapers:
            for d in r.list_marked():
                due = (d.expires_at is not None and d.expires_at <= now) or (
                    preview is not None and d.preview == preview
                )
                if not due:
                    if show_all:
                        results.append((d, "kept"))
                    continue
                if dry_run:
                    results.append((d, "would terminate"))
                    continue
                try:
                    r.terminate(d)
                    results.append((d, "terminated"))
                except Exception as err:  # noqa: BLE001 - one failure must not stop the others
                    failures += 1
                    print(f"error: tearing down {d.cloud} {d.name} failed: {err}", file=sys.stderr)
                    results.append((d, "FAILED"))
        print(render(_receipt_rows(results, now), fmt))
        if failures:
            raise typer.Exit(1)


def register_ttl(app: typer.Typer) -> None:
    @app.command("ttl")
    def ttl_command(
        ttl_text: str = typer.Option(..., "--ttl", help="time to live: 90m, 8h, 3d (5m..90d)"),
        name: str = typer.Option(..., "--name", help="deployment or preview name, e.g. pr-12"),
        hourly_usd: float | None = typer.Option(None, "--hourly-usd", help="recorded for the cost receipt"),
        fmt: str = typer.Option("json", "--format", help="json, or github (key=value lines for $GITHUB_OUTPUT)"),
    ) -> None:
        """The expires-at marks for a new deployment: AWS tags / GCP labels, RunPod env, SkyPilot name, autostop."""
        from selfhost.reap import ttl

        if fmt not in ("json", "github"):
            raise UserError(f"unknown --format {fmt}", "use json or github")
        tags = ttl.ttl_tags(ttl_text, preview=name, hourly_usd=hourly_usd)
        expiry = ttl.parse_expiry(tags[ttl.EXPIRES_KEY])
        if expiry is None:  # cannot happen: ttl_tags formats it
            raise UserError("internal: expiry not readable", "report this")
        out = {
            "expires_at": expiry.isoformat(),
            "name": ttl.named(name, expiry),
            "tags": tags,
            "runpod_env": ttl.runpod_env(tags),
            "autostop_minutes": ttl.autostop_minutes(ttl_text),
        }
        if fmt == "json":
            print(json.dumps(out, indent=2))
            return
        print(f"name={out['name']}\nexpires_at={out['expires_at']}\nautostop_minutes={out['autostop_minutes']}")
        print(f"tags={json.dumps(tags, separators=(',', ':'))}")
