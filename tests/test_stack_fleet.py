"""One number from review to resources: for workloads the review sizes at 1, 3 and 10 replicas, each
stack declares that fleet (min/max/desired, zones, instance types, the load balancer, the scaling target).

The workloads are derived from the review's own per-replica capacity (no hard-coded counts)."""

from __future__ import annotations

import pytest
from stack_mocks import refused, stack

from costing.errors import UserError
from selfhost.stack import aws_config, gcp_config
from selfhost.stack import drain_scripts as drain

COMMON = {
    "model": "llama-3.1-8b",
    "inputTokens": "1000",
    "outputTokens": "250",
    "peakToMean": "2",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
    "allowedCidrs": ["203.0.113.0/24"],
    "allowPlainHttp": "true",
}
AWS = {**COMMON, "instanceType": "g5.xlarge"}
GCP = {**COMMON, "machineType": "g2-standard-8"}
ASG = "aws:autoscaling/group:Group"
MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
SCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"


def workload_for(plan_fn, config: dict, replicas: int) -> dict:
    """requestsPerDay whose peak needs `replicas` at the review's requests/s per replica."""
    per_replica = plan_fn({**config, "requestsPerDay": "1000"}).fleet.requests_per_s_per_replica
    peak = float(config["peakToMean"])
    return {**config, "requestsPerDay": str(round(0.95 * replicas * per_replica * 86_400 / peak))}


@pytest.mark.parametrize("replicas, pricing", [(1, "on-demand"), (3, "spot"), (10, "spot")])
def test_aws_group_holds_the_fleet_the_review_sized(replicas, pricing):
    config = workload_for(aws_config.plan, {**AWS, "pricing": pricing}, replicas)
    fleet = aws_config.plan(config).fleet
    assert fleet.max_replicas == replicas  # the derivation above hit its target
    mocks, out = stack("aws", config)
    group = mocks.one(ASG)
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (
        fleet.min_replicas,
        fleet.max_replicas,
        fleet.min_replicas,
    )
    # two or more zones: the group in every subnet, the load balancer in one subnet per zone
    zones = {subnet[-1] for subnet in group["vpcZoneIdentifiers"]}
    lb = mocks.one("aws:lb/loadBalancer:LoadBalancer")
    assert len(zones) >= 2 and len(lb["subnets"]) == len(zones) == len(out["zones"])
    assert lb["loadBalancerType"] == "application" and lb["internal"] is False
    listener = mocks.one("aws:lb/listener:Listener")
    assert listener["defaultActions"][0]["type"] == "forward"
    health = mocks.one("aws:lb/targetGroup:TargetGroup")["healthCheck"]
    assert health["path"] == "/health"
    # every instance type with the costed GPUs, the costed one first
    overrides = [o["instanceType"] for o in group["mixedInstancesPolicy"]["launchTemplate"]["overrides"]]
    assert overrides[0] == "g5.xlarge" and set(overrides) == set(aws_config.instance_types(aws_config.plan(config)))
    assert all(t.startswith("g5.") and t not in ("g5.12xlarge", "g5.24xlarge", "g5.48xlarge") for t in overrides)
    dist = group["mixedInstancesPolicy"]["instancesDistribution"]
    if pricing == "spot":
        assert fleet.min_replicas >= 2 and dist["onDemandBaseCapacity"] == fleet.base_ondemand_replicas == 1
        assert dist["onDemandPercentageAboveBaseCapacity"] == 0
    else:
        assert dist["onDemandPercentageAboveBaseCapacity"] == 100
    # target tracking on vLLM's requests in flight where the group can grow: the review's per-replica target
    policies = mocks.of_type("aws:autoscaling/policy:Policy")
    if fleet.max_replicas > fleet.min_replicas:
        tracking = policies[0]["targetTrackingConfiguration"]
        custom = tracking["customizedMetricSpecification"]
        assert (custom["namespace"], custom["metricName"], custom["statistic"]) == (
            f"{drain.AWS_NAMESPACE}/selfhost-aws/dev/selfhost-aws",
            drain.AWS_METRIC,
            "Average",
        )
        assert custom["metricDimensions"] == [{"name": "AutoScalingGroupName", "value": "selfhost-aws-group-asg"}]
        assert tracking["targetValue"] == fleet.inflight_per_replica > 0
    else:
        assert policies == []
    assert out["minReplicas"] == fleet.min_replicas and out["maxReplicas"] == fleet.max_replicas


