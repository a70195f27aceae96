"""Every shipped price (compute rows, pay-per-token APIs, storage rates) carries a source and a 2026 date.

A figure that could not be re-dated is listed in NOT_REDATED with the reason it is still shipped; its case is
a strict xfail, so re-dating it (or dropping it) makes the test fail until the entry is taken off the list.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

import pytest
import yaml

OLDEST = dt.date(2026, 1, 1)

# What is still shipped with an older date, and why it is not removed.
NOT_REDATED = {
    # The RunPod stack's `cloudType COMMUNITY` is costed from these rows (tests/test_stack_runpod.py); no public
    # 2026 source lists A40 Community Cloud (SkyPilot's catalog has Secure Cloud only). A refresh reads them.
    "prices runpod 1x_A40_COMMUNITY US on-demand": "RunPod A40 Community Cloud: no dated 2026 source",
    "prices runpod 2x_A40_COMMUNITY US on-demand": "RunPod A40 Community Cloud: no dated 2026 source",
    "prices runpod 4x_A40_COMMUNITY US on-demand": "RunPod A40 Community Cloud: no dated 2026 source",
    "prices runpod 8x_A40_COMMUNITY US on-demand": "RunPod A40 Community Cloud: no dated 2026 source",
    # Every GCP review needs a disk rate; pd-balanced us-central1 was not found in a dated 2026 copy.
    "storage gcp": "GCP pd-balanced: no dated 2026 source",
}


def _data(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files("costing").joinpath("data", name).read_text())


def _shipped() -> list[tuple[str, str, str]]:
    """(what, as_of, source) of every price the package ships."""
    out = []
    for r in _data("prices.yaml")["prices"]:
        where = " ".join(str(p) for p in (r["region"], r.get("zone")) if p)
        out.append((f"prices {r['cloud']} {r['instance_type']} {where} {r['pricing']}", r["as_of"], r["source"]))
    for a in _data("apis.yaml")["apis"]:
        out.append((f"api {a['provider']}/{a['api_model']}", a["as_of"], a["source"]))
    for cloud, c in _data("offers.yaml")["clouds"].items():
        out.append((f"storage {cloud}", c.get("storage_as_of"), c.get("storage_source")))
    return out


def _cases() -> list[Any]:
    cases = []
    for what, as_of, source in _shipped():
        marks = [pytest.mark.xfail(strict=True, reason=NOT_REDATED[what])] if what in NOT_REDATED else []
        cases.append(pytest.param(what, as_of, source, id=what, marks=marks))
    return cases


def _check(what: str, as_of: Any, source: Any) -> None:
    assert source and str(source).strip(), f"{what} has no source"
    day = dt.date.fromisoformat(str(as_of))
    assert day >= OLDEST, f"{what} is as of {as_of}, older than {OLDEST}: re-date it from a 2026 source"


@pytest.mark.parametrize("what, as_of, source", _cases())
def test_every_shipped_price_is_dated_2026_or_later(what, as_of, source):
    _check(what, as_of, source)


def test_the_exceptions_are_still_shipped():
    # An entry removed from the data must be removed from NOT_REDATED too, or the list hides nothing.
    shipped = {what for what, _, _ in _shipped()}
    assert set(NOT_REDATED) <= shipped


def test_a_pre_2026_price_is_caught():
    # The date check itself, on a made-up row: a 2025 figure fails, a 2026 one passes.
    with pytest.raises(AssertionError):
        _check("x", "2025-12-31", "s")
    with pytest.raises(AssertionError):
        _check("x", "2026-05-01", "")
    _check("x", "2026-01-01", "s")
