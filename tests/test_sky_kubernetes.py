"""A Kubernetes context as a SkyPilot candidate (spec `kubernetes:`), against the real SkyPilot 0.14: its parser
loads the rendered `infra: k8s/<context>` candidate, and its optimizer, over the local catalog written from our
offers and the pricing config the render's header gives (`kubernetes.context_configs.<context>.pricing`),
picks the candidate the kit's review prices. Without that config SkyPilot prices the context at $0/h (its own
rule, `sky.catalog.kubernetes_catalog.get_hourly_cost`), which the test shows too.

SkyPilot runs in a child process (this file as a script) with a temporary HOME: our catalogs, a kubeconfig
naming the context (its API server an unused loopback port), GCP enabled by hand as SkyPilot's own tests do.
The stand-ins are the cluster's answers to two queries to its API: "does a node with this GPU fit"
(`check_instance_fits`) and "which node label marks spot nodes" (`get_spot_label`: none, so no spot pods);
SkyPilot's pricing and its choice are its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if __name__ == "__main__":  # run as SkyPilot's child process: this checkout's code, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sky_stand_ins

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = "team-gke"
SECRETS = {"HF_TOKEN": "hf-test-token", "VLLM_API_KEY": "key-test-123"}
# gcp-g2-standard-4 (1x L4) is $0.70683/h on-demand in us-central1 in the shipped catalog: one stated rate
# below it, one above.
RATES = {"cheaper": 0.5, "dearer": 0.9}


def spec_data(rate: float) -> dict:
    return {
        "model": "llama-3.1-8b",
        "workload": {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250},
        "sky": {
            "any_of": [
                {"cloud": "gcp", "gpu": "L4"},
                {
                    "kubernetes": {
                        "context": CONTEXT,
                        "gpu": "L4",
                        "gpus_per_node": 2,
                        "usd_per_node_hour": 2 * rate,
                        "source": "FinOps rate card",
                        "as_of": "2026-11-30",
                    }
                },
            ]
        },
    }


def _child(cases: dict[str, str]) -> dict:
    """Child process: each rendered task through SkyPilot's parser and optimizer, with and without the
    pricing config of the task's header."""
    import sky
    from sky import check, optimizer, skypilot_config
    from sky.provision.kubernetes import utils as kubernetes_utils

    check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: [sky.GCP(), sky.Kubernetes()]
    # The cluster's answers (queries to its API): a node with the GPU fits; its nodes carry no spot label.
    kubernetes_utils.check_instance_fits = lambda *a, **k: (True, None)
    kubernetes_utils.get_spot_label = lambda *a, **k: (None, None)
    config = Path.home() / ".sky" / "config.yaml"
    report: dict = {}
    for name, path in cases.items():
        text = Path(path).read_text()
        for with_pricing in (True, False):
            base = {"allowed_clouds": ["gcp", "kubernetes"], "kubernetes": {"allowed_contexts": [CONTEXT]}}
            if with_pricing:
                pricing = yaml.safe_load("\n".join(header_config(text)))
                base["kubernetes"].update(pricing["kubernetes"])
            config.write_text(yaml.safe_dump(base))
            skypilot_config.reload_config()
            entry: dict = {}
            try:
                task = sky.Task.from_yaml_config(yaml.safe_load(text), secrets_overrides=list(SECRETS.items()))
                entry["parsed"] = sorted([str(r.cloud), r.region or ""] for r in task.resources)
                with sky.Dag() as dag:
                    dag.add(task)
                optimizer.Optimizer.optimize(dag, quiet=True)
                best = task.best_resources
                entry.update(cloud=str(best.cloud), region=best.region, hourly_usd=best.get_cost(3600))
            except Exception as err:  # reported; the test fails with SkyPilot's message
                entry = {"error": f"{type(err).__name__}: {err}"}
            report[f"{name}/{'priced' if with_pricing else 'unpriced'}"] = entry
    report["launch"] = _launch_command(cases["dearer"])
    return report


def _launch_command(path: str) -> dict:
    """`selfhost launch sky`'s own plan for the dearer task, its command parsed by SkyPilot's CLI (whose
    `--config FILE` applies the pricing config), then SkyPilot's optimizer: no pricing in ~/.sky/config.yaml."""
    import sky
    import yaml
    from sky import optimizer, skypilot_config
    from sky.client.cli import command as sky_cli

    from selfhost.skypilot import launch, render

    config = Path.home() / ".sky" / "config.yaml"
    config.write_text(
        yaml.safe_dump({"allowed_clouds": ["gcp", "kubernetes"], "kubernetes": {"allowed_contexts": [CONTEXT]}})
    )
    skypilot_config.reload_config()
    spec = render.embedded_spec(Path(path).read_text())
    plan = launch.plan_launch(spec, out_dir=Path(path).parent / "launch", yes=True)
    launch._write(plan)  # pylint: disable=protected-access  # what the launch writes before running `sky`
    dry_run = launch.skypilot_choice(plan.yaml_text, plan.config_path)  # --dry-run's optimizer line
    lines = launch.optimizer_lines(plan)
    skypilot_config.reload_config()
    reset = skypilot_config.get_nested(("kubernetes", "context_configs"), None) is None
    sky_cli.launch.make_context("sky launch", plan.command[2:])
    task = sky.Task.from_yaml_config(yaml.safe_load(plan.yaml_text), secrets_overrides=list(SECRETS.items()))
    with sky.Dag() as dag:
        dag.add(task)
    optimizer.Optimizer.optimize(dag, quiet=True)
    best = task.best_resources
    return {
        "command": plan.command,
        "cloud": str(best.cloud),
        "hourly_usd": best.get_cost(3600),
        "dry_run": [dry_run["cloud"], dry_run["hourly_usd"]],
        "dry_run_lines": lines,
        "reset": reset,
    }


