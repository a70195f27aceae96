"""Faults with nothing lost: the drain handlers, the readiness gate's heartbeat and the vLLM metric publisher
the AWS and GCP boot scripts install (shell text; selfhost.stack.boot_script writes them to the VM).

A replica that leaves (scale-in, an update, a spot reclaim) first stops taking requests (AWS: deregistered
from the target group; GCP: its readiness endpoint withdrawn), then vLLM gets SIGTERM through its own unit
(`systemctl stop vllm.service` -> `docker stop -t <drain>`) and finishes what is in flight, then the
group is told it may go on (AWS: the termination lifecycle hook). The drain time comes from the review's
projection (costing.performance.scaling.drain_seconds). The metadata servers' addresses can be overridden by
environment (SELFHOST_IMDS, SELFHOST_METADATA) so the handlers run under bash against stand-ins.
"""

from __future__ import annotations

import json
import math
import re
import shlex

from costing.performance import scaling
from costing.performance.readiness import cold_start_s
from costing.performance.vllm_args import API_KEY_ENV
from selfhost.stack.boot_script import SECRETS_FILE, Drain, Gate
from selfhost.stack.plan import StackPlan

DRAIN_HOOK = "selfhost-drain"  # the termination lifecycle hook the AWS handler completes
DRAIN_UNIT = "selfhost-drain.service"
METRICS_UNIT = "selfhost-metrics.service"
WATCHDOG_UNIT = "vllm-watchdog.service"
STOP_TIMEOUT_FILE = "/run/selfhost/stop-timeout"  # a shorter stop budget (GCP's preemption notice) for ExecStop
HEARTBEAT_S = 60  # the readiness gate's heartbeat to the launch lifecycle hook
HOOK_HEARTBEAT_TIMEOUT_S = 300  # the launch hook lapses 5 heartbeats after the last one (the gate died)
GATE_SLACK = 1.5  # the gate waits up to 1.5x the projected first-boot cold start before it gives up
MAX_GATE_S = 100 * HOOK_HEARTBEAT_TIMEOUT_S  # a lifecycle hook lives at most 100 heartbeat timeouts (and 48 h)
METRICS_PERIOD_S = 60  # CloudWatch's standard resolution; the autoscalers read one-minute points
AWS_NAMESPACE = "selfhost/vLLM"  # + the stack's scope: an instance may publish only into its own stack's metrics
AWS_METRIC = "RequestsInFlight"  # vllm:num_requests_running + vllm:num_requests_waiting, per replica
GCP_METRIC = "custom.googleapis.com/selfhost/vllm/requests_in_flight"
IMDS = "http://169.254.169.254"
METADATA = "http://metadata.google.internal"
PROGRESS_FILE = "/run/selfhost/drain.log"


def aws_namespace(p: StackPlan) -> str:
    """The stack's CloudWatch namespace (the IAM condition scopes PutMetricData to it)."""
    return f"{AWS_NAMESPACE}/" + re.sub(r"[^A-Za-z0-9._/#:-]", "-", p.scope)[:200]


def drain_seconds(p: StackPlan) -> int:
    """The one drain time of the deployment: the projection's p99 end-to-end latency, bounded
    (costing.performance.scaling.drain_seconds). vLLM's --shutdown-timeout, the load balancer's deregistration delay
    and the termination hook all follow it."""
    return scaling.drain_seconds(p.review)


def stop_timeout_s(p: StackPlan) -> int:
    """`docker stop -t`: vLLM's own drain plus a margin for the engine to exit before SIGKILL."""
    return drain_seconds(p) + 15


def termination_hook_timeout_s(p: StackPlan) -> int:
    """The termination hook waits for the handler: deregistration, the drain, the stop margin."""
    return stop_timeout_s(p) + 60


def gate_deadline_s(p: StackPlan) -> int:
    """Seconds from boot the readiness gate waits for the first completion: the projected first-boot cold
    start (engine start plus the weights from Hugging Face) with slack, whole minutes."""
    projected = cold_start_s(p.fit.weight_gib, from_bucket=False)
    return int(min(MAX_GATE_S, math.ceil(projected * GATE_SLACK / 60) * 60))


def watchdog_grace_s(p: StackPlan) -> int:
    """How long after each vLLM (re)start the watchdog counts no failure: the readiness allowance (the
    projected cold start with the weights downloaded, whole minutes)."""
    return int(p.readiness.initial_delay_s)


