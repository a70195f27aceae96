"""AWS, the non-resource part: config checks, the boot script, the instance role's policy text.

The resources are declared in stacks/aws/__main__.py. What differs from the other clouds: the GPU AMI
(AWS's public SSM parameter, resolved once and then kept), secrets in Secrets Manager (or SSM
SecureString) read at boot through the instance role, an Application Load Balancer in front of an Auto
Scaling group across two or more zones (spot with an on-demand base, every instance type with the same
GPUs), a launch lifecycle hook the instance completes only once it has served a 1-token authenticated
completion (the readiness gate), an in-VM watchdog that marks a wedged server unhealthy, an optional
On-Demand Capacity Reservation, and scheduled actions for a part-time schedule.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from costing.data.catalog import Offer, offers_for
from costing.errors import UserError
from selfhost.aws.api import DEFAULT_AMI_OS, GPU_AMI_PARAMETERS
from selfhost.stack import checks
from selfhost.stack import drain_scripts as drain
from selfhost.stack.boot_script import WeightsCache, boot_script
from selfhost.stack.checks import check_aws_ref, check_region
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
    "domain",
    "allowPlainHttp",
    "timeZone",
    "scheduleStart",
    "refreshAmi",
)
REF_KEYS = {"apiKey": "apiKeySecretArn", "hfToken": "hfTokenSecretArn"}
ROOT_BASE_GB = 100  # the Deep Learning AMI's root snapshot plus the vllm/vllm-openai image
ROOT_DEVICE = {"ubuntu-22.04": "/dev/sda1", "amazon-linux-2023": "/dev/xvda"}
STACK_TAG = "selfhost-stack"
READY_HOOK = "selfhost-ready"  # the launch lifecycle hook the readiness gate completes
MIN_ZONES = 2
LB_IDLE_TIMEOUT_S = 600  # a long non-streamed completion must not be cut at the default 60 s
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.3 and 1.2 only
TARGET_GROUP_ARN = re.compile(
    r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}"
)
HEALTH_GRACE_S = 120  # after the readiness gate completes the lifecycle hook: vLLM already serves


def target_of(config: Mapping[str, Any]) -> dict[str, Any]:
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
        if ref:
            check_aws_ref(key, str(ref))


def check_values(config: Mapping[str, Any]) -> None:
    """The AWS-only values, each against AWS's format, before any look-up or resource."""
    if config.get("amiId"):
        checks.check_pattern("amiId", config["amiId"], checks.AMI_ID, "an AMI id", "ami-0123456789abcdef0")
    if config.get("vpcId"):
        checks.check_pattern("vpcId", config["vpcId"], checks.VPC_ID, "a VPC id", "vpc-0123456789abcdef0")
    for subnet in str_list(config, "subnetIds"):
        checks.check_pattern("subnetIds", subnet, checks.SUBNET_ID, "a subnet id", "subnet-0123456789abcdef0,...")
    zone = config.get("availabilityZone")
    if zone:
        zone = checks.check_pattern("availabilityZone", zone, checks.AWS_ZONE, "an availability zone", "us-east-1a")
        region = config.get("region")
        if region and zone[:-1] != str(region):
            raise UserError(
                f"availabilityZone {zone} is not in the stack's region {region}",
                f"pulumi config set availabilityZone {region}a (a zone of {region})",
            )


def plan(
    config: Mapping[str, Any], scope: tuple[str, str] = ("selfhost-aws", "dev"), zones: tuple[str, ...] = ()
) -> StackPlan:
    """Checks and the cost review, Pulumi-free; `scope` is (Pulumi project, stack); `zones`: the zone IDs
    of the group's subnets (spot replicas are priced at their mean: the group balances across them)."""
    _check_refs(config)
    check_values(config)
    os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
    if os_name not in GPU_AMI_PARAMETERS:
        raise UserError(
            f"unknown amiOs {os_name!r}", f"pulumi config set amiOs one of: {', '.join(GPU_AMI_PARAMETERS)}"
        )
    p = plan_stack(
        "aws",
        config,
        target_of(config),
        secret_ref_keys=REF_KEYS,
        default_name="selfhost-aws",
        boot_disk_gb=ROOT_BASE_GB,  # the launch template's root volume: the system and image, then the weights
        scope=scope,
        acme_on_443=False,  # ACM validates the domain by a DNS record, not over port 443
        spot_zones=zones,
    )
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
    elif config.get("availabilityZone"):
        raise UserError(
            "availabilityZone pins one zone; the group spans every zone of the VPC (two or more) behind the "
            "load balancer, and only a capacity reservation lives in one zone",
            "drop availabilityZone (or use it with reserveCapacity and reserved pricing)",
        )
    return p


