"""The cost review of a spec as the kit's Pulumi stack beside it deploys it (what `selfhost diff` compares).

A folder `selfhost init` wrote for aws, gcp, runpod or kubernetes holds the spec, the kit's `Pulumi.yaml` (project
`selfhost-<cloud>`) and a stack config `Pulumi.<stack>.yaml` whose `specFile` names the spec. `pulumi up` costs
that spec with the stack's keys laid over it and bills the stack's own resources too (load balancer, WAF
policy, weights mirror: selfhost.stack.plan.stack_review), so that review, not the bare plan of the spec, is
what the stack's bill (`selfhost bill`) equals. The kubernetes stack costs the nodes its pods need on the team's
cluster (`selfhost plan --kubernetes`, costing.money.kubernetes). Pulumi-free: the files are read as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from costing.data.resolve import resolve
from costing.errors import UserError

STACK_CLOUDS = ("aws", "gcp", "runpod", "kubernetes")
Reader = Callable[[PurePosixPath], str | None]  # a file's text (None: no such file)
Lister = Callable[[PurePosixPath], list[str]]  # the file names in a folder


@dataclass(frozen=True)
class StackConfig:
    cloud: str
    file: str  # Pulumi.<stack>.yaml
    config: dict[str, Any]  # the project's keys without their prefix, plus the provider's region


def _yaml(text: str | None, where: str) -> Any:
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{where} is not YAML ({str(err).splitlines()[0]})", f"fix {where}") from None


def stack_config(spec: PurePosixPath, read: Reader, names: Lister) -> StackConfig | None:
    """The kit stack config beside `spec` whose specFile names it (the first stack file, sorted), or None."""
    folder = spec.parent
    project_doc = _yaml(read(folder / "Pulumi.yaml"), str(folder / "Pulumi.yaml"))
    project = str((project_doc or {}).get("name") or "") if isinstance(project_doc, dict) else ""
    cloud = project.removeprefix("selfhost-")
    if not project.startswith("selfhost-") or cloud not in STACK_CLOUDS:
        return None
    for name in sorted(n for n in names(folder) if n.startswith("Pulumi.") and n != "Pulumi.yaml"):
        doc = _yaml(read(folder / name), str(folder / name))
        raw = (doc or {}).get("config") if isinstance(doc, dict) else None
        if not isinstance(raw, Mapping):
            continue
        config = {
            key.split(":", 1)[1]: value
            for key, value in raw.items()
            if str(key).startswith(f"{project}:") and not (isinstance(value, Mapping) and "secure" in value)
        }
        if PurePosixPath(str(config.get("specFile") or "")).name != spec.name:
            continue
        provider = {str(k).split(":", 1)[1]: v for k, v in raw.items() if str(k).startswith(f"{cloud}:")}
        region = config.get("region") or provider.get("region")
        if not region and provider.get("zone"):
            region = str(provider["zone"]).rsplit("-", 1)[0]
        if region and cloud in ("aws", "gcp"):
            config["region"] = region
        return StackConfig(cloud, name, config)
    return None


def stack_spec_review(stack: StackConfig, spec_file: Path):
    """The review `pulumi up` of this stack computes for the spec in `spec_file` (no secrets, transport or
    budget checks: those refuse a deployment, they do not change its cost). An AWS spot group is priced at the
    mean of the region's priced zones (the stack's subnets are only known to AWS; `selfhost bill` assumes the
    same without --zones)."""
    config = {**stack.config, "specFile": str(spec_file)}
    if stack.cloud == "kubernetes":  # the review `plan --kubernetes` shows: the nodes the pods need
        from costing.money.kubernetes import kubernetes_review
        from selfhost.k8s.stack_config import stack_spec

        return kubernetes_review(*stack_spec(config))
    from selfhost.stack import aws_config, gcp_config, runpod_config
    from selfhost.stack.plan import OPEN_CIDRS, spec_from_config, stack_review, str_list

    modules = {"aws": aws_config, "gcp": gcp_config, "runpod": runpod_config}
    boot = {"aws": aws_config.ROOT_BASE_GB, "gcp": gcp_config.BOOT_BASE_GB, "runpod": 0}
    target = modules[stack.cloud].target_of(config)
    spec = spec_from_config(stack.cloud, config, target, autoscaled=stack.cloud != "runpod")
    zones: tuple[str, ...] = ()
    if stack.cloud == "aws" and spec.target.pricing == "spot":
        resolved = resolve(spec)
        if resolved.offer is not None and resolved.price is not None:
            zones = tuple(sorted(resolved.offer.by_zone("spot", resolved.price.region)))
    cidrs = tuple(str_list(config, "allowedCidrs")) or tuple(OPEN_CIDRS)
    refs = getattr(modules[stack.cloud], "REF_KEYS", {})  # a secret given by reference is not the stack's
    created = sum(1 for key in ("apiKey", "hfToken") if not (refs.get(key) and config.get(refs[key])))
    return stack_review(
        stack.cloud, spec, cidrs, spot_zones=zones, boot_disk_gb=boot[stack.cloud], secrets_created=created
    )
