"""The GCP stack under Pulumi mocks: g2 machine, spot group with autohealing, secrets, firewall, refusals."""

from __future__ import annotations

import pytest
from stack_mocks import GCP_IP, example_config, expected, is_secret, plain, refused, stack

from costing.errors import DoesNotFit, OverBudget, UserError
from costing.money.review import cost_review
from costing.performance.vllm_args import VLLM_IMAGE, serve_args
from selfhost.stack import gcp_config as gcp
from selfhost.stack.boot_script import exec_start_argv

BASE = {
    "model": "llama-3.1-8b",
    "machineType": "g2-standard-8",
    "pricing": "spot",
    "allowedCidrs": ["203.0.113.0/24", "2001:db8::/32"],
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
    "allowPlainHttp": "true",
}
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
FIREWALL = "gcp:compute/firewall:Firewall"


MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
SCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"


def by_label(mocks, typ):
    return {name.rsplit("-", 1)[-1]: inputs for t, name, inputs in mocks.resources if t == typ}


def test_spot_groups_across_zones_behind_the_load_balancer_run_the_costed_container():
    mocks, out = stack("gcp", BASE)
    spec, fit = expected("gcp", "llama-3.1-8b", "gcp-g2-standard-8", "spot")
    parts = {
        "stack_resources": ("load_balancer", "waf", "weights_mirror", "instance_ipv4", "secrets", "egress"),
        "stack_counts": {"secrets": 2},  # the API key's and the HF token's
        "boot_disk_gb": gcp.BOOT_BASE_GB,
    }
    review = cost_review(spec, cloud_group=True, **parts)
    fleet = review.fleet
    templates = by_label(mocks, TEMPLATE)
    assert set(templates) == {"spot", "standard"}
    template = templates["spot"]
    # g2 bundles its L4s: the machine type carries the GPUs, no accelerator block
    assert template["machineType"] == "g2-standard-8" and fit.gpus_per_node == 1
    assert "guestAccelerators" not in template
    assert template["scheduling"]["provisioningModel"] == "SPOT"
    assert templates["standard"]["scheduling"]["provisioningModel"] == "STANDARD"
    assert template["scheduling"]["onHostMaintenance"] == "TERMINATE"
    disk = template["disks"][0]
    assert "deeplearning-platform-release" in disk["sourceImage"] and disk["boot"] is True
    assert disk["diskSizeGb"] >= gcp.BOOT_BASE_GB + fit.weight_gib
    # the startup script: exactly the fit check's vLLM args; secret names, never values
    script = plain(template["metadata"])["startup-script"]
    argv = exec_start_argv(script)
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert "Restart=always" in script and "systemctl restart vllm.service" in script
    assert "sk-test-key-0123456789" not in script and "hf_test_token" not in script
    names = gcp.names(gcp.plan(BASE, scope=("selfhost-gcp", "dev")))
    assert f"--secret={names.api_key_secret}" in script and f"--secret={names.hf_token_secret}" in script
    versions = mocks.of_type("gcp:secretmanager/secretVersion:SecretVersion")
    assert len(versions) == 2 and all(is_secret(v["secretData"]) for v in versions)
    readers = mocks.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {r["secretId"] for r in readers} == {names.api_key_secret, names.hf_token_secret}
    assert {r["role"] for r in readers} == {"roles/secretmanager.secretAccessor"}
    assert {r["member"] for r in readers} == {f"serviceAccount:{template['serviceAccount']['email']}"}
    # firewall: vLLM's port from Google's front ends and checkers only; callers filtered by Cloud Armor
    [rule] = mocks.of_type(FIREWALL)
    assert sorted(rule["sourceRanges"]) == sorted(gcp.HEALTH_CHECK_RANGES)
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["8000", "8001"]}]  # vLLM, the readiness endpoint
    armor = mocks.one("gcp:compute/securityPolicy:SecurityPolicy")["rules"]
    assert armor[0]["match"]["config"]["srcIpRanges"] == ["203.0.113.0/24", "2001:db8::/32"]
    assert armor[0]["action"] == "allow" and armor[-1]["action"] == "deny(403)"
    # the fleet: spot above the on-demand base, the base in a standard group; both regional, 2+ zones
    groups, scalers = by_label(mocks, MIG), by_label(mocks, SCALER)
    base = fleet.base_ondemand_replicas
    assert base == 1
    spot_policy, std_policy = scalers["spot"]["autoscalingPolicy"], scalers["standard"]["autoscalingPolicy"]
    assert (spot_policy["minReplicas"], spot_policy["maxReplicas"]) == (
        fleet.min_replicas - base,
        fleet.max_replicas - base,
    )
    assert (std_policy["minReplicas"], std_policy["maxReplicas"]) == (base, base)
    for group in groups.values():
        assert len(group["distributionPolicyZones"]) >= 2
        assert group["versions"][0]["instanceTemplate"].endswith("uniqueId=1")
        update = group["updatePolicy"]
        assert update["maxUnavailableFixed"] == 0 and update["maxSurgeFixed"] >= len(group["distributionPolicyZones"])
        healing = group["autoHealingPolicies"]
        assert healing["healthCheck"] == "selfhost-gcp-health-id"
        assert healing["initialDelaySec"] >= gcp.DRIVER_WAIT_S + 600
    # health: the VM's readiness endpoint, 200 only while an authenticated 1-token completion succeeds
    check = mocks.one("gcp:compute/healthCheck:HealthCheck")
    assert check["httpHealthCheck"] == {"port": 8001, "requestPath": "/ready"}
    assert "--directory /run/selfhost/health" in script and "touch /run/selfhost/health/ready" in script
    # the load balancer: each group a backend at the review's SLO-bound rate; HTTP on 80 (allowPlainHttp)
    backend = mocks.one("gcp:compute/backendService:BackendService")
    assert {b["group"].rsplit("/", 1)[-1] for b in backend["backends"]} == {g["name"] for g in groups.values()}
    rate = fleet.requests_per_s_per_replica / spec.target_utilization
    assert all(b["maxRatePerInstance"] == pytest.approx(rate, rel=1e-3) for b in backend["backends"])
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert mocks.one("gcp:compute/globalForwardingRule:GlobalForwardingRule")["portRange"] == "80"
    assert mocks.of_type("gcp:compute/instance:Instance") == []
    # the weights mirror: a private bucket in the region, objects readable and writable by the VMs only
    bucket = mocks.one("gcp:storage/bucket:Bucket")
    assert bucket["uniformBucketLevelAccess"] is True and bucket["publicAccessPrevention"] == "enforced"
    assert mocks.one("gcp:storage/bucketIAMMember:BucketIAMMember")["member"] == readers[0]["member"]
    assert f"gcloud storage cat gs://{bucket['name']}/hf/" in script
    # outputs
    assert out["endpointUrl"] == f"http://{GCP_IP}" and out["groupNames"]
    assert out["projectedMonthlyUsd"] == pytest.approx(review.monthly_usd, abs=0.01)
    assert out["usdPerMillionOutputTokens"] == pytest.approx(review.usd_per_million_output_tokens, rel=1e-3)


