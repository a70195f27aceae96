"""Every resource a preview stack declares (under Pulumi's mocks) that can carry tags or labels carries the owner
and expiry marks the reaper scopes by (issue 21). "Can carry" is read from each resource's own input schema (the
provider SDK's constructor arguments), not from a hand list, so a resource added later without marks fails here."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect

import pytest
from stack_mocks import plain, refused, stack

from selfhost.reap import ttl

OWNER = "Acme/llm-serving"
COMMON = {
    "model": "llama-3.1-8b",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
}
CONFIGS = {
    "aws": {**COMMON, "instanceType": "g5.xlarge", "pricing": "spot", "allowedCidrs": ["0.0.0.0/0"],
            "domain": "pr-12.example.com"},
    "gcp": {**COMMON, "machineType": "g2-standard-8", "pricing": "spot", "allowedCidrs": ["203.0.113.0/24"],
            "allowPlainHttp": "true"},
    "runpod": dict(COMMON),
}  # fmt: skip
PACKAGES = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "runpod": "runpodinfra", "random": "pulumi_random"}


def resource_class(typ: str) -> type:
    """The SDK class behind a type token, e.g. aws:ec2/securityGroup:SecurityGroup -> pulumi_aws.ec2.SecurityGroup."""
    pkg, module, name = typ.split(":")
    sub = module.split("/")[0]
    package = PACKAGES[pkg]
    return getattr(importlib.import_module(package if sub == "index" else f"{package}.{sub}"), name)


def inputs_of(typ: str) -> set[str]:
    return set(inspect.signature(resource_class(typ)._internal_init).parameters)


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.title() for w in rest)


MARK_FIELD = {"aws": "tags", "gcp": "labels", "runpod": "env"}


def marks_of(cloud: str, field: str, value) -> dict[str, str]:
    value = plain(value)
    if cloud == "runpod":
        return ttl.tags_from_runpod_env({e["key"]: e["value"] for e in value or []})
    if isinstance(value, list):  # an Auto Scaling group's tags: [{key, value, propagateAtLaunch}]
        return {t["key"]: t["value"] for t in value}
    return dict(value or {})


@pytest.mark.parametrize("cloud", ["aws", "gcp", "runpod"])
def test_every_taggable_resource_of_a_preview_stack_carries_owner_and_expiry(cloud, monkeypatch):
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    before = dt.datetime.now(dt.timezone.utc)
    mocks, _ = stack(cloud, {**CONFIGS[cloud], "owner": OWNER, "ttl": "8h", "preview": "pr-12"}, stack_name="pr-12")
    field = MARK_FIELD[cloud]
    checked, untaggable = [], []
    for typ, name, inputs in mocks.resources:
        if typ.startswith("selfhost:") or typ.startswith("pulumi:"):
            continue
        if camel(field) not in {camel(p) for p in inputs_of(typ)}:
            untaggable.append(typ)
            continue
        got = marks_of(cloud, field, inputs.get(field))
        assert got.get(ttl.MANAGED_KEY) == "selfhost", (typ, name, got)
        assert got.get(ttl.OWNER_KEY) == ttl.owner_mark(OWNER), (typ, name, got)
        assert got.get(ttl.PREVIEW_KEY) == "pr-12", (typ, name, got)
        expiry = ttl.parse_expiry(got.get(ttl.EXPIRES_KEY))
        assert expiry is not None and before + dt.timedelta(hours=8) <= expiry, (typ, name, got)
        assert expiry <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8, minutes=1)
        if cloud == "gcp":  # GCP's label charset, values at most 63 characters
            assert all(len(v) <= 63 and set(v) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-") for v in got.values())
        checked.append(typ)
    assert checked, "no taggable resource found"
    if cloud == "aws":  # what the instances and their volumes get at launch
        group = mocks.one("aws:autoscaling/group:Group")
        propagated = {t["key"]: t["value"] for t in plain(group["tags"]) if t["propagateAtLaunch"]}
        assert propagated[ttl.OWNER_KEY] == ttl.owner_mark(OWNER) and ttl.EXPIRES_KEY in propagated
        specs = {s["resourceType"]: s["tags"] for s in plain(mocks.one("aws:ec2/launchTemplate:LaunchTemplate")[
            "tagSpecifications"])}  # fmt: skip
        assert set(specs) == {"instance", "volume"}
        assert all(t[ttl.OWNER_KEY] == ttl.owner_mark(OWNER) and ttl.EXPIRES_KEY in t for t in specs.values())
    if cloud == "gcp":  # what the groups' instances and disks get
        for template in mocks.of_type("gcp:compute/instanceTemplate:InstanceTemplate"):
            disk = plain(template["disks"])[0]["labels"]
            assert disk[ttl.OWNER_KEY] == ttl.owner_mark(OWNER) and ttl.EXPIRES_KEY in disk


def test_expires_at_pins_the_mark_and_the_owner_defaults_to_the_repository(monkeypatch):
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/other-repo")
    mocks, _ = stack("runpod", {**CONFIGS["runpod"], "expiresAt": "20261130t0900z"})
    env = {e["key"]: e["value"] for e in plain(mocks.one("runpod:index:Pod")["env"])}
    assert env["SELFHOST_EXPIRES_AT"] == "20261130t0900z"
    assert env["SELFHOST_OWNER"] == ttl.owner_mark("acme/other-repo")


@pytest.mark.parametrize(
    "extra, problem",
    [
        ({"ttl": "8h"}, "no owner"),
        ({"ttl": "8h", "expiresAt": "20261130t0900z", "owner": OWNER}, "both ttl and expiresAt"),
        ({"expiresAt": "tomorrow", "owner": OWNER}, "not an expiry mark"),
        ({"ttl": "8w", "owner": OWNER}, "is not a duration"),
    ],
)
def test_bad_ttl_config_is_refused_before_anything_is_declared(extra, problem, monkeypatch):
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    mocks, err = refused("runpod", {**CONFIGS["runpod"], **extra})
    assert problem in err.problem and not mocks.resources
