"""Nothing the project tells anyone to install can fetch another project (issue 20). (The init example in
docs/guides/init.md is run as a console session by tests/test_docs.py, like every other.)

The distribution is `selfhost-llm`, not published on a package index; the bare name `selfhost` there is an
unrelated project. Every `pip install` / `pipx install` line in the README, the docs, the Makefile, the shipped
workflows and templates, and in what `selfhost init` writes (its README, requirements.txt, workflows) may install
this kit only as a path (a `selfhost_llm-*.whl`, a clone, `-r requirements.txt`), never by name.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from conftest import ROOT
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

OURS = {"selfhost", "selfhost-llm"}  # the other project's name, and ours (unpublished: a path only)
INSTALL = re.compile(r"\b(?:pip3?|pipx|-m pip)\s+install\b(.*)")


def install_targets(text: str) -> list[str]:
    """The requirement-like arguments of every pip/pipx install command in `text` (options dropped)."""
    found = []
    for line in text.splitlines():
        for m in INSTALL.finditer(line):
            rest = m.group(1).split("#", 1)[0].split("&&", 1)[0].split("|", 1)[0].split(";", 1)[0]
            try:
                words = shlex.split(rest)
            except ValueError:
                words = rest.split()
            skip = False
            for w in words:
                if skip:
                    skip = False
                    continue
                if w in ("-r", "-c", "--requirement", "--constraint", "-w", "-t", "--target", "--python"):
                    skip = w not in ("-r", "--requirement")  # requirements files are checked on their own
                    continue
                if not w.startswith("-"):
                    found.append(w)
    return found


def requirement_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "-"))]


def by_name_ours(target: str) -> bool:
    """True when `target` asks an index for this kit (or for the other `selfhost`) by name."""
    if target.startswith(("./", "/", "~", "$", '"$', "'")) or ".whl" in target or target in (".", ".."):
        return False
    try:
        name = Requirement(target).name
    except InvalidRequirement:
        return False
    return canonicalize_name(name) in OURS


def shipped_texts() -> dict[str, str]:
    files = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "examples").rglob("*.yml")) + sorted((ROOT / "examples").rglob("*.sh"))
    files += sorted((ROOT / "selfhost" / "scaffold" / "github").glob("*.yml"))
    files += sorted((ROOT / "templates").glob("*.yaml"))
    return {str(p.relative_to(ROOT)): p.read_text() for p in files if p.is_file()}


def test_the_checker_catches_installs_by_name():
    bad = [
        "pipx install 'selfhost[sky]'",
        "python -m pip install selfhost==0.1.0",
        'pip install "selfhost-llm[pulumi]>=0.1"',
        "pip install -q selfhost_llm",
    ]
    for line in bad:
        assert any(by_name_ours(t) for t in install_targets(line)), line
    good = [
        "pipx install './dist/selfhost_llm-0.1.0-py3-none-any.whl[sky]'",
        'python -m pip install "$KIT_WHEEL"',
        "venv/bin/pip install -r requirements.txt",
        "pip install -e '.[all,dev]'",
        "pip install 'vllm==0.32.0'",
    ]
    for line in good:
        assert not any(by_name_ours(t) for t in install_targets(line)), line
    assert by_name_ours("selfhost-llm[pulumi]==0.1.0") and not by_name_ours("./vendor/x.whl[pulumi]")


def test_no_shipped_document_or_workflow_installs_the_kit_by_name():
    offenders = [
        f"{where}: {t}" for where, text in shipped_texts().items() for t in install_targets(text) if by_name_ours(t)
    ]
    assert offenders == []
    # the package's own hints (errors that say how to add an extra) name the install path, not a name
    from selfhost.versions import install_hint

    assert not any(by_name_ours(t) for t in install_targets(install_hint("sky")))


@pytest.mark.parametrize("cloud", ["aws", "gcp", "runpod", "kubernetes", "sky"])
def test_what_init_writes_installs_only_the_vendored_wheel(tmp_path, cloud):
    from selfhost.scaffold import deployment_repo

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    files, _ = deployment_repo.files_for(tmp_path / "deploy" / cloud, cloud, "llama-3.1-8b", "bf16", "github", None)
    texts = {str(p.relative_to(tmp_path)): c for p, c in files.items() if isinstance(c, str)}
    assert any(k.startswith(".github/workflows/") for k in texts)
    offenders = [f"{w}: {t}" for w, text in texts.items() for t in install_targets(text) if by_name_ours(t)]
    reqs = requirement_lines(texts[f"deploy/{cloud}/requirements.txt"])
    assert offenders == [] and len(reqs) == 1 and not by_name_ours(reqs[0])
    assert re.fullmatch(r"\./vendor/selfhost_llm-[^/]+-py3-none-any\.whl\[(pulumi|sky)\]", reqs[0]), reqs
