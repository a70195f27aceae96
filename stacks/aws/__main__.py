"""selfhost on AWS: vLLM serving Llama 3.x on g5.* / p4d.24xlarge, costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends
`pulumi up` with one line and nothing declared), then the steps secrets -> network -> load_balancer ->
weights_bucket -> identity -> instances -> scaling -> schedule, then the exports. The cost review sizes the fleet (min =
off-peak replicas, max = peak replicas at the target utilization, the on-demand base of a spot fleet,
requests/s per replica); the group, its target tracking and the load balancer are declared from it.
Shared pieces (config -> spec, cost review, budget, the VllmEndpoint component, exports) come from
selfhost.stack; the boot script and IAM policy text from selfhost.stack.aws_config.
"""

import base64
import json
from datetime import datetime, timezone

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from selfhost.aws.api import DEFAULT_AMI_OS, ami_parameter, check_gpu_quota
from selfhost.stack import aws_config
from selfhost.stack import drain_scripts as drain
from selfhost.stack.checks import global_bucket_name
from selfhost.stack.component import VllmEndpoint, read_config, refusals, secret, stack_scope
from selfhost.stack.plan import flag, str_list

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(aws_config.KEYS)
    # The provider's region is where the instances run, so it is the region the review prices.
    chosen = aws_config.resolve_region(config.get("region"), pulumi.Config("aws").get("region"), None)
    settings = {**config, "region": chosen} if chosen else config
    p = aws_config.plan(settings, scope=stack_scope())  # checked and costed before any AWS call
    # The subnets (configured, or the VPC's) and their zones: two or more, or nothing is declared.
    given = str_list(config, "subnetIds")
    vpc_id = config.get("vpcId") or (
        aws.ec2.get_subnet(id=given[0]).vpc_id if given else aws.ec2.get_vpc(default=True).id
    )
    ids = given or aws.ec2.get_subnets(filters=[{"name": "vpc-id", "values": [vpc_id]}]).ids
    found = [aws.ec2.get_subnet(id=s) for s in ids]
    by_zone = aws_config.zone_subnets([(s.id, s.availability_zone) for s in found])
    zone_ids = tuple(sorted({s.availability_zone_id for s in found}))
    vpc_cidr = aws.ec2.get_vpc(id=vpc_id).cidr_block
    # the zones known: spot replicas cost their mean market price (the group balances), and the load
    # balancer holds one public IPv4 address in each
    p = aws_config.plan(settings, scope=stack_scope(), zones=zone_ids)
    region = chosen or p.review.resolved.price.region or p.offer.region
    if flag(config, "checkQuota"):  # needs AWS credentials at preview time: opt-in (recommended in CI)
        check_gpu_quota(p.offer.instance_type, p.offer.vcpus, region, p.pricing)
    instance_types = aws_config.instance_types(p, zone_ids)
    account_id = str(aws.get_caller_identity().account_id or "")
    global_bucket_name(p.name, p.scope, account_id, "0" * 8)  # names it can build, or one line now

spot = p.pricing == "spot"
fleet = p.fleet
r = p.readiness
os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
tags = {**p.labels, aws_config.STACK_TAG: p.scope}
prefix = p.scope.replace("/", "-")[:200] + "-"  # launch template and group names: unique per project and stack
subnets = [s for zone in sorted(by_zone) for s in by_zone[zone]]
endpoint = VllmEndpoint(p)
child = endpoint.child


def secrets() -> dict[str, pulumi.Input[str]]:
    """The API key and HF token: created from `pulumi config set --secret` values, or existing ARNs."""
    arns: dict[str, pulumi.Input[str]] = {}
    for key in ("apiKey", "hfToken"):
        if p.secret_refs[key]:
            arns[key] = str(p.secret_refs[key])
            continue
        slug = "api-key" if key == "apiKey" else "hf-token"
        store = aws.secretsmanager.Secret(
            f"{p.name}-{slug}",
            name_prefix=f"selfhost/{p.scope}/{slug}-",
            tags=tags,
            description=f"selfhost {p.scope}: {p.env_names[key]}",
            opts=child(),
        )
        aws.secretsmanager.SecretVersion(
            f"{p.name}-{slug}", secret_id=store.id, secret_string=secret(p.secrets[key]), opts=child()
        )
        arns[key] = store.arn
    return arns


