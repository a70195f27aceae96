"""Owner and TTL marks and `selfhost reap` (issues 14, 21) against boto3 on moto, google-cloud-compute and the RunPod
SDK on local stand-ins (tests/reap_stand_ins.py), and a fake `sky` recording its argv. Servers run on 127.0.0.1,
stopped by PID. Every cloud is seeded, beside the kit's own previews, with foreign resources carrying every mark but
this owner's (expired, same names, `selfhost` in the name): the reaper must remove exactly the expired kit preview.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_selfhost
from fake_vllm_server import free_port, wait_port

from costing.errors import UserError
from selfhost.reap import ttl

UTC = dt.timezone.utc
PAST_AT, FUTURE_AT = dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2099, 12, 31, 23, 59, tzinfo=UTC)
PAST, FUTURE = ttl.format_expiry(PAST_AT), ttl.format_expiry(FUTURE_AT)
ME, OTHER = "Acme/llm-serving", "rival/llm-serving"
OWNER_ENV = {"GITHUB_REPOSITORY": ME}


def marks(owner: str, expires: dt.datetime | None, preview: str | None = None, hourly: float | None = None) -> dict:
    return ttl.ttl_tags(None, owner=owner, expires=expires, preview=preview, hourly_usd=hourly, stack="p/s/selfhost")


def foreign(expires: dt.datetime = PAST_AT, preview: str | None = None) -> dict:
    """Every mark the kit writes, expired, but another owner's."""
    return marks(OTHER, expires, preview)


# --- the marks ------------------------------------------------------------------------------------------------


def test_ttl_tags_are_valid_gcp_labels_and_round_trip():
    now = dt.datetime(2026, 11, 30, 7, 0, 30, tzinfo=UTC)
    tags = ttl.ttl_tags("8h", owner="Acme.Corp/LLM_serving.v2", preview="PR #12", hourly_usd=0.39, now=now)
    for key, value in tags.items():  # GCP: lowercase letters, digits, '_' and '-', at most 63 characters
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) and re.fullmatch(r"[a-z0-9_-]{0,63}", value), (key, value)
    assert tags[ttl.MANAGED_KEY] == "selfhost" and tags[ttl.OWNER_KEY] == ttl.owner_mark("acme.corp/llm_serving.v2")
    expiry = ttl.parse_expiry(tags[ttl.EXPIRES_KEY])
    assert expiry is not None and now + dt.timedelta(hours=8) <= expiry < now + dt.timedelta(hours=8, minutes=1)
    assert ttl.hourly_from_tag(tags[ttl.HOURLY_KEY]) == pytest.approx(0.39)
    assert ttl.tags_from_runpod_env(ttl.runpod_env(tags)) == tags
    name = ttl.named("pr-12", expiry, ME)
    assert ttl.expiry_in_name(name) == expiry and re.fullmatch(r"[a-z][a-z0-9-]*", name)
    assert ttl.marks_in_name(name)[ttl.OWNER_HASH_KEY] == ttl.owner_hash(ME) != ttl.owner_hash(OTHER)
    assert ttl.expiry_in_name("prod-llama") is None and ttl.parse_expiry("2026-11-30") is None
    assert ttl.expiry_in_name(f"pr-12-exp-{PAST}") is None and ttl.expiry_in_name(f"ml-exp-{PAST}") is None


def test_owner_marks_are_label_safe_and_distinct():
    owners = ["a/b", "a_b", "a.b", "a-b", "a/b/c", "a_s", "x" * 100 + "/y", "x" * 100 + "/z", "é/b", "A/B"]
    got = [ttl.owner_mark(o) for o in owners]
    assert all(re.fullmatch(r"[a-z0-9_-]{1,63}", m) for m in got), got
    assert got[-1] == got[0]  # GitHub names are case blind
    assert len(set(got[:-1])) == len(owners) - 1, got


