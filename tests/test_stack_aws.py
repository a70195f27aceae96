"""The AWS stack under Pulumi mocks: launch template, group, security, secrets, outputs, refusals."""

from __future__ import annotations

import base64
import json

import pytest
from stack_mocks import AMI, LB_DNS, example_config, expected, is_secret, plain, refused, stack

from costing.errors import DoesNotFit, OverBudget, UserError
from costing.money.review import cost_review
from costing.performance.vllm_args import VLLM_IMAGE, serve_args
from selfhost.aws.api import GPU_AMI_PARAMETERS
from selfhost.stack import aws_config as aws
from selfhost.stack import drain_scripts as drain
from selfhost.stack.boot_script import exec_start_argv
from selfhost.stack.preview import ZONE_IDS

BASE = {
    "model": "llama-3.1-8b",
    "instanceType": "g5.xlarge",
    "pricing": "spot",
    "allowedCidrs": ["203.0.113.0/24"],
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
    "allowPlainHttp": "true",
}
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"


def user_data(mocks) -> str:
    return base64.b64decode(plain(mocks.one(LT)["userData"])).decode()


def test_spot_group_runs_the_costed_container_securely():
    mocks, out = stack("aws", BASE)
    spec, fit = expected("aws", "llama-3.1-8b", "aws-g5.xlarge", "spot")
    lt = mocks.one(LT)
    assert lt["instanceType"] == "g5.xlarge" and fit.gpus_per_node == 1
    # GPU AMI from AWS's public SSM parameter
    assert ("aws:ssm/getParameter:getParameter", {"name": GPU_AMI_PARAMETERS["ubuntu-22.04"]}) in mocks.calls
    assert lt["imageId"] == AMI
    # IMDSv2 only; encrypted gp3 root sized for the weights
    assert lt["metadataOptions"]["httpTokens"] == "required"
    ebs = lt["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"
    assert ebs["volumeSize"] >= aws.ROOT_BASE_GB + fit.weight_gib
    # the container: the image and exactly the fit check's vLLM args, restarted by systemd
    script = user_data(mocks)
    argv = exec_start_argv(script)
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert "Restart=always" in script
    # secrets: stored as secrets, read at boot by ARN, never in user-data
    versions = mocks.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert len(versions) == 2 and all(is_secret(v["secretString"]) for v in versions)
    assert {plain(v["secretString"]) for v in versions} == {"sk-test-key-0123456789", "hf_test_token"}
    assert "sk-test-key-0123456789" not in script and "hf_test_token" not in script
    policy = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy")["policy"])
    secret_arns = policy["Statement"][0]["Resource"]
    assert policy["Statement"][0]["Action"] == "secretsmanager:GetSecretValue" and len(secret_arns) == 2
    assert all(f"--secret-id {arn}" in script for arn in secret_arns)
    # ingress: the load balancer's port from the configured CIDRs only; vLLM's port from the load balancer only
    groups = {g["description"].split(": ", 1)[1]: g for g in mocks.of_type("aws:ec2/securityGroup:SecurityGroup")}
    lb_in = groups["API port from allowed CIDRs only"]["ingress"]
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in lb_in] == [(8000, 8000, ["203.0.113.0/24"])]
    vm_in = groups["vLLM port from the load balancer only"]["ingress"]
    assert [(r["fromPort"], r.get("cidrBlocks"), r["securityGroups"]) for r in vm_in] == [
        (8000, None, ["selfhost-aws-api-id"])
    ]
    # spot with an on-demand base, sized by the review, behind the load balancer, rolling at 100% healthy
    # the group spans the mock VPC's three subnets: spot replicas cost those zones' mean market price
    zones = tuple(sorted(ZONE_IDS["us-east-1"].values()))
    stack_parts = {
        "stack_resources": ("load_balancer", "weights_mirror", "public_ipv4", "instance_ipv4", "secrets", "egress"),
        "stack_counts": {"public_ipv4": len(zones), "secrets": 2},  # the ALB in each zone; API key, HF token
        "boot_disk_gb": aws.ROOT_BASE_GB,
    }
    review = cost_review(spec, spot_zones=zones, cloud_group=True, **stack_parts)
    cheapest_zone = cost_review(spec, cloud_group=True, **stack_parts)
    assert review.monthly_usd > cheapest_zone.monthly_usd
    assert review.resolved.price.zone == ", ".join(zones)
    group = mocks.one(ASG)
    fleet = review.fleet
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (
        fleet.min_replicas,
        fleet.max_replicas,
        fleet.min_replicas,
    )
    assert group["capacityRebalance"] is True and group["healthCheckType"] == "ELB"
    dist = group["mixedInstancesPolicy"]["instancesDistribution"]
    assert dist["onDemandPercentageAboveBaseCapacity"] == 0
    assert dist["onDemandBaseCapacity"] == fleet.base_ondemand_replicas >= 1
    refresh = group["instanceRefresh"]["preferences"]
    assert (refresh["minHealthyPercentage"], refresh["maxHealthyPercentage"]) == (100, 200)
    review_plan, me = aws.plan(BASE, zones=zones), '--instance-id "$(cat /opt/selfhost/instance-id)"'
    hook, leave = group["initialLifecycleHooks"]
    assert hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING" and hook["defaultResult"] == "ABANDON"
    # the gate keeps the launch hook open with heartbeats, to a deadline from the projected cold start
    assert hook["heartbeatTimeout"] == drain.HOOK_HEARTBEAT_TIMEOUT_S < drain.gate_deadline_s(review_plan)
    assert f"record-lifecycle-action-heartbeat --region us-east-1 {me} " in script
    assert f"deadline=$(( boot + {drain.gate_deadline_s(review_plan)} ))" in script
    assert f"--lifecycle-hook-name {hook['name']} --lifecycle-action-result CONTINUE" in script
    # scale-in, refresh and rebalancing drain: the handler completes the termination hook after vLLM stopped
    assert leave["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert leave["defaultResult"] == "CONTINUE" and leave["name"] == drain.DRAIN_HOOK
    assert leave["heartbeatTimeout"] > drain.stop_timeout_s(review_plan) > drain.drain_seconds(review_plan)
    assert f"--lifecycle-hook-name {drain.DRAIN_HOOK} --lifecycle-action-result CONTINUE" in script
    tg = mocks.one("aws:lb/targetGroup:TargetGroup")
    assert tg["deregistrationDelay"] == drain.drain_seconds(review_plan) == out["drainSeconds"]
    assert "ExecStop=/opt/selfhost/stop-vllm.sh" in script and "systemctl enable --now vllm.service" in script
    assert "selfhost-drain.service" in script.split("systemctl enable --now")[1]
    [arn] = group["targetGroupArns"]
    assert ":targetgroup/selfhost-aws-tg/" in arn
    assert mocks.of_type("aws:ec2/capacityReservation:CapacityReservation") == []
    assert mocks.of_type("aws:ec2/eip:Eip") == []
    # the weights mirror: private, KMS-encrypted, TLS only; the role reads and fills this bucket only
    assert script.count("/opt/selfhost/weights.sh restore") == 1
    sse = mocks.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert json.loads(mocks.one("aws:s3/bucketPolicy:BucketPolicy")["policy"])["Statement"][0]["Effect"] == "Deny"
    mirror = next(s for s in policy["Statement"] if s.get("Sid") == "WeightsMirror")
    name = mocks.one("aws:s3/bucket:Bucket")["bucket"]  # named from the account, the stack and a random suffix
    assert name.startswith("selfhost-aws-") and name.endswith("-weights")
    assert mirror["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
    assert out["weightsMirror"].startswith(f"s3://{name}/hf/")
    # draining: the role leaves only its own target group; it publishes only vLLM's load in its namespace
    leave_tg = next(s for s in policy["Statement"] if s.get("Sid") == "LeaveOwnTargetGroup")
    assert leave_tg["Action"] == "elasticloadbalancing:DeregisterTargets" and leave_tg["Resource"] == arn
    publish = next(s for s in policy["Statement"] if s.get("Sid") == "PublishVllmLoad")
    assert publish["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "selfhost/vLLM/selfhost-aws/dev/selfhost-aws"}
    }
    own = next(s for s in policy["Statement"] if s.get("Sid") == "ReportOwnHealth")
    assert "autoscaling:RecordLifecycleActionHeartbeat" in own["Action"]
    assert f"--target-group-arn {arn} " in script
    # the replicas publish vLLM's load into that namespace, once their gate has passed
    assert "aws cloudwatch put-metric-data --region us-east-1 --namespace selfhost/vLLM/selfhost-aws/dev/" in script
    assert "systemctl start selfhost-metrics.service" in script.split("cat > /opt/selfhost/gate.sh")[1]
    # outputs
    assert out["endpointUrl"] == f"http://{LB_DNS}:8000"
    assert out["groupName"] and out["instanceType"] == "g5.xlarge"
    assert out["projectedMonthlyUsd"] == pytest.approx(review.monthly_usd, abs=0.01)
    assert out["usdPerMillionOutputTokens"] == pytest.approx(review.usd_per_million_output_tokens, rel=1e-3)


def test_reserved_p4d_with_capacity_reservation_and_existing_secrets(aws_reserved_prices):
    arn_key = "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/vllm-key-AbCdEf"
    arn_hf = "arn:aws:ssm:us-east-1:123456789012:parameter/team/hf-token"
    config = {
        **BASE,
        "model": "llama-3.1-70b",
        "instanceType": "p4d.24xlarge",
        "pricing": "reserved-1y",
        "reservationOwned": "true",  # the stack buys no RI: one already owned covers the instances
        "reserveCapacity": "true",
        "availabilityZone": "us-east-1a",
        "apiKey": None,
        "hfToken": None,
        "apiKeySecretArn": arn_key,
        "hfTokenSecretArn": arn_hf,
    }
    mocks, out = stack("aws", {k: v for k, v in config.items() if v is not None})
    _, fit = expected("aws", "llama-3.1-70b", "aws-p4d.24xlarge", "reserved-1y")
    odcr = mocks.one("aws:ec2/capacityReservation:CapacityReservation")
    assert odcr["instanceType"] == "p4d.24xlarge" and odcr["availabilityZone"] == "us-east-1a"
    group = mocks.one(ASG)
    # an open reservation for every replica the review bills; the group's instances in its zone use it
    assert odcr["instanceCount"] == group["maxSize"] and odcr["instanceMatchCriteria"] == "open"
    assert group["capacityRebalance"] is False
    assert group["mixedInstancesPolicy"]["instancesDistribution"]["onDemandPercentageAboveBaseCapacity"] == 100
    # the group still spans every zone of the VPC
    assert len(group["vpcZoneIdentifiers"]) >= 2
    # no secrets created: the existing ARNs are read at boot and are all the role may read
    assert mocks.of_type("aws:secretsmanager/secret:Secret") == []
    script = user_data(mocks)
    assert f"--secret-id {arn_key}" in script and "--name /team/hf-token" in script
    statements = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy")["policy"])["Statement"]
    assert [s["Resource"] for s in statements[:2]] == [[arn_key], [arn_hf]]
    argv = exec_start_argv(script)
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert fit.settings.tensor_parallel_size == 8
    assert out["capacityReservationId"]


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"instanceType": "g5.3xlarge"}, UserError, "unknown AWS instance type"),
        ({"model": "llama-3.1-70b"}, DoesNotFit, "does not fit"),
        ({"allowedCidrs": ["0.0.0.0/0"], "apiKey": None}, UserError, "without an API key"),
        ({"hfToken": None}, UserError, "missing secret hfToken"),
        ({"maxMonthlyUsd": "100"}, OverBudget, "exceeds the budget"),
        ({"reserveCapacity": "true"}, UserError, "reserved pricing"),
        ({"allowedCidrs": []}, UserError, "allowedCidrs is empty"),
        ({"availabilityZone": "us-east-1a"}, UserError, "availabilityZone pins one zone"),
    ],
)
def test_bad_config_is_refused_before_any_resource(change, error, words):
    config = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    mocks, err = refused("aws", config)
    assert isinstance(err, error) and words in str(err)
    assert mocks.resources == [] and mocks.calls == []


