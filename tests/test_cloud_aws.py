"""boto3 helpers against a real moto server on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest

from costing.data.catalog import get_offer
from costing.errors import UserError
from selfhost.aws import api as aws

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path_factory.mktemp("aws") / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path_factory.mktemp("aws") / "credentials"),
    }.items():
        mp.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        mp.undo()


def publish_public_parameter(name: str, value: str) -> None:
    """AWS publishes /aws/service/* parameters; the API refuses writes there, so seed the server's store."""
    from moto.ssm.models import Parameter, ssm_backends

    store = ssm_backends[ACCOUNT][REGION]._parameters
    store[name].append(
        Parameter(
            account_id=ACCOUNT,
            name=name,
            value=value,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=datetime.now(timezone.utc).timestamp(),
            version=1,
            data_type="aws:ec2:image",
        )
    )


def test_gpu_ami_from_the_public_parameter(moto_url):
    publish_public_parameter(aws.GPU_AMI_PARAMETERS["ubuntu-22.04"], "ami-0123456789abcdef0")
    assert aws.gpu_ami_id(REGION, endpoint_url=moto_url) == "ami-0123456789abcdef0"


def test_gpu_ami_from_your_own_parameter(moto_url):
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=moto_url)
    ssm.put_parameter(Name="/team/ami/gpu", Value="ami-0fedcba9876543210", Type="String")
    assert aws.gpu_ami_id(REGION, parameter="/team/ami/gpu", endpoint_url=moto_url) == "ami-0fedcba9876543210"
    ssm.put_parameter(Name="/team/ami/broken", Value="not-an-ami", Type="String")
    with pytest.raises(UserError, match="not an AMI id"):
        aws.gpu_ami_id(REGION, parameter="/team/ami/broken", endpoint_url=moto_url)


def test_missing_ami_parameter_is_one_clear_error(moto_url):
    with pytest.raises(UserError, match=r"amazon-linux-2023.*does not exist in us-east-1"):
        aws.gpu_ami_id(REGION, "amazon-linux-2023", endpoint_url=moto_url)
    with pytest.raises(UserError, match="no GPU AMI parameter for OS 'windows'"):
        aws.gpu_ami_id(REGION, "windows", endpoint_url=moto_url)


def test_spot_price_is_the_cheapest_zone_latest_price(moto_url):
    price = aws.spot_price("g5.xlarge", REGION, endpoint_url=moto_url)
    assert price.instance_type == "g5.xlarge" and price.usd_per_hour > 0
    assert price.by_zone and all(zone.startswith(REGION) for zone in price.by_zone)
    assert price.usd_per_hour == min(price.by_zone.values()) == price.by_zone[price.zone]


def test_gpu_quota_names_the_quota_when_it_cannot_be_read(moto_url):
    # moto has no EC2 GPU quotas: the helper must say which quota to check, not crash
    with pytest.raises(UserError, match=r"L-3819A6DF \(All G and VT Spot Instance Requests\)"):
        aws.check_gpu_quota("g5.xlarge", 4, REGION, "spot", endpoint_url=moto_url)
    with pytest.raises(UserError, match="L-417A185B"):
        aws.gpu_quota("p4d.24xlarge", 96, REGION, "on-demand", endpoint_url=moto_url)


def test_quota_arithmetic_and_codes():
    assert aws.quota_for("g5.12xlarge", "reserved-1y") == ("L-DB2E81BA", "Running On-Demand G and VT instances")
    assert aws.quota_for("p4d.24xlarge", "spot")[0] == "L-7212CCBC"
    assert not aws.GpuQuota("L-DB2E81BA", "x", 8, 96).enough
    assert aws.GpuQuota("L-DB2E81BA", "x", 96, 96).enough
    with pytest.raises(UserError):
        aws.quota_for("m5.large", "on-demand")


def test_aws_preflight_command_against_moto(moto_url, selfhost):
    import json

    publish_public_parameter(aws.GPU_AMI_PARAMETERS["ubuntu-22.04"], "ami-0123456789abcdef0")
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    result = selfhost("aws-preflight", "--offer", "aws-g5.xlarge", "--pricing", "spot", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ami_id"] == "ami-0123456789abcdef0" and out["instance_type"] == "g5.xlarge"
    assert out["spot_usd_per_hour_live"] > 0 and out["spot_usd_per_hour_catalog"] == pytest.approx(
        get_offer("aws-g5.xlarge").price("spot").usd_per_hour
    )
    assert out["quota"]["enough"] is None and "L-3819A6DF" in out["quota"]["unknown"]  # moto has no GPU quotas
    bad = selfhost("aws-preflight", "--offer", "gcp-g2-standard-8", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not AWS" in bad.stderr
