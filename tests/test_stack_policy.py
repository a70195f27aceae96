"""The policy pack's rules (selfhost.stack.policies) over what each stack declares under Pulumi's mocks:
every shipped configuration passes; each rule catches the violation it is for."""

from __future__ import annotations

import base64
import copy

import pytest
from pulumi_policy import ResourceValidationArgs
from stack_mocks import plain, stack

from selfhost.stack.policies import POLICIES

COMMON = {
    "model": "llama-3.1-8b",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_abcdefghijklmnopqrstuvwxyz0123",
}
AWS = {**COMMON, "instanceType": "g5.xlarge", "pricing": "spot", "allowedCidrs": ["203.0.113.0/24"]}
GCP = {**COMMON, "machineType": "g2-standard-8", "pricing": "spot", "allowedCidrs": ["203.0.113.0/24"]}
CASES = {
    "aws-spot": ("aws", {**AWS, "allowPlainHttp": True}, {}),
    "aws-reserved": (
        "aws",
        {
            **AWS,
            "pricing": "reserved-1y",
            "reservationOwned": "true",
            "reserveCapacity": "true",
            "availabilityZone": "us-east-1a",
        }
        | {"allowPlainHttp": True, "hoursPerDay": "10", "daysPerWeek": "5"},
        {},
    ),
    "aws-domain": ("aws", {**AWS, "domain": "api.example.com", "allowedCidrs": ["0.0.0.0/0", "::/0"]}, [443]),
    "gcp-spot": ("gcp", {**GCP, "allowPlainHttp": True}, {}),
    "gcp-on-demand": ("gcp", {**GCP, "pricing": "on-demand", "allowPlainHttp": True}, {}),
    "gcp-domain": ("gcp", {**GCP, "domain": "api.example.com", "allowedCidrs": ["0.0.0.0/0"]}, [443]),
    "runpod": ("runpod", COMMON, {}),
}


def violations(resources, open_ports=()) -> list[tuple[str, str, str]]:
    """Run every policy's validate on each (type, name, props); return (policy, resource, message)."""
    found = []
    for typ, name, props in resources:
        for policy in POLICIES:
            config = {"openApiPorts": list(open_ports)} if policy.name == "no-open-ingress" else {}
            args = ResourceValidationArgs(typ, props, f"urn:{typ}::{name}", name, None, None, config)
            policy.validate(args, lambda message, urn=None, p=policy, n=name: found.append((p.name, n, message)))
    return found


def declared(cloud: str, config: dict) -> list[tuple[str, str, dict]]:
    """What the stack declares, as the policy engine sees it (secrets unwrapped)."""
    mocks, _ = stack(cloud, config)
    return [(typ, name, plain(inputs)) for typ, name, inputs in mocks.resources]


@pytest.mark.parametrize("case", list(CASES))
def test_every_stack_passes_the_pack(case):
    cloud, config, open_ports = CASES[case]
    resources = declared(cloud, config)
    assert len(resources) >= 3
    assert violations(resources, open_ports) == []


def test_open_api_port_needs_the_pack_config_too():
    cloud, config, _ = CASES["aws-domain"]
    found = violations(declared(cloud, config))
    assert [(p, n) for p, n, _ in found] == [("no-open-ingress", "selfhost-aws-api")]


@pytest.fixture(scope="module")
def aws_resources():
    return declared("aws", {**AWS, "allowPlainHttp": True})


def changed(resources, typ, edit):
    out = copy.deepcopy(resources)
    for t, _, props in out:
        if t == typ:
            edit(props)
    return out


LT = "aws:ec2/launchTemplate:LaunchTemplate"
SG = "aws:ec2/securityGroup:SecurityGroup"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"


def _user_data_with_key(props):
    script = base64.b64decode(props["userData"]).decode() + "\nexport VLLM_API_KEY=sk-live-123\n"
    props["userData"] = base64.b64encode(script.encode()).decode()


@pytest.mark.parametrize(
    "typ, edit, rule",
    [
        (LT, lambda p: p["metadataOptions"].update(httpTokens="optional"), "imdsv2-required"),
        (LT, lambda p: p.pop("metadataOptions"), "imdsv2-required"),
        (LT, lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false"), "encrypted-disks"),
        (SG, lambda p: p["ingress"][0].update(cidrBlocks=["0.0.0.0/0"]), "no-open-ingress"),
        (SG, lambda p: p["ingress"][0].update(fromPort=22, toPort=22), "no-ssh-ingress"),
        (SG, lambda p: p["ingress"][0].update(fromPort=0, toPort=65535), "no-ssh-ingress"),
        (
            SG,
            lambda p: p["ingress"].append({"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}),
            "no-open-ingress",
        ),
        (LT, _user_data_with_key, "secrets-in-secret-stores"),
        (PAB, lambda p: p.update(restrictPublicBuckets=False), "private-buckets"),
    ],
)
def test_each_rule_catches_its_violation(aws_resources, typ, edit, rule):
    found = violations(changed(aws_resources, typ, edit))
    assert rule in {p for p, _, _ in found}, found


def test_open_port_allowed_by_config_is_only_that_port(aws_resources):
    opened = changed(aws_resources, SG, lambda p: p["ingress"][0].update(cidrBlocks=["0.0.0.0/0"]))
    assert violations(opened, open_ports=[8000]) == []
    assert violations(opened, open_ports=[443]) != []
    wide = changed(opened, SG, lambda p: p["ingress"][0].update(toPort=9000))
    assert {p for p, _, _ in violations(wide, open_ports=[8000])} == {"no-open-ingress"}


def test_gcp_and_runpod_violations():
    gcp = declared("gcp", {**GCP, "allowPlainHttp": True})
    fw = "gcp:compute/firewall:Firewall"
    everything = changed(gcp, fw, lambda p: p.update(sourceRanges=["0.0.0.0/0"], allows=[{"protocol": "tcp"}]))
    assert {"no-open-ingress", "no-ssh-ingress"} <= {p for p, _, _ in violations(everything)}
    leaked = changed(
        gcp,
        "gcp:compute/instanceTemplate:InstanceTemplate",
        lambda p: p["metadata"].update({"hf-token": "hf_abcdefghijklmnopqrstuvwxyz0123"}),
    )
    assert "secrets-in-secret-stores" in {p for p, _, _ in violations(leaked)}
    public = changed(gcp, "gcp:storage/bucket:Bucket", lambda p: p.update(publicAccessPrevention="inherited"))
    assert "private-buckets" in {p for p, _, _ in violations(public)}
    pod = declared("runpod", COMMON)
    argv = changed(pod, "runpod:index:Pod", lambda p: p.update(dockerArgs=p["dockerArgs"] + " --api-key sk-live"))
    assert "secrets-in-secret-stores" in {p for p, _, _ in violations(argv)}


def test_the_shipped_pack_enforces_every_rule():
    """stacks/policy/__main__.py builds its PolicyPack from POLICIES (constructing it would start the
    analyzer's server, so the program is read, not run)."""
    import ast

    from pulumi_policy import EnforcementLevel
    from stack_mocks import ROOT

    tree = ast.parse((ROOT / "stacks" / "policy" / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    kwargs = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert kwargs["policies"] == "POLICIES" and kwargs["enforcement_level"] == "EnforcementLevel.MANDATORY"
    names = [p.name for p in POLICIES]
    assert len(set(names)) == len(names) == 6
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in POLICIES)
    assert "virtualenv: ../../.venv" in (ROOT / "stacks" / "policy" / "PulumiPolicy.yaml").read_text()
