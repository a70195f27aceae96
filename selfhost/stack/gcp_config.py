"""GCP, the non-resource part: config checks, names, the startup script.

The resources are declared in stacks/gcp/__main__.py. What differs from the other clouds: a dedicated
VPC network and subnet per stack, Shielded VMs, secrets in Secret Manager read at boot by the VM's own
service account; spot as a zonal managed instance group of one (autohealing on vLLM's /health, the
static IP kept by a per-instance config); standard provisioning as one VM that restarts after host
events; a part-time schedule as an instance-schedule resource policy (VM) or an autoscaler scaling
schedule (group).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costing.catalog import offers_for
from costing.errors import UserError
from selfhost.stack.boot_script import boot_script
from selfhost.stack.checks import check_gcp_secret, gcp_name
from selfhost.stack.plan import StackPlan, plan_stack

KEYS = (
    "machineType",
    "gpu",
    "zone",
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
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")  # Google's health checkers (autohealing)
METADATA_PROJECT = (
    "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/project/project-id"
)
WAIT_FOR_GPU = """# The Deep Learning VM installs the NVIDIA driver on first boot: wait for it.
for i in $(seq 1 90); do nvidia-smi >/dev/null 2>&1 && break; sleep 10; done
command -v docker >/dev/null || {
  echo "selfhost: docker is missing from the image (set imageFamily to a Deep Learning VM family)" >&2; exit 1; }"""


def _target(config: Mapping[str, Any]) -> dict[str, Any]:
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
    for key in REF_KEYS.values():
        if config.get(key):
            check_gcp_secret(key, str(config[key]))
    subnet_cidr(config)
    return plan_stack(
        "gcp", config, _target(config), secret_ref_keys=REF_KEYS, default_name="selfhost-gcp", scope=scope
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


def startup_script(p: StackPlan, secrets: dict[str, str]) -> str:
    """The startup script. A spot group's autohealing probes vLLM's own port from Google's checkers
    (a TLS proxy without SNI would fail them), so there vLLM is published beyond loopback; its firewall
    admits only the checkers on that port."""
    fetch = {p.env_names[key]: fetch_command(sid) for key, sid in secrets.items()}
    loopback_only = bool(p.domain) and p.pricing != "spot"
    return boot_script(p, fetch, prelude=WAIT_FOR_GPU, loopback_only=loopback_only)
