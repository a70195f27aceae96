from __future__ import annotations

import shlex

from costing.performance.fit import FitRequest, fit_check
from costing.performance.vllm_args import AUTH_MIDDLEWARE, shell_command, vllm_serve_argv


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def test_command_line_carries_the_fit_check_settings():
    fit = fit_check(FitRequest(model="llama-3.1-70b", precision="awq", gpu="A10G", gpus=4))
    argv = vllm_serve_argv(fit.settings)
    assert argv[:3] == ["vllm", "serve", "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"]
    assert _flag(argv, "--tensor-parallel-size") == "4"
    assert int(_flag(argv, "--max-model-len")) == fit.max_model_len
    assert "--quantization" not in argv  # the AWQ checkpoint declares its method
    assert "--enable-prefix-caching" in argv and "--pipeline-parallel-size" not in argv


def test_no_api_key_in_the_command_and_the_auth_layer_always_loaded():
    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="L4"))
    argv = vllm_serve_argv(fit.settings)
    assert not [a for a in argv if a.startswith("--api-key") or "API_KEY" in a]  # vLLM reads VLLM_API_KEY itself
    assert _flag(argv, "--middleware") == AUTH_MIDDLEWARE == "selfhost_auth.BearerAuth"
    assert shlex.split(shell_command(argv)) == argv


def test_pipeline_parallel_and_local_model_override():
    fit = fit_check(FitRequest(model="llama-3.1-405b", precision="fp8", gpu="A100", gpus=8, nodes=2))
    argv = vllm_serve_argv(fit.settings, model="/models/405b")
    assert argv[2] == "/models/405b" and _flag(argv, "--pipeline-parallel-size") == "2"
