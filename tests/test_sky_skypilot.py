"""The shipped templates against the real SkyPilot 0.14: its parser, SkyServe's service checks and its
optimizer over a local catalog written from our offers (selfhost.skypilot.optimizer_catalog).

SkyPilot reads its catalogs from $HOME/.sky when it is imported, so SkyPilot runs in one child
process with a temporary HOME (this file run as a script); the tests assert on what it reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "templates").glob("*.yaml"))
SECRET_VALUES = {"HF_TOKEN": "hf-test-token", "VLLM_API_KEY": "key-test-123"}


def _skypilot_report(paths: list[str]) -> dict:
    """Child process: load, validate and optimize every template with SkyPilot itself."""
    import sky
    import yaml
    from sky import check, optimizer
    from sky.serve import serve_utils

    from costing.errors import UserError
    from selfhost.skypilot import launch

    enabled = [sky.AWS(), sky.GCP(), sky.RunPod()]  # no credentials here: as SkyPilot's own tests do
    check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled
    report: dict = {}
    for path in paths:
        entry: dict = {}
        report[Path(path).name] = entry
        try:
            plain = sky.Task.from_yaml(path)  # secrets left null: managed references, filled at launch
            entry["plain_secrets"] = sorted(r.name for r in plain._managed_secret_refs)  # pylint: disable=protected-access
            cfg = yaml.safe_load(Path(path).read_text())
            task = sky.Task.from_yaml_config(cfg, secrets_overrides=list(SECRET_VALUES.items()))
            if task.service is not None:
                serve_utils.validate_service_task(task, pool=False)
                svc = task.service
                entry["service"] = {
                    "headers": svc.readiness_headers,
                    "post_data": svc.post_data,
                    "path": svc.readiness_path,
                    "initial_delay": svc.initial_delay_seconds,
                    "timeout": svc.readiness_timeout_seconds,
                    "min": svc.min_replicas,
                    "max": svc.max_replicas,
                    "fallback": svc.use_ondemand_fallback,
                }
            entry["num_nodes"] = task.num_nodes
            entry["resources"] = [
                {
                    "cloud": str(r.cloud),
                    "accelerators": r.accelerators,
                    "use_spot": r.use_spot,
                    "disk_size": r.disk_size,
                    "instance_type": r.instance_type,
                }
                for r in task.resources
            ]
            launch.validate_with_skypilot(Path(path).read_text(), task.service is not None)
            with sky.Dag() as dag:
                dag.add(task)
            optimizer.Optimizer.optimize(dag, quiet=True)
            best = task.best_resources
            entry["best"] = {
                "cloud": str(best.cloud),
                "instance_type": best.instance_type,
                "use_spot": best.use_spot,
                "hourly_usd": best.get_cost(3600) * task.num_nodes,
            }
        except Exception as err:  # reported, and the test fails with SkyPilot's message
            entry["error"] = f"{type(err).__name__}: {err}"
    # The exact commands `selfhost launch sky` runs, parsed (not invoked) by SkyPilot's own CLI.
    from sky.client.cli import command as sky_cli

    for service in (False, True):
        cmd = launch.sky_command("c1", Path("t.yaml"), service, 45, True)
        click_cmd = sky_cli.serve_up if service else sky_cli.launch
        ctx = click_cmd.make_context(" ".join(cmd[: 3 if service else 2]), cmd[3 if service else 2 :])
        report[f"_cli_{'serve' if service else 'launch'}"] = {
            k: v for k, v in ctx.params.items() if v not in (None, False, (), [])
        }
    try:
        launch.validate_with_skypilot("name: x\nresources: {acceleratorz: A40:1}\nrun: echo\n", False)
        report["_bad_yaml"] = "accepted"
    except UserError as err:
        report["_bad_yaml"] = err.line()
    return report


@pytest.fixture(scope="module")
def skypilot(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("skyhome")
    from selfhost.skypilot.optimizer_catalog import write_catalog

    write_catalog(home)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "SKY"))},
        **SECRET_VALUES,
        "HOME": str(home),
        "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
    }
    out = subprocess.run(
        [sys.executable, __file__, *map(str, TEMPLATES)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ours(path: Path):
    from selfhost.skypilot.render import choices, embedded_spec

    spec = embedded_spec(path.read_text())
    return spec, choices(spec)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_loads_with_skypilots_parser(skypilot, path):
    entry = skypilot[path.name]
    assert "error" not in entry, entry.get("error")
    assert entry["plain_secrets"] == ["HF_TOKEN", "VLLM_API_KEY"]
    spec, found = _ours(path)
    assert entry["num_nodes"] == found[0].fit.nodes
    assert len(entry["resources"]) == len(found)
    for res in entry["resources"]:
        assert res["use_spot"] == (spec.target.pricing == "spot")
        assert res["disk_size"] >= max(c.fit.weight_gib for c in found)


@pytest.mark.parametrize("path", [p for p in TEMPLATES if "service" in p.stem], ids=lambda p: p.stem)
def test_service_passes_skyserve_validation_with_the_key_in_the_probe(skypilot, path):
    svc = skypilot[path.name]["service"]
    assert svc["headers"] == {"Authorization": f"Bearer {SECRET_VALUES['VLLM_API_KEY']}"}
    assert svc["path"] == "/v1/chat/completions" and svc["post_data"]["max_tokens"] == 1
    _, found = _ours(path)
    assert svc["post_data"]["model"] == found[0].fit.settings.served_model_name
    assert svc["initial_delay"] >= 600 and svc["timeout"] >= 15
    assert 1 <= svc["min"] <= svc["max"]
    assert svc["fallback"] == ("spot" in path.stem)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_skypilot_optimizer_picks_the_offer_the_cost_review_priced(skypilot, path):
    from costing.review import cost_review
    from selfhost.skypilot.render import cheapest

    best = skypilot[path.name]["best"]
    spec, found = _ours(path)
    chosen = cheapest(found)
    review = cost_review(chosen.spec, resolved=chosen.resolved)
    assert review.offer.id == chosen.offer.id
    assert (best["cloud"].lower(), best["instance_type"]) == (review.offer.cloud, review.offer.instance_type)
    assert best["use_spot"] == (spec.target.pricing == "spot")
    assert best["hourly_usd"] == pytest.approx(review.hourly_usd, abs=1e-6)


def test_skypilot_cli_accepts_the_launch_commands(skypilot):
    dev, svc = skypilot["_cli_launch"], skypilot["_cli_serve"]
    assert dev["cluster"] == "c1" and dev["entrypoint"] == ["t.yaml"]
    assert (dev["idle_minutes_to_autostop"], dev["down"], dev["wait_for"]) == (45, True, "none")
    assert dev["secret"] == [list(kv) for kv in SECRET_VALUES.items()]  # read from the environment by name
    assert svc["service_name"] == "c1" and svc["service_yaml"] == ["t.yaml"] and svc["yes"] is True
    assert svc["secret"] == dev["secret"]


def test_launch_validation_reports_skypilots_rejection(skypilot):
    assert skypilot["_bad_yaml"].startswith("error: SkyPilot rejects the rendered YAML")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    result = _skypilot_report(sys.argv[1:])
    print(json.dumps(result, default=str))
