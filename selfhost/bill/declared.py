"""What a deployment declares: the resources of a `pulumi preview --json` document.

The documented shape (pulumi/pulumi#2658): `{"config": {...}, "steps": [{"op", "urn", "newState":
{"type", "urn", "custom", "inputs", "outputs"?}}], "changeSummary": {...}}`. A step whose op deletes or
only reads a resource leaves nothing billed after the update; every other step's `newState` is what the
stack holds. Pulumi-free: any program's preview reads the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costing.errors import UserError

GONE_OPS = (
    "delete",
    "discard",
    "read",
    "read-replacement",
    "delete-replaced",
    "discard-replaced",
    "remove-pending-replace",
)
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how a preview prints a value known only after the update


@dataclass(frozen=True)
class Declared:
    """One declared resource: its type token, logical name (the URN's last part), URN and inputs."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    custom: bool = True

    def get(self, *path: str | int, default: Any = None) -> Any:
        """The input at `path` (keys, list indexes); `default` when absent or unknown."""
        value: Any = self.inputs
        for part in path:
            if isinstance(part, int):
                if not isinstance(value, list) or len(value) <= part:
                    return default
                value = value[part]
            else:
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
        return default if value is None or value == UNKNOWN else value

    def refers_to(self, value: Any) -> bool:
        """Whether a reference input (an id, name or self link another resource carries) names this one.

        Known outputs and ids match exactly; otherwise the logical name as a whole segment (a preview of
        a create knows no ids: an unknown reference matches nothing and the caller falls back to the one
        candidate there is)."""
        if not isinstance(value, str) or not value or value == UNKNOWN:
            return False
        known = {str(v) for v in self.outputs.values() if isinstance(v, (str, int))}
        if value in known:
            return True
        return re.search(rf"(^|/){re.escape(self.name)}(-id|-asg)?($|[/?])", value) is not None


@dataclass
class Preview:
    """The declared resources and the stack config of one preview."""

    resources: list[Declared]
    config: dict[str, Any]
    source: str

    def of_type(self, *types: str) -> list[Declared]:
        return [r for r in self.resources if r.type in types]


def parse_preview(data: Any, source: str = "preview") -> Preview:
    """A `pulumi preview --json` document as declared resources; refuses anything else (one line)."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UserError(
            f"{source} is not `pulumi preview --json` output (no steps[])",
            "pass the file written by `pulumi preview --json > preview.json`, or a SkyPilot task YAML",
        )
    resources = []
    for i, step in enumerate(data["steps"]):
        if not isinstance(step, dict):
            raise UserError(f"{source}: steps[{i}] is not an object", "pass unmodified `pulumi preview --json` output")
        if str(step.get("op") or "") in GONE_OPS:
            continue
        state = step.get("newState")
        if not isinstance(state, dict):
            continue
        urn = str(state.get("urn") or step.get("urn") or "")
        typ = str(state.get("type") or (urn.split("::")[2] if urn.count("::") >= 3 else ""))
        if not typ:
            raise UserError(
                f"{source}: steps[{i}] has no resource type", "pass unmodified `pulumi preview --json` output"
            )
        inputs = state.get("inputs") or {}
        outputs = state.get("outputs") or {}
        if not isinstance(inputs, dict) or not isinstance(outputs, dict):
            raise UserError(
                f"{source}: steps[{i}] inputs are not an object", "pass unmodified `pulumi preview --json` output"
            )
        name = urn.rsplit("::", 1)[-1] if "::" in urn else typ
        if state.get("id"):
            outputs = {**outputs, "id": state["id"]}
        custom = bool(state.get("custom", True)) and not typ.startswith(("pulumi:pulumi:", "pulumi:providers:"))
        resources.append(Declared(typ, name, urn, inputs, outputs, custom))
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return Preview(resources, dict(config or {}), source)


def read_preview(path: Path) -> Preview:
    if not path.is_file():
        raise UserError(f"file '{path}' not found", "pass `pulumi preview --json` output or a SkyPilot task YAML")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(
            f"'{path}' is not JSON ({err.msg})", "pass the file written by `pulumi preview --json > preview.json`"
        ) from None
    return parse_preview(data, str(path))
