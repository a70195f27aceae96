"""Write SkyPilot's local price catalogs (v8 CSVs) from our offers catalog.

SkyPilot reads `<SKY_RUNTIME_DIR or HOME>/.sky/catalogs/v8/<cloud>/vms.csv`; a `.meta/<file>.md5`
that does not match the file marks it as edited locally, so SkyPilot never downloads over it.
With these files SkyPilot's own optimizer prices our offers offline: the tests check that it picks
the offer the cost review picked, at the same hourly price.

Columns follow SkyPilot's fetchers (sky/catalog/data_fetchers/fetch_{aws,gcp,runpod}.py).
GCP prices a G2 VM as host VM + attached L4s; our offers carry the whole G2 price (L4 included),
so it goes on the VM row and the accelerator rows cost 0: SkyPilot's sum is our figure.

Every priced region of an offer gets its rows, one per availability zone that sells the offer's
type, as SkyPilot's own files have them (costing/data/zones.yaml, from SkyPilot's published rows,
sourced and dated): AWS zones are zone IDs (`use1-az6`; with AWS credentials SkyPilot maps them to
the account's zone names and drops rows whose ID the account lacks), GCP zones are names
(`us-central1-a`), RunPod zones are its data-centre IDs. Spot prices sit on the zone they were
quoted for (the price snapshot keeps AWS spot prices per zone ID).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import costing
from costing.data.catalog import Offer, catalog, get_gpu

SCHEMA_VERSION = "v8"
GPU_COLUMNS = [
    "InstanceType",
    "AcceleratorName",
    "AcceleratorCount",
    "vCPUs",
    "MemoryGiB",
    "GpuInfo",
    "Price",
    "SpotPrice",
    "Region",
    "AvailabilityZone",
]
AWS_COLUMNS = [*GPU_COLUMNS, "Arch"]
GCP_COLUMNS = [
    "InstanceType",
    "vCPUs",
    "MemoryGiB",
    "AcceleratorName",
    "AcceleratorCount",
    "GpuInfo",
    "Region",
    "AvailabilityZone",
    "Price",
    "SpotPrice",
]
SKY_CLOUD_NAMES = {"aws": "AWS", "gcp": "GCP", "runpod": "RunPod"}  # str(sky cloud)
# The first data centre of each RunPod region, as SkyPilot's fetcher lists them (fetch_runpod.REGION_ZONES;
# a test checks this table against it).
RUNPOD_ZONES = {
    "CA": "CA-MTL-1",
    "CZ": "EU-CZ-1",
    "FR": "EU-FR-1",
    "IS": "EUR-IS-1",
    "NL": "EU-NL-1",
    "NO": "EUR-NO-1",
    "RO": "EU-RO-1",
    "SE": "EU-SE-1",
    "US": "US-CA-1",
}
ZONES_FILE = Path(costing.__file__).resolve().parent / "data" / "zones.yaml"
EXTRA_FILES = {  # read lazily by SkyPilot; present (header only) so nothing is ever downloaded
    "aws/images.csv": ["Tag", "Region", "OS", "OSVersion", "ImageId", "CreationDate"],
    "aws/instance_quota_mapping.csv": ["InstanceType", "QuotaCode"],
    "gcp/images.csv": ["Tag", "Region", "OS", "OSVersion", "ImageId", "CreationDate"],
    "gcp/accelerator_quota_mapping.csv": ["Accelerator", "Region", "QuotaCode", "SpotQuotaCode"],
}


def catalog_dir(home: Path) -> Path:
    return Path(home) / ".sky" / "catalogs" / SCHEMA_VERSION


def _gpu_info(offer: Offer) -> str:
    mib = int(get_gpu(offer.gpu).memory_gb * 1024)
    return str(
        {
            "Gpus": [
                {
                    "Name": offer.gpu,
                    "Manufacturer": "NVIDIA",
                    "Count": offer.gpus,
                    "MemoryInfo": {"SizeInMiB": mib},
                }
            ],
            "TotalGpuMemoryInMiB": mib * offer.gpus,
        }
    )


@cache
def type_zones() -> dict[str, dict[str, dict[str, list[str]]]]:
    """cloud -> instance type -> region -> the zones that sell it (costing/data/zones.yaml)."""
    import yaml

    data = yaml.safe_load(ZONES_FILE.read_text())
    return {cloud: data[cloud]["zones"] for cloud in ("aws", "gcp")}


def offer_zones(offer: Offer, region: str) -> list[str]:
    """The zones of `region` that sell the offer's type; no row where none is known (SkyPilot would place there)."""
    if offer.cloud in ("aws", "gcp"):
        zones = type_zones()[offer.cloud].get(offer.instance_type, {}).get(region)
        if not zones:
            raise ValueError(
                f"no zones known for {offer.instance_type} in {region} (add them to costing/data/zones.yaml "
                "from SkyPilot's published catalog)"
            )
        return list(zones)
    return [RUNPOD_ZONES.get(region, f"{region}-1")]


