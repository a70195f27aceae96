"""How long a new vLLM server may take before it must answer: one allowance for SkyServe's readiness
probe and the Pulumi stacks' health checks (autohealing grace periods)."""

from __future__ import annotations

import math

GIB = 1024**3
# Getting the engine up besides the weights: the vllm/vllm-openai image pull (~300 s) or vLLM's pip
# install, then loading the weights, torch.compile and CUDA graph capture.
ENGINE_START_S = 600
HF_DOWNLOAD_BYTES_PER_S = 100e6  # a conservative Hugging Face download rate
# Reading the weights from the weights bucket (SkyPilot's mount, the stacks' mirror): a conservative
# single-instance rate for S3/GCS (multi-stream object reads reach several hundred MB/s inside a region;
# rclone VFS caching, 2026-11-30). An assumption until measured.
BUCKET_READ_BYTES_PER_S = 200e6


def startup_allowance_s(weight_gib: float) -> int:
    """Engine start plus downloading the weights once, rounded up to the minute."""
    download = weight_gib * GIB / HF_DOWNLOAD_BYTES_PER_S
    return int(math.ceil((ENGINE_START_S + download) / 60) * 60)


def cold_start_s(weight_gib: float, from_bucket: bool) -> float:
    """Projected seconds until a replacement replica serves: engine start plus reading the weights."""
    rate = BUCKET_READ_BYTES_PER_S if from_bucket else HF_DOWNLOAD_BYTES_PER_S
    return ENGINE_START_S + weight_gib * GIB / rate
