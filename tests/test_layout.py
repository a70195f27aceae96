"""The layout the project promises: costing/ is the engine (no cloud, deploy or HTTP imports), selfhost/
is the tool, test stand-ins live under tests/, the project carries its own data, and no two product
modules share a name with different jobs."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

HEAVY = (
    "pulumi",
    "pulumi_aws",
    "pulumi_gcp",
    "pulumi_policy",
    "runpodinfra",
    "sky",
    "boto3",
    "botocore",
    "aiohttp",
    "httpx",
    "runpod",
    "google",
)
PRODUCT = ("costing", "selfhost")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of every import in a file, including imports inside functions."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_engine_imports_no_cloud_deploy_or_http_library():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_roots(p) & set(HEAVY))
        for p in _modules("costing")
        if _imported_roots(p) & set(HEAVY)
    }
    assert not offenders, f"costing/ must stay the engine; these import tool libraries: {offenders}"


def test_the_engine_does_not_reach_into_the_tool():
    offenders = [str(p.relative_to(ROOT)) for p in _modules("costing") if "selfhost" in _imported_roots(p)]
    assert not offenders, f"costing/ must not import selfhost/: {offenders}"


def test_importing_the_engine_loads_nothing_heavy():
    """Not only the source: importing every engine module in a fresh process loads none of them."""
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in _modules("costing")]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_stand_in_or_recorder_ships_in_the_product():
    """Test doubles (the streaming stand-in, the Pulumi mock recorder) live under tests/."""
    found = []
    for package in PRODUCT:
        for p in _modules(package):
            tree = ast.parse(p.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name in ("Recorder", "FakeServer", "StandIn"):
                    found.append(f"{p.relative_to(ROOT)}:{node.name}")
            if "fake_server" in p.name or "fake_vllm" in p.name:
                found.append(str(p.relative_to(ROOT)))
    assert not found, f"test stand-ins in the product: {found}"


def test_nothing_reads_the_shared_folder():
    """The project carries its own data: no path into ../shared in code, scripts or the Makefile."""
    files = [*_modules("costing"), *_modules("selfhost"), *sorted((ROOT / "scripts").iterdir()), ROOT / "Makefile"]
    offenders = [str(p.relative_to(ROOT)) for p in files if p.is_file() and "shared/calibration" in p.read_text()]
    assert not offenders, offenders


def test_no_two_product_modules_share_a_name_with_different_jobs():
    """Only package markers and each command group's `commands.py` (one job: register that group's
    commands) may repeat a name."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for package in PRODUCT:
        for p in _modules(package):
            by_name[p.name].append(str(p.relative_to(ROOT)))
    repeated = {n: paths for n, paths in by_name.items() if len(paths) > 1 and n not in ("__init__.py", "commands.py")}
    assert not repeated, f"module names used twice: {repeated}"


def test_every_command_group_registers_from_its_commands_module():
    for p in _modules("selfhost"):
        if p.name == "commands.py":
            assert "def register(" in p.read_text(), f"{p.relative_to(ROOT)} has no register()"


def test_each_stack_program_declares_its_own_clouds_resources():
    """stacks/<cloud>/__main__.py imports its cloud's provider itself (readable where Pulumi users look)."""
    providers = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "runpod": "runpodinfra"}
    for cloud, provider in providers.items():
        roots = _imported_roots(ROOT / "stacks" / cloud / "__main__.py")
        assert provider in roots, f"stacks/{cloud}/__main__.py does not import {provider}"