def test_aws_issue_workload_200k_a_day_spot_across_zones_with_on_demand_base():
    """The issue's done-when: 200,000 requests/day on g5.xlarge, peak x2."""
    config = {**AWS, "pricing": "spot", "requestsPerDay": "200000"}
    fleet = aws_config.plan(config).fleet
    mocks, out = stack("aws", config)
    group = mocks.one(ASG)
    assert group["maxSize"] == fleet.max_replicas >= 3 and group["minSize"] == fleet.min_replicas >= 2
    assert len(out["zones"]) >= 2 and mocks.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert group["mixedInstancesPolicy"]["instancesDistribution"]["onDemandBaseCapacity"] == 1


def test_aws_ami_is_kept_after_a_release_unless_asked():
    mocks, out = stack("aws", {**AWS, "pricing": "spot", "requestsPerDay": "3000"})
    lt = [(t, n) for t, n, _ in mocks.resources if t == "aws:ec2/launchTemplate:LaunchTemplate"]
    assert lt and out["amiId"].startswith("ami-")
    assert mocks.ignored["selfhost-aws-vm"] == ["imageId"]
    for asked in ({"refreshAmi": "true"}, {"amiId": "ami-0123456789abcdef0"}):
        mocks, out = stack("aws", {**AWS, "pricing": "spot", "requestsPerDay": "3000", **asked})
        assert not mocks.ignored.get("selfhost-aws-vm")
    assert out["amiId"] == "ami-0123456789abcdef0"


def test_aws_fewer_than_two_zones_is_refused_with_nothing_declared():
    mocks, err = refused("aws", {**AWS, "requestsPerDay": "3000", "subnetIds": ["subnet-0123456a", "subnet-0123457a"]})
    assert isinstance(err, UserError) and "span 1 availability zone(s) (us-east-1a)" in str(err)
    assert mocks.resources == []


def gcp_fleet(mocks) -> dict[str, tuple[int, int, bool, dict]]:
    """label -> (min, max, spot, autoscaling policy) per group, from what the stack declared."""
    spot = {
        n.rsplit("-", 1)[-1]: i["scheduling"]["provisioningModel"] == "SPOT"
        for t, n, i in mocks.resources
        if t == "gcp:compute/instanceTemplate:InstanceTemplate"
    }
    out = {}
    for t, name, inputs in mocks.resources:
        if t == SCALER:
            label = name.rsplit("-", 1)[-1]
            policy = inputs["autoscalingPolicy"]
            out[label] = (policy["minReplicas"], policy["maxReplicas"], spot[label], policy)
    return out


@pytest.mark.parametrize("replicas, pricing", [(1, "on-demand"), (3, "spot"), (10, "spot")])
def test_gcp_groups_hold_the_fleet_the_review_sized(replicas, pricing):
    config = workload_for(gcp_config.plan, {**GCP, "pricing": pricing}, replicas)
    plan = gcp_config.plan(config)
    fleet = plan.fleet
    assert fleet.max_replicas == replicas
    mocks, out = stack("gcp", config)
    groups = gcp_fleet(mocks)
    assert sum(low for low, _, _, _ in groups.values()) == fleet.min_replicas
    assert sum(high for _, high, _, _ in groups.values()) == fleet.max_replicas
    on_demand = sum(high for _, high, spot, _ in groups.values() if not spot)
    if pricing == "spot":
        assert on_demand == fleet.base_ondemand_replicas == 1 and groups["spot"][2] is True
    else:
        assert on_demand == fleet.max_replicas and set(groups) == {"standard"}
    for low, high, _, policy in groups.values():
        if high > low:  # scales on vLLM's requests in flight per VM at the review's target
            assert policy["metrics"] == [
                {"name": drain.GCP_METRIC, "target": fleet.inflight_per_replica, "type": "GAUGE"}
            ]
            assert "loadBalancingUtilization" not in policy
    for group in mocks.of_type(MIG):
        assert len(group["distributionPolicyZones"]) >= 2
        assert group["autoHealingPolicies"]["initialDelaySec"] >= gcp_config.DRIVER_WAIT_S
    backend = mocks.one("gcp:compute/backendService:BackendService")
    assert len(backend["backends"]) == len(groups)
    assert mocks.one("gcp:compute/globalForwardingRule:GlobalForwardingRule")["target"]
    assert out["minReplicas"] == fleet.min_replicas and out["maxReplicas"] == fleet.max_replicas


def test_gcp_issue_workload_200k_a_day_spot_across_zones_with_standard_fallback():
    """The issue's done-when: 200,000 requests/day on g2-standard-8, peak x2."""
    config = {**GCP, "pricing": "spot", "requestsPerDay": "200000"}
    fleet = gcp_config.plan(config).fleet
    mocks, out = stack("gcp", config)
    groups = gcp_fleet(mocks)
    assert fleet.max_replicas >= 3 and sum(high for _, high, _, _ in groups.values()) == fleet.max_replicas
    assert groups["standard"][:3] == (1, 1, False) and groups["spot"][2] is True
    assert len(out["zones"]) >= 2
