"""selfhost on AWS: vLLM serving Llama 3.x on g5.* / p4d.24xlarge, costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends
`pulumi up` with one line and nothing declared), then the steps secrets -> network -> identity ->
instances -> schedule, then the exports. Shared pieces (config -> spec, cost review, budget, the
VllmEndpoint component, exports) come from selfhost.stack; the boot script and IAM policy text from
selfhost.stack.aws_config.
"""

import base64
import json

import pulumi
import pulumi_aws as aws

from selfhost.aws.api import DEFAULT_AMI_OS, ami_parameter, check_gpu_quota
from selfhost.stack import aws_config
from selfhost.stack.component import VllmEndpoint, read_config, refusals, secret, stack_scope
from selfhost.stack.plan import flag, str_list

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(aws_config.KEYS)
    # The provider's region is where the instances run, so it is the region the review prices.
    chosen = aws_config.resolve_region(config.get("region"), pulumi.Config("aws").get("region"), None)
    p = aws_config.plan({**config, "region": chosen} if chosen else config, scope=stack_scope())
    region = chosen or p.review.resolved.price.region or p.offer.region
    if flag(config, "checkQuota"):  # needs AWS credentials at preview time: opt-in (recommended in CI)
        check_gpu_quota(p.offer.instance_type, p.offer.vcpus, region, p.pricing)

spot = p.pricing == "spot"
az = config.get("availabilityZone") or None
os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
tags = {**p.labels, aws_config.STACK_TAG: p.scope}
prefix = p.scope.replace("/", "-")[:200] + "-"  # launch template and group names: unique per project and stack
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


def network() -> tuple[pulumi.Input[list[str]], aws.ec2.SecurityGroup, aws.ec2.Eip]:
    """Subnets (configured, or the default VPC's), the API port's security group, the stable address."""
    subnet_ids = str_list(config, "subnetIds")
    if subnet_ids:
        vpc_id = config.get("vpcId") or aws.ec2.get_subnet_output(id=subnet_ids[0]).vpc_id
        subnets: pulumi.Input[list[str]] = subnet_ids
    else:
        vpc_id = config.get("vpcId") or aws.ec2.get_vpc_output(default=True).id
        filters = [{"name": "vpc-id", "values": [vpc_id]}]
        if az:
            filters.append({"name": "availability-zone", "values": [az]})
        subnets = aws.ec2.get_subnets_output(filters=filters).ids
    v4 = [c for c in p.allowed_cidrs if ":" not in c]
    v6 = [c for c in p.allowed_cidrs if ":" in c]
    sg = aws.ec2.SecurityGroup(
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
                "description": "HTTPS (TLS proxy to vLLM)" if p.domain else "vLLM OpenAI API",
            }
        ],
        egress=[
            {
                "protocol": "-1",
                "from_port": 0,
                "to_port": 0,
                "cidr_blocks": ["0.0.0.0/0"],
                "description": "image pull, Hugging Face download, AWS APIs, ACME",
            }
        ],
        tags=tags,
        opts=child(),
    )
    eip = aws.ec2.Eip(f"{p.name}-ip", domain="vpc", tags=tags, opts=child())
    return subnets, sg, eip


def identity(arns: dict[str, pulumi.Input[str]]) -> aws.iam.InstanceProfile:
    """The instance role: read the two secrets, attach this stack's address, report its own health."""
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
        policy=pulumi.Output.all(arns["apiKey"], arns["hfToken"]).apply(
            lambda a: aws_config.instance_policy(list(a), p.scope)
        ),
    )
    return aws.iam.InstanceProfile(f"{p.name}-vm", role=role.name, tags=tags, opts=child())


