"""`selfhost launch sky`: the cost review first, then `sky launch` (dev cluster) or `sky serve up`.

Nothing is launched when the spec is bad, the review is over budget, a secret is missing, SkyPilot's
own parser rejects the YAML, or with --dry-run (which runs SkyPilot's parser and optimizer on the
YAML and prints SkyPilot's choice beside the review's).

Secrets reach SkyPilot one of three ways, never as a value on a command line:
- `env` (default): `--secret NAME`, SkyPilot's CLI reads the value from the environment;
- `file`: `--secret-file PATH`, a dotenv file readable by its owner only;
- `store`: no flag, SkyPilot's managed secrets provider resolves the null secrets at launch. SkyPilot
  0.14 fills `$VLLM_API_KEY` into a service's readiness-probe header only from values it has when it
  parses the YAML (`Task.from_yaml_config` skips null secrets), and resolves stored secrets later,
  into the task's environment: the probe would send the literal `$VLLM_API_KEY` and get 401 forever.
  So `store` is refused for services (fine for dev clusters, which have no probe).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from selfhost.skypilot import render
from selfhost.versions import install_hint

SECRET_SOURCES = ("env", "file", "store")


@dataclass
class LaunchPlan:
    spec: DeploymentSpec
    review: Any  # costing.money.review.CostReview
    yaml_path: Path
    yaml_text: str
    command: list[str]
    notes: list[str]
    secret_source: str = "env"
    temp_dir: Path | None = None  # the temporary folder made for the YAML: removed when the launch is refused
    name: str | None = None  # the cluster / service name
    # SkyPilot's pricing of the task's Kubernetes contexts (`sky ... --config FILE`), so its optimizer compares
    # a context at the rate the review priced instead of $0/h; None without a Kubernetes candidate.
    config_path: Path | None = None
    config_text: str | None = None

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
    # what `render sky --autostop-minutes/--labels` set (a preview's TTL and marks) is not part of the costing
    res = (on_disk.get("resources") or {}) if isinstance(on_disk, dict) else {}
    autostop = res.get("autostop") if isinstance(res, dict) else None
    minutes = autostop.get("idle_minutes") if isinstance(autostop, dict) and not spec.sky.service else None
    labels = res.get("labels") if isinstance(res, dict) and isinstance(res.get("labels"), dict) else None
    rendered = render.render_task(spec, autostop_minutes=minutes if isinstance(minutes, int) else None, labels=labels)
    if on_disk != rendered:
        raise UserError(
            f"'{path}' differs from what its spec renders now (edited by hand, or the catalog changed)",
            "re-render it with `selfhost render sky` (or `make templates`)",
        )


def missing_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    given: Mapping[str, str] = os.environ if env is None else env
    return [name for name in render.SECRETS if not given.get(name)]


def check_secret_source(source: str, service: bool, secret_file: Path | None) -> None:
    """Refuse a way of passing the secrets that cannot give the service a working keyed probe."""
    if source not in SECRET_SOURCES:
        raise UserError(f"unknown secret source '{source}'", f"use one of {', '.join(SECRET_SOURCES)}")
    if source == "store" and service:
        raise UserError(
            "with secrets from SkyPilot's secret store, SkyPilot 0.14 leaves the readiness probe's header as the "
            "literal 'Bearer $VLLM_API_KEY' (it fills probe headers only from values given at `sky serve up`), "
            "so every probe would get 401 and no replica would become ready",
            "pass the key from the environment (the default, `--secret VLLM_API_KEY`) or with --secret-file FILE",
        )
    if (source == "file") != (secret_file is not None):
        raise UserError("--secret-file goes with the file secret source", "give --secret-file PATH (a dotenv file)")


def file_secrets(path: Path) -> dict[str, str]:
    """The secrets in a dotenv file, parsed as SkyPilot's CLI parses it; refused unless owner-only."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise UserError(f"secret file '{path}' not found", "create it with NAME=value lines, then chmod 600 it")
    if path.stat().st_mode & 0o077:
        raise UserError(
            f"secret file '{path}' is readable by other users (mode {path.stat().st_mode & 0o777:o})",
            f"chmod 600 {path}",
        )
    values = {k: v for k, v in dotenv_values(path).items() if v}
    missing = [name for name in render.SECRETS if name not in values]
    if missing:
        raise UserError(f"secret file '{path}' lacks {' and '.join(missing)}", f"add {missing[0]}=... to {path}")
    return values


