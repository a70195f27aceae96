"""`selfhost launch sky`: the cost review first, then `sky launch` (dev cluster) or `sky serve up`.

Nothing is launched when the spec is bad, the review is over budget, a secret is missing from the
environment, SkyPilot's own parser rejects the YAML, or with --dry-run. Secrets reach SkyPilot as
`--secret NAME` (it reads the value from the environment): never on a command line or in a file.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from costing.errors import UserError
from costing.spec import DeploymentSpec
from selfhost.skypilot import render

OUT_DIR = Path(".selfhost") / "sky"


@dataclass
class LaunchPlan:
    spec: DeploymentSpec
    review: Any  # costing.review.CostReview
    yaml_path: Path
    yaml_text: str
    command: list[str]
    notes: list[str]

    @property
    def service(self) -> bool:
        return self.spec.sky.service


def spec_from_rendered(path: Path) -> tuple[DeploymentSpec, str] | None:
    """(spec, text) when `path` is a file `selfhost render sky` wrote, else None (a spec file)."""
    text = path.read_text()
    spec = render.embedded_spec(text)
    return None if spec is None else (spec, text)


def check_unchanged(spec: DeploymentSpec, text: str, path: Path) -> None:
    """A rendered file must still be what its spec renders: else what launches is not what was costed."""
    try:
        on_disk = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(
            f"'{path}' is not valid YAML ({str(err).splitlines()[0]})", "re-render it with `selfhost render sky`"
        ) from None
    if on_disk != render.render_task(spec):
        raise UserError(
            f"'{path}' differs from what its spec renders now (edited by hand, or the catalog changed)",
            "re-render it with `selfhost render sky` (or `make templates`)",
        )


def missing_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    given: Mapping[str, str] = os.environ if env is None else env
    return [name for name in render.SECRETS if not given.get(name)]


def validate_with_skypilot(text: str, service: bool) -> None:
    """SkyPilot's own parser (and SkyServe's checks) on the file, before anything is created."""
    import sky
    from sky.serve import serve_utils

    cfg = yaml.safe_load(text)
    try:
        task = sky.Task.from_yaml_config(cfg, secrets_overrides=[(name, "placeholder") for name in render.SECRETS])
        if service:
            serve_utils.validate_service_task(task, pool=False)
    except Exception as err:  # noqa: BLE001 - SkyPilot raises ValueError/jsonschema errors with its own message
        raise UserError(
            f"SkyPilot rejects the rendered YAML: {' '.join(str(err).split())}",
            "report this as a selfhost bug; re-render with `selfhost render sky`",
        ) from None


def sky_executable() -> str:
    """`sky` on PATH (the user's own install and config), else the one next to this Python."""
    local = Path(sys.executable).parent / "sky"
    found = shutil.which("sky") or (str(local) if local.exists() else None)
    if not found:
        raise UserError("the `sky` command is not installed", "pip install 'selfhost[sky]' (skypilot[aws,gcp,runpod])")
    return found


def sky_command(name: str, path: Path, service: bool, minutes: int, yes: bool) -> list[str]:
    secrets = [arg for s in render.SECRETS for arg in ("--secret", s)]
    if service:
        cmd = ["sky", "serve", "up", "-n", name, str(path), *secrets]
    else:
        # A serving job never lets the cluster idle: --wait-for none tears it down `minutes` after launch.
        cmd = ["sky", "launch", "-c", name, "-i", str(minutes), "--down", "--wait-for", "none", str(path), *secrets]
    return cmd + (["--yes"] if yes else [])


def spot_fallback_notes(review: Any, spec: DeploymentSpec, task: dict[str, Any]) -> list[str]:
    """What SkyServe's on-demand fallback may add to a spot review (it bills on-demand prices)."""
    if "service" not in task or spec.target.pricing != "spot" or review.offer is None:
        return []
    on_demand = review.offer.price("on-demand").usd_per_hour * review.fit.nodes
    notes = [
        f"note: while spot is short, on-demand replicas stand in (dynamic_ondemand_fallback) at "
        f"${on_demand:,.2f}/h instead of ${review.hourly_usd:,.2f}/h"
    ]
    base = task["service"]["replica_policy"].get("base_ondemand_fallback_replicas", 0)
    if base:
        notes.append(
            f"note: {base} replica(s) always run on-demand (base_ondemand_fallback_replicas): "
            "priced at the on-demand rate in the review's cost table"
        )
    return notes


def plan_launch(
    spec: DeploymentSpec,
    *,
    rendered: tuple[str, Path] | None = None,
    cluster: str | None = None,
    minutes: int = render.DEV_CLUSTER_MINUTES,
    yes: bool = False,
    out_dir: Path = OUT_DIR,
    max_monthly_usd: float | None = None,
) -> LaunchPlan:
    """Everything up to the launch: review, budget gate, YAML on disk, the exact command."""
    from costing.review import cost_review, enforce_budget

    found = render.choices(spec)
    chosen = render.cheapest(found)
    review = cost_review(chosen.spec, resolved=chosen.resolved)
    enforce_budget(review, max_monthly_usd)
    if rendered:
        text, path = rendered
    else:
        text = render.render_yaml(spec)
        path = out_dir / f"{render.task_name(spec, found)}.yaml"
    name = cluster or render.task_name(spec, found)
    notes = spot_fallback_notes(review, spec, yaml.safe_load(text))
    if len(found) > 1:
        notes.append(
            f"any_of: SkyPilot picks the cheapest candidate, {chosen.offer.id} "
            f"(${chosen.hourly_usd:.4f}/h), which this review prices"
        )
    return LaunchPlan(spec, review, path, text, sky_command(name, path, spec.sky.service, minutes, yes), notes)


def execute(plan: LaunchPlan, *, dry_run: bool, echo=print) -> int:
    """Print the review and the command; unless dry_run, check secrets and SkyPilot's parser, then run it."""
    missing = missing_secrets()
    if missing and not dry_run:  # refuse before printing anything: one line, nothing launched
        raise UserError(
            f"{' and '.join(missing)} not set in the environment; nothing was launched",
            f"export {' '.join(f'{m}=...' for m in missing)} (SkyPilot passes them as secrets)",
        )
    from costing.report import render as render_review

    echo(render_review(plan.review, "table").rstrip("\n"))
    for note in plan.notes:
        echo(note)
    if dry_run:
        if missing:
            echo(f"note: set {', '.join(missing)} in the environment before launching")
        _write(plan)
        echo(f"dry run, nothing launched. The task is in {plan.yaml_path}; the launch would run:")
        echo("  " + shlex.join(plan.command))
        echo(f"then: {endpoint_hint(plan)}")
        return 0
    validate_with_skypilot(plan.yaml_text, plan.service)
    _write(plan)
    cmd = [sky_executable(), *plan.command[1:]]
    echo("$ " + shlex.join(plan.command))
    code = subprocess.run(cmd, check=False).returncode
    if code == 0:
        echo(f"endpoint: {endpoint_hint(plan)}")
    return code


def endpoint_hint(plan: LaunchPlan) -> str:
    """How to reach the server (the key stays in the environment)."""
    name = plan.command[plan.command.index("-n" if plan.service else "-c") + 1]
    where = (
        f"$(sky serve status {name} --endpoint)"
        if plan.service
        else f"$(sky status --endpoint {plan.review.fit.settings.port} {name})"
    )
    model = plan.review.fit.settings.served_model_name
    return (
        f'curl http://{where}/v1/chat/completions -H "Authorization: Bearer $VLLM_API_KEY" '
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{model}", '
        f'"messages": [{{"role": "user", "content": "Hello"}}]}}\''
    )


def _write(plan: LaunchPlan) -> None:
    if not plan.yaml_path.exists() or plan.yaml_path.read_text() != plan.yaml_text:
        plan.yaml_path.parent.mkdir(parents=True, exist_ok=True)
        plan.yaml_path.write_text(plan.yaml_text)
