"""AWS prices from AWS's own APIs: on-demand and 1-/3-year reserved from the Price List API
(`pricing.get_products`), spot per availability zone from `ec2.describe_spot_price_history`.

Endpoints follow boto3's own overrides (`AWS_ENDPOINT_URL_PRICING`, `AWS_ENDPOINT_URL_EC2`), which is how the
tests point the real client at local stand-ins.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from selfhost.prices.snapshot import row

PRICE_LIST_REGION = "us-east-1"  # the Price List API answers in us-east-1 (and a few others) for every region
PRICE_LIST_API = "AWS Price List API (pricing.get_products)"
SPOT_API = "EC2 describe_spot_price_history"
RESERVED = {"1yr": "reserved-1y", "3yr": "reserved-3y"}


class CloudFailure(Exception):
    """One cloud could not be refreshed; the message is one line naming what to do."""


@contextlib.contextmanager
def aws_failures(prefix: str = "") -> Iterator[None]:
    """botocore's errors as one CloudFailure line (`prefix` names the service where it is not EC2)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as err:
        e = err.response.get("Error", {})
        raise CloudFailure(f"{prefix}{e.get('Code', 'error')}: {e.get('Message', err)}".strip()) from None
    except BotoCoreError as err:
        raise CloudFailure(prefix + " ".join(str(err).split())) from None


def _session():
    import boto3

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise CloudFailure(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
            "(the Price List and spot history APIs need any IAM identity)"
        )
    return session


def _hourly(term: dict[str, Any]) -> float | None:
    for dim in term.get("priceDimensions", {}).values():
        if dim.get("unit") == "Hrs":
            usd = float(dim.get("pricePerUnit", {}).get("USD", "nan"))
            if usd > 0:
                return usd
    return None


def parse_product(item: str | dict[str, Any]) -> dict[str, float]:
    """A Price List product (JSON string) → {pricing: USD/h}: on-demand and standard no-upfront reserved."""
    product = json.loads(item) if isinstance(item, str) else item
    out: dict[str, float] = {}
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        price = _hourly(term)
        if price is not None:
            out["on-demand"] = price
    for term in product.get("terms", {}).get("Reserved", {}).values():
        attrs = term.get("termAttributes", {})
        pricing = RESERVED.get(attrs.get("LeaseContractLength", ""))
        if pricing and attrs.get("OfferingClass") == "standard" and attrs.get("PurchaseOption") == "No Upfront":
            price = _hourly(term)
            if price is not None:
                out[pricing] = price
    return out


def _filters(instance_type: str, region: str) -> list[dict[str, str]]:
    match = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in match.items()]


def list_prices(pricing_client, instance_type: str, region: str, retrieved: dt.datetime) -> list[dict[str, Any]]:
    """On-demand and reserved rows for one instance type in one region."""
    rows: list[dict[str, Any]] = []
    for page in pricing_client.get_paginator("get_products").paginate(
        ServiceCode="AmazonEC2", Filters=_filters(instance_type, region), FormatVersion="aws_v1"
    ):
        for item in page.get("PriceList", []):
            for pricing, usd in parse_product(item).items():
                rows.append(row("aws", instance_type, region, pricing, usd, PRICE_LIST_API, retrieved))
    return rows


def spot_prices(ec2_client, instance_type: str, region: str, retrieved: dt.datetime) -> list[dict[str, Any]]:
    """The latest Linux spot price in each availability zone (by zone ID, as SkyPilot names zones)."""
    ids = {
        z["ZoneName"]: z.get("ZoneId") or z["ZoneName"]
        for z in ec2_client.describe_availability_zones().get("AvailabilityZones", [])
    }
    latest: dict[str, tuple[dt.datetime, float]] = {}
    for page in ec2_client.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=retrieved
    ):
        for item in page.get("SpotPriceHistory", []):
            zone, when, usd = item["AvailabilityZone"], item["Timestamp"], float(item["SpotPrice"])
            if usd > 0 and (zone not in latest or when > latest[zone][0]):
                latest[zone] = (when, usd)
    return [
        row("aws", instance_type, region, "spot", usd, SPOT_API, retrieved, zone=ids.get(zone, zone))
        for zone, (_, usd) in sorted(latest.items())
    ]


def refresh(instance_types: list[str], regions: list[str], retrieved: dt.datetime, tick=lambda: None) -> list[dict]:
    """Every AWS row for these instance types and regions; raises CloudFailure with one line on any error."""
    session = _session()
    rows: list[dict[str, Any]] = []
    with aws_failures():
        pricing = session.client("pricing", region_name=PRICE_LIST_REGION)
        for region in regions:
            ec2 = session.client("ec2", region_name=region)
            for instance_type in instance_types:
                rows += list_prices(pricing, instance_type, region, retrieved)
                rows += spot_prices(ec2, instance_type, region, retrieved)
                tick()
    return rows
