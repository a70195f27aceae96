"""Write costing/data/vllm_allowlist.json: every flag of the pinned vLLM's `vllm serve` parser and every
environment variable vLLM reads, each classed `safe` (spec `vllm.extra_args` / a target's environment may
carry it), `kit` (the kit sets it itself, from the spec) or `refused`, with the reason.

    VLLM_TARGET_DEVICE=cpu .venv-vllm/bin/python scripts/vllm_allowlist.py [OUT.json]

Run inside .venv-vllm (stdlib and vllm only). The flags and variables come from vLLM's own parser and its
`vllm.envs` table, so a flag added, renamed or removed by a vLLM upgrade shows up here; only the names below
are the kit's review. Anything not reviewed safe is refused (an allowlist). tests/test_vllm_allowlist.py
regenerates the file and fails when the shipped one is stale.
"""

import importlib.metadata
import json
import sys

_version = importlib.metadata.version

# Reviewed safe: tuning, logging and output-format flags that neither touch the auth layer, the bind address,
# a secret or another listener, nor load code or flags from elsewhere.
SAFE_FLAGS = {
    "enforce_eager": "CUDA graphs off: performance only",
    "seed": "sampling seed",
    "max_logprobs": "response size limit",
    "logprobs_mode": "response content",
    "disable_sliding_window": "attention shape",
    "disable_cascade_attn": "attention kernel choice",
    "block_size": "KV cache block size",
    "num_gpu_blocks_override": "KV cache size",
    "kv_cache_memory_bytes": "KV cache size",
    "prefix_caching_hash_algo": "prefix cache hashing",
    "enable_chunked_prefill": "scheduler",
    "long_prefill_token_threshold": "scheduler",
    "scheduling_policy": "scheduler",
    "async_scheduling": "scheduler",
    "stream_interval": "streaming cadence",
    "cudagraph_capture_sizes": "CUDA graph sizes",
    "max_cudagraph_capture_size": "CUDA graph sizes",
    "optimization_level": "compilation level",
    "performance_mode": "performance preset",
    "tool_call_parser": "built-in tool-call parser by name",
    "enable_auto_tool_choice": "tool calling",
    "reasoning_parser": "built-in reasoning parser by name",
    "chat_template": "chat template",
    "chat_template_content_format": "chat template format",
    "response_role": "response content",
    "generation_config": "sampling defaults",
    "override_generation_config": "sampling defaults",
    "max_log_len": "log length",
    "enable_prompt_tokens_details": "usage details in responses",
    "enable_force_include_usage": "usage in responses",
    "disable_log_stats": "logging",
    "aggregate_engine_logging": "logging",
    "log_level": "logging",
    "uvicorn_log_level": "logging",
    "disable_uvicorn_access_log": "logging",
    "log_error_stack": "logging",
    "disable_fastapi_docs": "fewer routes",
    "enable_request_id_headers": "response headers",
    "sse_keep_alive_interval": "streaming keep-alive",
    "limit_mm_per_prompt": "input limits",
    "speculative_config": "speculative decoding",
    "spec_method": "speculative decoding",
    "spec_model": "speculative decoding",
    "spec_tokens": "speculative decoding",
    "tokenizer_mode": "tokenizer choice",
    "max_parallel_loading_workers": "weight loading",
    "disable_custom_all_reduce": "collective kernel choice",
    "enable_expert_parallel": "MoE layout",
    "all2all_backend": "MoE kernel choice",
    "attention_backend": "attention kernel choice",
    "moe_backend": "MoE kernel choice",
    "distributed_timeout_seconds": "timeouts",
    "cpu_offload_gb": "memory layout",
    "kv_offloading_size": "memory layout",
    "kv_offloading_backend": "memory layout",
}

