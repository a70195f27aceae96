"""`selfhost prices refresh` with the real clients (boto3, google-cloud-billing, runpod) against local stand-ins:
moto for EC2 spot history, local HTTP servers for the Price List, Billing Catalog and RunPod GraphQL APIs."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from price_stand_ins import JsonServer, billing_answer, price_list_answer, runpod_answer, sku

from costing.data import catalog as cat
from selfhost.prices import aws_pricing, gcp_billing, runpod_prices

NOW = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.timezone.utc)
PRICE_LIST = {("g5.xlarge", "eu-west-1"): (1.5, 0.9, 0.6), ("g5.xlarge", "us-east-1"): (1.2, 0.8, 0.5)}


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    with JsonServer(price_list_answer(PRICE_LIST)) as price_list:
        env = {"AWS_ENDPOINT_URL_EC2": f"http://{host}:{port}", "AWS_ENDPOINT_URL_PRICING": price_list.url}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            yield env, price_list
        finally:
            moto.stop()


def test_aws_on_demand_and_reserved_from_the_price_list_and_spot_per_zone_from_ec2(aws_env):
    _, price_list = aws_env
    rows = aws_pricing.refresh(["g5.xlarge"], ["eu-west-1"], NOW)
    by = {(r["pricing"], r["zone"]): r for r in rows}
    assert by[("on-demand", None)]["usd_per_hour"] == 1.5
    assert (by[("reserved-1y", None)]["usd_per_hour"], by[("reserved-3y", None)]["usd_per_hour"]) == (0.9, 0.6)
    spot = [r for r in rows if r["pricing"] == "spot"]
    assert spot and all(r["zone"].startswith("euw1-az") for r in spot)  # zone IDs, as SkyPilot names them
    assert all(r["region"] == "eu-west-1" and r["as_of"] == "2026-11-30" for r in rows)
    assert "Price List" in by[("on-demand", None)]["source"] and "spot_price_history" in spot[0]["source"]
    # the real client sent Price List filters for exactly this type and region
    _, _, body = price_list.requests[-1]
    fields = {f["Field"]: f["Value"] for f in body["Filters"]}
    assert (fields["instanceType"], fields["regionCode"], fields["operatingSystem"]) == (
        "g5.xlarge",
        "eu-west-1",
        "Linux",
    )


def test_aws_without_credentials_is_one_line_naming_what_to_set(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(aws_pricing.CloudFailure, match="AWS_ACCESS_KEY_ID"):
        aws_pricing.refresh(["g5.xlarge"], ["us-east-1"], NOW)


GCP_SKUS = [
    sku("G2 Instance Core running in Americas", "OnDemand", ["us-central1", "us-east4"], 0.024988),
    sku("G2 Instance Ram running in Americas", "OnDemand", ["us-central1", "us-east4"], 0.002927, "GiBy.h"),
    sku("Nvidia L4 GPU running in Americas", "OnDemand", ["us-central1", "us-east4"], 0.56),
    sku("Spot Preemptible G2 Instance Core running in Americas", "Preemptible", ["us-central1"], 0.01),
    sku("Spot Preemptible G2 Instance Ram running in Americas", "Preemptible", ["us-central1"], 0.001, "GiBy.h"),
    sku("Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", ["us-central1"], 0.2),
    sku("Commitment v1: G2 Cpu in Americas for 1 Year", "Commit1Yr", ["us-central1"], 0.0157),
    sku("Commitment v1: G2 Ram in Americas for 1 Year", "Commit1Yr", ["us-central1"], 0.00184, "GiBy.h"),
    sku("Commitment v1: Nvidia L4 GPU in Americas for 1 Year", "Commit1Yr", ["us-central1"], 0.35),
    sku("A2 Instance Core running in Americas", "OnDemand", ["us-central1"], 0.031611),
    sku("A2 Instance Ram running in Americas", "OnDemand", ["us-central1"], 0.004237, "GiBy.h"),
    sku("Nvidia Tesla A100 80GB GPU running in Americas", "OnDemand", ["us-central1"], 2.9),
    sku("Nvidia Tesla A100 GPU running in Americas", "OnDemand", ["us-central1"], 2.0),  # the 40 GB part
    sku("Commitment v1: A2 Cpu in Americas for 3 Years", "Commit3Yr", ["us-central1"], 0.014225),
    sku("Commitment v1: A2 Ram in Americas for 3 Years", "Commit3Yr", ["us-central1"], 0.001907, "GiBy.h"),
    sku("Commitment v1: Nvidia Tesla A100 80GB GPU in Americas for 3 Years", "Commit3Yr", ["us-central1"], 1.3),
    sku("Commitment v1: Nvidia Tesla A100 GPU in Americas for 3 Years", "Commit3Yr", ["us-central1"], 0.9),
    sku("G2 Sole Tenancy Instance Core running in Americas", "OnDemand", ["us-central1"], 9.0),  # ignored
    sku("Nvidia L4 GPU Virtual Workstation running in Americas", "OnDemand", ["us-central1"], 9.0),  # ignored
    sku("G2 Custom Instance Core running in Americas", "OnDemand", ["us-central1"], 9.0),  # ignored
    sku("N1 Predefined Instance Core running in Americas", "OnDemand", ["us-central1"], 9.0),  # ignored
]


def test_gcp_g2_machines_are_summed_from_the_billing_catalog_skus():
    from google.auth.credentials import AnonymousCredentials

    with JsonServer(billing_answer(GCP_SKUS)) as server:
        client = gcp_billing.client(endpoint=server.url, credentials=AnonymousCredentials())
        machines = [("g2-standard-8", 8, 32.0, 1, "L4"), ("a2-ultragpu-8g", 96, 1360.0, 8, "A100-80GB")]
        rows = gcp_billing.refresh(machines, ["us-central1", "europe-west4"], NOW, client)
        assert len(server.requests) >= 4  # the real client followed nextPageToken across pages
    by = {
        r["pricing"]: r["usd_per_hour"] for r in rows if r["region"] == "us-central1" and r["instance_type"][:2] == "g2"
    }
    assert by["on-demand"] == pytest.approx(8 * 0.024988 + 32 * 0.002927 + 0.56)
    assert by["spot"] == pytest.approx(8 * 0.01 + 32 * 0.001 + 0.2)
    assert by["reserved-1y"] == pytest.approx(8 * 0.0157 + 32 * 0.00184 + 0.35)
    assert "reserved-3y" not in by  # no 3-year SKUs served: nothing invented
    assert not [r for r in rows if r["region"] == "europe-west4"]  # unpriced region stays unpriced
    # A2 ultra: its own family's vCPU/RAM SKUs and the A100 80GB GPU (never the 40 GB part's), 3-year commitment
    a2 = {r["pricing"]: r for r in rows if r["instance_type"] == "a2-ultragpu-8g"}
    assert a2["on-demand"]["usd_per_hour"] == pytest.approx(96 * 0.031611 + 1360 * 0.004237 + 8 * 2.9)
    assert a2["reserved-3y"]["usd_per_hour"] == pytest.approx(96 * 0.014225 + 1360 * 0.001907 + 8 * 1.3)
    assert "Billing Catalog" in a2["reserved-3y"]["source"] and a2["reserved-3y"]["as_of"] == "2026-11-30"
    assert set(a2) == {"on-demand", "reserved-3y"}  # no A2 spot or 1-year SKUs served: nothing invented


def test_runpod_secure_and_community_prices_from_graphql(monkeypatch):
    import runpod

    with JsonServer(runpod_answer({"NVIDIA A40": (0.44, 0.40)})) as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        monkeypatch.setenv("RUNPOD_API_KEY", "test-key")
        monkeypatch.setattr(runpod, "api_key", None)
        pods = [("4x_A40_SECURE", "A40", 4, "SECURE"), ("1x_A40_COMMUNITY", "A40", 1, "COMMUNITY")]
        rows = runpod_prices.refresh(pods, ["US", "EU-RO-1"], NOW)
        assert "gpuTypes" in server.requests[0][2]["query"]
    by = {(r["instance_type"], r["region"]): r["usd_per_hour"] for r in rows}
    assert by[("4x_A40_SECURE", "US")] == pytest.approx(1.76)
    assert by[("1x_A40_COMMUNITY", "EU-RO-1")] == pytest.approx(0.40)


def test_refresh_writes_a_dated_snapshot_that_plan_prefers_and_offline_restores(aws_env, selfhost, tmp_path):
    env_aws, _ = aws_env
    with JsonServer(runpod_answer({"NVIDIA A40": (0.5, 0.41)})) as runpod_server:
        env = {
            **env_aws,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "RUNPOD_API_BASE_URL": runpod_server.url,
            "RUNPOD_API_KEY": "test-key",
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"),
            "NO_COLOR": "1",
            "SELFHOST_PRICES": "",  # this test is about the refreshed snapshot being preferred
        }
        reserved = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--region", "eu-west-1"]
        reserved += ["--pricing", "reserved-1y", "--requests-per-day", "1000", "--input-tokens", "500"]
        reserved += ["--output-tokens", "100", "--format", "json"]
        before = selfhost(*reserved, env=env)  # the shipped snapshot has no AWS reserved price: refused
        assert before.returncode == 2 and "never derived from a discount factor" in before.stderr
        assert "selfhost prices refresh --cloud aws --region eu-west-1" in before.stderr
        out = selfhost("prices", "refresh", "--cloud", "aws", "--region", "eu-west-1", env=env)
        assert out.returncode == 0, out.stderr
        after = json.loads(selfhost(*reserved, env=env).stdout)  # the Price List's Reserved term, with its date
        assert after["target"]["hourly_usd"] == 0.9 and not after["target"]["price_derived"]
        snap = max((tmp_path / "cache" / "selfhost" / "prices").glob("prices-*.json"))
        (row,) = [
            r
            for r in json.loads(snap.read_text())["prices"]
            if (r["instance_type"], r["region"], r["pricing"]) == ("g5.xlarge", "eu-west-1", "reserved-1y")
        ]
        assert "Price List" in after["target"]["price_source"] and after["target"]["price_as_of"] == row["as_of"]
        out = selfhost("prices", "refresh", env=env)
    assert out.returncode == 1  # gcp failed...
    gcp_lines = [line for line in out.stderr.splitlines() if line.startswith("error: gcp")]
    assert len(gcp_lines) == 1 and "Traceback" not in out.stderr
    assert "runpod:" in out.stderr and "snapshot written" in out.stderr  # ...the others still refreshed
    snaps = sorted((tmp_path / "cache" / "selfhost" / "prices").glob("prices-*.json"))
    rows = json.loads(snaps[-1].read_text())["prices"]
    assert all(r["source"] and r["as_of"] and r["region"] for r in rows)
    assert {r["cloud"] for r in rows} == {"aws", "runpod"}
    plan = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--region", "eu-west-1"]
    plan += ["--requests-per-day", "1000", "--input-tokens", "500", "--output-tokens", "100", "--format", "json"]
    review = json.loads(selfhost(*plan, env=env).stdout)
    assert review["target"]["hourly_usd"] == 1.5 and "Price List" in review["target"]["price_source"]
    assert review["prices"]["snapshot"].startswith("refreshed snapshot")
    # RunPod Community Cloud: priced only by a refresh (no dated shipped price), refused again offline
    community = ["plan", "--model", "llama-3.1-8b", "--offer", "runpod-a40x1-community", *plan[7:]]
    review = json.loads(selfhost(*community, env=env).stdout)
    assert review["target"]["hourly_usd"] == 0.41 and "RunPod GraphQL" in review["target"]["price_source"]
    assert selfhost("prices", "refresh", "--offline", env=env).returncode == 0
    out = selfhost(*community, env=env)
    assert out.returncode == 2 and "no dated RunPod Community Cloud price" in out.stderr
    review = json.loads(selfhost(*plan, env=env).stdout)
    assert review["target"]["hourly_usd"] == next(
        r.usd_per_hour
        for r in cat.shipped_rows()
        if (r.instance_type, r.region, r.pricing) == ("g5.xlarge", "eu-west-1", "on-demand")
    )


def test_refresh_refuses_bad_flags(selfhost, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    out = selfhost("prices", "refresh", "--cloud", "azure", env=env)
    assert out.returncode == 2 and "unknown cloud 'azure'" in out.stderr
    out = selfhost("prices", "refresh", "--region", "eu-west-1", env=env)
    assert out.returncode == 2 and "one --cloud" in out.stderr
