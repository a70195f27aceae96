from __future__ import annotations

import pytest

from costing.data.spec import load_spec, merge
from costing.errors import UserError

EXAMPLE = "examples/llama-3.1-8b-runpod-a40.yaml"


def test_flags_override_the_spec_file(monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    spec = load_spec(EXAMPLE, workload={"requests_per_day": 9000}, target={"pricing": None})
    assert spec.workload.requests_per_day == 9000
    assert spec.workload.input_tokens == 1000  # kept from the file
    assert spec.target.offer == "runpod-a40x1-secure"


@pytest.mark.parametrize(
    "data, where",
    [
        (
            {"model": "llama-3.1-8b", "workload": {"requests_per_day": 0, "input_tokens": 1, "output_tokens": 1}},
            "workload.requests_per_day",
        ),
        ({"model": "llama-3.1-8b", "target": {"pricing": "cheap"}}, "target.pricing"),
        ({"model": "llama-3.1-8b", "gpus": 2}, "gpus"),
        ({"model": "llama-3.1-8b", "vllm": {"gpu_memory_utilization": 1.5}}, "vllm.gpu_memory_utilization"),
    ],
)
def test_invalid_specs_are_one_line_user_errors(data, where):
    with pytest.raises(UserError) as err:
        load_spec(None, **data)
    line = err.value.line()
    assert where in line and "\n" not in line


def test_missing_model_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="no model"):
        load_spec(None, precision="bf16")
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(bad)


def test_merge_skips_unset_flags():
    assert merge({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"c": None, "d": 3}}) == {"a": 1, "b": {"c": 2, "d": 3}}


@pytest.mark.parametrize("field", ["model_repo", "served_model_name"])
@pytest.mark.parametrize("value", ["--grpc", "-x", " --root-path=/x"])
def test_command_line_values_are_never_options(field, value):
    """Issue 24: `vllm.model_repo: --grpc` would be read by `vllm serve` as its gRPC flag."""
    from costing.data.spec import load_spec
    from costing.errors import UserError

    with pytest.raises(UserError, match=field):
        load_spec(None, model="llama-3.1-8b", vllm={field: value})
    assert load_spec(None, model="llama-3.1-8b", vllm={field: "meta-llama/Llama-3.1-8B"})
