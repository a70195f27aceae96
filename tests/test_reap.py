"""TTL marks and `selfhost reap` (issue 14) against boto3 on moto, google-cloud-compute and the RunPod SDK on local
stand-ins (tests/reap_stand_ins.py), and a fake `sky` recording its argv. Servers run on 127.0.0.1, stopped by PID.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_selfhost
from fake_vllm_server import free_port

from costing.errors import UserError
from selfhost.reap import ttl

PAST, FUTURE = "20200101t0000z", "20991231t2359z"
UTC = dt.timezone.utc


# --- the marks ------------------------------------------------------------------------------------------------


def test_ttl_tags_are_valid_gcp_labels_and_round_trip():
    now = dt.datetime(2026, 11, 30, 7, 0, 30, tzinfo=UTC)
    tags = ttl.ttl_tags("8h", preview="PR #12", hourly_usd=0.39, now=now)
    for key, value in tags.items():  # GCP: lowercase letters, digits, '_' and '-', at most 63 characters
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) and re.fullmatch(r"[a-z0-9_-]{0,63}", value), (key, value)
    expiry = ttl.parse_expiry(tags[ttl.EXPIRES_KEY])
    assert expiry is not None and now + dt.timedelta(hours=8) <= expiry < now + dt.timedelta(hours=8, minutes=1)
    assert ttl.hourly_from_tag(tags[ttl.HOURLY_KEY]) == pytest.approx(0.39)
    assert ttl.tags_from_runpod_env(ttl.runpod_env(tags)) == tags
    name = ttl.named("pr-12", expiry)
    assert ttl.expiry_in_name(name) == expiry and re.fullmatch(r"[a-z][a-z0-9-]*", name)
    assert ttl.expiry_in_name("prod-llama") is None and ttl.parse_expiry("2026-11-30") is None


@pytest.mark.parametrize("text", ["", "8", "8w", "-1h", "1m", "91d", "nanh", "1e9d"])
def test_bad_ttls_are_refused(text):
    with pytest.raises(UserError):
        ttl.parse_ttl(text)


# --- helpers ------------------------------------------------------------------------------------------------------


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stand-in exited {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("stand-in did not open its port")


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
    return run_selfhost("reap", *args, env=env, timeout=180)


def by_name(doc: dict) -> dict[str, dict]:
    return {d["name"]: d for d in doc["deployments"]}


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


def test_aws_reap_lists_and_terminates_only_expired_tagged_instances(moto):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(name: str, tags: dict) -> str:
        spec = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}] + [
            {"Key": k, "Value": v} for k, v in tags.items()]}]  # fmt: skip
        out = ec2.run_instances(ImageId=ami, InstanceType="g5.xlarge", MinCount=1, MaxCount=1, TagSpecifications=spec)
        return out["Instances"][0]["InstanceId"]

    ids = {
        "expired": launch("pr-7", ttl.ttl_tags("1h", preview="pr-7", hourly_usd=1.006) | {"expires-at": PAST}),
        "future": launch("pr-8", {"expires-at": FUTURE, "managed-by": "selfhost"}),
        "untagged": launch("prod", {}),
        "malformed": launch("odd", {"expires-at": "tomorrow"}),
        "other-tags": launch("team", {"owner": "ml", "expires": PAST}),
    }
    dry = reap("--cloud", "aws", "--dry-run", "--format", "json", env=moto)
    assert dry.returncode == 0, dry.stderr
    assert set(by_name(json.loads(dry.stdout))) == {"pr-7"}  # the dry run lists only marked, expired instances
    seen = by_name(json.loads(reap("--cloud", "aws", "--dry-run", "--all", "--format", "json", env=moto).stdout))
    assert set(seen) == {"pr-7", "pr-8", "odd"}  # --all: every instance carrying the mark, never another
    assert seen["pr-7"]["action"] == "would terminate" and seen["pr-7"]["hourly_usd"] == pytest.approx(1.006)
    assert seen["pr-8"]["action"] == "kept" and seen["odd"]["action"] == "kept"  # unreadable mark: left alone
    states = lambda: {  # noqa: E731
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert set(states().values()) == {"running"}  # the dry run touched nothing

    asg = boto3.client("autoscaling", endpoint_url=moto["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    asg.create_launch_configuration(LaunchConfigurationName="lc", ImageId=ami, InstanceType="g5.xlarge")
    for group, expiry in (("pr-9-spot", PAST), ("prod-spot", FUTURE)):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=group, LaunchConfigurationName="lc", MinSize=1, MaxSize=1, DesiredCapacity=1,
            AvailabilityZones=["us-east-1a"],
            Tags=[{"Key": "expires-at", "Value": expiry, "PropagateAtLaunch": True, "ResourceId": group,
                   "ResourceType": "auto-scaling-group"}],
        )  # fmt: skip
    dry = by_name(json.loads(reap("--cloud", "aws", "--dry-run", "--format", "json", env=moto).stdout))
    assert set(dry) == {"pr-7", "pr-9-spot"}  # the expired group as a whole, not its instance
    real = reap("--cloud", "aws", "--format", "json", env=moto)
    assert real.returncode == 0, real.stderr
    assert by_name(json.loads(real.stdout))["pr-7"]["action"] == "terminated"
    assert [g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]] == ["prod-spot"]
    after = states()
    assert after[ids["expired"]] in ("shutting-down", "terminated")
    assert all(after[ids[k]] == "running" for k in ("future", "untagged", "malformed", "other-tags"))


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


@pytest.fixture
def gcp(tmp_path):
    port = free_port()
    state = tmp_path / "gcp.json"
    state.write_text(json.dumps({"instances": [
        gcp_instance("pr-7-l4", {"expires-at": PAST, "preview": "pr-7", "hourly-usd": "0_8536"}),
        gcp_instance("pr-8-l4", {"expires-at": FUTURE}, zone="europe-west4-a"),
        gcp_instance("prod-l4", {"team": "ml"}),
        gcp_instance("nolabels", {}),
        *[gcp_instance(f"pr-10-mig-{i}", {"expires-at": PAST}) | {"metadata": {"items": [{"key": "created-by",
          "value": "projects/1/zones/us-central1-a/instanceGroupManagers/pr-10-mig"}]}} for i in ("a1b2", "c3d4")],
    ]}))  # fmt: skip
    adc = tmp_path / "adc.json"  # Application Default Credentials: a throwaway service-account key made here
    adc.write_text(json.dumps(service_account_info(f"http://127.0.0.1:{port}/token")))
    argv = [
        sys.executable,
        str(ROOT / "tests" / "reap_stand_ins.py"),
        "gcp",
        "--port",
        str(port),
        "--state",
        str(state),
    ]
    with server(argv, port):
        yield (
            state,
            {
                "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
                "SELFHOST_GCP_COMPUTE_ENDPOINT": f"http://127.0.0.1:{port}",
                "GOOGLE_CLOUD_PROJECT": "demo",
            },
        )


def test_gcp_reap_deletes_only_expired_labelled_instances(gcp):
    state, env = gcp
    dry = reap("--cloud", "gcp", "--dry-run", "--format", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert set(by_name(json.loads(dry.stdout))) == {"pr-7-l4", "pr-10-mig"}  # a group's instances: the group
    seen = by_name(json.loads(reap("--cloud", "gcp", "--dry-run", "--all", "--format", "json", env=env).stdout))
    assert set(seen) == {"pr-7-l4", "pr-8-l4", "pr-10-mig"}
    assert seen["pr-7-l4"]["action"] == "would terminate" and seen["pr-7-l4"]["where"] == "us-central1-a"
    assert seen["pr-8-l4"]["action"] == "kept" and seen["pr-7-l4"]["hourly_usd"] == pytest.approx(0.8536)
    requests = json.loads(state.read_text())["requests"]
    assert all(r["method"] == "GET" for r in requests) and "filter=labels.expires-at" in requests[0]["path"]

    real = reap("--cloud", "gcp", "--format", "markdown", env=env)
    assert real.returncode == 0, real.stderr
    assert "| gcp | pr-7-l4 | us-central1-a |" in real.stdout and "terminated" in real.stdout
    after = json.loads(state.read_text())
    assert sorted(i["name"] for i in after["instances"]) == ["nolabels", "pr-8-l4", "prod-l4"]
    deletes = [r["path"] for r in after["requests"] if r["method"] == "DELETE"]
    assert sorted(deletes) == [
        "/compute/v1/projects/demo/zones/us-central1-a/instanceGroupManagers/pr-10-mig",
        "/compute/v1/projects/demo/zones/us-central1-a/instances/pr-7-l4",
    ]


# --- RunPod: the SDK on a local GraphQL stand-in --------------------------------------------------------------------


def pod(pid: str, name: str, env: list[str], cost: float = 0.39) -> dict:
    return {"id": pid, "name": name, "desiredStatus": "RUNNING", "costPerHr": cost, "env": env, "gpuCount": 1,
            "imageName": "vllm/vllm-openai", "uptimeSeconds": 7200, "machine": {"gpuDisplayName": "A40"}}  # fmt: skip


@pytest.fixture
def runpod_api(tmp_path):
    port = free_port()
    state = tmp_path / "runpod.json"
    state.write_text(json.dumps({"pods": [
        pod("p1", "pr-7", ["SELFHOST_EXPIRES_AT=" + PAST, "SELFHOST_PREVIEW=pr-7"]),
        pod("p2", "pr-8", ["SELFHOST_EXPIRES_AT=" + FUTURE]),
        pod("p3", "named-exp-" + PAST, []),
        pod("p4", "prod", ["HF_TOKEN_SECRET=ref"]),
        pod("p5", "pr-9", ["SELFHOST_EXPIRES_AT=" + FUTURE, "SELFHOST_PREVIEW=pr-9"]),
    ]}))  # fmt: skip
    key = "stand-in-runpod-key"
    argv = [sys.executable, str(ROOT / "tests" / "reap_stand_ins.py"), "runpod", "--port", str(port),
            "--state", str(state), "--api-key", key]  # fmt: skip
    with server(argv, port):
        yield state, {"RUNPOD_API_BASE_URL": f"http://127.0.0.1:{port}", "RUNPOD_API_KEY": key}


def test_runpod_reap_terminates_expired_and_closed_preview_pods_only(runpod_api):
    state, env = runpod_api
    dry = reap("--cloud", "runpod", "--dry-run", "--all", "--format", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    seen = by_name(doc)
    assert set(seen) == {"pr-7", "pr-8", "named-exp-" + PAST, "pr-9"}
    assert {n for n, d in seen.items() if d["action"] == "would terminate"} == {"pr-7", "named-exp-" + PAST}
    assert seen["pr-7"]["cost_usd"] == pytest.approx(2 * 0.39, abs=0.02)  # receipt: 2 h up x $0.39/h
    assert not [r for r in json.loads(state.read_text())["requests"] if "podTerminate" in r["query"]]

    real = reap("--cloud", "runpod", "--preview", "pr-9", "--format", "json", env=env)
    assert real.returncode == 0, real.stderr
    assert sorted(p["id"] for p in json.loads(state.read_text())["pods"]) == ["p2", "p4"]
    bad = reap("--cloud", "runpod", "--dry-run", env={**env, "RUNPOD_API_KEY": ""})
    assert bad.returncode == 2 and "RUNPOD_API_KEY" in bad.stderr


# --- SkyPilot: `sky down` by name (a fake `sky` on PATH) ------------------------------------------------------------


FAKE_SKY = """#!{python}
import json, os, sys
log = os.environ["FAKE_SKY_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["status", "-o"]:
    print(open(os.environ["FAKE_SKY_STATUS"]).read())
"""


def test_sky_reap_downs_expired_clusters_by_name(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sky").write_text(FAKE_SKY.format(python=sys.executable))
    (bin_dir / "sky").chmod(0o755)
    launched = int(time.time()) - 3 * 3600
    status = tmp_path / "status.json"
    status.write_text(json.dumps([
        {"name": f"pr-7-exp-{PAST}", "launched_at": launched, "status": "UP"},
        {"name": f"pr-8-exp-{FUTURE}", "launched_at": launched, "status": "UP"},
        {"name": "prod-llama", "launched_at": launched, "status": "UP"},
    ]))  # fmt: skip
    log = tmp_path / "argv.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SKY_LOG": str(log),
           "FAKE_SKY_STATUS": str(status)}  # fmt: skip
    p = reap("--cloud", "sky", "--hourly-usd", "0.39", "--all", "--format", "json", env=env)
    assert p.returncode == 0, p.stderr
    seen = by_name(json.loads(p.stdout))
    assert set(seen) == {f"pr-7-exp-{PAST}", f"pr-8-exp-{FUTURE}"}
    assert seen[f"pr-7-exp-{PAST}"]["cost_usd"] == pytest.approx(3 * 0.39, abs=0.02)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [["status", "-o", "json"], ["down", "-y", f"pr-7-exp-{PAST}"]]


def test_reap_refuses_bad_input(tmp_path):
    for args, problem in (
        (["--cloud", "azure"], "unknown cloud"),
        (["--cloud", "sky", "--format", "xml"], "unknown --format"),
        (["--cloud", "sky", "--hourly-usd", "nan"], "not a price"),
    ):
        p = reap(*args, env={})
        assert p.returncode == 2 and problem in p.stderr and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.skipif(shutil.which("true") is None, reason="needs coreutils")
def test_unreachable_cloud_is_skipped_only_when_not_named(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RUNPOD_API_KEY": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "",
           "GOOGLE_CLOUD_PROJECT": "", "SELFHOST_SKY": ""}  # fmt: skip
    p = reap("--dry-run", env=env)
    assert p.returncode == 0 and "skipping runpod" in p.stderr and "skipping aws" in p.stderr


def test_ttl_command_gives_the_marks_for_a_new_deployment():
    before = dt.datetime.now(UTC)
    p = run_selfhost("ttl", "--ttl", "8h", "--name", "pr-12", "--hourly-usd", "0.39")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    expiry = dt.datetime.fromisoformat(out["expires_at"])
    assert before + dt.timedelta(hours=8) <= expiry <= dt.datetime.now(UTC) + dt.timedelta(hours=8, minutes=1)
    assert ttl.expiry_in_name(out["name"]) == expiry and out["name"].startswith("pr-12-exp-")
    assert ttl.parse_expiry(out["tags"]["expires-at"]) == expiry and out["tags"]["preview"] == "pr-12"
    assert out["runpod_env"]["SELFHOST_EXPIRES_AT"] == out["tags"]["expires-at"] and out["autostop_minutes"] == 60
    gh = run_selfhost("ttl", "--ttl", "90m", "--name", "pr-12", "--format", "github")
    lines = dict(line.split("=", 1) for line in gh.stdout.splitlines())
    assert set(lines) == {"name", "expires_at", "autostop_minutes", "tags"} and json.loads(lines["tags"])
    bad = run_selfhost("ttl", "--ttl", "1y", "--name", "pr-12")
    assert bad.returncode == 2 and "TTL '1y'" in bad.stderr and bad.stderr.count("\n") == 1
