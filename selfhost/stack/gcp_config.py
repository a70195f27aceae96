"""GCP, the non-resource part: config checks, names, the startup script.

The resources are declared in stacks/gcp/__main__.py. What differs from the other clouds: a dedicated
VPC network and subnet per stack, Shielded VMs, secrets in Secret Manager read at boot by the VMs' own
service account; regional managed instance groups across two or more zones behind an external
Application Load Balancer (Cloud Armor for allowedCidrs, a Google-managed certificate for a domain);
spot as a spot group plus a standard group holding the review's on-demand base (the fallback); an
autoscaler per group on the load balancer's utilisation, with a scaling schedule for a part-time
schedule; autohealing on vLLM's /health after the driver install and the model load.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costing.data.catalog import offers_for
from costing.errors import UserError
from selfhost.stack import checks
from selfhost.stack import drain_scripts as drain
from selfhost.stack.boot_script import HEALTH_UNIT, READY_DIR, WeightsCache, boot_script
from selfhost.stack.checks import check_gcp_secret, gcp_name
from selfhost.stack.plan import MAX_HEALTH_GRACE_S, OPEN_CIDRS, StackPlan, plan_stack

KEYS = (
    "machineType",
    "gpu",
    "zones",
    "zone",  # replaced by zones: refused with the fix
    "subnetCidr",
    "imageFamily",
    "imageProject",
    "apiKeySecret",
    "hfTokenSecret",
    "image",
    "domain",
    "allowPlainHttp",
    "timeZone",
    "scheduleStart",
)
REF_KEYS = {"apiKey": "apiKeySecret", "hfToken": "hfTokenSecret"}
SUBNET_CIDR = "10.64.0.0/20"  # the stack's own subnet in its own network
IMAGE_PROJECT = "deeplearning-platform-release"
IMAGE_FAMILY = "common-cu124-debian-11-py310"  # Deep Learning VM: NVIDIA driver (installed at first boot), Docker
BOOT_BASE_GB = 80  # the Deep Learning VM image plus the vllm/vllm-openai image
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")  # Google's front ends and health checkers
DRIVER_WAIT_S = 900  # WAIT_FOR_GPU: 90 tries x 10 s for the NVIDIA driver on first boot
BACKEND_TIMEOUT_S = 600  # a long non-streamed completion must not be cut at the default 30 s
MIN_ZONES = 2
READY_PATH = "/ready"  # the local readiness endpoint (selfhost.stack.boot_script, ready_port)
ARMOR_RANGES_PER_RULE = 10  # Cloud Armor's limit of source ranges in one basic rule
METADATA_PROJECT = (
    "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/project/project-id"
)
WAIT_FOR_GPU = """# The Deep Learning VM installs the NVIDIA driver on first boot: wait for it.
for i in $(seq 1 90); do nvidia-smi >/dev/null 2>&1 && break; sleep 10; done
command -v docker >/dev/null || {
  echo "selfhost: docker is missing from the image (set imageFamily to a Deep Learning VM family)" >&2; exit 1; }"""


def target_of(config: Mapping[str, Any]) -> dict[str, Any]:
    machine_type = config.get("machineType")
    if machine_type:
        offers = [o for o in offers_for(cloud="gcp") if o.instance_type == machine_type]
        if not offers:
            known = ", ".join(o.instance_type for o in sorted(offers_for(cloud="gcp"), key=lambda o: o.vcpus))
            raise UserError(
                f"unknown GCP machine type {machine_type!r} (the stack runs g2-standard-* with L4s)",
                f"pulumi config set machineType one of: {known}",
            )
        return {"offer": offers[0].id}
    return {"gpu": config.get("gpu") or "L4"}


def plan(config: Mapping[str, Any], scope: tuple[str, str] = ("selfhost-gcp", "dev")) -> StackPlan:
    """Committed use (reserved-1y/3y) is a billing choice: it changes the cost review, not the VM."""
    if config.get("zone"):
        raise UserError(
            "zone pins one zone; the stack runs regional groups across two or more zones",
            f"pulumi config rm zone; pulumi config set zones '{config['zone']},...' (or set gcp:region)",
        )
    for key in REF_KEYS.values():
        if config.get(key):
            check_gcp_secret(key, str(config[key]))
    subnet_cidr(config)
    if config.get("imageFamily"):
        checks.check_pattern(
            "imageFamily", config["imageFamily"], checks.GCP_IMAGE_FAMILY, "an image family name", IMAGE_FAMILY
        )
    if config.get("imageProject"):
        checks.check_pattern(
            "imageProject", config["imageProject"], checks.GCP_PROJECT, "a Google Cloud project id", IMAGE_PROJECT
        )
    return plan_stack(
        "gcp",
        config,
        target_of(config),
        secret_ref_keys=REF_KEYS,
        default_name="selfhost-gcp",
        scope=scope,
        boot_disk_gb=BOOT_BASE_GB,
    )


def subnet_cidr(config: Mapping[str, Any]) -> str:
    value = str(config.get("subnetCidr") or SUBNET_CIDR)
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise UserError(
            f"subnetCidr {value!r} is not a CIDR block", f"pulumi config set subnetCidr {SUBNET_CIDR}"
        ) from None
    if net.version != 4 or not net.is_private or not 8 <= net.prefixlen <= 29:
        raise UserError(
            f"subnetCidr {value} must be a private IPv4 range from /8 to /29",
            f"pulumi config set subnetCidr {SUBNET_CIDR}",
        )
    return str(net)


@dataclass(frozen=True)
class Names:
    """Cloud names unique per (project, stack, spec name) and valid for GCP (start with a letter, lengths)."""

    base: str  # instances, networks, templates, firewall rules (63)
    account_id: str  # service account id (6-30)
    api_key_secret: str
    hf_token_secret: str


def names(p: StackPlan) -> Names:
    base = gcp_name(p.name, p.scope, max_len=40)
    return Names(
        base=base,
        account_id=gcp_name(p.name, p.scope, max_len=30, min_len=6),
        api_key_secret=f"{base}-api-key",
        hf_token_secret=f"{base}-hf-token",
    )


def fetch_command(secret: str) -> str:
    """Shell command printing the latest version of a Secret Manager secret (short id or full name), quoted."""
    if secret.startswith("projects/"):
        return f"gcloud secrets versions access latest --secret={shlex.quote(secret)}"
    return f'gcloud secrets versions access latest --secret={shlex.quote(secret)} --project="$({METADATA_PROJECT})"'


def weights_cache(p: StackPlan, bucket: str) -> WeightsCache:
    """The Cloud Storage mirror's commands (values quoted)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]", bucket):
        raise UserError(f"Cloud Storage bucket name {bucket!r} is malformed", "re-run pulumi up")
    url = shlex.quote(f"gs://{bucket}/hf/{p.fit.settings.model_repo}.tar")
    return WeightsCache(
        where=f"gs://{bucket}/hf/{p.fit.settings.model_repo}.tar",
        exists=f"gcloud storage objects describe {url} >/dev/null 2>&1",
        restore=f"gcloud storage cat {url}",
        save=f"gcloud storage cp - {url}",
    )


