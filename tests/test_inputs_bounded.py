"""Issue 10 item 9: every input bounded; bad input is one line on stderr and exit 2, never a traceback.

The reproducers the issue lists, then a property test over CLI flags and spec fields (in-process)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from cli_inprocess import one_line_error, run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from costing.data.spec import SPEC_KEYS, overrides_from_config, overrides_from_flags

PLAN = ["plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--input-tokens", "1000"]
PLAN += ["--output-tokens", "250", "--requests-per-day", "3000"]


def _spec_file(tmp_path: Path, body: bytes | str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(path)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--requests-per-day", "inf"], ["requests_per_day", "finite"]),
        (["--requests-per-day", "nan"], ["requests_per_day"]),
        (["--requests-per-day", "1e30"], ["requests_per_day", "1e9"]),
        (["--input-tokens", str(10**40)], ["input_tokens", "131,072"]),
        (["--days-per-week", "4.9e-324"], ["days_per_week", "1 to 7"]),
        (["--hours-per-day", "0"], ["hours_per_day", "1 to 24"]),
        (["--peak-to-mean", "1e300"], ["peak_to_mean", "24"]),
        (["--replicas", str(10**30)], ["replicas", "1,000"]),
        (["--max-monthly-usd", "inf"], ["max_monthly_usd"]),
        (["--p90-latency-s", "-1"], ["p90_latency_s"]),
        (["--target-utilization", "0"], ["target_utilization", "0.1 to 1"]),
        (["--availability", "always"], ["availability"]),
        (["--chart", "/nonexistent-folder/x.png"], ["--chart folder", "does not exist"]),
    ],
)
def test_issue_reproducers_are_one_line_exit_2(extra, needles):
    one_line_error(run_cli(*PLAN, *extra), *needles)


@pytest.mark.parametrize(
    "body, needles",
    [
        (b"model: llama-3.1-8b\nname: \xff\xfe\n", ["not UTF-8"]),
        ("- model\n- llama\n", ["must hold a mapping"]),
        ("model: llama-3.1-8b\ntarget: [A40]\n", ["target", "dictionary"]),
        ("model: llama-3.1-8b\nstorage_gb: .inf\n", ["storage_gb"]),
        ("model: llama-3.1-8b\nstorage_gb: 1e12\n", ["storage_gb", "16,384"]),
        ("model: llama-3.1-8b\nworkload: {requests_per_day: x, input_tokens: 1, output_tokens: 1}\n", ["workload"]),
        ("model: llama-3.1-8b\n1: 2\n", ["key"]),
        ("model: [a, b]\n", ["model"]),
    ],
)
def test_bad_spec_files_are_one_line_exit_2(tmp_path, body, needles):
    one_line_error(run_cli("plan", "--spec", _spec_file(tmp_path, body)), *needles)


def test_a_list_where_a_section_belongs_is_refused_even_with_flags_over_it(tmp_path):
    spec = _spec_file(tmp_path, "model: llama-3.1-8b\ntarget: [A40]\n")
    one_line_error(run_cli("plan", "--spec", spec, "--gpu", "A40"), "target must be a mapping")


def test_estimate_refuses_an_absurd_concurrency():
    one_line_error(
        run_cli(
            "estimate",
            "--model",
            "llama-3.1-8b",
            "--gpu",
            "A40",
            "--input-tokens",
            "100",
            "--output-tokens",
            "10",
            "--concurrency",
            str(10**40),
        ),
        "--concurrency",
    )


def test_runpod_nodes_4_is_refused_not_costed_as_32_gpus(tmp_path):
    spec = {"model": "llama-3.1-70b", "target": {"cloud": "runpod", "gpu": "A40", "gpus": 8, "nodes": 4}}
    spec["workload"] = {"requests_per_day": 100, "input_tokens": 100, "output_tokens": 10}
    one_line_error(run_cli("plan", "--spec", _spec_file(tmp_path, yaml.safe_dump(spec))), "RunPod", "4 nodes")


# ---- one declared mapping ------------------------------------------------------------------------------


def test_each_spec_field_has_one_flag_and_one_config_key():
    paths = [k.path for k in SPEC_KEYS]
    assert len(paths) == len(set(paths))
    flags = [k.flag for k in SPEC_KEYS if k.flag]
    keys = [k.config_key for k in SPEC_KEYS if k.config_key]
    assert len(flags) == len(set(flags)) and len(keys) == len(set(keys))
    from costing.data.spec import DeploymentSpec

    for key in SPEC_KEYS:  # every path names a real field
        model = DeploymentSpec
        *parents, leaf = key.path.split(".")
        for part in parents:
            model = model.model_fields[part].annotation
            model = next((a for a in getattr(model, "__args__", ()) if hasattr(a, "model_fields")), model)
        assert leaf in model.model_fields, key.path


def test_flags_and_config_keys_reach_the_same_fields():
    flags = overrides_from_flags(requests_per_day=3000.0, p90_latency_s=20.0, target_utilization=0.7)
    config = overrides_from_config({"requestsPerDay": "3000", "p90LatencyS": "20", "targetUtilization": "0.7"})
    assert (
        flags
        == config
        == {
            "workload": {"requests_per_day": 3000.0},
            "slo": {"p90_latency_s": 20.0},
            "target_utilization": 0.7,
        }
    )


@pytest.mark.parametrize("value", ["lots", "inf", "1.5", "nan", True])
def test_config_numbers_are_checked_by_kind(value):
    from costing.errors import UserError

    with pytest.raises(UserError, match="inputTokens"):
        overrides_from_config({"inputTokens": value})


# ---- the property: any flags, any spec -------------------------------------------------------------------

NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, 1, 2, 8, 24, 1e-300, 4.9e-324, 1e9, 1e30, 131072, 0.5, 0.8]),
)
TEXT = st.one_of(
    st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "nope", "", "A40", "H100", "aws", "x" * 300]),
    st.text(max_size=12),
)
FLAG_VALUES = {
    "--model": st.sampled_from(["llama-3.1-8b", "llama-3.2-1b", "llama-3.1-70b", "llama-3.1-405b", "gpt-9"]),
    "--gpu": st.sampled_from(["A40", "A10G", "L4", "A100", "H100", "L40S", "TPU"]),
    "--gpus": st.sampled_from(["1", "2", "3", "8", "0", "-1", str(10**30)]),
    "--cloud": st.sampled_from(["aws", "gcp", "runpod", "azure"]),
    "--offer": st.sampled_from(["aws-g5.xlarge", "runpod-a40x1-secure", "gcp-g2-standard-8", "aws-p4d.24xlarge", "x"]),
    "--precision": st.sampled_from(["bf16", "fp16", "fp8", "int8", "awq", "int4"]),
    "--pricing": st.sampled_from(["on-demand", "spot", "reserved-1y", "reserved-3y", "free"]),
    "--requests-per-day": NUM.map(str),
    "--input-tokens": NUM.map(str),
    "--output-tokens": NUM.map(str),
    "--peak-to-mean": NUM.map(str),
    "--p90-latency-s": NUM.map(str),
    "--max-monthly-usd": NUM.map(str),
    "--hours-per-day": NUM.map(str),
    "--days-per-week": NUM.map(str),
    "--replicas": NUM.map(str),
    "--target-utilization": NUM.map(str),
    "--availability": st.sampled_from(["standard", "high", "always"]),
    "--format": st.sampled_from(["table", "json", "markdown", "xml"]),
}
SPEC_VALUES = st.recursive(
    st.one_of(NUM, TEXT, st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
SPEC = st.fixed_dictionaries(
    {"model": st.sampled_from(["llama-3.1-8b", "llama-3.1-70b"])},
    optional={
        "precision": st.sampled_from(["bf16", "fp8", "awq", 7]),
        "target": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "gpu": st.sampled_from(["A40", "A10G", "H100"]),
                    "gpus": NUM,
                    "nodes": NUM,
                    "cloud": st.sampled_from(["aws", "gcp", "runpod"]),
                    "pricing": st.sampled_from(["on-demand", "spot", "reserved-1y"]),
                    "replicas": NUM,
                },
            ),
            SPEC_VALUES,
        ),
        "workload": st.one_of(
            st.fixed_dictionaries({"requests_per_day": NUM, "input_tokens": NUM, "output_tokens": NUM}),
            SPEC_VALUES,
        ),
        "schedule": st.fixed_dictionaries({}, optional={"hours_per_day": NUM, "days_per_week": NUM}),
        "vllm": st.fixed_dictionaries({}, optional={"max_model_len": NUM, "gpu_memory_utilization": NUM}),
        "slo": st.fixed_dictionaries({}, optional={"p90_latency_s": NUM}),
        "storage_gb": NUM,
        "target_utilization": NUM,
        "sky": SPEC_VALUES,
    },
)


def _finite_and_sane(data: dict) -> None:
    def walk(value):
        if isinstance(value, float):
            assert math.isfinite(value), data
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(data)
    assert 0 < data["monthly_usd"] < 1e9
    assert 1 <= data["replicas"] <= 1000
    assert 0 < data["projection"]["ttft_ms"] < 3.6e6 and data["projection"]["p90_e2e_latency_s"] < 1e5


def _check(result, fmt: str) -> None:
    event(f"exit {result.code}")
    assert "Traceback" not in result.stderr
    if result.code == 0:
        if fmt == "json":
            _finite_and_sane(json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON")))
        else:
            # no non-finite number printed ("inf" as a word; "inference" in a price source is prose)
            assert (
                not re.search(r"(?<![a-z])inf(?![a-z])", result.stdout.lower()) and "nan" not in result.stdout.split()
            )
        return
    assert result.code == 2, (result.code, result.stderr)
    assert result.stdout == "" or fmt == "table"  # the budget gate prints the review, then refuses
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), max_size=8).flatmap(
        lambda keys: st.fixed_dictionaries({k: FLAG_VALUES[k] for k in keys})
    ),
    command=st.sampled_from(["plan", "compare"]),
)
def test_any_flags_give_exit_0_with_sane_numbers_or_one_line_exit_2(flags, command):
    if command == "compare":
        flags = {
            k: v
            for k, v in flags.items()
            if k not in ("--gpu", "--gpus", "--offer", "--replicas", "--max-monthly-usd", "--availability")
        }
    args = [command]
    for flag, value in flags.items():
        args += [flag, value]
    _check(run_cli(*args), flags.get("--format", "table") if command == "plan" else "compare")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=SPEC)
def test_any_spec_file_gives_exit_0_with_sane_numbers_or_one_line_exit_2(spec):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True))
        _check(run_cli("plan", "--spec", str(path), "--format", "json"), "json")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gpu=FLAG_VALUES["--gpu"],
    gpus=st.one_of(st.none(), FLAG_VALUES["--gpus"]),
    precision=FLAG_VALUES["--precision"],
    tokens_in=NUM.map(str),
    tokens_out=NUM.map(str),
    concurrency=NUM.map(str),
    fmt=st.sampled_from(["table", "json"]),
)
def test_any_estimate_gives_finite_numbers_or_one_line_exit_2(
    gpu, gpus, precision, tokens_in, tokens_out, concurrency, fmt
):
    args = ["estimate", "--model", "llama-3.1-8b", "--gpu", gpu, "--precision", precision, "--format", fmt]
    args += ["--input-tokens", tokens_in, "--output-tokens", tokens_out, "--concurrency", concurrency]
    if gpus is not None:
        args += ["--gpus", gpus]
    result = run_cli(*args)
    event(f"exit {result.code}")
    assert "Traceback" not in result.stderr
    if result.code == 0:
        if fmt == "json":
            data = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
            # queued clients wait (Little's law), so TTFT may be long, but finite and positive
            assert 0 < data["ttft_ms"] < 1e15 and 0 < data["output_tokens_per_s"] < 1e7
        return
    lines = result.stderr.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@settings(max_examples=300, deadline=None)
@given(
    config=st.dictionaries(
        st.sampled_from(sorted({k.config_key for k in SPEC_KEYS if k.config_key})),
        st.one_of(NUM.map(str), TEXT, st.booleans()),
        max_size=8,
    )
)
def test_any_stack_config_becomes_a_spec_or_one_user_error(config):
    """The Pulumi side of the declared mapping: config values are strings a user typed."""
    from costing.data.spec import DeploymentSpec
    from costing.errors import UserError
    from selfhost.stack.plan import spec_from_config

    try:
        spec = spec_from_config("aws", {"model": "llama-3.1-8b", **config}, {"offer": "aws-g5.xlarge"})
    except UserError as err:
        assert "\n" not in err.line()
        return
    assert isinstance(spec, DeploymentSpec) and spec.target.replicas is None and spec.target.cloud == "aws"
