"""The cost review of the kit's deployment on a team's Kubernetes cluster (EKS or GKE): what its nodes cost.

What runs (selfhost.k8s.manifests): one pod per GPU node, the costed instance type pinned by the pods'
nodeSelector, autoscaled between the review's min and max replicas (KEDA), spot with the review's on-demand
base; each pod's weights cache is a ReadWriteOnce volume created and deleted with it, and each node has its
own root volume. So the review is the aws/gcp instance-group review of the same offer: the replicas as the
cloud's group runs them (a reclaimed spot node comes back as spot, no SkyServe placement), each replica's
disk = the weights volume + the node's root volume. The cluster itself (its control plane, the Karpenter or
cluster-autoscaler controllers, Prometheus, KEDA) is the team's: its fee is shown, never added to the total.
"""

from __future__ import annotations

from typing import Any

from costing.data.spec import DeploymentSpec
from costing.errors import UserError

# The managed clusters the render targets, and the cloud each one's nodes are priced on.
CLUSTERS = {"eks": "aws", "gke": "gcp"}
CLUSTER_OF_CLOUD = {cloud: cluster for cluster, cloud in CLUSTERS.items()}
CLUSTER_LABELS = {"eks": "EKS", "gke": "GKE"}
KUBERNETES_PRICING = ("on-demand", "spot")  # what Karpenter's capacity-type and GKE's spot node pools select
NODE_ROOT_GB = 100  # each GPU node's root volume: the OS, the GPU driver, containerd's copy of the vLLM image

# The control plane's fee: the user's existing cluster, never in the monthly total. A figure only with a dated
# source (else "not priced").
CONTROL_PLANE_FEES: dict[str, dict[str, Any]] = {
    "eks": {
        "usd_per_hour": 0.10,
        "as_of": "2026-03-13",
        "source": "aws.amazon.com/eks/pricing, $0.10 per cluster per hour in standard support (US East, as of March "
        "2026), as quoted in the dated post cloudburn.io/blog/amazon-eks-pricing (2026-03-13)",
    },
    "gke": {
        "usd_per_hour": None,
        "source": "cloud.google.com/kubernetes-engine/pricing (a cluster management fee per cluster-hour after a "
        "monthly free-tier credit): no dated copy of its rate in costing/data",
    },
}


def cluster_for(spec: DeploymentSpec, cluster: str | None) -> str:
    """The cluster kind: the one given (eks | gke), else the one the spec's cloud (or its offer's) runs on."""
    cloud: str | None = spec.target.cloud
    if cloud is None and spec.target.offer:
        from costing.data.catalog import get_offer

        cloud = get_offer(spec.target.offer).cloud  # an unknown offer: its own one-line error
    if cluster is None:
        if cloud not in CLUSTER_OF_CLOUD:
            raise UserError(
                f"no Kubernetes cluster kind for target.cloud {cloud or '(none)'}: the nodes are priced on aws (EKS) "
                "or gcp (GKE)",
                "pass --cluster eks or --cluster gke (or set target.cloud to aws or gcp)"
                if cloud is None
                else "pick an aws or gcp offer (e.g. aws-g5.xlarge, gcp-g2-standard-8)",
            )
        return CLUSTER_OF_CLOUD[cloud]
    if cluster not in CLUSTERS:
        raise UserError(f"unknown cluster kind '{cluster}'", f"use --cluster with one of: {', '.join(CLUSTERS)}")
    if cloud is not None and cloud != CLUSTERS[cluster]:
        raise UserError(
            f"a {cluster.upper()} cluster runs {CLUSTERS[cluster]} nodes, but the spec's target.cloud is {cloud}",
            f"use {CLUSTER_OF_CLOUD.get(cloud, 'eks')} (--cluster, --kubernetes), or change target.cloud",
        )
    return cluster


