"""AWS: g5.* or p4d.24xlarge in an Auto Scaling group of one, running vLLM under systemd.

What differs from the other clouds: the GPU AMI (AWS's public SSM parameter), secrets in Secrets
Manager (or SSM SecureString) read at boot through the instance role, recovery by the group
(spot with capacity rebalancing; an in-VM readiness watchdog marks a wedged server unhealthy), a
stable Elastic IP the instance attaches at boot, and an optional On-Demand Capacity Reservation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from costing.catalog import offers_for
from costing.errors import UserError
from selfhost.aws.api import DEFAULT_AMI_OS, GPU_AMI_PARAMETERS, ami_parameter, check_gpu_quota
from selfhost.stack.boot_script import boot_script
from selfhost.stack.plan import StackPlan, flag, plan_stack, str_list

KEYS = (
    "instanceType",
    "gpu",
    "reserveCapacity",
    "availabilityZone",
    "vpcId",
    "subnetIds",
    "amiId",
    "amiOs",
    "apiKeySecretArn",
    "hfTokenSecretArn",
    "image",
    "checkQuota",
)
REF_KEYS = {"apiKey": "apiKeySecretArn", "hfToken": "hfTokenSecretArn"}
ROOT_BASE_GB = 100  # the Deep Learning AMI's root snapshot plus the vllm/vllm-openai image
ROOT_DEVICE = {"ubuntu-22.04": "/dev/sda1", "amazon-linux-2023": "/dev/xvda"}
STACK_TAG = "selfhost-stack"


def _target(config: Mapping[str, Any]) -> dict[str, Any]:
    instance_type = config.get("instanceType")
    if instance_type:
        offers = [o for o in offers_for(cloud="aws") if o.instance_type == instance_type]
        if not offers:
            known = ", ".join(sorted({o.instance_type for o in offers_for(cloud="aws")}))
            raise UserError(
                f"unknown AWS instance type {instance_type!r} (the stack runs g5.* and p4d.24xlarge)",
                f"pulumi config set instanceType one of: {known}",
            )
        return {"offer": offers[0].id}
    return {"gpu": config.get("gpu") or "A10G"}


def _check_refs(config: Mapping[str, Any]) -> None:
    for key in REF_KEYS.values():
        ref = config.get(key)
        if ref and not str(ref).startswith(("arn:aws:secretsmanager:", "arn:aws:ssm:")):
            raise UserError(
                f"{key} {ref!r} is not a Secrets Manager or SSM parameter ARN",
                f"pulumi config set {key} arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME",
            )


def plan(config: Mapping[str, Any]) -> StackPlan:
    _check_refs(config)
    os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
    if os_name not in GPU_AMI_PARAMETERS:
        raise UserError(
            f"unknown amiOs {os_name!r}", f"pulumi config set amiOs one of: {', '.join(GPU_AMI_PARAMETERS)}"
        )
    p = plan_stack("aws", config, _target(config), secret_ref_keys=REF_KEYS, default_name="selfhost-aws")
    if flag(config, "reserveCapacity"):
        if not p.pricing.startswith("reserved"):
            raise UserError(
                "reserveCapacity holds an On-Demand Capacity Reservation, billed whether used or not; "
                f"it goes with reserved pricing, not {p.pricing}",
                "pulumi config set pricing reserved-1y, or drop reserveCapacity",
            )
        if not config.get("availabilityZone"):
            raise UserError(
                "reserveCapacity needs availabilityZone: a capacity reservation lives in one zone",
                "pulumi config set availabilityZone us-east-1a",
            )
    return p


def resolve_region(stack_region: str | None, provider_region: str | None, offer_region: str) -> str:
    """The provider's region (aws:region, else AWS_REGION) is where resources go; the boot script must agree."""
    import os

    provider_region = provider_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if stack_region and provider_region and stack_region != provider_region:
        raise UserError(
            f"stack config region {stack_region} differs from aws:region {provider_region}",
            f"pulumi config set aws:region {stack_region} (or drop region)",
        )
    return stack_region or provider_region or offer_region


def fetch_command(ref: str, region: str) -> str:
    """Shell command printing a secret's value, by ARN, with the instance role's credentials."""
    if ref.startswith("arn:aws:ssm:"):
        name = "/" + ref.split(":parameter/", 1)[1]
        return f"aws ssm get-parameter --region {region} --with-decryption --name {name} --query Parameter.Value --output text"
    return f"aws secretsmanager get-secret-value --region {region} --secret-id {ref} --query SecretString --output text"


def user_data(p: StackPlan, refs: dict[str, str], region: str, allocation_id: str) -> str:
    """The boot script: IMDSv2 for the instance id, attach the Elastic IP, then the vLLM unit and watchdog."""
    prelude = f"""IMDS_TOKEN=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
curl -fsS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" http://169.254.169.254/latest/meta-data/instance-id > /opt/selfhost/instance-id
for i in 1 2 3 4 5; do
  aws ec2 associate-address --region {region} --allocation-id {allocation_id} --instance-id "$(cat /opt/selfhost/instance-id)" --allow-reassociation && break
  sleep 10
done"""
    fetch = {p.env_names[key]: fetch_command(ref, region) for key, ref in refs.items()}
    action = (
        f'aws autoscaling set-instance-health --region {region} --instance-id "$(cat /opt/selfhost/instance-id)" '
        "--health-status Unhealthy"
    )
    return boot_script(p, fetch, prelude=prelude, watchdog_action=action)