def rows(offer: Offer) -> list[dict[str, object]]:
    """The catalog rows SkyPilot needs to price this offer: every priced region, one row per zone selling it."""
    out: list[dict[str, object]] = []
    for region in offer.regions:
        on_demand = offer.rows("on-demand", region)[0].usd_per_hour
        spot = offer.rows("spot", region)
        for zone in offer_zones(offer, region):
            # AWS quotes spot per zone; GCP (and the rest) one spot price for the region.
            quoted = [r.usd_per_hour for r in spot if r.zone in (zone, None)]
            base = {
                "InstanceType": offer.instance_type,
                "AcceleratorName": offer.gpu,
                "AcceleratorCount": float(offer.gpus),
                "vCPUs": float(offer.vcpus),
                "MemoryGiB": float(offer.ram_gb),
                "GpuInfo": _gpu_info(offer),
                "Price": repr(on_demand),
                "SpotPrice": repr(min(quoted)) if quoted else "",
                "Region": region,
                "AvailabilityZone": zone,
            }
            if offer.cloud == "aws":
                out.append({**base, "Arch": "x86_64"})
            elif offer.cloud == "gcp":
                out.append({**base, "AcceleratorName": "", "AcceleratorCount": "", "GpuInfo": ""})
                out.append(
                    {
                        **base,
                        "InstanceType": "",
                        "vCPUs": "",
                        "MemoryGiB": "",
                        "Price": "0.0",
                        "SpotPrice": "0.0" if base["SpotPrice"] else "",
                    }
                )
            else:
                out.append(base)
    return out


def sky_offers(offers: Iterable[Offer] | None = None) -> list[Offer]:
    """Offers SkyPilot can launch: its RunPod catalog lists Secure Cloud pods only."""
    from selfhost.skypilot.render import sky_launchable

    return [o for o in (offers if offers is not None else catalog().offers.values()) if sky_launchable(o)]


def _write_csv(path: Path, columns: list[str], data: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = set()
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in data:
            key = tuple(str(row.get(c, "")) for c in columns)
            if key not in seen:  # GCP accelerator rows repeat across VMs with the same GPU count
                seen.add(key)
                writer.writerow({c: row.get(c, "") for c in columns})


def write_catalog(home: Path, offers: Iterable[Offer] | None = None) -> Path:
    """Write the AWS, GCP and RunPod catalogs under `home`; returns the versioned catalog dir."""
    root = catalog_dir(home)
    chosen = sky_offers(offers)
    layout = {"aws": AWS_COLUMNS, "gcp": GCP_COLUMNS, "runpod": GPU_COLUMNS}
    written = []
    for cloud, columns in layout.items():
        data = [r for o in chosen if o.cloud == cloud for r in rows(o)]
        _write_csv(root / cloud / "vms.csv", columns, data)
        written.append(f"{cloud}/vms.csv")
    for name, columns in EXTRA_FILES.items():
        _write_csv(root / name, columns, [])
        written.append(name)
    # The accelerator registry SkyPilot canonicalizes names with (AcceleratorName -> clouds, memory).
    gpus = sorted({o.gpu for o in chosen})
    _write_csv(
        root / "common" / "accelerators.csv",
        ["AcceleratorName", "Clouds"],
        [
            {"AcceleratorName": g, "Clouds": str(sorted({SKY_CLOUD_NAMES[o.cloud] for o in chosen if o.gpu == g}))}
            for g in gpus
        ],
    )
    _write_csv(
        root / "common" / "metadata.csv",
        ["GPU", "MemoryGB", "Manufacturer"],
        [{"GPU": g, "MemoryGB": float(get_gpu(g).memory_gb), "Manufacturer": "NVIDIA"} for g in gpus],
    )
    written += ["common/accelerators.csv", "common/metadata.csv"]
    for name in written:  # an md5 that matches nothing: "edited locally", never re-fetched
        meta = root / ".meta" / f"{name}.md5"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text("0" * 32)
    return root