def validate_with_skypilot(text: str, service: bool, name: str | None = None) -> None:
    """SkyPilot's own parser (and SkyServe's checks) on the file, and its own rule on the cluster / service
    name, before anything is created. Raises ImportError when SkyPilot is not installed."""
    import sky
    from sky import sky_logging
    from sky.serve import serve_utils
    from sky.utils import common_utils

    try:  # `sky serve up` holds a service name to the same rule as a cluster name
        common_utils.check_cluster_name_is_valid(name)
    except Exception as err:  # noqa: BLE001 - InvalidClusterNameError, with SkyPilot's message
        raise UserError(
            f"SkyPilot rejects the name: {' '.join(str(err).split())}", "give --cluster e.g. 'llama-8b-dev'"
        ) from None
    cfg = yaml.safe_load(text)
    try:
        task = sky.Task.from_yaml_config(cfg, secrets_overrides=[(name, "placeholder") for name in render.SECRETS])
        if service:
            with sky_logging.silent():  # SpotHedge's check fetches zones: no spinner payloads in our output
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
        raise UserError("the `sky` command is not installed", install_hint("sky") + " (skypilot[aws,gcp,runpod])")
    return found


def sky_command(
    name: str,
    path: Path,
    service: bool,
    minutes: int,
    yes: bool,
    secret_source: str = "env",
    secret_file: Path | None = None,
    config: Path | None = None,
) -> list[str]:
    secrets: list[str] = []
    if secret_source == "env":
        secrets = [arg for s in render.SECRETS for arg in ("--secret", s)]
    elif secret_source == "file":
        secrets = ["--secret-file", str(secret_file)]
    if service:
        cmd = ["sky", "serve", "up", "-n", name, str(path), *secrets]
    else:
        # A serving job never lets the cluster idle: --wait-for none tears it down `minutes` after launch.
        cmd = ["sky", "launch", "-c", name, "-i", str(minutes), "--down", "--wait-for", "none", str(path), *secrets]
    if config is not None:  # SkyPilot's config for this command: the Kubernetes contexts' stated prices
        cmd += ["--config", str(config)]
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
    out_dir: Path | None = None,
    max_monthly_usd: float | None = None,
    secret_source: str = "env",
    secret_file: Path | None = None,
    allow_unpriced: bool | None = None,
) -> LaunchPlan:
    """Everything up to the launch: review, budget gate, YAML path, the exact command.

    A YAML rendered here goes to `out_dir` (the user's --out) or else a new temporary folder: never
    silently into the current folder."""
    from costing.money.review import cost_review, enforce_budget

    check_secret_source(secret_source, spec.sky.service, secret_file)

    found = render.choices(spec)
    chosen = render.cheapest(found)
    review = cost_review(chosen.spec, resolved=chosen.resolved)
    enforce_budget(review, max_monthly_usd, allow_unpriced)
    render.check_name(cluster, "--cluster")
    name = cluster or render.task_name(spec, found)
    temp_dir = None
    if rendered:
        text, path = rendered
    else:
        text = render.render_yaml(spec)
        file_name = f"{render.task_name(spec, found)}.yaml"  # a SkyPilot name: no '/', no leading '.'
        if Path(file_name).name != file_name or file_name.startswith("."):
            raise UserError(f"task name {file_name!r} is not a file name", "give the spec a SkyPilot name")
        if out_dir is None:
            temp_dir = Path(tempfile.mkdtemp(prefix="selfhost-sky-"))
            path = temp_dir / file_name
        else:
            path = out_dir / file_name
    notes = spot_fallback_notes(review, spec, yaml.safe_load(text))
    if len(found) > 1:
        notes.append(
            f"any_of: SkyPilot picks the cheapest candidate, {chosen.offer.id} "
            f"(${chosen.hourly_usd:.4f}/h), which this review prices"
        )
    pricing = render.sky_pricing_config(found)
    config_path = path.with_name(f"{path.stem}.sky-config.yaml") if pricing else None
    command = sky_command(name, path, spec.sky.service, minutes, yes, secret_source, secret_file, config_path)
    config_text = render.dump(pricing) if pricing else None
    return LaunchPlan(spec, review, path, text, command, notes, secret_source, temp_dir, name, config_path, config_text)