def instance_types(p: StackPlan, zones: tuple[str, ...] = ()) -> list[str]:
    """Every AWS instance type with the plan's GPUs (same model, same count: the same vLLM command runs
    unchanged) that the fit check accepts and costs at most the costed type on demand, the costed one
    first, then by on-demand price.

    On-demand takes them in that order (the costed type unless its capacity is short). Spot picks among
    its pools by price and capacity, so a spot group keeps only the types whose market price in every
    one of the group's `zones` is at most the costed type's there: the review's price is an upper bound
    on what the group can launch."""
    from costing.data.resolve import fit_request
    from costing.performance.fit import fit_check

    chosen = p.offer
    same = offers_for(gpu=chosen.gpu, gpus=chosen.gpus, cloud="aws")
    fit_check(fit_request(p.spec, chosen.gpu, chosen.gpus))  # raises DoesNotFit if the shape cannot hold it
    rest = sorted((o for o in same if o.instance_type != chosen.instance_type), key=lambda o: (o.on_demand, o.id))
    region = p.review.resolved.price.region if p.review.resolved.price else chosen.region

    def on_demand(o: Offer) -> float:
        price = o.price("on-demand", region)
        return price.usd_per_hour if price else float("inf")

    # On-demand capacity (an on-demand group, a spot group's base) launches down this list when the costed
    # type is short: only types at most the costed type's on-demand price, so the review is an upper bound.
    rest = [o for o in rest if on_demand(o) <= on_demand(chosen)]
    if p.pricing == "spot":

        def market(o: Offer) -> dict[str, float]:
            return {zone: r.usd_per_hour for zone, r in o.by_zone("spot", region).items()}

        costed = market(chosen)
        where = zones or tuple(costed)
        rest = [
            o for o in rest if (m := market(o)) and all(z in m and z in costed and m[z] <= costed[z] for z in where)
        ]
    return [chosen.instance_type, *(o.instance_type for o in rest)]


