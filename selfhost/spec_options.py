"""Command-line options generated from the one declared flag table (`costing.data.spec.SPEC_KEYS`).

A command lists the spec flags it takes by name; each becomes a typer option with the flag, type and
help text the table declares, and the command receives them as one `flags` dict (None = not given),
ready for `costing.data.spec.overrides_from_flags`. So `plan`, `compare`, `render sky` and `launch sky`
cannot drift apart on what `--region` or `--peak-to-mean` mean."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import typer

from costing.data.spec import BY_PARAM

F = TypeVar("F", bound=Callable[..., Any])


def spec_options(*names: str, help: dict[str, str] | None = None) -> Callable[[F], F]:
    """Add the spec flags `names` (parameter names, e.g. "requests_per_day") to a typer command.

    They are inserted after the command's first parameter (its spec file), in the order given; the
    command takes them as `flags: dict[str, Any]`. `help` overrides a flag's help text for this command."""
    unknown = sorted(set(names) - set(BY_PARAM))
    if unknown:
        raise TypeError(f"not spec flags: {unknown}")  # a programming error, not user input
    keys = [BY_PARAM[n] for n in names]
    texts = help or {}

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "flags"]
        added = [
            inspect.Parameter(
                str(k.param),
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=typer.Option(None, str(k.flag), help=texts.get(str(k.param), k.help) or None),
                annotation=Optional[k.kind],  # noqa: UP045 (a runtime type for typer, not an annotation)
            )
            for k in keys
        ]
        clash = {p.name for p in own} & set(names)
        if clash:
            raise TypeError(f"{fn.__name__} declares spec flags itself: {sorted(clash)}")

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name, None) for name in names}
            return fn(*args, flags=flags, **kwargs)

        command.__signature__ = sig.replace(parameters=[*own[:1], *added, *own[1:]])  # type: ignore[attr-defined]
        return command  # type: ignore[return-value]

    return decorate
