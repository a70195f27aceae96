"""Helpers for the stack tests: the kit's Recorder (selfhost.stack.preview) plus refusal and program runners."""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import yaml

from selfhost.stack.preview import AMI, EIP, GCP_IP, Recorder, ensure_event_loop, is_secret, plain, run

__all__ = ["AMI", "EIP", "GCP_IP", "Recorder", "ensure_event_loop", "is_secret", "plain", "run"]

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250}  # the stacks' example config


def expected(cloud: str, model: str, offer: str, pricing: str, precision: str = "bf16"):
    """The spec and fit the cost review gives the same deployment: what a stack must deploy."""
    from costing.resolve import resolve
    from costing.spec import spec_from_dict

    spec = spec_from_dict(
        {
            "model": model,
            "precision": precision,
            "workload": WORKLOAD,
            "target": {"cloud": cloud, "offer": offer, "pricing": pricing, "replicas": 1},
        }
    )
    return spec, resolve(spec).fit


def refused(build: Callable[[dict], dict], config: dict[str, Any]) -> tuple[Recorder, Exception]:
    """Run a program that must refuse; return the recorder (to check nothing was registered) and the error."""
    ensure_event_loop()
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="selfhost", stack="dev", preview=False)
    caught: list[Exception] = []

    @pulumi.runtime.test
    def program():
        try:
            build(config)
        except Exception as err:
            caught.append(err)

    program()
    assert caught, "the program was expected to refuse"
    return mocks, caught[0]


def example_config(cloud: str) -> dict[str, str]:
    """stacks/<cloud>/Pulumi.dev.yaml's config as the Pulumi engine passes it (objects as JSON)."""
    data = yaml.safe_load((ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text())["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def run_program(cloud: str, config: dict[str, str], secret_keys: list[str]) -> Recorder:
    """Run the shipped stacks/<cloud>/__main__.py under mocks with `config` (keys like project:key)."""
    ensure_event_loop()
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project=f"selfhost-{cloud}", stack="dev", preview=False)
    pulumi.runtime.set_all_config(config, secret_keys)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "stacks" / cloud / "__main__.py"), run_name="__main__")

    try:
        program()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return mocks