def instance_policy(secret_arns: list[str], stack: str) -> str:
    """Read only this stack's two secrets; attach only this stack's address; report only its own health."""
    ssm = [a for a in secret_arns if a.startswith("arn:aws:ssm:")]
    sm = [a for a in secret_arns if not a.startswith("arn:aws:ssm:")]
    statements = []
    if sm:
        statements.append(
            {"Sid": "ReadVllmSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sm}
        )
    if ssm:
        statements.append(
            {"Sid": "ReadVllmParameters", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": ssm}
        )
    statements += [
        {
            "Sid": "AttachStackAddress",
            "Effect": "Allow",
            "Action": "ec2:AssociateAddress",
            "Resource": "*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}},
        },
        {
            "Sid": "ReportOwnHealth",
            "Effect": "Allow",
            "Action": "autoscaling:SetInstanceHealth",
            "Resource": "*",
            "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{STACK_TAG}": stack}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def build(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and cost (raising before any resource), then declare the group and what it needs."""
    import pulumi

    # The provider's region is where the instance runs, so it is the region the review prices.
    chosen = resolve_region(config.get("region"), pulumi.Config("aws").get("region"), "") or None
    p = plan({**config, "region": chosen} if chosen else config)
    import pulumi_aws as aws

    from selfhost.stack.component import VllmEndpoint, secret

    region = chosen or p.offer.region
    if flag(config, "checkQuota"):  # needs AWS credentials at preview time: opt-in (recommended in CI)
        check_gpu_quota(p.offer.instance_type, p.offer.vcpus, region, p.pricing)
    az = config.get("availabilityZone") or None
    spot = p.pricing == "spot"
    tags = {**p.labels, STACK_TAG: p.name}
    subnet_ids = str_list(config, "subnetIds")
    os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
    endpoint = VllmEndpoint(p)
    child = endpoint.child

    # Secrets: created from `pulumi config set --secret` values, or existing ARNs from config.
    arns: dict[str, Any] = {}
    for key in ("apiKey", "hfToken"):
        if p.secret_refs[key]:
            arns[key] = p.secret_refs[key]
            continue
        slug = "api-key" if key == "apiKey" else "hf-token"
        store = aws.secretsmanager.Secret(
            f"{p.name}-{slug}",
            name_prefix=f"{p.name}/{slug}-",
            tags=tags,
            description=f"selfhost {p.name}: {p.env_names[key]}",
            opts=child(),
        )
        aws.secretsmanager.SecretVersion(
            f"{p.name}-{slug}", secret_id=store.id, secret_string=secret(p.secrets[key]), opts=child()
        )
        arns[key] = store.arn

    # Network: the configured subnets, or the default VPC's (in the reservation's zone when reserving).
    if subnet_ids:
        vpc_id = config.get("vpcId") or aws.ec2.get_subnet_output(id=subnet_ids[0]).vpc_id
        subnets: Any = subnet_ids
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
        description=f"selfhost {p.name}: vLLM API port from allowed CIDRs only",
        ingress=[
            {
                "protocol": "tcp",
                "from_port": p.port,
                "to_port": p.port,
                "cidr_blocks": v4 or None,
                "ipv6_cidr_blocks": v6 or None,
                "description": "vLLM OpenAI API",
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
    eip = aws.ec2.Eip(f"{p.name}-ip", domain="vpc", tags=tags, opts=child())

    # Instance identity: read the two secrets, attach the address, report health. Nothing else.
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
        policy=pulumi.Output.all(arns["apiKey"], arns["hfToken"]).apply(lambda a: instance_policy(list(a), p.name)),
    )
    profile = aws.iam.InstanceProfile(f"{p.name}-vm", role=role.name, tags=tags, opts=child())

    ami = config.get("amiId") or aws.ssm.get_parameter_output(name=ami_parameter(os_name)).insecure_value
    script = pulumi.Output.all(arns["apiKey"], arns["hfToken"], eip.allocation_id).apply(
        lambda a: user_data(p, {"apiKey": a[0], "hfToken": a[1]}, region, a[2])
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
        name_prefix=f"{p.name}-",
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
                "device_name": ROOT_DEVICE[os_name],
                "ebs": {
                    "volume_size": ROOT_BASE_GB + p.storage_gb,
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
        name_prefix=f"{p.name}-",
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
        opts=child(),
    )

    return endpoint.finish(
        endpointUrl=eip.public_ip.apply(lambda ip: f"http://{ip}:{p.port}"),
        healthUrl=eip.public_ip.apply(lambda ip: f"http://{ip}:{p.port}{p.readiness.path}"),
        groupName=group.name,
        groupId=group.id,
        launchTemplateId=template.id,
        publicIp=eip.public_ip,
        amiId=ami,
        securityGroupId=sg.id,
        instanceType=p.offer.instance_type,
        spot=spot,
        capacityReservationId=reservation.id if reservation else None,
    )
