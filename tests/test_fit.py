from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costing.data.catalog import catalog, get_model
from costing.errors import DoesNotFit, UserError
from costing.performance.fit import FitRequest, fit_check, weight_bytes


def test_kv_cache_per_token_is_gqa_aware():
    assert get_model("llama-3.1-8b").kv_bytes_per_token(2) == 131_072  # 2 x 32 x 8 x 128 x 2
    assert get_model("llama-3.1-70b").kv_bytes_per_token(2) == 327_680
    assert get_model("llama-3.1-405b").kv_bytes_per_token(1) == 258_048


def test_weights_shrink_with_precision():
    m, cat = get_model("llama-3.1-70b"), catalog()
    bf16, fp8, awq = (weight_bytes(m, cat.precisions[p]) / 1e9 for p in ("bf16", "fp8", "awq"))
    assert 140 < bf16 < 142
    assert 70 < fp8 < 73  # 8-bit linear layers, 16-bit embeddings
    assert 37 < awq < 41  # published AWQ-INT4 70B checkpoints are ~39 GB


def test_8b_on_a10g_caps_max_model_len_to_what_the_kv_cache_holds():
    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G"))
    assert fit.max_model_len < 131_072  # vLLM would refuse 128k: "max seq len larger than the KV cache"
    assert fit.max_model_len <= 0.9 * fit.kv_capacity_tokens  # the stated margin under the KV estimate
    assert fit.max_model_len > 0.9 * fit.kv_capacity_tokens - 16  # ... and no more (one block)
    assert 20_000 < fit.kv_capacity_tokens < 45_000  # ~3.5-4 GiB of KV / 128 KiB per token
    assert any("capped" in note for note in fit.notes)


def test_70b_bf16_on_one_a40_is_refused_with_the_nearest_fits():
    with pytest.raises(DoesNotFit) as err:
        fit_check(FitRequest(model="llama-3.1-70b", gpu="A40", gpus=1))
    line = err.value.line()
    assert "does not fit on 1x A40" in line and "\n" not in line
    assert "4x A40 bf16" in line and "awq" in line


def test_405b_bf16_on_p4d_is_refused_and_awq_fits():
    with pytest.raises(DoesNotFit, match="awq"):
        fit_check(FitRequest(model="llama-3.1-405b", gpu="A100", gpus=8))
    fit = fit_check(FitRequest(model="llama-3.1-405b", precision="awq", gpu="A100", gpus=8))
    # the AWQ checkpoint declares quant_method awq: vLLM reads it, and a different flag would stop it
    assert fit.settings.quantization is None and fit.settings.tensor_parallel_size == 8


def test_405b_fp8_needs_two_p4d_nodes_with_pipeline_parallel():
    with pytest.raises(DoesNotFit):
        fit_check(FitRequest(model="llama-3.1-405b", precision="fp8", gpu="A100", gpus=8))
    fit = fit_check(FitRequest(model="llama-3.1-405b", precision="fp8", gpu="A100", gpus=8, nodes=2))
    assert fit.settings.pipeline_parallel_size == 2 and fit.total_gpus == 16


def test_fp8_on_ampere_is_noted_as_weight_only():
    fit = fit_check(FitRequest(model="llama-3.1-8b", precision="fp8", gpu="A40"))
    assert any("Marlin" in n for n in fit.notes)
    ada = fit_check(FitRequest(model="llama-3.1-8b", precision="fp8", gpu="L4"))
    assert not any("no native" in n for n in ada.notes)


def test_a_request_longer_than_the_kv_cache_is_refused():
    with pytest.raises(DoesNotFit, match="longer than"):
        fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G", seq_len=100_000))
    with pytest.raises(DoesNotFit, match="more than 90% of"):
        fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G", max_model_len=65_536))


def test_max_model_len_keeps_the_margin_under_the_kv_estimate():
    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G"))
    at_margin = (fit.kv_capacity_tokens * 9 // 10) // 16 * 16
    assert fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G", max_model_len=at_margin)).max_model_len == at_margin
    with pytest.raises(DoesNotFit, match="90%"):
        fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G", max_model_len=fit.kv_capacity_tokens))


@pytest.mark.parametrize(
    "model, precision, flag",
    [
        ("llama-3.3-70b", "fp8", None),  # RedHatAI FP8-dynamic: compressed-tensors in its config.json
        ("llama-3.1-405b", "fp8", None),  # Meta's FP8: fbgemm_fp8
        ("llama-3.1-70b", "awq", None),  # AWQ-INT4: awq
        ("llama-3.1-8b", "int8", None),  # W8A8: compressed-tensors
        ("llama-3.2-3b", "fp8", "fp8"),  # no FP8 checkpoint known: dynamic FP8 of the bf16 repo
    ],
)
def test_quantization_flag_follows_the_checkpoint(model, precision, flag):
    from costing.data.catalog import get_model

    m = get_model(model)
    repo = m.repo_for(precision)
    gpus = 8 if m.params_b > 20 else 1
    req = FitRequest(model=model, precision=precision, gpu="H100", gpus=gpus, model_repo=repo or m.hf_repo)
    settings = fit_check(req).settings
    assert settings.quantization == flag
    assert (m.quant_method_of(settings.model_repo) is None) == (flag is not None)


def test_bad_parallelism_is_a_user_error():
    with pytest.raises(UserError, match="tensor-parallel"):
        fit_check(FitRequest(model="llama-3.1-8b", gpu="A40", gpus=3))


def test_concurrent_sequences_follow_the_kv_cache():
    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="A10G"))
    assert fit.max_concurrent_seqs(2048) == fit.kv_capacity_tokens // 2048
    assert fit.max_concurrent_seqs(16) == fit.settings.max_num_seqs  # capped by max_num_seqs


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(sorted(catalog().models)),
    precision=st.sampled_from(["bf16", "fp8", "awq"]),
    gpu=st.sampled_from(sorted(catalog().gpus)),
    seq_len=st.integers(256, 16_384),
)
def test_more_gpus_of_the_same_kind_never_hold_fewer_sequences(model, precision, gpu, seq_len):
    held = []
    for gpus in (1, 2, 4, 8):
        try:
            held.append(
                fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus)).max_concurrent_seqs(seq_len)
            )
        except UserError:
            held.append(0)  # does not fit (or no checkpoint): holds nothing
    assert held == sorted(held)
