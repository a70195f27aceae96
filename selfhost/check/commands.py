"""`selfhost smoke` and `selfhost bench` (issue 5). Heavy imports (httpx, aiohttp, rich, the
projection) happen inside the commands."""

from __future__ import annotations

import math
import sys

import typer

KEY_HELP = "API key (Bearer); default: $VLLM_API_KEY (prefer the variable: argv shows in `ps`)"


def _need_key(api_key: str | None) -> str:
    """The key from --api-key or $VLLM_API_KEY (typer reads the variable); neither is one error line."""
    from costing.errors import UserError

    if not api_key:
        raise UserError("no API key", "set $VLLM_API_KEY (or pass --api-key)")
    return api_key


def _check_url(url: str) -> str:
    from costing.errors import UserError

    if not url.startswith(("http://", "https://")):
        raise UserError(f"'{url}' is not an http(s) URL", "give the endpoint's base URL, e.g. http://127.0.0.1:8000")
    return url.rstrip("/").removesuffix("/v1")


def _check_fmt(fmt: str, allowed: tuple[str, ...]) -> None:
    from costing.errors import UserError

    if fmt not in allowed:
        raise UserError(f"unknown --format {fmt}", f"use {' or '.join(allowed)}")


def parse_concurrency(text: str) -> list[int]:
    from costing.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(
            f"--concurrency '{text}' is not a list of positive integers", "use e.g. --concurrency 1,4,16,64"
        )
    return values


def discover_model(url: str, api_key: str | None, timeout_s: float) -> str:
    """The first model /v1/models lists (when --model is not given)."""
    import httpx

    from costing.errors import UserError

    try:
        r = httpx.get(
            f"{url}/v1/models",
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=min(timeout_s, 30),
        )
    except httpx.HTTPError as err:
        raise UserError(
            f"cannot list the models at {url} ({type(err).__name__}: {err})",
            "check the URL and that the server is up, or pass --model",
        ) from None
    if r.status_code != 200:
        raise UserError(
            f"{url}/v1/models answered {r.status_code} ({' '.join(r.text[:120].split())})",
            "check --api-key, or pass --model",
        )
    ids = [m.get("id") for m in r.json().get("data", [])]
    if not ids:
        raise UserError(f"{url}/v1/models lists no model", "pass --model")
    return ids[0]


