"""selfhost.skypilot.render (rendering), selfhost.skypilot.launch and the `selfhost render/launch sky` commands.

SkyPilot's own parser and optimizer are exercised in test_sky_skypilot.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from costing.data.spec import load_spec, spec_from_dict
from costing.errors import UserError
from costing.performance import readiness
from costing.performance.fit import FitRequest, fit_check
from costing.performance.vllm_args import NodeRole, shell_command, vllm_serve_argv
from selfhost import auth_install
from selfhost.skypilot import render as sky

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "templates" / "specs").glob("*.yaml"))
SELFHOST = str(ROOT / ".venv" / "bin" / "selfhost") if (ROOT / ".venv" / "bin" / "selfhost").exists() else None
# A SkyServe service with a certificate (SkyServe serves HTTPS with it; the files are read at `sky serve up`).
SERVICE = {"service": True, "tls_keyfile": "~/tls/key.pem", "tls_certfile": "~/tls/cert.pem"}
WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 2.0}


def console(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The real `selfhost` console script (falls back to `python -m selfhost.cli`)."""
    cmd = [SELFHOST] if SELFHOST else [sys.executable, "-m", "selfhost.cli"]
    clean = {k: v for k, v in os.environ.items() if k not in sky.SECRETS}
    full = {**clean, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [full.get("PYTHONPATH")])])  # this checkout's code
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=full)


def spec(**kw):
    return spec_from_dict({"model": "llama-3.1-8b", **kw})


# ----------------------------------------------------------------------------- golden files


def test_there_are_templates_for_every_cloud_and_size():
    assert len(SPECS) >= 10
    names = " ".join(p.stem for p in SPECS)
    for part in ("runpod-a40", "aws-a10g", "gcp-l4", "any", "70b", "405b", "service"):
        assert part in names


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_shipped_template_is_the_render_of_its_spec(spec_path):
    shipped = ROOT / "templates" / spec_path.name
    assert shipped.exists(), f"{shipped} missing: run `make templates`"
    expected = sky.render_spec_file(spec_path, source=str(spec_path.relative_to(ROOT)))
    assert shipped.read_text() == expected, f"{shipped.name} is out of date: run `make templates`"


