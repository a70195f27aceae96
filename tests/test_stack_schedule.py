"""A part-time schedule is deployed, never only costed: AWS scheduled actions, GCP autoscaler scaling
schedules; RunPod refuses it with one line and the fix."""

from __future__ import annotations

import pytest
from stack_mocks import refused, stack

from costing.errors import UserError
from costing.money.review import cost_review
from selfhost.stack import aws_config, gcp_config
from selfhost.stack.plan import stack_parts
from selfhost.stack.preview import ZONE_IDS
from selfhost.stack.schedule import window

AWS = {
    "model": "llama-3.1-8b",
    "instanceType": "g5.xlarge",
    "pricing": "on-demand",
    "allowedCidrs": ["203.0.113.0/24"],
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
    "allowPlainHttp": True,
}
GCP = {k: v for k, v in {**AWS, "machineType": "g2-standard-8"}.items() if k != "instanceType"}
PART_TIME = {"hoursPerDay": "8", "daysPerWeek": "5", "scheduleStart": "09:00", "timeZone": "Europe/Berlin"}
SCHEDULE = "aws:autoscaling/schedule:Schedule"


def test_aws_part_time_becomes_scheduled_actions_in_the_stack_time_zone():
    mocks, out = stack("aws", {**AWS, **PART_TIME})
    actions = {a["scheduledActionName"]: a for a in mocks.of_type(SCHEDULE)}
    assert set(actions) == {"selfhost-start", "selfhost-stop"}
    start, stop = actions["selfhost-start"], actions["selfhost-stop"]
    assert start["recurrence"] == "0 9 * * 1,2,3,4,5" and stop["recurrence"] == "0 17 * * 1,2,3,4,5"
    assert (start["minSize"], start["maxSize"], start["desiredCapacity"]) == (1, 1, 1)
    assert (stop["minSize"], stop["maxSize"], stop["desiredCapacity"]) == (0, 0, 0)
    assert start["timeZone"] == stop["timeZone"] == "Europe/Berlin"
    assert start["autoscalingGroupName"] == stop["autoscalingGroupName"] == "selfhost-aws-group-asg"
    # what runs is what was costed: 8 h x 5 days, the hours the review bills
    spec = aws_config.plan({**AWS, **PART_TIME}).spec
    assert (spec.schedule.hours_per_day, spec.schedule.days_per_week) == (8, 5)
    parts = stack_parts("aws", tuple(AWS["allowedCidrs"]), tuple(sorted(ZONE_IDS["us-east-1"].values())))
    assert out["projectedMonthlyUsd"] == pytest.approx(
        round(
            cost_review(
                spec,
                stack_resources=parts[0],
                stack_counts=parts[1],
                cloud_group=True,
                boot_disk_gb=aws_config.ROOT_BASE_GB,
            ).monthly_usd,
            2,
        )
    )
    assert out["schedule"] == "start 0 9 * * 1,2,3,4,5 / stop 0 17 * * 1,2,3,4,5 (Europe/Berlin)"


def test_always_on_declares_no_schedule():
    mocks, out = stack("aws", AWS)
    assert mocks.of_type(SCHEDULE) == [] and out["schedule"] == "always on"


@pytest.mark.parametrize(
    "hours, days, start, start_cron, stop_cron",
    [
        (8, 5, "09:00", "0 9 * * 1,2,3,4,5", "0 17 * * 1,2,3,4,5"),
        (8, 5, "20:30", "30 20 * * 1,2,3,4,5", "30 4 * * 2,3,4,5,6"),  # crosses midnight: next day's date
        (24, 5, "00:00", "0 0 * * 1", "0 0 * * 6"),  # Monday 00:00 to Saturday 00:00
        (12, 7, "06:00", "0 6 * * 0,1,2,3,4,5,6", "0 18 * * 0,1,2,3,4,5,6"),
        (7.5, 1, "08:15", "15 8 * * 1", "45 15 * * 1"),
    ],
)
def test_window_crons(hours, days, start, start_cron, stop_cron):
    w = window(hours, days, {"scheduleStart": start})
    assert (w.start_cron(), w.stop_cron(), w.time_zone) == (start_cron, stop_cron, "UTC")


