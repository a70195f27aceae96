"""GCP prices from the Cloud Billing Catalog API (google-cloud-billing): the vCPU, RAM and GPU SKUs of Compute
Engine's G2 (NVIDIA L4) and A2 (NVIDIA A100 40GB/80GB) families, on-demand, spot and 1-/3-year resource-based
commitments ("Commitment v1: ..." SKUs, usage types Commit1Yr/Commit3Yr), summed into each machine's hourly price."""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

from selfhost.prices.aws_pricing import CloudFailure
from selfhost.prices.snapshot import row

COMPUTE_ENGINE = "services/6F81-5844-456A"  # Compute Engine's service id in the Billing Catalog
API = "Cloud Billing Catalog API (CloudCatalogClient.list_skus, Compute Engine vCPU + RAM + GPU SKUs)"
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


FAMILIES = ("g2", "a2")  # machine families priced from their vCPU and RAM SKUs (name prefix, e.g. g2-standard-8)
# The catalog's GPU names and the words that name them in SKU descriptions (A100 alone is the 40 GB part).
GPU_WORDS = {"L4": r"\bl4\b", "A100-80GB": r"\ba100 80gb\b", "A100": r"\ba100\b(?! 80gb)"}


def resource(description: str) -> tuple[str, str] | None:
    """Which part of a machine a SKU prices: ('vcpu' | 'ram', family) or ('gpu', catalog GPU name); None: other."""
    d = description.lower()
    if any(word in d for word in SKIP):
        return None
    if "gpu" in d:
        for gpu, words in GPU_WORDS.items():
            if re.search(words, d):
                return ("gpu", gpu)
        return None
    for family in FAMILIES:
        if re.search(rf"\b{family}\b", d):
            if "core" in d or "cpu" in d:
                return ("vcpu", family)
            if "ram" in d:
                return ("ram", family)
    return None


def unit_price(sku) -> float | None:
    """USD per unit-hour (vCPU-hour, GiB-hour, GPU-hour) of the SKU's first (current) pricing."""
    for info in sku.pricing_info[:1]:
        rates = info.pricing_expression.tiered_rates
        if rates:
            money = rates[-1].unit_price
            return float(money.units) + money.nanos / 1e9
    return None


def component_prices(skus, regions: list[str]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """(region, pricing) → {('vcpu', family): $, ('ram', family): $, ('gpu', GPU): $} from the catalog's SKUs."""
    parts: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
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


def skus(service: str, catalog=None, what: str = "") -> list:
    """Every SKU of a Billing Catalog service; one CloudFailure line (`what` names the service) on any error."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        return list((catalog or client()).list_skus(parent=service))
    except (GoogleAPIError, GoogleAuthError) as err:
        raise CloudFailure(what + " ".join(str(err).split())[:300]) from None


def machine_rows(
    parts: dict[tuple[str, str], dict[tuple[str, str], float]],
    machines: list[tuple[str, int, float, int, str]],
    retrieved: dt.datetime,
    cloud: str = "gcp",
    api: str = API,
    pricings: tuple[str, ...] | None = None,
) -> list[dict]:
    """Rows for machines (name, vCPUs, RAM GiB, GPUs, GPU name) from component prices: a machine is priced in a
    region and pricing only where all three of its parts are (nothing invented)."""
    rows = []
    for (region, pricing), p in sorted(parts.items()):
        if pricings is not None and pricing not in pricings:
            continue
        for name, vcpus, ram_gib, gpus, gpu in machines:
            family = name.split("-", 1)[0]
            need = (("vcpu", family), ("ram", family), ("gpu", gpu))
            if not all(k in p for k in need):
                continue
            usd = vcpus * p[need[0]] + ram_gib * p[need[1]] + gpus * p[need[2]]
            rows.append(row(cloud, name, region, pricing, usd, api, retrieved))
    return rows


def refresh(
    machines: list[tuple[str, int, float, int, str]], regions: list[str], retrieved: dt.datetime, catalog=None
) -> list[dict]:
    """Rows for machines (name, vCPUs, RAM GiB, GPUs, GPU name) in `regions`; one CloudFailure line on any error.
    A machine is priced in a region and pricing only where all three of its parts are (nothing invented)."""
    parts = component_prices(skus(COMPUTE_ENGINE, catalog), regions)
    return machine_rows(parts, machines, retrieved)
