"""The weekly price-watch workflow of a deployment folder (`selfhost watch` on fresh prices; one issue on a flip),
rendered from selfhost/scaffold/github/price-watch.yml like the cost-diff and deploy workflows."""

from __future__ import annotations

from pathlib import Path

from selfhost.scaffold.ci_github import TEMPLATES, Repo, _fill


def price_watch_workflow(repo: Repo, wheel_name: str, kit_version: str) -> dict[Path, str]:
    """{path: text} of the price-watch workflow for this deployment folder."""
    values = {"DEPLOY_DIR": repo.rel, "SLUG": repo.slug, "KIT_WHEEL_NAME": wheel_name, "KIT_VERSION": kit_version}
    return {repo.workflow("price-watch"): _fill((TEMPLATES / "price-watch.yml").read_text(), values)}