def header_config(text: str) -> list[str]:
    """The SkyPilot config block the rendered header shows (commented, after its introduction)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   kubernetes:"))
    out = []
    for line in lines[start:]:
        if not line.startswith("#   ") or line.startswith("#   sky "):
            break
        out.append(line[4:])
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, tuple[str, object]]:
    from costing.data.spec import spec_from_dict
    from selfhost.skypilot import render

    folder = tmp_path_factory.mktemp("k8s-tasks")
    out = {}
    for name, rate in RATES.items():
        spec = spec_from_dict(spec_data(rate))
        path = folder / f"{name}.yaml"
        path.write_text(render.render_yaml(spec))
        out[name] = (str(path), render.cheapest(render.choices(spec)))
    return out


@pytest.fixture(scope="module")
def skypilot(rendered, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("skyhome")
    sky_stand_ins.sky_home(home, ("gcp", "kubernetes"))
    kube = home / ".kube"
    kube.mkdir()
    port = sky_stand_ins.free_port()  # nothing listens there: no cluster is reached
    (kube / "config").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": CONTEXT, "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "test"}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "u"}}],
                "current-context": CONTEXT,
            }
        )
    )
    env = {**sky_stand_ins.sky_env(home, {}), "KUBECONFIG": str(kube / "config"), **SECRETS}
    cases = json.dumps({name: path for name, (path, _) in rendered.items()})
    out = subprocess.run(
        [sys.executable, __file__, cases], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(RATES))
def test_skypilots_optimizer_picks_the_candidate_the_review_prices(skypilot, rendered, name: str) -> None:
    """With the header's pricing config SkyPilot compares the context at the stated rate: its choice and
    its hourly price are the kit's (the context when cheaper than GCP's L4, GCP when dearer)."""
    _, chosen = rendered[name]
    got = skypilot[f"{name}/priced"]
    assert "error" not in got, got["error"]
    expected_cloud = "Kubernetes" if chosen.offer.cloud == "kubernetes" else "GCP"
    assert got["cloud"] == expected_cloud
    assert got["hourly_usd"] == pytest.approx(chosen.hourly_usd, rel=1e-6)
    assert (name == "cheaper") == (expected_cloud == "Kubernetes")


def test_without_the_pricing_config_skypilot_takes_the_context_at_zero(skypilot) -> None:
    """SkyPilot's own rule: a context with no stated price costs $0/h, so it always wins. Why the render's
    header gives the config: without it the dearer context would run while the review priced GCP."""
    got = skypilot["dearer/unpriced"]
    assert got.get("cloud") == "Kubernetes" and got["hourly_usd"] == 0.0


def test_selfhost_launch_passes_the_pricing_to_skypilot(skypilot, rendered) -> None:
    """The launch command carries the contexts' pricing (`--config FILE`): through SkyPilot's own CLI parser and
    optimizer, the dearer context loses to GCP, as the review priced, with nothing in ~/.sky/config.yaml."""
    _, chosen = rendered["dearer"]
    got = skypilot["launch"]
    assert "--config" in got["command"]
    assert got["cloud"] == "GCP" and got["hourly_usd"] == pytest.approx(chosen.hourly_usd, rel=1e-6)
    assert got["reset"], "the CLI's --config was applied on top of an already priced config: the check proves nothing"
    # `selfhost launch sky --dry-run` shows SkyPilot's choice with the same pricing applied
    assert got["dry_run"][0] == "gcp" and got["dry_run"][1] == pytest.approx(chosen.hourly_usd, rel=1e-6)
    assert "SkyPilot's optimizer picks what the review priced" in got["dry_run_lines"]


def test_the_rendered_task_loads_with_skypilots_parser_and_names_the_context(skypilot) -> None:
    """SkyPilot's parser reads the rendered any_of: GCP in the priced region, and the context as its region."""
    assert skypilot["cheaper/priced"]["parsed"] == [["GCP", "us-central1"], ["Kubernetes", CONTEXT]]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
