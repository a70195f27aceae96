"""selfhost on GCP: vLLM serving Llama 3.x on g2-standard-* (L4s), costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends
`pulumi up` with one line and nothing declared), then the steps network -> identity -> secrets ->
instances -> schedule, then the exports. Shared pieces (config -> spec, cost review, budget, the
VllmEndpoint component, exports) come from selfhost.stack; names and the startup script from
selfhost.stack.gcp_config.
"""

import pulumi
import pulumi_gcp as gcp

from selfhost.stack import gcp_config
from selfhost.stack.component import VllmEndpoint, read_config, refusals, secret, stack_scope
from selfhost.stack.plan import gcp_label

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(gcp_config.KEYS)
    # The provider's zone is where the VM runs, so its region is the one the review prices.
    chosen = config.get("zone") or pulumi.Config("gcp").get("zone")
    in_zone = {**config, "region": str(chosen).rsplit("-", 1)[0]} if chosen and not config.get("region") else config
    p = gcp_config.plan(in_zone, scope=stack_scope())
    spot = p.pricing == "spot"
    if spot and p.window:
        from costing.errors import UserError

        raise UserError(
            "GCP spot runs as a stateful instance group (it keeps the static IP), which can't scale on a schedule",
            "pulumi config set pricing on-demand for a part-time schedule (an instance schedule stops and starts "
            "the VM), or drop hoursPerDay/daysPerWeek",
        )

zone = str(chosen or f"{p.review.resolved.price.region or p.offer.region}-a")
region = zone.rsplit("-", 1)[0]
names = gcp_config.names(p)
labels = {k: gcp_label(v) for k, v in p.labels.items()}
tag = f"{names.base}-vllm"
api_port = p.public_port  # 443 behind the TLS proxy, else vLLM's port
image = (
    f"projects/{config.get('imageProject') or gcp_config.IMAGE_PROJECT}/global/images/family/"
    f"{config.get('imageFamily') or gcp_config.IMAGE_FAMILY}"
)
shielded = {"enable_secure_boot": True, "enable_vtpm": True, "enable_integrity_monitoring": True}
endpoint = VllmEndpoint(p)
child = endpoint.child


def network() -> tuple[gcp.compute.Network, gcp.compute.Subnetwork, gcp.compute.Address]:
    """The stack's own VPC network and subnet (no default-network SSH rule), the API firewall, the address."""
    net = gcp.compute.Network(
        f"{p.name}-net",
        name=names.base,
        auto_create_subnetworks=False,
        description=f"selfhost {p.scope}",
        opts=child(),
    )
    subnet = gcp.compute.Subnetwork(
        f"{p.name}-subnet",
        name=names.base,
        network=net.id,
        region=region,
        ip_cidr_range=gcp_config.subnet_cidr(config),
        private_ip_google_access=True,
        opts=child(),
    )
    v4 = [c for c in p.allowed_cidrs if ":" not in c]
    v6 = [c for c in p.allowed_cidrs if ":" in c]
    for family, ranges in (("v4", v4), ("v6", v6)):
        if ranges:
            gcp.compute.Firewall(
                f"{p.name}-api-{family}",
                name=f"{names.base}-api-{family}",
                network=net.self_link,
                direction="INGRESS",
                allows=[{"protocol": "tcp", "ports": [str(api_port)]}],
                source_ranges=ranges,
                target_tags=[tag],
                description=f"selfhost {p.scope}: {'HTTPS' if p.domain else 'vLLM API'} from allowed CIDRs",
                opts=child(),
            )
    address = gcp.compute.Address(f"{p.name}-ip", name=names.base, region=region, labels=labels, opts=child())
    return net, subnet, address


def identity() -> gcp.serviceaccount.Account:
    """The VM's own service account (it may read only this stack's two secrets)."""
    return gcp.serviceaccount.Account(
        f"{p.name}-vm",
        account_id=names.account_id,
        display_name=f"selfhost {p.scope} vLLM VM",
        opts=child(),
    )


