"""GCP prices from the Cloud Billing Catalog API (google-cloud-billing): the G2 vCPU, RAM and NVIDIA L4 SKUs
of Compute Engine, on-demand, spot and 1-/3-year commitments, summed into each G2 machine's hourly price."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from selfhost.prices.aws_pricing import CloudFailure
from selfhost.prices.snapshot import row

COMPUTE_ENGINE = "services/6F81-5844-456A"  # Compute Engine's service id in the Billing Catalog
API = "Cloud Billing Catalog API (CloudCatalogClient.list_skus, Compute Engine G2 + L4 SKUs)"
ENDPOINT_ENV = "SELFHOST_GCP_CATALOG_ENDPOINT"  # optional: a proxy or mirror of cloudbilling.googleapis.com
USAGE = {"OnDemand": "on-demand", "Preemptible": "spot", "Commit1Yr": "reserved-1y", "Commit3Yr": "reserved-3y"}
SKIP = ("sole tenancy", "reserved", "dws", "calendar", "flex", "custom", "extended", "workstation")


def client(endpoint: str | None = None, credentials: Any = None):
    """The real CloudCatalogClient over REST; default credentials unless given."""
    from google.api_core.client_options import ClientOptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import billing_v1

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    try:
        return billing_v1.CloudCatalogClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None,
            credentials=credentials,
        )
    except DefaultCredentialsError:
        raise CloudFailure(
            "no Google Cloud credentials: run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
        ) from None


def resource(description: str) -> str | None:
    """Which part of a G2 machine a SKU prices: 'vcpu', 'ram', 'gpu' (L4), or None."""
    d = description.lower()
    if any(word in d for word in SKIP):
        return None
    if "l4" in d and "gpu" in d:
        return "gpu"
    if "g2" in d and ("core" in d or "cpu" in d):
        return "vcpu"
    if "g2" in d and "ram" in d:
        return "ram"
    return None


def unit_price(sku) -> float | None:
    """USD per unit-hour (vCPU-hour, GiB-hour, GPU-hour) of the SKU's first (current) pricing."""
    for info in sku.pricing_info[:1]:
        rates = info.pricing_expression.tiered_rates
        if rates:
            money = rates[-1].unit_price
            return float(money.units) + money.nanos / 1e9
    return None


def component_prices(skus, regions: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    """(region, pricing) → {'vcpu': $, 'ram': $, 'gpu': $} from the catalog's SKUs."""
    parts: dict[tuple[str, str], dict[str, float]] = {}
    for sku in skus:
        part = resource(sku.description)
        pricing = USAGE.get(sku.category.usage_type)
        price = unit_price(sku)
        if part is None or pricing is None or price is None:
            continue
        for region in sku.service_regions:
            if region in regions:
                parts.setdefault((region, pricing), {})[part] = price
    return parts


def refresh(machines: list[tuple[str, int, float, int]], regions: list[str], retrieved: dt.datetime, catalog=None):
    """Rows for G2 machines (name, vCPUs, RAM GiB, L4 GPUs) in `regions`; one CloudFailure line on any error."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        catalog = catalog or client()
        parts = component_prices(catalog.list_skus(parent=COMPUTE_ENGINE), regions)
    except (GoogleAPIError, GoogleAuthError) as err:
        raise CloudFailure(" ".join(str(err).split())[:300]) from None
    rows = []
    for (region, pricing), p in sorted(parts.items()):
        if not {"vcpu", "ram", "gpu"} <= set(p):
            continue  # a machine is priced only when all three parts are
        for name, vcpus, ram_gib, gpus in machines:
            usd = vcpus * p["vcpu"] + ram_gib * p["ram"] + gpus * p["gpu"]
            rows.append(row("gcp", name, region, pricing, usd, API, retrieved))
    return rows
