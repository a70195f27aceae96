"""Local stand-ins for the AWS Price List, Cloud Billing Catalog and RunPod GraphQL APIs (127.0.0.1 only).

Responses are shaped like the real APIs' (Price List `GetProducts`: PriceList of JSON strings with
product.attributes and terms.OnDemand/Reserved priceDimensions; Billing Catalog `services.skus.list`:
skus[].category.usageType, serviceRegions, pricingInfo[].pricingExpression.tieredRates[].unitPrice;
RunPod `gpuTypes`: securePrice/communityPrice per GPU)."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonServer:
    """A ThreadingHTTPServer answering `answer(method, path, body) -> (status, json)`; stop() shuts it down."""

    def __init__(self, answer: Callable[[str, str, Any], tuple[int, Any]]):
        self.requests: list[tuple[str, str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size) if size else b""
                body = json.loads(raw) if raw else None
                outer.requests.append((method, self.path, body))
                status, payload = answer(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> JsonServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ------------------------------------------------------------------------------------- AWS Price List


def price_list_product(instance_type: str, region: str, on_demand: float, r1: float, r3: float) -> str:
    sku = f"SKU{abs(hash((instance_type, region))) % 10**8}"

    def dim(code: str, usd: float, unit: str = "Hrs") -> dict:
        return {
            f"{sku}.{code}.6YS6EN2CT7": {
                "unit": unit,
                "endRange": "Inf",
                "description": f"${usd} per Linux {instance_type} Instance Hour",
                "appliesTo": [],
                "rateCode": f"{sku}.{code}.6YS6EN2CT7",
                "beginRange": "0",
                "pricePerUnit": {"USD": f"{usd:.10f}"},
            }
        }

    def reserved(code: str, length: str, usd: float, option: str = "No Upfront", cls: str = "standard") -> dict:
        return {
            f"{sku}.{code}": {
                "priceDimensions": dim(code, usd),
                "sku": sku,
                "effectiveDate": "2026-11-01T00:00:00Z",
                "offerTermCode": code,
                "termAttributes": {"LeaseContractLength": length, "OfferingClass": cls, "PurchaseOption": option},
            }
        }

    product = {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type,
                "regionCode": region,
                "operatingSystem": "Linux",
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "capacitystatus": "Used",
                "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "priceDimensions": dim("JRTCKXETXF", on_demand),
                    "sku": sku,
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "offerTermCode": "JRTCKXETXF",
                    "termAttributes": {},
                }
            },
            "Reserved": {
                **reserved("4NA7Y494T4", "1yr", r1),
                **reserved("BPH4J8HBKS", "3yr", r3),
                **reserved("HU7G6KETJZ", "1yr", r1 * 0.5, option="All Upfront"),  # must be ignored
                **reserved("7NE97W5U4E", "1yr", r1 * 1.1, cls="convertible"),  # must be ignored
            },
        },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    }
    return json.dumps(product)


def price_list_answer(prices: dict[tuple[str, str], tuple[float, float, float]]):
    """GetProducts (JSON 1.1, X-Amz-Target AWSPriceListService.GetProducts) answered from `prices`."""

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        fields = {f["Field"]: f["Value"] for f in (body or {}).get("Filters", [])}
        key = (fields.get("instanceType"), fields.get("regionCode"))
        items = [price_list_product(*key, *prices[key])] if key in prices else []
        return 200, {"FormatVersion": "aws_v1", "PriceList": items}

    return answer


# ----------------------------------------------------------------------------- Cloud Billing Catalog


def sku(description: str, usage_type: str, regions: list[str], usd: float, unit: str = "h") -> dict:
    units, nanos = int(usd), round((usd - int(usd)) * 1e9)
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash((description, usage_type))) % 10**12:012X}",
        "skuId": f"{abs(hash((description, usage_type))) % 10**12:012X}",
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": "GPU" if "GPU" in description else "G2Standard",
            "usageType": usage_type,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": unit,
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos},
                        }
                    ],
                    "usageUnitDescription": "hour" if unit == "h" else "gibibyte hour",
                    "baseUnit": "s" if unit == "h" else "By.s",
                    "baseUnitDescription": "second",
                    "baseUnitConversionFactor": 3600,
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2026-11-30T00:00:00Z",
            }
        ],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "REGIONAL", "regions": regions},
    }


def billing_answer(skus: list[dict], page_size: int = 3):
    """services.skus.list with pagination (nextPageToken), as the REST transport reads it."""

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(path)
        if not url.path.endswith("/v1/services/6F81-5844-456A/skus"):
            return 404, {"error": {"code": 404, "message": f"no route {url.path}", "status": "NOT_FOUND"}}
        start = int(parse_qs(url.query).get("pageToken", ["0"])[0])
        page = skus[start : start + page_size]
        nxt = start + page_size
        return 200, {"skus": page, "nextPageToken": str(nxt) if nxt < len(skus) else ""}

    return answer


# --------------------------------------------------------------------------------- RunPod GraphQL


def runpod_answer(prices: dict[str, tuple[float, float]]):
    """POST /graphql: `gpuTypes(input: {id: ...})` answered with securePrice/communityPrice per GPU."""

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        import re

        query = (body or {}).get("query", "")
        found = re.search(r'id:\s*"([^"]+)"', query)
        gpu = found.group(1) if found else None
        if path != "/graphql" or gpu not in prices:
            return 200, {"data": {"gpuTypes": []}}
        secure, community = prices[gpu]
        return 200, {
            "data": {
                "gpuTypes": [
                    {
                        "maxGpuCount": 8,
                        "id": gpu,
                        "displayName": gpu.replace("NVIDIA ", ""),
                        "manufacturer": "Nvidia",
                        "memoryInGb": 48,
                        "cudaCores": 0,
                        "secureCloud": True,
                        "communityCloud": True,
                        "securePrice": secure,
                        "communityPrice": community,
                        "oneMonthPrice": None,
                        "threeMonthPrice": None,
                        "oneWeekPrice": None,
                        "communitySpotPrice": None,
                        "secureSpotPrice": None,
                        "lowestPrice": {"minimumBidPrice": None, "uninterruptablePrice": community},
                    }
                ]
            }
        }

    return answer


# ------------------------------------------------------------- a refreshed snapshot with AWS reserved terms

# Stand-in Reserved terms (standard, No Upfront) as fractions of each row's on-demand price: test data of the
# order of the real terms, answered in the Price List's shape and read by the real parser (aws_pricing).
STAND_IN_RESERVED = (0.62, 0.43)  # 1yr, 3yr


def aws_reserved_rows(retrieved) -> list[dict]:
    """What `selfhost prices refresh --cloud aws` stores for the Price List's Reserved terms of every shipped AWS
    on-demand row: each product built in the GetProducts shape and parsed by aws_pricing.parse_product."""
    from costing.data.catalog import shipped_rows
    from selfhost.prices.aws_pricing import PRICE_LIST_API, parse_product
    from selfhost.prices.snapshot import row

    rows = []
    for r in shipped_rows():
        if r.cloud != "aws" or r.pricing != "on-demand":
            continue
        one, three = (round(r.usd_per_hour * f, 4) for f in STAND_IN_RESERVED)
        product = price_list_product(r.instance_type, r.region, r.usd_per_hour, one, three)
        for pricing, usd in parse_product(product).items():
            if pricing != "on-demand":
                rows.append(row("aws", r.instance_type, r.region, pricing, usd, PRICE_LIST_API, retrieved))
    return rows


# ------------------------------------------------------------- managed endpoints: SageMaker, Vertex AI


def sagemaker_product(machine: str, region: str, usd: float) -> str:
    """A Price List product of service AmazonSageMaker, real-time hosting (attributes as the API returns them:
    instanceName, component Hosting, an instanceType with a -hosting suffix)."""
    sku = f"SM{zlib.crc32(f'{machine}/{region}'.encode()) % 10**8}"
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {
                    "instanceName": machine,
                    "instanceType": f"{machine}-hosting",
                    "component": "Hosting",
                    "regionCode": region,
                    "usagetype": f"USE1-Host:{machine}",
                    "operation": "RunInstance",
                    "servicecode": "AmazonSageMaker",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": f"${usd} per Hosting {machine} hour",
                                "appliesTo": [],
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": f"{usd:.10f}"},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def sagemaker_answer(prices: dict[tuple[str, str], float], fallback=None):
    """GetProducts for ServiceCode AmazonSageMaker (filters instanceName, regionCode, component); other service
    codes go to `fallback` (e.g. price_list_answer for AmazonEC2)."""

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if (body or {}).get("ServiceCode") != "AmazonSageMaker":
            return fallback(method, path, body) if fallback else (200, {"FormatVersion": "aws_v1", "PriceList": []})
        fields = {f["Field"]: f["Value"] for f in (body or {}).get("Filters", [])}
        key = (fields.get("instanceName"), fields.get("regionCode"))
        hosting = fields.get("component") == "Hosting"
        items = [sagemaker_product(*key, prices[key])] if hosting and key in prices else []
        return 200, {"FormatVersion": "aws_v1", "PriceList": items}

    return answer


def billing_service_answer(service_id: str, skus: list[dict], page_size: int = 3):
    """services.skus.list of one service (e.g. Vertex AI, services/C7E2-9256-1C43), paginated."""

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(path)
        if not url.path.endswith(f"/v1/services/{service_id}/skus"):
            return 404, {"error": {"code": 404, "message": f"no route {url.path}", "status": "NOT_FOUND"}}
        start = int(parse_qs(url.query).get("pageToken", ["0"])[0])
        nxt = start + page_size
        return 200, {"skus": skus[start:nxt], "nextPageToken": str(nxt) if nxt < len(skus) else ""}

    return answer