def instances(
    arns: dict[str, pulumi.Input[str]],
    subnets: pulumi.Input[list[str]],
    sg: aws.ec2.SecurityGroup,
    eip: aws.ec2.Eip,
    profile: aws.iam.InstanceProfile,
) -> tuple[aws.autoscaling.Group, aws.ec2.LaunchTemplate, pulumi.Input[str], aws.ec2.CapacityReservation | None]:
    """The launch template (IMDSv2, encrypted root, the boot script) and the group of one that runs it."""
    ami = config.get("amiId") or aws.ssm.get_parameter_output(name=ami_parameter(os_name)).insecure_value
    script = pulumi.Output.all(arns["apiKey"], arns["hfToken"], eip.allocation_id).apply(
        lambda a: aws_config.user_data(p, {"apiKey": a[0], "hfToken": a[1]}, region, a[2])
    )
    reservation = None
    if flag(config, "reserveCapacity"):
        reservation = aws.ec2.CapacityReservation(
            f"{p.name}-odcr",
            instance_type=p.offer.instance_type,
            instance_platform="Linux/UNIX",
            availability_zone=az,
            instance_count=1,
            instance_match_criteria="targeted",
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
        vpc_security_group_ids=[sg.id],
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
        capacity_reservation_specification=(
            {"capacity_reservation_target": {"capacity_reservation_id": reservation.id}} if reservation else None
        ),
        user_data=script.apply(lambda s: base64.b64encode(s.encode()).decode()),
        tag_specifications=[{"resource_type": "instance", "tags": tags}, {"resource_type": "volume", "tags": tags}],
        update_default_version=True,
        tags=tags,
        opts=child(),
    )
    group = aws.autoscaling.Group(
        f"{p.name}-group",
        name_prefix=prefix,
        min_size=1,
        max_size=1,
        desired_capacity=1,
        vpc_zone_identifiers=subnets,
        capacity_rebalance=spot,
        health_check_type="EC2",
        health_check_grace_period=p.readiness.initial_delay_s,
        mixed_instances_policy={
            "instances_distribution": {
                "on_demand_base_capacity": 0 if spot else 1,
                "on_demand_percentage_above_base_capacity": 0 if spot else 100,
                "spot_allocation_strategy": "price-capacity-optimized",
            },
            "launch_template": {
                "launch_template_specification": {
                    "launch_template_id": template.id,
                    "version": template.latest_version.apply(str),
                },
                "overrides": [{"instance_type": p.offer.instance_type}],
            },
        },
        instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 0}},
        tags=[{"key": k, "value": v, "propagate_at_launch": True} for k, v in tags.items()],
        opts=child(ignore_changes=["desiredCapacity", "minSize", "maxSize"] if p.window else None),
    )
    return group, template, ami, reservation


def schedule(group: aws.autoscaling.Group) -> list[aws.autoscaling.Schedule]:
    """A part-time schedule: scale to one at the window's start and to zero at its end (the costed hours)."""
    if p.window is None:
        return []
    w = p.window
    actions = []
    for action, size, cron in (("start", 1, w.start_cron()), ("stop", 0, w.stop_cron())):
        actions.append(
            aws.autoscaling.Schedule(
                f"{p.name}-{action}",
                scheduled_action_name=f"selfhost-{action}",
                autoscaling_group_name=group.name,
                min_size=size,
                max_size=size,
                desired_capacity=size,
                recurrence=cron,
                time_zone=w.time_zone,
                opts=child(),
            )
        )
    return actions


# ---- the program: the steps in order -----------------------------------------------------------------
arns = secrets()
subnets, sg, eip = network()
profile = identity(arns)
group, template, ami, reservation = instances(arns, subnets, sg, eip, profile)
schedule(group)

# ---- exports (the cost review's figures are added by the component) ---------------------------------
host = p.domain or None
url = eip.public_ip.apply(lambda ip: f"https://{host}" if host else f"http://{ip}:{p.port}")
endpoint.finish(
    endpointUrl=url,
    healthUrl=url.apply(lambda u: u + p.readiness.path),
    groupName=group.name,
    groupId=group.id,
    launchTemplateId=template.id,
    publicIp=eip.public_ip,
    dnsRecord=eip.public_ip.apply(lambda ip: f"{host} A {ip}") if host else None,
    amiId=ami,
    securityGroupId=sg.id,
    instanceType=p.offer.instance_type,
    spot=spot,
    capacityReservationId=reservation.id if reservation else None,
)