def test_regenerator_check_mode_reports_up_to_date():
    out = subprocess.run(
        [sys.executable, "scripts/render_templates.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_shipped_template_runs_the_fitted_vllm_command(spec_path):
    task = yaml.safe_load((ROOT / "templates" / spec_path.name).read_text())
    found = sky.choices(load_spec(spec_path))
    for c in found:
        assert shell_command(vllm_serve_argv(c.fit.settings)) in task["run"]
    assert "--api-key" not in task["run"] and "--middleware selfhost_auth.BearerAuth" in task["run"]
    assert task["secrets"] == {"HF_TOKEN": None, "VLLM_API_KEY": None}  # the key reaches vLLM as env only
    assert f"vllm=={sky.VLLM_VERSION}" in task["setup"]
    assert found[0].fit.settings.model_repo in task["setup"]


def test_embedded_spec_round_trips():
    for spec_path in SPECS:
        text = (ROOT / "templates" / spec_path.name).read_text()
        assert sky.embedded_spec(text) == load_spec(spec_path)
    assert sky.embedded_spec("name: x\nrun: echo\n") is None


# ----------------------------------------------------------------------------- rendering


def test_task_pins_cloud_and_accelerators_and_autostop():
    task = sky.render_task(spec(target={"cloud": "runpod", "gpu": "A40"}))
    res = task["resources"]
    assert (res["cloud"], res["accelerators"], res["use_spot"]) == ("runpod", "A40:1", False)
    assert "instance_type" not in res  # SkyPilot chooses; the optimizer test checks it agrees
    assert res["autostop"] == {"idle_minutes": sky.DEV_CLUSTER_MINUTES, "down": True, "wait_for": "none"}
    assert res["ports"] == 8000
    assert "service" not in task


def test_runpod_community_offer_is_replaced_by_secure_for_skypilot():
    # Community Cloud: SkyPilot's RunPod catalog does not list it (and the kit ships no dated price for it).
    c = sky.choose(spec(target={"cloud": "runpod", "gpu": "A40"}))
    assert c.offer.cloud_type == "SECURE"
    assert c.offer.id == "runpod-a40x1-secure"


def test_pinned_offer_renders_its_instance_type():
    task = sky.render_task(spec(target={"offer": "gcp-g2-standard-8"}))
    assert task["resources"]["instance_type"] == "g2-standard-8"
    assert task["resources"]["accelerators"] == "L4:1"


def test_no_secret_value_is_ever_written(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret-value-456")
    text = sky.render_yaml(spec(target={"cloud": "aws", "gpu": "A10G"}, workload=WORKLOAD, sky=SERVICE))
    assert "secret_value" not in text
    assert "--api-key" not in text  # vLLM logs its args: the key reaches it as the VLLM_API_KEY secret's env
    assert "Authorization: Bearer $VLLM_API_KEY" in text  # the readiness probe's header, filled in by SkyPilot


def test_disk_and_initial_delay_grow_with_the_weights():
    small = sky.choose(spec(target={"offer": "aws-p4d.24xlarge"}))
    big = sky.choose(
        spec_from_dict({"model": "llama-3.1-405b", "precision": "awq", "target": {"offer": "aws-p4d.24xlarge"}})
    )
    assert sky.disk_size_gb(big) > sky.disk_size_gb(small) > small.fit.weight_gib
    assert sky.disk_size_gb(big) > big.fit.weight_gib * 1.0737  # GB >= GiB of weights
    assert sky.initial_delay_s(big.fit) > sky.initial_delay_s(small.fit) >= readiness.ENGINE_START_S
    # the download alone at the assumed throughput fits inside the delay
    assert sky.initial_delay_s(big.fit) >= big.fit.weight_gib * 2**30 / readiness.HF_DOWNLOAD_BYTES_PER_S


def test_probe_timeout_grows_with_the_model_per_gpu():
    small = fit_check(FitRequest(model="llama-3.1-8b", gpu="A100", gpus=8))
    big = fit_check(FitRequest(model="llama-3.1-405b", precision="awq", gpu="A100", gpus=8))
    assert sky.probe_timeout_s(small) == sky.MIN_PROBE_TIMEOUT_S
    assert sky.probe_timeout_s(big) > sky.probe_timeout_s(small)


def test_service_probe_is_an_authenticated_one_token_chat_completion():
    task = sky.render_task(spec(target={"cloud": "aws", "gpu": "A10G"}, workload=WORKLOAD, sky=SERVICE))
    probe = task["service"]["readiness_probe"]
    assert probe["path"] == "/v1/chat/completions"
    assert probe["post_data"]["max_tokens"] == 1
    assert probe["post_data"]["model"] == "llama-3.1-8b"
    assert probe["headers"] == {"Authorization": "Bearer $VLLM_API_KEY"}
    assert "autostop" not in task["resources"]


def test_replica_policy_follows_the_cost_review():
    from costing.money.review import cost_review

    s = spec(
        target={"cloud": "aws", "gpu": "A10G"},
        sky=SERVICE,
        workload={**WORKLOAD, "requests_per_day": 400_000, "peak_to_mean": 3.0},
        slo={"p90_latency_s": 20},
    )
    c = sky.choose(s)
    review = cost_review(c.spec, resolved=c.resolved)
    policy = sky.render_task(s)["service"]["replica_policy"]
    assert policy["max_replicas"] == review.replicas > 1
    assert policy["min_replicas"] < policy["max_replicas"]  # the mean needs fewer than the peak
    # the autoscaler's target is one replica's SLO-bound rate at the spec's target utilization (0.8)
    target = review.projection.requests_per_s * review.spec.target_utilization
    assert policy["target_qps_per_replica"] == pytest.approx(target, abs=0.01)
    assert policy["target_qps_per_replica"] <= target
    assert policy["min_replicas"] == review.fleet.min_replicas and policy["max_replicas"] == review.fleet.max_replicas


def test_spot_service_falls_back_to_on_demand():
    s = spec(
        target={"cloud": "gcp", "gpu": "L4", "pricing": "spot"},
        workload=WORKLOAD,
        sky=SERVICE,
        availability="standard",
    )
    task = sky.render_task(s)
    assert task["resources"]["use_spot"] is True
    policy = task["service"]["replica_policy"]
    assert policy["min_replicas"] == 1
    assert policy["dynamic_ondemand_fallback"] is True
    # SkyServe runs `base` of N replicas on-demand: with one replica that would be no spot at all
    assert "base_ondemand_fallback_replicas" not in policy


def test_spot_service_defaults_to_high_availability_and_prices_its_on_demand_replica():
    from costing.money.review import cost_review

    s = spec(target={"cloud": "gcp", "gpu": "L4", "pricing": "spot"}, workload=WORKLOAD, sky=SERVICE)
    policy = sky.render_task(s)["service"]["replica_policy"]
    assert policy["min_replicas"] == 2 and policy["base_ondemand_fallback_replicas"] == 1
    review = cost_review(s)
    on_demand = [c for c in review.cost_lines if c.pricing == "on-demand"]
    assert len(on_demand) == 1 and on_demand[0].replicas == 1
    assert on_demand[0].usd_per_hour == pytest.approx(review.offer.price("on-demand").usd_per_hour)
    assert review.monthly_usd == pytest.approx(sum(c.usd for c in review.cost_lines))


def test_part_time_schedule_is_refused_for_skypilot():
    for service in (False, True):
        with pytest.raises(UserError, match="schedule"):
            sky.render_task(
                spec(
                    target={"cloud": "aws", "gpu": "A10G"},
                    schedule={"hours_per_day": 8},
                    sky={**SERVICE, "service": True} if service else {},
                )
            )


def test_spot_service_with_several_replicas_keeps_one_on_demand():
    busy = {**WORKLOAD, "requests_per_day": 100_000, "peak_to_mean": 3.0}
    s = spec(
        target={"cloud": "gcp", "gpu": "L4", "pricing": "spot"},
        workload=busy,
        sky=SERVICE,
        slo={"p90_latency_s": 20},
    )
    policy = sky.render_task(s)["service"]["replica_policy"]
    assert policy["min_replicas"] >= 2
    assert policy["base_ondemand_fallback_replicas"] == 1 and policy["dynamic_ondemand_fallback"] is True


def test_service_without_workload_has_fixed_replicas():
    policy = sky.render_task(spec(target={"cloud": "aws", "gpu": "A10G", "replicas": 2}, sky=SERVICE))["service"][
        "replica_policy"
    ]
    assert policy == {"min_replicas": 2, "max_replicas": 2}


def test_any_of_runs_the_command_fitted_to_each_gpu():
    s = spec(target={}, sky={"any_of": [{"cloud": "runpod", "gpu": "A40"}, {"cloud": "aws", "gpu": "A10G"}]})
    task = sky.render_task(s)
    assert [p["cloud"] for p in task["resources"]["any_of"]] == ["runpod", "aws"]
    assert "cloud" not in task["resources"]
    lens = {c.fit.gpu.name: c.fit.max_model_len for c in sky.choices(s)}
    assert lens["A40"] > lens["A10G"]  # a 24 GB card holds a shorter context
    assert 'case "$GPU_NAME"' in task["run"]
    assert f"--max-model-len {lens['A40']}" in task["run"] and f"--max-model-len {lens['A10G']}" in task["run"]
    assert sky.cheapest(sky.choices(s)).offer.cloud == "runpod"


def test_multi_node_uses_vllms_own_multi_node_flags_not_ray():
    for name in ("llama-3.1-405b-aws-2x8xa100-fp8.yaml", "llama-3.1-405b-gcp-2x8xl4-awq.yaml"):
        task = yaml.safe_load((ROOT / "templates" / name).read_text())
        assert task["num_nodes"] == 2
        assert "--pipeline-parallel-size 2" in task["run"] and "--tensor-parallel-size 8" in task["run"]
        assert '--nnodes 2 --node-rank "$SKYPILOT_NODE_RANK" --master-addr "$HEAD_IP"' in task["run"]
        assert "ray" not in (task["run"] + task["setup"]).split()  # no Ray to install, start or wait for


def test_spot_on_runpod_is_refused():
    from costing.errors import UserError

    with pytest.raises(UserError, match="RunPod"):
        sky.render_task(spec(target={"cloud": "runpod", "gpu": "A40", "pricing": "spot"}))


def test_rendering_does_not_import_skypilot():
    code = (
        "import sys; from selfhost.skypilot import commands, render as sky;"
        "from costing.data.spec import spec_from_dict;"
        "sky.render_yaml(spec_from_dict({'model': 'llama-3.1-8b', 'target': {'cloud': 'aws', 'gpu': 'A10G'}}));"
        "print('sky' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_plan_does_not_import_skypilot():
    code = (
        "import sys, runpy; sys.argv = ['selfhost', 'plan', '--spec', 'examples/llama-3.1-8b-runpod-a40.yaml'];"
        "import selfhost.cli as c\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
        "print('SKY' if 'sky' in sys.modules else 'NOSKY', file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "NOSKY", out.stderr


# ----------------------------------------------------------------------------- the CLI


def test_render_cli_writes_the_yaml_to_stdout():
    out = console("render", "sky", "--spec", "templates/specs/llama-3.1-8b-gcp-l4.yaml")
    assert out.returncode == 0, out.stderr
    assert out.stdout == sky.render_spec_file(
        ROOT / "templates/specs/llama-3.1-8b-gcp-l4.yaml", source="templates/specs/llama-3.1-8b-gcp-l4.yaml"
    )


def test_render_cli_flags_service_and_any_of():
    out = console(
        "render",
        "sky",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "A10G,L4",
        "--spot",
        "--service",
        "--allow-plain-http",
        "--requests-per-day",
        "3000",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "250",
    )
    assert out.returncode == 0, out.stderr
    task = yaml.safe_load(out.stdout)
    assert [p["cloud"] for p in task["resources"]["any_of"]] == ["aws", "gcp"]
    assert task["resources"]["use_spot"] is True and "service" in task


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "llama-9", "--gpu", "A40"], "unknown model"),
        (["--model", "llama-3.1-8b", "--gpu", "Z80"], "unknown GPU"),
        (["--model", "llama-3.1-70b", "--gpu", "L4", "--gpus", "1"], "does not fit"),
        (["--model", "llama-3.1-8b", "--gpu", "A40", "--cloud", "runpod", "--spot"], "RunPod"),
        (["--model", "llama-3.1-8b", "--offer", "runpod-a40x1-community"], "Community"),
    ],
)
def test_render_cli_refuses_bad_input_with_one_line(args, words):
    out = console("render", "sky", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.stderr


@pytest.fixture(scope="module")
def sky_offline(tmp_path_factory):
    """The environment of a `launch sky --dry-run`: SkyPilot's HOME with our catalogs, AWS (only) through moto."""
    import sky_stand_ins

    home = sky_stand_ins.sky_home(tmp_path_factory.mktemp("skyhome"))
    with sky_stand_ins.moto_aws() as aws:
        yield sky_stand_ins.sky_env(home, aws)


def test_launch_dry_run_prints_review_and_exact_command(tmp_path, sky_offline):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/llama-3.1-8b-runpod-a40.yaml"),
        "--dry-run",
        cwd=tmp_path,
        env=sky_offline,
    )
    assert out.returncode == 0, out.stderr
    assert "dry run, nothing launched" in out.stdout
    # SkyPilot's optimizer ran on the YAML: RunPod is not enabled here (only AWS has credentials).
    assert "review:   runpod 1x_A40_SECURE US, $0.4400/h" in out.stdout
    assert "SkyPilot's optimizer found nowhere to launch it" in out.stdout and "sky check" in out.stdout
    cmd = (
        f"sky launch -c llama-3-1-8b-runpod-a40 -i {sky.DEV_CLUSTER_MINUTES} --down --wait-for none "
        f"{ROOT / 'templates/llama-3.1-8b-runpod-a40.yaml'} --secret HF_TOKEN --secret VLLM_API_KEY"
    )
    assert cmd in out.stdout
    assert "runpod-a40x1-secure" in out.stdout  # the review priced the offer SkyPilot launches
    assert not (tmp_path / ".selfhost").exists()  # a rendered file is launched as is


def test_launch_dry_run_shows_skypilots_choice_beside_the_review(tmp_path, sky_offline):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml"),
        "--dry-run",
        cwd=tmp_path,
        env=sky_offline,
    )
    assert out.returncode == 0, out.stderr
    review = next(ln for ln in out.stdout.splitlines() if ln.startswith("review:"))
    chosen = next(ln for ln in out.stdout.splitlines() if ln.startswith("SkyPilot:"))
    price = review.rsplit(",", 1)[1]
    # SkyPilot ran `sky check` (AWS through moto), mapped the zone ID the review priced to the
    # account's zone name and picked the same instance at the same price.
    assert review.startswith("review:   aws g5.2xlarge us-east-1 use1-az") and chosen.endswith(price)
    assert chosen.startswith("SkyPilot: aws g5.2xlarge us-east-1 us-east-1")
    assert "SkyPilot's optimizer picks what the review priced" in out.stdout
    assert "<sky-payload>" not in out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing in the current folder: the YAML went to a temp folder
    written = Path(out.stdout.split("The task is in ", 1)[1].split(";", 1)[0])
    assert written.name == "llama-3-1-8b-aws-a10g-spot-svc.yaml" and written.parent.name.startswith("selfhost-sky-")
    written.unlink()
    written.parent.rmdir()


