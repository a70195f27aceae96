"""AWS, the non-resource part: config checks, the boot script, the instance role's policy text.

The resources are declared in stacks/aws/__main__.py. What differs from the other clouds: the GPU AMI
(AWS's public SSM parameter), secrets in Secrets Manager (or SSM SecureString) read at boot through
the instance role, recovery by the group (spot with capacity rebalancing; an in-VM readiness watchdog
marks a wedged server unhealthy), a stable Elastic IP the instance attaches at boot, an optional
On-Demand Capacity Reservation, and scheduled actions for a part-time schedule.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from costing.catalog import offers_for
from costing.errors import UserError
from selfhost.aws.api import DEFAULT_AMI_OS, GPU_AMI_PARAMETERS
from selfhost.stack.boot_script import boot_script
from selfhost.stack.checks import check_aws_ref, check_region
from selfhost.stack.plan import StackPlan, flag, plan_stack

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
        if ref:
            check_aws_ref(key, str(ref))


def plan(config: Mapping[str, Any], scope: tuple[str, str] = ("selfhost-aws", "dev")) -> StackPlan:
    """Checks and the cost review, Pulumi-free; `scope` is (Pulumi project, stack)."""
    _check_refs(config)
    os_name = str(config.get("amiOs") or DEFAULT_AMI_OS)
    if os_name not in GPU_AMI_PARAMETERS:
        raise UserError(
            f"unknown amiOs {os_name!r}", f"pulumi config set amiOs one of: {', '.join(GPU_AMI_PARAMETERS)}"
        )
    p = plan_stack("aws", config, _target(config), secret_ref_keys=REF_KEYS, default_name="selfhost-aws", scope=scope)
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


def user_data(p: StackPlan, refs: dict[str, str], region: str, allocation_id: str) -> str:
    """The boot script: IMDSv2 for the instance id, attach the Elastic IP, then the vLLM unit and watchdog."""
    if not re.fullmatch(r"eipalloc-[0-9a-f]{1,40}", allocation_id):
        raise UserError(f"Elastic IP allocation id {allocation_id!r} is malformed", "re-run pulumi up")
    q = shlex.quote
    imds = "http://169.254.169.254/latest"
    prelude = "\n".join(
        [
            f"IMDS_TOKEN=$(curl -fsS -X PUT {imds}/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')",
            f'curl -fsS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" {imds}/meta-data/instance-id'
            " > /opt/selfhost/instance-id",
            "for i in 1 2 3 4 5; do",
            f"  aws ec2 associate-address --region {q(region)} --allocation-id {q(allocation_id)}"
            ' --instance-id "$(cat /opt/selfhost/instance-id)" --allow-reassociation && break',
            "  sleep 10",
            "done",
        ]
    )
    fetch = {p.env_names[key]: fetch_command(ref, region) for key, ref in refs.items()}
    action = (
        f'aws autoscaling set-instance-health --region {q(region)} --instance-id "$(cat /opt/selfhost/instance-id)" '
        "--health-status Unhealthy"
    )
    return boot_script(p, fetch, prelude=prelude, watchdog_action=action)


def instance_policy(secret_arns: list[str], stack: str) -> str:
    """Read only this stack's two secrets; attach only this stack's address; report only its own health.

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
