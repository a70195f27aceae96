"""`selfhost prices refresh`: each cloud's own pricing API → a dated snapshot in the user's cache folder."""

from __future__ import annotations

import typer

from costing.errors import UserError

CLOUDS = ("aws", "gcp", "runpod")
DEFAULT_REGIONS = {
    "aws": ["us-east-1", "us-west-2", "eu-west-1"],
    "gcp": ["us-central1", "us-east4", "europe-west4"],
    "runpod": ["US", "CA", "CZ", "FR", "NL", "RO", "SE", "IS", "NO"],  # SkyPilot's RunPod regions (countries)
}


def _offers(cloud: str):
    from costing.data.catalog import catalog

    return [o for o in catalog().offers.values() if o.cloud == cloud]


def _refresh_cloud(cloud: str, regions: list[str], retrieved, tick) -> list[dict]:
    if cloud == "aws":
        from selfhost.prices import aws_pricing

        types = sorted({o.instance_type for o in _offers("aws")})
        return aws_pricing.refresh(types, regions, retrieved, tick)
    if cloud == "gcp":
        from selfhost.prices import gcp_billing

        machines = sorted({(o.instance_type, o.vcpus, float(o.ram_gb), o.gpus, o.gpu) for o in _offers("gcp")})
        rows = gcp_billing.refresh(machines, regions, retrieved)
        tick()
        return rows
    from selfhost.prices import runpod_prices

    pods = sorted({(o.instance_type, o.gpu, o.gpus, o.cloud_type or "SECURE") for o in _offers("runpod")})
    return runpod_prices.refresh(pods, regions, retrieved, tick)


def _steps(cloud: str, regions: list[str]) -> int:
    if cloud == "aws":
        return len({o.instance_type for o in _offers("aws")}) * len(regions)
    if cloud == "gcp":
        return 1
    return len(_offers("runpod"))


def refresh(clouds: list[str], regions: list[str], offline: bool) -> int:
    """Refresh each cloud in turn; a cloud's failure is one line and the others still refresh. Exit 1 if any failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from selfhost.prices import managed_prices, snapshot
    from selfhost.prices.aws_pricing import CloudFailure

    err = Console(stderr=True)
    retrieved = snapshot.now()
    if offline:
        path = snapshot.write_shipped(retrieved)
        err.print(f"offline: every command now uses the shipped prices (written {path})")
        return 0
    rows: list[dict] = []
    failed: list[str] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as progress:
        for cloud in clouds:
            wanted = regions or DEFAULT_REGIONS[cloud]
            task = progress.add_task(f"{cloud} ({', '.join(wanted)})", total=_steps(cloud, wanted))
            try:
                got = _refresh_cloud(cloud, wanted, retrieved, lambda t=task: progress.advance(t))
                got += managed_prices.refresh_managed(cloud, wanted, retrieved)  # SageMaker, Vertex AI
            except CloudFailure as failure:
                failed.append(cloud)
                progress.console.print(f"error: {cloud}: {failure}", soft_wrap=True)
                continue
            except Exception as exc:  # noqa: BLE001 - one cloud's surprise must not stop the others or show a traceback
                failed.append(cloud)
                detail = " ".join(str(exc).split())[:200]
                progress.console.print(f"error: {cloud}: unexpected {type(exc).__name__}: {detail}", soft_wrap=True)
                continue
            progress.update(task, completed=progress.tasks[task].total)
            rows += got
            progress.console.print(f"{cloud}: {len(got)} prices")
    if rows:
        path = snapshot.write(rows, retrieved)
        err.print(f"snapshot written: {path} ({len(rows)} prices, retrieved {retrieved.isoformat()})")
    else:
        err.print("no prices retrieved; the previous snapshot stays in use")
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    @app.command("refresh")
    def refresh_cmd(
        cloud: list[str] = typer.Option([], "--cloud", help="aws | gcp | runpod (repeat; default: all three)"),
        region: list[str] = typer.Option([], "--region", help="region to price (repeat; default: the usual three)"),
        offline: bool = typer.Option(False, "--offline", help="no network: use the shipped snapshot from now on"),
    ) -> None:
        """Refresh prices from each cloud's own API into a dated snapshot every command prefers."""
        for c in cloud:
            if c not in CLOUDS:
                raise UserError(f"unknown cloud '{c}'", f"use --cloud with one of: {', '.join(CLOUDS)}")
        if region and len(cloud) != 1 and not offline:
            raise UserError("--region names regions of one cloud", "pass one --cloud with --region")
        raise typer.Exit(refresh(list(cloud) or list(CLOUDS), list(region), offline))