def test_shipped_program_runs_with_the_example_config():
    config = example_config("aws")
    # the shipped config leaves the transport to the user (a domain, or this explicit opt-in)
    config.update({"apiKey": "sk-example-0123456789", "hfToken": "hf_example", "allowPlainHttp": "true"})
    mocks, _ = stack("aws", config)
    assert mocks.one(LT)["instanceType"] == "g5.xlarge"
    assert mocks.one(ASG)["capacityRebalance"] is True
    ingress = mocks.of_type("aws:ec2/securityGroup:SecurityGroup")[0]["ingress"]
    assert ingress[0]["cidrBlocks"] == ["203.0.113.0/24"]
    # aws:region from the example config is the region the boot script uses
    script = base64.b64decode(plain(mocks.one(LT)["userData"])).decode()
    assert "--region us-east-1" in script


def test_region_mismatch_is_refused_before_any_resource():
    with pytest.raises(UserError, match="differs from aws:region eu-west-1"):
        aws.resolve_region("us-east-1", "eu-west-1", "us-east-1")
    assert aws.resolve_region(None, "eu-west-1", "us-east-1") == "eu-west-1"


def test_quota_check_runs_against_the_aws_api_before_any_resource(monkeypatch, tmp_path):
    """checkQuota: the boto3 helper asks Service Quotas (here a moto server on 127.0.0.1, which has no
    EC2 GPU quotas: the stack must stop with the quota's code, having registered nothing)."""
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        mocks, err = refused("aws", {**BASE, "checkQuota": "true"})
    finally:
        server.stop()
    assert isinstance(err, UserError) and "L-3819A6DF" in str(err)  # G and VT spot quota
    assert mocks.resources == []


