"""Price rows for more regions of the offers costing/data/offers.yaml ships, read from the public sources the
shipped snapshot (costing/data/prices.yaml) cites, each row with its source and date.

- AWS on-demand (one per region) and spot (one per zone ID): SkyPilot's catalogs/v8/aws/vms.csv.
- GCP on-demand and spot (one per region): SkyPilot's catalogs/v8/gcp/vms.csv, where a GPU machine is a VM row
  plus an accelerator row (SkyPilot's optimizer adds them; so do we).
- GCP 1- and 3-year commitments: Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml
  (compute.instance.<type>.cost.<region>.month_1y / month_3y over 730 h), for the offers the snapshot already
  prices committed; its pd-balanced disk (compute.storage.balanced) and Cloud Storage Standard
  (storage.bucket.standard) rates per region are printed for offers.yaml's `storage` and `bucket`.

Rerun, with the sources at the commits the rows cite:

    git --git-dir=<skypilot-catalog>/.git show 00148f2:catalogs/v8/aws/vms.csv > aws-vms.csv
    git --git-dir=<skypilot-catalog>/.git show 006059e:catalogs/v8/gcp/vms.csv > gcp-vms.csv
    git --git-dir=<google-cloud-pricing-cost-calculator>/.git show dac3128:pricing.yml > pricing.yml
    python scripts/snapshot_regions.py --aws-vms aws-vms.csv --gcp-vms gcp-vms.csv --cyclenerd pricing.yml \\
        --read YYYY-MM-DD --write

`--write` appends the rows the snapshot lacks to costing/data/prices.yaml (a row it has is left alone, and
reported when the source now says otherwise); without it the rows go to stdout. Extracts of the sources (the
same columns and keys, fewer rows) are accepted: only the regions and instance types asked for are read.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "costing" / "data" / "prices.yaml"
OFFERS = ROOT / "costing" / "data" / "offers.yaml"
AWS_REGIONS = ("us-east-2", "eu-central-1", "ap-northeast-1")
GCP_REGIONS = ("us-east1", "us-west1", "europe-west1", "asia-northeast1")
AWS_COMMIT, GCP_COMMIT, CYCLENERD_COMMIT = "00148f2", "006059e", "dac3128"
HOURS_PER_MONTH = 730  # Cyclenerd's month


def _offers(cloud: str) -> dict[str, dict[str, Any]]:
    """The catalog's offers on `cloud` by instance type."""
    offers = yaml.safe_load(OFFERS.read_text())["offers"]
    return {o["instance_type"]: o for o in offers.values() if o["cloud"] == cloud}


def _one_price(rows: list[dict[str, str]], column: str, what: str) -> float:
    """The one price `rows` (a region's zones) agree on; zones that disagree are an error, not a guess."""
    prices = {float(r[column]) for r in rows if r[column]}
    if len(prices) != 1:
        raise SystemExit(f"{what}: {column} differs between zones or is missing ({sorted(prices)})")
    return prices.pop()


