"""The drain handlers and the readiness gate the boot scripts install, run under bash against stand-ins: an
IMDSv2 stand-in, the AWS CLI against a moto server (through a recording front that also answers the two
Auto Scaling lifecycle calls moto does not implement), GCE's metadata server, and systemd + vLLM as a
process that takes a while to finish its requests after SIGTERM (tests/drain_stand_ins.py).

An interruption notice (or the group's `Terminated` state) leads to deregistration, then SIGTERM, then the
termination hook's completion, in that order; a slow first boot sends heartbeats and joins as long as it
serves before the deadline from the projected cold start; GCP's shutdown script withdraws readiness, then
SIGTERMs vLLM within the preemption notice; the publisher puts vLLM's load into CloudWatch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from drain_stand_ins import FAKE_VLLM, aws_front, events, gce_metadata, imds, metric_values, systemd_bin, wait_for

from costing.performance import scaling
from selfhost.stack import aws_config, gcp_config
from selfhost.stack import drain_scripts as drain
from selfhost.stack.boot_script import DELIM

REGION = "us-east-1"
CONFIG = {
    "model": "llama-3.1-8b",
    "instanceType": "g5.xlarge",
    "allowedCidrs": "203.0.113.0/24",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "y",
    "allowPlainHttp": "true",
}
AWS_CLI = Path(sys.executable).parent / "aws"
pytestmark = pytest.mark.skipif(not AWS_CLI.exists(), reason="the AWS CLI (skypilot[aws]'s awscli) is not installed")


def body(script: str, path: str) -> str:
    """One file the boot script writes (its heredoc), e.g. /opt/selfhost/drain.sh."""
    found = re.search(rf"cat > {re.escape(path)} <<'{DELIM}'\n(.*?)\n{DELIM}\n", script, re.S)
    assert found, f"{path} is not in the boot script"
    return found.group(1)


@pytest.fixture(scope="module")
def plan():
    return aws_config.plan(CONFIG)


@pytest.fixture
def aws_world(tmp_path, monkeypatch):
    """moto (Auto Scaling group with one instance, registered in a target group), the recording front,
    IMDS, and the VM's systemd/vLLM stand-ins. Yields a namespace of what the tests use."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
    log, calls = tmp_path / "events.log", []
    front = aws_front(moto_url, log, calls)
    state: dict[str, str] = {}
    meta = imds(state)
    vllm = None
    try:
        ec2 = boto3.client("ec2", endpoint_url=moto_url)
        elb = boto3.client("elbv2", endpoint_url=moto_url)
        asg = boto3.client("autoscaling", endpoint_url=moto_url)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
        tg = elb.create_target_group(Name="vllm-tg", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="instance")
        tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
        lt = ec2.create_launch_template(
            LaunchTemplateName="selfhost", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"}
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName="selfhost-group",
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
            MinSize=1,
            MaxSize=1,
            VPCZoneIdentifier=subnet["SubnetId"],
        )
        instance = asg.describe_auto_scaling_instances()["AutoScalingInstances"][0]["InstanceId"]
        elb.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": instance}])
        state["instance-id"] = instance
        bin_dir, pid_file = tmp_path / "bin", tmp_path / "vllm.pid"
        systemd_bin(bin_dir, log, pid_file)
        vllm = subprocess.Popen([sys.executable, "-c", FAKE_VLLM, str(log), "1.5"])
        pid_file.write_text(str(vllm.pid))
        wait_for(lambda: "vllm serving" in events(log), what="the fake vLLM")
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{AWS_CLI.parent}:{os.environ['PATH']}",
            "AWS_ENDPOINT_URL": front.url,
            "SELFHOST_IMDS": meta.url,
            "SELFHOST_DRAIN_POLL_S": "0.2",
        }
        (tmp_path / "instance-id").write_text(instance + "\n")
        yield type(
            "World",
            (),
            {
                "tmp": tmp_path, "log": log, "calls": calls, "state": state, "env": env, "tg_arn": tg_arn,
                "instance": instance, "elb": elb, "cw": boto3.client("cloudwatch", endpoint_url=moto_url),
                "vllm": vllm,
            },
        )  # fmt: skip
    finally:
        if vllm and vllm.poll() is None:
            vllm.kill()
            vllm.wait()
        meta.stop()
        front.stop()
        moto.stop()


