"""Files the kit ships besides its code: the Pulumi stack programs and the example specs.

In this repository they live at the top (`stacks/<cloud>/`, `examples/`); the wheel carries copies
under `selfhost/_bundled/` (setup.py). Both layouts answer the same questions here, so `selfhost init`
works from a checkout and from `pip install` / `pipx install` alike.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
INSTALLED = PACKAGE / "_bundled"  # present in an installed wheel
CHECKOUT = PACKAGE.parent  # the repository root when running from a clone
STACK_CLOUDS = ("aws", "gcp", "runpod", "kubernetes")
STACK_FILES = ("__main__.py", "Pulumi.yaml", "Pulumi.dev.yaml")
EXAMPLE_SPEC = "llama-3.1-8b-runpod-a40.yaml"


def root() -> Path:
    """The folder holding stacks/ and examples/: the wheel's copy, else the checkout."""
    return INSTALLED if INSTALLED.is_dir() else CHECKOUT


def in_checkout() -> bool:
    """True when the kit runs from a clone of its repository (not from an installed wheel)."""
    return not INSTALLED.is_dir() and (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "stacks").is_dir()


def stack_program(cloud: str) -> Path:
    """stacks/<cloud>/: __main__.py, Pulumi.yaml and Pulumi.dev.yaml."""
    return root() / "stacks" / cloud


def example_spec() -> Path:
    return root() / "examples" / EXAMPLE_SPEC