def ready_port(p: StackPlan) -> int:
    """The local readiness endpoint's port (GET /ready), next to vLLM's."""
    return p.port + 1 if p.port < 65535 else p.port - 1


def startup_script(p: StackPlan, secrets: dict[str, str], bucket: str | None = None) -> str:
    """The startup script. The load balancer holds the certificate and reaches vLLM's own port (its
    firewall admits only Google's front ends and checkers). Readiness: the health check asks a local
    endpoint (`ready_port`, GET /ready) that answers 200 only once a 1-token authenticated completion
    succeeded and while it keeps succeeding; after three failures the watchdog withdraws it and
    restarts vLLM, so the load balancer stops routing to the VM and autohealing replaces it if it
    does not come back."""
    fetch = {p.env_names[key]: fetch_command(sid) for key, sid in secrets.items()}
    return boot_script(
        p,
        fetch,
        prelude=WAIT_FOR_GPU,
        watchdog_action="systemctl restart vllm.service",
        ready_port=ready_port(p),
        weights=weights_cache(p, bucket) if bucket else None,
        drain=drain.gcp_drain(p),  # graceful stop, the watchdog's start grace, the Cloud Monitoring publisher
    )


def shutdown_script(p: StackPlan) -> str:
    """The `shutdown-script` metadata: withdraw readiness, then SIGTERM vLLM within the preemption notice."""
    return drain.gcp_shutdown(p, READY_DIR, HEALTH_UNIT)


