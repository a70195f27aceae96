"""What `pulumi preview --json` would print for a Pulumi program, produced under Pulumi's mocks.

No Pulumi CLI, engine or cloud runs here: the real program runs under `pulumi.runtime.set_mocks` (the
same runner as selfhost.stack.preview), and each resource it registers is recorded with its type,
logical name and inputs into the documented preview shape, `{"config", "steps": [{"op": "create",
"urn", "newState": {"type", "urn", "custom", "inputs"}}]}`. Secret inputs print as "[secret]" (as the
CLI masks them); ids and outputs are left out, as in a preview of a create. Used by the tests and by
anyone billing a program without a Pulumi login.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfhost.stack.preview import PlaceholderMocks, engine_config, is_secret, run_program

SECRET = "[secret]"


def _masked(value: Any) -> Any:
    if is_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def preview_json(
    program: str | Path, project: str, config: dict[str, Any], stack: str = "dev", outputs: dict | None = None
) -> dict[str, Any]:
    """Run `program` under mocks with a plain config (keys as `pulumi config set` takes them) and return
    the preview document. A refusal propagates as the program's pulumi.RunError."""
    plain = {k: v for k, v in config.items() if ":" in k}  # provider keys (aws:region) as they are
    own, secret_keys = engine_config("x", {k: v for k, v in config.items() if ":" not in k})
    engine = {**engine_config("x", plain)[0], **{f"{project}:{k.split(':', 1)[1]}": v for k, v in own.items()}}
    secret_keys = [f"{project}:{k.split(':', 1)[1]}" for k in secret_keys]
    mocks = PlaceholderMocks()
    exported = run_program(program, project, engine, secret_keys, mocks, stack=stack)
    if outputs is not None:  # the stack's exports (a preview of a create prints none): for the tests
        outputs.update(exported)
    steps = []
    for typ, name, inputs in mocks.resources:
        urn = f"urn:pulumi:{stack}::{project}::{typ}::{name}"
        custom = not typ.startswith("selfhost:")  # component resources register no cloud resource
        steps.append(
            {
                "op": "create",
                "urn": urn,
                "newState": {"urn": urn, "custom": custom, "type": typ, "inputs": _masked(inputs)},
            }
        )
    shown = {k: (SECRET if k in secret_keys else v) for k, v in engine.items()}
    return {"config": shown, "steps": steps, "changeSummary": {"create": len(steps)}}
