"""The RunPod stack under Pulumi mocks: the pod, its volume, secrets, outputs, and refusals."""

from __future__ import annotations

import pytest
import yaml
from stack_mocks import ROOT, example_config, is_secret, plain, refused, stack

from costing.data.spec import spec_from_dict
from costing.errors import DoesNotFit, OverBudget, UserError
from costing.money.review import cost_review
from costing.performance.vllm_args import VLLM_IMAGE, serve_args
from selfhost.auth_install import runpod_serve_args

WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250}
BASE = {
    "model": "llama-3.1-8b",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
}


def spec(model: str, offer: str, precision: str = "bf16"):
    return spec_from_dict(
        {
            "model": model,
            "precision": precision,
            "workload": WORKLOAD,
            "target": {"cloud": "runpod", "offer": offer, "replicas": 1},
        }
    )


def test_pod_runs_the_costed_vllm_command_with_secret_env_and_volume():
    mocks, out = stack("runpod", {**BASE, "maxMonthlyUsd": "1000"})
    expected = spec("llama-3.1-8b", "runpod-a40x1-secure")
    fit = cost_review(expected).fit  # what the review costs is what runs (its drain included)
    pod = mocks.one("runpod:index:Pod")
    assert pod["gpuTypeId"] == "NVIDIA A40" and pod["gpuCount"] == fit.gpus_per_node == 1
    assert pod["cloudType"] == "SECURE"
    assert pod["imageName"] == VLLM_IMAGE
    assert runpod_serve_args(pod["dockerArgs"]) == serve_args(fit.settings)
    assert pod["ports"] == f"{fit.settings.port}/http"
    # the weights live on a network volume at least as big as the weights
    volume = mocks.one("runpod:index:NetworkStorage")
    assert volume["size"] >= fit.weight_gib * 1.0737
    assert pod["networkVolumeId"] == "selfhost-runpod-weights-id"
    assert pod["dataCenterId"] == volume["dataCenterId"]
    # secrets are marked secret, with the values from config
    assert is_secret(pod["env"]) and not is_secret(pod["dockerArgs"])
    env = {e["key"]: e["value"] for e in plain(pod["env"])}
    assert env["VLLM_API_KEY"] == "sk-test-key-0123456789" and env["HF_TOKEN"] == "hf_test_token"
    assert "sk-test-key-0123456789" not in pod["dockerArgs"]
    # outputs: endpoint and the cost review's figures for the same spec
    review = cost_review(expected, boot_disk_gb=0)  # the stack's disk: the weights' network volume
    assert out["endpointUrl"] == "https://selfhost-runpod-id-8000.proxy.runpod.net"
    assert out["projectedMonthlyUsd"] == pytest.approx(review.monthly_usd, abs=0.01)
    assert out["usdPerMillionOutputTokens"] == pytest.approx(review.usd_per_million_output_tokens, rel=1e-3)
    assert out["containerArgs"] == serve_args(fit.settings)


@pytest.fixture
def refreshed_community_prices(monkeypatch, tmp_path):
    """A refreshed snapshot with RunPod Community prices (what `selfhost prices refresh --cloud runpod` writes);
    the shipped one has none (no dated 2026 source)."""
    import datetime as dt

    from costing.data import catalog as cat
    from selfhost.prices import snapshot

    monkeypatch.setenv("SELFHOST_PRICES", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    when = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.timezone.utc)
    api = "RunPod GraphQL API (stand-in)"
    rows = [snapshot.row("runpod", f"{n}x_A40_COMMUNITY", "US", "on-demand", 0.41 * n, api, when) for n in (1, 2, 4, 8)]
    snapshot.write(rows, when, cat.snapshot_dir())
    cat.catalog.cache_clear()
    yield
    cat.catalog.cache_clear()


def test_community_cloud_without_a_dated_price_is_refused_before_any_resource():
    config = {**BASE, "model": "llama-3.1-70b", "precision": "fp8", "cloudType": "COMMUNITY"}
    mocks, err = refused("runpod", config)
    assert "no dated RunPod Community Cloud price is shipped" in str(err) and mocks.resources == []
    assert "selfhost prices refresh --cloud runpod" in err.line() and "cloudType SECURE" in err.line()


