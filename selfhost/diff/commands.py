"""`selfhost diff`: what a change of deployment specs does to cost, capacity and break-even (issue 14).

Base specs come from files (`--base`) or from git (`--base-ref main` reads each head spec's path at that ref with
`git show`). Only the costing engine and git (a subprocess) are used: no cloud SDK, no HTTP client.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

import typer

from costing.errors import UserError


def resolve_ref(ref: str, folder: Path) -> str:
    """The commit `ref` names, as a full hex id: never handed to git as an option (`--output=FILE` would be one).

    Refused before git runs: a ref starting with `-`, or holding whitespace, control characters or `:`. Then
    `git rev-parse --verify --end-of-options REF^{commit}` (git >= 2.24) resolves it; only the hex id it prints
    goes on to `git show`."""
    if not ref or ref.startswith("-") or any(c.isspace() or ord(c) < 32 or c in ":\x7f" for c in ref):
        raise UserError(
            f"--base-ref {ref[:60]!r} is not a git branch, tag or commit",
            "give a ref such as main, origin/main or a commit id (it may not start with '-')",
        )
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise UserError("git is not installed", "install git, or pass the base spec with --base") from None
    commit = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        raise UserError(
            f"--base-ref {ref} is not a commit in the git repository of {folder}",
            "check --base-ref names a branch, tag or commit (fetch it first in a shallow CI clone)",
        )
    return commit


def base_spec_from_git(ref: str, path: Path) -> dict | None:
    """The spec at `path` as of git `ref` (None: the file does not exist at that ref, i.e. a new deployment)."""
    from costing.data.spec import parse_spec_yaml

    folder = path.absolute().parent
    while not folder.is_dir() and folder != folder.parent:  # a spec deleted with its folder
        folder = folder.parent
    rel = path.absolute().relative_to(folder).as_posix()
    commit = resolve_ref(ref, folder)
    proc = subprocess.run(["git", "show", f"{commit}:./{rel}"], cwd=folder, capture_output=True, timeout=60)
    if proc.returncode != 0:
        err = " ".join(proc.stderr.decode(errors="replace").split())
        if "exists on disk, but not in" in err or "does not exist in" in err:
            return None
        raise UserError(f"`git show {ref}:{path}` failed ({err[:200]})", "check --base-ref names a branch or commit")
    return parse_spec_yaml(proc.stdout, f"{path} at {ref}", "fix it on the base")


def _git_files(ref: str, path: Path):
    """(read, names) of the files near `path` as of git `ref` (selfhost.stack.folder_review's Reader, Lister)."""
    folder = path.absolute().parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    commit = resolve_ref(ref, folder)

    def rel(p: PurePosixPath) -> str:
        return Path(p).absolute().relative_to(folder).as_posix()

    def read(p: PurePosixPath) -> str | None:
        proc = subprocess.run(["git", "show", f"{commit}:./{rel(p)}"], cwd=folder, capture_output=True, timeout=60)
        return proc.stdout.decode(errors="replace") if proc.returncode == 0 else None

    def names(d: PurePosixPath) -> list[str]:
        where = rel(d)
        proc = subprocess.run(
            ["git", "ls-tree", "--name-only", commit, "--", f"./{where}/" if where != "." else "./"],
            cwd=folder,
            capture_output=True,
            timeout=60,
        )
        return [Path(line).name for line in proc.stdout.decode(errors="replace").splitlines()]

    return read, names


def _tree_files():
    """(read, names) of the working tree."""

    def read(p: PurePosixPath) -> str | None:
        return Path(p).read_text() if Path(p).is_file() else None

    def names(d: PurePosixPath) -> list[str]:
        return sorted(x.name for x in Path(d).iterdir()) if Path(d).is_dir() else []

    return read, names


def _stack_of(path: Path, ref: str | None = None):
    """The kit's Pulumi stack config beside the spec at `path` (at git `ref`, else in the working tree), or None."""
    from selfhost.stack.folder_review import stack_config

    read, names = _git_files(ref, path) if ref else _tree_files()
    return stack_config(PurePosixPath(path.as_posix()), read, names)


def _review(data: dict, where: str, stack=None) -> dict:
    """The spec's review; beside a kit Pulumi stack that deploys it, the stack's review (its load balancer,
    WAF and mirror rows included), which is what the stack's bill equals."""
    from costing.data.spec import spec_from_dict
    from costing.money.report import review_dict
    from costing.money.review import cost_review
    from costing.money.three_way import three_way

    try:
        if stack is None:
            review = cost_review(spec_from_dict(data))
        else:
            import tempfile

            import yaml

            from selfhost.stack.folder_review import stack_spec_review

            with tempfile.TemporaryDirectory() as tmp:
                spec_file = Path(tmp) / "spec.yaml"
                spec_file.write_text(yaml.safe_dump(data))
                review = stack_spec_review(stack, spec_file)
        review.three_way = three_way(review)  # managed endpoints and APIs beside the fleet, as `plan` shows
        doc = review_dict(review)
        if stack is not None:
            doc["deployed_by"] = f"the {stack.cloud} Pulumi stack ({stack.file})"
        return doc
    except UserError as err:
        raise UserError(f"{where}: {err.problem}", err.fix) from None


def _name(data: dict | None, path: Path) -> str:
    return str((data or {}).get("name") or path.stem)


def register(app: typer.Typer) -> None:
    @app.command()
    def diff(
        specs: list[Path] | None = typer.Argument(None, help="head spec files (with --base-ref)"),
        base: list[Path] | None = typer.Option(None, "--base", help="base spec (repeat; pairs with --head in order)"),
        head: list[Path] | None = typer.Option(None, "--head", help="head spec (repeat)"),
        base_ref: str | None = typer.Option(None, "--base-ref", help="read each head spec's base from this git ref"),
        max_monthly_usd: float | None = typer.Option(None, "--max-monthly-usd", help="gate: head total per month"),
        max_increase_usd: float | None = typer.Option(None, "--max-increase-usd", help="gate: monthly increase, $"),
        max_increase_percent: float | None = typer.Option(
            None, "--max-increase-percent", help="gate: monthly increase, %"
        ),
        fmt: str = typer.Option("table", "--format", help="table | markdown | json"),
        output: Path | None = typer.Option(None, "--output", help="also write the rendered diff to this file"),
        allow_unpriced: bool = typer.Option(
            False, "--allow-unpriced", help="gates on the priced totals though head rows are not priced"
        ),
    ) -> None:
        """Cost diff between base and head specs: offer, GPUs, replicas, monthly $, $/1M, SLO, break-even.

        Exit 2 when a gate is breached: the flags (--max-monthly-usd, --max-increase-usd, --max-increase-percent)
        and each head spec's own budget.max_monthly_usd (as `selfhost plan --spec` enforces it; base specs'
        budgets are not gates). The diff is printed (and written) first so a CI job can post it.
        """
        from costing.data.spec import read_spec_file
        from costing.money.diff import FORMATS, DiffInput, Gates, check_gate_values, diff_reviews, render

        if fmt not in FORMATS:
            raise UserError(f"unknown format '{fmt}'", f"use --format with one of: {', '.join(FORMATS)}")
        gates = Gates(max_monthly_usd, max_increase_usd, max_increase_percent, allow_unpriced)
        check_gate_values(gates)
        heads = list(head or []) + list(specs or [])
        if not heads:
            raise UserError("no head spec given", "pass --base OLD.yaml --head NEW.yaml, or --base-ref main SPEC...")
        if base and base_ref:
            raise UserError("--base and --base-ref are alternatives", "give one of them")
        if not base and not base_ref:
            raise UserError("no base given", "pass --base OLD.yaml (one per --head) or --base-ref main")
        if base and (len(base) != len(heads) or specs):
            raise UserError(
                f"{len(base)} --base for {len(heads)} head spec(s)", "give one --base per --head, in the same order"
            )
        items = []
        for i, head_path in enumerate(heads):
            if base_ref and not head_path.exists():  # deleted on this branch: the base is all there is
                gone = base_spec_from_git(base_ref, head_path)
                if gone is None:
                    raise UserError(f"spec file '{head_path}' not found here nor at {base_ref}", "check the path")
                src = f"{base_ref}:{head_path}"
                gone_review = _review(gone, src, _stack_of(head_path, base_ref))
                items.append(DiffInput(_name(gone, head_path), src, None, gone_review, None))
                continue
            head_data = read_spec_file(head_path)
            if base:
                base_data: dict | None = read_spec_file(base[i])
                base_src: str | None = str(base[i])
            else:
                base_data = base_spec_from_git(str(base_ref), head_path)
                base_src = f"{base_ref}:{head_path}" if base_data is not None else None
            items.append(
                DiffInput(
                    _name(head_data, head_path),
                    base_src,
                    str(head_path),
                    None
                    if base_data is None
                    else _review(
                        base_data,
                        base_src or str(head_path),
                        _stack_of(base[i]) if base else _stack_of(head_path, str(base_ref)),
                    ),
                    _review(head_data, str(head_path), _stack_of(head_path)),
                )
            )
        doc = diff_reviews(items, gates)
        text = render(doc, fmt)
        typer.echo(text, nl=False)
        if output:
            output.write_text(text)
            typer.echo(f"wrote {output}", err=True)
        if doc["gates"]["breaches"]:
            own = any(b["breach"] for b in doc["gates"]["spec_budgets"])
            raise UserError(
                "budget gate breached: " + "; ".join(doc["gates"]["breaches"]),
                "review the cost diff above"
                + (
                    "; a spec's own budget is what `selfhost plan --spec` and the stack enforce: raise its "
                    "budget.max_monthly_usd, lower the traffic, or pick a cheaper offer/pricing"
                    if own
                    else ""
                ),
            )
