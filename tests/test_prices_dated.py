"""Every shipped price (compute rows, pay-per-token APIs, disk and bucket rates) carries a source and a 2026 date.

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

# What is still shipped with an older date, and why it is not removed. Empty: a figure without a dated 2026
# source is not shipped (RunPod Community Cloud, S3/EBS/ALB outside us-east-1, GCP's forwarding rule and Cloud
# Armor): the kit refuses it or shows a "not priced" row (tests below).
NOT_REDATED: dict[str, str] = {
    "managed vertex g2-standard-8 us-central1": (
        "no 2026 Vertex AI prediction price found; the source analysis' $623.15/month (2024) is the only dated "
        "figure, shipped so the three-way review has a Vertex row until `selfhost prices refresh --cloud gcp` "
        "reads the Billing Catalog (the review shows its date)"
    ),
    "managed sagemaker ml.g5.xlarge us-east-1": (
        "the issue's ml.g5.xlarge figure ($1.41/h, an October 2025 copy of AWS's page); the 2026 copy found "
        "lists $1.21, which is g5.2xlarge's EC2 price, not a SageMaker one; `prices refresh --cloud aws` "
        "replaces it from the Price List API"
    ),
}


def _data(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files("costing").joinpath("data", name).read_text())


def _shipped() -> list[tuple[str, str, str]]:
    """(what, as_of, source) of every price the package ships."""
    out = []
    for r in _data("prices.yaml")["prices"]:
        where = " ".join(str(p) for p in (r["region"], r.get("zone")) if p)
        out.append((f"prices {r['cloud']} {r['instance_type']} {where} {r['pricing']}", r["as_of"], r["source"]))
    managed = _data("managed.yaml")["services"]
    for service in ("sagemaker", "vertex"):
        for r in managed[service]["prices"]:
            out.append((f"managed {service} {r['machine']} {r['region']}", r["as_of"], r["source"]))
    for r in managed["bedrock-cmi"]["rates"]:
        out.append((f"managed bedrock-cmi {r['region']}", r["as_of"], r["source"]))
    for a in _data("apis.yaml")["apis"]:
        out.append((f"api {a['provider']}/{a['api_model']}", a["as_of"], a["source"]))
    for cloud, c in _data("offers.yaml")["clouds"].items():
        for kind in ("storage", "bucket"):
            for region, rate in (c.get(kind) or {}).items():
                out.append((f"{kind} {cloud} {region}", rate.get("as_of"), rate.get("source")))
        for kind, row in (c.get("stack_resources") or {}).items():
            for region, rate in (row.get("regions") or {}).items():
                out.append((f"stack {cloud} {kind} {region}", rate.get("as_of"), rate.get("source")))
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


@pytest.mark.parametrize(
    "cloud, offer, store",
    [("aws", "aws-g5.xlarge", "s3://weights-bucket/llama"), ("gcp", None, "gs://weights-bucket/llama")],
)
def test_a_review_with_a_weights_bucket_dates_the_bucket_rate(cloud, offer, store):
    # The bucket is a cost line, so its rate's date and source are listed with the review's other prices.
    from costing.data.spec import DeploymentSpec
    from costing.money.price_age import dated_prices
    from costing.money.review import cost_review

    target = {"offer": offer} if offer else {"cloud": cloud, "gpu": "L4"}
    spec = DeploymentSpec.model_validate(
        {
            "model": "llama-3.1-8b",
            "target": target,
            "workload": {"requests_per_day": 1000, "input_tokens": 1000, "output_tokens": 250},
            "sky": {"weights_store": store},
        }
    )
    rv = cost_review(spec)
    listed = {what: (as_of, source) for what, as_of, source in dated_prices(rv)}
    region = rv.resolved.price.region
    rate = _data("offers.yaml")["clouds"][cloud]["bucket"][region]
    assert listed[f"{cloud} bucket ({region})"] == (str(rate["as_of"]), rate["source"])
    assert any(line.item.startswith("weights bucket") for line in rv.cost_lines)
    plain = cost_review(spec.model_copy(update={"sky": spec.sky.model_copy(update={"weights_store": None})}))
    assert f"{cloud} bucket ({region})" not in {what for what, _, _ in dated_prices(plain)}
