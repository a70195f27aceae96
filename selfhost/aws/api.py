"""boto3 helpers for the AWS stack and the CLI: GPU AMI lookup, current spot price, GPU quota check.

boto3 is imported inside the functions: importing this module stays cheap for `selfhost plan`.
Every function takes an optional `endpoint_url` (moto in tests; otherwise AWS_ENDPOINT_URL or AWS).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from costing.errors import UserError

# AWS's public SSM parameters for the Deep Learning Base OSS Nvidia Driver GPU AMIs
# (NVIDIA driver, Docker and the NVIDIA container toolkit installed; g5 and p4d supported).
GPU_AMI_PARAMETERS = {
    "ubuntu-22.04": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    "amazon-linux-2023": (
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
    ),
}
DEFAULT_AMI_OS = "ubuntu-22.04"

# EC2 service quotas (in vCPUs) that gate GPU instances, by instance family letter and market.
GPU_QUOTAS = {
    ("g", "on-demand"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("g", "spot"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", "on-demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("p", "spot"): ("L-7212CCBC", "All P4, P3 and P2 Spot Instance Requests"),
}


def client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _aws_error(err: Exception, what: str, fix: str) -> UserError:
    """botocore's errors as one line (credentials missing, access denied, not found...)."""
    code = getattr(err, "response", {}).get("Error", {}).get("Code") if hasattr(err, "response") else None
    detail = code or type(err).__name__
    return UserError(f"{what} failed ({detail}: {str(err).splitlines()[0][:200]})", fix)


def ami_parameter(os_name: str = DEFAULT_AMI_OS) -> str:
    if os_name not in GPU_AMI_PARAMETERS:
        raise UserError(f"no GPU AMI parameter for OS {os_name!r}", f"use one of: {', '.join(GPU_AMI_PARAMETERS)}")
    return GPU_AMI_PARAMETERS[os_name]


def gpu_ami_id(
    region: str, os_name: str = DEFAULT_AMI_OS, *, parameter: str | None = None, endpoint_url: str | None = None
) -> str:
    """The current GPU AMI id in `region`, from AWS's public SSM parameter (or your own `parameter`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = parameter or ami_parameter(os_name)
    try:
        value = client("ssm", region, endpoint_url).get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise UserError(
                f"the SSM parameter {name} does not exist in {region}",
                "pick a region where the Deep Learning AMI is published, or set amiId",
            ) from None
        raise _aws_error(
            err, f"reading SSM parameter {name}", "check AWS credentials and ssm:GetParameter access"
        ) from None
    except BotoCoreError as err:
        raise _aws_error(err, f"reading SSM parameter {name}", "configure AWS credentials (aws configure)") from None
    if not value.startswith("ami-"):
        raise UserError(f"SSM parameter {name} holds {value!r}, not an AMI id", "set amiId explicitly")
    return value


@dataclass(frozen=True)
class SpotPrice:
    instance_type: str
    region: str
    usd_per_hour: float  # the cheapest availability zone's latest price
    zone: str
    as_of: datetime
    by_zone: dict[str, float]


def spot_price(instance_type: str, region: str, *, endpoint_url: str | None = None) -> SpotPrice:
    """The current Linux spot price of `instance_type`: the latest price per zone, cheapest zone first."""
    from botocore.exceptions import BotoCoreError, ClientError

    ec2 = client("ec2", region, endpoint_url)
    latest: dict[str, tuple[datetime, float]] = {}
    try:
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=datetime.now(timezone.utc)
        )
        for page in pages:
            for row in page["SpotPriceHistory"]:
                zone, when, price = row["AvailabilityZone"], row["Timestamp"], float(row["SpotPrice"])
                if zone not in latest or when > latest[zone][0]:
                    latest[zone] = (when, price)
    except (ClientError, BotoCoreError) as err:
        raise _aws_error(
            err,
            f"describe_spot_price_history for {instance_type} in {region}",
            "check AWS credentials and ec2:DescribeSpotPriceHistory access",
        ) from None
    if not latest:
        raise UserError(
            f"no spot price for {instance_type} in {region}",
            "the type may not be offered as spot there: try another region or pricing on-demand",
        )
    zone = min(latest, key=lambda z: latest[z][1])
    return SpotPrice(
        instance_type, region, latest[zone][1], zone, latest[zone][0], {z: p for z, (_, p) in sorted(latest.items())}
    )


@dataclass(frozen=True)
class GpuQuota:
    code: str
    name: str
    vcpus_allowed: float
    vcpus_needed: int

    @property
    def enough(self) -> bool:
        return self.vcpus_allowed >= self.vcpus_needed


def quota_for(instance_type: str, pricing: str) -> tuple[str, str]:
    family = instance_type.split(".")[0][:1].lower()
    market = "spot" if pricing == "spot" else "on-demand"
    if (family, market) not in GPU_QUOTAS:
        raise UserError(f"no known GPU quota for instance type {instance_type}", "use a g5.* or p4d.* instance type")
    return GPU_QUOTAS[(family, market)]


def gpu_quota(
    instance_type: str, vcpus: int, region: str, pricing: str = "on-demand", *, endpoint_url: str | None = None
) -> GpuQuota:
    """The account's vCPU quota that gates `instance_type` (EC2 GPU quotas count vCPUs, not GPUs)."""
    from botocore.exceptions import BotoCoreError, ClientError

    code, name = quota_for(instance_type, pricing)
    try:
        quota = client("service-quotas", region, endpoint_url).get_service_quota(ServiceCode="ec2", QuotaCode=code)
        value = float(quota["Quota"]["Value"])
    except (ClientError, BotoCoreError, KeyError, NotImplementedError) as err:
        raise UserError(
            f"could not read the EC2 quota {code} ({name}) in {region}: "
            f"{getattr(err, 'response', {}).get('Error', {}).get('Code') or type(err).__name__}",
            f"check it in the Service Quotas console (ec2 / {code}) before deploying",
        ) from None
    return GpuQuota(code, name, value, vcpus)


def check_gpu_quota(
    instance_type: str, vcpus: int, region: str, pricing: str = "on-demand", *, endpoint_url: str | None = None
) -> GpuQuota:
    """Raise UserError when the quota is below what one `instance_type` needs."""
    quota = gpu_quota(instance_type, vcpus, region, pricing, endpoint_url=endpoint_url)
    if not quota.enough:
        raise UserError(
            f"EC2 quota {quota.code} ({quota.name}) in {region} allows {quota.vcpus_allowed:g} vCPUs; "
            f"{instance_type} needs {vcpus}",
            f"request an increase: aws service-quotas request-service-quota-increase --service-code ec2 "
            f"--quota-code {quota.code} --desired-value {vcpus} --region {region}",
        )
    return quota
