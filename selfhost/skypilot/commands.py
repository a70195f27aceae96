"""`selfhost render sky` and `selfhost launch sky` (issue 3).

Light at import (typer only): the renderer needs PyYAML, and SkyPilot is imported only by a real
launch (to validate the YAML with its own parser before calling `sky`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from costing.errors import UserError
from selfhost.spec_options import spec_options

# The spec flags both commands take (costing.data.spec.SPEC_KEYS); --spot/--on-demand and --service/--task are
# SkyPilot's own spelling of `pricing` and `service`, and --gpu takes a list (any_of).
SKY_FLAGS = (
    "model",
    "gpu",
    "gpus",
    "cloud",
    "offer",
    "region",
    "nodes",
    "precision",
    "replicas",
    "name",
    "requests_per_day",
    "input_tokens",
    "output_tokens",
    "peak_to_mean",
    "p90_latency_s",
    "weights_store",
    "tls_keyfile",
    "tls_certfile",
    "allow_plain_http",
)
SKY_HELP = {"gpu": "A40, A10G, L4, A100, ...; A40,A10G,L4 renders any_of"}


def _overrides(*, gpu: str | None, spot: bool | None, **flags: Any) -> dict[str, Any]:
    """Flags as spec overrides through the one declared mapping (costing.data.spec.SPEC_KEYS; None = not given).

    Two flags are SkyPilot's own: `--gpu A40,A10G,L4` becomes an any_of, `--spot/--on-demand` the pricing."""
    from costing.data.spec import overrides_from_flags

    gpu_list = [g.strip() for g in gpu.split(",") if g.strip()] if gpu else []
    pricing = None if spot is None else ("spot" if spot else "on-demand")
    out = overrides_from_flags(**flags, pricing=pricing, gpu=gpu_list[0] if len(gpu_list) == 1 else None)
    if len(gpu_list) > 1:
        candidate = {k: v for k, v in {"cloud": flags.get("cloud"), "gpus": flags.get("gpus")}.items() if v is not None}
        out.setdefault("sky", {})["any_of"] = [{"gpu": g, **candidate} for g in gpu_list]
    out.setdefault("target", {})
    return out


def _load(spec_file: Path | None, overrides: dict[str, Any]):
    from costing.data.spec import load_spec
    from selfhost.skypilot.render import check_name

    if overrides.get("sky", {}).get("any_of"):  # --gpu A,B,C replaces the spec file's placement
        for key in ("gpu", "offer", "cloud"):
            overrides["target"].pop(key, None)
    spec = load_spec(spec_file, **overrides)
    check_name(spec.name)  # a name is data (SkyPilot's name rule), never a path
    return spec


def _check_out_file(out: Path) -> None:
    """`render sky --out FILE`: a file path in an existing folder (checked before anything is written)."""
    if out.is_dir():
        raise UserError(f"--out '{out}' is a folder", f"give a file path, e.g. --out {out / 'task.yaml'}")
    if not out.parent.is_dir():
        raise UserError(
            f"--out folder '{out.parent}' does not exist",
            f"create it first (mkdir -p {out.parent}) or pick another path",
        )


def _write_out(out: Path, text: str) -> None:
    try:
        out.write_text(text)
    except OSError as err:
        raise UserError(f"cannot write --out '{out}' ({err.strerror})", "pick a path you can write") from None