def execute(plan: LaunchPlan, *, dry_run: bool, echo=print) -> int:
    """Print the review and the command; unless dry_run, check secrets and SkyPilot's parser, then run it.

    SkyPilot's parser and name rule run first in a dry run too: a task or name SkyPilot rejects is refused
    (exit 2) before anything is printed or written. A refused launch leaves no temporary folder behind."""
    try:
        return _execute(plan, dry_run=dry_run, echo=echo)
    except BaseException:
        if plan.temp_dir is not None and not plan.yaml_path.exists():
            shutil.rmtree(plan.temp_dir, ignore_errors=True)
        raise


def _execute(plan: LaunchPlan, *, dry_run: bool, echo) -> int:
    if plan.secret_source == "file":
        file_secrets(Path(plan.command[plan.command.index("--secret-file") + 1]))
    missing = missing_secrets() if plan.secret_source == "env" else []
    if missing and not dry_run:  # refuse before printing anything: one line, nothing launched
        raise UserError(
            f"{' and '.join(missing)} not set in the environment; nothing was launched",
            f"export {' '.join(f'{m}=...' for m in missing)} (SkyPilot passes them as secrets)",
        )
    tls_missing = missing_tls_files(plan.spec)
    if tls_missing and not dry_run:
        raise UserError(
            f"TLS file {tls_missing[0]} not found here (`sky serve up` reads and uploads it); nothing was launched",
            "put the PEM file there, or re-render with --tls-keyfile/--tls-certfile pointing at yours",
        )
    try:
        validate_with_skypilot(plan.yaml_text, plan.service, plan.name)
    except ImportError:
        if not dry_run:
            raise UserError(
                "SkyPilot is not installed here, so its parser cannot check the task; nothing was launched",
                install_hint("sky") + " (skypilot[aws,gcp,runpod])",
            ) from None
    from costing.money.report import render as render_review

    echo(render_review(plan.review, "table").rstrip("\n"))
    for note in plan.notes:
        echo(note)
    if dry_run:
        if missing:
            echo(f"note: set {', '.join(missing)} in the environment before launching")
        for path in tls_missing:
            echo(f"note: TLS file {path} not found here: `sky serve up` needs it")
        _write(plan)
        for line in optimizer_lines(plan):
            echo(line)
        echo(f"dry run, nothing launched. The task is in {plan.yaml_path}; the launch would run:")
        echo("  " + shlex.join(plan.command))
        echo(f"then: {endpoint_hint(plan)}")
        return 0
    cmd = [sky_executable(), *plan.command[1:]]
    _write(plan)
    echo("$ " + shlex.join(plan.command))
    code = subprocess.run(cmd, check=False).returncode
    if code == 0:
        echo(f"endpoint: {endpoint_hint(plan)}")
    return code


def skypilot_choice(text: str, config: Path | None = None) -> dict[str, Any]:
    """SkyPilot's parser and optimizer on the YAML (SkyPilot imported here only): what it would launch.

    Uses the user's own SkyPilot setup (enabled clouds, catalogs); raises UserError when SkyPilot
    rejects the YAML or can launch it nowhere."""
    validate_with_skypilot(text, "service:" in text)
    import sky
    from sky import optimizer, sky_logging

    if config is not None:  # the Kubernetes contexts' pricing, as `sky ... --config FILE` applies it
        from sky import skypilot_config

        skypilot_config.apply_cli_config([str(config)])

    task = sky.Task.from_yaml_config(
        yaml.safe_load(text), secrets_overrides=[(name, "placeholder") for name in render.SECRETS]
    )
    try:
        with sky.Dag() as dag:
            dag.add(task)
        with sky_logging.silent():  # no spinner payloads in our output
            optimizer.Optimizer.optimize(dag, quiet=True)
    except Exception as err:  # noqa: BLE001 - NoCloudAccessError, ResourcesUnavailableError, ...
        raise UserError(
            f"SkyPilot's optimizer found nowhere to launch it: {' '.join(str(err).split())[:300]}",
            "run `sky check` to enable a cloud with credentials",
        ) from None
    best = task.best_resources
    if best is None:  # optimize() sets it or raises
        raise UserError("SkyPilot's optimizer chose no resources", "run `sky check`")
    return {
        "cloud": str(best.cloud).lower(),
        "instance_type": best.instance_type,
        "region": best.region,
        "zone": best.zone,
        "use_spot": best.use_spot,
        "hourly_usd": best.get_cost(3600) * task.num_nodes,
    }