def render(plan, world, path: str) -> Path:
    """One of the AWS boot script's files, with its VM paths moved into the test's directory."""
    script = aws_config.user_data(
        plan, {"apiKey": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k"}, REGION, None, world.tg_arn
    )
    text = body(script, path).replace("/opt/selfhost", str(world.tmp)).replace("/run/selfhost", str(world.tmp))
    out = world.tmp / Path(path).name
    out.write_text(text)
    return out


def registered(world) -> list[str]:
    health = world.elb.describe_target_health(TargetGroupArn=world.tg_arn)["TargetHealthDescriptions"]
    return [t["Target"]["Id"] for t in health if t["TargetHealth"]["State"] not in ("draining", "unused")]


def order(log: Path, *labels: str) -> list[int]:
    lines = events(log)
    return [next(i for i, line in enumerate(lines) if line.startswith(label)) for label in labels]


@pytest.mark.parametrize(
    "notice",
    [
        {"spot/instance-action": '{"action": "terminate", "time": "2026-12-07T00:10:00Z"}'},
        {"autoscaling/target-lifecycle-state": "Terminated"},  # scale-in, instance refresh, rebalancing
    ],
    ids=["spot-interruption", "group-terminating"],
)
def test_a_notice_deregisters_then_sigterms_vllm_then_completes_the_hook(plan, aws_world, notice):
    w = aws_world
    handler = subprocess.Popen(["bash", str(render(plan, w, "/opt/selfhost/drain.sh"))], env=w.env)
    try:
        w.state["autoscaling/target-lifecycle-state"] = "InService"
        time.sleep(1.0)  # several polls with no notice: nothing happens
        assert handler.poll() is None and not any(e.startswith("aws") for e in events(w.log))
        assert registered(w) == [w.instance]
        w.state.update(notice)
        assert handler.wait(timeout=60) == 0
    finally:
        if handler.poll() is None:
            handler.kill()
    dereg, term, drained, complete = order(
        w.log, "aws DeregisterTargets", "vllm SIGTERM", "vllm drained", "aws CompleteLifecycleAction"
    )
    assert dereg < term < drained < complete  # vLLM finished its requests before the group may terminate
    assert "systemctl stop vllm-watchdog.service selfhost-metrics.service" in events(w.log)
    assert registered(w) == []  # moto: the target is gone from the target group
    done = next(c for c in w.calls if c.get("Action") == "CompleteLifecycleAction")
    assert done["LifecycleHookName"] == drain.DRAIN_HOOK and done["LifecycleActionResult"] == "CONTINUE"
    assert (done["InstanceId"], done["AutoScalingGroupName"]) == (w.instance, "selfhost-group")


def test_a_rebalance_recommendation_alone_keeps_serving_until_the_group_terminates(plan, aws_world):
    """Capacity rebalancing launches the replacement first: the handler drains only when the group then
    terminates this instance (its hook), so capacity is not given up early."""
    w = aws_world
    handler = subprocess.Popen(["bash", str(render(plan, w, "/opt/selfhost/drain.sh"))], env=w.env)
    try:
        w.state["events/recommendations/rebalance"] = '{"noticeTime": "2026-12-07T00:00:00Z"}'
        time.sleep(1.5)
        assert handler.poll() is None and registered(w) == [w.instance]
        assert not any(e.startswith(("aws", "vllm SIGTERM")) for e in events(w.log))
        w.state["autoscaling/target-lifecycle-state"] = "Terminated"
        assert handler.wait(timeout=60) == 0
    finally:
        if handler.poll() is None:
            handler.kill()
    dereg, term, complete = order(w.log, "aws DeregisterTargets", "vllm SIGTERM", "aws CompleteLifecycleAction")
    assert dereg < term < complete


def run_gate(plan, w, boot_ago_s: float, ready_after_s: float | None, timeout: float = 60):
    """Run gate.sh as if the instance booted `boot_ago_s` ago; vLLM serves `ready_after_s` from now (None:
    never). Returns (exit code, seconds it ran)."""
    gate = render(plan, w, "/opt/selfhost/gate.sh")
    flag = w.tmp / "serving"
    ready = w.tmp / "ready.sh"
    ready.write_text(f"#!/bin/bash\n[ -f {flag} ]\n")
    ready.chmod(0o755)
    env = {
        **w.env,
        "SELFHOST_BOOT_EPOCH": str(int(time.time() - boot_ago_s)),
        "SELFHOST_HEARTBEAT_S": "1",
        "SELFHOST_GATE_POLL_S": "0.2",
    }
    start = time.monotonic()
    proc = subprocess.Popen(["bash", str(gate)], env=env)
    try:
        if ready_after_s is not None:
            time.sleep(ready_after_s)
            flag.touch()
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, time.monotonic() - start


def lifecycle(w, action: str) -> list[dict[str, str]]:
    return [c for c in w.calls if c.get("Action") == action]


def test_a_slow_first_boot_sends_heartbeats_and_joins_after_the_projected_cold_start(plan, aws_world):
    """The old gate: a launch hook 780 s after launch with no heartbeat, so this boot was abandoned. Now
    the gate keeps the hook open and completes it when vLLM serves, past the projected cold start."""
    w = aws_world
    projected = plan.readiness.initial_delay_s  # the projected first-boot cold start (weights downloaded)
    assert drain.gate_deadline_s(plan) > projected + 10
    code, _ = run_gate(plan, w, boot_ago_s=projected - 1, ready_after_s=8)  # serves 7 s after the projection
    assert code == 0
    beats = lifecycle(w, "RecordLifecycleActionHeartbeat")
    assert len(beats) >= 2 and all(b["LifecycleHookName"] == aws_config.READY_HOOK for b in beats)
    [done] = lifecycle(w, "CompleteLifecycleAction")
    assert (done["LifecycleActionResult"], done["InstanceId"]) == ("CONTINUE", w.instance)
    assert done["AutoScalingGroupName"] == "selfhost-group"
    assert "systemctl start selfhost-metrics.service" in events(w.log)  # only a serving replica reports load


def test_a_boot_that_never_serves_is_abandoned_at_the_deadline_not_before(plan, aws_world):
    w = aws_world
    deadline = drain.gate_deadline_s(plan)
    code, took = run_gate(plan, w, boot_ago_s=deadline - 3, ready_after_s=None)
    assert code == 1 and took >= 2.0  # it waited (heartbeating) until the deadline from boot
    assert lifecycle(w, "RecordLifecycleActionHeartbeat")
    [done] = lifecycle(w, "CompleteLifecycleAction")
    assert done["LifecycleActionResult"] == "ABANDON"


def test_the_publisher_puts_vllm_load_into_cloudwatch_with_the_key_from_the_env_file(plan, aws_world):
    """metrics.sh reads /metrics with the API key (the auth layer covers it) from the root-only env file."""
    from drain_stand_ins import Server, _Quiet

    w = aws_world
    exposition = (
        '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m",engine="0"} 7.0\n'
        'vllm:num_requests_waiting{model_name="m",engine="0"} 3.0\n'
        'vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.42\n'
    )

    class Metrics(_Quiet):
        def do_GET(self) -> None:
            ok = self.path == "/metrics" and self.headers.get("Authorization") == "Bearer sk-secret"
            self.reply(200, exposition.encode()) if ok else self.reply(401)

    server = Server(Metrics)
    try:
        port = server.httpd.server_address[1]
        script = render(plan, w, "/opt/selfhost/metrics.sh")
        text = script.read_text().replace(f"http://127.0.0.1:{plan.port}/metrics", f"http://127.0.0.1:{port}/metrics")
        assert "sk-secret" not in text
        script.write_text(text.replace("while true", "for once in 1"))
        secrets = w.tmp / "vllm.env"
        secrets.write_text("HF_TOKEN=hf\nVLLM_API_KEY=sk-secret\n")
        env = {**w.env, "SELFHOST_SECRETS_FILE": str(secrets), "SELFHOST_METRICS_PERIOD_S": "0"}
        done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    values = {
        name: metric_values(w.cw, drain.aws_namespace(plan), name, "selfhost-group")
        for name in (drain.AWS_METRIC, "RequestsWaiting", "KvCacheUsage")
    }
    assert values == {drain.AWS_METRIC: [10.0], "RequestsWaiting": [3.0], "KvCacheUsage": [0.42]}


def test_gcp_shutdown_withdraws_readiness_then_sigterms_vllm_within_the_preemption_notice(tmp_path):
    p = gcp_config.plan({**CONFIG, "instanceType": None, "machineType": "g2-standard-8"})
    log, pid_file = tmp_path / "events.log", tmp_path / "vllm.pid"
    systemd_bin(tmp_path / "bin", log, pid_file)
    health = tmp_path / "health"
    health.mkdir()
    (health / "ready").touch()
    state = {"instance/preempted": "TRUE"}
    meta = gce_metadata(state)
    vllm = subprocess.Popen([sys.executable, "-c", FAKE_VLLM, str(log), "1.0"])
    try:
        pid_file.write_text(str(vllm.pid))
        wait_for(lambda: "vllm serving" in events(log), what="the fake vLLM")
        script = gcp_config.shutdown_script(p).replace("/run/selfhost", str(tmp_path))
        (tmp_path / "shutdown.sh").write_text(script)
        env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SELFHOST_METADATA": meta.url}
        start = time.monotonic()
        done = subprocess.run(["bash", str(tmp_path / "shutdown.sh")], env=env, timeout=60)
        took = time.monotonic() - start
    finally:
        meta.stop()
        if vllm.poll() is None:
            vllm.kill()
        vllm.wait()
    assert done.returncode == 0 and took < scaling.RECLAIM_NOTICE_S["gcp"]
    assert not (health / "ready").exists()
    withdraw, term, drained = order(log, "systemctl stop selfhost-health.service", "vllm SIGTERM", "vllm drained")
    assert withdraw < term < drained
    budget = scaling.RECLAIM_NOTICE_S["gcp"] - scaling.DRAIN_MARGIN_S
    assert (tmp_path / "stop-timeout").read_text().strip() == str(budget)  # what stop-vllm.sh gives docker stop
    # ExecStop reads that budget: docker stop -t <budget> (SIGKILL after it), else the drain time
    stop = body(gcp_config.startup_script(p, {"apiKey": "a", "hfToken": "b"}), "/opt/selfhost/stop-vllm.sh")
    bin_dir = tmp_path / "docker-bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/bash\necho "docker $*" >> {tmp_path}/docker.log\n')
    (bin_dir / "docker").chmod(0o755)
    stop = stop.replace("/usr/bin/docker", str(bin_dir / "docker")).replace("/run/selfhost", str(tmp_path))
    (tmp_path / "stop.sh").write_text(stop)
    assert subprocess.run(["bash", str(tmp_path / "stop.sh")], timeout=10).returncode == 0
    (tmp_path / "stop-timeout").unlink()
    assert subprocess.run(["bash", str(tmp_path / "stop.sh")], timeout=10).returncode == 0
    assert (tmp_path / "docker.log").read_text().splitlines() == [
        f"docker stop -t {budget} vllm",
        f"docker stop -t {drain.stop_timeout_s(p)} vllm",
    ]


def test_the_watchdog_does_not_restart_vllm_while_it_starts(tmp_path):
    """GCP measured 3 restarts in 15 probes with a 180 s start: now no failure counts during the grace
    from each vLLM (re)start (the projected cold start), and three after it do."""
    p = gcp_config.plan({**CONFIG, "instanceType": None, "machineType": "g2-standard-8"})
    script = gcp_config.startup_script(p, {"apiKey": "a", "hfToken": "b"})
    text = body(script, "/opt/selfhost/watchdog.sh").replace("/opt/selfhost", str(tmp_path))
    text = text.replace("systemctl restart vllm.service", f"echo restarted >> {tmp_path}/restarts")
    (tmp_path / "watchdog.sh").write_text(text.replace("while true", "for probe in $(seq 15)"))
    (tmp_path / "ready.sh").write_text("#!/bin/bash\nexit 1\n")  # vLLM still loading: every probe fails
    (tmp_path / "ready.sh").chmod(0o755)
    started = tmp_path / "vllm-started"
    started.touch()  # vLLM (re)started just now
    env = {**os.environ, "SELFHOST_WATCHDOG_PERIOD_S": "0", "SELFHOST_STARTED_FILE": str(started)}
    assert drain.watchdog_grace_s(p) >= 180
    unit = script.split("[Service]", 1)[1]
    assert unit.index("vllm-started") < unit.index("fetch-secrets.sh") < unit.index("ExecStart=")
    assert subprocess.run(["bash", str(tmp_path / "watchdog.sh")], env=env, timeout=30).returncode == 0
    assert not (tmp_path / "restarts").exists()
    started.unlink()  # the unit has not reached its first start yet (secrets, the weights restore): still starting
    assert subprocess.run(["bash", str(tmp_path / "watchdog.sh")], env=env, timeout=30).returncode == 0
    assert not (tmp_path / "restarts").exists()
    started.touch()
    os.utime(started, (time.time() - drain.watchdog_grace_s(p) - 1,) * 2)  # the grace is over
    assert subprocess.run(["bash", str(tmp_path / "watchdog.sh")], env=env, timeout=30).returncode == 0
    assert (tmp_path / "restarts").read_text().count("restarted") == 5  # 15 failing probes, 3 at a time
