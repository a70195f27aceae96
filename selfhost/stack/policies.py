"""The mandatory rules of the selfhost policy pack (stacks/policy): what every stack must never declare.

Each rule is a pulumi-policy ResourceValidationPolicy over the engine's view of a resource (camelCase
properties, secrets already unwrapped). `pulumi preview --policy-pack stacks/policy` runs them before
anything is created; the tests run the same validate functions over what each stack declares under
Pulumi's mocks.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

OPEN = ("0.0.0.0/0", "::/0")
SSH = 22
# A literal secret in text a VM boots from or a process runs with (a reference like "$VAR" is fine).
SECRET_ASSIGNMENT = re.compile(r"\b[A-Z0-9_]*(API_KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*\s*=\s*['\"]?(?![$'\"\s])\S")
SECRET_FLAG = re.compile(r"--(api-key|hf-token|token)(=|\s+)(?!\$)\S")
HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
# an OpenAI-style key, a bearer credential, `api_key: value` / `"token": "value"` (YAML, JSON, INI)
SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{12,}")
BEARER = re.compile(r"\bBearer\s+(?![$<{])[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
SECRET_KEY_VALUE = re.compile(  # preceded by a line start, space, brace, comma or quote: not an ARN's `:secret:`
    r"(?:^|[\s{,\"'])[A-Za-z0-9_.-]*(api[_-]?key|token|secret|password)[\"']?[ \t]*:[ \t]*[\"']?"
    r"(?![$'\"\s{<]|null\b)[^\s'\",}]{6,}",
    re.IGNORECASE | re.MULTILINE,
)
SECRET_PATTERNS = (SECRET_ASSIGNMENT, SECRET_FLAG, HF_TOKEN, SK_KEY, BEARER, SECRET_KEY_VALUE)
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)
# The env the RunPod stack itself fills from Pulumi secrets (encrypted in the state); any other secret-named
# variable must be a RunPod secret reference, `{{ RUNPOD_SECRET_name }}`.
KIT_SECRET_ENV = frozenset({"VLLM_API_KEY", "HF_TOKEN"})
RUNPOD_SECRET_REF = re.compile(r"^\{\{\s*RUNPOD_SECRET_[A-Za-z0-9_-]+\s*\}\}$")
EXTERNAL_SCHEMES = ("EXTERNAL", "EXTERNAL_MANAGED")


Ports = list[tuple[int, int]] | None  # inclusive port ranges; None: every port and protocol


def _rules(props: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return list(props.get(key) or [])


def _port(value: Any, default: int) -> int:
    """A port bound; None, "" or anything unreadable is the widest bound (a rule is never skipped, nor crashes)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _aws_ports(rule: Mapping[str, Any], protocol_key: str = "protocol") -> Ports:
    if str(rule.get(protocol_key)) in ("-1", "all"):
        return None
    return [(_port(rule.get("fromPort"), 0), _port(rule.get("toPort"), 65535))]


def _gcp_ports(allow: Mapping[str, Any]) -> Ports:
    if str(allow.get("protocol")) == "all" or not allow.get("ports"):
        return None
    out = []
    for item in allow["ports"]:
        low, _, high = str(item).partition("-")
        out.append((_port(low, 0), _port(high or low, 65535)))
    return out


def _text(values: Any) -> str:
    """A list as "a, b" (the engine hands proxies, whose repr is not their items)."""
    if values is None or isinstance(values, str):
        return str(values)
    return ", ".join(str(v) for v in list(values))


def _covers(ports: Ports, port: int) -> bool:
    return ports is None or any(low <= port <= high for low, high in ports)


def _within(ports: Ports, allowed: Iterable[int]) -> bool:
    """Every port the rule admits is in `allowed`."""
    allowed = set(allowed)
    return ports is not None and all(p in allowed for low, high in ports for p in range(low, high + 1))


