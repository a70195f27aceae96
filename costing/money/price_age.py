"""How old each price in a review is: a warning line past 30 days, and the CI gate `--max-price-age-days`."""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING

from costing.errors import UserError

if TYPE_CHECKING:
    from costing.money.review import CostReview

WARN_AFTER_DAYS = 30


def today() -> dt.date:
    """UTC today, or SELFHOST_TODAY (YYYY-MM-DD): golden files and CI reproduce a review of a given day."""
    fixed = os.environ.get("SELFHOST_TODAY")
    if fixed:
        try:
            return dt.date.fromisoformat(fixed)
        except ValueError:
            raise UserError(f"SELFHOST_TODAY {fixed!r} is not a date", "set it as YYYY-MM-DD, or unset it") from None
    return dt.datetime.now(dt.timezone.utc).date()


def age_days(as_of: str | None, on: dt.date | None = None) -> int | None:
    """Whole days since `as_of` (YYYY-MM-DD...), or None when the date is missing or unreadable."""
    if not as_of:
        return None
    try:
        day = dt.date.fromisoformat(str(as_of)[:10])
    except ValueError:
        return None
    return ((on or today()) - day).days


def dated_prices(rv: CostReview) -> list[tuple[str, str | None, str]]:
    """(what, as_of, source) for every price the review used: the compute price, storage, each API."""
    out: list[tuple[str, str | None, str]] = []
    price, offer = rv.resolved.price, rv.offer
    if price is not None and offer is not None:
        where = f"{price.region} {price.zone}" if price.zone else str(price.region)
        out.append((f"{offer.id} {price.pricing} ({where})", price.as_of, price.source))
        from costing.data.catalog import regional_rate, stack_rate
        from costing.money.review import priced_region

        region = priced_region(rv.resolved)
        disk = regional_rate(offer.cloud, "storage", region)
        if disk is not None and any(line.item.startswith("disk ") and line.usd for line in rv.cost_lines):
            out.append((f"{offer.cloud} storage ({region})", str(disk.get("as_of")), str(disk.get("source"))))
        bucket = regional_rate(offer.cloud, "bucket", region)
        buckets = ("weights bucket", "weights mirror bucket")
        if bucket is not None and any(line.item.startswith(buckets) and line.usd for line in rv.cost_lines):
            out.append((f"{offer.cloud} bucket ({region})", str(bucket.get("as_of")), str(bucket.get("source"))))
        if any(line.pricing == "stack" for line in rv.cost_lines):  # a stack's load balancer, WAF, IPs, secrets
            for kind in ("load_balancer", "waf", "public_ipv4", "secrets", "egress"):
                what, row, _why = stack_rate(offer.cloud, kind, region)
                used = any(line.item.startswith(what) and line.usd for line in rv.cost_lines)
                if row is not None and used:
                    out.append((f"{offer.cloud} {kind} ({region})", str(row.get("as_of")), str(row.get("source"))))
    for b in rv.breakeven:
        out.append((b.api.label, b.api.as_of, b.api.source))
    return out


def stale_prices(rv: CostReview, max_days: int = WARN_AFTER_DAYS) -> list[tuple[str, str | None, int | None]]:
    """(what, as_of, age in days) of each price older than `max_days` (or undated)."""
    found = []
    for what, as_of, _ in dated_prices(rv):
        age = age_days(as_of)
        if age is None or age > max_days:
            found.append((what, as_of, age))
    return found


REFRESHABLE_CLOUDS = ("aws", "gcp", "runpod")  # what `selfhost prices refresh` reads from each cloud's own API


def _refreshable(rv: CostReview) -> str | None:
    """The one price `selfhost prices refresh` updates (the offer's on-demand/spot rate), named as dated_prices does."""
    price, offer = rv.resolved.price, rv.offer
    if price is None or offer is None or offer.cloud not in REFRESHABLE_CLOUDS or price.derived:
        return None
    if price.pricing not in ("on-demand", "spot"):
        return None
    return dated_prices(rv)[0][0]


def warnings(rv: CostReview) -> list[str]:
    """At most ONE line: how many prices are old, the oldest, and what to do about each kind."""
    old = stale_prices(rv)
    if not old:
        return []
    what, as_of, age = max(old, key=lambda o: o[2] if o[2] is not None else 10**6)
    when = f"{age} days old (as of {as_of})" if age is not None else "undated"
    head = f"price of {what} is {when}" if len(old) == 1 else f"{len(old)} prices are over {WARN_AFTER_DAYS} days old"
    if len(old) > 1:
        head += f", the oldest {what}: {when}"
    refreshable = _refreshable(rv)
    names = [w for w, _a, _g in old]
    fixes = []
    if refreshable in names:
        fixes.append(f"`selfhost prices refresh --cloud {rv.offer.cloud if rv.offer else ''}` updates {refreshable}")
    by_hand = [w for w in names if w != refreshable]
    if by_hand:
        fixes.append(
            f"check {'it' if len(old) == 1 else 'the others' if refreshable in names else 'them'} by hand at the "
            "source listed under `prices:` (no command refreshes API, storage or derived prices)"
        )
    return [f"{head}; {'; '.join(fixes)}"]


def enforce_price_age(rv: CostReview, max_days: int | None) -> None:
    """The CI gate: refuse a review that used a price older than `max_days` (exit code 2)."""
    if max_days is None:
        return
    if max_days < 0 or max_days > 3650:
        raise UserError(f"--max-price-age-days must be 0-3650 (got {max_days})", "pass a number of days, e.g. 30")
    old = stale_prices(rv, max_days)
    if old:
        what, as_of, _age = max(old, key=lambda o: o[2] if o[2] is not None else 10**6)
        raise UserError(
            f"{len(old)} price(s) in this review are older than {max_days} days "
            f"(oldest: {what}, as of {as_of or 'undated'})",
            "run `selfhost prices refresh` (or raise --max-price-age-days)",
        )
