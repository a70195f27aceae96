"""Time to live: the `expires-at` mark every deployment carries, in a form each cloud accepts.

One value format, valid as an AWS tag, a GCP label (lowercase, digits, `-`, `_`; 63 chars), a RunPod pod env var
and inside a SkyPilot cluster or service name: `20261130t0900z` (UTC, to the minute).

Where the marks go (the stacks and templates merge `ttl_tags(...)` into what they create):
- AWS (stacks/aws): the instance's `tags` (and its volumes' via `volume_tags`): {"expires-at", "managed-by",
  "preview", "hourly-usd"}.
- GCP (stacks/gcp): the instance's `labels` (same keys; values already label-safe).
- RunPod (stacks/runpod): the pod's `env` as SELFHOST_EXPIRES_AT / SELFHOST_PREVIEW / SELFHOST_HOURLY_USD
  (`runpod_env(...)`), and the pod name suffix from `named(...)`.
- SkyPilot: the cluster or service name from `named(name, expires)` (e.g. `pr-12-exp-20261130t0900z`), plus
  `sky launch --down -i MINUTES` (`autostop_minutes(...)`) so an idle cluster also goes on its own.
`selfhost reap` tears down what is past its mark and never touches anything without one.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from costing.errors import UserError

EXPIRES_KEY = "expires-at"
MANAGED_KEY = "managed-by"
PREVIEW_KEY = "preview"
HOURLY_KEY = "hourly-usd"
ENV_PREFIX = "SELFHOST_"
NAME_MARK = "-exp-"
_FMT = "%Y%m%dt%H%Mz"
_VALUE = re.compile(r"^\d{8}t\d{4}z$")
_IN_NAME = re.compile(r"-exp-(\d{8}t\d{4}z)(?:$|-)")
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
MIN_TTL = dt.timedelta(minutes=5)
MAX_TTL = dt.timedelta(days=90)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_ttl(text: str) -> dt.timedelta:
    """'90m', '8h', '3d' → a timedelta between 5 minutes and 90 days."""
    m = _TTL.match(str(text).lower())
    if not m:
        raise UserError(f"TTL '{text}' is not a duration", "use minutes, hours or days, e.g. 90m, 8h or 3d")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise UserError(f"TTL '{text}' is not finite", "e.g. 8h")
    ttl = dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: value})
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise UserError(f"TTL '{text}' is outside 5m..90d", "pick a TTL between 5 minutes and 90 days")
    return ttl


def format_expiry(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime(_FMT)


def parse_expiry(value: str | None) -> dt.datetime | None:
    """The expiry in a mark, or None when it is absent or malformed (then the deployment is left alone)."""
    if not value or not _VALUE.match(value):
        return None
    try:
        return dt.datetime.strptime(value, _FMT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def expires_at(ttl: str | dt.timedelta, now: dt.datetime | None = None) -> dt.datetime:
    delta = parse_ttl(ttl) if isinstance(ttl, str) else ttl
    # round up to the next minute: the mark never expires earlier than asked
    when = (now or now_utc()) + delta
    return when.replace(second=0, microsecond=0) + (
        dt.timedelta(minutes=1) if when.second or when.microsecond else dt.timedelta()
    )


def _label_safe(value: str) -> str:
    out = re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
    if not out:
        raise UserError(f"'{value}' has no letter or digit", "name the preview e.g. pr-12")
    return out


def ttl_tags(
    ttl: str | dt.timedelta,
    *,
    preview: str | None = None,
    hourly_usd: float | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The tags (AWS) / labels (GCP) a deployment with this TTL carries. Values are GCP-label-safe."""
    tags = {EXPIRES_KEY: format_expiry(expires_at(ttl, now)), MANAGED_KEY: "selfhost"}
    if preview:
        tags[PREVIEW_KEY] = _label_safe(preview)
    if hourly_usd is not None:
        if not math.isfinite(hourly_usd) or hourly_usd < 0:
            raise UserError(f"hourly price {hourly_usd} is not a price", "pass the review's target.hourly_usd")
        tags[HOURLY_KEY] = f"{hourly_usd:.4f}".replace(".", "_")  # GCP labels allow no '.'
    return tags


def hourly_from_tag(value: str | None) -> float | None:
    try:
        return None if value is None else float(value.replace("_", "."))
    except ValueError:
        return None


def runpod_env(tags: dict[str, str]) -> dict[str, str]:
    """The same marks as RunPod pod environment variables."""
    return {ENV_PREFIX + k.upper().replace("-", "_"): v for k, v in tags.items()}


def tags_from_runpod_env(env: dict[str, str]) -> dict[str, str]:
    out = {}
    for key in (EXPIRES_KEY, MANAGED_KEY, PREVIEW_KEY, HOURLY_KEY):
        value = env.get(ENV_PREFIX + key.upper().replace("-", "_"))
        if value is not None:
            out[key] = value
    return out


def named(name: str, expires: dt.datetime) -> str:
    """A SkyPilot cluster/service (or RunPod pod) name carrying its expiry: `<name>-exp-<yyyymmddthhmmz>`."""
    base = _label_safe(name).strip("-_")
    if not base or not base[0].isalpha():
        base = "sh-" + base
    return f"{base[:40]}{NAME_MARK}{format_expiry(expires)}"


def expiry_in_name(name: str) -> dt.datetime | None:
    m = _IN_NAME.search(name or "")
    return parse_expiry(m.group(1)) if m else None


def autostop_minutes(ttl: str | dt.timedelta) -> int:
    """`sky launch --down -i N`: idle minutes before SkyPilot tears the cluster down on its own (capped at the TTL)."""
    delta = parse_ttl(ttl) if isinstance(ttl, str) else ttl
    return max(5, min(60, int(delta.total_seconds() // 60)))