def _ingress(args: ResourceValidationArgs) -> Iterable[tuple[list[str], Ports, str]]:
    """(sources, ports, what) for each ingress rule of an AWS security group (or rule) or a GCP firewall."""
    props = args.props
    if args.resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in _rules(props, "ingress"):
            sources = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]
            yield sources, _aws_ports(rule), f"ingress {rule.get('fromPort')}-{rule.get('toPort')}"
    elif args.resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule" and props.get("type") == "ingress":
        sources = [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])]
        yield sources, _aws_ports(props), f"ingress rule {props.get('fromPort')}-{props.get('toPort')}"
    elif args.resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        sources = [s for s in (props.get("cidrIpv4"), props.get("cidrIpv6")) if s]
        yield sources, _aws_ports(props, "ipProtocol"), "ingress rule"
    elif args.resource_type == "gcp:compute/firewall:Firewall" and props.get("direction", "INGRESS") == "INGRESS":
        sources = list(props.get("sourceRanges") or [])
        for allow in _rules(props, "allows"):
            ports = _text(allow.get("ports")) if allow.get("ports") else "all ports"
            what = f"allow {allow.get('protocol')} {ports}"
            yield sources, _gcp_ports(allow), what


def imdsv2(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """EC2 instances and launch templates require IMDSv2 session tokens."""
    if args.resource_type not in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        return
    options = args.props.get("metadataOptions") or {}
    if options.get("httpEndpoint") == "disabled":
        return
    if options.get("httpTokens") != "required":
        report_violation("instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens = required)", None)


def encrypted_disks(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Every EBS volume (launch template, instance, standalone) is encrypted."""
    props = args.props
    if args.resource_type == "aws:ebs/volume:Volume":
        if str(props.get("encrypted")).lower() != "true":
            report_violation("EBS volume must be encrypted", None)
        return
    if args.resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        for mapping in _rules(props, "blockDeviceMappings"):
            ebs = mapping.get("ebs")
            if ebs is not None and str(ebs.get("encrypted")).lower() != "true":
                report_violation(f"EBS volume {mapping.get('deviceName')} must be encrypted", None)
    if args.resource_type == "aws:ec2/instance:Instance":
        root = props.get("rootBlockDevice") or {}
        if str(root.get("encrypted")).lower() != "true":
            report_violation("the root volume must be encrypted", None)
        for mapping in _rules(props, "ebsBlockDevices"):
            if str(mapping.get("encrypted")).lower() != "true":
                report_violation(f"EBS volume {mapping.get('deviceName')} must be encrypted", None)


def no_open_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Nothing open to 0.0.0.0/0 or ::/0, except the API port when the pack's config allows it."""
    allowed = [int(p) for p in (args.get_config() or {}).get("openApiPorts") or []]
    props = args.props
    if (
        args.resource_type == "gcp:compute/backendService:BackendService"
        and props.get("loadBalancingScheme") in EXTERNAL_SCHEMES
        and not props.get("securityPolicy")
        and not allowed
    ):  # an external load balancer answers everyone unless a Cloud Armor policy restricts the callers
        report_violation(
            "external load balancer backend has no Cloud Armor security policy: it is open to the internet; "
            "restrict callers (allowedCidrs), or allow the API port with openApiPorts in the policy config",
            None,
        )
    for sources, ports, what in _ingress(args):
        if not set(sources) & set(OPEN) or _within(ports, allowed):
            continue
        report_violation(
            f"{what} is open to the internet ({_text(s for s in sources if s in OPEN)}); allow only the "
            "API port, with openApiPorts in the policy config",
            None,
        )


def no_ssh_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No rule lets anyone reach port 22."""
    for sources, ports, what in _ingress(args):
        if sources and _covers(ports, SSH):
            report_violation(f"{what} allows SSH (port 22) from {_text(sources)}", None)


def secrets_in_stores(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Secrets live in a secret store or the environment: never in boot scripts, argv or plain parameters."""
    props = args.props
    texts: list[tuple[str, str]] = []
    if args.resource_type == "aws:ec2/launchTemplate:LaunchTemplate" and props.get("userData"):
        texts.append(("userData", _b64(str(props["userData"]))))
    if args.resource_type == "aws:ec2/instance:Instance" and props.get("userData"):
        texts.append(("userData", str(props["userData"])))
    if args.resource_type in ("gcp:compute/instance:Instance", "gcp:compute/instanceTemplate:InstanceTemplate"):
        metadata = props.get("metadata") or {}
        for key, value in metadata.items():
            if SECRET_NAME.search(key):
                report_violation(f"metadata key {key!r} looks like a secret: keep it in Secret Manager", None)
            texts.append((f"metadata {key}", str(value)))
        if props.get("metadataStartupScript"):
            texts.append(("metadataStartupScript", str(props["metadataStartupScript"])))
    if args.resource_type == "runpod:index:Pod":
        texts.append(("dockerArgs", str(props.get("dockerArgs") or "")))
        for item in props.get("env") or []:
            name, value = str(item.get("key") or ""), str(item.get("value") or "")
            if name in KIT_SECRET_ENV or RUNPOD_SECRET_REF.match(value):
                continue
            if SECRET_NAME.search(name):
                report_violation(
                    f"pod env {name} holds a plain secret value: use a RunPod secret ({{{{ RUNPOD_SECRET_name }}}})",
                    None,
                )
            else:
                texts.append((f"pod env {name}", value))
    secret_named = SECRET_NAME.search(str(props.get("name") or ""))
    if args.resource_type == "aws:ssm/parameter:Parameter" and secret_named and props.get("type") != "SecureString":
        report_violation("a secret-named SSM parameter must be a SecureString", None)
    for where, text in texts:
        for pattern in SECRET_PATTERNS:
            match = pattern.search(text)
            if match:
                shown = match.group(0)[:12]  # enough to find it, not the secret
                report_violation(f"{where} holds a secret value ({shown}...): use the secret store", None)
                break


def private_buckets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Buckets (the weights mirrors) are private: every S3 public-access block on, GCS uniform access
    with public access prevented."""
    props = args.props
    if args.resource_type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        off = [k for k in keys if props.get(k) is not True]
        if off:
            report_violation(f"S3 public access block must set {', '.join(off)} to true", None)
    uniform = props.get("uniformBucketLevelAccess") is True and props.get("publicAccessPrevention") == "enforced"
    if args.resource_type == "gcp:storage/bucket:Bucket" and not uniform:
        report_violation("Cloud Storage bucket must use uniform access with public access prevention", None)


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return text


POLICIES = [
    ResourceValidationPolicy(
        name="imdsv2-required",
        description="EC2 instances and launch templates require IMDSv2 (session tokens).",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=imdsv2,
    ),
    ResourceValidationPolicy(
        name="encrypted-disks",
        description="Every EBS volume is encrypted.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=encrypted_disks,
    ),
    ResourceValidationPolicy(
        name="no-open-ingress",
        description="No ingress from 0.0.0.0/0 or ::/0, except the API port listed in openApiPorts.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=no_open_ingress,
        config_schema=PolicyConfigSchema(
            properties={"openApiPorts": {"type": "array", "items": {"type": "integer"}, "default": []}}
        ),
    ),
    ResourceValidationPolicy(
        name="no-ssh-ingress",
        description="No security group or firewall rule admits port 22.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=no_ssh_ingress,
    ),
    ResourceValidationPolicy(
        name="private-buckets",
        description="S3 buckets block all public access; Cloud Storage buckets enforce public access prevention.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=private_buckets,
    ),
    ResourceValidationPolicy(
        name="secrets-in-secret-stores",
        description="No secret value in user-data, startup scripts, container arguments or plain parameters.",
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=secrets_in_stores,
    ),
]