def aws_rows(path: Path, regions: list[str], read: str) -> list[dict[str, Any]]:
    """On-demand per region and spot per zone ID for every AWS offer in `regions`."""
    offers = _offers("aws")
    found: dict[tuple[str, str], list[dict[str, str]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["InstanceType"] in offers and row["Region"] in regions:
                found.setdefault((row["InstanceType"], row["Region"]), []).append(row)
    source = f"SkyPilot public catalog catalogs/v8/aws/vms.csv @{AWS_COMMIT} (read {read}), Linux"
    out = []
    for (itype, region), zones in sorted(found.items(), key=lambda kv: (list(offers).index(kv[0][0]), kv[0][1])):
        base = {"cloud": "aws", "instance_type": itype, "region": region}
        price = _one_price(zones, "Price", f"aws {itype} {region}")
        out.append({**base, "pricing": "on-demand", "usd_per_hour": price, "source": f"{source} on-demand"})
        for z in sorted(zones, key=lambda r: r["AvailabilityZone"]):
            if z["SpotPrice"]:
                spot = float(z["SpotPrice"])
                row = {**base, "zone": z["AvailabilityZone"], "pricing": "spot", "usd_per_hour": spot}
                out.append({**row, "source": f"{source} spot"})
    return [{**r, "as_of": read} for r in out]


def gcp_rows(path: Path, regions: list[str], read: str) -> list[dict[str, Any]]:
    """On-demand and spot per region for every GCP offer in `regions`: its VM row plus its accelerator row."""
    offers = _offers("gcp")
    wanted_gpus = {(o["gpu"], float(o["gpus"])) for o in offers.values()}
    vms: dict[tuple[str, str], list[dict[str, str]]] = {}
    gpus: dict[tuple[str, float, str], list[dict[str, str]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Region"] not in regions:
                continue
            if row["InstanceType"] in offers:
                vms.setdefault((row["InstanceType"], row["Region"]), []).append(row)
            elif not row["InstanceType"] and row["AcceleratorCount"]:
                key = (row["AcceleratorName"], float(row["AcceleratorCount"]))
                if key in wanted_gpus:
                    gpus.setdefault((*key, row["Region"]), []).append(row)
    out = []
    for itype, offer in offers.items():
        for region in regions:
            vm, gpu = vms.get((itype, region)), gpus.get((offer["gpu"], float(offer["gpus"]), region))
            if not vm or not gpu:
                continue  # not sold there (or not in this extract)
            family = itype.split("-")[0].upper()
            source = (
                f"SkyPilot public catalog catalogs/v8/gcp/vms.csv @{GCP_COMMIT} (read {read}): "
                f"{family} VM row + {offer['gpu']} x{offer['gpus']} row"
            )
            for pricing, column in (("on-demand", "Price"), ("spot", "SpotPrice")):
                what = f"gcp {itype} {region}"
                usd = round(_one_price(vm, column, what) + _one_price(gpu, column, f"{what} GPUs"), 5)
                row = {"cloud": "gcp", "instance_type": itype, "region": region, "pricing": pricing}
                out.append({**row, "usd_per_hour": usd, "source": source, "as_of": read})
    return out


def _generated(pricing: dict[str, Any]) -> str:
    """The date Cyclenerd's file was generated (its about.generated, e.g. 'Thu Aug 20 04:22:20 2026')."""
    return dt.datetime.strptime(str(pricing["about"]["generated"]), "%a %b %d %H:%M:%S %Y").date().isoformat()


def committed_rows(pricing: dict[str, Any], regions: list[str], committed: set[str]) -> list[dict[str, Any]]:
    """1- and 3-year commitments per region for the GCP offers in `committed`, from Cyclenerd's monthly figure."""
    offers, generated = _offers("gcp"), _generated(pricing)
    instances = pricing["compute"]["instance"]
    out = []
    for itype in (t for t in offers if t in committed):
        family, gpu = itype.split("-")[0].upper(), offers[itype]["gpu"]
        for region in regions:
            cost = ((instances.get(itype) or {}).get("cost") or {}).get(region) or {}
            for pricing_name, key in (("reserved-1y", "month_1y"), ("reserved-3y", "month_3y")):
                if not cost.get(key):
                    continue
                source = (
                    f"Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml @{CYCLENERD_COMMIT} "
                    f"(compute.instance.{itype}.cost.{region}.{key} / {HOURS_PER_MONTH} h; generated {generated} "
                    f"from the Cloud Billing Catalog API): {family} vCPU + RAM + {gpu} resource-based commitment"
                )
                usd = round(float(cost[key]) / HOURS_PER_MONTH, 5)
                row = {"cloud": "gcp", "instance_type": itype, "region": region, "pricing": pricing_name}
                out.append({**row, "usd_per_hour": usd, "source": source, "as_of": generated})
    return out


def storage_rates(pricing: dict[str, Any], regions: list[str]) -> dict[str, dict[str, float]]:
    """pd-balanced disk and Cloud Storage Standard USD/GB-month per region (offers.yaml `storage`, `bucket`)."""
    disk = pricing["compute"]["storage"]["balanced"]["cost"]
    bucket = pricing["storage"]["bucket"]["standard"]["cost"]
    return {
        kind: {r: float(rates[r]["month"]) for r in regions if (rates.get(r) or {}).get("month")}
        for kind, rates in (("storage", disk), ("bucket", bucket))
    }


def _key(r: dict[str, Any]) -> tuple:
    return (r["cloud"], r["instance_type"], r["region"], r.get("zone"), r["pricing"])


def append(rows: list[dict[str, Any]], path: Path = PRICES) -> tuple[list[dict[str, Any]], list[str]]:
    """Append the rows `path` lacks, as text at the end of its `prices:` list (the file is left as written
    otherwise); (rows added, rows the snapshot has at another price)."""
    have = {_key(r): r for r in yaml.safe_load(path.read_text())["prices"]}
    new = [r for r in rows if _key(r) not in have]
    differ = []
    for r in rows:
        old = have.get(_key(r))
        if old is not None and abs(float(old["usd_per_hour"]) - r["usd_per_hour"]) > 1e-9:
            where = " ".join(str(k) for k in _key(r) if k)
            differ.append(f"{where}: snapshot {old['usd_per_hour']}, source {r['usd_per_hour']}")
    text = path.read_text()
    if new:
        path.write_text(text.rstrip("\n") + "\n" + dump(new))
    return new, differ


def dump(rows: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(rows, sort_keys=False, width=10_000, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aws-vms", type=Path, help="SkyPilot catalogs/v8/aws/vms.csv (or an extract)")
    ap.add_argument("--gcp-vms", type=Path, help="SkyPilot catalogs/v8/gcp/vms.csv (or an extract)")
    ap.add_argument("--cyclenerd", type=Path, help="Cyclenerd pricing.yml (or an extract)")
    ap.add_argument("--aws-region", action="append", help=f"default: {' '.join(AWS_REGIONS)}")
    ap.add_argument("--gcp-region", action="append", help=f"default: {' '.join(GCP_REGIONS)}")
    ap.add_argument("--read", default=dt.date.today().isoformat(), help="the date the sources were read")
    ap.add_argument("--write", action="store_true", help="append the new rows to costing/data/prices.yaml")
    args = ap.parse_args(argv)
    dt.date.fromisoformat(args.read)
    rows: list[dict[str, Any]] = []
    if args.aws_vms:
        rows += aws_rows(args.aws_vms, args.aws_region or list(AWS_REGIONS), args.read)
    gcp_regions = args.gcp_region or list(GCP_REGIONS)
    if args.gcp_vms:
        rows += gcp_rows(args.gcp_vms, gcp_regions, args.read)
    if args.cyclenerd:
        pricing = yaml.load(args.cyclenerd.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        have = yaml.safe_load(PRICES.read_text())["prices"]
        committed = {r["instance_type"] for r in have if r["cloud"] == "gcp" and r["pricing"].startswith("reserved")}
        rows += committed_rows(pricing, gcp_regions, committed)
        rates = storage_rates(pricing, gcp_regions)
        print(f"# offers.yaml gcp rates (Cyclenerd @{CYCLENERD_COMMIT}, {_generated(pricing)}):", file=sys.stderr)
        print(yaml.safe_dump(rates, sort_keys=False), file=sys.stderr)
    if not args.write:
        sys.stdout.write(dump(rows))
        return 0
    new, differ = append(rows)
    print(f"{len(new)} rows added to {PRICES.relative_to(ROOT)} ({len(rows) - len(new)} already there)")
    for line in differ:
        print(f"differs: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