def kubernetes_spec(spec: DeploymentSpec, cluster: str | None = None) -> tuple[DeploymentSpec, str]:
    """The spec as the cluster runs it (its cloud set, an autoscaled fleet, no SkyPilot placement), and the
    cluster kind. Refuses what the manifests cannot deploy as costed."""
    kind = cluster_for(spec, cluster)
    target = spec.target
    if target.pricing not in KUBERNETES_PRICING:
        raise UserError(
            f"pricing {target.pricing} on Kubernetes: the node pools launch on-demand or spot nodes and buy no "
            "reservation",
            "use --pricing on-demand (a reservation you own covers the nodes anyway) or --pricing spot",
        )
    if target.nodes > 1:
        raise UserError(
            f"{target.nodes} nodes per replica: the Kubernetes render runs one pod per GPU node",
            "use more or bigger GPUs per node, or `selfhost launch sky` for multi-node",
        )
    schedule = spec.schedule
    if schedule.hours_per_day < 24 or schedule.days_per_week < 7 or schedule.days_per_month is not None:
        raise UserError(
            "a part-time schedule on Kubernetes: the render has no start/stop window, so the nodes would run "
            "(and be billed) around the clock",
            "drop hours_per_day/days_per_week/days_per_month (24/7), or use the aws/gcp stack for a schedule",
        )
    if spec.sky.weights_store:
        raise UserError(
            "sky.weights_store on Kubernetes: each pod keeps its weights on its own volume (no bucket mirror)",
            "drop sky.weights_store from the spec",
        )
    return (
        spec.model_copy(
            update={
                "target": target.model_copy(update={"cloud": CLUSTERS[kind]}),
                "sky": spec.sky.model_copy(update={"service": True, "any_of": ()}),
            }
        ),
        kind,
    )


def on_cluster(kind: str) -> str:
    """Where a Kubernetes review's replicas run, as the plan's Target row and the diff's Offer row say it."""
    return f"on {CLUSTER_LABELS.get(kind, kind)}"


def pods_text(min_replicas: int, max_replicas: int) -> str:
    """The replica range as pods KEDA scales (the plan's Replicas row opens with it; the diff's Replicas row)."""
    return f"{min_replicas} to {max_replicas} pods" if min_replicas != max_replicas else f"{max_replicas} pods"


def control_plane_note(cluster: str) -> str:
    """What the cluster's own fee is, and that the total leaves it out (the team's existing cluster)."""
    fee = CONTROL_PLANE_FEES[cluster]
    name = cluster.upper()
    if fee["usd_per_hour"] is None:
        return f"{name} control plane: not priced ({fee['source']}); the team's existing cluster, not in the total"
    monthly = fee["usd_per_hour"] * 730
    return (
        f"{name} control plane ${fee['usd_per_hour']:.2f}/h per cluster (${monthly:,.2f}/month; {fee['source']}): "
        "the team's existing cluster, not in the monthly total"
    )


def kubernetes_review(spec: DeploymentSpec, cluster: str | None = None, **kwargs: Any):
    """The cost review of the Kubernetes deployment of `spec` (costing.money.review.CostReview). kwargs go to
    cost_review (params, calibration, engine, confidence)."""
    from costing.money.review import cost_review
    from costing.performance.scaling import metrics_note

    k8s_spec, kind = kubernetes_spec(spec, cluster)
    review = cost_review(k8s_spec, cloud_group=True, boot_disk_gb=NODE_ROOT_GB, **kwargs)
    vm_metrics = metrics_note(CLUSTERS[kind])  # the VM groups' CloudWatch/Cloud Monitoring metrics: not these pods'
    review.notes = [note for note in review.notes if note != vm_metrics]
    review.notes.append(
        "Kubernetes: one pod per GPU node; each pod's weights volume and its node's root volume are created and "
        "deleted with the replica (each replica downloads the weights from Hugging Face)"
    )
    review.notes.append(control_plane_note(kind))
    review.kubernetes = kind
    return review
