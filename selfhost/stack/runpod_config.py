"""RunPod: one pod of A40s running the vllm/vllm-openai image, the weights on a network volume.

RunPod has no spot here: it is removing interruptible pods from its API, and it sells no 1-/3-year
commitments, so the stack runs on-demand pods only (secure or community cloud).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costing.catalog import get_offer, offers_for
from costing.errors import UserError
from selfhost.stack.plan import OPEN_CIDRS, StackPlan, number, plan_stack, spec_from_config, str_list

KEYS = ("gpuCount", "cloudType", "dataCenterId", "image", "containerDiskGb")
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


def _target(config: Mapping[str, Any]) -> dict[str, Any]:
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
        from costing.resolve import resolve

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


def plan(config: Mapping[str, Any]) -> StackPlan:
    """RunPod's HTTP proxy is public and has no firewall: the API key (always required) protects the pod."""
    cidrs = str_list(config, "allowedCidrs")
    if cidrs and not set(cidrs) & set(OPEN_CIDRS):
        raise UserError(
            "RunPod's proxy cannot restrict callers by address, so allowedCidrs can't be enforced",
            "drop allowedCidrs (the API key protects the pod), or use the aws/gcp stack for a firewall",
        )
    config = {**config, "allowedCidrs": cidrs or ["0.0.0.0/0"]}
    return plan_stack("runpod", config, _target(config), default_name="selfhost-runpod")


def build(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and cost (raising before any resource), then declare the pod and its volume."""
    p = plan(config)
    import runpodinfra

    from selfhost import auth_install
    from selfhost.stack.component import VllmEndpoint, secret

    secure = p.offer.cloud_type == "SECURE"
    data_center = str(config.get("dataCenterId") or DEFAULT_DATA_CENTER)
    container_disk = number(config, "containerDiskGb", int) or CONTAINER_DISK_GB
    endpoint = VllmEndpoint(p)
    volume = None
    if secure:  # network volumes exist on Secure Cloud only
        volume = runpodinfra.NetworkStorage(
            f"{p.name}-weights",
            name=f"{p.name}-weights",
            size=p.storage_gb,
            data_center_id=data_center,
            opts=endpoint.child(),
        )
    env = [
        {"key": p.env_names["apiKey"], "value": secret(p.secrets["apiKey"])},
        {"key": p.env_names["hfToken"], "value": secret(p.secrets["hfToken"])},
        {"key": "HF_HOME", "value": f"{MOUNT}/hf"},
    ]
    pod = runpodinfra.Pod(
        p.name,
        name=p.name,
        image_name=p.image,
        gpu_type_id=GPU_TYPE_ID,
        gpu_count=p.fit.gpus_per_node,
        cloud_type=p.offer.cloud_type,
        docker_args=auth_install.runpod_docker_args(p.container_args),  # writes the auth layer, execs vLLM
        env=env,
        ports=f"{p.port}/http",
        container_disk_in_gb=container_disk,
        volume_mount_path=MOUNT,
        start_ssh=False,
        network_volume_id=volume.id if volume else None,
        data_center_id=data_center if volume else None,
        volume_in_gb=None if volume else p.storage_gb,
        opts=endpoint.child(depends_on=[volume] if volume else None),
    )
    url = pod.id.apply(lambda pod_id: f"https://{pod_id}-{p.port}.proxy.runpod.net")
    return endpoint.finish(
        endpointUrl=url,
        podId=pod.id,
        weightsVolumeId=volume.id if volume else None,
        healthUrl=url.apply(lambda u: u + p.readiness.path),
    )
