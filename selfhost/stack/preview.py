"""Run a stack program under Pulumi's mocks: what `pulumi up` would declare, with no cloud and no CLI.

    python -m selfhost.stack.preview aws stacks/aws/Pulumi.dev.yaml

runs the shipped stacks/<cloud>/__main__.py beside the config file and prints every resource (type,
name) and the outputs, after the same validation, cost review and budget gate as `pulumi up`. Cloud
look-ups (AMI, default VPC) and provider-assigned values (IPs, ids, ARNs) are placeholders.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

AMI = "ami-0dlbase0000000001"
EIP = "203.0.113.10"
LB_DNS = "vllm-123456789.us-east-1.elb.amazonaws.com"
ELB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
GCP_IP = "198.51.100.7"
SECRET_PLACEHOLDER = "[secret-placeholder]"  # passes the key rules: `pulumi up` checks the real one
ZONE_IDS = {  # zone name letter -> zone ID, per region (in AWS the mapping differs per account)
    "us-east-1": {"a": "use1-az4", "b": "use1-az6", "c": "use1-az1"},
    "us-west-2": {"a": "usw2-az2", "b": "usw2-az1", "c": "usw2-az3"},
    "eu-west-1": {"a": "euw1-az3", "b": "euw1-az1", "c": "euw1-az2"},
}
CLOUDS = ("aws", "gcp", "runpod")


def is_secret(value: Any) -> bool:
    return is_rpc_secret(value)


def plain(value: Any) -> Any:
    """The value with every secret wrapper removed (recursively)."""
    value = unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class PlaceholderMocks(pulumi.runtime.Mocks):
    """Answers the engine with each resource's inputs plus placeholder provider values; keeps a list."""

    def __init__(self, account: str = "123456789012", project: str = "my-project") -> None:
        self.account = account  # the AWS account id getCallerIdentity answers
        self.project = project  # the GCP project id getProject answers
        self.resources: list[tuple[str, str, dict]] = []
        self.calls: list[tuple[str, dict]] = []
        self.ignored: dict[str, list[str]] = {}  # resource name -> ignore_changes (what a later `up` leaves alone)

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> None:
        """A stack transformation that records each resource's ignore_changes (the mocks don't see options)."""
        if args.opts and args.opts.ignore_changes:
            self.ignored[args.name] = list(args.opts.ignore_changes)
        return None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append((args.typ, args.name, args.inputs))
        state = dict(args.inputs)
        placeholders: dict[str, dict[str, Any]] = {
            "aws:ec2/eip:Eip": {"publicIp": EIP, "allocationId": "eipalloc-0123"},
            "aws:secretsmanager/secret:Secret": {
                "arn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{args.name}-Xy12"
            },
            "aws:ec2/launchTemplate:LaunchTemplate": {"latestVersion": 1},
            "aws:iam/instanceProfile:InstanceProfile": {
                "arn": f"arn:aws:iam::123456789012:instance-profile/{args.name}"
            },
            "aws:iam/role:Role": {"name": args.name},
            "aws:autoscaling/group:Group": {"name": f"{args.name}-asg"},
            "aws:s3/bucket:Bucket": {
                "bucket": args.inputs.get("bucket") or f"{args.inputs.get('bucketPrefix', '')}0a1b2c3d",
                "arn": "arn:aws:s3:::"
                + (args.inputs.get("bucket") or f"{args.inputs.get('bucketPrefix', '')}0a1b2c3d"),
            },
            # pulumi_random's RandomId: random bytes the provider draws once and keeps in state; here a placeholder
            # drawn from the resource's name, account and project (repeatable runs, distinct per resource)
            "random:index/randomId:RandomId": {
                "hex": hashlib.sha256(f"{args.name}/{self.account}/{self.project}".encode()).hexdigest()[
                    : 2 * int(args.inputs.get("byteLength") or 4)
                ]
            },
            "aws:lb/loadBalancer:LoadBalancer": {
                "arn": f"{ELB_ARN}:loadbalancer/app/{args.name}/50dc6c495c0c9188",
                "arnSuffix": f"app/{args.name}/50dc6c495c0c9188",
                "dnsName": LB_DNS,
            },
            "aws:lb/targetGroup:TargetGroup": {
                "arn": f"{ELB_ARN}:targetgroup/{args.name}/73e2d6bc24d8a067",
                "arnSuffix": f"targetgroup/{args.name}/73e2d6bc24d8a067",
            },
            "aws:acm/certificate:Certificate": {
                "arn": f"arn:aws:acm:us-east-1:123456789012:certificate/{args.name}",
                "domainValidationOptions": [
                    {
                        "domainName": args.inputs.get("domainName"),
                        "resourceRecordName": f"_x1.{args.inputs.get('domainName')}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": "_x2.acm-validations.aws.",
                    }
                ],
            },
            "gcp:compute/address:Address": {
                "address": GCP_IP,
                "selfLink": f"projects/p/regions/r/addresses/{args.name}",
            },
            "gcp:serviceaccount/account:Account": {
                "email": f"{args.inputs.get('accountId')}@p.iam.gserviceaccount.com"
            },
            "gcp:compute/instanceTemplate:InstanceTemplate": {
                "selfLinkUnique": f"projects/p/global/instanceTemplates/{args.name}?uniqueId=1"
            },
            "gcp:compute/instance:Instance": {"instanceId": "1234567890"},
            "gcp:compute/instanceGroupManager:InstanceGroupManager": {"name": args.name},
            "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager": {
                "instanceGroup": f"projects/p/regions/r/instanceGroups/{args.inputs.get('name')}"
            },
            "gcp:compute/globalAddress:GlobalAddress": {"address": GCP_IP},
            "gcp:compute/securityPolicy:SecurityPolicy": {
                "selfLink": f"projects/p/global/securityPolicies/{args.inputs.get('name')}"
            },
            "gcp:compute/network:Network": {"selfLink": f"projects/p/global/networks/{args.inputs.get('name')}"},
            "gcp:compute/subnetwork:Subnetwork": {
                "selfLink": f"projects/p/regions/r/subnetworks/{args.inputs.get('name')}"
            },
            "gcp:compute/resourcePolicy:ResourcePolicy": {
                "selfLink": f"projects/p/regions/r/resourcePolicies/{args.inputs.get('name')}"
            },
        }
        state.update(placeholders.get(args.typ, {}))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ssm/getParameter:getParameter":
            return {
                "name": args.args["name"],
                "value": AMI,
                "insecureValue": AMI,
                "type": "String",
                "id": args.args["name"],
            }
        if args.token == "aws:ec2/getVpc:getVpc":
            return {"id": args.args.get("id") or "vpc-0default", "cidrBlock": "172.31.0.0/16", "default": True}
        if args.token == "aws:ec2/getSubnets:getSubnets":
            return {"id": "us-east-1", "ids": ["subnet-0a", "subnet-0b", "subnet-0c"]}
        if args.token == "gcp:compute/getZones:getZones":
            region = args.args.get("region") or "us-central1"
            return {"id": region, "names": [f"{region}-{z}" for z in ("a", "b", "c", "f")]}
        if args.token == "gcp:organizations/getProject:getProject":
            return {"projectId": self.project, "number": "123456789012", "name": self.project}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account,
                "arn": f"arn:aws:iam::{self.account}:user/ci",
                "userId": "AIDA0",
                "id": "x",
            }
        if args.token == "aws:ec2/getSubnet:getSubnet":  # the zone is the id's last letter: subnet-0a -> us-east-1a
            subnet_id = args.args["id"]
            region = pulumi.Config("aws").get("region") or os.environ.get("AWS_REGION") or "us-east-1"
            letter = subnet_id[-1]
            ids = ZONE_IDS.get(region, {})
            return {
                "id": subnet_id,
                "vpcId": "vpc-0given",
                "availabilityZone": f"{region}{letter}",
                "availabilityZoneId": ids.get(letter, f"{region}-az-{letter}"),
            }
        return {}


