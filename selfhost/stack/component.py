"""The Pulumi side every stack shares: reading stack config, refusing bad config, the VllmEndpoint component.

Each stacks/<cloud>/__main__.py reads its config and plans inside `refusals()` (a UserError ends
`pulumi up` with one line, before any resource), then parents its resources under one VllmEndpoint,
which carries the plan (costed spec, container command, readiness, labels) and exports the common outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pulumi

from selfhost.stack.checks import check_api_key
from selfhost.stack.plan import COMMON_KEYS, SECRET_KEYS, StackPlan

LIST_KEYS = ("allowedCidrs", "subnetIds", "zones")


def config_from_pulumi(keys: Iterable[str], secret_keys: Iterable[str] = SECRET_KEYS) -> dict[str, Any]:
    """The stack's config as a plain mapping; secrets stay pulumi secret Outputs (never plain text)."""
    cfg = pulumi.Config()
    out: dict[str, Any] = {}
    for key in dict.fromkeys([*COMMON_KEYS, *keys]):
        text = cfg.get(key)
        if text is not None and key in LIST_KEYS and text.lstrip().startswith("["):
            out[key] = _json_list(key, text)  # a YAML list in Pulumi.<stack>.yaml; else "a,b" from `pulumi config set`
        elif text is not None:
            out[key] = text
    for key in secret_keys:
        secret_value = cfg.get_secret(key)
        if secret_value is not None:
            if key == "apiKey":  # its plain text, checked now (preview) and never kept: the Output is what is used
                check_api_key(cfg.get(key))
            out[key] = secret_value
    return out


read_config = config_from_pulumi


def _json_list(key: str, text: str) -> list[Any]:
    from costing.errors import UserError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"stack config {key} is not a valid list ({err.msg} at character {err.pos})",
            f"pulumi config set {key} '203.0.113.0/24,198.51.100.0/24' (or a YAML list in Pulumi.<stack>.yaml)",
        ) from None
    if not isinstance(value, list):
        raise UserError(f"stack config {key} must be a list", f"pulumi config set {key} 'a,b'")
    return value


def stack_scope() -> tuple[str, str]:
    """(Pulumi project, stack): what names, tags and IAM conditions are scoped by."""
    return pulumi.get_project(), pulumi.get_stack()


@contextmanager
def refusals() -> Iterator[None]:
    """A UserError raised inside ends the program as a pulumi.RunError: one line, no traceback.

    The original error stays on the RunError as `user_error` (tests check its class)."""
    from costing.errors import UserError

    try:
        yield
    except UserError as err:
        error = pulumi.RunError(err.line())
        error.user_error = err  # type: ignore[attr-defined]
        raise error from None


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
        if plan.cloud != "runpod" and not plan.domain:
            pulumi.log.warn(
                "plain HTTP (allowPlainHttp): the API key crosses the network unencrypted; "
                "set domain for TLS (a certificate on the load balancer)",
                self,
            )

    def child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def finish(self, **outputs: Any) -> dict[str, Any]:
        """Register and export the plan's outputs plus the cloud's (endpointUrl, ids)."""
        p = self.plan
        transport = f"https (certificate for {p.domain})" if p.domain else "http (allowPlainHttp)"
        if p.cloud == "runpod":
            transport = "https (RunPod proxy)"
        schedule = (
            f"start {p.window.start_cron()} / stop {p.window.stop_cron()} ({p.window.time_zone})"
            if p.window
            else "always on"
        )
        everything = {**p.outputs(), "transport": transport, "schedule": schedule, "stackScope": p.scope, **outputs}
        self.register_outputs(everything)
        for key, value in everything.items():
            pulumi.export(key, value)
        return everything
