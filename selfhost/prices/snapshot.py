"""Write a dated price snapshot (JSON) to the user's cache folder; the catalog prefers the newest one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from costing.data.catalog import latest_snapshot, shipped_rows, snapshot_dir


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def row(
    cloud: str,
    instance_type: str,
    region: str,
    pricing: str,
    usd_per_hour: float,
    api: str,
    retrieved: dt.datetime,
    zone: str | None = None,
) -> dict[str, Any]:
    """One snapshot figure: the API it came from, region/zone and retrieval time."""
    return {
        "cloud": cloud,
        "instance_type": instance_type,
        "region": region,
        "zone": zone,
        "pricing": pricing,
        "usd_per_hour": round(float(usd_per_hour), 6),
        "source": f"{api}, retrieved {retrieved.isoformat()}",
        "as_of": retrieved.date().isoformat(),
        "retrieved_at": retrieved.isoformat(),
    }


def _key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (r["cloud"], r["instance_type"], r["region"], r["pricing"])


def write(rows: list[dict[str, Any]], retrieved: dt.datetime, folder: Path | None = None) -> Path:
    """Lay `rows` over the previous refreshed snapshot (a refreshed market replaces all its zones) and write it."""
    folder = folder or snapshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    previous: list[dict[str, Any]] = []
    last = latest_snapshot()
    if last is not None:
        try:
            previous = list(json.loads(last.read_text()).get("prices", []))
        except (OSError, json.JSONDecodeError):
            previous = []
    fresh = {_key(r) for r in rows}
    merged = [r for r in previous if _key(r) not in fresh] + rows
    path = folder / f"prices-{retrieved.strftime('%Y%m%dT%H%M%SZ')}.json"
    body = {"snapshot": "refreshed", "retrieved_at": retrieved.isoformat(), "prices": merged}
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path


def write_shipped(retrieved: dt.datetime, folder: Path | None = None) -> Path:
    """`--offline`: a snapshot that is the shipped one, so every command uses the shipped prices."""
    folder = folder or snapshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "cloud": r.cloud,
            "instance_type": r.instance_type,
            "region": r.region,
            "zone": r.zone,
            "pricing": r.pricing,
            "usd_per_hour": r.usd_per_hour,
            "source": r.source,
            "as_of": r.as_of,
        }
        for r in shipped_rows()
    ]
    path = folder / f"prices-{retrieved.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"snapshot": "shipped", "retrieved_at": retrieved.isoformat(), "prices": rows}) + "\n")
    return path