def stop_script(p: StackPlan) -> str:
    """/opt/selfhost/stop-vllm.sh, vllm.service's ExecStop: SIGTERM, then the drain time (or the shorter
    budget a shutdown script left in STOP_TIMEOUT_FILE) before docker's SIGKILL."""
    return f"""#!/bin/bash
# Stop vLLM gracefully: SIGTERM, then up to the drain time for the requests in flight (vLLM's shutdown timeout).
t=$(cat {STOP_TIMEOUT_FILE} 2>/dev/null || echo {stop_timeout_s(p)})
exec /usr/bin/docker stop -t "$t" vllm
"""


def _log() -> str:
    return f"""log() {{ echo "selfhost drain: $*" >&2; mkdir -p {PROGRESS_FILE.rsplit("/", 1)[0]}; \
echo "$(date +%s) $*" >> {PROGRESS_FILE}; }}"""


def aws_handler(p: StackPlan, region: str, target_group_arn: str) -> str:
    """/opt/selfhost/drain.sh: poll IMDSv2 for a spot interruption notice, a rebalance recommendation and the
    Auto Scaling target lifecycle state; on an interruption or `Terminated`: deregister from the target
    group, SIGTERM vLLM through its unit (it finishes in-flight requests within the drain time), then
    complete the termination lifecycle hook. A rebalance recommendation alone is logged: with capacity
    rebalancing the group launches the replacement first and then terminates this instance through the
    hook (the `Terminated` state), so capacity is not given up before the replacement serves."""
    q = shlex.quote
    return f"""#!/bin/bash
# Drain on spot interruption, scale-in and instance refresh: deregister -> SIGTERM vLLM -> complete the hook.
set -uo pipefail
IMDS=${{SELFHOST_IMDS:-{IMDS}}}
POLL=${{SELFHOST_DRAIN_POLL_S:-5}}
{_log()}
token() {{ curl -fsS -m 2 -X PUT "$IMDS/latest/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300'; }}
md() {{ curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1"; }}
rebalance_seen=""
while true; do
  if TOKEN=$(token); then
    if action=$(md spot/instance-action 2>/dev/null); then reason="spot interruption: $action"; break; fi
    if [ "$(md autoscaling/target-lifecycle-state 2>/dev/null)" = Terminated ]; then
      reason="the group is terminating this instance"; break
    fi
    if [ -z "$rebalance_seen" ] && md events/recommendations/rebalance >/dev/null 2>&1; then
      rebalance_seen=1; log "rebalance recommendation: the group launches a replacement, then terminates this one"
    fi
  fi
  sleep "$POLL"
done
id=$(md instance-id)
log "draining $id ($reason)"
aws elbv2 deregister-targets --region {q(region)} --target-group-arn {q(target_group_arn)} --targets "Id=$id" \\
  && log deregistered || log "deregistration failed"
systemctl stop {WATCHDOG_UNIT} {METRICS_UNIT} || true
log "stopping vLLM (SIGTERM; up to {stop_timeout_s(p)} s for the requests in flight)"
systemctl stop vllm.service
log "vLLM stopped"
group=$(aws autoscaling describe-auto-scaling-instances --region {q(region)} --instance-ids "$id" \\
  --query "AutoScalingInstances[0].AutoScalingGroupName" --output text)
if aws autoscaling complete-lifecycle-action --region {q(region)} --instance-id "$id" \\
  --auto-scaling-group-name "$group" --lifecycle-hook-name {DRAIN_HOOK} --lifecycle-action-result CONTINUE; then
  log "termination hook completed"
else
  log "no termination hook to complete (a spot reclaim outside the group's own termination)"
fi
"""


def aws_gate(p: StackPlan, region: str, hook: str) -> tuple[str, str]:
    """(heartbeat, give-up) commands for the readiness gate: keep the launch lifecycle hook alive while vLLM
    starts, and abandon it (the group replaces the instance) once the projected cold start is long past."""
    q = shlex.quote
    me = '--instance-id "$(cat /opt/selfhost/instance-id)"'
    group = (
        f"aws autoscaling describe-auto-scaling-instances --region {q(region)} --instance-ids "
        '"$(cat /opt/selfhost/instance-id)" --query "AutoScalingInstances[0].AutoScalingGroupName" --output text'
    )
    common = f'--region {q(region)} {me} --auto-scaling-group-name "$({group})" --lifecycle-hook-name {hook}'
    heartbeat = f"aws autoscaling record-lifecycle-action-heartbeat {common}"
    give_up = f"aws autoscaling complete-lifecycle-action {common} --lifecycle-action-result ABANDON"
    return heartbeat, give_up