def test_launch_dry_run_of_a_spec_writes_the_task(tmp_path, sky_offline):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-gcp-l4-spot-service.yaml"),
        "--dry-run",
        "--out",
        "rendered",
        cwd=tmp_path,
        env=sky_offline,
    )
    assert out.returncode == 0, out.stderr
    written = tmp_path / "rendered" / "llama-3-1-8b-gcp-l4-spot-svc.yaml"
    assert written.read_text() == (ROOT / "templates/llama-3.1-8b-gcp-l4-spot-service.yaml").read_text().replace(
        " from templates/specs/llama-3.1-8b-gcp-l4-spot-service.yaml", ""
    )
    assert f"sky serve up -n llama-3-1-8b-gcp-l4-spot-svc {written.relative_to(tmp_path)}" in out.stdout
    assert "base_ondemand_fallback_replicas" in out.stdout  # what the on-demand replica adds to the review
    assert "dynamic_ondemand_fallback" in out.stdout


def test_launch_without_secrets_launches_nothing(tmp_path):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml"),
        cwd=tmp_path,
        env={"HF_TOKEN": "hf_x"},
    )
    assert out.returncode == 2
    assert "VLLM_API_KEY" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""  # refused before the review is printed
    assert not (tmp_path / ".selfhost").exists()


