"""SkyPilot offline: a moto server on 127.0.0.1 as the AWS account, and a HOME whose SkyPilot
catalogs are written from our offers (so SkyPilot never downloads one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fake_vllm_server import free_port, wait_port


@contextmanager
def moto_aws() -> Iterator[dict[str, str]]:
    """A moto server on 127.0.0.1 (stopped by PID on exit) and the settings that point boto3 at it."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, what="moto server")
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def sky_home(home: Path, allowed_clouds: tuple[str, ...] = ("aws",)) -> Path:
    """A HOME with SkyPilot catalogs from our offers and SkyPilot limited to `allowed_clouds`
    (its `sky check` then probes only those: AWS through moto)."""
    from selfhost.skypilot.optimizer_catalog import write_catalog

    write_catalog(home)
    (home / ".sky" / "config.yaml").write_text(f"allowed_clouds: [{', '.join(allowed_clouds)}]\n")
    return home


def sky_env(home: Path, aws: dict[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "SKY"))},
        **aws,
        "HOME": str(home),
        "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
    }
