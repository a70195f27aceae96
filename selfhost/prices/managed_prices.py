"""Managed endpoints' prices from the clouds' own APIs, for `selfhost prices refresh`: SageMaker real-time
hosting instance-hours from the AWS Price List API (service code AmazonSageMaker, component Hosting), Vertex
AI prediction node-hours from the Cloud Billing Catalog (the Vertex AI service's G2 core, RAM and L4 GPU
prediction SKUs, summed per machine as Compute Engine's are). Bedrock Custom Model Import has no price API:
its published rates ship as dated data (costing/data/managed.yaml).

Rows use the service as `cloud` (`sagemaker`, `vertex`), so they sit in the same snapshot as the VMs' and
costing.money.managed lays them over the shipped ones."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from selfhost.prices.aws_pricing import PRICE_LIST_REGION, _hourly, _session, aws_failures
from selfhost.prices.snapshot import row

SAGEMAKER_API = "AWS Price List API (pricing.get_products, AmazonSageMaker, component Hosting)"
VERTEX_AI = "services/C7E2-9256-1C43"  # Vertex AI's service id in the Billing Catalog
VERTEX_API = "Cloud Billing Catalog API (CloudCatalogClient.list_skus, Vertex AI prediction G2 + L4 SKUs)"


def _machines(service: str) -> list[str]:
    from costing.money.managed import managed_catalog

    return sorted(name for (s, name) in managed_catalog().machines if s == service)


def sagemaker_hourly(item: str | dict[str, Any]) -> float | None:
    """A SageMaker Price List product → its on-demand USD per instance-hour (None: not an hourly price)."""
    product = json.loads(item) if isinstance(item, str) else item
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        price = _hourly(term)
        if price is not None:
            return price
    return None


def sagemaker_prices(pricing_client, machine: str, region: str, retrieved: dt.datetime) -> list[dict[str, Any]]:
    """The real-time hosting price of one ml.* instance type in one region (one row, or none)."""
    filters = {"instanceName": machine, "regionCode": region, "component": "Hosting"}
    for page in pricing_client.get_paginator("get_products").paginate(
        ServiceCode="AmazonSageMaker",
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
        FormatVersion="aws_v1",
    ):
        for item in page.get("PriceList", []):
            usd = sagemaker_hourly(item)
            if usd is not None:
                return [row("sagemaker", machine, region, "on-demand", usd, SAGEMAKER_API, retrieved)]
    return []


def refresh_sagemaker(regions: list[str], retrieved: dt.datetime, tick=lambda: None) -> list[dict[str, Any]]:
    """Every SageMaker machine of costing/data/managed.yaml in `regions`; one CloudFailure line on any error."""
    session = _session()
    rows: list[dict[str, Any]] = []
    with aws_failures("SageMaker: "):
        pricing = session.client("pricing", region_name=PRICE_LIST_REGION)
        for region in regions:
            for machine in _machines("sagemaker"):
                rows += sagemaker_prices(pricing, machine, region, retrieved)
            tick()
    return rows


def is_prediction(description: str) -> bool:
    """A Vertex AI SKU billed for serving predictions (not training, pipelines or notebooks)."""
    return "prediction" in description.lower()


def refresh_vertex(regions: list[str], retrieved: dt.datetime, catalog=None) -> list[dict[str, Any]]:
    """Vertex AI prediction node-hours of the G2 machines in `regions`: vCPUs x core + GiB x RAM + L4s x GPU,
    from the Vertex AI service's prediction SKUs (priced as the compute refresh prices a machine); one
    CloudFailure line on any error."""
    from costing.data.catalog import catalog as kit_catalog
    from selfhost.prices import gcp_billing

    offers = {o.instance_type: o for o in kit_catalog().offers.values()}
    machines = [
        (name, o.vcpus, float(o.ram_gb), o.gpus, o.gpu)
        for name in _machines("vertex")
        if (o := offers.get(name)) is not None
    ]
    prediction = [s for s in gcp_billing.skus(VERTEX_AI, catalog, "Vertex AI: ") if is_prediction(s.description)]
    parts = gcp_billing.component_prices(prediction, regions)
    return gcp_billing.machine_rows(parts, machines, retrieved, "vertex", VERTEX_API, ("on-demand",))


def refresh_managed(cloud: str, regions: list[str], retrieved: dt.datetime) -> list[dict[str, Any]]:
    """The managed endpoints' rows of one cloud's refresh (RunPod has none)."""
    if cloud == "aws":
        return refresh_sagemaker(regions, retrieved)
    if cloud == "gcp":
        return refresh_vertex(regions, retrieved)
    return []
