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
def test_every_stack_passes_the_pack(case, aws_reserved_prices):
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


# --- issue 24: the gaps measured in the pack --------------------------------------------------------------------

SGR = "aws:ec2/securityGroupRule:SecurityGroupRule"


def _sg_rule(**over):
    base = {"type": "ingress", "securityGroupId": "sg-1", "protocol": "tcp", "fromPort": 8000, "toPort": 8000}
    return (SGR, "extra-rule", {**base, "cidrBlocks": ["203.0.113.0/24"], **over})


def _rules_hit(resources, open_ports=()) -> set[str]:
    return {p for p, _, _ in violations(resources, open_ports)}


def test_a_standalone_security_group_rule_is_checked(aws_resources):
    assert _rules_hit([*aws_resources, _sg_rule()]) == set()  # a good rule passes
    ssh = _sg_rule(fromPort=22, toPort=22, cidrBlocks=["0.0.0.0/0"])
    assert {"no-ssh-ingress", "no-open-ingress"} <= _rules_hit([*aws_resources, ssh])
    egress = _sg_rule(type="egress", fromPort=22, toPort=22, cidrBlocks=["0.0.0.0/0"])
    assert _rules_hit([*aws_resources, egress]) == set()


@pytest.mark.parametrize("typ", [SG, SGR])
def test_a_port_of_none_is_the_widest_range_not_a_crash(aws_resources, typ):
    if typ == SG:
        bad = changed(aws_resources, SG, lambda p: p["ingress"][0].update(fromPort=None, toPort=None))
    else:
        bad = [*aws_resources, _sg_rule(fromPort=None, toPort=None)]
    assert "no-ssh-ingress" in _rules_hit(bad)  # None admits every port, 22 among them


def _user_data_with(line):
    def edit(props):
        script = base64.b64decode(props["userData"]).decode() + "\n" + line + "\n"
        props["userData"] = base64.b64encode(script.encode()).decode()

    return edit


@pytest.mark.parametrize(
    "line",
    [
        "curl -H 'Authorization: Bearer sk-live-0123456789abcdef' http://127.0.0.1:8000/v1/models",
        "api_key: Zq8vR2mWx4Tn7LpB9cYd",
        '{"token": "Zq8vR2mWx4Tn7LpB9cYd"}',
        "echo sk-proj-0123456789abcdefghij > /etc/key",
    ],
)
def test_secrets_in_user_data_are_found_by_pattern(aws_resources, line):
    assert "secrets-in-secret-stores" in _rules_hit(changed(aws_resources, LT, _user_data_with(line)))
    harmless = changed(aws_resources, LT, _user_data_with("api_key: $VLLM_API_KEY  # a reference"))
    assert _rules_hit(harmless) == set()


def test_a_plain_runpod_env_secret_fails_and_a_runpod_secret_reference_passes():
    pod = declared("runpod", COMMON)
    pod_type = "runpod:index:Pod"
    plain_secret = changed(pod, pod_type, lambda p: p["env"].append({"key": "OPENAI_API_KEY", "value": "Zq8vR2mWx4"}))
    found = violations(plain_secret)
    assert "secrets-in-secret-stores" in {p for p, _, _ in found}
    assert any("OPENAI_API_KEY" in m and "RUNPOD_SECRET" in m for _, _, m in found)
    by_value = changed(pod, pod_type, lambda p: p["env"].append({"key": "EXTRA", "value": "hf_" + "a" * 30}))
    assert "secrets-in-secret-stores" in _rules_hit(by_value)
    ref = {"key": "OPENAI_API_KEY", "value": "{{ RUNPOD_SECRET_openai }}"}
    assert _rules_hit(changed(pod, pod_type, lambda p: p["env"].append(ref))) == set()


BACKEND = "gcp:compute/backendService:BackendService"


def test_an_open_gcp_load_balancer_needs_cloud_armor_or_the_pack_config():
    gcp = declared("gcp", {**GCP, "allowPlainHttp": True})
    assert any(t == BACKEND and p.get("securityPolicy") for t, _, p in gcp)  # allowedCidrs: Cloud Armor
    open_lb = changed(gcp, BACKEND, lambda p: p.pop("securityPolicy"))
    found = violations(open_lb)
    assert [(p, t) for p, _, m in found for t in ["Cloud Armor"] if t in m] == [("no-open-ingress", "Cloud Armor")]
    assert violations(open_lb, open_ports=[443]) == []  # the API declared public to the pack
    cloud, config, _ = CASES["gcp-domain"]  # open to all: passes only with the pack config, as on AWS
    assert "no-open-ingress" in _rules_hit(declared(cloud, config))


def test_gcp_messages_name_ports_and_ranges_readably():
    from pulumi_policy.proxy import _ListProxy

    gcp = declared("gcp", {**GCP, "allowPlainHttp": True})
    fw = "gcp:compute/firewall:Firewall"

    def edit(p):  # as the engine hands them: lists behind proxies
        p["sourceRanges"] = _ListProxy(["0.0.0.0/0"], [])
        p["allows"] = [{"protocol": "tcp", "ports": _ListProxy(["22", "8000-8001"], [])}]

    found = violations(changed(gcp, fw, edit))
    messages = [m for p, _, m in found if p in ("no-ssh-ingress", "no-open-ingress")]
    assert messages and all("Proxy" not in m and "object at" not in m for m in messages), messages
    assert any("22, 8000-8001" in m and "0.0.0.0/0" in m for m in messages), messages
