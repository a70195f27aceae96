"""How long a new vLLM server may take before it must answer: one allowance for SkyServe's readiness
probe and the Pulumi stacks' health checks (autohealing grace periods)."""

from __future__ import annotations

import math

GIB = 1024**3
# Getting the engine up besides the weights: the vllm/vllm-openai image pull (~300 s) or vLLM's pip
# install, then loading the weights, torch.compile and CUDA graph capture.
ENGINE_START_S = 600
HF_DOWNLOAD_BYTES_PER_S = 100e6  # a conservative Hugging Face download rate


def startup_allowance_s(weight_gib: float) -> int:
    """Engine start plus downloading the weights once, rounded up to the minute."""
    download = weight_gib * GIB / HF_DOWNLOAD_BYTES_PER_S
    return int(math.ceil((ENGINE_START_S + download) / 60) * 60)