def test_standard_provisioning_is_a_managed_group_too():
    config = {
        **BASE,
        "model": "llama-3.1-70b",
        "precision": "fp8",
        "machineType": "g2-standard-48",
        "pricing": "on-demand",
    }
    mocks, out = stack("gcp", config)
    _, fit = expected("gcp", "llama-3.1-70b", "gcp-g2-standard-48", "on-demand", "fp8")
    template = mocks.one(TEMPLATE)
    assert template["machineType"] == "g2-standard-48" and fit.gpus_per_node == 4
    assert template["scheduling"]["provisioningModel"] == "STANDARD"
    assert template["disks"][0]["diskSizeGb"] >= gcp.BOOT_BASE_GB + fit.weight_gib
    argv = exec_start_argv(plain(template["metadata"])["startup-script"])
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert mocks.one(MIG)["name"].endswith("-standard") and mocks.of_type("gcp:compute/instance:Instance") == []
    assert out["onDemandBaseReplicas"] is None


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"machineType": "a2-highgpu-1g"}, UserError, "unknown GCP machine type"),
        ({"model": "llama-3.1-70b"}, DoesNotFit, "does not fit"),
        ({"apiKey": None}, UserError, "missing secret apiKey"),
        ({"allowedCidrs": ["::/0"], "apiKey": None}, UserError, "without an API key"),
        ({"maxMonthlyUsd": "100"}, OverBudget, "exceeds the budget"),
        ({"allowedCidrs": ["10.0.0.300/8"]}, UserError, "not a CIDR"),
        ({"zone": "us-central1-a"}, UserError, "zone pins one zone"),
    ],
)
def test_bad_config_is_refused_before_any_resource(change, error, words):
    config = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    mocks, err = refused("gcp", config)
    assert isinstance(err, error) and words in str(err)
    assert mocks.resources == []


