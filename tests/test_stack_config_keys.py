"""Each stack reads only the config keys it declares: the real program runs under Pulumi's mocks and every key it
asks its config for is recorded. A key read but not declared is never read from `pulumi config` (read_config
fetches the declared keys only), so a user setting it would be silently ignored."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from stack_mocks import example_config, refused, stack

from selfhost.k8s import stack_config
from selfhost.stack import component
from selfhost.stack.plan import COMMON_KEYS

SECRETS = {"apiKey": "sk-test-key-0123456789", "hfToken": "hf_test_token"}
CONFIGS = {  # the shipped example stack configs, as other stack tests run them
    "aws": {**example_config("aws"), **SECRETS, "allowPlainHttp": "true"},
    "gcp": {**example_config("gcp"), **SECRETS, "allowPlainHttp": "true"},
    "runpod": {**example_config("runpod"), **SECRETS},
    "eks": {**example_config("kubernetes"), **SECRETS},
    "gke": {
        **example_config("kubernetes"),
        **SECRETS,
        **{"cluster": "gke", "instanceType": "g2-standard-8", "location": "us-central1", "clusterName": "team"},
    },
}
PROGRAM = {"aws": "aws", "gcp": "gcp", "runpod": "runpod", "eks": "kubernetes", "gke": "kubernetes"}


class Recorded(Mapping[str, Any]):
    """The config mapping the program gets, noting every key asked for (present or not)."""

    def __init__(self, data: Mapping[str, Any], asked: set[str]) -> None:
        self._data, self._asked = dict(data), asked

    def __getitem__(self, key: str) -> Any:
        self._asked.add(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._asked.add(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._asked.add(str(key))
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def reads(case: str, monkeypatch, config: dict[str, Any] | None = None, ok: bool = True) -> tuple[set, set]:
    """(keys the program asked its config for, keys its read_config call declares)."""
    asked: set[str] = set()
    declared: set[str] = set()
    real = component.config_from_pulumi

    def recording(keys, secret_keys=component.SECRET_KEYS):
        declared.update([*COMMON_KEYS, *keys, *secret_keys])
        return Recorded(real(keys, secret_keys), asked)

    monkeypatch.setattr(component, "read_config", recording)
    run = stack if ok else refused
    run(PROGRAM[case], config or CONFIGS[case])
    return asked, declared


@pytest.mark.parametrize("case", list(CONFIGS))
def test_every_key_a_stack_reads_is_one_it_declares(case, monkeypatch):
    asked, declared = reads(case, monkeypatch)
    assert declared and asked, "the program did not read its config through read_config"
    assert asked <= declared, f"read but never fetched from `pulumi config`: {sorted(asked - declared)}"


def test_every_kubernetes_key_is_read(monkeypatch):
    """The reference lists stack_config.KEYS as the kubernetes stack's keys: each one does something."""
    asked = reads("eks", monkeypatch)[0] | reads("gke", monkeypatch)[0]
    assert set(stack_config.KEYS) <= asked, sorted(set(stack_config.KEYS) - asked)


def test_kubernetes_allow_plain_http_is_checked_and_acknowledges_the_in_cluster_http(monkeypatch):
    import pulumi

    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warned.append(str(message)))
    _, out = stack("kubernetes", CONFIGS["eks"])
    assert stack_config.PLAIN_HTTP_WARNING in warned and out["transport"] == stack_config.TRANSPORT
    warned.clear()
    stack("kubernetes", {**CONFIGS["eks"], "allowPlainHttp": "true"})
    assert warned and stack_config.PLAIN_HTTP_WARNING not in warned  # the cost review's notes still warn
    mocks, err = refused("kubernetes", {**CONFIGS["eks"], "allowPlainHttp": "maybe"})
    assert "allowPlainHttp must be true or false" in err.line() and mocks.resources == []
