"""selfhost on a team's Kubernetes cluster (EKS or GKE): vLLM pods on GPU nodes, costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends `pulumi up`
with one line and nothing declared), then the steps namespace -> secret -> node_pools (GKE) -> workload,
then the exports. The objects are the ones `selfhost render k8s` writes for the same spec
(selfhost.k8s.manifests.build): the Deployment(s), Service, NetworkPolicy, PodDisruptionBudget, PodMonitor,
KEDA ScaledObject at the review's per-replica threshold and, on EKS, the Karpenter NodePools and EC2NodeClass.
The cluster itself, KEDA, Karpenter and Prometheus are the team's: the stack uses the current kubeconfig.
"""

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.yaml.v2 import ConfigGroup

from selfhost.k8s import manifests
from selfhost.k8s import stack_config as cfg
from selfhost.stack.component import read_config, refusals, secret

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(cfg.KEYS)
    p = cfg.plan(config)  # the review of the nodes the replicas need, the budget gate
    objects = manifests.build(p.review, p.cluster, p.options)

for note in p.review.notes:
    pulumi.log.warn(f"cost review: {note}")
if warning := cfg.plain_http_warning(config):
    pulumi.log.warn(warning)
first, rest = objects[0], objects[1:]  # the Namespace, then what lives in it (and the cluster-wide pools)


def namespace() -> ConfigGroup:
    return ConfigGroup(f"{p.name}-namespace", objs=[first])


def api_secret(ns: ConfigGroup) -> k8s.core.v1.Secret:
    """The API key and HF token from `pulumi config set --secret` (encrypted in the state, never in a manifest):
    the pods read them through secretKeyRef, Prometheus the key through the PodMonitor."""
    return k8s.core.v1.Secret(
        f"{p.name}-keys",
        metadata={"name": p.secret, "namespace": p.namespace, "labels": p.labels},
        type="Opaque",
        string_data={
            manifests.SECRET_KEYS["VLLM_API_KEY"]: secret(config["apiKey"]),
            manifests.SECRET_KEYS["HF_TOKEN"]: secret(config["hfToken"]),
        },
        opts=pulumi.ResourceOptions(depends_on=[ns]),
    )


def node_pools() -> list[pulumi.Resource]:
    """GKE: a node pool per tier on the team's cluster, the costed machine type and GPUs, spot where costed,
    autoscaled over the review's replica range (one pod a node). EKS: Karpenter's NodePools are in `objects`."""
    if p.cluster != "gke":
        return []
    import pulumi_gcp as gcp

    pools: list[pulumi.Resource] = []
    for pool in manifests.gke_node_pools(p):
        pools.append(
            gcp.container.NodePool(
                pool["name"],
                name=pool["name"],
                cluster=str(config["clusterName"]),
                location=str(config["location"]),
                autoscaling={
                    "total_min_node_count": pool["min"],
                    "total_max_node_count": pool["max"],
                    "location_policy": "ANY",
                },
                initial_node_count=pool["min"],
                management={"auto_repair": True, "auto_upgrade": True},
                node_config={
                    "machine_type": pool["machine_type"],
                    "spot": pool["spot"],
                    "disk_size_gb": pool["disk_gb"],
                    "disk_type": "pd-balanced",
                    "guest_accelerators": [
                        {
                            "type": pool["accelerator"],
                            "count": pool["gpus"],
                            "gpu_driver_installation_config": {"gpu_driver_version": "DEFAULT"},
                        }
                    ],
                    "labels": {**p.labels, "selfhost/tier": "spot" if pool["spot"] else "on-demand"},
                    "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
                    "workload_metadata_config": {"mode": "GKE_METADATA"},
                    "metadata": {"disable-legacy-endpoints": "true"},
                },
            )
        )
    return pools


def workload(ns: ConfigGroup, keys: k8s.core.v1.Secret, pools: list[pulumi.Resource]) -> ConfigGroup:
    return ConfigGroup(p.name, objs=rest, opts=pulumi.ResourceOptions(depends_on=[ns, keys, *pools]))


# ---- the program: the steps in order -----------------------------------------------------------------
ns = namespace()
keys = api_secret(ns)
pools = node_pools()
workload(ns, keys, pools)

# ---- exports: the cost review's figures and where the endpoint is --------------------------------------
review, fleet = p.review, p.fleet
pulumi.export("cluster", p.cluster)
pulumi.export("namespace", p.namespace)
pulumi.export("serviceUrl", f"http://{p.name}.{p.namespace}.svc.cluster.local:{p.port}")
pulumi.export("endpointUrl", f"http://{p.name}.{p.namespace}.svc.cluster.local:{p.port}")  # as the other stacks name it
pulumi.export("transport", cfg.TRANSPORT)
pulumi.export("instanceType", review.offer.instance_type)
pulumi.export("pricing", review.spec.target.pricing)
pulumi.export("minReplicas", fleet.min_replicas)
pulumi.export("maxReplicas", fleet.max_replicas)
pulumi.export("onDemandBaseReplicas", p.base)
pulumi.export("targetInflightPerReplica", fleet.inflight_per_replica)
pulumi.export("drainSeconds", p.drain_s)
pulumi.export("projectedMonthlyUsd", round(review.monthly_usd, 2))
pulumi.export("containerImage", manifests.VLLM_IMAGE)
