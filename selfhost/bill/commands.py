"""`selfhost bill FILE`: price what a deployment declares, before it runs.

FILE is `pulumi preview --json` output (any Pulumi program's, `-` for stdin), a SkyPilot task YAML, or
Kubernetes manifests (a multi-document YAML file or a folder of them).
Only the catalog is read: no Pulumi, SkyPilot, Kubernetes or cloud call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from costing.errors import UserError

FORMATS = ("table", "json", "markdown")


def register(app: typer.Typer) -> None:
    @app.command()
    def bill(
        file: str = typer.Argument(
            ...,
            help="`pulumi preview --json` output (- for stdin), a SkyPilot task YAML, or Kubernetes manifests "
            "(a file or a folder)",
        ),
        fmt: str = typer.Option("table", "--format", help="table | json | markdown"),
        max_monthly_usd: float | None = typer.Option(
            None, "--max-monthly-usd", help="exit 2 when the bill is above this (refused while anything is unpriced)"
        ),
        requests_per_day: float | None = typer.Option(None, "--requests-per-day", help="load balancer usage"),
        input_tokens: int | None = typer.Option(None, "--input-tokens", help="per request (load balancer bytes)"),
        output_tokens: int | None = typer.Option(None, "--output-tokens", help="per request (load balancer bytes)"),
        days_per_week: float = typer.Option(7, "--days-per-week", help="days with traffic"),
        peak_hours_share: float | None = typer.Option(
            None, "--peak-hours-share", help="share of running hours a group runs at its max (default: the review's)"
        ),
        zones: str = typer.Option("", "--zones", help="AWS zone IDs of a spot group's subnets, e.g. use1-az1,use1-az4"),
        bucket_gb: float | None = typer.Option(None, "--bucket-gb", help="what each bucket holds, GB"),
        reserved: str | None = typer.Option(
            None, "--reserved", help="reserved-1y | reserved-3y: a reservation you own covers the on-demand capacity"
        ),
        region: str | None = typer.Option(None, "--region", help="when the preview's config names none"),
        allow_unpriced: bool = typer.Option(
            False, "--allow-unpriced", help="gate on the priced total though resources are not priced (listed)"
        ),
        subnet_public_ip: bool = typer.Option(
            True,
            "--subnet-public-ip/--no-subnet-public-ip",
            help="AWS instances not declaring associatePublicIpAddress get one from their subnet (a default VPC's do)",
        ),
    ) -> None:
        """Price every resource a deployment declares (Pulumi preview, SkyPilot task or Kubernetes manifests)."""
        from selfhost.bill.display import render
        from selfhost.bill.price import Usage, bill_preview, gate

        if fmt not in FORMATS:
            raise UserError(f"unknown format '{fmt}'", f"use --format with one of: {', '.join(FORMATS)}")
        usage = Usage(
            requests_per_day=requests_per_day,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            days_per_week=days_per_week,
            zones=tuple(z.strip() for z in zones.split(",") if z.strip()),
            bucket_gb=bucket_gb,
            reserved=reserved,
            region=region,
            subnet_public_ip=subnet_public_ip,
            **({"peak_hours_share": peak_hours_share} if peak_hours_share is not None else {}),
        )
        from selfhost.bill.k8s import bill_manifests, looks_like_manifests

        if file != "-" and looks_like_manifests(Path(file)):
            result = bill_manifests(Path(file), usage)
        elif file.endswith((".yaml", ".yml")):
            from selfhost.bill.sky import bill_task

            result = bill_task(Path(file), usage)
        else:
            from selfhost.bill.declared import parse_preview, read_preview

            if file == "-":
                try:
                    preview = parse_preview(json.loads(sys.stdin.read()), "stdin")
                except json.JSONDecodeError as err:
                    raise UserError(f"stdin is not JSON ({err.msg})", "pipe `pulumi preview --json` into it") from None
            else:
                preview = read_preview(Path(file))
            result = bill_preview(preview, usage)
        typer.echo(render(result, fmt), nl=False)
        gate(result, max_monthly_usd, allow_unpriced)
        if max_monthly_usd is not None and result.unpriced:  # passed on the priced total: say so
            typer.echo(
                f"budget gate on the priced total (--allow-unpriced): {len(result.unpriced)} unpriced item(s) left out",
                err=True,
            )
