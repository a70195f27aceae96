"""`selfhost init --cloud kubernetes` (in process): the folder's stack deploys what its spec is costed at, on the
cluster kind asked for; the options it does not take are refused in one line with nothing written."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_inprocess import one_line_error, run_cli
from stack_mocks import refused, stack

from costing.data.catalog import offers_for
from costing.data.spec import load_spec, spec_from_dict
from costing.errors import UserError
from costing.money.kubernetes import kubernetes_review
from selfhost.stack.preview import stack_config

SECRETS = {"apiKey": "sk-test-key-0123456789", "hfToken": "hf_test_token"}
CLUSTER_CLOUD = {"eks": "aws", "gke": "gcp"}


def cheapest(cluster: str, data: dict) -> float:
    """Independently of init's `choose`: the cheapest review of the spec on any priced node of the cluster's cloud."""
    best = None
    for pricing in ("on-demand", "spot"):
        for offer in offers_for(cloud=CLUSTER_CLOUD[cluster]):
            if not offer.price(pricing):
                continue
            spec = spec_from_dict({**data, "target": {"offer": offer.id, "pricing": pricing}, "budget": {}})
            try:
                usd = kubernetes_review(spec, cluster).monthly_usd
            except UserError:
                continue
            best = usd if best is None else min(best, usd)
    assert best is not None
    return best


@pytest.mark.parametrize("cluster", ["eks", "gke"])
def test_the_folder_deploys_the_cheapest_node_it_is_costed_at(cluster, tmp_path, selfhost):
    folder = tmp_path / f"llama-{cluster}"
    out = run_cli("init", folder, "--cloud", "kubernetes", "--cluster", cluster)
    assert out.code == 0, out.stderr
    assert f"--kubernetes {cluster}" in out.stdout  # the next command costs what the stack deploys
    data = yaml.safe_load((folder / "selfhost.yaml").read_text())
    config = stack_config(folder / "Pulumi.dev.yaml", "selfhost-kubernetes")
    offer = data["target"]["offer"]
    assert config["cluster"] == cluster and f"{CLUSTER_CLOUD[cluster]}-{config['instanceType']}" == offer
    assert config["specFile"] == "selfhost.yaml" and "model" not in config  # the spec is the one place
    review = kubernetes_review(load_spec(folder / "selfhost.yaml"), cluster)
    assert review.monthly_usd == pytest.approx(cheapest(cluster, data), abs=0.005)
    assert review.monthly_usd <= data["budget"]["max_monthly_usd"]

    # the shipped example's cluster name is not the team's: the stack refuses, declaring nothing, until it is set
    assert "clusterName" not in config
    spec_file = str(folder / "selfhost.yaml")
    mocks, err = refused("kubernetes", {**config, **SECRETS, "specFile": spec_file})
    assert "clusterName" in err.line() and mocks.resources == []
    # the shipped stack program, with what the README says to set, deploys that review's fleet
    readme = (folder / "README.md").read_text()
    assert f"selfhost plan --spec selfhost.yaml --kubernetes {cluster}" in readme
    extra = {"clusterName": "team"}
    if cluster == "gke":
        assert "pulumi config set location" in readme
        extra["location"] = "us-central1"
    _, outputs = stack("kubernetes", {**config, **extra, **SECRETS, "specFile": spec_file})
    assert outputs["projectedMonthlyUsd"] == round(review.monthly_usd, 2)
    assert outputs["instanceType"] == config["instanceType"] and outputs["cluster"] == cluster
    plan = selfhost("plan", "--spec", str(folder / "selfhost.yaml"), "--kubernetes", cluster, "--format", "json")
    assert json.loads(plan.stdout)["monthly_usd"] == outputs["projectedMonthlyUsd"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--cloud", "aws", "--cluster", "eks"], ["--cluster applies to --cloud kubernetes"]),
        (["--cloud", "kubernetes", "--cluster", "aks"], ["unknown --cluster aks", "eks, gke"]),
        (["--cloud", "kubernetes", "--availability", "high"], ["--availability high", "across zones"]),
        (["--cloud", "kubernetes", "--domain", "api.example.com"], ["--domain does not apply to --cloud kubernetes"]),
    ],
)
def test_kubernetes_init_refusals_are_one_line_and_write_nothing(tmp_path, args, needles):
    one_line_error(run_cli("init", tmp_path / "repo", *args), *needles, "Fix:")
    assert not (tmp_path / "repo").exists()