def _advisories(url: str, api_key: str, timeout: float, strict: bool) -> None:
    """Warn (stderr) when the server's vLLM is in an advisory's affected range; --strict: exit 2."""
    from packaging.version import InvalidVersion, Version

    from costing.data import advisories
    from costing.errors import UserError
    from selfhost.check.smoke import server_version

    version = server_version(url, api_key, timeout)
    try:
        Version(version or "")
        known = True
    except InvalidVersion:
        known = False
    if not known:
        print(f"warning: {url}/version reported no vLLM version ({version!r}): advisories not checked", file=sys.stderr)
        if strict:
            raise UserError(
                f"--strict: the vLLM version at {url} is unknown ({url}/version gave none)",
                "check that the endpoint is vLLM and the key is right, or drop --strict",
            )
        return
    for line in advisories.enforce(version or "", f"served at {url}", strict=strict):
        print(line, file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add the check commands to the top-level app."""

    @app.command()
    def smoke(
        url: str = typer.Argument(..., help="endpoint base URL, e.g. http://127.0.0.1:8000"),
        api_key: str | None = typer.Option(None, "--api-key", envvar="VLLM_API_KEY", help=KEY_HELP),
        model: str | None = typer.Option(None, "--model", help="served model name (default: the first listed)"),
        timeout: float = typer.Option(30.0, "--timeout", help="seconds per request (and longest silence)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        strict: bool = typer.Option(
            False, "--strict", help="exit 2 when the server's vLLM version is affected by a published advisory"
        ),
    ) -> None:
        """Does the endpoint answer, safely? Health, models, key on every route but /health, chat, stream, metrics.

        Then the vLLM version the server reports (/version) against the shipped advisory snapshot: a warning
        per advisory that affects it; --strict refuses (exit 2)."""
        from selfhost.check.smoke import render, run_smoke

        _check_fmt(fmt, ("table", "json"))
        base = _check_url(url)
        api_key = _need_key(api_key)
        checks = run_smoke(base, api_key, model, timeout)
        print(render(checks, fmt))
        _advisories(base, api_key, timeout, strict)
        if not all(c.ok for c in checks):
            raise typer.Exit(1)

    @app.command()
    def bench(
        url: str = typer.Argument(..., help="endpoint base URL, e.g. http://127.0.0.1:8000"),
        api_key: str | None = typer.Option(None, "--api-key", envvar="VLLM_API_KEY", help=KEY_HELP),
        model: str | None = typer.Option(None, "--model", help="served model name (default: the first listed)"),
        input_tokens: int = typer.Option(..., "--input-tokens", min=1, help="prompt tokens per request"),
        output_tokens: int = typer.Option(..., "--output-tokens", min=1, help="output tokens per request (ignore_eos)"),
        concurrency: str | None = typer.Option(None, "--concurrency", help="sweep, e.g. 1,4,16,64 (default)"),
        request_rate: float | None = typer.Option(None, "--request-rate", help="Poisson arrivals per second instead"),
        num_prompts: int | None = typer.Option(
            None, "--num-prompts", min=1, help="requests per point (default: max(32, 4 x concurrency))"
        ),
        api: str = typer.Option("completions", "--api", help="completions (exact prompt length, token ids) or chat"),
        timeout: float = typer.Option(300.0, "--timeout", help="seconds per request"),
        read_timeout: float = typer.Option(30.0, "--read-timeout", help="longest silence mid-stream, seconds"),
        slo_ttft_ms: float | None = typer.Option(None, "--slo-ttft-ms", help="goodput SLO on TTFT"),
        slo_tpot_ms: float | None = typer.Option(None, "--slo-tpot-ms", help="goodput SLO on TPOT"),
        slo_e2el_ms: float | None = typer.Option(None, "--slo-e2el-ms", help="goodput SLO on end-to-end latency"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        output: str | None = typer.Option(None, "--output", help="also write the JSON here (for plan --calibration)"),
        chart: str | None = typer.Option(None, "--chart", help="write a PNG chart here"),
        model_id: str | None = typer.Option(
            None, "--model-id", help="catalog model for the projection, e.g. llama-3.1-8b"
        ),
        gpu: str | None = typer.Option(None, "--gpu", help="GPU for the projection, e.g. A40"),
        gpus: int = typer.Option(1, "--gpus", help="GPUs for the projection"),
        precision: str = typer.Option("bf16", "--precision", help="precision for the projection"),
        calibration: str | None = typer.Option(
            None,
            "--calibration",
            help="efficiency parameters of the projection: a calibration JSON (costing/data/local-cpu-profile.json)",
        ),
        projection_label: str | None = typer.Option(
            None, "--projection-label", help="what the projection stands for (shown with it)"
        ),
        local_profile: bool = typer.Option(
            False,
            "--local-profile",
            help="project the local target (`selfhost up local`) with its own device profile "
            "(costing/data/local-cpu-profile.json), instead of --model-id/--gpu/--calibration",
        ),
        probe: bool = typer.Option(
            True,
            "--probe/--no-probe",
            help="with --local-profile: before the sweep, time a short probe (one untimed request, then 8 at one "
            "client) and set the profile to this machine's speed now (the profile's shape, today's scale)",
        ),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Load-test an endpoint: TTFT, TPOT, ITL, E2E (p50/p90/p99), tokens/s, goodput; exit 1 on failed requests."""
        from costing.errors import UserError
        from selfhost.check.bench_math import Slo

        _check_fmt(fmt, ("table", "json"))
        base = _check_url(url)
        api_key = _need_key(api_key)
        if api not in ("completions", "chat"):
            raise UserError(f"unknown --api {api}", "use completions or chat")
        if concurrency and request_rate:
            raise UserError("--concurrency and --request-rate are alternatives", "give one of them")
        if request_rate is not None and request_rate <= 0:
            raise UserError(f"--request-rate must be positive, got {request_rate:g}", "e.g. --request-rate 4")
        if timeout <= 0 or read_timeout <= 0:
            raise UserError("timeouts must be positive", "e.g. --timeout 300 --read-timeout 30")
        levels = None if request_rate else parse_concurrency(concurrency or "1,4,16,64")
        target, profile_path = None, ""
        if local_profile:
            if model_id or gpu or calibration:
                raise UserError(
                    "--local-profile sets the projection's model, GPU and calibration",
                    "drop --model-id, --gpu and --calibration, or drop --local-profile",
                )
            model_id, gpu, gpus, precision, profile_path, default_label = _local_profile_target()
            calibration = "costing/data/local-cpu-profile.json"  # as shown; read from the installed package
            projection_label = projection_label or default_label
        if model_id or gpu:
            from costing.performance.fit import FitRequest, fit_check
            from selfhost.check.bench_report import ProjectionTarget

            if not (model_id and gpu):
                raise UserError(
                    "the projection needs both --model-id and --gpu", "e.g. --model-id llama-3.1-8b --gpu A40"
                )
            target = ProjectionTarget(model_id, precision, gpu, gpus, projection_label, calibration)
            fit_check(
                FitRequest(
                    model=model_id, precision=precision, gpu=gpu, gpus=gpus, seq_len=input_tokens + output_tokens
                )
            )  # bad target: fail before any load
        elif calibration or projection_label:
            raise UserError("--calibration and --projection-label need a projection target", "add --model-id and --gpu")
        params = _projection_params(profile_path if local_profile else calibration) if calibration else None
        from selfhost.check.bench import BenchConfig
        from selfhost.check.bench_report import attach_projections, document, render

        served = model or discover_model(base, api_key, timeout)
        cfg = BenchConfig(
            url=base,
            api_key=api_key,
            model=served,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            num_prompts=num_prompts,
            api=api,
            timeout_s=timeout,
            read_timeout_s=read_timeout,
            seed=seed,
            slo=Slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms),
        )
        probed = None
        if target and local_profile and probe:
            from dataclasses import replace

            from selfhost.check.bench_report import PROBE_CONCURRENCY, PROBE_REQUESTS, PROBE_WARMUP, set_to_probe

            # its own seeds: the probe's prompts must not be the sweep's (vLLM's prefix cache would keep them)
            warm_cfg = replace(cfg, num_prompts=PROBE_WARMUP, seed=cfg.seed + 2_000_003)
            _run_with_progress(warm_cfg, [1], None, "warm-up")  # untimed: the server's first-request costs
            probe_cfg = replace(cfg, num_prompts=PROBE_REQUESTS, seed=cfg.seed + 1_000_003)
            [probe_point] = _run_with_progress(probe_cfg, [PROBE_CONCURRENCY], None, "speed probe")
            params, probed = set_to_probe(probe_point, target, input_tokens, output_tokens, params)
        points = _run_with_progress(cfg, levels, request_rate)
        if target:
            attach_projections(points, target, input_tokens, output_tokens, params)
        doc = document(cfg, points, "request-rate" if request_rate else "concurrency", target, probed)
        print(render(doc, fmt))
        if output:
            import json
            from pathlib import Path

            Path(output).write_text(json.dumps(doc, indent=2))
            print(f"wrote {output}", file=sys.stderr)
        if chart:
            from selfhost.check.bench_chart import write_chart

            print(f"wrote {write_chart(doc, chart)}", file=sys.stderr)
        if doc["failed_requests"]:
            print(f"error: {doc['failed_requests']} requests failed (see the errors above).", file=sys.stderr)
            raise typer.Exit(1)


