"""`selfhost render sky` and `selfhost launch sky` (issue 3).

Light at import (typer only): the renderer needs PyYAML, and SkyPilot is imported only by a real
launch (to validate the YAML with its own parser before calling `sky`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from costing.errors import UserError


def _overrides(*, gpu: str | None, spot: bool | None, **flags: Any) -> dict[str, Any]:
    """Flags as spec overrides through the one declared mapping (costing.spec.SPEC_KEYS; None = not given).

    Two flags are SkyPilot's own: `--gpu A40,A10G,L4` becomes an any_of, `--spot/--on-demand` the pricing."""
    from costing.spec import overrides_from_flags

    gpu_list = [g.strip() for g in gpu.split(",") if g.strip()] if gpu else []
    pricing = None if spot is None else ("spot" if spot else "on-demand")
    out = overrides_from_flags(**flags, pricing=pricing, gpu=gpu_list[0] if len(gpu_list) == 1 else None)
    if len(gpu_list) > 1:
        candidate = {k: v for k, v in {"cloud": flags.get("cloud"), "gpus": flags.get("gpus")}.items() if v is not None}
        out.setdefault("sky", {})["any_of"] = [{"gpu": g, **candidate} for g in gpu_list]
    out.setdefault("target", {})
    return out


def _load(spec_file: Path | None, overrides: dict[str, Any]):
    from costing.spec import load_spec

    if overrides.get("sky", {}).get("any_of"):  # --gpu A,B,C replaces the spec file's placement
        for key in ("gpu", "offer", "cloud"):
            overrides["target"].pop(key, None)
    return load_spec(spec_file, **overrides)


def register(render_app: typer.Typer, launch_app: typer.Typer) -> None:
    """Add the SkyPilot commands to the render and launch groups."""

    @render_app.command("sky")
    def render_sky(
        spec_file: Path | None = typer.Option(None, "--spec", help="YAML deployment spec (flags override it)"),
        model: str | None = typer.Option(None, "--model", help="llama-3.1-8b, meta-llama/Llama-3.1-8B-Instruct, ..."),
        gpu: str | None = typer.Option(None, "--gpu", help="A40, A10G, L4, A100, ...; A40,A10G,L4 renders any_of"),
        gpus: int | None = typer.Option(None, "--gpus", help="GPUs per node; default: fewest that fit"),
        cloud: str | None = typer.Option(None, "--cloud", help="runpod | aws | gcp"),
        offer: str | None = typer.Option(None, "--offer", help="pin an offer, e.g. gcp-g2-standard-8"),
        region: str | None = typer.Option(None, "--region"),
        nodes: int | None = typer.Option(None, "--nodes", help="nodes (pipeline parallel)"),
        precision: str | None = typer.Option(None, "--precision", help="bf16 | fp16 | fp8 | int8 | awq"),
        spot: bool | None = typer.Option(None, "--spot/--on-demand", help="spot instances (aws, gcp)"),
        service: bool | None = typer.Option(None, "--service/--task", help="SkyServe service instead of a dev cluster"),
        replicas: int | None = typer.Option(None, "--replicas", help="fix the replica count"),
        name: str | None = typer.Option(None, "--name", help="task / service name"),
        requests_per_day: float | None = typer.Option(None, "--requests-per-day"),
        input_tokens: int | None = typer.Option(None, "--input-tokens"),
        output_tokens: int | None = typer.Option(None, "--output-tokens"),
        peak_to_mean: float | None = typer.Option(None, "--peak-to-mean"),
        p90_latency_s: float | None = typer.Option(None, "--p90-latency-s"),
        weights_store: str | None = typer.Option(
            None, "--weights-store", help="s3://BUCKET/PREFIX or gs://...: weights filled once, read by every replica"
        ),
        out: Path | None = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
    ) -> None:
        """Render a SkyPilot task (or SkyServe service) YAML from the spec: offer, fit and `vllm serve` line."""
        from selfhost.skypilot.render import render_yaml

        spec = _load(
            spec_file,
            _overrides(
                model=model,
                precision=precision,
                gpu=gpu,
                gpus=gpus,
                cloud=cloud,
                offer=offer,
                region=region,
                nodes=nodes,
                spot=spot,
                replicas=replicas,
                service=service,
                name=name,
                requests_per_day=requests_per_day,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                peak_to_mean=peak_to_mean,
                p90_latency_s=p90_latency_s,
                weights_store=weights_store,
            ),
        )
        text = render_yaml(spec, source=str(spec_file) if spec_file else None)
        if out:
            out.write_text(text)
            typer.echo(f"wrote {out}", err=True)
        else:
            typer.echo(text, nl=False)

    @launch_app.command("sky")
    def launch_sky(
        file: Path | None = typer.Argument(None, help="a spec file, or a YAML `selfhost render sky` wrote"),
        model: str | None = typer.Option(None, "--model"),
        gpu: str | None = typer.Option(None, "--gpu", help="A40, A10G, L4, ...; A40,A10G,L4 for any_of"),
        gpus: int | None = typer.Option(None, "--gpus"),
        cloud: str | None = typer.Option(None, "--cloud", help="runpod | aws | gcp"),
        offer: str | None = typer.Option(None, "--offer"),
        region: str | None = typer.Option(None, "--region"),
        nodes: int | None = typer.Option(None, "--nodes"),
        precision: str | None = typer.Option(None, "--precision"),
        spot: bool | None = typer.Option(None, "--spot/--on-demand"),
        service: bool | None = typer.Option(None, "--service/--task", help="`sky serve up` instead of `sky launch`"),
        replicas: int | None = typer.Option(None, "--replicas"),
        name: str | None = typer.Option(None, "--name"),
        requests_per_day: float | None = typer.Option(None, "--requests-per-day"),
        input_tokens: int | None = typer.Option(None, "--input-tokens"),
        output_tokens: int | None = typer.Option(None, "--output-tokens"),
        peak_to_mean: float | None = typer.Option(None, "--peak-to-mean"),
        p90_latency_s: float | None = typer.Option(None, "--p90-latency-s"),
        weights_store: str | None = typer.Option(None, "--weights-store", help="s3://BUCKET/PREFIX or gs://..."),
        max_monthly_usd: float | None = typer.Option(None, "--max-monthly-usd", help="budget: refuse when over"),
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

        overrides = _overrides(
            model=model,
            precision=precision,
            gpu=gpu,
            gpus=gpus,
            cloud=cloud,
            offer=offer,
            region=region,
            nodes=nodes,
            spot=spot,
            replicas=replicas,
            service=service,
            name=name,
            requests_per_day=requests_per_day,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            peak_to_mean=peak_to_mean,
            p90_latency_s=p90_latency_s,
            weights_store=weights_store,
        )
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