def _spot_plan(region: str, instance_type: str = "g5.xlarge", zones: tuple[str, ...] = ()):
    config = {**BASE, "pricing": "spot", "instanceType": instance_type, "region": region}
    return aws.plan(config, zones=zones)


def test_spot_group_keeps_only_types_no_dearer_than_the_costed_one_in_its_zones():
    """price-capacity-optimized may launch any listed type, and the on-demand base takes them in order: a
    spot group lists only the types whose market price in each of its zones and whose on-demand price are at
    most the costed type's, so the review is an upper bound."""
    from costing.data.catalog import offers_for

    def market(instance_type: str, region: str) -> dict[str, float]:
        [offer] = [o for o in offers_for(cloud="aws") if o.instance_type == instance_type]
        return {r.zone: r.usd_per_hour for r in offer.rows("spot", region)}

    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        zones = tuple(sorted(ZONE_IDS[region].values()))
        p = _spot_plan(region, zones=zones)
        kept = aws.instance_types(p, zones)
        costed = market("g5.xlarge", region)
        assert kept[0] == "g5.xlarge"
        od = {o.instance_type: o.price("on-demand", region) for o in offers_for(gpu="A10G", gpus=1, cloud="aws")}
        for other in set(od) - {"g5.xlarge"}:
            theirs = market(other, region)
            cheaper = all(z in theirs and theirs[z] <= costed[z] for z in zones)
            cheaper = cheaper and od[other].usd_per_hour <= od["g5.xlarge"].usd_per_hour
            assert (other in kept) == cheaper, (region, other)
    # the shipped snapshot: in us-west-2 g5.2xlarge spot is cheaper than g5.xlarge in every zone, but its
    # on-demand price (what the on-demand base may launch) is dearer: it is left out
    assert "g5.2xlarge" not in aws.instance_types(
        _spot_plan("us-west-2"), tuple(sorted(ZONE_IDS["us-west-2"].values()))
    )
    on_demand = aws.plan({**BASE, "pricing": "on-demand", "instanceType": "g5.xlarge"})
    assert aws.instance_types(on_demand) == ["g5.xlarge"]  # the cheapest A10G x1: nothing launches dearer


def test_spot_zones_without_a_market_price_are_refused():
    with pytest.raises(UserError) as err:
        _spot_plan("us-east-1", zones=("use1-az1", "use1-az3"))
    assert "no g5.xlarge spot price for zone(s) use1-az3 of us-east-1" in str(err.value)
    # the fix names the refresh command with its own flags, not stack config keys
    assert "`selfhost prices refresh --cloud aws --region us-east-1`" in err.value.fix
