"""stacks/kubernetes under Pulumi mocks: it applies exactly the render's objects, the Secret from config secrets,
GKE node pools of the costed machine, and refuses bad config with nothing declared."""

from __future__ import annotations

import pytest
from stack_mocks import example_config, is_secret, plain, refused, stack

from costing.errors import OverBudget, UserError
from selfhost.k8s import manifests, stack_config

SECRETS = {"apiKey": "sk-test-key-0123456789", "hfToken": "hf_test_token"}
GROUP = "kubernetes:yaml/v2:ConfigGroup"
SECRET = "kubernetes:core/v1:Secret"
NODE_POOL = "gcp:container/nodePool:NodePool"


def config(**over):
    return {**example_config("kubernetes"), **SECRETS, **over}


def applied(mocks) -> list[dict]:
    return [obj for inputs in mocks.of_type(GROUP) for obj in inputs["objs"]]


def test_eks_applies_the_renders_objects_and_the_secret():
    cfg = config()
    mocks, out = stack("kubernetes", cfg)
    p = stack_config.plan(cfg)
    assert applied(mocks) == manifests.build(p.review, "eks", p.options)  # the same builder, the same objects
    assert {o["kind"] for o in applied(mocks)} >= {"Deployment", "ScaledObject", "NodePool", "EC2NodeClass"}
    secret = mocks.one(SECRET)
    assert secret["metadata"]["name"] == p.secret and secret["metadata"]["namespace"] == p.namespace
    assert is_secret(secret["stringData"])
    assert plain(secret["stringData"]) == {"api-key": SECRETS["apiKey"], "hf-token": SECRETS["hfToken"]}
    assert SECRETS["apiKey"] not in repr(applied(mocks))
    assert NODE_POOL not in mocks.types()
    assert out["targetInflightPerReplica"] == p.fleet.inflight_per_replica
    assert out["projectedMonthlyUsd"] == round(p.review.monthly_usd, 2)
    assert (out["minReplicas"], out["maxReplicas"]) == (p.fleet.min_replicas, p.fleet.max_replicas)


def test_gke_declares_a_node_pool_per_tier_of_the_costed_machine():
    cfg = config(cluster="gke", instanceType="g2-standard-8", location="us-central1", clusterName="team")
    mocks, _ = stack("kubernetes", cfg)
    p = stack_config.plan(cfg)
    pools = {inputs["name"]: inputs for inputs in mocks.of_type(NODE_POOL)}
    assert set(pools) == {t.name for t in manifests.tiers(p)} and p.base == 1
    spot, base = pools[p.name], pools[f"{p.name}-base"]
    assert spot["nodeConfig"]["spot"] is True and base["nodeConfig"]["spot"] is False
    for pool in (spot, base):
        assert pool["nodeConfig"]["machineType"] == "g2-standard-8" and pool["cluster"] == "team"
        assert pool["nodeConfig"]["guestAccelerators"][0]["type"] == "nvidia-l4"
    assert spot["autoscaling"]["totalMaxNodeCount"] == p.fleet.max_replicas - p.base
    assert not [o for o in applied(mocks) if o["kind"] in ("NodePool", "EC2NodeClass")]


@pytest.mark.parametrize(
    ("over", "error", "words"),
    [
        ({"cluster": "aks"}, UserError, "cluster must be one of eks, gke"),
        ({"maxMonthlyUsd": "100"}, OverBudget, "exceeds the budget"),
        ({"allowedCidrs": []}, UserError, "allowedCidrs is empty"),
        ({"pricing": "reserved-1y"}, UserError, "buy no reservation"),
        ({"cluster": "gke", "instanceType": "g2-standard-8"}, UserError, "clusterName and location"),
        ({"hoursPerDay": "10"}, UserError, "part-time schedule"),
    ],
)
def test_bad_config_is_refused_with_nothing_declared(over, error, words):
    mocks, err = refused("kubernetes", config(**over))
    assert isinstance(err, error) and words in str(err.line())
    assert mocks.resources == []
