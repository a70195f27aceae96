"""The Pulumi side every stack shares: reading stack config and the VllmEndpoint component.

The cloud modules (aws, gcp, runpod) parent their resources under one VllmEndpoint, which carries
the plan (costed spec, container command, readiness, labels) and exports the common outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pulumi

from selfhost.stack.plan import COMMON_KEYS, SECRET_KEYS, StackPlan

LIST_KEYS = ("allowedCidrs", "subnetIds")


def config_from_pulumi(keys: Iterable[str], secret_keys: Iterable[str] = SECRET_KEYS) -> dict[str, Any]:
    """The stack's config as a plain mapping; secrets stay pulumi secret Outputs (never plain text)."""
    cfg = pulumi.Config()
    out: dict[str, Any] = {}
    for key in dict.fromkeys([*COMMON_KEYS, *keys]):
        value = cfg.get(key)
        if value is not None and key in LIST_KEYS and value.lstrip().startswith("["):
            value = json.loads(value)  # a YAML list in Pulumi.<stack>.yaml; else "a,b" from `pulumi config set`
        if value is not None:
            out[key] = value
    for key in secret_keys:
        value = cfg.get_secret(key)
        if value is not None:
            out[key] = value
    return out


def secret(value: Any) -> pulumi.Output:
    """A config secret as a secret Output (plain strings from tests or callers are wrapped too)."""
    return pulumi.Output.secret(value)


class VllmEndpoint(pulumi.ComponentResource):
    """One costed vLLM endpoint; children are the cloud's resources."""

    def __init__(self, plan: StackPlan, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("selfhost:index:VllmEndpoint", plan.name, {}, opts)
        self.plan = plan
        for note in plan.review.notes:
            pulumi.log.warn(f"cost review: {note}", self)

    def child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def finish(self, **outputs: Any) -> dict[str, Any]:
        """Register and export the plan's outputs plus the cloud's (endpointUrl, ids)."""
        everything = {**self.plan.outputs(), **outputs}
        self.register_outputs(everything)
        for key, value in everything.items():
            pulumi.export(key, value)
        return everything


def run(module: Any) -> dict[str, Any]:
    """What each stacks/*/__main__.py does: build from the stack config; a UserError ends `pulumi up`
    with its one line (pulumi.RunError: no traceback), before any resource is registered."""
    from costing.errors import UserError

    try:
        return module.build(config_from_pulumi(module.KEYS))
    except UserError as err:
        raise pulumi.RunError(err.line()) from None