def test_launch_over_budget_stops_before_anything(tmp_path):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.3-70b-aws-8xa100.yaml"),
        "--max-monthly-usd",
        "100",
        "--dry-run",
        cwd=tmp_path,
        env={"HF_TOKEN": "a", "VLLM_API_KEY": "b"},
    )
    assert out.returncode == 2
    assert "budget" in out.stderr and "sky launch" not in out.stdout
    assert not (tmp_path / ".selfhost").exists()


def test_launch_refuses_an_edited_template(tmp_path):
    edited = tmp_path / "t.yaml"
    edited.write_text(
        (ROOT / "templates/llama-3.1-8b-aws-a10g.yaml").read_text().replace("--max-num-seqs 256", "--max-num-seqs 999")
    )
    out = console("launch", "sky", str(edited), "--dry-run", cwd=tmp_path)
    assert out.returncode == 2 and "differs" in out.stderr


def test_launch_command_passes_secrets_by_name_only():
    cmd = __import__("selfhost.skypilot.launch", fromlist=["x"]).sky_command("c1", Path("t.yaml"), False, 30, False)
    assert cmd == [
        "sky",
        "launch",
        "-c",
        "c1",
        "-i",
        "30",
        "--down",
        "--wait-for",
        "none",
        "t.yaml",
        "--secret",
        "HF_TOKEN",
        "--secret",
        "VLLM_API_KEY",
    ]


def test_any_of_refuses_one_gpu_type_with_two_settings():
    from costing.errors import UserError

    s = spec_from_dict(
        {
            "model": "llama-3.1-70b",
            "precision": "awq",
            "sky": {"any_of": [{"cloud": "aws", "gpu": "A10G", "gpus": 4}, {"cloud": "aws", "gpu": "A10G", "gpus": 8}]},
        }
    )
    with pytest.raises(UserError, match="different vLLM settings"):
        sky.render_task(s)


def test_launch_runs_sky_with_the_secrets_in_its_environment_only(tmp_path):
    """A stand-in `sky` first on PATH records what it was given; SkyPilot's parser runs for real first."""
    from selfhost.skypilot.optimizer_catalog import write_catalog

    home = tmp_path / "home"
    write_catalog(home)  # SkyPilot's parser reads its catalogs from HOME
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sky-call.json"
    fake = bin_dir / "sky"
    fake.write_text(f"""#!{sys.executable}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "hf": os.environ.get("HF_TOKEN"), "key": os.environ.get("VLLM_API_KEY")}},
          open({str(record)!r}, "w"))
sys.exit(3)
""")
    fake.chmod(0o755)
    template = ROOT / "templates/llama-3.1-8b-runpod-a40.yaml"
    out = console(
        "launch",
        "sky",
        str(template),
        "-c",
        "dev1",
        "-i",
        "30",
        cwd=tmp_path,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(home),
            "HF_TOKEN": "hf_abc",
            "VLLM_API_KEY": "key_xyz",
        },
    )
    assert out.returncode == 3, out.stderr  # sky's exit code is passed on
    call = __import__("json").loads(record.read_text())
    assert call["argv"] == [
        "launch",
        "-c",
        "dev1",
        "-i",
        "30",
        "--down",
        "--wait-for",
        "none",
        str(template),
        "--secret",
        "HF_TOKEN",
        "--secret",
        "VLLM_API_KEY",
    ]
    assert (call["hf"], call["key"]) == ("hf_abc", "key_xyz")
    assert "hf_abc" not in out.stdout + out.stderr and "key_xyz" not in out.stdout + out.stderr


