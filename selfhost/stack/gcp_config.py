"""GCP: g2-standard-* (L4s bundled by the machine type) on a Deep Learning VM image.

What differs from the other clouds: secrets in Secret Manager read at boot by the VM's own service
account; spot as a zonal managed instance group of one (autohealing on vLLM's /health, the static
IP kept by a per-instance config); standard provisioning as one VM that restarts after host events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costing.catalog import offers_for
from costing.errors import UserError
from selfhost.stack.boot_script import boot_script
from selfhost.stack.plan import StackPlan, gcp_label, plan_stack

KEYS = (
    "machineType",
    "gpu",
    "zone",
    "network",
    "imageFamily",
    "imageProject",
    "apiKeySecret",
    "hfTokenSecret",
    "image",
)
REF_KEYS = {"apiKey": "apiKeySecret", "hfToken": "hfTokenSecret"}
IMAGE_PROJECT = "deeplearning-platform-release"
IMAGE_FAMILY = "common-cu124-debian-11-py310"  # Deep Learning VM: NVIDIA driver (installed at first boot), Docker
BOOT_BASE_GB = 80  # the Deep Learning VM image plus the vllm/vllm-openai image
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")  # Google's health checkers (autohealing)
METADATA_PROJECT = (
    "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/project/project-id"
)
WAIT_FOR_GPU = """# The Deep Learning VM installs the NVIDIA driver on first boot: wait for it.
for i in $(seq 1 90); do nvidia-smi >/dev/null 2>&1 && break; sleep 10; done
command -v docker >/dev/null || { echo "selfhost: docker is missing from the image (set imageFamily to a Deep Learning VM family)" >&2; exit 1; }"""


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


def plan(config: Mapping[str, Any]) -> StackPlan:
    """Committed use (reserved-1y/3y) is a billing choice: it changes the cost review, not the VM."""
    return plan_stack("gcp", config, _target(config), secret_ref_keys=REF_KEYS, default_name="selfhost-gcp")


def fetch_command(secret: str) -> str:
    """Shell command printing the latest version of a Secret Manager secret (short id or full name)."""
    if secret.startswith("projects/"):
        return f"gcloud secrets versions access latest --secret={secret}"
    return f'gcloud secrets versions access latest --secret={secret} --project="$({METADATA_PROJECT})"'


def startup_script(p: StackPlan, secrets: dict[str, str]) -> str:
    fetch = {p.env_names[key]: fetch_command(sid) for key, sid in secrets.items()}
    return boot_script(p, fetch, prelude=WAIT_FOR_GPU)


def build(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and cost (raising before any resource), then declare the VM (or spot group) and its needs."""
    import pulumi

    gcp_cfg = pulumi.Config("gcp")
    # The provider's zone is where the VM runs, so its region is the one the review prices.
    chosen = config.get("zone") or gcp_cfg.get("zone")
    p = plan({**config, "region": str(chosen).rsplit("-", 1)[0]} if chosen and not config.get("region") else config)
    import pulumi_gcp as gcp

    from selfhost.stack.component import VllmEndpoint, secret

    zone = str(chosen or f"{p.review.resolved.price.region or p.offer.region}-a")
    region = zone.rsplit("-", 1)[0]
    network = str(config.get("network") or "default")
    spot = p.pricing == "spot"
    labels = {k: gcp_label(v) for k, v in p.labels.items()}
    tag = f"{p.name}-vllm"
    endpoint = VllmEndpoint(p)
    child = endpoint.child

    sa = gcp.serviceaccount.Account(
        f"{p.name}-vm",
        account_id=f"{p.name}-vm"[:30].rstrip("-"),
        display_name=f"selfhost {p.name} vLLM VM",
        opts=child(),
    )
    member = sa.email.apply(lambda e: f"serviceAccount:{e}")
    ids: dict[str, Any] = {}
    for key in ("apiKey", "hfToken"):
        slug = "api-key" if key == "apiKey" else "hf-token"
        if p.secret_refs[key]:
            sid: Any = p.secret_refs[key]
        else:
            store = gcp.secretmanager.Secret(
                f"{p.name}-{slug}", secret_id=f"{p.name}-{slug}", labels=labels, replication={"auto": {}}, opts=child()
            )
            gcp.secretmanager.SecretVersion(
                f"{p.name}-{slug}", secret=store.id, secret_data=secret(p.secrets[key]), opts=child()
            )
            sid = store.secret_id
        gcp.secretmanager.SecretIamMember(
            f"{p.name}-{slug}-reader",
            secret_id=sid,
            member=member,
            role="roles/secretmanager.secretAccessor",
            opts=child(),
        )
        ids[key] = sid

    address = gcp.compute.Address(f"{p.name}-ip", region=region, labels=labels, opts=child())
    v4 = [c for c in p.allowed_cidrs if ":" not in c]
    v6 = [c for c in p.allowed_cidrs if ":" in c]
    for family, ranges in (("v4", v4), ("v6", v6)):
        if ranges:
            gcp.compute.Firewall(
                f"{p.name}-api-{family}",
                network=network,
                direction="INGRESS",
                allows=[{"protocol": "tcp", "ports": [str(p.port)]}],
                source_ranges=ranges,
                target_tags=[tag],
                description=f"selfhost {p.name}: vLLM API from allowed CIDRs",
                opts=child(),
            )
    script = pulumi.Output.all(ids["apiKey"], ids["hfToken"]).apply(
        lambda a: startup_script(p, {"apiKey": a[0], "hfToken": a[1]})
    )
    image = f"projects/{config.get('imageProject') or IMAGE_PROJECT}/global/images/family/{config.get('imageFamily') or IMAGE_FAMILY}"
    metadata = {"startup-script": script, "install-nvidia-driver": "True", "enable-oslogin": "TRUE"}
    # g2-standard-* bundles its L4s: no guest_accelerators block; GPUs can't live-migrate: TERMINATE.
    scheduling = (
        {
            "provisioning_model": "SPOT",
            "preemptible": True,
            "automatic_restart": False,
            "on_host_maintenance": "TERMINATE",
            "instance_termination_action": "STOP",
        }
        if spot
        else {
            "provisioning_model": "STANDARD",
            "preemptible": False,
            "automatic_restart": True,
            "on_host_maintenance": "TERMINATE",
        }
    )
    disk_gb = BOOT_BASE_GB + p.storage_gb
    service_account = {"email": sa.email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
    machine_type = p.offer.instance_type

    if not spot:
        vm = gcp.compute.Instance(
            p.name,
            name=p.name,
            zone=zone,
            machine_type=machine_type,
            labels=labels,
            tags=[tag],
            boot_disk={"initialize_params": {"image": image, "size": disk_gb, "type": "pd-balanced", "labels": labels}},
            network_interfaces=[{"network": network, "access_configs": [{"nat_ip": address.address}]}],
            metadata=metadata,
            scheduling=scheduling,
            service_account=service_account,
            allow_stopping_for_update=True,
            opts=child(),
        )
        ids_out = {"instanceName": vm.name, "instanceId": vm.instance_id}
    else:
        gcp.compute.Firewall(
            f"{p.name}-health",
            network=network,
            direction="INGRESS",
            allows=[{"protocol": "tcp", "ports": [str(p.port)]}],
            source_ranges=list(HEALTH_CHECK_RANGES),
            target_tags=[tag],
            description="Google health checkers: autohealing probe",
            opts=child(),
        )
        r = p.readiness
        check = gcp.compute.HealthCheck(
            f"{p.name}-health",
            http_health_check={"port": r.port, "request_path": r.path},
            check_interval_sec=r.period_s,
            timeout_sec=r.timeout_s,
            unhealthy_threshold=r.failure_threshold,
            healthy_threshold=1,
            opts=child(),
        )
        template = gcp.compute.InstanceTemplate(
            f"{p.name}-vm",
            name_prefix=f"{p.name}-",
            machine_type=machine_type,
            labels=labels,
            tags=[tag],
            disks=[
                {
                    "source_image": image,
                    "disk_size_gb": disk_gb,
                    "disk_type": "pd-balanced",
                    "boot": True,
                    "auto_delete": True,
                    "labels": labels,
                }
            ],
            network_interfaces=[{"network": network, "access_configs": [{}]}],
            metadata=metadata,
            scheduling=scheduling,
            service_account=service_account,
            opts=child(),
        )
        group = gcp.compute.InstanceGroupManager(
            f"{p.name}-group",
            base_instance_name=p.name,
            zone=zone,
            target_size=1,
            versions=[{"name": "primary", "instance_template": template.self_link_unique}],
            auto_healing_policies={"health_check": check.id, "initial_delay_sec": r.initial_delay_s},
            named_ports=[{"name": "http", "port": r.port}],
            update_policy={
                "type": "PROACTIVE",
                "minimal_action": "REPLACE",
                "replacement_method": "RECREATE",
                "max_surge_fixed": 0,
                "max_unavailable_fixed": 1,
            },
            opts=child(),
        )
        gcp.compute.PerInstanceConfig(
            f"{p.name}-0",
            name=f"{p.name}-0",
            zone=zone,
            instance_group_manager=group.name,
            minimal_action="REPLACE",
            preserved_state={
                "external_ips": [
                    {"interface_name": "nic0", "auto_delete": "NEVER", "ip_address": {"address": address.self_link}}
                ]
            },
            opts=child(),
        )
        ids_out = {"groupName": group.name, "groupId": group.id, "instanceName": f"{p.name}-0"}

    return endpoint.finish(
        endpointUrl=address.address.apply(lambda ip: f"http://{ip}:{p.port}"),
        healthUrl=address.address.apply(lambda ip: f"http://{ip}:{p.port}{p.readiness.path}"),
        publicIp=address.address,
        machineType=machine_type,
        zone=zone,
        image=image,
        spot=spot,
        **ids_out,
    )
