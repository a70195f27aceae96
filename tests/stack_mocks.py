"""Helpers for the stack tests: a recording mock and runners for the shipped stacks/<cloud>/__main__.py.

`stack(cloud, config)` runs the real program under Pulumi's mocks with a plain config dict (keys as
`pulumi config set` takes them; lists become JSON, apiKey/hfToken are marked secret) and returns the
recorder and the exported outputs. `refused(cloud, config)` runs it expecting a refusal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml

from selfhost.stack.preview import (
    AMI,
    EIP,
    GCP_IP,
    LB_DNS,
    PlaceholderMocks,
    engine_config,
    ensure_event_loop,
    is_secret,
    plain,
    run_program,
)

__all__ = ["AMI", "EIP", "GCP_IP", "LB_DNS", "Recorder", "ensure_event_loop", "is_secret", "plain", "refused", "stack"]

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250}  # the stacks' example config


class Recorder(PlaceholderMocks):
    """The product's placeholder mocks plus look-ups by resource type."""

    def of_type(self, typ: str) -> list[dict]:
        return [inputs for t, _, inputs in self.resources if t == typ]

    def one(self, typ: str) -> dict:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {len(found)}: {[t for t, _, _ in self.resources]}"
        return found[0]

    def types(self) -> set[str]:
        return {t for t, _, _ in self.resources}


def program(cloud: str) -> Path:
    return ROOT / "stacks" / cloud / "__main__.py"


def stack(cloud: str, config: dict[str, Any], stack_name: str = "dev") -> tuple[Recorder, dict[str, Any]]:
    """Run stacks/<cloud>/__main__.py under mocks with `config`; return the recorder and the outputs."""
    engine, secret_keys = engine_config(cloud, config)
    mocks = Recorder()
    outputs = run_program(program(cloud), f"selfhost-{cloud}", engine, secret_keys, mocks, stack=stack_name)
    return mocks, outputs


def refused(cloud: str, config: dict[str, Any]) -> tuple[Recorder, Exception]:
    """Run a program that must refuse; return the recorder (nothing may be registered) and the UserError
    behind the program's pulumi.RunError (its one line is the RunError's message)."""
    engine, secret_keys = engine_config(cloud, config)
    mocks = Recorder()
    try:
        run_program(program(cloud), f"selfhost-{cloud}", engine, secret_keys, mocks)
    except pulumi.RunError as err:
        user_error = getattr(err, "user_error", None)
        assert user_error is not None, f"a RunError without the UserError behind it: {err}"
        assert str(err) == user_error.line() and "\n" not in str(err)
        return mocks, user_error
    raise AssertionError("the program was expected to refuse")


def expected(cloud: str, model: str, offer: str, pricing: str, precision: str = "bf16"):
    """The spec and fit the cost review gives the same deployment: what a stack must deploy."""
    from costing.data.spec import spec_from_dict
    from costing.money.review import cost_review

    spec = spec_from_dict(
        {
            "model": model,
            "precision": precision,
            "workload": WORKLOAD,
            "target": {"cloud": cloud, "offer": offer, "pricing": pricing},
            "sky": {"service": cloud != "runpod"},  # aws/gcp run a group the review sizes as autoscaled
        }
    )
    return spec, cost_review(spec).fit  # the review's fit: its vLLM line drains for the review's p99 latency


def example_config(cloud: str) -> dict[str, Any]:
    """stacks/<cloud>/Pulumi.dev.yaml's config as a plain mapping (own keys unprefixed, aws:region kept)."""
    data = yaml.safe_load((ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text())["config"]
    prefix = f"selfhost-{cloud}:"
    return {k.removeprefix(prefix): v for k, v in data.items()}