def gcp_shutdown(p: StackPlan, ready_dir: str, health_unit: str) -> str:
    """The `shutdown-script` metadata value: GCE runs it when the VM stops (the group deletes it on
    scale-in or a rolling update, after the backend's connection draining) or is preempted (30 s notice).
    Withdraw readiness (the health check stops routing here), stop the watchdog, then SIGTERM vLLM with
    what is left of the notice when preempted (else the drain time)."""
    preempt_budget = scaling.RECLAIM_NOTICE_S["gcp"] - scaling.DRAIN_MARGIN_S
    return f"""#!/bin/bash
# selfhost: drain before the VM goes (preemption: {scaling.RECLAIM_NOTICE_S["gcp"]} s notice).
set -uo pipefail
MD=${{SELFHOST_METADATA:-{METADATA}}}
{_log()}
rm -f {ready_dir}/ready
systemctl stop {health_unit} {WATCHDOG_UNIT} {METRICS_UNIT} || true
log "readiness withdrawn"
mkdir -p /run/selfhost
if [ "$(curl -fsS -m 2 -H 'Metadata-Flavor: Google' "$MD/computeMetadata/v1/instance/preempted")" = TRUE ]; then
  echo {preempt_budget} > {STOP_TIMEOUT_FILE}
  log "preempted: stopping vLLM (SIGTERM; {preempt_budget} s for the requests in flight)"
else
  log "stopping vLLM (SIGTERM; up to {stop_timeout_s(p)} s for the requests in flight)"
fi
systemctl stop vllm.service
log "vLLM stopped"
"""


def metrics_script(p: StackPlan, secrets_file: str, publish: str) -> str:
    """/opt/selfhost/metrics.sh: every minute, read vLLM's /metrics on this machine (with the API key, from
    the root-only env file, as a header file: never in argv) and publish requests in flight (running +
    waiting), waiting and KV cache usage with `publish` (a shell snippet reading $inflight $waiting $kv)."""
    url = f"http://127.0.0.1:{int(p.port)}/metrics"
    return f"""#!/bin/bash
# Publish vLLM's load (requests running + waiting, waiting, KV cache usage) for the group's autoscaler.
set -uo pipefail
PERIOD=${{SELFHOST_METRICS_PERIOD_S:-{METRICS_PERIOD_S}}}
SECRETS=${{SELFHOST_SECRETS_FILE:-{secrets_file}}}
while true; do
  key=$(awk -v name={API_KEY_ENV} 'index($0, name "=") == 1 {{ print substr($0, length(name) + 2) }}' "$SECRETS")
  if text=$(curl -fsS -m 10 -H @<(printf 'Authorization: Bearer %s\\n' "$key") {shlex.quote(url)}); then
    read -r running waiting kv < <(printf '%s\\n' "$text" | awk '
      /^vllm:num_requests_running[{{ ]/ {{ r += $NF }}
      /^vllm:num_requests_waiting[{{ ]/ {{ w += $NF }}
      /^vllm:kv_cache_usage_perc[{{ ]/ {{ if ($NF > k) k = $NF }}
      END {{ printf "%g %g %g\\n", r, w, k }}')
    inflight=$(awk -v a="$running" -v b="$waiting" 'BEGIN {{ printf "%g", a + b }}')
{publish}
  else
    echo "selfhost metrics: vLLM's /metrics did not answer" >&2
  fi
  sleep "$PERIOD"
done
"""


# The names each publisher sends, in the order metrics.sh reads them ($inflight $waiting $kv).
AWS_NAMES = (AWS_METRIC, "RequestsWaiting", "KvCacheUsage")
GCP_NAMES = (
    GCP_METRIC,
    "custom.googleapis.com/selfhost/vllm/requests_waiting",
    "custom.googleapis.com/selfhost/vllm/kv_cache_usage",
)
AWS_BODY = (  # python3 (on the GPU images): the --metric-data JSON from the group name and the three values
    'import json, sys; g, *v = sys.argv[1:]; d = [{"Name": "AutoScalingGroupName", "Value": g}]; '
    'print(json.dumps([{"MetricName": n, "Value": float(x), "Dimensions": d} '
    f"for n, x in zip({json.dumps(AWS_NAMES)}, v)]))"
)
GCP_BODY = (  # python3: timeSeries.create's body for this gce_instance
    "import json, sys; p, i, z, t, *v = sys.argv[1:]; "
    'r = {"type": "gce_instance", "labels": {"project_id": p, "instance_id": i, "zone": z}}; '
    'print(json.dumps({"timeSeries": [{"metric": {"type": n}, "resource": r, '
    '"points": [{"interval": {"endTime": t}, "value": {"doubleValue": float(x)}}]} '
    f"for n, x in zip({json.dumps(GCP_NAMES)}, v)]}}))"
)


