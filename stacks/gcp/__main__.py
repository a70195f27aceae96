"""selfhost on GCP: vLLM serving Llama 3.x on g2-standard-* (L4s), costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends
`pulumi up` with one line and nothing declared), then the steps network -> identity -> secrets ->
weights_bucket -> groups -> load_balancer, then the exports. The cost review sizes the fleet (min = off-peak replicas,
max = peak replicas at the target utilization, the on-demand base of a spot fleet, requests/s per
replica): regional managed instance groups across two or more zones hold it, an autoscaler per group
scales on the load balancer's utilisation, and a part-time schedule is an autoscaler scaling schedule.
Shared pieces (config -> spec, cost review, budget, the VllmEndpoint component, exports) come from
selfhost.stack; names and the startup script from selfhost.stack.gcp_config.
"""

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from selfhost.stack import drain_scripts as drain
from selfhost.stack import gcp_config
from selfhost.stack.checks import global_bucket_name
from selfhost.stack.component import VllmEndpoint, read_config, refusals, secret, stack_scope
from selfhost.stack.plan import gcp_label, str_list

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(gcp_config.KEYS)
    # The provider's region (or its zone's) is where the groups run, so it is the region the review prices.
    provider = pulumi.Config("gcp")
    provider_zone = provider.get("zone")
    chosen = config.get("region") or provider.get("region") or (provider_zone and provider_zone.rsplit("-", 1)[0])
    p = gcp_config.plan({**config, "region": chosen} if chosen else config, scope=stack_scope())
    region = str(chosen or p.review.resolved.price.region or p.offer.region)
    project = provider.get("project") or gcp.organizations.get_project().project_id
    zones = gcp_config.check_zones(
        region, str_list(config, "zones") or gcp.compute.get_zones(region=region, status="UP").names
    )
    project_id = str(provider.get("project") or gcp.organizations.get_project().project_id or "")
    global_bucket_name(p.name, p.scope, project_id, "0" * 8)  # names it can build, or one line now

spot = p.pricing == "spot"
fleet = p.fleet
r = p.readiness
names = gcp_config.names(p)
labels = {k: gcp_label(v) for k, v in p.labels.items()}
tag = f"{names.base}-vllm"
image = (
    f"projects/{config.get('imageProject') or gcp_config.IMAGE_PROJECT}/global/images/family/"
    f"{config.get('imageFamily') or gcp_config.IMAGE_FAMILY}"
)
shielded = {"enable_secure_boot": True, "enable_vtpm": True, "enable_integrity_monitoring": True}
endpoint = VllmEndpoint(p)
child = endpoint.child


def network() -> tuple[gcp.compute.Network, gcp.compute.Subnetwork]:
    """The stack's own VPC network and subnet (no default-network SSH rule). vLLM's port admits only
    Google's front ends and health checkers: clients reach the load balancer, never a VM."""
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
    gcp.compute.Firewall(
        f"{p.name}-lb",
        name=f"{names.base}-lb",
        network=net.self_link,
        direction="INGRESS",
        allows=[{"protocol": "tcp", "ports": [str(r.port), str(gcp_config.ready_port(p))]}],
        source_ranges=list(gcp_config.HEALTH_CHECK_RANGES),
        target_tags=[tag],
        description="Google front ends and health checkers: the load balancer and autohealing",
        opts=child(),
    )
    return net, subnet


def identity() -> gcp.serviceaccount.Account:
    """The VMs' own service account (it may read only this stack's two secrets, and write metrics: vLLM's
    requests in flight, the autoscaler's signal)."""
    sa = gcp.serviceaccount.Account(
        f"{p.name}-vm",
        account_id=names.account_id,
        display_name=f"selfhost {p.scope} vLLM VM",
        opts=child(),
    )
    gcp.projects.IAMMember(
        f"{p.name}-metrics",
        project=project,
        role="roles/monitoring.metricWriter",
        member=sa.email.apply(lambda e: f"serviceAccount:{e}"),
        opts=child(),
    )
    return sa


def secrets(sa: gcp.serviceaccount.Account) -> dict[str, pulumi.Input[str]]:
    """The API key and HF token in Secret Manager (created, or existing ones), readable by the VMs only."""
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


def weights_bucket(sa: gcp.serviceaccount.Account) -> gcp.storage.Bucket:
    """The weights mirror: a private bucket in the region (uniform access, public access prevented,
    encrypted at rest by Google) the first replica fills once and later replicas restore from."""
    # Bucket names are global: this project and stack's digest plus a random suffix kept in the stack's state.
    suffix = random.RandomId(f"{p.name}-weights", byte_length=4, opts=child())
    bucket = gcp.storage.Bucket(
        f"{p.name}-weights",
        name=suffix.hex.apply(lambda h: global_bucket_name(p.name, p.scope, project_id, h)),
        location=region,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        force_destroy=True,
        labels=labels,
        opts=child(),
    )
    gcp.storage.BucketIAMMember(
        f"{p.name}-weights",
        bucket=bucket.name,
        role="roles/storage.objectAdmin",
        member=sa.email.apply(lambda e: f"serviceAccount:{e}"),
        opts=child(),
    )
    return bucket


