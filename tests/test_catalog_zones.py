"""Catalog zones per offer (issue 23): the offline SkyPilot catalog places each instance / machine type only in
the zones SkyPilot's published rows sell it in (costing/data/zones.yaml, sourced and dated), never in a zone
pooled from other types."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from costing.data.catalog import offers_for
from selfhost.skypilot import optimizer_catalog as oc

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "tests" / "data" / "skypilot_published_rows.csv"
ZONES = yaml.safe_load(oc.ZONES_FILE.read_text())


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    root = oc.write_catalog(tmp_path_factory.mktemp("home"))
    return {cloud: list(csv.DictReader((root / cloud / "vms.csv").open())) for cloud in ("aws", "gcp")}


def placed(rows: list[dict[str, str]], instance_type: str, region: str) -> set[str]:
    return {r["AvailabilityZone"] for r in rows if r["InstanceType"] == instance_type and r["Region"] == region}


def test_the_zones_file_names_its_sources_and_dates():
    for cloud in ("aws", "gcp"):
        assert "skypilot-catalog" in ZONES[cloud]["source"] and "vms.csv @" in ZONES[cloud]["source"]
        assert str(ZONES[cloud]["as_of"]).startswith("2026-")


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_every_type_is_written_only_in_the_zones_that_sell_it(written, cloud):
    rows = written[cloud]
    checked = 0
    for offer in oc.sky_offers(offers_for(cloud=cloud)):
        for region in offer.regions:
            selling = set(ZONES[cloud]["zones"][offer.instance_type][region])
            assert placed(rows, offer.instance_type, region) == selling, (offer.instance_type, region)
            checked += 1
    assert checked >= 20
    if cloud == "gcp":  # the accelerator rows (the L4s / A100s SkyPilot adds to the VM) sit in the same zones
        vm_zones = {(r["Region"], r["AvailabilityZone"]) for r in rows if r["InstanceType"]}
        assert {(r["Region"], r["AvailabilityZone"]) for r in rows if not r["InstanceType"]} <= vm_zones


def test_the_measured_misplacements_are_gone(written):
    """Issue 23: p4de was placed in use1-az1/az2/az5 and p4d in use1-az5 (zones pooled from g5's), a2-ultragpu-8g
    in us-east4-a, and L4 had one zone per region."""
    aws, gcp = written["aws"], written["gcp"]
    assert placed(aws, "p4de.24xlarge", "us-east-1") == {"use1-az4", "use1-az6"}
    assert "use1-az5" not in placed(aws, "p4d.24xlarge", "us-east-1")
    assert "use1-az5" in placed(aws, "g5.xlarge", "us-east-1")  # the zone exists, for the types it sells
    assert placed(gcp, "a2-ultragpu-8g", "us-east4") == {"us-east4-c"}
    assert all(len(placed(gcp, "g2-standard-8", region)) >= 2 for region in ("us-central1", "us-east4", "europe-west4"))


def test_aws_zones_are_the_price_snapshots_per_zone_rows():
    """The AWS zones and the per-zone spot prices come from the same published rows: one list, no drift."""
    for offer in offers_for(cloud="aws"):
        for region in offer.regions:
            quoted = {r.zone for r in offer.rows("spot", region) if r.zone}
            assert set(ZONES["aws"]["zones"][offer.instance_type][region]) == quoted, (offer.instance_type, region)


def test_zones_match_skypilots_published_rows():
    """tests/data/skypilot_published_rows.csv: every published row of p4d, p4de and a2-ultragpu-8g in a region we
    ship, read from SkyPilot's catalog independently of the zones file."""
    rows = list(csv.DictReader(line for line in PUBLISHED.read_text().splitlines() if not line.startswith("#")))
    published: dict[tuple[str, str, str], set[str]] = {}
    for r in rows:
        published.setdefault((r["cloud"], r["InstanceType"], r["Region"]), set()).add(r["AvailabilityZone"])
    compared = 0
    for (cloud, itype, region), zones in published.items():
        ours = ZONES[cloud]["zones"].get(itype, {}).get(region)
        if ours is None:
            continue  # a region we do not ship the type in (p4de in eu-central-1)
        assert set(ours) == zones, (itype, region)
        compared += 1
    assert compared >= 7


def test_an_offer_with_no_known_zones_is_refused_not_placed_anywhere():
    offer = next(o for o in offers_for(cloud="gcp") if o.instance_type == "a2-ultragpu-8g")
    with pytest.raises(ValueError, match="no zones known"):
        oc.offer_zones(offer, "asia-southeast1")
