"""RunPod prices from RunPod's GraphQL API through the runpod SDK: per-GPU Secure and Community Cloud prices
(`gpuTypes { securePrice communityPrice }`), times the pod's GPU count. RunPod charges one price in every
data center, so each requested region gets the same figure (named as such in its source)."""

from __future__ import annotations

import datetime as dt
import os

from selfhost.prices.aws_pricing import CloudFailure
from selfhost.prices.snapshot import row

API = "RunPod GraphQL API (runpod SDK get_gpu: gpuTypes securePrice/communityPrice, one price in every data center)"
GPU_IDS = {  # catalog GPU name → RunPod gpuTypeId
    "A40": "NVIDIA A40",
    "A100-80GB": "NVIDIA A100 80GB PCIe",
    "H100": "NVIDIA H100 80GB HBM3",
    "L40S": "NVIDIA L40S",
    "L4": "NVIDIA L4",
}
PRICE_FIELD = {"SECURE": "securePrice", "COMMUNITY": "communityPrice"}


def _api_key() -> str:
    import runpod

    key = os.environ.get("RUNPOD_API_KEY") or runpod.api_key
    if not key:
        raise CloudFailure("no RunPod API key: set RUNPOD_API_KEY (or run `runpod config`)")
    return key


def refresh(pods: list[tuple[str, str, int, str]], regions: list[str], retrieved: dt.datetime, tick=lambda: None):
    """Rows for pods (instance_type, GPU name, GPU count, SECURE|COMMUNITY) in `regions`."""
    import runpod

    runpod.api_key = _api_key()
    rows = []
    for instance_type, gpu, count, cloud_type in pods:
        gpu_id = GPU_IDS.get(gpu)
        if gpu_id is None:
            continue
        try:
            info = runpod.get_gpu(gpu_id, count)
        except Exception as err:  # noqa: BLE001 - the SDK raises bare Exception (and requests errors): one line
            raise CloudFailure(f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from None
        per_gpu = info.get(PRICE_FIELD[cloud_type]) if isinstance(info, dict) else None
        if isinstance(per_gpu, (int, float)) and per_gpu > 0:
            for region in regions:
                rows.append(row("runpod", instance_type, region, "on-demand", per_gpu * count, API, retrieved))
        tick()
    return rows