def secrets(sa: gcp.serviceaccount.Account) -> dict[str, pulumi.Input[str]]:
    """The API key and HF token in Secret Manager (created, or existing ones), readable by the VM only."""
    member = sa.email.apply(lambda e: f"serviceAccount:{e}")
    ids: dict[str, pulumi.Input[str]] = {}
    for key, secret_id in (("apiKey", names.api_key_secret), ("hfToken", names.hf_token_secret)):
        slug = "api-key" if key == "apiKey" else "hf-token"
        sid: pulumi.Input[str]
        if p.secret_refs[key]:
            sid = str(p.secret_refs[key])
        else:
            store = gcp.secretmanager.Secret(
                f"{p.name}-{slug}", secret_id=secret_id, labels=labels, replication={"auto": {}}, opts=child()
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
    return ids


def schedule_policy() -> gcp.compute.ResourcePolicy | None:
    """A part-time schedule: an instance schedule that starts and stops the VM (the costed hours).

    Compute Engine's service agent starts and stops scheduled VMs; it needs compute.instanceAdmin.v1."""
    if p.window is None:
        return None
    w = p.window
    project = gcp.organizations.get_project_output()
    gcp.projects.IAMMember(
        f"{p.name}-scheduler",
        project=project.project_id,
        role="roles/compute.instanceAdmin.v1",
        member=project.number.apply(lambda n: f"serviceAccount:service-{n}@compute-system.iam.gserviceaccount.com"),
        opts=child(),
    )
    return gcp.compute.ResourcePolicy(
        f"{p.name}-schedule",
        name=f"{names.base}-schedule",
        region=region,
        description=f"selfhost {p.scope}: {p.spec.schedule.hours_per_day:g} h/day, {len(w.days)} days/week",
        instance_schedule_policy={
            "vm_start_schedule": {"schedule": w.start_cron()},
            "vm_stop_schedule": {"schedule": w.stop_cron()},
            "time_zone": w.time_zone,
        },
        opts=child(),
    )


def instances(
    net: gcp.compute.Network,
    subnet: gcp.compute.Subnetwork,
    address: gcp.compute.Address,
    sa: gcp.serviceaccount.Account,
    ids: dict[str, pulumi.Input[str]],
    policy: gcp.compute.ResourcePolicy | None,
) -> dict[str, pulumi.Input]:
    """Standard provisioning: one Shielded VM on the static address. Spot: a group of one with autohealing."""
    script = pulumi.Output.all(ids["apiKey"], ids["hfToken"]).apply(
        lambda a: gcp_config.startup_script(p, {"apiKey": a[0], "hfToken": a[1]})
    )
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
    disk_gb = gcp_config.BOOT_BASE_GB + p.storage_gb
    service_account = {"email": sa.email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
    machine_type = p.offer.instance_type

    if not spot:
        vm = gcp.compute.Instance(
            p.name,
            name=names.base,
            zone=zone,
            machine_type=machine_type,
            labels=labels,
            tags=[tag],
            boot_disk={"initialize_params": {"image": image, "size": disk_gb, "type": "pd-balanced", "labels": labels}},
            network_interfaces=[
                {"network": net.id, "subnetwork": subnet.id, "access_configs": [{"nat_ip": address.address}]}
            ],
            metadata=metadata,
            scheduling=scheduling,
            service_account=service_account,
            shielded_instance_config=shielded,
            resource_policies=policy.self_link if policy else None,
            allow_stopping_for_update=True,
            opts=child(),
        )
        return {"instanceName": vm.name, "instanceId": vm.instance_id}

    r = p.readiness  # vLLM's own port, from Google's health checkers only (with a domain too: no SNI there)
    gcp.compute.Firewall(
        f"{p.name}-health",
        name=f"{names.base}-health",
        network=net.self_link,
        direction="INGRESS",
        allows=[{"protocol": "tcp", "ports": [str(r.port)]}],
        source_ranges=list(gcp_config.HEALTH_CHECK_RANGES),
        target_tags=[tag],
        description="Google health checkers: autohealing probe",
        opts=child(),
    )
    check = gcp.compute.HealthCheck(
        f"{p.name}-health",
        name=f"{names.base}-health",
        http_health_check={"port": r.port, "request_path": r.path},
        check_interval_sec=r.period_s,
        timeout_sec=r.timeout_s,
        unhealthy_threshold=r.failure_threshold,
        healthy_threshold=1,
        opts=child(),
    )
    template = gcp.compute.InstanceTemplate(
        f"{p.name}-vm",
        name_prefix=f"{names.base}-",
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
        network_interfaces=[{"network": net.id, "subnetwork": subnet.id, "access_configs": [{}]}],
        metadata=metadata,
        scheduling=scheduling,
        service_account=service_account,
        shielded_instance_config=shielded,
        opts=child(),
    )
    group = gcp.compute.InstanceGroupManager(
        f"{p.name}-group",
        name=names.base,
        base_instance_name=names.base,
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
        name=f"{names.base}-0",
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
    return {"groupName": group.name, "groupId": group.id, "instanceName": f"{names.base}-0"}


# ---- the program: the steps in order -----------------------------------------------------------------
net, subnet, address = network()
sa = identity()
ids = secrets(sa)
policy = schedule_policy()
ids_out = instances(net, subnet, address, sa, ids, policy)

# ---- exports (the cost review's figures are added by the component) ---------------------------------
host = p.domain or None
url = address.address.apply(lambda ip: f"https://{host}" if host else f"http://{ip}:{p.port}")
endpoint.finish(
    endpointUrl=url,
    healthUrl=url.apply(lambda u: u + p.readiness.path),
    publicIp=address.address,
    dnsRecord=address.address.apply(lambda ip: f"{host} A {ip}") if host else None,
    network=net.name,
    machineType=p.offer.instance_type,
    zone=zone,
    image=image,
    spot=spot,
    **ids_out,
)