def test_community_cloud_picks_enough_gpus_and_a_pod_volume(refreshed_community_prices):
    config = {**BASE, "model": "llama-3.1-70b", "precision": "fp8", "cloudType": "COMMUNITY"}
    mocks, out = stack("runpod", config)
    fit = cost_review(
        spec_from_dict(
            {
                "model": "llama-3.1-70b",
                "precision": "fp8",
                "workload": WORKLOAD,
                "target": {"cloud": "runpod", "gpu": "A40"},
            }
        )
    ).fit
    pod = mocks.one("runpod:index:Pod")
    assert pod["gpuCount"] == fit.gpus_per_node > 1
    assert pod["cloudType"] == "COMMUNITY"
    assert "--tensor-parallel-size" in pod["dockerArgs"]
    assert runpod_serve_args(pod["dockerArgs"]) == serve_args(fit.settings)
    assert mocks.of_type("runpod:index:NetworkStorage") == []  # network volumes are Secure Cloud only
    assert pod["volumeInGb"] >= fit.weight_gib
    assert out["offer"] == f"runpod-a40x{fit.gpus_per_node}-community"


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"pricing": "spot"}, UserError, "interruptible"),
        ({"maxMonthlyUsd": "50"}, OverBudget, "exceeds the budget"),
        ({"hfToken": None}, UserError, "missing secret hfToken"),
        ({"apiKey": None}, UserError, "missing secret apiKey"),  # named, not an allowedCidrs error
        ({"hoursPerDay": "8"}, UserError, "cannot be deployed there"),
        ({"domain": "api.example.com"}, UserError, "domain does not apply"),
        ({"storageGb": "5"}, UserError, "smaller than the"),
        ({"modelRepo": "x/y\nrm -rf /"}, UserError, "modelRepo"),
        ({"model": "llama-9"}, UserError, "unknown model"),
        ({"model": "llama-3.1-70b", "gpuCount": "1"}, DoesNotFit, "does not fit"),
        ({"gpuCount": "3"}, UserError, "no RunPod offer"),
        ({"allowedCidrs": "10.0.0.0/8"}, UserError, "cannot restrict"),
        ({"availability": "high"}, UserError, "the review sizes 2 replicas"),
        ({"requestsPerDay": "1000000"}, UserError, "the RunPod stack runs one pod"),
    ],
)
def test_bad_config_is_refused_before_any_resource(change, error, words):
    config = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    mocks, err = refused("runpod", config)
    assert isinstance(err, error) and words in str(err)
    assert mocks.resources == []
    if "one pod" in str(err) or "replicas" in str(err):  # more than one replica: the fleet paths, named
        assert "aws or gcp stack" in err.fix and "SkyServe" in err.fix and "\n" not in err.line()


def test_shipped_program_runs_with_the_example_config():
    config = example_config("runpod")
    config.update({"apiKey": "sk-example-0123456789", "hfToken": "hf_example"})
    mocks, _ = stack("runpod", config)
    pod = mocks.one("runpod:index:Pod")
    assert pod["gpuCount"] == 1 and pod["cloudType"] == "SECURE"
    assert is_secret(pod["env"])


def test_shipped_program_ends_with_one_line_and_no_resource_on_bad_config():
    import pulumi

    config = example_config("runpod")
    config["apiKey"] = "sk-example-0123456789"  # hfToken left unset
    with pytest.raises(
        pulumi.RunError, match=r"^error: missing secret hfToken.*Fix: pulumi config set --secret hfToken"
    ):
        stack("runpod", config)


def test_spec_file_drives_model_workload_and_budget():
    path = ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    example = spec_from_dict(yaml.safe_load(path.read_text()))
    config = {
        "specFile": str(path),
        "cloudType": "SECURE",
        "apiKey": "sk-test-key-0123456789",
        "hfToken": "hf_test_token",
    }
    mocks, out = stack("runpod", config)
    review = cost_review(
        spec_from_dict(
            {
                **example.model_dump(exclude_none=True),
                "target": {"cloud": "runpod", "offer": "runpod-a40x1-secure", "replicas": 1},
            }
        ),
        boot_disk_gb=0,  # the stack's disk: the weights' network volume
    )
    assert out["model"] == example.model and out["maxMonthlyUsd"] == example.budget.max_monthly_usd
    assert out["projectedMonthlyUsd"] == pytest.approx(review.monthly_usd, abs=0.01)
    # the stack config overrides the file: a budget below the projection refuses
    mocks, err = refused("runpod", {**config, "maxMonthlyUsd": "10"})
    assert isinstance(err, OverBudget) and mocks.resources == []