@pytest.mark.parametrize("pricing", ["on-demand", "spot"])
def test_gcp_part_time_is_an_autoscaler_scaling_schedule_on_every_group(pricing):
    mocks, _ = stack("gcp", {**GCP, **PART_TIME, "pricing": pricing})
    fleet = gcp_config.plan({**GCP, **PART_TIME, "pricing": pricing}).fleet
    scalers = mocks.of_type("gcp:compute/regionAutoscaler:RegionAutoscaler")
    assert len(scalers) == (2 if pricing == "spot" and fleet.base_ondemand_replicas else 1)
    held = 0
    for scaler in scalers:
        policy = scaler["autoscalingPolicy"]
        [hours] = policy["scalingSchedules"]
        assert policy["minReplicas"] == 0  # outside the window nothing runs (the costed hours)
        assert hours["schedule"] == "0 9 * * 1,2,3,4,5" and hours["timeZone"] == "Europe/Berlin"
        assert hours["durationSec"] == 8 * 3600
        held += hours["minRequiredReplicas"]
    assert held == fleet.min_replicas  # in the window: the review's off-peak fleet
    assert mocks.of_type("gcp:compute/resourcePolicy:ResourcePolicy") == []


@pytest.mark.parametrize(
    "cloud, change, words",
    [
        ("aws", {"daysPerWeek": "4.5"}, "daysPerWeek 4.5 is not a whole number of days"),
        ("aws", {"hoursPerDay": "7.3333"}, "not a whole number of minutes"),
        ("aws", {"timeZone": "Mars/Olympus"}, "not an IANA time zone"),
        ("gcp", {"scheduleStart": "9am"}, "not HH:MM"),
        ("aws", {"scheduleStart": "24:00"}, "not HH:MM"),
    ],
)
def test_a_schedule_that_cannot_run_is_refused(cloud, change, words):
    base = AWS if cloud == "aws" else GCP
    mocks, err = refused(cloud, {**base, **PART_TIME, **change})
    assert isinstance(err, UserError) and words in str(err) and "Fix:" in err.line()
    assert mocks.resources == []


def test_runpod_refuses_a_part_time_schedule_with_the_fix():
    config = {k: v for k, v in AWS.items() if k not in ("instanceType", "allowedCidrs", "allowPlainHttp")}
    mocks, err = refused("runpod", {**config, "hoursPerDay": "8"})
    assert "cannot be deployed there" in err.problem
    assert "aws/gcp target" in err.fix and mocks.resources == []


@pytest.mark.parametrize("open_now", [True, False])
def test_an_aws_group_created_outside_its_window_starts_at_the_window_size(open_now):
    """The group used to start at full size until the first stop action: now at the window's size then."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(hours=1) if open_now else now + dt.timedelta(hours=2)
    config = {**AWS, "hoursPerDay": "3", "daysPerWeek": "7", "scheduleStart": start.strftime("%H:%M")}
    config["timeZone"] = "UTC"
    fleet = aws_config.plan(config).fleet
    mocks, _ = stack("aws", config)
    group = mocks.one("aws:autoscaling/group:Group")
    size = (group["minSize"], group["maxSize"], group["desiredCapacity"])
    assert size == ((fleet.min_replicas, fleet.max_replicas, fleet.min_replicas) if open_now else (0, 0, 0))
    assert window(3, 7, config).open_at(now) is open_now


def test_a_window_is_open_from_its_start_for_its_hours_on_its_days_in_its_time_zone():
    import datetime as dt

    w = window(10, 5, {"scheduleStart": "08:00", "timeZone": "Europe/Berlin"})  # Mon-Fri 08:00-18:00 Berlin
    at = {  # UTC times in December (Berlin is UTC+1); 2026-12-07 is a Monday
        "2026-12-07T06:59": False,
        "2026-12-07T07:00": True,
        "2026-12-07T16:59": True,
        "2026-12-07T17:00": False,
        "2026-12-11T16:30": True,  # Friday
        "2026-12-12T09:00": False,  # Saturday
    }
    for text, expected in at.items():
        assert w.open_at(dt.datetime.fromisoformat(text + "+00:00")) is expected, text
    night = window(10, 7, {"scheduleStart": "20:00"})  # across midnight UTC
    assert night.open_at(dt.datetime(2026, 12, 8, 5, 59, tzinfo=dt.timezone.utc))
    assert not night.open_at(dt.datetime(2026, 12, 8, 6, 0, tzinfo=dt.timezone.utc))
