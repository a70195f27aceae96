"""scripts/snapshot_regions.py over extracts of its sources (tests/data/snapshot_regions) gives exactly the rows
the shipped snapshot carries for the regions it added: a hand edit of those rows, or a script that reads its
sources wrong, fails here."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "snapshot_regions"
PRICES = ROOT / "costing" / "data" / "prices.yaml"
READ = "2026-12-07"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("snapshot_regions", ROOT / "scripts" / "snapshot_regions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(r: dict) -> tuple:
    return (r["cloud"], r["instance_type"], r["region"], r.get("zone"), r["pricing"])


def _shipped() -> dict[tuple, dict]:
    return {_key(r): r for r in yaml.safe_load(PRICES.read_text())["prices"]}


def _rows(script) -> list[dict]:
    aws, gcp = list(script.AWS_REGIONS), list(script.GCP_REGIONS)
    pricing = yaml.safe_load((DATA / "pricing.yml").read_text())
    committed = {k[1] for k in _shipped() if k[0] == "gcp" and k[2] == "us-central1" and k[4].startswith("reserved")}
    return (
        script.aws_rows(DATA / "aws-vms.csv", aws, READ)
        + script.gcp_rows(DATA / "gcp-vms.csv", gcp, READ)
        + script.committed_rows(pricing, gcp, committed)
    )


def test_the_added_regions_carry_what_their_sources_say(script):
    rows, shipped = _rows(script), _shipped()
    assert {r["pricing"] for r in rows} == {"on-demand", "spot", "reserved-1y", "reserved-3y"}
    assert [r for r in rows if shipped.get(_key(r)) != r] == []
    regions = {*script.AWS_REGIONS, *script.GCP_REGIONS}
    assert {k for k in shipped if k[2] in regions} == {_key(r) for r in rows}  # nothing else in those regions
    g2 = shipped[("gcp", "g2-standard-4", "us-east1", None, "on-demand")]
    assert g2["usd_per_hour"] == pytest.approx(0.14679 + 0.56004)  # the G2 VM row plus the L4 x1 row


def test_rows_of_regions_shipped_before_agree_with_the_same_sources(script):
    """us-east-1 and us-central1 rows predate the script: it reads them back (GCP on-demand/spot within the
    few 1e-5 the first snapshot rounded by)."""
    shipped = _shipped()
    aws = script.aws_rows(DATA / "aws-vms.csv", ["us-east-1"], READ)
    assert aws and all(shipped[_key(r)]["usd_per_hour"] == r["usd_per_hour"] for r in aws)
    gcp = script.gcp_rows(DATA / "gcp-vms.csv", ["us-central1"], READ)
    pricing = yaml.safe_load((DATA / "pricing.yml").read_text())
    gcp += script.committed_rows(pricing, ["us-central1"], {k[1] for k in shipped if k[0] == "gcp"})
    assert len(gcp) == 32
    assert all(shipped[_key(r)]["usd_per_hour"] == pytest.approx(r["usd_per_hour"], abs=5e-5) for r in gcp)


def test_disk_and_bucket_rates_of_the_new_gcp_regions_are_cyclenerds(script):
    from costing.data.catalog import regional_rate

    pricing = yaml.safe_load((DATA / "pricing.yml").read_text())
    rates = script.storage_rates(pricing, list(script.GCP_REGIONS))
    assert set(rates["storage"]) == set(rates["bucket"]) == set(script.GCP_REGIONS)
    for kind, by_region in rates.items():
        for region, usd in by_region.items():
            assert regional_rate("gcp", kind, region)["usd_per_gb_month"] == usd


def test_zones_that_disagree_on_a_regional_price_are_refused(script, tmp_path):
    src = (DATA / "aws-vms.csv").read_text().splitlines()
    rows = [src[0], *(ln for ln in src if ln.startswith("g5.xlarge,") and ",us-east-2," in ln)]
    rows[1] = rows[1].replace(",1.006,", ",1.106,")
    (tmp_path / "vms.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit, match=r"g5\.xlarge us-east-2: Price differs"):
        script.aws_rows(tmp_path / "vms.csv", ["us-east-2"], READ)


def test_append_adds_a_row_once_and_reports_a_changed_price(script, tmp_path):
    prices = tmp_path / "prices.yaml"
    shutil.copy(PRICES, prices)
    rows = script.aws_rows(DATA / "aws-vms.csv", ["us-east-2"], READ)
    new, differ = script.append(rows, prices)
    assert new == [] and differ == [] and prices.read_text() == PRICES.read_text()
    extra = {**rows[0], "region": "us-gov-east-1"}
    changed = {**rows[1], "usd_per_hour": rows[1]["usd_per_hour"] + 1}
    new, differ = script.append([extra, changed], prices)
    assert new == [extra] and len(differ) == 1 and "us-east-2" in differ[0]
    loaded = yaml.safe_load(prices.read_text())["prices"]
    assert loaded[-1] == extra and len(loaded) == len(yaml.safe_load(PRICES.read_text())["prices"]) + 1