def groups(
    net: gcp.compute.Network,
    subnet: gcp.compute.Subnetwork,
    sa: gcp.serviceaccount.Account,
    ids: dict[str, pulumi.Input[str]],
    bucket: gcp.storage.Bucket,
) -> tuple[gcp.compute.HealthCheck, list[tuple[gcp_config.Group, gcp.compute.RegionInstanceGroupManager]]]:
    """One regional managed group per provisioning model, across the zones, each with its autoscaler.

    Spot: a spot group (the fleet above the base) and a standard group holding the review's on-demand
    base replicas (the fallback when spot capacity is gone). Otherwise one standard group. Updates
    surge one VM per zone and take none away (100% healthy); autohealing waits past the driver install."""
    script = pulumi.Output.all(ids["apiKey"], ids["hfToken"], bucket.name).apply(
        lambda a: gcp_config.startup_script(p, {"apiKey": a[0], "hfToken": a[1]}, a[2])
    )
    metadata = {
        "startup-script": script,
        "shutdown-script": gcp_config.shutdown_script(p),  # preemption, scale-in, rolling update: drain first
        "install-nvidia-driver": "True",
        "enable-oslogin": "TRUE",
    }
    check = gcp.compute.HealthCheck(
        f"{p.name}-health",
        name=f"{names.base}-health",
        # the VM's readiness endpoint: 200 only while vLLM serves an authenticated 1-token completion
        http_health_check={"port": gcp_config.ready_port(p), "request_path": gcp_config.READY_PATH},
        check_interval_sec=r.period_s,
        timeout_sec=r.timeout_s,
        unhealthy_threshold=r.failure_threshold,
        healthy_threshold=1,
        opts=child(),
    )
    out = []
    for g in gcp_config.groups(p):
        # g2-standard-* bundles its L4s: no guest_accelerators block; GPUs can't live-migrate: TERMINATE.
        scheduling = (
            {
                "provisioning_model": "SPOT",
                "preemptible": True,
                "automatic_restart": False,
                "on_host_maintenance": "TERMINATE",
                "instance_termination_action": "DELETE",  # the group recreates it when spot returns
            }
            if g.spot
            else {
                "provisioning_model": "STANDARD",
                "preemptible": False,
                "automatic_restart": True,
                "on_host_maintenance": "TERMINATE",
            }
        )
        template = gcp.compute.InstanceTemplate(
            f"{p.name}-{g.label}",
            name_prefix=f"{names.base}-{g.label[:4]}-",
            machine_type=p.offer.instance_type,
            labels=labels,
            tags=[tag],
            disks=[
                {
                    "source_image": image,
                    "disk_size_gb": gcp_config.BOOT_BASE_GB + p.storage_gb,
                    "disk_type": "pd-balanced",
                    "boot": True,
                    "auto_delete": True,
                    "labels": labels,
                }
            ],
            # an ephemeral address for egress (image, weights); ingress only from Google's front ends
            network_interfaces=[{"network": net.id, "subnetwork": subnet.id, "access_configs": [{}]}],
            metadata=metadata,
            scheduling=scheduling,
            service_account={"email": sa.email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]},
            shielded_instance_config=shielded,
            opts=child(),
        )
        group = gcp.compute.RegionInstanceGroupManager(
            f"{p.name}-{g.label}",
            name=f"{names.base}-{g.label}",
            base_instance_name=f"{names.base}-{g.label[:4]}",
            region=region,
            distribution_policy_zones=zones,
            versions=[{"name": "primary", "instance_template": template.self_link_unique}],
            auto_healing_policies={"health_check": check.id, "initial_delay_sec": gcp_config.autoheal_delay_s(p)},
            named_ports=[{"name": "http", "port": r.port}],
            update_policy={
                "type": "PROACTIVE",
                "minimal_action": "REPLACE",
                "replacement_method": "SUBSTITUTE",
                "max_surge_fixed": len(zones),  # a regional group surges at least one VM per zone
                "max_unavailable_fixed": 0,  # nothing leaves before its replacement is healthy
                "min_ready_sec": gcp_config.autoheal_delay_s(p),
            },
            wait_for_instances=False,
            all_instances_config={"labels": labels},  # the owner and expiry marks on every VM it makes
            opts=child(ignore_changes=["targetSize"]),  # the autoscaler owns it
        )
        policy: dict = {
            "min_replicas": 0 if p.window else g.min_replicas,
            "max_replicas": g.max_replicas,
            "cooldown_period": gcp_config.autoheal_delay_s(p),
            "mode": "ON",
        }
        if g.max_replicas > g.min_replicas:  # vLLM's requests in flight per VM at the review's target
            policy["metrics"] = [gcp_config.scaling_metric(p)]
        if p.window:
            policy["scaling_schedules"] = [gcp_config.scaling_schedule(p, g.min_replicas)]
        gcp.compute.RegionAutoscaler(
            f"{p.name}-{g.label}",
            name=f"{names.base}-{g.label}",
            region=region,
            target=group.id,
            autoscaling_policy=policy,
            opts=child(),
        )
        out.append((g, group))
    return check, out


