"""stacks/kubernetes, the non-resource part: stack config -> the costed manifests' Plan (no Pulumi import).

The same builder as `selfhost render k8s` (selfhost.k8s.manifests) from the same spec; the stack adds what a
render cannot hold: the Secret from `pulumi config set --secret` values, and on GKE the node pools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from costing.money.kubernetes import CLUSTERS
from selfhost.k8s import manifests
from selfhost.stack.plan import check_cidrs, check_secrets, flag, in_stack_words, spec_from_config, str_list

KEYS = (
    "cluster",  # eks | gke
    "instanceType",  # the costed node type: g5.xlarge on EKS, g2-standard-8 on GKE
    "region",
    "namespace",
    "clusterName",  # EKS: the karpenter.sh/discovery tag; GKE: the cluster the node pools join
    "nodeRole",  # EKS: the nodes' IAM role (default KarpenterNodeRole-<clusterName>)
    "location",  # GKE: the cluster's region or zone
    "prometheusUrl",
    "prometheusNamespace",
    "allowPlainHttp",  # true: you know the pods serve plain HTTP behind your ingress (silences the warning)
)
# The pods serve plain HTTP on a ClusterIP Service; TLS is the team's ingress controller's (or its mesh's).
TRANSPORT = "http (in-cluster Service; TLS at your ingress controller)"
PLAIN_HTTP_WARNING = (
    "plain HTTP inside the cluster: the API key crosses the cluster network unencrypted between your ingress "
    "controller and the pods; terminate TLS at the ingress (or use a service mesh with mTLS), then "
    "`pulumi config set allowPlainHttp true` to acknowledge"
)


def plan(config: Mapping[str, Any]) -> manifests.Plan:
    """Checked and costed before any resource: one UserError (in `pulumi config` words) for bad config."""
    try:
        return _plan(config)
    except UserError as err:
        raise in_stack_words(err) from None


def stack_spec(config: Mapping[str, Any]) -> tuple[DeploymentSpec, str]:
    """The spec the stack deploys (the spec file named by specFile, the stack's keys over it) and the cluster
    kind: what the stack's cost review reviews, and `selfhost diff` of a stack folder with it."""
    cluster = str(config.get("cluster") or "")
    if cluster not in CLUSTERS:
        raise UserError(
            f"stack config cluster must be one of {', '.join(CLUSTERS)}, got {cluster or '(none)'}",
            "pulumi config set cluster eks (or gke)",
        )
    cloud = CLUSTERS[cluster]
    instance = config.get("instanceType")
    if not instance:
        raise UserError(
            "no instanceType in the stack config", "pulumi config set instanceType g5.xlarge (the node type)"
        )
    spec = spec_from_config(cloud, config, {"offer": f"{cloud}-{instance}"}, autoscaled=True)
    if spec.workload is None:
        raise UserError(
            "no workload in the stack config: the cost review needs it", "pulumi config set requestsPerDay 3000"
        )
    return spec, cluster


def plain_http_warning(config: Mapping[str, Any]) -> str | None:
    """The warning `pulumi up` prints unless allowPlainHttp acknowledges the in-cluster plain HTTP."""
    return None if flag(config, "allowPlainHttp") else PLAIN_HTTP_WARNING


def _plan(config: Mapping[str, Any]) -> manifests.Plan:
    from costing.money.review import enforce_budget

    flag(config, "allowPlainHttp")  # a value other than true/false is refused before anything is declared
    spec, cluster = stack_spec(config)
    check_secrets(config, {})
    cidrs = check_cidrs(str_list(config, "allowedCidrs"), has_api_key=True)
    if cluster == "eks" and not config.get("clusterName"):
        raise UserError(
            "an EKS stack needs the cluster's name: Karpenter finds its subnets and security groups by it",
            "pulumi config set clusterName <your EKS cluster> (the karpenter.sh/discovery tag value)",
        )
    if cluster == "gke" and not (config.get("clusterName") and config.get("location")):
        raise UserError(
            "a GKE stack declares its node pools on your cluster: clusterName and location are needed",
            "pulumi config set clusterName my-cluster; pulumi config set location us-central1",
        )
    options = manifests.Options(
        namespace=str(config.get("namespace") or ""),
        allowed_cidrs=cidrs,
        cluster_name=str(config.get("clusterName") or ""),
        node_role=str(config.get("nodeRole") or ""),
        prometheus_url=str(config.get("prometheusUrl") or manifests.PROMETHEUS_URL),
        prometheus_namespace=str(config.get("prometheusNamespace") or manifests.PROMETHEUS_NAMESPACE),
    )
    p = manifests.plan_for(spec, cluster, options)
    enforce_budget(p.review, spec.budget.max_monthly_usd)
    return p
