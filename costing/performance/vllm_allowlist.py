"""What a spec's `vllm.extra_args` and a server's environment may carry: an allowlist of vLLM's own flags.

costing/data/vllm_allowlist.json lists every flag of the pinned vLLM's `vllm serve` parser and every
environment variable vLLM reads, each classed `safe`, `kit` (set by the kit from the spec) or `refused`
with the reason. scripts/vllm_allowlist.py generates it inside .venv-vllm from vLLM's parser; a test checks
the shipped file is current. Refused: anything that disables, replaces or moves the auth layer, carries a
secret, changes the bind address / port / root path, opens another server, loads code or flags from
elsewhere, and everything not reviewed. Refusals never echo a value (it may be a key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache

from costing.data import DATA_DIR
from costing.errors import UserError

DATA = DATA_DIR / "vllm_allowlist.json"
_NUMBER = re.compile(r"^-\.?\d")  # a negative number is a value, not a flag


def _why(reason: str) -> str:
    return f"it is {reason}" if reason.startswith(("not ", "a secret")) else f"it {reason}"


@cache
def allowlist() -> dict:
    return json.loads(DATA.read_text())


def _name(token: str) -> str:
    """The flag a token names, as vLLM's parser reads it (`--a_b` is `--a-b`, `--a.b=1` is `--a`)."""
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    return name[:48]


def check_extra_args(args: Iterable[str], where: str = "vllm.extra_args") -> None:
    """Refuse (UserError, exit 2) any flag in `args` that is not reviewed safe for vLLM's version."""
    flags = allowlist()["flags"]
    version = allowlist()["vllm"]
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not isinstance(token, str) or not token.startswith("-") or _NUMBER.match(token):
            raise UserError(
                f"{where} item {i + 1} is a value without a flag before it",
                "give flags as `--flag value` or `--flag=value` (the model comes from the spec's `model`)",
            )
        name = _name(token)
        entry = flags.get(name)
        if entry is None:
            raise UserError(
                f"{where} carries {name}, which vLLM {version}'s `vllm serve` does not know",
                "spell the flag in full as `vllm serve --help` lists it, or remove it",
            )
        if entry["class"] == "kit":
            raise UserError(f"{where} carries {name}: it is {entry['reason']}", "set it there and remove the flag")
        if entry["class"] != "safe":
            raise UserError(
                f"{where} carries {name}: {_why(entry['reason'])}",
                f"remove {name} from {where} (costing/data/vllm_allowlist.json lists the flags allowed)",
            )
        i += 1
        if entry["takes_value"] and "=" not in token and i < len(tokens):
            value = tokens[i]
            if not (isinstance(value, str) and value.startswith("--")):
                i += 1  # its value (a flag in that place is checked as a flag)


def check_env(names: Iterable[str], where: str = "the server's environment") -> None:
    """Refuse a vLLM environment variable that is not reviewed safe (names vLLM does not read pass)."""
    env = allowlist()["env"]
    for name in names:
        entry = env.get(name)
        if entry is None and name.startswith("VLLM_"):
            entry = {"class": "refused", "reason": "not an environment variable the kit has reviewed"}
        if entry is None or entry["class"] in ("safe", "kit"):
            continue
        raise UserError(
            f"{where} sets {name}: {_why(entry['reason'])}",
            f"unset {name} (costing/data/vllm_allowlist.json lists the variables allowed)",
        )
