"""A team's own Kubernetes cluster as an offer, priced at the rate the team states (spec `kubernetes:`).

No catalog knows what a team pays for its cluster's nodes, so the spec states it (per node-hour with the GPUs a
node offers, or per GPU-hour) with its source; a replica is priced at its GPUs' share of a node:
GPUs x (node rate / GPUs per node). That is SkyPilot's own unit for a Kubernetes context
(`kubernetes.context_configs.<context>.pricing.accelerators.<GPU>`: USD per accelerator-hour), so the kit's
review and SkyPilot's optimizer compare the context with the clouds at the same figure.
"""

from __future__ import annotations

from costing.data.catalog import Offer, PriceRow, get_gpu
from costing.data.spec import DeploymentSpec, KubernetesSpec
from costing.errors import UserError
from costing.performance.fit import FitRequest, FitResult, fit_check, smallest_fit

KUBERNETES = "kubernetes"  # an Offer's cloud for a stated cluster
GPU_COUNTS = (1, 2, 4, 8)


def offer_id(k: KubernetesSpec, gpus: int) -> str:
    return f"k8s-{k.context}-{get_gpu(k.gpu).name.lower()}x{gpus}"


def stated_offer(k: KubernetesSpec, gpus: int) -> Offer:
    """A replica of `gpus` GPUs on the cluster, at the stated rate (on-demand: the only market it has)."""
    gpu = get_gpu(k.gpu).name
    itype = f"{gpus}x{gpu}"
    hourly = round(gpus * k.gpu_hourly, 6)
    row = PriceRow(KUBERNETES, itype, k.context, "on-demand", hourly, f"stated: {k.source}", k.as_of or "")
    share = gpus / k.gpus_per_node
    return Offer(
        offer_id(k, gpus),
        KUBERNETES,
        itype,
        gpu,
        gpus,
        int(k.vcpus * share) if k.vcpus else 0,
        round(k.memory_gb * share, 1) if k.memory_gb else 0.0,
        k.context,
        None,
        (row,),
    )


def check_target(spec: DeploymentSpec) -> KubernetesSpec:
    """The target's cluster, refusing what a Kubernetes context cannot run as costed (one line, exit 2)."""
    t = spec.target
    k = t.kubernetes
    if k is None:
        raise RuntimeError("check_target without a kubernetes target")
    if t.cloud or t.offer or t.region:
        raise UserError(
            f"a kubernetes target (context {k.context}) also names a cloud, offer or region",
            "drop cloud/offer/region from that candidate: the context is where it runs",
        )
    if t.gpu and get_gpu(t.gpu).name != get_gpu(k.gpu).name:
        raise UserError(f"context {k.context} has {k.gpu} GPUs, not {t.gpu}", "drop gpu or make them match")
    if t.pricing != "on-demand":
        raise UserError(
            f"{t.pricing} on Kubernetes context {k.context}: SkyPilot launches no spot pods there and the stated "
            "rate is the cluster's only price",
            "use pricing on-demand for a spec with a kubernetes candidate",
        )
    if t.nodes > 1:
        raise UserError(
            f"{t.nodes} nodes per replica on Kubernetes context {k.context}: not costed here",
            "use nodes: 1 (more GPUs per node or a smaller precision)",
        )
    if spec.schedule.part_time:
        raise UserError(
            f"a schedule on Kubernetes context {k.context}: nothing stops the pods on a schedule",
            "drop the schedule (24 h/day, 7 days/week)",
        )
    return k


def fit_on_cluster(spec: DeploymentSpec, request: FitRequest) -> tuple[Offer, FitResult]:
    """The fit (the target's GPUs, else the fewest that fit on one node) and its stated offer."""
    k = check_target(spec)
    fit = fit_check(request) if spec.target.gpus else smallest_fit(request, GPU_COUNTS)
    if fit.gpus_per_node > k.gpus_per_node:
        raise UserError(
            f"a replica needs {fit.gpus_per_node} {k.gpu} GPUs, and a node of context {k.context} offers "
            f"{k.gpus_per_node}",
            "state a node with more GPUs (gpus_per_node), a smaller precision, or another candidate",
        )
    return stated_offer(k, fit.gpus_per_node), fit
