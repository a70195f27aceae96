"""Packaging hook: the wheel ships the Pulumi programs and the example specs where they live in the repo.

Everything else is declared in pyproject.toml. `stacks/<cloud>/` (the Pulumi projects users run) and
`examples/` stay at the top of the repository; building the wheel copies them under
`selfhost/_bundled/`, where `selfhost.bundled` finds them after `pip install` / `pipx install`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source folder in the repository, glob patterns): copied to selfhost/_bundled/<source folder>/
BUNDLED = (
    ("stacks", ("*/__main__.py", "*/Pulumi.yaml", "*/Pulumi.dev.yaml")),
    ("examples", ("*.yaml",)),
)


class BuildPyWithBundled(build_py):
    """build_py, then the stack programs and examples into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "selfhost" / "_bundled"
        shutil.rmtree(target, ignore_errors=True)  # no stale copy of a file since removed from the repo
        for folder, patterns in BUNDLED:
            for pattern in patterns:
                for src in sorted((HERE / folder).glob(pattern)):
                    dest = target / folder / src.relative_to(HERE / folder)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)


setup(cmdclass={"build_py": BuildPyWithBundled})