def test_shipped_program_runs_with_the_example_config():
    config = example_config("gcp")
    config.update(
        {
            "apiKey": "sk-example-0123456789",
            "hfToken": "hf_example",
            "gcp:region": None,
            "gcp:zone": "us-central1-b",
            # as `pulumi config set allowedCidrs 203.0.113.0/24,198.51.100.0/24` stores it
            "allowedCidrs": "203.0.113.0/24,198.51.100.0/24",
            "allowPlainHttp": "true",  # the shipped config leaves the transport to the user: opt in here
        }
    )
    mocks, out = stack("gcp", config)
    assert {t["machineType"] for t in mocks.of_type(TEMPLATE)} == {"g2-standard-8"}
    assert out["region"] == "us-central1"  # from the provider's zone
    armor = mocks.one("gcp:compute/securityPolicy:SecurityPolicy")["rules"]
    assert armor[0]["match"]["config"]["srcIpRanges"] == ["203.0.113.0/24", "198.51.100.0/24"]


def test_fewer_than_two_zones_is_refused_with_nothing_declared():
    mocks, err = refused("gcp", {**BASE, "zones": ["us-central1-a", "europe-west4-b"]})
    assert isinstance(err, UserError) and "1 zone(s) of us-central1" in str(err)
    assert mocks.resources == []


def test_vms_drain_on_preemption_and_scale_in_and_publish_vllms_load_for_the_autoscaler():
    """The shutdown script (preemption, scale-in, rolling update) on every template; the backend drains a
    leaving VM for the projection's p99 request; the VMs may write metrics; the spot group's autoscaler
    tracks vLLM's requests in flight per VM at the review's SLO-bound concurrency x utilisation."""
    from selfhost.stack import drain_scripts as drain

    config = {**BASE, "requestsPerDay": "200000", "peakToMean": "3"}  # a group that scales
    mocks, out = stack("gcp", config)
    p = gcp.plan(config, scope=("selfhost-gcp", "dev"))
    for template in by_label(mocks, TEMPLATE).values():
        metadata = plain(template["metadata"])
        assert metadata["shutdown-script"] == gcp.shutdown_script(p)
        assert "systemctl stop vllm.service" in metadata["shutdown-script"]
        assert "ExecStop=/opt/selfhost/stop-vllm.sh" in metadata["startup-script"]
        assert "systemctl start selfhost-metrics.service" in metadata["startup-script"]
    backend = mocks.one("gcp:compute/backendService:BackendService")
    assert backend["connectionDrainingTimeoutSec"] == drain.drain_seconds(p) == out["drainSeconds"]
    [writer] = mocks.of_type("gcp:projects/iAMMember:IAMMember")
    assert writer["role"] == "roles/monitoring.metricWriter" and writer["project"] == "my-project"
    template = by_label(mocks, TEMPLATE)["spot"]
    assert writer["member"] == f"serviceAccount:{template['serviceAccount']['email']}"
    policy = by_label(mocks, SCALER)["spot"]["autoscalingPolicy"]
    assert p.fleet.max_replicas > p.fleet.min_replicas
    target = p.review.projection.concurrency * p.spec.target_utilization
    assert policy["metrics"] == [{"name": drain.GCP_METRIC, "target": pytest.approx(target, abs=0.05), "type": "GAUGE"}]
    assert out["targetInflightPerReplica"] == p.fleet.inflight_per_replica
