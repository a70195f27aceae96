"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same draws every run (a red CI names a counterexample anyone can reproduce); a developer's run
# keeps exploring new ones. `--hypothesis-profile=ci` locally to repeat CI's draws.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parents[1]
# Hermetic prices: tests read the shipped snapshot, never a `selfhost prices refresh` in the user's cache.
os.environ.setdefault("SELFHOST_PRICES", "shipped")
# Reviews warn about prices older than 30 days: golden output is the review of one fixed day.
os.environ.setdefault("SELFHOST_TODAY", "2026-11-30")
SELFHOST = [sys.executable, "-m", "selfhost.cli"]


def run_selfhost(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process."""
    return subprocess.run(
        [*SELFHOST, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})}
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing (review the diff)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def selfhost():
    return run_selfhost


@contextlib.contextmanager
def stand_in_server(*args: str):
    """The local OpenAI-compatible stand-in (tests/fake_vllm_server.py) on 127.0.0.1, stopped by PID."""
    from fake_vllm_server import free_port, start_subprocess

    port = free_port()
    proc = start_subprocess(port, *args)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_reserved_prices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """As after `selfhost prices refresh --cloud aws`: a refreshed snapshot holding the Price List's Reserved
    terms (local stand-in answers) laid over the shipped prices, for this test and the processes it starts."""
    import datetime as dt

    from price_stand_ins import aws_reserved_rows

    from costing.data import catalog
    from selfhost.prices import snapshot

    cache = tmp_path / "price-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("SELFHOST_PRICES", "")
    retrieved = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.timezone.utc)
    path = snapshot.write(aws_reserved_rows(retrieved), retrieved, catalog.snapshot_dir())
    catalog.catalog.cache_clear()
    yield path
    catalog.catalog.cache_clear()