def zone_subnets(subnets: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(subnet id, zone) pairs -> zone -> subnet ids; fewer than two zones is refused (the load balancer
    and the group need two, so one zone's outage leaves replicas serving)."""
    by_zone: dict[str, list[str]] = {}
    for subnet_id, zone in subnets:
        by_zone.setdefault(zone, []).append(subnet_id)
    if len(by_zone) < MIN_ZONES:
        found = ", ".join(sorted(by_zone)) or "none"
        raise UserError(
            f"the subnets span {len(by_zone)} availability zone(s) ({found}); the load balancer and the group "
            f"need {MIN_ZONES} or more",
            "pulumi config set subnetIds 'subnet-a,subnet-b' with subnets in two zones (or a vpcId whose subnets do)",
        )
    return by_zone


def resolve_region(stack_region: str | None, provider_region: str | None, offer_region: str | None) -> str | None:
    """The provider's region (aws:region, else AWS_REGION) is where resources go; the boot script must agree."""
    import os

    provider_region = provider_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if stack_region and provider_region and stack_region != provider_region:
        raise UserError(
            f"stack config region {stack_region} differs from aws:region {provider_region}",
            f"pulumi config set aws:region {stack_region} (or drop region)",
        )
    chosen = stack_region or provider_region or offer_region
    return check_region(chosen, "aws:region") if chosen else None


def fetch_command(ref: str, region: str) -> str:
    """Shell command printing a secret's value, by ARN, with the instance role's credentials (values quoted)."""
    q = shlex.quote
    if ref.startswith("arn:aws:ssm:") and ":parameter/" in ref:
        name = "/" + ref.split(":parameter/", 1)[1]
        return (
            f"aws ssm get-parameter --region {q(region)} --with-decryption --name {q(name)} "
            "--query Parameter.Value --output text"
        )
    return (
        f"aws secretsmanager get-secret-value --region {q(region)} --secret-id {q(ref)} "
        "--query SecretString --output text"
    )


def weights_key(p: StackPlan) -> str:
    """The mirror's object: one per model repo (the fit's, checked by check_model_repo)."""
    return f"hf/{p.fit.settings.model_repo}.tar"


def weights_cache(p: StackPlan, bucket: str, region: str) -> WeightsCache:
    """The S3 mirror's commands (values quoted). A stream over 50 GB needs its size up front."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise UserError(f"S3 bucket name {bucket!r} is malformed", "re-run pulumi up")
    q = shlex.quote
    url = f"s3://{bucket}/{weights_key(p)}"
    size = int(p.storage_gb * 1e9)
    return WeightsCache(
        where=url,
        exists=(
            f"aws s3api head-object --region {q(region)} --bucket {q(bucket)} --key {q(weights_key(p))} >/dev/null 2>&1"
        ),
        restore=f"aws s3 cp --region {q(region)} --only-show-errors {q(url)} -",
        save=f"aws s3 cp --region {q(region)} --only-show-errors --expected-size {size} - {q(url)}",
    )


def user_data(
    p: StackPlan, refs: dict[str, str], region: str, bucket: str | None = None, target_group_arn: str | None = None
) -> str:
    """The boot script: the vLLM unit, the readiness gate (completes the launch lifecycle hook only after a
    1-token authenticated completion succeeds on this machine, with heartbeats until the projected cold
    start) and the watchdog. No address is attached: clients reach the load balancer, which routes only
    to machines that passed the gate and its /health. With `target_group_arn`: the drain handler (spot
    interruption, rebalance, the termination hook) and the CloudWatch publisher of vLLM's load."""
    q = shlex.quote
    imds = "http://169.254.169.254/latest"
    prelude = "\n".join(
        [
            f"IMDS_TOKEN=$(curl -fsS -X PUT {imds}/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')",
            f'curl -fsS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" {imds}/meta-data/instance-id'
            " > /opt/selfhost/instance-id",
        ]
    )
    fetch = {p.env_names[key]: fetch_command(ref, region) for key, ref in refs.items()}
    me = '--instance-id "$(cat /opt/selfhost/instance-id)"'
    action = f"aws autoscaling set-instance-health --region {q(region)} {me} --health-status Unhealthy"
    group = (
        f"aws autoscaling describe-auto-scaling-instances --region {q(region)} --instance-ids "
        '"$(cat /opt/selfhost/instance-id)" --query "AutoScalingInstances[0].AutoScalingGroupName" --output text'
    )
    ready = (
        f"aws autoscaling complete-lifecycle-action --region {q(region)} {me} "
        f'--auto-scaling-group-name "$({group})" --lifecycle-hook-name {READY_HOOK} '
        "--lifecycle-action-result CONTINUE"
    )
    weights = weights_cache(p, bucket, region) if bucket else None
    if target_group_arn is not None and not TARGET_GROUP_ARN.fullmatch(target_group_arn):
        raise UserError(f"target group ARN {target_group_arn!r} is malformed", "re-run pulumi up")
    return boot_script(
        p,
        fetch,
        prelude=prelude,
        watchdog_action=action,
        ready_action=ready,
        weights=weights,
        gate=drain.aws_readiness_gate(p, region, READY_HOOK),
        drain=drain.aws_drain(p, region, target_group_arn) if target_group_arn else None,
    )


def instance_policy(
    secret_arns: list[str],
    stack: str,
    bucket_arn: str | None = None,
    target_group_arn: str | None = None,
    namespace: str = drain.AWS_NAMESPACE,
) -> str:
    """Read only this stack's two secrets; read and fill only its weights mirror; report only its own
    health and readiness (the lifecycle hooks); deregister only from its target group; publish only the
    stack's own selfhost/vLLM metrics (`namespace`, drain.aws_namespace).

    `stack` is the plan's scope (project/stack/name), the value of the STACK_TAG every resource carries."""
    ssm = [a for a in secret_arns if a.startswith("arn:aws:ssm:")]
    sm = [a for a in secret_arns if not a.startswith("arn:aws:ssm:")]
    statements: list[dict[str, Any]] = []
    if sm:
        statements.append(
            {"Sid": "ReadVllmSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sm}
        )
    if ssm:
        statements.append(
            {"Sid": "ReadVllmParameters", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": ssm}
        )
    if bucket_arn:
        statements.append(
            {
                "Sid": "WeightsMirror",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"],
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
            }
        )
    statements += [
        {
            "Sid": "FindOwnGroup",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeAutoScalingInstances",
            "Resource": "*",
        },
        {
            "Sid": "ReportOwnHealth",
            "Effect": "Allow",
            "Action": [
                "autoscaling:SetInstanceHealth",
                "autoscaling:CompleteLifecycleAction",
                "autoscaling:RecordLifecycleActionHeartbeat",
            ],
            "Resource": "*",
            "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{STACK_TAG}": stack}},
        },
        {
            "Sid": "PublishVllmLoad",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
        },
    ]
    if target_group_arn:
        statements.append(
            {
                "Sid": "LeaveOwnTargetGroup",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:DeregisterTargets",
                "Resource": target_group_arn,
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def tls_only_bucket_policy(bucket_arn: str) -> str:
    """Refuse any request to the weights mirror that is not over TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