def network() -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
    """Two security groups: the load balancer's (the listener port from allowed CIDRs only) and the
    instances' (vLLM's port from the load balancer only; egress for the image, weights and AWS APIs)."""
    v4 = [c for c in p.allowed_cidrs if ":" not in c]
    v6 = [c for c in p.allowed_cidrs if ":" in c]
    lb_sg = aws.ec2.SecurityGroup(
        f"{p.name}-api",
        vpc_id=vpc_id,
        description=f"selfhost {p.scope}: API port from allowed CIDRs only",
        ingress=[
            {
                "protocol": "tcp",
                "from_port": p.public_port,
                "to_port": p.public_port,
                "cidr_blocks": v4 or None,
                "ipv6_cidr_blocks": v6 or None,
                "description": "HTTPS (ACM certificate on the load balancer)" if p.domain else "vLLM OpenAI API",
            }
        ],
        egress=[
            {
                "protocol": "tcp",
                "from_port": p.port,
                "to_port": p.port,
                "cidr_blocks": [vpc_cidr],
                "description": "to vLLM on the instances",
            }
        ],
        tags=tags,
        opts=child(),
    )
    vm_sg = aws.ec2.SecurityGroup(
        f"{p.name}-vm",
        vpc_id=vpc_id,
        description=f"selfhost {p.scope}: vLLM port from the load balancer only",
        ingress=[
            {
                "protocol": "tcp",
                "from_port": p.port,
                "to_port": p.port,
                "security_groups": [lb_sg.id],
                "description": "the load balancer (requests and /health)",
            }
        ],
        egress=[
            {
                "protocol": "-1",
                "from_port": 0,
                "to_port": 0,
                "cidr_blocks": ["0.0.0.0/0"],
                "description": "image pull, Hugging Face download, AWS APIs",
            }
        ],
        tags=tags,
        opts=child(),
    )
    return lb_sg, vm_sg


def load_balancer(lb_sg: aws.ec2.SecurityGroup) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, pulumi.Output]:
    """An Application Load Balancer in one subnet per zone; HTTPS with an ACM certificate (DNS-validated)
    when a domain is set, else HTTP on vLLM's port (allowPlainHttp). Targets: the group's instances,
    healthy on /health (the one path the auth layer opens) once the readiness gate has let them in."""
    lb = aws.lb.LoadBalancer(
        f"{p.name}-lb",
        name_prefix="vllm-",
        load_balancer_type="application",
        internal=False,
        subnets=[by_zone[zone][0] for zone in sorted(by_zone)],
        security_groups=[lb_sg.id],
        drop_invalid_header_fields=True,
        idle_timeout=aws_config.LB_IDLE_TIMEOUT_S,
        tags=tags,
        opts=child(),
    )
    target_group = aws.lb.TargetGroup(
        f"{p.name}-tg",
        name_prefix="vllm-",
        port=p.port,
        protocol="HTTP",
        target_type="instance",
        vpc_id=vpc_id,
        deregistration_delay=drain.drain_seconds(p),  # in-flight generations finish (the p99 request)
        health_check={
            "path": r.path,
            "port": "traffic-port",
            "protocol": "HTTP",
            "matcher": "200",
            "interval": r.period_s,
            "timeout": r.timeout_s,
            "healthy_threshold": 2,
            "unhealthy_threshold": r.failure_threshold,
        },
        tags=tags,
        opts=child(),
    )
    forward = [{"type": "forward", "target_group_arn": target_group.arn}]
    validation_records: pulumi.Output = pulumi.Output.from_input(None)
    if p.domain:
        certificate = aws.acm.Certificate(
            f"{p.name}-cert", domain_name=p.domain, validation_method="DNS", tags=tags, opts=child()
        )
        validation_records = certificate.domain_validation_options.apply(
            lambda options: [
                f"{o['resource_record_name']} {o['resource_record_type']} {o['resource_record_value']}"
                for o in (options or [])
            ]
        )
        # Waits until the certificate is issued: add the CNAME record ACM shows (certificateValidation).
        issued = aws.acm.CertificateValidation(f"{p.name}-cert", certificate_arn=certificate.arn, opts=child())
        aws.lb.Listener(
            f"{p.name}-https",
            load_balancer_arn=lb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=aws_config.TLS_POLICY,
            certificate_arn=issued.certificate_arn,
            default_actions=forward,
            tags=tags,
            opts=child(),
        )
    else:
        aws.lb.Listener(
            f"{p.name}-http",
            load_balancer_arn=lb.arn,
            port=p.public_port,
            protocol="HTTP",
            default_actions=forward,
            tags=tags,
            opts=child(),
        )
    return lb, target_group, validation_records


