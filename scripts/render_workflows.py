"""Regenerate examples/ci/github/{cost-diff,deploy-<cloud>}.yml: what `selfhost init deploy/llama-<cloud> --cloud
<cloud> --ci github` writes for a repository on `main`, and price-watch.yml, the weekly `selfhost watch` of the
same folder (`make templates`; a test fails when one is out of date).

`--check` writes nothing and exits 1 when a shipped example differs from what the templates render now.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selfhost.scaffold.ci_github import Repo, workflows
from selfhost.scaffold.kit_wheel import WHEEL_PREFIX
from selfhost.scaffold.watch_workflow import price_watch_workflow
from selfhost.versions import kit_version

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "ci" / "github"
CLOUDS = ("aws", "gcp", "runpod", "kubernetes", "sky")
REGION = {"aws": "us-east-1", "kubernetes": "us-east-1"}  # kubernetes: an EKS cluster (`--cluster eks`)
CLUSTER = {"kubernetes": "eks"}


def rendered() -> dict[Path, str]:
    version = kit_version()
    wheel = f"{WHEEL_PREFIX}{version}-py3-none-any.whl"
    out: dict[Path, str] = {}
    for cloud in CLOUDS:
        repo = Repo(Path("/repo"), "main", f"deploy/llama-{cloud}")
        flows = workflows(repo, cloud, wheel, version, REGION.get(cloud), CLUSTER.get(cloud))
        out[OUT / f"deploy-{cloud}.yml"] = flows[repo.workflow("deploy")]
        if cloud == "aws":
            out[OUT / "cost-diff.yml"] = flows[repo.workflow("cost-diff")]
            watch = price_watch_workflow(repo, wheel, version)
            out[OUT / "price-watch.yml"] = watch[repo.workflow("price-watch")]
    return out


def main(argv: list[str]) -> int:
    stale = [p for p, text in rendered().items() if not p.exists() or p.read_text() != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run `make templates`", file=sys.stderr)
        return 1 if stale else 0
    for p, text in rendered().items():
        p.write_text(text)
    print(f"wrote {len(rendered())} workflows to {OUT.relative_to(ROOT)} ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