def test_compact_upper_case_expiry_is_the_same_instant_and_junk_is_malformed():
    assert (
        ttl.parse_expiry("20260101T0000Z") == ttl.parse_expiry("20260101t0000z") == dt.datetime(2026, 1, 1, tzinfo=UTC)
    )
    for junk in ("tomorrow", "2026-01-01T00:00Z", "20261301t0000z", "20260101t2500z"):
        assert ttl.parse_expiry(junk) is None


def test_decide_takes_only_this_owners_expired_kit_deployments():
    now = dt.datetime(2026, 11, 30, tzinfo=UTC)
    mine = marks(ME, PAST_AT, "pr-7")
    assert ttl.decide(mine, owner=ME, preview=None, now=now) == (True, "expired")
    assert ttl.decide(mine, owner=ME.lower(), preview=None, now=now)[0]
    cases = {
        "foreign: another owner": foreign(preview="pr-7"),
        "foreign: not managed-by selfhost": {k: v for k, v in mine.items() if k != ttl.MANAGED_KEY},
        "not expired": marks(ME, FUTURE_AT, "pr-8"),
        "malformed expires-at 'tomorrow'": {**mine, ttl.EXPIRES_KEY: "tomorrow"},
        "no expires-at": marks(ME, None, "pr-9"),
    }
    for why, m in cases.items():
        assert ttl.decide(m, owner=ME, preview=None, now=now) == (False, why), why
    # the preview named: this owner's only, before its time
    assert ttl.decide(marks(ME, FUTURE_AT, "pr-8"), owner=ME, preview="pr-8", now=now)[0]
    assert not ttl.decide(foreign(FUTURE_AT, "pr-8"), owner=ME, preview="pr-8", now=now)[0]
    assert not ttl.decide(marks(ME, FUTURE_AT, "pr-80"), owner=ME, preview="pr-8", now=now)[0]


@pytest.mark.parametrize("text", ["", "8", "8w", "-1h", "1m", "91d", "nanh", "1e9d"])
def test_bad_ttls_are_refused(text):
    with pytest.raises(UserError):
        ttl.parse_ttl(text)


# --- helpers ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server(argv: list[str], port: int):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=10)


def reap(*args: str, env: dict) -> subprocess.CompletedProcess:
    return run_selfhost("reap", *args, env={**OWNER_ENV, **env}, timeout=300)


def by_name(doc: dict) -> dict[str, dict]:
    return {d["name"]: d for d in doc["deployments"]}


def acted(doc: dict, action: str) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["name"], d["where"]) for d in doc["deployments"] if d["action"] == action}


# --- AWS: boto3 on moto ---------------------------------------------------------------------------------------------


@pytest.fixture
def moto():
    exe = Path(sys.executable).with_name("moto_server")
    port = free_port()
    with server([str(exe), "-H", "127.0.0.1", "-p", str(port)], port):
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