# Set by the kit from the spec and the fit (costing/performance/vllm_args.py): change the spec instead.
KIT_FLAGS = {
    "model_tag": "the model (spec `model` / `vllm.model_repo`)",
    "model": "the model (spec `model` / `vllm.model_repo`)",
    "served_model_name": "spec `vllm.served_model_name`",
    "tensor_parallel_size": "the fit (spec `target.gpus`)",
    "pipeline_parallel_size": "the fit (spec `target.nodes`)",
    "max_model_len": "spec `vllm.max_model_len`",
    "gpu_memory_utilization": "spec `vllm.gpu_memory_utilization`",
    "max_num_seqs": "spec `vllm.max_num_seqs`",
    "max_num_batched_tokens": "spec `vllm.max_num_batched_tokens`",
    "dtype": "spec `precision`",
    "quantization": "spec `precision`",
    "allow_deprecated_quantization": "the checkpoint's quantization method",
    "kv_cache_dtype": "spec `vllm.kv_cache_dtype`",
    "enable_prefix_caching": "spec `vllm.enable_prefix_caching`",
    "nnodes": "the multi-node launch (spec `target.nodes`)",
    "node_rank": "the multi-node launch (spec `target.nodes`)",
    "distributed_executor_backend": "the multi-node launch (spec `target.nodes`)",
    "shutdown_timeout": "the cost review's drain (costing/performance/drain.py: the projection's p99 latency, bounded)",
}

AUTH = "disables, replaces or moves the auth layer"
SECRET = "carries a secret on the command line (argv, logs, the committed spec); the key comes from VLLM_API_KEY"
BIND = "changes the bind address, port or root path the auth layer, the firewall and the health checks rely on"
SERVER = "opens another server, port or outbound channel outside the auth layer"
CODE = "loads code, flags or configuration from outside the reviewed command line"
ROUTES = "opens routes, files or origins the kit does not review"
REFUSED_FLAGS = {
    "help": "prints help and exits: the server would not start",
    "middleware": AUTH,
    "api_key": SECRET,
    "hf_token": SECRET,
    "fingerprint_value": SECRET,
    "ssl_keyfile": SECRET,
    "ssl_certfile": BIND,
    "ssl_ca_certs": BIND,
    "ssl_cert_reqs": BIND,
    "ssl_ciphers": BIND,
    "enable_ssl_refresh": BIND,
    "host": BIND,
    "port": BIND,
    "uds": BIND,
    "root_path": BIND,
    "grpc": SERVER,
    "grpc_port": SERVER,
    "headless": SERVER,
    "api_server_count": SERVER,
    "data_parallel_address": SERVER,
    "data_parallel_rpc_port": SERVER,
    "data_parallel_supervisor_port": SERVER,
    "master_addr": SERVER,
    "master_port": SERVER,
    "kv_transfer_config": SERVER,
    "kv_events_config": SERVER,
    "ec_transfer_config": SERVER,
    "tool_server": SERVER,
    "otlp_traces_endpoint": SERVER,
    "config": CODE,
    "trust_remote_code": CODE,
    "worker_cls": CODE,
    "worker_extension_cls": CODE,
    "scheduler_cls": CODE,
    "tool_parser_plugin": CODE,
    "reasoning_parser_plugin": CODE,
    "io_processor_plugin": CODE,
    "logits_processors": CODE,
    "model_class_overrides": CODE,
    "logging_config": CODE,
    "log_config_file": CODE,
    "compilation_config": CODE,
    "allowed_origins": ROUTES,
    "allow_credentials": ROUTES,
    "allowed_methods": ROUTES,
    "allowed_headers": ROUTES,
    "allowed_local_media_path": ROUTES,
    "trust_request_chat_template": ROUTES,
    "enable_tokenizer_info_endpoint": ROUTES,
    "enable_sleep_mode": ROUTES,
    "enable_scale_out": ROUTES,
}
NOT_REVIEWED = "not on the kit's allowlist of reviewed vLLM flags"