def load_balancer(
    check: gcp.compute.HealthCheck, members: list[tuple[gcp_config.Group, gcp.compute.RegionInstanceGroupManager]]
) -> gcp.compute.GlobalAddress:
    """An external Application Load Balancer: backend service (each group, at most the review's SLO-bound
    requests/s per VM), URL map, HTTPS proxy with a Google-managed certificate for the domain (else HTTP
    on port 80 with allowPlainHttp), a global forwarding rule on the stack's global address. Callers
    outside allowedCidrs are refused by a Cloud Armor policy (a firewall can't see them through the proxy)."""
    address = gcp.compute.GlobalAddress(f"{p.name}-ip", name=names.base, labels=labels, opts=child())
    armor = None
    if not gcp_config.open_to_all(p):
        armor = gcp.compute.SecurityPolicy(
            f"{p.name}-callers",
            name=f"{names.base}-callers",
            description=f"selfhost {p.scope}: allowedCidrs only",
            rules=gcp_config.armor_rules(p),
            labels=labels,
            opts=child(),
        )
    backend = gcp.compute.BackendService(
        f"{p.name}-backend",
        name=names.base,
        protocol="HTTP",
        port_name="http",
        load_balancing_scheme="EXTERNAL_MANAGED",
        timeout_sec=gcp_config.BACKEND_TIMEOUT_S,
        connection_draining_timeout_sec=drain.drain_seconds(p),  # a leaving VM finishes the p99 request
        health_checks=check.id,
        security_policy=armor.self_link if armor else None,
        backends=[
            {
                "group": group.instance_group,
                "balancing_mode": "RATE",
                "max_rate_per_instance": gcp_config.capacity_rps(p),
                "capacity_scaler": 1.0,
            }
            for _, group in members
        ],
        opts=child(),
    )
    url_map = gcp.compute.URLMap(f"{p.name}-urls", name=names.base, default_service=backend.id, opts=child())
    if p.domain:
        cert = gcp.compute.ManagedSslCertificate(
            f"{p.name}-cert", name=names.base, managed={"domains": [p.domain]}, opts=child()
        )
        proxy: gcp.compute.TargetHttpsProxy | gcp.compute.TargetHttpProxy = gcp.compute.TargetHttpsProxy(
            f"{p.name}-https", name=names.base, url_map=url_map.id, ssl_certificates=[cert.id], opts=child()
        )
    else:
        proxy = gcp.compute.TargetHttpProxy(f"{p.name}-http", name=names.base, url_map=url_map.id, opts=child())
    gcp.compute.GlobalForwardingRule(
        f"{p.name}-rule",
        name=names.base,
        target=proxy.id,
        ip_address=address.id,
        port_range=str(gcp_config.listener_port(p)),
        load_balancing_scheme="EXTERNAL_MANAGED",
        labels=labels,
        opts=child(),
    )
    return address


# ---- the program: the steps in order -----------------------------------------------------------------
net, subnet = network()
sa = identity()
ids = secrets(sa)
bucket = weights_bucket(sa)
check, members = groups(net, subnet, sa, ids, bucket)
address = load_balancer(check, members)

# ---- exports (the cost review's figures are added by the component) ---------------------------------
host = p.domain or None
url = address.address.apply(lambda ip: f"https://{host}" if host else f"http://{ip}")
endpoint.finish(
    endpointUrl=url,
    healthUrl=url.apply(lambda u: u + r.path),
    publicIp=address.address,
    dnsRecord=address.address.apply(lambda ip: f"{host} A {ip}") if host else None,
    network=net.name,
    machineType=p.offer.instance_type,
    region=region,
    zones=zones,
    image=image,
    weightsMirror=bucket.name.apply(lambda b: f"gs://{b}/hf/{p.fit.settings.model_repo}.tar"),
    spot=spot,
    minReplicas=fleet.min_replicas,
    maxReplicas=fleet.max_replicas,
    onDemandBaseReplicas=fleet.base_ondemand_replicas if spot else None,
    maxRatePerReplica=gcp_config.capacity_rps(p),
    targetInflightPerReplica=p.fleet.inflight_per_replica,  # vllm:num_requests_running + waiting, per VM
    drainSeconds=drain.drain_seconds(p),
    groupNames=[group.name for _, group in members],
    groupName=members[0][1].name,
)