def weights_bucket() -> aws.s3.Bucket:
    """The weights mirror: a private, encrypted bucket the first replica fills once (after it served)
    and every later replica restores from before vLLM starts, so scale-out never waits on Hugging Face."""
    # Bucket names are global: this account and stack's digest plus a random suffix kept in the stack's state.
    suffix = random.RandomId(f"{p.name}-weights", byte_length=4, opts=child())
    bucket = aws.s3.Bucket(
        f"{p.name}-weights",
        bucket=suffix.hex.apply(lambda h: global_bucket_name(p.name, p.scope, account_id, h)),
        force_destroy=True,
        tags=tags,
        opts=child(),
    )
    aws.s3.BucketPublicAccessBlock(
        f"{p.name}-weights",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child(),
    )
    aws.s3.BucketOwnershipControls(
        f"{p.name}-weights", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child()
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{p.name}-weights",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
        opts=child(),
    )
    aws.s3.BucketPolicy(
        f"{p.name}-weights",
        bucket=bucket.id,
        policy=bucket.arn.apply(aws_config.tls_only_bucket_policy),
        opts=child(),
    )
    return bucket


def identity(
    arns: dict[str, pulumi.Input[str]], bucket: aws.s3.Bucket, target_group: aws.lb.TargetGroup
) -> aws.iam.InstanceProfile:
    """The instance role: read the two secrets and the weights mirror, report its own health and readiness,
    leave its target group when it drains, publish vLLM's load."""
    role = aws.iam.Role(
        f"{p.name}-vm",
        tags=tags,
        opts=child(),
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    aws.iam.RolePolicy(
        f"{p.name}-vm",
        role=role.id,
        opts=child(),
        policy=pulumi.Output.all(arns["apiKey"], arns["hfToken"], bucket.arn, target_group.arn).apply(
            lambda a: aws_config.instance_policy([a[0], a[1]], p.scope, a[2], a[3], drain.aws_namespace(p))
        ),
    )
    return aws.iam.InstanceProfile(f"{p.name}-vm", role=role.name, tags=tags, opts=child())


def instances(
    arns: dict[str, pulumi.Input[str]],
    bucket: aws.s3.Bucket,
    vm_sg: aws.ec2.SecurityGroup,
    target_group: aws.lb.TargetGroup,
    profile: aws.iam.InstanceProfile,
) -> tuple[aws.autoscaling.Group, aws.ec2.LaunchTemplate, aws.ec2.CapacityReservation | None]:
    """The launch template (IMDSv2, encrypted root, the boot script) and the group the review sized.

    The AMI is resolved once: later AMI releases change nothing (ignore_changes) unless amiId is set or
    refreshAmi is true; a template change rolls through the group launching before terminating."""
    pinned_ami = config.get("amiId")
    ami = pinned_ami or aws.ssm.get_parameter_output(name=ami_parameter(os_name)).insecure_value
    keep_ami = not pinned_ami and not flag(config, "refreshAmi")
    script = pulumi.Output.all(arns["apiKey"], arns["hfToken"], bucket.bucket, target_group.arn).apply(
        lambda a: aws_config.user_data(p, {"apiKey": a[0], "hfToken": a[1]}, region, a[2], a[3])
    )
    reservation = None
    if flag(config, "reserveCapacity"):
        reservation = aws.ec2.CapacityReservation(  # open: the group's instances in that zone use it
            f"{p.name}-odcr",
            instance_type=p.offer.instance_type,
            instance_platform="Linux/UNIX",
            availability_zone=config.get("availabilityZone"),
            instance_count=fleet.max_replicas,
            instance_match_criteria="open",
            end_date_type="unlimited",
            tags=tags,
            opts=child(),
        )
    template = aws.ec2.LaunchTemplate(
        f"{p.name}-vm",
        name_prefix=prefix,
        image_id=ami,
        instance_type=p.offer.instance_type,
        iam_instance_profile={"arn": profile.arn},
        # the replicas reach the internet (image, weights, Hugging Face) through the public subnets' gateway, so
        # each holds a public IPv4 address, declared: a custom VPC's public subnets often assign none by default
        # (the instance could pull nothing), and the review and `selfhost bill` price the declared address
        network_interfaces=[
            {
                "device_index": 0,
                "associate_public_ip_address": "true",
                "security_groups": [vm_sg.id],
                "delete_on_termination": "true",
            }
        ],
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
            "instance_metadata_tags": "disabled",
        },
        block_device_mappings=[
            {
                "device_name": aws_config.ROOT_DEVICE[os_name],
                "ebs": {
                    "volume_size": aws_config.ROOT_BASE_GB + p.storage_gb,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        user_data=script.apply(lambda s: base64.b64encode(s.encode()).decode()),
        tag_specifications=[{"resource_type": "instance", "tags": tags}, {"resource_type": "volume", "tags": tags}],
        update_default_version=True,
        tags=tags,
        opts=child(ignore_changes=["imageId"] if keep_ami else None),
    )
    ignored = ["desiredCapacity"]  # the target tracking policy (and the schedule) own it after creation
    if p.window:
        ignored += ["minSize", "maxSize"]  # the scheduled actions set them
    # A group created outside its window starts at the window's size (none), not full until the first stop.
    closed = p.window is not None and not p.window.open_at(datetime.now(timezone.utc))
    group = aws.autoscaling.Group(
        f"{p.name}-group",
        name_prefix=prefix,
        min_size=0 if closed else fleet.min_replicas,
        max_size=0 if closed else fleet.max_replicas,
        desired_capacity=0 if closed else fleet.min_replicas,
        vpc_zone_identifiers=subnets,
        target_group_arns=[target_group.arn],
        capacity_rebalance=spot,
        health_check_type="ELB",
        health_check_grace_period=aws_config.HEALTH_GRACE_S,
        default_instance_warmup=r.initial_delay_s,
        initial_lifecycle_hooks=[
            {  # the instance joins the target group only when its readiness gate completes this hook; the
                # gate's heartbeats keep it open until the projected cold start (drain.gate_deadline_s)
                "name": aws_config.READY_HOOK,
                "lifecycle_transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "default_result": "ABANDON",
                "heartbeat_timeout": drain.HOOK_HEARTBEAT_TIMEOUT_S,
            },
            {  # scale-in, instance refresh, rebalancing: the drain handler completes it once vLLM has finished
                "name": drain.DRAIN_HOOK,
                "lifecycle_transition": "autoscaling:EC2_INSTANCE_TERMINATING",
                "default_result": "CONTINUE",
                "heartbeat_timeout": drain.termination_hook_timeout_s(p),
            },
        ],
        mixed_instances_policy={
            "instances_distribution": {
                "on_demand_base_capacity": fleet.base_ondemand_replicas if spot else 0,
                "on_demand_percentage_above_base_capacity": 0 if spot else 100,
                "on_demand_allocation_strategy": "prioritized",  # the costed type first
                "spot_allocation_strategy": "price-capacity-optimized",
            },
            "launch_template": {
                "launch_template_specification": {
                    "launch_template_id": template.id,
                    "version": template.latest_version.apply(str),
                },
                "overrides": [{"instance_type": t} for t in instance_types],
            },
        },
        # An update (new template, new AMI when asked) and a spot rebalance launch the new instance and
        # wait for it to pass the gate and /health before the old one drains: 100% healthy throughout.
        instance_refresh={
            "strategy": "Rolling",
            "preferences": {
                "min_healthy_percentage": 100,
                "max_healthy_percentage": 200,
                "instance_warmup": str(r.initial_delay_s),
                "skip_matching": True,
            },
        },
        instance_maintenance_policy={"min_healthy_percentage": 100, "max_healthy_percentage": 200},
        tags=[{"key": k, "value": v, "propagate_at_launch": True} for k, v in tags.items()],
        opts=child(ignore_changes=ignored),
    )
    return group, template, reservation


def scaling(group: aws.autoscaling.Group) -> None:
    """Target tracking on what an LLM replica feels: requests in flight (vLLM's running + waiting, published
    by each replica every minute), kept at the review's SLO-bound concurrency at the target utilization
    (fleet.inflight_per_replica). Only where min and max differ; a part-time window's actions still win."""
    if fleet.max_replicas <= fleet.min_replicas:
        return
    aws.autoscaling.Policy(
        f"{p.name}-inflight",
        autoscaling_group_name=group.name,
        policy_type="TargetTrackingScaling",
        estimated_instance_warmup=r.initial_delay_s,
        target_tracking_configuration={
            "customized_metric_specification": {
                "namespace": drain.aws_namespace(p),
                "metric_name": drain.AWS_METRIC,
                "metric_dimensions": [{"name": "AutoScalingGroupName", "value": group.name}],
                "statistic": "Average",
            },
            "target_value": fleet.inflight_per_replica,
        },
        opts=child(),
    )


def schedule(group: aws.autoscaling.Group) -> list[aws.autoscaling.Schedule]:
    """A part-time schedule: the review's fleet at the window's start, zero at its end (the costed hours)."""
    if p.window is None:
        return []
    w = p.window
    actions = []
    sizes = ((fleet.min_replicas, fleet.max_replicas, fleet.min_replicas), (0, 0, 0))
    for action, (low, high, desired), cron in zip(
        ("start", "stop"), sizes, (w.start_cron(), w.stop_cron()), strict=True
    ):
        actions.append(
            aws.autoscaling.Schedule(
                f"{p.name}-{action}",
                scheduled_action_name=f"selfhost-{action}",
                autoscaling_group_name=group.name,
                min_size=low,
                max_size=high,
                desired_capacity=desired,
                recurrence=cron,
                time_zone=w.time_zone,
                opts=child(),
            )
        )
    return actions


# ---- the program: the steps in order -----------------------------------------------------------------
arns = secrets()
lb_sg, vm_sg = network()
lb, target_group, validation_records = load_balancer(lb_sg)
bucket = weights_bucket()
profile = identity(arns, bucket, target_group)
group, template, reservation = instances(arns, bucket, vm_sg, target_group, profile)
scaling(group)
schedule(group)

# ---- exports (the cost review's figures are added by the component) ---------------------------------
host = p.domain or None
url = lb.dns_name.apply(lambda dns: f"https://{host}" if host else f"http://{dns}:{p.public_port}")
endpoint.finish(
    endpointUrl=url,
    healthUrl=url.apply(lambda u: u + r.path),
    loadBalancerDns=lb.dns_name,
    dnsRecord=lb.dns_name.apply(lambda dns: f"{host} CNAME {dns}") if host else None,
    certificateValidation=validation_records if host else None,
    groupName=group.name,
    groupId=group.id,
    minReplicas=fleet.min_replicas,
    maxReplicas=fleet.max_replicas,
    onDemandBaseReplicas=fleet.base_ondemand_replicas if spot else None,  # on-demand/reserved: all of them
    targetInflightPerReplica=fleet.inflight_per_replica,  # vllm:num_requests_running + waiting, per replica
    drainSeconds=drain.drain_seconds(p),
    zones=sorted(by_zone),
    instanceTypes=instance_types,
    launchTemplateId=template.id,
    amiId=template.image_id,
    securityGroupId=vm_sg.id,
    loadBalancerSecurityGroupId=lb_sg.id,
    instanceType=p.offer.instance_type,
    weightsMirror=bucket.bucket.apply(lambda b: f"s3://{b}/{aws_config.weights_key(p)}"),
    spot=spot,
    capacityReservationId=reservation.id if reservation else None,
)