class Aws:
    """boto3 clients on moto in one region, and the pieces of a stack as the AWS stack tags them."""

    def __init__(self, env: dict, region: str) -> None:
        import boto3

        kw = {"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": region, "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}  # fmt: skip
        self.region = region
        self.ec2, self.asg, self.elb = (boto3.client(s, **kw) for s in ("ec2", "autoscaling", "elbv2"))
        self.ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        self.vpc = vpc
        self.subnets = [s["SubnetId"] for s in self.ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc][:2]

    @staticmethod
    def tag_list(tags: dict) -> list[dict]:
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def instance(self, name: str, tags: dict) -> str:
        spec = [{"ResourceType": "instance", "Tags": self.tag_list({"Name": name, **tags})}]
        out = self.ec2.run_instances(ImageId=self.ami, InstanceType="g5.xlarge", MinCount=1, MaxCount=1,
                                     TagSpecifications=spec)  # fmt: skip
        return out["Instances"][0]["InstanceId"]

    def stack(self, name: str, tags: dict) -> None:
        """A preview as stacks/aws declares it: launch template, group (propagating tags), target group, LB."""
        lt = self.ec2.create_launch_template(
            LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": self.ami, "InstanceType": "g5.xlarge"},
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": self.tag_list(tags)}],
        )["LaunchTemplate"]["LaunchTemplateId"]  # fmt: skip
        tg = self.elb.create_target_group(Name=f"{name}-tg", Protocol="HTTP", Port=8000, VpcId=self.vpc,
                                          Tags=self.tag_list(tags))["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
        lb = self.elb.create_load_balancer(Name=f"{name}-lb", Subnets=self.subnets, Tags=self.tag_list(tags))
        self.elb.create_listener(LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP",
                                 Port=8000, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])  # fmt: skip
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"},
            MinSize=1, MaxSize=1, DesiredCapacity=1, VPCZoneIdentifier=self.subnets[0], TargetGroupARNs=[tg],
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": name,
                   "ResourceType": "auto-scaling-group"} for k, v in tags.items()],
        )  # fmt: skip

    def inventory(self) -> set[tuple[str, str, str]]:
        """(kind, name, region) of everything alive."""
        groups = {("group", g["AutoScalingGroupName"], self.region)
                  for g in self.asg.describe_auto_scaling_groups()["AutoScalingGroups"]}  # fmt: skip
        lts = {("launch template", t["LaunchTemplateName"], self.region)
               for t in self.ec2.describe_launch_templates()["LaunchTemplates"]}  # fmt: skip
        lbs = {("load balancer", b["LoadBalancerName"], self.region)
               for b in self.elb.describe_load_balancers()["LoadBalancers"]}  # fmt: skip
        tgs = {("target group", t["TargetGroupName"], self.region)
               for t in self.elb.describe_target_groups()["TargetGroups"]}  # fmt: skip
        insts = {
            ("instance", {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name", i["InstanceId"]), self.region)
            for r in self.ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("shutting-down", "terminated") and not any(
                t["Key"] == "aws:autoscaling:groupName" for t in i.get("Tags", []))
        }  # fmt: skip
        return groups | lts | lbs | tgs | insts


def test_aws_reap_removes_exactly_the_expired_kit_preview(moto):
    east, west = Aws(moto, "us-east-1"), Aws(moto, "us-west-2")
    east.stack("selfhost-pr-7", marks(ME, PAST_AT, "pr-7", hourly=1.006))  # the expired kit preview
    east.stack("selfhost-pr-8", marks(ME, FUTURE_AT, "pr-8"))  # the kit preview still within its TTL
    west.stack("selfhost-pr-6", marks(ME, PAST_AT, "pr-6"))  # expired, in another region: found there too
    # foreign: every mark but this owner's, expired, the same names (in another region), `selfhost` in the names
    west.stack("selfhost-pr-7", foreign(preview="pr-7"))
    east.stack("selfhost-pr-7-rival", foreign(preview="pr-7"))
    east.instance("selfhost-pr-7", foreign(preview="pr-7"))
    east.instance("team-gpu", {"expires-at": PAST})  # another team's, the expiry mark alone
    east.instance("selfhost-odd", marks(ME, None) | {"expires-at": "tomorrow"})  # the kit's, malformed: kept, warned
    east.instance("selfhost-pr-5", marks(ME, None, "pr-5") | {"expires-at": "20200101T0000Z"})  # compact upper case
    east.instance("prod", {})
    before = east.inventory() | west.inventory()

    dry = reap("--cloud", "aws", "--dry-run", "--format", "json", env=moto)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    pieces = (("group", ""), ("launch template", "-lt"), ("load balancer", "-lb"), ("target group", "-tg"))
    expected = {(kind, f"selfhost-pr-7{sfx}", "us-east-1") for kind, sfx in pieces}
    expected |= {(kind, f"selfhost-pr-6{sfx}", "us-west-2") for kind, sfx in pieces}
    expected |= {("instance", "selfhost-pr-5", "us-east-1")}
    assert acted(doc, "would terminate") == expected
    skipped = {(d["name"], d["where"]): d["why"] for d in doc["deployments"] if d["action"] == "skipped"}
    assert skipped[("selfhost-pr-7", "us-west-2")] == "foreign: another owner"
    assert skipped[("team-gpu", "us-east-1")] == "foreign: not managed-by selfhost"
    assert skipped[("selfhost-pr-8", "us-east-1")] == "not expired"
    assert skipped[("selfhost-odd", "us-east-1")].startswith("malformed expires-at")
    assert "warning: aws instance selfhost-odd: malformed expires-at 'tomorrow'" in dry.stderr
    assert "prod" not in {d["name"] for d in doc["deployments"]}  # unmarked: never even listed
    assert east.inventory() | west.inventory() == before  # the dry run touched nothing

    real = reap("--cloud", "aws", "--format", "json", env=moto)
    assert real.returncode == 0, real.stderr
    assert acted(json.loads(real.stdout), "terminated") == expected
    assert before - (east.inventory() | west.inventory()) == expected  # exactly the expired kit preview, nothing else
    receipt = {d["name"]: d for d in json.loads(real.stdout)["deployments"] if d["kind"] == "group"}
    assert receipt["selfhost-pr-7"]["hourly_usd"] == pytest.approx(1.006)


# --- GCP: google-cloud-compute on a local stand-in ------------------------------------------------------------------


def gcp_instance(name: str, labels: dict, zone: str = "us-central1-a") -> dict:
    return {
        "kind": "compute#instance",
        "id": str(abs(hash(name)) % 10**12),
        "name": name,
        "zone": f"https://www.googleapis.com/compute/v1/projects/demo/zones/{zone}",
        "status": "RUNNING",
        "machineType": f"https://www.googleapis.com/compute/v1/projects/demo/zones/{zone}/machineTypes/g2-standard-8",
        "creationTimestamp": "2026-11-29T23:00:00.000-08:00",
        "labels": labels,
    }


def service_account_info(token_uri: str) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "stand-in",
        "private_key": pem,
        "client_email": "reaper@demo.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def grouped(name: str, labels: dict, group: str, scope: str, zone: str) -> dict:
    """An instance a managed group made: metadata created-by names the group (regional or zonal)."""
    created_by = f"projects/1/{scope}/instanceGroupManagers/{group}"
    return gcp_instance(name, labels, zone) | {"metadata": {"items": [{"key": "created-by", "value": created_by}]}}


@pytest.fixture
def gcp(tmp_path):
    port = free_port()
    state = tmp_path / "gcp.json"
    mine_old, mine_new = marks(ME, PAST_AT, "pr-7", hourly=0.8536), marks(ME, FUTURE_AT, "pr-8")
    state.write_text(json.dumps({"instances": [
        # the expired kit preview: a regional group over two zones, a zonal group and a lone VM
        *[grouped(f"selfhost-pr-7-spot-{i}", mine_old, "selfhost-pr-7-spot", "regions/us-central1", z)
          for i, z in (("a1b2", "us-central1-a"), ("c3d4", "us-central1-b"))],
        grouped("pr-7-mig-x1", mine_old, "pr-7-mig", "zones/us-central1-a", "us-central1-a"),
        gcp_instance("pr-7-l4", mine_old),
        # the kit preview within its TTL
        grouped("selfhost-pr-8-spot-e5f6", mine_new, "selfhost-pr-8-spot", "regions/us-central1", "us-central1-c"),
        # foreign: every mark but the owner's, expired, same names (other regions/zones), selfhost in the names
        grouped("selfhost-pr-7-spot-g7h8", foreign(preview="pr-7"), "selfhost-pr-7-spot", "regions/europe-west4",
                "europe-west4-a"),
        grouped("pr-7-mig-y2", foreign(preview="pr-7"), "pr-7-mig", "zones/europe-west4-b", "europe-west4-b"),
        gcp_instance("pr-7-l4", foreign(preview="pr-7"), zone="europe-west4-a"),
        gcp_instance("team-l4", {"expires-at": PAST}),
        gcp_instance("prod-l4", {"team": "ml"}),
    ]}))  # fmt: skip
    adc = tmp_path / "adc.json"  # Application Default Credentials: a throwaway service-account key made here
    adc.write_text(json.dumps(service_account_info(f"http://127.0.0.1:{port}/token")))
    argv = [sys.executable, str(ROOT / "tests" / "reap_stand_ins.py"), "gcp", "--port", str(port), "--state",
            str(state)]  # fmt: skip
    with server(argv, port):
        yield (
            state,
            {
                "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
                "SELFHOST_GCP_COMPUTE_ENDPOINT": f"http://127.0.0.1:{port}",
                "GOOGLE_CLOUD_PROJECT": "demo",
            },
        )


def test_gcp_reap_removes_exactly_the_expired_kit_preview_regional_and_zonal_groups(gcp):
    state, env = gcp
    everything = {(i["name"], i["zone"].rsplit("/", 1)[-1]) for i in json.loads(state.read_text())["instances"]}
    dry = reap("--cloud", "gcp", "--dry-run", "--format", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    expected = {("regional group", "selfhost-pr-7-spot", "us-central1"), ("zonal group", "pr-7-mig", "us-central1-a"),
                ("instance", "pr-7-l4", "us-central1-a")}  # fmt: skip
    assert acted(doc, "would terminate") == expected
    skipped = {(d["name"], d["where"]): d["why"] for d in doc["deployments"] if d["action"] == "skipped"}
    assert skipped == {("selfhost-pr-8-spot", "us-central1"): "not expired",
                       ("selfhost-pr-7-spot", "europe-west4"): "foreign: another owner",
                       ("pr-7-mig", "europe-west4-b"): "foreign: another owner",
                       ("pr-7-l4", "europe-west4-a"): "foreign: another owner"}  # fmt: skip
    requests = json.loads(state.read_text())["requests"]
    assert all(r["method"] == "GET" for r in requests) and "filter=labels.managed-by" in requests[0]["path"]

    real = reap("--cloud", "gcp", "--format", "markdown", env=env)
    assert real.returncode == 0, real.stderr
    assert "| gcp | regional group | selfhost-pr-7-spot | us-central1 |" in real.stdout
    after = json.loads(state.read_text())
    left = {(i["name"], i["zone"].rsplit("/", 1)[-1]) for i in after["instances"]}
    assert everything - left == {("selfhost-pr-7-spot-a1b2", "us-central1-a"), ("selfhost-pr-7-spot-c3d4",
        "us-central1-b"), ("pr-7-mig-x1", "us-central1-a"), ("pr-7-l4", "us-central1-a")}  # fmt: skip
    deletes = [r["path"] for r in after["requests"] if r["method"] == "DELETE"]
    assert deletes == [  # groups first (dependency order), the regional one with the regional API
        "/compute/v1/projects/demo/regions/us-central1/instanceGroupManagers/selfhost-pr-7-spot",
        "/compute/v1/projects/demo/zones/us-central1-a/instanceGroupManagers/pr-7-mig",
        "/compute/v1/projects/demo/zones/us-central1-a/instances/pr-7-l4",
    ]


# --- RunPod: the SDK on a local GraphQL stand-in --------------------------------------------------------------------


def pod(pid: str, name: str, env: list[str], cost: float = 0.39) -> dict:
    return {"id": pid, "name": name, "desiredStatus": "RUNNING", "costPerHr": cost, "env": env, "gpuCount": 1,
            "imageName": "vllm/vllm-openai", "uptimeSeconds": 7200, "machine": {"gpuDisplayName": "A40"}}  # fmt: skip


def env_list(tags: dict) -> list[str]:
    return [f"{k}={v}" for k, v in ttl.runpod_env(tags).items()]


@pytest.fixture
def runpod_api(tmp_path):
    port = free_port()
    state = tmp_path / "runpod.json"
    state.write_text(json.dumps({"pods": [
        pod("p1", "selfhost-pr-7", env_list(marks(ME, PAST_AT, "pr-7"))),
        pod("p2", "selfhost-pr-8", env_list(marks(ME, FUTURE_AT, "pr-8"))),
        pod("p3", "named-exp-" + PAST, []),  # a name that looks marked: no owner, never the kit's
        pod("p4", "prod", ["HF_TOKEN_SECRET=ref"]),
        pod("p5", "selfhost-pr-9", env_list(marks(ME, FUTURE_AT, "pr-9"))),
        pod("p6", "selfhost-pr-7", env_list(foreign(preview="pr-7"))),
        pod("p7", "selfhost-pr-9", env_list(foreign(FUTURE_AT, preview="pr-9"))),
        pod("p8", "team", ["SELFHOST_EXPIRES_AT=" + PAST]),
    ]}))  # fmt: skip
    key = "stand-in-runpod-key"
    argv = [sys.executable, str(ROOT / "tests" / "reap_stand_ins.py"), "runpod", "--port", str(port),
            "--state", str(state), "--api-key", key]  # fmt: skip
    with server(argv, port):
        yield state, {"RUNPOD_API_BASE_URL": f"http://127.0.0.1:{port}", "RUNPOD_API_KEY": key}


def test_runpod_reap_terminates_this_owners_expired_and_closed_preview_pods_only(runpod_api):
    state, env = runpod_api
    dry = reap("--cloud", "runpod", "--dry-run", "--format", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert {d["id"] for d in doc["deployments"] if d["action"] == "would terminate"} == {"p1"}
    assert {d["id"]: d["why"] for d in doc["deployments"] if d["action"] == "skipped"} == {
        "p2": "not expired", "p5": "not expired", "p6": "foreign: another owner", "p7": "foreign: another owner",
        "p8": "foreign: not managed-by selfhost"}  # fmt: skip
    assert by_name(doc)["selfhost-pr-7"]["cost_usd"] is not None
    assert not [r for r in json.loads(state.read_text())["requests"] if "podTerminate" in r["query"]]

    real = reap("--cloud", "runpod", "--preview", "pr-9", "--format", "json", env=env)
    assert real.returncode == 0, real.stderr
    assert sorted(p["id"] for p in json.loads(state.read_text())["pods"]) == ["p2", "p3", "p4", "p6", "p7", "p8"]
    bad = reap("--cloud", "runpod", "--dry-run", env={**env, "RUNPOD_API_KEY": ""})
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "error: runpod:" in bad.stderr
    assert "RUNPOD_API_KEY" in bad.stderr


# --- SkyPilot: `sky down` by name (a fake `sky` on PATH) ------------------------------------------------------------


FAKE_SKY = """#!{python}
import json, os, sys
log = os.environ["FAKE_SKY_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_SKY_FAIL"):
    sys.stderr.write("sky.exceptions.ApiServerConnectionError: could not connect to the API server\\n")
    sys.exit(1)
if sys.argv[1:3] == ["status", "-o"]:
    print(open(os.environ["FAKE_SKY_STATUS"]).read())
"""


def fake_sky(tmp_path: Path, clusters: list[str]) -> tuple[Path, dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sky").write_text(FAKE_SKY.format(python=sys.executable))
    (bin_dir / "sky").chmod(0o755)
    launched = int(time.time()) - 3 * 3600
    status = tmp_path / "status.json"
    status.write_text(json.dumps([{"name": n, "launched_at": launched, "status": "UP"} for n in clusters]))
    log = tmp_path / "argv.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SKY_LOG": str(log),
           "FAKE_SKY_STATUS": str(status)}  # fmt: skip
    return log, env


def test_sky_reap_downs_only_this_repositorys_clusters(tmp_path):
    ours_old, ours_live, ours_12 = (ttl.named(n, t, ME) for n, t in (("pr-7", PAST_AT), ("pr-8", FUTURE_AT),
                                                                    ("pr-12", FUTURE_AT)))  # fmt: skip
    theirs_12, theirs_old = ttl.named("pr-12", FUTURE_AT, OTHER), ttl.named("pr-7", PAST_AT, OTHER)
    legacy, users = f"pr-12-exp-{PAST}", f"ml-exp-{PAST}"  # no owner in the name: never the kit's
    log, env = fake_sky(tmp_path, [ours_old, ours_live, ours_12, theirs_12, theirs_old, legacy, users, "prod-llama"])
    p = reap("--cloud", "sky", "--preview", "pr-12", "--hourly-usd", "0.39", "--all", "--format", "json", env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {n for _, n, _ in acted(doc, "terminated")} == {ours_old, ours_12}
    assert {n for _, n, _ in acted(doc, "skipped")} == {ours_live, theirs_12, theirs_old}  # the rest: not the kit's
    assert by_name(doc)[ours_old]["cost_usd"] == pytest.approx(3 * 0.39, abs=0.02)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0] == ["status", "-o", "json"] and sorted(calls[1:]) == sorted(
        [["down", "-y", ours_old], ["down", "-y", ours_12]]
    )


# --- clouds are independent -----------------------------------------------------------------------------------------


def test_a_cloud_that_cannot_start_or_list_is_one_line_and_the_others_are_still_reaped(moto, tmp_path):
    east = Aws(moto, "us-east-1")
    east.stack("selfhost-pr-7", marks(ME, PAST_AT, "pr-7"))
    east.instance("selfhost-pr-7", foreign(preview="pr-7"))
    shadow = tmp_path / "no-google"  # a `google` package without google.cloud: the google libraries are absent
    (shadow / "google").mkdir(parents=True)
    (shadow / "google" / "__init__.py").write_text("")
    env = {**moto, "PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}", "GOOGLE_CLOUD_PROJECT": "demo"}
    p = reap("--cloud", "aws", "--cloud", "gcp", "--region", "us-east-1", "--format", "json", env=env)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gcp: not reaped: gcp support is not installed"), lines
    assert {n for k, n, _ in acted(json.loads(p.stdout), "terminated")} == {"selfhost-pr-7", "selfhost-pr-7-lt",
        "selfhost-pr-7-lb", "selfhost-pr-7-tg"}  # fmt: skip
    assert ("group", "selfhost-pr-7", "us-east-1") not in east.inventory()
    assert ("instance", "selfhost-pr-7", "us-east-1") in east.inventory()  # the foreign one stays

    # `sky status` failing (no API server): one line, not a traceback; AWS (nothing left due) still listed
    _, sky_env = fake_sky(tmp_path, [])
    q = reap("--cloud", "sky", "--cloud", "aws", "--region", "us-east-1", env={**moto, **sky_env,
             "FAKE_SKY_FAIL": "1"})  # fmt: skip
    assert q.returncode == 1
    lines = q.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sky: listing failed, nothing reaped there: RuntimeError")
    assert "Traceback" not in q.stderr and "nothing to tear down" in q.stdout


def test_reap_refuses_bad_input(tmp_path):
    for args, env, problem in (
        (["--cloud", "azure"], OWNER_ENV, "unknown cloud"),
        (["--cloud", "sky", "--format", "xml"], OWNER_ENV, "unknown --format"),
        (["--cloud", "sky", "--hourly-usd", "nan"], OWNER_ENV, "not a price"),
        (["--cloud", "sky"], {"GITHUB_REPOSITORY": ""}, "no owner"),
        (["--cloud", "sky", "--owner", "a b"], {}, "is not an id"),
    ):
        p = run_selfhost("reap", *args, env=env)
        assert p.returncode == 2 and problem in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_unconfigured_clouds_are_skipped_only_when_not_named(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RUNPOD_API_KEY": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "",
           "GOOGLE_CLOUD_PROJECT": "", "SELFHOST_SKY": "", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": "/dev/null"}  # fmt: skip
    p = reap("--dry-run", env=env)
    assert p.returncode == 0 and "skipping runpod" in p.stderr and "skipping sky" in p.stderr, p.stderr


def test_ttl_command_gives_one_expiry_for_the_marks_the_name_and_the_autostop():
    before = dt.datetime.now(UTC)
    p = run_selfhost("ttl", "--ttl", "8h", "--name", "pr-12", "--hourly-usd", "0.39", env=OWNER_ENV)
    assert p.returncode == 0, p.stderr
    after = dt.datetime.now(UTC)  # the command's own clock read falls between `before` and this
    out = json.loads(p.stdout)
    expiry = dt.datetime.fromisoformat(out["expires_at"])
    assert before + dt.timedelta(hours=8) <= expiry <= after + dt.timedelta(hours=8, minutes=1)
    assert ttl.expiry_in_name(out["name"]) == expiry and out["name"].startswith("pr-12-sh")
    assert ttl.marks_in_name(out["name"])["owner-hash"] == ttl.owner_hash(ME)
    assert ttl.parse_expiry(out["tags"]["expires-at"]) == expiry and out["tags"]["preview"] == "pr-12"
    assert out["tags"]["owner"] == ttl.owner_mark(ME) and out["tags"]["managed-by"] == "selfhost"
    assert out["runpod_env"]["SELFHOST_EXPIRES_AT"] == out["tags"]["expires-at"]
    # autostop (a hard stop, counted from when SkyPilot sets it: after the command returned) never fires before the
    # expiry; counted from `before` it could, by the seconds the command took, when they cross a minute boundary
    assert after + dt.timedelta(minutes=out["autostop_minutes"]) >= expiry
    assert out["autostop_minutes"] <= 8 * 60 + 2
    gh = run_selfhost("ttl", "--ttl", "90m", "--name", "pr-12", "--owner", OTHER, "--format", "github")
    lines = dict(line.split("=", 1) for line in gh.stdout.splitlines())
    assert set(lines) == {"name", "expires_at", "autostop_minutes", "tags"} and json.loads(lines["tags"])
    assert int(lines["autostop_minutes"]) >= 90 and json.loads(lines["tags"])["owner"] == ttl.owner_mark(OTHER)
    bad = run_selfhost("ttl", "--ttl", "1y", "--name", "pr-12", env=OWNER_ENV)
    assert bad.returncode == 2 and "TTL '1y'" in bad.stderr and bad.stderr.count("\n") == 1
    nobody = run_selfhost("ttl", "--ttl", "8h", "--name", "pr-12", env={"GITHUB_REPOSITORY": ""})
    assert nobody.returncode == 2 and "no owner" in nobody.stderr and nobody.stderr.count("\n") == 1


def test_render_sky_carries_the_ttl_autostop_and_a_rendered_preview_task_still_launches(tmp_path):
    import yaml

    from selfhost.skypilot import launch

    spec = str(ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml")
    out = tmp_path / "task.yaml"
    marks = ttl.ttl_tags("8h", owner=ME, preview="pr-12")
    p = run_selfhost("render", "sky", "--spec", spec, "--task", "--autostop-minutes", "481", "--labels",
                     json.dumps(marks), "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert yaml.safe_load(text)["resources"]["autostop"] == {"idle_minutes": 481, "down": True, "wait_for": "none"}
    assert yaml.safe_load(text)["resources"]["labels"] == marks
    assert "-i 481 --down --wait-for none" in text
    found = launch.spec_from_rendered(out)
    assert found is not None
    launch.check_unchanged(found[0], found[1], out)  # `selfhost launch sky task.yaml` accepts it as rendered
    bad = run_selfhost("render", "sky", "--spec", spec, "--service", "--autostop-minutes", "60")
    assert bad.returncode == 2 and "--autostop-minutes" in bad.stderr and bad.stderr.count("\n") == 1
    for junk in ("not json", '{"Owner": "x"}', '{"owner": "a/b"}', "[1]"):
        bad = run_selfhost("render", "sky", "--spec", spec, "--task", "--labels", junk)
        assert bad.returncode == 2 and "--labels" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