# Environment: what the kit sets (targets' server environment) and the few a user may add.
SAFE_ENV = {
    "VLLM_TARGET_DEVICE": "device selection (the local target sets cpu)",
    "VLLM_CPU_KVCACHE_SPACE": "CPU KV cache size (the local target)",
    "VLLM_NO_USAGE_STATS": "telemetry off",
    "VLLM_DO_NOT_TRACK": "telemetry off",
    "VLLM_CACHE_ROOT": "cache folder",
    "VLLM_CONFIG_ROOT": "config folder",
    "VLLM_LOGGING_LEVEL": "logging",
    "VLLM_LOGGING_PREFIX": "logging",
    "VLLM_LOGGING_COLOR": "logging",
    "VLLM_CONFIGURE_LOGGING": "logging",
    "VLLM_LOG_STATS_INTERVAL": "logging",
    "VLLM_DISABLE_LOG_LOGO": "logging",
    "VLLM_ENGINE_READY_TIMEOUT_S": "timeouts",
    "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "timeouts",
    "VLLM_WORKER_MULTIPROC_METHOD": "process start method",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "context length check",
    "HF_HUB_OFFLINE": "no Hugging Face downloads",
    "HF_HOME": "cache folder",
    "CUDA_VISIBLE_DEVICES": "device selection",
    "LD_LIBRARY_PATH": "library path",
    "NO_COLOR": "logging",
    "FORCE_COLOR": "logging",
}
KIT_ENV = {"VLLM_API_KEY": "the API key: the kit sets it from the secret store, never from a spec or argv"}
RUST = "replaces the Python server, and with it the auth layer, by the Rust frontend"
REFUSED_ENV = {
    "VLLM_USE_RUST_FRONTEND": RUST,
    "VLLM_USE_RUST_BENCH": RUST,
    "VLLM_RUST_FRONTEND_PATH": RUST,
    "VLLM_SERVER_DEV_MODE": ROUTES,
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": ROUTES,
    "VLLM_ENABLE_RESPONSES_API_STORE": ROUTES,
    "VLLM_ALLOW_INSECURE_SERIALIZATION": CODE,
    "VLLM_PLUGINS": CODE,
    "VLLM_LOGGING_CONFIG_PATH": CODE,
    "VLLM_DEBUG_LOG_API_SERVER_RESPONSE": "logs every response body",
    "S3_ACCESS_KEY_ID": "a secret: pass it through the target's secret store",
    "S3_SECRET_ACCESS_KEY": "a secret: pass it through the target's secret store",
}
NOT_REVIEWED_ENV = "not on the kit's allowlist of reviewed vLLM environment variables"
NETWORK_WORDS = ("_HOST", "_PORT", "_IP", "RPC_BASE_PATH", "_ADDR")


def classify_flag(dest: str) -> tuple[str, str]:
    if dest in KIT_FLAGS:
        return "kit", f"set by the kit from {KIT_FLAGS[dest]}"
    if dest in REFUSED_FLAGS:
        return "refused", REFUSED_FLAGS[dest]
    if dest in SAFE_FLAGS:
        return "safe", SAFE_FLAGS[dest]
    return "refused", NOT_REVIEWED


def classify_env(name: str) -> tuple[str, str]:
    if name in KIT_ENV:
        return "kit", KIT_ENV[name]
    if name in REFUSED_ENV:
        return "refused", REFUSED_ENV[name]
    if name in SAFE_ENV:
        return "safe", SAFE_ENV[name]
    if any(word in name for word in NETWORK_WORDS):
        return "refused", SERVER
    return "refused", NOT_REVIEWED_ENV


def build() -> dict:
    importlib.metadata.version = lambda name: _version("vllm-cpu") if name == "vllm" else _version(name)
    import vllm.envs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    flags: dict[str, dict] = {}
    dests = set()
    for action in parser._actions:
        dests.add(action.dest)
        cls, why = classify_flag(action.dest)
        for opt in action.option_strings:
            flags[opt] = {"dest": action.dest, "class": cls, "reason": why, "takes_value": action.nargs != 0}
    env_names = set(vllm.envs.environment_variables) | set(SAFE_ENV) | set(REFUSED_ENV)
    env = {}
    for name in sorted(env_names):
        cls, why = classify_env(name)
        env[name] = {"class": cls, "reason": why}
    stale = sorted((set(SAFE_FLAGS) | set(REFUSED_FLAGS) | set(KIT_FLAGS)) - dests)
    if stale:  # a reviewed flag vLLM no longer has: the review needs updating
        raise SystemExit(f"reviewed flags not in vLLM {_version('vllm-cpu')}'s parser: {stale}")
    return {
        "vllm": _version("vllm-cpu"),
        "generated_by": "scripts/vllm_allowlist.py",
        "flags": dict(sorted(flags.items())),
        "env": env,
    }


def main() -> None:
    data = json.dumps(build(), indent=1, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(data)
    else:
        sys.stdout.write(data)


if __name__ == "__main__":
    main()
