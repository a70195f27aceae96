"""RunPod, the non-resource part: the offer, pricing and config checks (resources: stacks/runpod/__main__.py).

One pod of A40s runs the vllm/vllm-openai image, the weights on a network volume (Secure Cloud).
A workload the review sizes at more than one replica is refused (RunPod's proxy gives each pod its
own URL and nothing here balances across pods): the aws/gcp stacks and SkyServe run fleets.

RunPod has no spot here: it is removing interruptible pods from its API, and it sells no 1-/3-year
commitments, so the stack runs on-demand pods only (secure or community cloud).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from costing.data.catalog import get_offer, offers_for
from costing.errors import UserError
from selfhost.stack.plan import OPEN_CIDRS, StackPlan, number, plan_stack, spec_from_config, str_list

__all__ = [
    "CONTAINER_DISK_GB",
    "DEFAULT_DATA_CENTER",
    "GPU_TYPE_ID",
    "KEYS",
    "MOUNT",
    "container_disk_gb",
    "plan",
    "supervisor",
]

KEYS = ("gpuCount", "cloudType", "dataCenterId", "image", "containerDiskGb", "domain", "timeZone", "scheduleStart")
DATA_CENTER = re.compile(r"[A-Z]{2}(-[A-Z0-9]+){1,3}")
GPU = "A40"
GPU_TYPE_ID = "NVIDIA A40"  # RunPod's gpuTypeId
CLOUD_TYPES = ("SECURE", "COMMUNITY")
DEFAULT_DATA_CENTER = "US-KS-2"  # network volumes live in one data center; the pod is placed there too
CONTAINER_DISK_GB = 50  # the vllm/vllm-openai image unpacked, logs, torch compile cache
MOUNT = "/workspace"


def _cloud_type(config: Mapping[str, Any]) -> str:
    value = str(config.get("cloudType") or "SECURE").upper()
    if value not in CLOUD_TYPES:
        raise UserError(
            f"unknown RunPod cloudType {config.get('cloudType')!r}", "pulumi config set cloudType SECURE (or COMMUNITY)"
        )
    return value


def target_of(config: Mapping[str, Any]) -> dict[str, Any]:
    pricing = config.get("pricing") or "on-demand"
    if pricing != "on-demand":
        raise UserError(
            f"RunPod has no {pricing} pricing: it is removing interruptible (spot) pods from its API "
            "and sells no 1-/3-year commitments",
            "pulumi config set pricing on-demand, or use the aws/gcp stack for spot or reserved",
        )
    cloud_type = _cloud_type(config)
    count = config.get("gpuCount")
    if count in (None, ""):
        from costing.data.resolve import resolve

        count = resolve(spec_from_config("runpod", config, {"gpu": GPU}), need_offer=False).fit.gpus_per_node
    offers = [
        o for o in offers_for(gpu=GPU, cloud="runpod") if o.cloud_type == cloud_type and str(o.gpus) == str(count)
    ]
    if not offers:
        counts = sorted({o.gpus for o in offers_for(gpu=GPU, cloud="runpod")})
        raise UserError(
            f"no RunPod offer of {count}x {GPU} on {cloud_type} cloud in the catalog",
            f"pulumi config set gpuCount one of {', '.join(map(str, counts))}",
        )
    return {"offer": get_offer(offers[0].id).id}


def plan(config: Mapping[str, Any], scope: tuple[str, str] = ("selfhost-runpod", "dev")) -> StackPlan:
    """RunPod's HTTP proxy is public and has no firewall: the API key (always required) protects the pod."""
    if config.get("apiKey") is None:
        raise UserError(
            "missing secret apiKey: the API key clients must send (RunPod's proxy is public; the key is what "
            "protects the pod)",
            "pulumi config set --secret apiKey <value>",
        )
    center = str(config.get("dataCenterId") or DEFAULT_DATA_CENTER)
    if not DATA_CENTER.fullmatch(center):
        raise UserError(
            f"dataCenterId {center!r} is not a RunPod data center id", "pulumi config set dataCenterId US-KS-2"
        )
    cidrs = str_list(config, "allowedCidrs")
    if cidrs and not set(cidrs) & set(OPEN_CIDRS):
        raise UserError(
            "RunPod's proxy cannot restrict callers by address, so allowedCidrs can't be enforced",
            "drop allowedCidrs (the API key protects the pod), or use the aws/gcp stack for a firewall",
        )
    config = {**config, "allowedCidrs": cidrs or ["0.0.0.0/0"]}
    p = plan_stack(
        "runpod",
        config,
        target_of(config),
        default_name="selfhost-runpod",
        scope=scope,
        tls=False,
        schedulable=False,
        autoscaled=False,
    )
    replicas = p.fleet.max_replicas
    if replicas > 1:
        raise UserError(
            f"the review sizes {replicas} replicas ({p.fleet.availability} availability, the peak load); the "
            "RunPod stack runs one pod, with no load balancer to spread requests over more",
            "use the aws or gcp stack (a load-balanced, autoscaled group) or `selfhost launch sky` with "
            "service: true (SkyServe), or lower requestsPerDay/peakToMean",
        )
    return p


