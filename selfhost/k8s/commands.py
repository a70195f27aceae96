"""`selfhost render k8s`: the deployment's Kubernetes manifests from a spec (plain YAML; no cluster contacted).

Light at import (typer only); the builder needs PyYAML and the costing engine, nothing of Kubernetes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from costing.errors import UserError
from selfhost.spec_options import spec_options

K8S_FLAGS = (
    "model",
    "gpu",
    "gpus",
    "cloud",
    "offer",
    "region",
    "precision",
    "pricing",
    "name",
    "requests_per_day",
    "input_tokens",
    "output_tokens",
    "peak_to_mean",
    "p90_latency_s",
)

HEADER = """# selfhost render k8s: {what}
# Costed: {review_line}
# Create the Secret first (the key and token never appear in these files):
#   kubectl create namespace {namespace}
#   kubectl -n {namespace} create secret generic {secret} \\
#     --from-literal=api-key="$(openssl rand -hex 24)" --from-literal=hf-token="$HF_TOKEN"
# Needs: the NVIDIA device plugin, KEDA, prometheus-operator{needs}.
"""


RENDERED = re.compile(r"^\d{2}-[a-z0-9]+-[a-z0-9-]+\.yaml$")  # file_name's shape


def file_name(index: int, obj: dict[str, Any]) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def stale_files(folder: Path, written: set[str]) -> list[Path]:
    """An earlier render's files the new one did not write: `kubectl apply -f FOLDER` would apply them too."""
    return sorted(p for p in folder.iterdir() if p.is_file() and RENDERED.match(p.name) and p.name not in written)


def header(objects: list[dict[str, Any]], plan: Any, what: str) -> str:
    review = plan.review
    needs = ", Karpenter (v1) with the EBS CSI driver" if plan.cluster == "eks" else ""
    if plan.cluster == "gke":
        pools = ", ".join(
            f"{p['name']} ({p['machine_type']}, {'spot' if p['spot'] else 'on-demand'})" for p in _pools(plan)
        )
        needs += f"; GKE node pools {pools} (stacks/kubernetes declares them)"
    line = (
        f"{review.fleet.min_replicas}-{review.fleet.max_replicas} replicas of {review.offer.instance_type} "
        f"({review.spec.target.pricing}), ${review.monthly_usd:,.2f}/month (`selfhost plan --kubernetes "
        f"{plan.cluster}`)"
    )
    return HEADER.format(what=what, review_line=line, namespace=plan.namespace, secret=plan.secret, needs=needs)


def _pools(plan: Any) -> list[dict[str, Any]]:
    from selfhost.k8s.manifests import gke_node_pools

    return gke_node_pools(plan)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """YAML a reviewer reads: no anchors or aliases, multi-line strings (the probe, the auth module) as blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        block = "\n" in value and not any(line != line.rstrip() for line in value.splitlines())
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if block else None)

    Dumper.add_representer(str, text)
    return yaml.dump_all(objects, Dumper=Dumper, sort_keys=False, width=120)


def register(render_app: typer.Typer) -> None:
    @render_app.command("k8s")
    @spec_options(*K8S_FLAGS)
    def render_k8s(
        flags: dict[str, Any],
        spec_file: Path | None = typer.Option(None, "--spec", help="YAML deployment spec (flags override it)"),
        cluster: str | None = typer.Option(None, "--cluster", help="eks | gke (default: from target.cloud)"),
        cluster_name: str | None = typer.Option(None, "--cluster-name", help="EKS: the karpenter.sh/discovery tag"),
        node_role: str | None = typer.Option(None, "--node-role", help="EKS: the nodes' IAM role"),
        namespace: str | None = typer.Option(None, "--namespace", help="default: the spec's name"),
        allowed_cidrs: str = typer.Option("", "--allowed-cidrs", help="who may call the pods, e.g. 10.0.0.0/16"),
        prometheus_url: str | None = typer.Option(None, "--prometheus-url", help="what KEDA queries"),
        out: Path | None = typer.Option(None, "--out", "-o", help="a folder (one file an object) or a .yaml file"),
    ) -> None:
        """Render the Kubernetes manifests of the costed deployment (Deployment, KEDA, Karpenter, ...)."""
        from costing.data.spec import load_spec, overrides_from_flags
        from selfhost.k8s import manifests
        from selfhost.stack.plan import check_cidrs

        given = [c.strip() for c in allowed_cidrs.split(",") if c.strip()]
        if not given:
            raise UserError(
                "--allowed-cidrs is empty: the NetworkPolicy would let no client reach the pods",
                "pass --allowed-cidrs with your clients' or ingress controller's range, e.g. 10.0.0.0/16",
            )
        cidrs = check_cidrs(given, has_api_key=True)
        if out is not None and out.suffix not in (".yaml", ".yml") and out.exists() and not out.is_dir():
            raise UserError(f"--out '{out}' is a file that is not .yaml", "give a folder or a .yaml file path")
        if out is not None and out.suffix in (".yaml", ".yml") and not out.parent.is_dir():
            raise UserError(f"--out folder '{out.parent}' does not exist", f"create it first (mkdir -p {out.parent})")
        spec = load_spec(spec_file, **overrides_from_flags(**flags))
        options = manifests.Options(
            namespace=namespace or "",
            allowed_cidrs=cidrs,
            cluster_name=cluster_name or "",
            node_role=node_role or "",
            prometheus_url=prometheus_url or manifests.PROMETHEUS_URL,
        )
        plan = manifests.plan_for(spec, cluster, options)
        objects = manifests.build(plan.review, plan.cluster, options)
        what = f"{spec_file}" if spec_file else "flags"
        if out is None:
            typer.echo(header(objects, plan, what) + to_yaml(objects), nl=False)
            return
        try:
            if out.suffix in (".yaml", ".yml"):
                out.write_text(header(objects, plan, what) + to_yaml(objects))
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / "README.txt").write_text(header(objects, plan, what).replace("# ", "").replace("#", ""))
                names = {file_name(i, obj): obj for i, obj in enumerate(objects)}
                for name, obj in names.items():
                    (out / name).write_text(to_yaml([obj]))
                for old in stale_files(out, set(names)):
                    old.unlink()
                    typer.echo(f"removed {old} (an earlier render's object this one does not have)", err=True)
        except OSError as err:
            raise UserError(f"cannot write --out '{out}' ({err.strerror})", "pick a path you can write") from None
        typer.echo(f"wrote {out} ({len(objects)} objects)", err=True)