def aws_publish(region: str, namespace: str) -> str:
    """CloudWatch custom metrics under the group's name: target tracking averages them over its instances."""
    q = shlex.quote
    group = (
        f"aws autoscaling describe-auto-scaling-instances --region {q(region)} --instance-ids "
        '"$(cat /opt/selfhost/instance-id)" --query "AutoScalingInstances[0].AutoScalingGroupName" --output text'
    )
    return f"""    [ -s /run/selfhost/group ] || {group} > /run/selfhost/group
    data=$(python3 -c {q(AWS_BODY)} "$(cat /run/selfhost/group)" "$inflight" "$waiting" "$kv")
    aws cloudwatch put-metric-data --region {q(region)} --namespace {q(namespace)} --metric-data "$data" \\
      || echo "selfhost metrics: put-metric-data failed" >&2"""


def gcp_publish() -> str:
    """Cloud Monitoring custom metrics on this gce_instance (the autoscaler averages them over the group),
    with the VM's own service-account token (as a header file, never in argv)."""
    token = 'import json, sys; print(json.load(sys.stdin)["access_token"])'
    return f"""    MD=${{SELFHOST_METADATA:-{METADATA}}}
    API=${{SELFHOST_MONITORING:-https://monitoring.googleapis.com}}
    m() {{ curl -fsS -m 5 -H 'Metadata-Flavor: Google' "$MD/computeMetadata/v1/$1"; }}
    project=$(m project/project-id); id=$(m instance/id); zone=$(m instance/zone); zone=${{zone##*/}}
    tok=$(m instance/service-accounts/default/token | python3 -c {shlex.quote(token)})
    body=$(python3 -c {shlex.quote(GCP_BODY)} "$project" "$id" "$zone" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \\
      "$inflight" "$waiting" "$kv")
    curl -fsS -m 10 -o /dev/null -X POST -H @<(printf 'Authorization: Bearer %s\\n' "$tok") \\
      -H 'Content-Type: application/json' -d "$body" "$API/v3/projects/$project/timeSeries" \\
      || echo "selfhost metrics: timeSeries.create failed" >&2"""


def drain_for(p: StackPlan, files: tuple[tuple[str, str], ...], units: tuple[tuple[str, str, bool], ...]) -> Drain:
    """The boot script's drain part: the graceful stop, the watchdog's grace, `files` and `units`, and the
    metric publisher started once the gate passes (the publisher must be among `files` as metrics.sh)."""
    return Drain(
        stop_script=stop_script(p),
        stop_timeout_s=stop_timeout_s(p),
        watchdog_grace_s=watchdog_grace_s(p),
        files=files,
        units=(*units, (METRICS_UNIT, "/opt/selfhost/metrics.sh", False)),
        after_ready=(METRICS_UNIT,),
    )


def aws_drain(p: StackPlan, region: str, target_group_arn: str) -> Drain:
    """AWS: the interruption/termination handler (enabled at boot) and the CloudWatch publisher."""
    return drain_for(
        p,
        (
            ("drain.sh", aws_handler(p, region, target_group_arn)),
            ("metrics.sh", metrics_script(p, SECRETS_FILE, aws_publish(region, aws_namespace(p)))),
        ),
        ((DRAIN_UNIT, "/opt/selfhost/drain.sh", True),),
    )


def aws_readiness_gate(p: StackPlan, region: str, hook: str) -> Gate:
    heartbeat, give_up = aws_gate(p, region, hook)
    return Gate(gate_deadline_s(p), heartbeat, give_up, HEARTBEAT_S)


def gcp_drain(p: StackPlan) -> Drain:
    """GCP: the Cloud Monitoring publisher (the shutdown script is instance metadata: gcp_shutdown)."""
    return drain_for(p, (("metrics.sh", metrics_script(p, SECRETS_FILE, gcp_publish())),), ())