def container_disk_gb(config: Mapping[str, Any]) -> int:
    value = number(config, "containerDiskGb", int)
    if value is None:
        return CONTAINER_DISK_GB
    if not 10 <= value <= 2000:
        raise UserError(
            f"containerDiskGb {value} is outside 10..2000", f"pulumi config set containerDiskGb {CONTAINER_DISK_GB}"
        )
    return value


SUPERVISOR_PERIOD_S = 30  # a probe every 30 s, as the AWS/GCP watchdogs
SUPERVISOR_FAILURES = 3  # three failed probes in a row restart vLLM
RESTART_DELAY_S = 15  # as the AWS/GCP vllm.service's RestartSec


def supervisor(p: StackPlan) -> str:
    """RunPod pods have no health check or restart policy of their own (Serverless endpoints do; pods do
    not), so the pod's start command supervises vLLM: it restarts vLLM when it exits, and when three
    probes in a row (a 1-token completion with the pod's key, read from its environment, never argv)
    fail after the start grace (the readiness allowance, from the projected cold start). RunPod's stop
    sends SIGTERM: it is passed to vLLM, which finishes what is in flight within RunPod's stop timeout."""
    import json

    from costing.performance.vllm_args import API_KEY_ENV

    body = json.dumps({"model": p.fit.settings.served_model_name, "prompt": "ping", "max_tokens": 1})
    probe = (
        "import os, sys, urllib.request as u; "
        f"r = u.Request(sys.argv[1], data=sys.argv[2].encode(), headers={{'Content-Type': 'application/json', "
        f"'Authorization': 'Bearer ' + os.environ.get('{API_KEY_ENV}', '')}}); "
        f"u.urlopen(r, timeout={int(p.readiness.timeout_s) * 3})"
    )
    url = f"http://127.0.0.1:{int(p.port)}/v1/completions"
    return f"""# selfhost supervisor: restart vLLM when it exits or stops generating (RunPod pods have no health check)
PERIOD=${{SELFHOST_SUPERVISOR_PERIOD_S:-{SUPERVISOR_PERIOD_S}}}
GRACE=${{SELFHOST_SUPERVISOR_GRACE_S:-{int(p.readiness.initial_delay_s)}}}
start() {{ serve & pid=$!; started=$(date +%s); failures=0; echo "selfhost: vLLM started (pid $pid)" >&2; }}
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
probe() {{ python3 -c {shlex.quote(probe)} {shlex.quote(url)} {shlex.quote(body)} >/dev/null 2>&1; }}
start
while true; do
  sleep "$PERIOD" & wait $!
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; echo "selfhost: vLLM exited ($?); restarting" >&2
    sleep "${{SELFHOST_RESTART_DELAY_S:-{RESTART_DELAY_S}}}"; start
    continue
  fi
  [ $(( $(date +%s) - started )) -ge "$GRACE" ] || continue
  if probe; then failures=0; else failures=$((failures + 1)); fi
  if [ "$failures" -ge {SUPERVISOR_FAILURES} ]; then
    echo "selfhost: vLLM failed {SUPERVISOR_FAILURES} probes in a row; restarting" >&2
    kill -TERM "$pid"; wait "$pid"; start
  fi
done"""