def scaling_metric(p: StackPlan) -> dict[str, Any]:
    """The autoscaler's signal: requests in flight per VM (published by each VM), at the review's target."""
    return {"name": drain.GCP_METRIC, "target": p.fleet.inflight_per_replica, "type": "GAUGE"}


@dataclass(frozen=True)
class Group:
    """One managed instance group of the fleet: its provisioning model and its share of the replicas."""

    label: str  # "spot" or "standard": names the template, group and autoscaler
    spot: bool
    min_replicas: int
    max_replicas: int


def groups(p: StackPlan) -> list[Group]:
    """The review's fleet as groups. Spot: the spot group holds what is above the on-demand base; a
    standard group holds the base (fixed: it is the fallback that serves when spot capacity is gone)."""
    f = p.fleet
    if p.pricing != "spot":
        return [Group("standard", False, f.min_replicas, f.max_replicas)]
    base = f.base_ondemand_replicas
    spot = Group("spot", True, f.min_replicas - base, f.max_replicas - base)
    return [spot, Group("standard", False, base, base)] if base else [spot]


def check_zones(region: str, zones: list[str]) -> list[str]:
    """Two or more zones of the region (the first three, sorted, of those given or listed as UP)."""
    for zone in zones:
        checks.check_pattern("zones", zone, checks.GCP_ZONE, "a Compute Engine zone", f"{region}-a,{region}-b")
    mine = sorted({z for z in zones if z.rsplit("-", 1)[0] == region})
    if len(mine) < MIN_ZONES:
        raise UserError(
            f"{len(mine)} zone(s) of {region} given or available ({', '.join(mine) or 'none'}); the regional "
            f"groups need {MIN_ZONES} or more",
            f"pulumi config set zones '{region}-a,{region}-b' (zones of the region with L4 capacity)",
        )
    return mine[:3]


def autoheal_delay_s(p: StackPlan) -> int:
    """Autohealing waits past the longest boot: the NVIDIA driver install, then the image and weights."""
    return min(MAX_HEALTH_GRACE_S, DRIVER_WAIT_S + p.readiness.initial_delay_s)


def capacity_rps(p: StackPlan) -> float:
    """Requests/s one VM serves within the SLO (the review's per-replica target over the target
    utilisation): the backend's max rate; the autoscaler keeps each VM at the target utilisation of it."""
    return round(p.fleet.requests_per_s_per_replica / p.spec.target_utilization, 4)


def listener_port(p: StackPlan) -> int:
    """Google's external Application Load Balancer listens on 443 (HTTPS) or 80 (HTTP)."""
    return 443 if p.domain else 80


def open_to_all(p: StackPlan) -> bool:
    return bool(set(p.allowed_cidrs) & set(OPEN_CIDRS))


def armor_rules(p: StackPlan) -> list[dict[str, Any]]:
    """Cloud Armor: allowedCidrs in rules of ten ranges each; everyone else gets 403."""
    cidrs = list(p.allowed_cidrs)
    rules: list[dict[str, Any]] = []
    for i in range(0, len(cidrs), ARMOR_RANGES_PER_RULE):
        rules.append(
            {
                "action": "allow",
                "priority": 1000 + i // ARMOR_RANGES_PER_RULE,
                "match": {
                    "versioned_expr": "SRC_IPS_V1",
                    "config": {"src_ip_ranges": cidrs[i : i + ARMOR_RANGES_PER_RULE]},
                },
                "description": "allowedCidrs",
            }
        )
    rules.append(
        {
            "action": "deny(403)",
            "priority": 2147483647,
            "match": {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}},
            "description": "everyone else",
        }
    )
    return rules


def scaling_schedule(p: StackPlan, replicas: int) -> dict[str, Any]:
    """A part-time schedule as an autoscaler scaling schedule: `replicas` from each start for the window."""
    w = p.window
    minutes = len(w.days) * 24 * 60 if w.always_on_days else w.minutes
    return {
        "name": "selfhost-hours",
        "schedule": w.start_cron(),
        "time_zone": w.time_zone,
        "duration_sec": minutes * 60,
        "min_required_replicas": replicas,
        "description": f"selfhost {p.scope}: {p.spec.schedule.hours_per_day:g} h/day, {len(w.days)} days/week",
    }