def ensure_event_loop() -> None:
    """Pulumi's mocks run on the current event loop; asyncio.run() elsewhere in the process leaves none."""
    import asyncio

    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(
    program: str | Path,
    project: str,
    config: dict[str, str],
    secret_keys: list[str],
    mocks: PlaceholderMocks,
    stack: str = "dev",
) -> dict[str, Any]:
    """Run a Pulumi program file under `mocks` with engine-style config (`project:key` -> string).

    Returns the exported outputs, resolved. A refusal propagates as the program's pulumi.RunError."""
    ensure_event_loop()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys)
    exported: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    real_export = pulumi.export

    @pulumi.runtime.test
    def run():
        pulumi.runtime.register_stack_transformation(mocks.transformation)
        runpy.run_path(str(program), run_name="__main__")
        keys = list(exported)
        return pulumi.Output.all(*[exported[k] for k in keys]).apply(
            lambda vals: outputs.update(zip(keys, vals, strict=True))
        )

    pulumi.export = lambda name, value: exported.__setitem__(name, value)
    try:
        run()
    finally:
        pulumi.export = real_export
        pulumi.runtime.set_all_config({}, [])
    return outputs


def engine_config(cloud: str, config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A plain mapping (key -> value; `aws:region`-style keys kept) as the engine passes it, and the secret keys."""
    project = f"selfhost-{cloud}"
    out: dict[str, str] = {}
    secret_keys = []
    for key, value in config.items():
        if value is None:
            continue
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, bool):
            value = str(value).lower()
        out[full] = value if isinstance(value, str) else json.dumps(value)
        if key in ("apiKey", "hfToken"):
            secret_keys.append(full)
    return out, secret_keys


def stack_config(path: str | Path, project: str) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml's config: the project's own keys unprefixed, provider keys (aws:region) as they
    are; `secure:` values are skipped."""
    import yaml

    raw = (yaml.safe_load(Path(path).read_text()) or {}).get("config") or {}
    out = {}
    for key, value in raw.items():
        name = key.split(":", 1)[1] if key.startswith(f"{project}:") else key
        if isinstance(value, dict) and "secure" in value:
            continue
        out[name] = value
    return out


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in CLOUDS:
        print(
            "usage: python -m selfhost.stack.preview {aws,gcp,runpod} stacks/<cloud>/Pulumi.<stack>.yaml",
            file=sys.stderr,
        )
        return 2
    cloud, path = args
    config = stack_config(path, f"selfhost-{cloud}")
    filled = [
        k
        for k in ("apiKey", "hfToken")
        if k not in config and f"{k}Secret" not in config and f"{k}SecretArn" not in config
    ]
    config.update(dict.fromkeys(filled, SECRET_PLACEHOLDER))
    program = Path(path).resolve().parent / "__main__.py"
    if not program.exists():
        print(f"error: no {program}. Fix: give a Pulumi.<stack>.yaml inside stacks/<cloud>/.", file=sys.stderr)
        return 2
    engine, secret_keys = engine_config(cloud, config)
    mocks = PlaceholderMocks()
    try:
        outputs = run_program(program, f"selfhost-{cloud}", engine, secret_keys, mocks)
    except pulumi.RunError as err:
        print(str(err), file=sys.stderr)
        return 2
    if filled:
        print(f"(secrets {', '.join(filled)} not in the file: placeholders used; `pulumi up` needs them set)")
    print(f"{len(mocks.resources)} resources:")
    for typ, name, _ in mocks.resources:
        print(f"  {typ}  {name}")
    print("outputs:")
    for key, value in outputs.items():
        print(f"  {key}: {_short(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