# ----------------------------------------------------------------------------- the shell scripts, run


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _run_script(
    tmp_path: Path, script: str, gpu_name: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, list]:
    """Run a rendered script under bash with stand-ins for nvidia-smi and vllm only (tests/sky_scripts.py)."""
    import sky_scripts

    out, calls = sky_scripts.run_script(tmp_path, script, gpu_name, env)
    return out, [c["argv"] for c in calls]


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_setup_and_run_scripts_are_valid_bash(spec_path):
    task = yaml.safe_load((ROOT / "templates" / spec_path.name).read_text())
    for key in ("setup", "run"):
        out = subprocess.run(["bash", "-n", "-c", task[key]], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{key}: {out.stderr}"


@pytest.mark.parametrize("gpu, smi", [("A40", "NVIDIA A40"), ("A10G", "NVIDIA A10G"), ("L4", "NVIDIA L4")])
def test_any_of_run_starts_the_vllm_fitted_to_the_gpu_found(tmp_path, gpu, smi):
    task = yaml.safe_load((ROOT / "templates" / "llama-3.1-8b-any.yaml").read_text())
    out, calls = _run_script(tmp_path, task["run"], smi, {"VLLM_API_KEY": "sk-test-key-0123456789"})
    assert out.returncode == 0, out.stderr
    found = sky.choices(load_spec(ROOT / "templates" / "specs" / "llama-3.1-8b-any.yaml"))
    fitted = next(c for c in found if c.fit.gpu.name == gpu)
    assert calls == [vllm_serve_argv(fitted.fit.settings)]
    # the auth layer vLLM's --middleware loads, written by the run script itself
    assert (tmp_path / "home" / ".selfhost" / "python" / "selfhost_auth.py").read_bytes() == auth_install.source()


def test_any_of_run_refuses_a_gpu_it_has_no_fit_for(tmp_path):
    task = yaml.safe_load((ROOT / "templates" / "llama-3.1-8b-any.yaml").read_text())
    out, calls = _run_script(tmp_path, task["run"], "NVIDIA H100 80GB HBM3", {"VLLM_API_KEY": "sk-test-key-0123456789"})
    assert out.returncode == 1 and "no fitted vLLM command" in out.stderr and calls == []


@pytest.mark.parametrize("name", ["llama-3.1-405b-aws-2x8xa100-fp8", "llama-3.1-405b-gcp-2x8xl4-awq"])
def test_multi_node_run_starts_the_head_and_a_headless_worker(tmp_path, name):
    """The run script on each node, as SkyPilot runs it (its node variables; no `ray` on PATH): the head
    serves, the worker joins it headless at the head's address, each announcing its own IP, and both return."""
    import sky_scripts

    task = yaml.safe_load((ROOT / "templates" / f"{name}.yaml").read_text())
    fitted = sky.choose(load_spec(ROOT / "templates" / "specs" / f"{name}.yaml")).fit.settings
    ips = ["10.0.0.1", "10.0.0.2"]
    smi = "NVIDIA L4" if "l4" in name else "NVIDIA A100-SXM4-40GB"
    for rank in (0, 1):
        env = sky_scripts.node_env(rank, ips, VLLM_API_KEY="sk-test-key-0123456789")
        out, calls = sky_scripts.run_script(tmp_path / f"node{rank}", task["run"], smi, env, timeout=30)
        assert out.returncode == 0, out.stderr  # no `ray: command not found`, no endless wait for a cluster
        assert len(calls) == 1
        (call,) = calls
        role = NodeRole(2, str(rank), ips[0])
        assert call["argv"] == vllm_serve_argv(fitted, node=role)
        assert ("--headless" in call["argv"]) == (rank > 0)
        assert call["env"]["VLLM_HOST_IP"] == ips[rank] and call["env"]["VLLM_API_KEY"] == "sk-test-key-0123456789"
        assert call["env"]["PYTHONPATH"].startswith(f"{tmp_path}/node{rank}/home/.selfhost/python")


def test_setup_installs_the_pinned_vllm_and_downloads_into_hf_home(tmp_path):
    task = yaml.safe_load((ROOT / "templates" / "llama-3.1-70b-aws-4xa10g-awq.yaml").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "python3.log"
    _stub(bin_dir, "python3", f'printf "%s|%s\\n" "$HF_HOME" "$*" >> {log}')
    out = subprocess.run(
        ["bash", "-c", task["setup"]],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_TOKEN": "t"},
    )
    assert out.returncode == 0, out.stderr
    install, download = log.read_text().splitlines()
    hf_home = f"{tmp_path}/.cache/huggingface"
    assert install == f"{hf_home}|-m pip install --quiet vllm=={sky.VLLM_VERSION}"
    repo = sky.choose(load_spec(ROOT / "templates/specs/llama-3.1-70b-aws-4xa10g-awq.yaml")).fit.settings.model_repo
    assert download.startswith(f"{hf_home}|-c ") and f"snapshot_download({repo!r}" in download
    assert "original/*" in download


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_plan_prices_the_offer_the_template_launches(spec_path):
    """`selfhost plan --spec` on a template's spec costs what SkyPilot will launch (secure RunPod, cheapest any_of)."""
    from costing.data.resolve import resolve

    s = load_spec(spec_path)
    planned = resolve(s)
    launched = sky.cheapest(sky.choices(s))
    assert planned.offer.id == launched.offer.id
    assert planned.hourly_usd == pytest.approx(launched.hourly_usd)


def test_any_of_target_must_be_the_cheapest_candidate():
    from costing.errors import UserError

    s = spec(
        target={"offer": "aws-g5.xlarge"},
        sky={"any_of": [{"cloud": "runpod", "gpu": "A40"}, {"cloud": "aws", "gpu": "A10G"}]},
    )
    with pytest.raises(UserError, match=r"not the cheapest any_of candidate.*runpod-a40x1-secure"):
        sky.choices(s)


def test_secrets_from_the_store_are_refused_for_a_service(tmp_path):
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml"),
        "--secrets-from-store",
        "--dry-run",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and out.stdout == ""
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "literal 'Bearer $VLLM_API_KEY'" in line and "--secret-file" in line


def test_secrets_from_the_store_pass_no_secret_flag_for_a_dev_cluster():
    from selfhost.skypilot import launch

    cmd = launch.sky_command("c1", Path("t.yaml"), False, 30, False, "store")
    assert "--secret" not in cmd and "--secret-file" not in cmd
    launch.check_secret_source("store", False, None)  # a dev cluster has no probe: accepted


def test_secret_file_readable_by_others_is_refused(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("HF_TOKEN=hf\nVLLM_API_KEY=k\n")
    secrets.chmod(0o644)
    args = ("launch", "sky", str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml"), "--dry-run")
    out = console(*args, "--secret-file", str(secrets), cwd=tmp_path)
    assert out.returncode == 2 and f"chmod 600 {secrets}" in out.stderr and out.stdout == ""
    secrets.write_text("HF_TOKEN=hf\n")
    secrets.chmod(0o600)
    out = console(*args, "--secret-file", str(secrets), cwd=tmp_path)
    assert out.returncode == 2 and "lacks VLLM_API_KEY" in out.stderr


def test_secret_file_goes_to_sky_as_secret_file(tmp_path):
    from selfhost.skypilot import launch

    secrets = tmp_path / "secrets.env"
    cmd = launch.sky_command("s1", Path("t.yaml"), True, 30, False, "file", secrets)
    assert cmd[-2:] == ["--secret-file", str(secrets)] and "--secret" not in cmd


def test_multi_node_uses_the_best_network_tier_where_the_cloud_has_one():
    for path in (ROOT / "templates").glob("*.yaml"):
        task = yaml.safe_load(path.read_text())
        multi = task.get("num_nodes", 1) > 1
        assert (task["resources"].get("network_tier") == "best") == (
            multi and task["resources"].get("cloud") in ("aws", "gcp")
        ), path.name
        assert ("export VLLM_HOST_IP" in task["run"]) == multi, path.name


def test_405b_fp8_fits_one_p4de_node_cheaper_than_two_p4d():
    one = load_spec(ROOT / "templates/specs/llama-3.1-405b-aws-8xa100-80gb-fp8.yaml")
    two = load_spec(ROOT / "templates/specs/llama-3.1-405b-aws-2x8xa100-fp8.yaml")
    (c1,), (c2,) = sky.choices(one), sky.choices(two)
    assert (c1.fit.nodes, c1.fit.gpus_per_node, c1.offer.gpu) == (1, 8, "A100-80GB")
    assert c1.hourly_usd < c2.hourly_usd and c2.fit.nodes == 2
    assert "num_nodes" not in sky.render_task(one)


def _store_spec(store: str = "s3://acme-llm-weights/llama", path: str = "llama-3.3-70b-aws-8xa100-spot-service.yaml"):
    spec = load_spec(ROOT / "templates/specs" / path)
    return spec.model_copy(update={"sky": spec.sky.model_copy(update={"weights_store": store})})


def test_weights_bucket_is_mounted_filled_once_and_served_from(tmp_path):
    spec = _store_spec()
    task = sky.render_task(spec)
    assert task["file_mounts"] == {"/weights": {"source": "s3://acme-llm-weights/llama", "mode": "MOUNT_CACHED"}}
    repo = sky.choose(spec).fit.settings.model_repo
    assert f"vllm serve /weights/{repo} " in task["run"] and "export HF_HUB_OFFLINE=1" in task["run"]
    # The setup fills the bucket only when the marker is missing: a replacement replica downloads nothing.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "python3.log"
    _stub(bin_dir, "python3", f'echo "$*" >> {log}')
    _stub(bin_dir, "touch", f'echo "touch $*" >> {log}')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = task["setup"].replace("/weights", str(tmp_path / "weights"))
    first = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    calls = log.read_text().splitlines()
    assert "snapshot_download" in calls[1] and f"local_dir='{tmp_path}/weights/{repo}'" in calls[1]
    assert calls[2] == f"touch {tmp_path}/weights/{repo}/.selfhost-complete"
    (tmp_path / "weights" / repo).mkdir(parents=True)
    (tmp_path / "weights" / repo / ".selfhost-complete").write_text("")
    log.unlink()
    again = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and not any("snapshot_download" in c for c in log.read_text().splitlines())


def test_weights_bucket_shortens_the_probe_delay_and_is_costed():
    from costing.money.review import cost_review

    spec = _store_spec()
    plain = load_spec(ROOT / "templates/specs/llama-3.3-70b-aws-8xa100-spot-service.yaml")
    fit = sky.choose(spec).fit
    with_store = sky.render_task(spec)["service"]["readiness_probe"]["initial_delay_seconds"]
    from_hub = sky.render_task(plain)["service"]["readiness_probe"]["initial_delay_seconds"]
    assert with_store == sky.initial_delay_s(fit, "s3://acme-llm-weights/llama") < from_hub
    assert with_store >= readiness.ENGINE_START_S + fit.weight_gib * 1024**3 / sky.BUCKET_READ_BYTES_PER_S
    line = next(x for x in cost_review(spec).cost_lines if x.item.startswith("weights bucket"))
    assert line.usd == pytest.approx(fit.weight_gib * 1024**3 / 1e9 * 0.023, rel=0.01)
    assert not any(x.item.startswith("weights bucket") for x in cost_review(plain).cost_lines)


@pytest.mark.parametrize(
    ("store", "path", "words"),
    [
        ("gs://acme-weights/llama", "llama-3.3-70b-aws-8xa100-spot-service.yaml", "across clouds"),
        ("s3://acme-weights/llama", "llama-3.1-8b-runpod-a40-service.yaml", "bucket on runpod is not offered"),
    ],
)
def test_weights_bucket_on_another_cloud_is_refused(store, path, words):
    with pytest.raises(UserError, match=words):
        sky.render_task(_store_spec(store, path))


def test_weights_bucket_must_be_a_bucket_url():
    with pytest.raises(Exception, match="weights_store"):
        spec_from_dict({"model": "llama-3.1-8b", "sky": {"weights_store": "/mnt/weights"}})


def test_launch_out_must_be_a_folder(tmp_path):
    (tmp_path / "taken").write_text("")
    out = console(
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml"),
        "--dry-run",
        "--out",
        "taken",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and out.stdout == "" and "is a file" in out.stderr


# ----------------------------------------------------------------------------- names are data, not paths


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--name", "../../escape-x"], "name '../../escape-x' is not a SkyPilot name"),
        (["--name", "Bad Name!"], "name 'Bad Name!' is not a SkyPilot name"),
        (["--cluster", "a;b"], "--cluster 'a;b' is not a SkyPilot name"),
        (["--cluster", "bad name;rm -rf ~"], "is not a SkyPilot name"),
        (["--name", "-lead"], "is not a SkyPilot name"),
    ],
)
def test_launch_refuses_a_name_that_is_not_a_skypilot_name(tmp_path, args, words):
    deep = tmp_path / "a" / "b"
    temp = deep / "tmp"
    temp.mkdir(parents=True)
    spec_file = str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml")
    for extra in ([], ["--out", "rendered"]):
        out = console("launch", "sky", spec_file, *args, "--dry-run", *extra, cwd=deep, env={"TMPDIR": str(temp)})
        assert out.returncode == 2 and out.stdout == "", out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Fix:" in lines[0]
        assert _files(tmp_path) == [] and list(temp.iterdir()) == []  # nothing written, no temp folder left


@pytest.mark.parametrize("name", ["../../escape-x", "Bad Name!", "a/b"])
def test_render_refuses_a_name_that_is_not_a_skypilot_name(tmp_path, name):
    spec_file = str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml")
    out = console("render", "sky", "--spec", spec_file, "--name", name, "--out", "t.yaml", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
    assert "not a SkyPilot name" in out.stderr and _files(tmp_path) == []


def test_a_spec_file_name_is_checked_too():
    with pytest.raises(UserError, match="not a SkyPilot name"):
        sky.render_task(spec(name="x;y", target={"cloud": "aws", "gpu": "A10G"}))
    sky.render_task(spec(name="llama.dev_1-a", target={"cloud": "aws", "gpu": "A10G"}))  # SkyPilot's rule allows it


@pytest.mark.parametrize(
    "out_arg, words",
    [("missing/task.yaml", "--out folder 'missing' does not exist"), ("folder", "--out 'folder' is a folder")],
)
def test_render_out_into_a_missing_folder_or_onto_a_folder_is_one_line(tmp_path, out_arg, words):
    (tmp_path / "folder").mkdir()
    out = console(
        "render",
        "sky",
        "--spec",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml"),
        "--out",
        out_arg,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr
    assert _files(tmp_path) == []


def test_a_refused_launch_leaves_no_temp_folder(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = console(  # a real launch without the secrets: refused before anything
        "launch",
        "sky",
        str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml"),
        cwd=tmp_path,
        env={"TMPDIR": str(temp)},
    )
    assert out.returncode == 2 and "VLLM_API_KEY" in out.stderr
    assert list(temp.iterdir()) == []


_REJECTED_DRY_RUN = """
import dataclasses, json, sys, tempfile
from pathlib import Path
from costing.errors import UserError
from costing.data.spec import load_spec
from selfhost.skypilot import launch
plan = launch.plan_launch(load_spec(Path(sys.argv[1])))
report = {"temp_parent": str(plan.temp_dir.parent)}
for key, bad in (
    ("yaml", dataclasses.replace(plan, yaml_text=plan.yaml_text.replace("accelerators:", "acceleratorz:"))),
    ("name", dataclasses.replace(plan, name="9-starts-with-a-digit")),
):
    printed = []
    try:
        launch.execute(bad, dry_run=True, echo=printed.append)
        report[key] = "accepted"
    except UserError as err:
        report[key] = err.line()
    report[key + "_printed"] = printed
    report[key + "_temp_left"] = plan.temp_dir.exists()
print(json.dumps(report))
"""


def test_a_dry_run_skypilot_rejects_exits_2_and_leaves_nothing(tmp_path):
    """SkyPilot's own parser and name rule run first in a dry run: what it rejects is refused, nothing printed
    or kept (SkyPilot itself runs in a child process with a HOME holding our catalogs)."""
    import sky_stand_ins

    home = sky_stand_ins.sky_home(tmp_path / "home")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**sky_stand_ins.sky_env(home, {}), "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    spec_file = str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g.yaml")
    out = subprocess.run(
        [sys.executable, "-c", _REJECTED_DRY_RUN, spec_file], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert report["temp_parent"] == str(temp)
    assert report["yaml"].startswith("error: SkyPilot rejects the rendered YAML")
    assert report["name"].startswith("error: SkyPilot rejects the name") and "9-starts-with-a-digit" in report["name"]
    assert report["yaml_printed"] == [] and report["name_printed"] == []
    assert not report["yaml_temp_left"] and list(temp.iterdir()) == []


def test_name_rules_are_skypilots_own():
    """The copies of SkyPilot's name regexes (rendering does not import SkyPilot) are SkyPilot's constants."""
    code = (
        "import json; from sky.skylet import constants; from sky import task;"
        "print(json.dumps([constants.CLUSTER_NAME_VALID_REGEX, task._VALID_NAME_REGEX]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert __import__("json").loads(out.stdout.strip().splitlines()[-1]) == [
        sky.SKY_CLUSTER_NAME.pattern,
        sky.SKY_TASK_NAME.pattern,
    ]


# ----------------------------------------------------------------------------- HTTPS for SkyServe services


def test_a_service_renders_skyserves_tls_from_the_spec():
    task = sky.render_task(spec(target={"cloud": "aws", "gpu": "A10G"}, sky=SERVICE))
    assert task["service"]["tls"] == {"keyfile": "~/tls/key.pem", "certfile": "~/tls/cert.pem"}


def test_a_service_without_tls_is_refused_unless_plain_http_is_opted_in():
    with pytest.raises(UserError, match=r"plain HTTP.*sky\.allow_plain_http: true \(or --allow-plain-http\)"):
        sky.render_task(spec(target={"cloud": "aws", "gpu": "A10G"}, sky={"service": True}))
    task = sky.render_task(
        spec(target={"cloud": "aws", "gpu": "A10G"}, sky={"service": True, "allow_plain_http": True})
    )
    assert "tls" not in task["service"]


@pytest.mark.parametrize(
    "sky_section, words",
    [
        ({"service": True, "tls_keyfile": "k.pem"}, "tls_certfile (--tls-certfile) is missing"),
        ({"service": True, "tls_certfile": "c.pem"}, "tls_keyfile (--tls-keyfile) is missing"),
        ({"tls_keyfile": "k.pem", "tls_certfile": "c.pem"}, "apply to a SkyServe service"),
        ({"allow_plain_http": True}, "applies to a SkyServe service"),
        ({**SERVICE, "allow_plain_http": True}, "drop allow_plain_http"),
    ],
)
def test_tls_settings_that_do_not_make_sense_are_refused(sky_section, words):
    with pytest.raises(UserError, match=re.escape(words)):
        sky.render_task(spec(target={"cloud": "aws", "gpu": "A10G"}, sky=sky_section))


def test_render_cli_refuses_a_plain_http_service_in_one_line_naming_the_opt_in(tmp_path):
    args = ("render", "sky", "--model", "llama-3.1-8b", "--gpu", "A10G", "--service", "--out", "task.yaml")
    out = console(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "" and _files(tmp_path) == []
    (line,) = out.stderr.strip().splitlines()
    assert "plain HTTP" in line and "--allow-plain-http" in line and "sky.allow_plain_http: true" in line
    assert "--tls-keyfile" in line and "--tls-certfile" in line
    out = console(*args, "--tls-keyfile", "k.pem", "--tls-certfile", "c.pem", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    task = yaml.safe_load((tmp_path / "task.yaml").read_text())
    assert task["service"]["tls"] == {"keyfile": "k.pem", "certfile": "c.pem"}
    out = console(*args, "--allow-plain-http", cwd=tmp_path)
    assert out.returncode == 0 and "tls" not in yaml.safe_load((tmp_path / "task.yaml").read_text())["service"]


def test_launch_hint_is_https_with_tls_and_the_files_must_exist_to_launch(tmp_path, sky_offline):
    spec_file = str(ROOT / "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml")
    home = Path(sky_offline["HOME"])
    out = console("launch", "sky", spec_file, "--dry-run", "--out", "r", cwd=tmp_path, env=sky_offline)
    assert out.returncode == 0, out.stderr
    hint = next(ln for ln in out.stdout.splitlines() if ln.startswith("then: curl"))
    # SkyPilot's `sky serve status --endpoint` prints https://HOST:PORT for a service with service.tls
    assert '"$(sky serve status llama-3-1-8b-aws-a10g-spot-svc --endpoint)/v1/chat/completions"' in hint
    assert hint.endswith("# https:// (service.tls)") and "http://$(" not in hint
    assert "note: TLS file ~/.selfhost/tls/key.pem not found here" in out.stdout
    real = console("launch", "sky", spec_file, cwd=tmp_path, env={**sky_offline, "HF_TOKEN": "h", "VLLM_API_KEY": "k"})
    assert real.returncode == 2 and real.stdout == ""
    (line,) = real.stderr.strip().splitlines()
    assert "TLS file ~/.selfhost/tls/key.pem not found" in line and "nothing was launched" in line
    assert not (home / ".selfhost").exists()