def _local_profile_target() -> tuple[str, str, int, str, str, str]:
    """The local target's device profile as a bench projection target: (model, GPU, GPUs, precision, the
    profile's path, its label); the stand-in physics and the label are the profile's own."""
    import json

    from costing.data import DATA_DIR

    path = DATA_DIR / "local-cpu-profile.json"
    local = json.loads(path.read_text())["provenance"]["local_profile"]
    s = local["stand_in"]
    return s["model"], s["gpu"], int(s["gpus"]), s["precision"], str(path), local["label"]


def _projection_params(path: str):
    """A calibration JSON (costing/data/calibration.json's format): one line and exit 2 when unreadable."""
    import json
    from pathlib import Path

    from costing.errors import UserError
    from costing.performance.calibration import params_from_dict

    fix = "pass a calibration JSON (params, sources), e.g. costing/data/local-cpu-profile.json"
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
            raise ValueError("no 'params' mapping")
        params = params_from_dict(data)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"--calibration {path} is not usable ({err})", fix) from None
    if not all(math.isfinite(v) and v >= 0 for v in params.values().values()):
        raise UserError(f"--calibration {path} has a negative or non-finite parameter", fix)
    return params


def _run_with_progress(cfg, levels, request_rate, prefix: str = "") -> list[dict]:
    """The sweep with a rich progress bar on stderr (one bar per point)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from selfhost.check.bench import run_sweep

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:

        def progress(label: str, total: int):
            task = bar.add_task(f"{prefix} ({label})" if prefix else label, total=total, fail="")
            failed = [0]

            def done(r) -> None:
                if not r.ok:
                    failed[0] += 1
                bar.update(task, advance=1, fail=f"{failed[0]} failed" if failed[0] else "")

            return done

        return run_sweep(cfg, levels, request_rate, progress)
