"""Owner and time to live: the marks every deployment the kit makes carries, in a form each cloud accepts.

Marks (AWS tags, GCP labels; RunPod pod env as SELFHOST_<KEY>; SkyPilot in the cluster/service name):
- `managed-by: selfhost`: the kit made it;
- `owner`: who owns it, `owner_mark(owner)`, the owner encoded in GCP's label charset (see below);
- `selfhost-stack`: the Pulumi project/stack/name (stacks only);
- `expires-at`: when a TTL is set, `20261130t0900z` (UTC, to the minute; valid as an AWS tag, a GCP label, an
  env value and inside a SkyPilot name); `preview` and `hourly-usd` where known.

The owner, one precedence everywhere (`selfhost ttl`, `selfhost reap`, the stacks): `--owner` (stack config
`owner`), else $GITHUB_REPOSITORY (set on every GitHub Actions runner, e.g. `acme/llm-serving`). None: refused.
Encoded for GCP labels (lowercase letters, digits, `-`, `_`; 63 characters): lowercased (GitHub names are case
blind), `_` -> `__`, `/` -> `_s`, `.` -> `_d`, any other character -> `_x<hex>_`; longer than 63: 54 characters, `-`
and 8 hex digits of its SHA-256. Distinct owners get distinct marks.

SkyPilot keeps no labels `sky status` shows, so a cluster or service name carries the marks:
`<name>-sh<8 hex of sha256(owner mark)>-exp-<time>` (e.g. `pr-12-sh1a2b3c4d-exp-20261130t0900z`); a name
without the kit's `-sh<hash>-exp-` shape, or with another owner's hash, is never the kit's.

`selfhost reap` acts only where managed-by is `selfhost` AND the owner is the caller's AND the expiry is past
(or the preview is the one named). The SkyPilot autostop is the same expiry (`autostop_minutes`): never earlier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
from collections.abc import Mapping

from costing.errors import UserError

EXPIRES_KEY = "expires-at"
MANAGED_KEY = "managed-by"
MANAGED_VALUE = "selfhost"
OWNER_KEY = "owner"
STACK_KEY = "selfhost-stack"
PREVIEW_KEY = "preview"
HOURLY_KEY = "hourly-usd"
OWNER_HASH_KEY = "owner-hash"  # SkyPilot: from the name, never a tag
MARK_KEYS = (EXPIRES_KEY, MANAGED_KEY, OWNER_KEY, STACK_KEY, PREVIEW_KEY, HOURLY_KEY)
ENV_PREFIX = "SELFHOST_"
NAME_MARK = "-exp-"
OWNER_ENV = "GITHUB_REPOSITORY"
_FMT = "%Y%m%dt%H%Mz"
_VALUE = re.compile(r"^\d{8}t\d{4}z$", re.IGNORECASE)
_KIT_NAME = re.compile(r"^(?P<preview>[a-z][a-z0-9_-]*?)-sh(?P<owner>[0-9a-f]{8})-exp-(?P<expiry>\d{8}t\d{4}z)$")
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
    """The expiry in a mark (`20261130t0900z`; upper case `20261130T0900Z` is the same instant), or None when it
    is absent or malformed: then the deployment is left alone (and the reaper warns)."""
    if not value or not _VALUE.match(value):
        return None
    try:
        return dt.datetime.strptime(value.lower(), _FMT).replace(tzinfo=dt.timezone.utc)
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


def resolve_owner(given: str | None, env: Mapping[str, str] | None = None) -> str:
    """The owner: `given` (--owner, stack config owner), else $GITHUB_REPOSITORY; refused when neither is set."""
    environ: Mapping[str, str] = os.environ if env is None else env
    owner = (given or "").strip() or (environ.get(OWNER_ENV) or "").strip()
    if not owner:
        raise UserError(
            "no owner: the reaper could not tell this repository's deployments from anyone else's",
            "pass --owner OWNER/REPO (stack config: pulumi config set owner OWNER/REPO), or run in GitHub Actions "
            "($GITHUB_REPOSITORY)",
        )
    if len(owner) > 200 or any(ord(c) < 33 or ord(c) > 126 for c in owner):
        raise UserError(f"owner {owner!r} is not an id", "use the repository, e.g. --owner acme/llm-serving")
    return owner


def owner_mark(owner: str) -> str:
    """The owner in GCP's label charset, one mark per owner (see the module docstring)."""
    out = []
    for ch in owner.strip().lower():
        if ch.isascii() and (ch.isalnum() or ch == "-"):
            out.append(ch)
        else:
            out.append({"_": "__", "/": "_s", ".": "_d"}.get(ch) or f"_x{ord(ch):x}_")
    mark = "".join(out)
    if len(mark) > 63:
        mark = mark[:54] + "-" + hashlib.sha256(mark.encode()).hexdigest()[:8]
    return mark


