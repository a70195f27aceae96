"""`selfhost init DIR` (issue 15)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `init` to the top-level app."""

    @app.command("init")
    def init(
        directory: Path = typer.Argument(..., help="the deployment folder to create (new, or without these files)"),
        cloud: str = typer.Option(
            "runpod", "--cloud", help="aws, gcp, runpod or kubernetes (a Pulumi project) or sky (SkyPilot)"
        ),
        cluster: str | None = typer.Option(
            None, "--cluster", help="kubernetes: eks (default) or gke, the kind of the team's cluster"
        ),
        model: str = typer.Option("llama-3.1-8b", "--model", help="a model of the catalog (`selfhost estimate`)"),
        precision: str = typer.Option("bf16", "--precision", help="bf16, fp8, awq, ..."),
        ci: str | None = typer.Option(
            None, "--ci", help="github: also write the cost-diff and deploy workflows at the git repository's root"
        ),
        kit_wheel: Path | None = typer.Option(
            None,
            "--kit-wheel",
            help="this kit's wheel to commit in vendor/ (default: the one it was installed from, or built from "
            "its clone)",
        ),
        availability: str = typer.Option(
            "standard",
            "--availability",
            help="standard (one replica may run alone) or high (2+ across zones; aws, gcp): the cheapest pricing "
            "(on-demand or spot) that meets it is chosen",
        ),
        domain: str | None = typer.Option(
            None,
            "--domain",
            help="aws, gcp: serve HTTPS for this DNS name (written to Pulumi.dev.yaml); without it `pulumi up` "
            "refuses until you set one or opt in to plain HTTP",
        ),
        virtualenv: Path | None = typer.Option(
            None,
            "--virtualenv",
            help="Pulumi runs the program in this existing environment (with this kit and its pulumi extra) instead of "
            "a venv/ that `pulumi install` makes from requirements.txt",
        ),
    ) -> None:
        """Scaffold a deployment folder: the spec, the Pulumi project or the SkyPilot YAML, CI, a README."""
        from selfhost.scaffold import deployment_repo

        deployment_repo.check_directory_name(directory)
        directory = directory.expanduser().absolute()
        venv = virtualenv.expanduser().absolute() if virtualenv else None
        wheel = kit_wheel.expanduser().absolute() if kit_wheel else None
        if cloud in deployment_repo.CLOUDS:  # an unknown --cloud: files_for's refusal
            deployment_repo.check_cluster(cloud, cluster)
            domain = deployment_repo.check_domain_option(cloud, domain)
            deployment_repo.check_availability(cloud, availability)
        files, choice = deployment_repo.files_for(
            directory,
            cloud,
            model,
            precision,
            ci,
            venv,
            wheel,
            availability=availability,
            domain=domain,
            cluster=cluster,
        )
        deployment_repo.write(files)
        print(
            f"{choice.spec['model']} {choice.spec['precision']} on {choice.offer_id} "
            f"({choice.spec['target']['pricing']}): projected ${choice.monthly_usd:,.2f}/month at the example workload"
        )
        here = Path.cwd()
        for path in files:
            print(f"  wrote {path.relative_to(here) if path.is_relative_to(here) else path}")
        where = directory.relative_to(here) if directory.is_relative_to(here) else directory
        flags = deployment_repo.plan_flags(cloud, choice.offer)
        print(f"next: cd {where}, then follow README.md (first: `selfhost plan --spec selfhost.yaml{flags}`)")