def optimizer_lines(plan: LaunchPlan) -> list[str]:
    """SkyPilot's choice beside the review's (or why SkyPilot could not choose)."""
    offer = plan.review.offer
    price = plan.review.resolved.price
    ours = f"{offer.instance_type} {' '.join(x for x in (price.region, price.zone) if x) if price else offer.region}"
    review = f"review:   {offer.cloud} {ours}, ${plan.review.hourly_usd:,.4f}/h"
    try:
        best = skypilot_choice(plan.yaml_text, plan.config_path)
    except ImportError:
        return [review, f"SkyPilot: not installed here ({install_hint('sky')}), so its optimizer did not run"]
    except UserError as err:
        return [review, f"SkyPilot: {err.problem} ({err.fix})"]
    where = " ".join(x for x in (best["region"], best["zone"]) if x)
    line = f"SkyPilot: {best['cloud']} {best['instance_type']} {where}, ${best['hourly_usd']:,.4f}/h"
    # SkyPilot names a Kubernetes pod's shape its own way (e.g. 4CPU--16GB--L4:1): the context and price decide.
    shape = offer.cloud == "kubernetes" or best["instance_type"] == offer.instance_type
    same = best["cloud"] == offer.cloud and shape and abs(best["hourly_usd"] - plan.review.hourly_usd) < 1e-6
    return [
        review,
        line,
        "SkyPilot's optimizer picks what the review priced"
        if same
        else "note: SkyPilot's optimizer picks differently from the review (its catalog or your enabled clouds differ)",
    ]


def missing_tls_files(spec: DeploymentSpec) -> list[str]:
    """The service's TLS files that do not exist here (SkyPilot expands `~` as this does)."""
    files = [spec.sky.tls_keyfile, spec.sky.tls_certfile] if spec.sky.service else []
    return [f for f in files if f is not None and not Path(f).expanduser().is_file()]


def endpoint_hint(plan: LaunchPlan) -> str:
    """How to reach the server (the key stays in the environment).

    A service: `sky serve status NAME --endpoint` prints the scheme itself (SkyPilot 0.14's serve
    status: https:// when the service has service.tls, else http://), so the hint uses it as printed. A dev
    cluster: `sky status --endpoint PORT NAME` prints HOST:PORT of vLLM's own plain-HTTP port."""
    name = plan.command[plan.command.index("-n" if plan.service else "-c") + 1]
    model = plan.review.fit.settings.served_model_name
    if plan.service:
        url = f"$(sky serve status {name} --endpoint)"
        how = "https:// (service.tls)" if plan.spec.sky.tls_keyfile else "plain http:// (allow_plain_http)"
    else:
        url = f"http://$(sky status --endpoint {plan.review.fit.settings.port} {name})"
        how = "plain http:// (a dev cluster's vLLM port)"
    return (
        f'curl "{url}/v1/chat/completions" -H "Authorization: Bearer $VLLM_API_KEY" '
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{model}", '
        f'"messages": [{{"role": "user", "content": "Hello"}}]}}\'  # {how}'
    )


def _write(plan: LaunchPlan) -> None:
    try:
        if not plan.yaml_path.exists() or plan.yaml_path.read_text() != plan.yaml_text:
            plan.yaml_path.parent.mkdir(parents=True, exist_ok=True)
            plan.yaml_path.write_text(plan.yaml_text)
        if plan.config_path is not None and plan.config_text is not None:
            plan.config_path.write_text(plan.config_text)
    except OSError as err:
        raise UserError(
            f"cannot write the task to '{plan.yaml_path}' ({err.strerror})", "give --out a folder you can write"
        ) from None
