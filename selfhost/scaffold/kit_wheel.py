"""The wheel of the running kit, for `selfhost init` to commit beside the spec (issue 20).

A deployment folder installs exactly the kit that wrote it: its wheel goes to `vendor/`, with a
`SHA256SUMS` the workflows check before installing, and `requirements.txt` names that file (no
distribution name is ever resolved on a package index: the bare name `selfhost` there is another project).

Where the wheel comes from, by how this kit was installed (PEP 610's direct_url.json):
- from a wheel file (`pip install ./selfhost_llm-….whl`, pipx): that file, if it still has the hash pip recorded;
- from a clone (`pip install -e .`, `make venv`, or the clone on the path): a wheel built from it now
  (`pip wheel --no-deps`);
- otherwise (a VCS URL, an index): refused, unless `--kit-wheel` names one; it must be this version.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from costing.errors import UserError
from selfhost.versions import DISTRIBUTION, direct_url, file_url_path, source_tree

WHEEL_PREFIX = DISTRIBUTION.replace("-", "_") + "-"
VENDOR = "vendor"
SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class KitWheel:
    name: str  # the wheel's file name
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def sums_text(self) -> str:
        """`sha256sum --check` input: the hash, two spaces, the path relative to the deployment folder."""
        return f"{self.sha256}  {VENDOR}/{self.name}\n"


def _wheel_version(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as whl:
            meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            text = whl.read(meta).decode()
    except (OSError, zipfile.BadZipFile, StopIteration):
        raise UserError(f"{path} is not a wheel", f"give a {WHEEL_PREFIX}*.whl file") from None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    if fields.get("Name", "").lower().replace("_", "-") != DISTRIBUTION:
        raise UserError(f"{path} is the wheel of {fields.get('Name')!r}, not {DISTRIBUTION}", "give this kit's wheel")
    return fields.get("Version", "")


def from_file(path: Path, version: str) -> KitWheel:
    """A given wheel: this kit's distribution at this version (the CI must run the kit that wrote the files)."""
    if not path.is_file():
        raise UserError(f"--kit-wheel {path} does not exist", f"give a {WHEEL_PREFIX}{version}-*.whl file")
    found = _wheel_version(path)
    if found != version:
        raise UserError(
            f"--kit-wheel {path} is selfhost {found}, but selfhost {version} is writing this folder",
            f"give the {version} wheel, or run the init of the kit version you want CI to install",
        )
    return KitWheel(path.name, path.read_bytes())


_BUILT: dict[Path, KitWheel] = {}  # one build per clone per process (tests run init many times in one process)


def _build(source: Path) -> Path:
    out = Path(tempfile.mkdtemp(prefix="selfhost-wheel-"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    built = sorted(out.glob(f"{WHEEL_PREFIX}*.whl"))
    if proc.returncode != 0 or not built:
        last = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise UserError(
            f"building this kit's wheel from {source} failed ({last[:200]})",
            f"build it yourself (pip wheel --no-deps -w dist {source}) and pass --kit-wheel dist/<the wheel>",
        )
    return built[0]


def current(version: str, given: Path | None = None) -> KitWheel:
    """The running kit's wheel (see the module docstring)."""
    if given is not None:
        return from_file(given, version)
    tree = source_tree()
    if tree is not None:  # running from a clone (an editable install, or on the path)
        if tree not in _BUILT:
            built = _build(tree)
            try:
                _BUILT[tree] = from_file(built, version)
            finally:
                built.unlink(missing_ok=True)
                built.parent.rmdir()
        return _BUILT[tree]
    direct = direct_url()
    path = file_url_path(direct.get("url", ""))
    if direct and path is not None and "archive_info" in direct and path.suffix == ".whl":
        recorded = (direct["archive_info"].get("hashes") or {}).get("sha256") or direct["archive_info"].get(
            "hash", ""
        ).removeprefix("sha256=")
        data = path.read_bytes() if path.is_file() else b""
        if not data or (recorded and hashlib.sha256(data).hexdigest() != recorded):
            raise UserError(
                f"the wheel this selfhost was installed from ({path}) is gone or has changed since",
                "pass --kit-wheel PATH with this version's wheel, so CI installs exactly the kit that wrote the files",
            )
        return KitWheel(path.name, data)
    how = "from a VCS URL" if direct and "vcs_info" in direct else "from a package index or an unknown source"
    raise UserError(
        f"this selfhost was installed {how}, and init commits the kit's own wheel beside the spec",
        f"pass --kit-wheel PATH (a {WHEEL_PREFIX}{version}-*.whl; from a clone: pip wheel --no-deps -w dist .)",
    )