def register(render_app: typer.Typer, launch_app: typer.Typer) -> None:
    """Add the SkyPilot commands to the render and launch groups."""

    @render_app.command("sky")
    @spec_options(*SKY_FLAGS, help=SKY_HELP)
    def render_sky(
        flags: dict[str, Any],
        spec_file: Path | None = typer.Option(None, "--spec", help="YAML deployment spec (flags override it)"),
        spot: bool | None = typer.Option(None, "--spot/--on-demand", help="spot instances (aws, gcp)"),
        service: bool | None = typer.Option(None, "--service/--task", help="SkyServe service instead of a dev cluster"),
        out: Path | None = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
        autostop_minutes: int | None = typer.Option(
            None, "--autostop-minutes", help="dev cluster: torn down this long after launch (a preview: `selfhost ttl`)"
        ),
        labels: str | None = typer.Option(
            None, "--labels", help="JSON labels for the VMs: the owner and expiry marks (`selfhost ttl`'s tags)"
        ),
    ) -> None:
        """Render a SkyPilot task (or SkyServe service) YAML from the spec: offer, fit and `vllm serve` line."""
        from selfhost.skypilot.render import check_labels, render_yaml

        marks = check_labels(labels) if labels is not None else None
        if out:
            _check_out_file(out)
        spec = _load(spec_file, _overrides(spot=spot, service=service, **flags))
        text = render_yaml(
            spec, source=str(spec_file) if spec_file else None, autostop_minutes=autostop_minutes, labels=marks
        )
        if out:
            _write_out(out, text)
            typer.echo(f"wrote {out}", err=True)
        else:
            typer.echo(text, nl=False)

    @launch_app.command("sky")
    @spec_options(*SKY_FLAGS, help=SKY_HELP)
    def launch_sky(
        flags: dict[str, Any],
        file: Path | None = typer.Argument(None, help="a spec file, or a YAML `selfhost render sky` wrote"),
        spot: bool | None = typer.Option(None, "--spot/--on-demand", help="spot instances (aws, gcp)"),
        service: bool | None = typer.Option(None, "--service/--task", help="`sky serve up` instead of `sky launch`"),
        max_monthly_usd: float | None = typer.Option(None, "--max-monthly-usd", help="budget: refuse when over"),
        allow_unpriced: bool = typer.Option(
            False, "--allow-unpriced", help="budget: gate on the priced total though rows are not priced (listed)"
        ),
        cluster: str | None = typer.Option(None, "--cluster", "-c", help="cluster / service name"),
        minutes: int = typer.Option(
            120, "--minutes", "-i", min=1, help="dev cluster: torn down this long after launch"
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="review, SkyPilot's parser and optimizer on the YAML, the command; launch nothing"
        ),
        out: Path | None = typer.Option(
            None, "--out", help="folder for the rendered YAML (default: a new temporary folder)"
        ),
        secret_file: Path | None = typer.Option(
            None, "--secret-file", help="dotenv file (chmod 600) with HF_TOKEN and VLLM_API_KEY, passed to sky"
        ),
        secrets_from_store: bool = typer.Option(
            False, "--secrets-from-store", help="SkyPilot's secret store resolves the secrets (dev clusters only)"
        ),
        yes: bool = typer.Option(False, "--yes", "-y", help="pass --yes to sky (skip its confirmation)"),
    ) -> None:
        """Cost review first (stops on --max-monthly-usd), then `sky launch` / `sky serve up`."""
        from selfhost.skypilot import launch
        from selfhost.skypilot.render import check_name

        check_name(cluster, "--cluster")
        overrides = _overrides(spot=spot, service=service, **flags)
        rendered: tuple[str, Path] | None = None
        if file is not None and not file.is_file():
            raise UserError(f"file '{file}' not found", "give a spec file or a YAML from `selfhost render sky`")
        found = launch.spec_from_rendered(file) if file is not None else None
        if found and file is not None:
            spec, text = found
            if _given(overrides):
                raise UserError(
                    f"'{file}' is a rendered task: flags cannot change it",
                    "re-render it with `selfhost render sky --spec SPEC ...`, or launch the spec file",
                )
            launch.check_unchanged(spec, text, file)
            rendered = (text, file)
        else:
            spec = _load(file, overrides)
        if secret_file is not None and secrets_from_store:
            raise UserError("--secret-file and --secrets-from-store are two ways to pass the secrets", "give one")
        source = "file" if secret_file is not None else ("store" if secrets_from_store else "env")
        if out is not None and out.exists() and not out.is_dir():
            raise UserError(f"--out '{out}' is a file", "give a folder (it is created if missing)")
        plan = launch.plan_launch(
            spec,
            rendered=rendered,
            cluster=cluster,
            minutes=minutes,
            yes=yes,
            max_monthly_usd=max_monthly_usd,
            allow_unpriced=True if allow_unpriced else None,  # else the spec's budget.allow_unpriced
            out_dir=out,
            secret_source=source,
            secret_file=secret_file,
        )
        code = launch.execute(plan, dry_run=dry_run, echo=typer.echo)
        if code:
            raise typer.Exit(code)


def _given(overrides: dict[str, Any]) -> bool:
    def walk(v: Any) -> bool:
        if isinstance(v, dict):
            return any(walk(x) for x in v.values())
        return v is not None

    return walk(overrides)