def owner_hash(owner: str) -> str:
    """8 hex digits naming the owner inside a SkyPilot name."""
    return hashlib.sha256(owner_mark(owner).encode()).hexdigest()[:8]


def owner_tags(owner: str, *, stack: str | None = None) -> dict[str, str]:
    """The marks of every deployment the kit makes: managed-by, owner (and the stack scope)."""
    tags = {MANAGED_KEY: MANAGED_VALUE, OWNER_KEY: owner_mark(owner)}
    if stack:
        tags[STACK_KEY] = _label_safe(stack)
    return tags


def ttl_tags(
    ttl: str | dt.timedelta | None,
    *,
    owner: str,
    preview: str | None = None,
    hourly_usd: float | None = None,
    now: dt.datetime | None = None,
    expires: dt.datetime | None = None,
    stack: str | None = None,
) -> dict[str, str]:
    """The tags (AWS) / labels (GCP) a deployment carries: owner marks, and `expires-at` from the TTL (or the
    exact `expires`). Values are GCP-label-safe."""
    tags = owner_tags(owner, stack=stack)
    if expires is None and ttl is not None:
        expires = expires_at(ttl, now)
    if expires is not None:
        tags[EXPIRES_KEY] = format_expiry(expires)
    if preview:
        tags[PREVIEW_KEY] = _label_safe(preview)
    if hourly_usd is not None:
        if not math.isfinite(hourly_usd) or hourly_usd < 0:
            raise UserError(f"hourly price {hourly_usd} is not a price", "pass the review's target.hourly_usd")
        tags[HOURLY_KEY] = f"{hourly_usd:.4f}".replace(".", "_")  # GCP labels allow no '.'
    return tags


def marks_of(tags: dict[str, str]) -> dict[str, str]:
    """The kit's marks among a resource's tags or labels."""
    return {k: v for k, v in tags.items() if k in MARK_KEYS}


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
    for key in MARK_KEYS:
        value = env.get(ENV_PREFIX + key.upper().replace("-", "_"))
        if value is not None:
            out[key] = value
    return out


def named(name: str, expires: dt.datetime, owner: str) -> str:
    """A SkyPilot cluster/service name carrying the kit's marks: `<name>-sh<owner hash>-exp-<yyyymmddthhmmz>`."""
    base = _label_safe(name).strip("-_")
    if not base or not base[0].isalpha():
        base = "sh-" + base
    return f"{base[:40]}-sh{owner_hash(owner)}{NAME_MARK}{format_expiry(expires)}"


def marks_in_name(name: str) -> dict[str, str]:
    """The marks a kit-made SkyPilot name carries ({} for any other name: never the kit's)."""
    m = _KIT_NAME.match(name or "")
    if not m:
        return {}
    return {
        MANAGED_KEY: MANAGED_VALUE,
        OWNER_HASH_KEY: m.group("owner"),
        EXPIRES_KEY: m.group("expiry"),
        PREVIEW_KEY: m.group("preview"),
    }


def expiry_in_name(name: str) -> dt.datetime | None:
    return parse_expiry(marks_in_name(name).get(EXPIRES_KEY))


def autostop_minutes(expires: dt.datetime, now: dt.datetime | None = None) -> int:
    """SkyPilot's autostop (`down: true`, `wait_for: none`: a hard stop that many minutes after it is set, which
    is after this moment): the minutes until the expiry, rounded up, so it never fires before the TTL."""
    seconds = (expires - (now or now_utc())).total_seconds()
    return max(1, math.ceil(seconds / 60))


def decide(marks: dict[str, str], *, owner: str, preview: str | None, now: dt.datetime) -> tuple[bool, str]:
    """(remove?, why) for one deployment's marks: only the kit's, of this owner, past its expiry (or the preview
    named). Everything else is kept, whatever else it carries."""
    if marks.get(MANAGED_KEY) != MANAGED_VALUE:
        return False, "foreign: not managed-by selfhost"
    if OWNER_KEY in marks:
        mine = marks[OWNER_KEY] == owner_mark(owner)
    else:
        mine = marks.get(OWNER_HASH_KEY) == owner_hash(owner)
    if not mine:
        return False, "foreign: another owner"
    if preview is not None and marks.get(PREVIEW_KEY) == _label_safe(preview):
        return True, f"preview {marks[PREVIEW_KEY]} closed"
    raw = marks.get(EXPIRES_KEY)
    if raw is None:
        return False, "no expires-at"
    expiry = parse_expiry(raw)
    if expiry is None:
        return False, f"malformed expires-at {raw!r}"
    if expiry > now:
        return False, "not expired"
    return True, "expired"
