"""The GCP stack under Pulumi mocks: g2 machine, spot group with autohealing, secrets, firewall, refusals."""

from __future__ import annotations

import pytest
from stack_mocks import GCP_IP, example_config, expected, is_secret, plain, refused, stack

from costing.errors import DoesNotFit, OverBudget, UserError
from costing.review import cost_review
from costing.vllm_args import VLLM_IMAGE, serve_args
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
    "apiKey": "sk-test-key",
    "hfToken": "hf_test_token",
    "allowPlainHttp": "true",
}
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
MIG = "gcp:compute/instanceGroupManager:InstanceGroupManager"
FIREWALL = "gcp:compute/firewall:Firewall"


def test_spot_group_of_one_with_autohealing_runs_the_costed_container():
    mocks, out = stack("gcp", BASE)
    spec, fit = expected("gcp", "llama-3.1-8b", "gcp-g2-standard-8", "spot")
    template = mocks.one(TEMPLATE)
    # g2 bundles its L4s: the machine type carries the GPUs, no accelerator block
    assert template["machineType"] == "g2-standard-8" and fit.gpus_per_node == 1
    assert "guestAccelerators" not in template
    assert template["scheduling"]["provisioningModel"] == "SPOT"
    assert template["scheduling"]["onHostMaintenance"] == "TERMINATE"
    disk = template["disks"][0]
    assert "deeplearning-platform-release" in disk["sourceImage"] and disk["boot"] is True
    assert disk["diskSizeGb"] >= gcp.BOOT_BASE_GB + fit.weight_gib
    # the startup script: exactly the fit check's vLLM args; secret names, never values
    script = plain(template["metadata"])["startup-script"]
    argv = exec_start_argv(script)
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert "Restart=always" in script
    assert "sk-test-key" not in script and "hf_test_token" not in script
    names = gcp.names(gcp.plan(BASE, scope=("selfhost-gcp", "dev")))
    assert f"--secret={names.api_key_secret}" in script and f"--secret={names.hf_token_secret}" in script
    versions = mocks.of_type("gcp:secretmanager/secretVersion:SecretVersion")
    assert len(versions) == 2 and all(is_secret(v["secretData"]) for v in versions)
    readers = mocks.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {r["secretId"] for r in readers} == {names.api_key_secret, names.hf_token_secret}
    assert {r["role"] for r in readers} == {"roles/secretmanager.secretAccessor"}
    assert {r["member"] for r in readers} == {f"serviceAccount:{template['serviceAccount']['email']}"}
    # firewall: the API port from the configured ranges; Google's checkers for autohealing; nothing open
    rules = mocks.of_type(FIREWALL)
    ranges = sorted(r for rule in rules for r in rule["sourceRanges"])
    assert sorted(ranges) == sorted(["203.0.113.0/24", "2001:db8::/32", *gcp.HEALTH_CHECK_RANGES])
    assert all(rule["allows"] == [{"protocol": "tcp", "ports": ["8000"]}] for rule in rules)
    # spot that comes back: a group of one, autohealing on vLLM's /health
    group = mocks.one(MIG)
    assert group["targetSize"] == 1 and group["versions"][0]["instanceTemplate"].endswith("uniqueId=1")
    check = mocks.one("gcp:compute/healthCheck:HealthCheck")
    assert check["httpHealthCheck"] == {"port": 8000, "requestPath": "/health"}
    assert group["autoHealingPolicies"]["healthCheck"] == "selfhost-gcp-health-id"
    assert group["autoHealingPolicies"]["initialDelaySec"] >= 600
    pinned = mocks.one("gcp:compute/perInstanceConfig:PerInstanceConfig")["preservedState"]["externalIps"][0]
    assert pinned["autoDelete"] == "NEVER"
    # outputs
    review = cost_review(spec)
    assert out["endpointUrl"] == f"http://{GCP_IP}:8000" and out["groupName"]
    assert out["projectedMonthlyUsd"] == pytest.approx(review.monthly_usd, abs=0.01)
    assert out["usdPerMillionOutputTokens"] == pytest.approx(review.usd_per_million_output_tokens, rel=1e-3)


def test_standard_provisioning_is_one_vm_on_the_static_address():
    config = {
        **BASE,
        "model": "llama-3.1-70b",
        "precision": "fp8",
        "machineType": "g2-standard-48",
        "pricing": "on-demand",
    }
    mocks, out = stack("gcp", config)
    _, fit = expected("gcp", "llama-3.1-70b", "gcp-g2-standard-48", "on-demand", "fp8")
    vm = mocks.one("gcp:compute/instance:Instance")
    assert vm["machineType"] == "g2-standard-48" and fit.gpus_per_node == 4
    assert vm["scheduling"]["provisioningModel"] == "STANDARD" and vm["scheduling"]["automaticRestart"] is True
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert vm["networkInterfaces"][0]["accessConfigs"][0]["natIp"] == GCP_IP
    assert vm["bootDisk"]["initializeParams"]["size"] >= gcp.BOOT_BASE_GB + fit.weight_gib
    argv = exec_start_argv(plain(vm["metadata"])["startup-script"])
    assert argv[argv.index(VLLM_IMAGE) + 1 :] == serve_args(fit.settings)
    assert mocks.of_type(MIG) == [] and mocks.of_type(TEMPLATE) == []
    assert out["instanceName"] == gcp.names(gcp.plan(config, scope=("selfhost-gcp", "dev"))).base


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"machineType": "a2-highgpu-1g"}, UserError, "unknown GCP machine type"),
        ({"model": "llama-3.1-70b"}, DoesNotFit, "does not fit"),
        ({"apiKey": None}, UserError, "missing secret apiKey"),
        ({"allowedCidrs": ["::/0"], "apiKey": None}, UserError, "without an API key"),
        ({"maxMonthlyUsd": "100"}, OverBudget, "exceeds the budget"),
        ({"allowedCidrs": ["10.0.0.300/8"]}, UserError, "not a CIDR"),
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
            "apiKey": "sk-example",
            "hfToken": "hf_example",
            "gcp:zone": "us-central1-b",
            # as `pulumi config set allowedCidrs 203.0.113.0/24,198.51.100.0/24` stores it
            "allowedCidrs": "203.0.113.0/24,198.51.100.0/24",
        }
    )
    mocks, _ = stack("gcp", config)
    assert mocks.one(TEMPLATE)["machineType"] == "g2-standard-8"
    assert mocks.one(MIG)["zone"] == "us-central1-b"
    api = [rule for rule in mocks.of_type(FIREWALL) if rule["description"].startswith("selfhost")]
    assert api[0]["sourceRanges"] == ["203.0.113.0/24", "198.51.100.0/24"]
