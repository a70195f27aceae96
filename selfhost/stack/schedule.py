"""A part-time schedule (hoursPerDay x daysPerWeek) as the start/stop times the clouds' schedulers run.

The cost review bills hoursPerDay x daysPerWeek; the stacks deploy exactly that window: it starts at
`scheduleStart` (local time in `timeZone`) on the first `daysPerWeek` days from Monday and stops
`hoursPerDay` later. Pulumi-free: the AWS and GCP programs turn these into resources.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from costing.errors import UserError
from selfhost.stack.checks import HH_MM, check_time_zone

DEFAULT_START = "08:00"
DEFAULT_TIME_ZONE = "UTC"
KEYS = ("timeZone", "scheduleStart")


@dataclass(frozen=True)
class Window:
    """When the machine runs: `days` (cron day-of-week numbers, 0 = Sunday) from start for `minutes`."""

    days: tuple[int, ...]
    start_hour: int
    start_minute: int
    minutes: int
    time_zone: str

    @property
    def always_on_days(self) -> bool:
        return self.minutes >= 24 * 60

    def start_cron(self) -> str:
        """Start on each day of the window (a 24-hour window: once, on the first day)."""
        days = self.days[:1] if self.always_on_days else self.days
        return f"{self.start_minute} {self.start_hour} * * {_days(days)}"

    def stop_cron(self) -> str:
        """Stop `minutes` after each start (the next day's date when the window crosses midnight).

        A 24-hour window runs from the first day's start to the same time the day after the last day.
        """
        if self.always_on_days:
            return f"{self.start_minute} {self.start_hour} * * {(self.days[-1] + 1) % 7}"
        end = self.start_hour * 60 + self.start_minute + self.minutes
        days = tuple((d + end // (24 * 60)) % 7 for d in self.days)
        end %= 24 * 60
        return f"{end % 60} {end // 60} * * {_days(days)}"

    def open_at(self, when: dt.datetime) -> bool:
        """Whether the window runs at `when` (aware): a group created then starts at the window's size."""
        local = when.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        span = len(self.days) * 24 * 60 if self.always_on_days else self.minutes
        starts = self.days[:1] if self.always_on_days else self.days
        for back in range(8):  # a start within the last week, at most `span` minutes ago
            day = (local - dt.timedelta(days=back)).replace(
                hour=self.start_hour, minute=self.start_minute, second=0, microsecond=0
            )
            if int(day.strftime("%w")) in starts and dt.timedelta(0) <= local - day < dt.timedelta(minutes=span):
                return True
        return False


def _days(days: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in sorted(set(days)))


def window(hours_per_day: float, days_per_week: float, config: Mapping[str, Any]) -> Window | None:
    """The deployable window, None when always on; refuses what a scheduler cannot run."""
    if hours_per_day >= 24 and days_per_week >= 7:
        return None
    minutes = hours_per_day * 60
    if not math.isclose(minutes, round(minutes), abs_tol=1e-6) or round(minutes) < 1:
        raise UserError(
            f"hoursPerDay {hours_per_day:g} is not a whole number of minutes: a scheduler can't run it",
            "pulumi config set hoursPerDay 8 (or 7.5)",
        )
    if not math.isclose(days_per_week, round(days_per_week), abs_tol=1e-9) or round(days_per_week) < 1:
        raise UserError(
            f"daysPerWeek {days_per_week:g} is not a whole number of days: a scheduler can't run it",
            "pulumi config set daysPerWeek 5",
        )
    start = str(config.get("scheduleStart") or DEFAULT_START)
    match = HH_MM.fullmatch(start)
    if not match:
        raise UserError(
            f"scheduleStart {start!r} is not HH:MM (24-hour clock)", "pulumi config set scheduleStart 08:00"
        )
    tz = check_time_zone(str(config.get("timeZone") or DEFAULT_TIME_ZONE))
    days = tuple((1 + i) % 7 for i in range(round(days_per_week)))  # Monday first
    return Window(days, int(match.group(1)), int(match.group(2)), round(minutes), tz)
