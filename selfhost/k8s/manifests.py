"""The Kubernetes objects of one costed deployment: spec + review in, a list of manifest dicts out.

Pure (no Kubernetes client, no cloud SDK): `selfhost render k8s` writes these dicts as YAML and
stacks/kubernetes applies the same dicts with pulumi-kubernetes, so what is rendered, what is applied and
what is costed (costing.money.kubernetes.kubernetes_review) are one thing. Objects, in apply order:

- Namespace; StorageClass (an encrypted gp3 / pd-balanced volume, bound where the pod lands);
- ConfigMap: the kit's auth layer (selfhost/auth_middleware.py as `selfhost_auth`), mounted read-only on
  PYTHONPATH: vLLM's `--middleware selfhost_auth.BearerAuth` (from the one argument builder) loads it;
- Deployment(s): one pod per GPU node (`nvidia.com/gpu` = the fit's GPUs), the pinned vLLM image, the key and
  the Hugging Face token from a Secret the user creates (secretKeyRef: never in args nor in these manifests);
  startup on /health for the projected cold start, readiness = a 1-token authenticated completion, liveness on
  /health; preStop, vLLM's --shutdown-timeout and the termination grace from the review's drain time.
  Spot with an on-demand base: a `-base` Deployment of the base replicas on on-demand nodes beside the spot one;
- Service (ClusterIP), NetworkPolicy (the port from the allowed CIDRs and from Prometheus only),
  PodDisruptionBudget;
- PodMonitor (Prometheus scrapes /metrics with the key) and a KEDA ScaledObject on requests in flight
  (vllm:num_requests_running + vllm:num_requests_waiting) at the review's per-replica threshold, between the
  review's min and max replicas;
- EKS: a Karpenter NodePool per capacity type (the costed instance type only) and their EC2NodeClass.
  GKE: the node pool is the Pulumi stack's (gcp.container.NodePool); the render's pods select it by labels.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from costing.money.kubernetes import NODE_ROOT_GB, kubernetes_review, kubernetes_spec
from costing.performance.scaling import INFLIGHT_SIGNAL, drain_seconds
from costing.performance.vllm_args import API_KEY_ENV, HF_TOKEN_ENV, SERVE_ENV, VLLM_IMAGE, serve_args
from selfhost import auth_install

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"  # well known: EKS and GKE nodes carry it
CAPACITY_LABEL = "karpenter.sh/capacity-type"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
GKE_SPOT_LABEL = "cloud.google.com/gke-spot"
GKE_NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
GPU_TAINT = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}  # GKE taints its GPU nodes so
SECRET_KEYS = {API_KEY_ENV: "api-key", HF_TOKEN_ENV: "hf-token"}  # the Secret's keys, by container variable
PRESTOP_S = 5  # the endpoints controller and kube-proxy stop routing to the pod before vLLM gets SIGTERM
STOP_MARGIN_S = 15  # the engine's own exit after the drain, as the VM stacks' `docker stop -t` (stop_timeout_s)
PROBE_PERIOD_S = 10
# Readiness generates a token: on a busy replica it queues behind the batch, so it gets what the VM stacks'
# ready.sh gets (curl -m 30, every 30 s, 3 failures) rather than failing a loaded replica out of the Service.
READY_TIMEOUT_S = 30
UID = 10001  # a non-root user with a high id (no file in the image needs root: the caches are volumes)
HF_HOME = "/models/hf"
AUTH_DIR = auth_install.CONTAINER_DIR
PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"  # prometheus-operator's service
PROMETHEUS_NAMESPACE = "monitoring"
GKE_ACCELERATORS = {"L4": "nvidia-l4", "A100": "nvidia-tesla-a100", "A100-80GB": "nvidia-a100-80gb"}
NAME_RULE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label

# Policy-scan findings the kit keeps, each with its reason (checkov reads `checkov.io/skipN` annotations).
CHECKOV_SKIPS = (
    "CKV_K8S_43=the image is pinned by the kit's vLLM release tag (costing.performance.vllm_args), one pin for all",
    "CKV_K8S_35=vLLM and the auth layer read the API key from the VLLM_API_KEY variable only, never from a file",
)


@dataclass(frozen=True)
class Options:
    """What the render needs beyond the spec: where it runs and who may call it."""

    namespace: str = ""  # default: the deployment's name
    allowed_cidrs: tuple[str, ...] = ()  # who may reach the pods' port (NetworkPolicy ipBlocks)
    secret_name: str = ""  # the Secret holding api-key and hf-token; default: <name>-keys
    cluster_name: str = ""  # EKS: Karpenter discovers the cluster's subnets and security groups by this tag
    node_role: str = ""  # EKS: the nodes' IAM role; default: KarpenterNodeRole-<cluster_name>
    prometheus_url: str = PROMETHEUS_URL
    prometheus_namespace: str = PROMETHEUS_NAMESPACE
    labels: dict[str, str] = field(default_factory=dict)


def check_name(value: str, what: str) -> str:
    if not (1 <= len(value) <= 63 and NAME_RULE.match(value)):
        raise UserError(
            f"{what} {value!r} is not a Kubernetes name (lowercase letters, digits and '-', at most 63)",
            f"pass {what} like llama-8b",
        )
    return value


@dataclass(frozen=True)
class Plan:
    """The deployment's figures, all from the review."""

    cluster: str
    name: str
    namespace: str
    review: Any  # costing.money.review.CostReview
    options: Options

    @property
    def fit(self):
        return self.review.fit

    @property
    def fleet(self):
        return self.review.fleet

    @property
    def spot(self) -> bool:
        return self.review.spec.target.pricing == "spot"

    @property
    def base(self) -> int:
        """On-demand base replicas beside a spot Deployment (0 when not spot)."""
        return self.fleet.base_ondemand_replicas if self.spot else 0

    @property
    def drain_s(self) -> int:
        return drain_seconds(self.review)

    @property
    def grace_s(self) -> int:
        """The pod's termination grace: the preStop pause, vLLM's drain and the engine's exit."""
        return PRESTOP_S + self.drain_s + STOP_MARGIN_S

    @property
    def port(self) -> int:
        return int(self.fit.settings.port)

    @property
    def secret(self) -> str:
        return self.options.secret_name or f"{self.name}-keys"

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "selfhost-vllm", "app.kubernetes.io/instance": self.name}


def plan_for(spec_or_review: Any, cluster: str | None = None, options: Options | None = None) -> Plan:
    """The Plan from a DeploymentSpec (reviewed here) or a review costing.money.kubernetes made."""
    opts = options or Options()
    if isinstance(spec_or_review, DeploymentSpec):
        review = kubernetes_review(spec_or_review, cluster)
        _, kind = kubernetes_spec(spec_or_review, cluster)
    else:
        review = spec_or_review
        _, kind = kubernetes_spec(review.spec, cluster)
    if review.fleet is None or review.offer is None:
        raise UserError("the review has no replicas of a cloud offer to deploy", "give a workload and a target")
    if kind == "eks" and not opts.cluster_name:
        raise UserError(
            "an EKS render needs the cluster's name: Karpenter finds its subnets and security groups by it",
            "pass --cluster-name <your EKS cluster> (the karpenter.sh/discovery tag value)",
        )
    name = check_name(re.sub(r"[^a-z0-9-]", "-", (review.spec.name or "selfhost").lower()).strip("-")[:40], "name")
    namespace = check_name(opts.namespace or name, "--namespace")
    check_name(opts.secret_name or f"{name}-keys", "--secret")
    return Plan(kind, name, namespace, review, opts)


def build(spec_or_review: Any, cluster: str | None = None, options: Options | None = None) -> list[dict[str, Any]]:
    """Every object of the deployment, in apply order (namespaced objects after their Namespace)."""
    p = plan_for(spec_or_review, cluster, options)
    objects: list[dict[str, Any]] = [namespace(p), storage_class(p), auth_config_map(p)]
    for tier in tiers(p):
        objects.append(deployment(p, tier))
    objects += [service(p), network_policy(p), disruption_budget(p), pod_monitor(p)]
    scaler = scaled_object(p)
    if scaler is not None:
        objects.append(scaler)
    if p.cluster == "eks":
        objects += [*(node_pool(p, tier) for tier in tiers(p)), ec2_node_class(p)]
    return objects


# ---- the pieces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """One Deployment: its name, capacity type and replica count (the spot one is KEDA's when it scales)."""

    name: str
    capacity: str  # spot | on-demand
    replicas: int
    scaled: bool


def tiers(p: Plan) -> list[Tier]:
    """The on-demand base (spot only) and the main Deployment, which KEDA scales from min to max."""
    f = p.fleet
    main = Tier(p.name, "spot" if p.spot else "on-demand", f.min_replicas - p.base, f.max_replicas > f.min_replicas)
    return ([Tier(f"{p.name}-base", "on-demand", p.base, False)] if p.base else []) + [main]


def meta(p: Plan, name: str, *, namespaced: bool = True, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": {**p.labels, **p.options.labels}}
    if namespaced:
        out["namespace"] = p.namespace
    out.update(extra)
    return out


def namespace(p: Plan) -> dict[str, Any]:
    # Pod Security Admission: the restricted profile, which the pods meet.
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": p.namespace, "labels": {**p.labels, **p.options.labels, **labels}},
    }


def storage_class(p: Plan) -> dict[str, Any]:
    """The weights volumes' class: encrypted, created in the zone of the node the pod lands on, deleted with it."""
    if p.cluster == "eks":
        provisioner, params = "ebs.csi.aws.com", {"type": "gp3", "encrypted": "true"}
    else:
        provisioner, params = "pd.csi.storage.gke.io", {"type": "pd-balanced"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": meta(p, f"{p.name}-weights", namespaced=False),
        "provisioner": provisioner,
        "parameters": params,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def auth_config_map(p: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(p, f"{p.name}-auth", annotations={"selfhost/sha256": auth_install.sha256()}),
        "data": {auth_install.FILENAME: auth_install.source().decode()},
    }


READY_CHECK = """import json, os, sys, urllib.request
req = urllib.request.Request(
    "http://127.0.0.1:%d/v1/completions",
    data=json.dumps({"model": %s, "prompt": "ping", "max_tokens": 1}).encode(),
    headers={"Authorization": "Bearer " + os.environ["%s"], "Content-Type": "application/json"},
)
sys.exit(0 if urllib.request.urlopen(req, timeout=%d).status == 200 else 1)
"""


def ready_command(p: Plan) -> list[str]:
    """Readiness: a 1-token completion with the key, which the probe reads from the container's environment
    (the command holds the variable's name, never its value)."""
    script = READY_CHECK % (p.port, json.dumps(p.fit.settings.served_model_name), API_KEY_ENV, READY_TIMEOUT_S - 2)
    return ["python3", "-c", script]


def container(p: Plan) -> dict[str, Any]:
    settings = p.fit.settings
    gpus = int(p.fit.gpus_per_node)
    offer = p.review.offer
    cpu = max(1, math.floor(offer.vcpus * 0.75))  # the rest for the node's daemons (kubelet, CNI, GPU plugin)
    memory = max(4, math.floor(offer.ram_gb * 0.8))
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": p.secret, "key": key}}} for var, key in SECRET_KEYS.items()
    ]
    env += [
        {"name": "PYTHONPATH", "value": AUTH_DIR},
        {"name": "HOME", "value": "/home/vllm"},
        {"name": "HF_HOME", "value": HF_HOME},
        {"name": "XDG_CACHE_HOME", "value": "/home/vllm/.cache"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    env += [{"name": k, "value": v} for k, v in SERVE_ENV.items()]
    allowance = startup_allowance(p)
    return {
        "name": "vllm",
        "image": VLLM_IMAGE,
        "imagePullPolicy": "Always",
        # The auth layer's key rules first (a missing or weak key stops the pod in seconds), then vLLM with
        # the one argument builder's line: `--middleware selfhost_auth.BearerAuth`, `--shutdown-timeout`.
        "command": ["/bin/bash", "-c", f'{auth_install.KEY_CHECK} && exec vllm serve "$@"', "vllm"],
        "args": serve_args(settings),
        "ports": [{"name": "http", "containerPort": p.port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {"cpu": str(cpu), "memory": f"{memory}Gi", GPU_RESOURCE: str(gpus)},
            "limits": {"cpu": str(cpu), "memory": f"{memory}Gi", GPU_RESOURCE: str(gpus)},
        },
        "startupProbe": {  # /health from the start until the projected cold start (image, weights, engine)
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": PROBE_PERIOD_S,
            "failureThreshold": max(3, math.ceil(allowance / PROBE_PERIOD_S)),
        },
        "readinessProbe": {
            "exec": {"command": ready_command(p)},
            "periodSeconds": READY_TIMEOUT_S,
            "timeoutSeconds": READY_TIMEOUT_S,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": PROBE_PERIOD_S * 3,
            "timeoutSeconds": PROBE_PERIOD_S,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_S)]}}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "weights", "mountPath": HF_HOME},
            {"name": "home", "mountPath": "/home/vllm"},
            {"name": "tmp", "mountPath": "/tmp"},  # an emptyDir: the root filesystem is read-only
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }


def startup_allowance(p: Plan) -> int:
    """Seconds a new pod may take to answer /health: the readiness allowance the VM stacks use."""
    from selfhost.stack.plan import Readiness

    return int(Readiness.for_weights(p.port, p.fit.weight_gib).initial_delay_s)


def weights_gb(p: Plan) -> int:
    """Each pod's weights volume: the review's storage (the weights with headroom), whole GiB."""
    return max(1, math.ceil(p.review.storage_gb))


def node_selector(p: Plan, tier: Tier) -> dict[str, str]:
    """The costed instance type and capacity type; the NodePool (EKS) the pods run on."""
    selector = {INSTANCE_TYPE_LABEL: p.review.offer.instance_type}
    if p.cluster == "eks":
        selector[CAPACITY_LABEL] = tier.capacity
        selector[NODEPOOL_LABEL] = tier.name
    else:
        selector[GKE_NODEPOOL_LABEL] = tier.name
        if tier.capacity == "spot":
            selector[GKE_SPOT_LABEL] = "true"
    return selector


def deployment(p: Plan, tier: Tier) -> dict[str, Any]:
    pod_labels = {**p.labels, "selfhost/tier": tier.capacity}
    annotations = {f"checkov.io/skip{i}": skip for i, skip in enumerate(CHECKOV_SKIPS, 1)}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": pod_labels},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": {**pod_labels, **p.options.labels}},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": p.grace_s,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": UID,
                    "runAsGroup": UID,
                    "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "nodeSelector": node_selector(p, tier),
                "tolerations": [GPU_TAINT],
                "containers": [container(p)],
                "volumes": [
                    {"name": "auth", "configMap": {"name": f"{p.name}-auth"}},
                    {
                        "name": "weights",  # a volume per pod, created and deleted with it (costed per replica)
                        "ephemeral": {
                            "volumeClaimTemplate": {
                                "metadata": {"labels": pod_labels},
                                "spec": {
                                    "accessModes": ["ReadWriteOnce"],
                                    "storageClassName": f"{p.name}-weights",
                                    "resources": {"requests": {"storage": f"{weights_gb(p)}Gi"}},
                                },
                            }
                        },
                    },
                    {"name": "home", "emptyDir": {"sizeLimit": "4Gi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                ],
            },
        },
    }
    if not tier.scaled:  # KEDA owns the replica count of a scaled Deployment
        spec = {"replicas": tier.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(p, tier.name, annotations=annotations),
        "spec": spec,
    }


def service(p: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(p, p.name),
        "spec": {
            "type": "ClusterIP",
            "selector": p.labels,
            "ports": [{"name": "http", "port": p.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def network_policy(p: Plan) -> dict[str, Any]:
    """The pods' port from the allowed CIDRs (clients, the team's ingress) and from Prometheus's namespace."""
    sources: list[dict[str, Any]] = [{"ipBlock": {"cidr": c}} for c in p.options.allowed_cidrs]
    sources.append(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": p.options.prometheus_namespace}}}
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(p, p.name),
        "spec": {
            "podSelector": {"matchLabels": p.labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": p.port}]}],
        },
    }


def disruption_budget(p: Plan) -> dict[str, Any]:
    """Voluntary evictions (node drains, consolidation) take one replica at a time, and none of a lone one."""
    budget: dict[str, Any] = {"maxUnavailable": 1} if p.fleet.min_replicas > 1 else {"minAvailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(p, p.name),
        "spec": {**budget, "selector": {"matchLabels": p.labels}},
    }


def pod_monitor(p: Plan) -> dict[str, Any]:
    """Prometheus (prometheus-operator) scrapes vLLM's /metrics, which the auth layer guards: with the key."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta(p, p.name),
        "spec": {
            "selector": {"matchLabels": p.labels},
            "podMetricsEndpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "15s",
                    "authorization": {"type": "Bearer", "credentials": {"name": p.secret, "key": "api-key"}},
                }
            ],
        },
    }


def inflight_query(p: Plan) -> str:
    """Requests in flight over every replica, less what the on-demand base carries at the threshold: KEDA's
    AverageValue divides by the scaled Deployment's replicas, so it keeps ceil(total / threshold) in all."""
    running, waiting = (s.strip() for s in INFLIGHT_SIGNAL.split("+"))
    where = f'namespace="{p.namespace}",pod=~"{p.name}-.*"'
    total = f"sum({running}{{{where}}}) + sum({waiting}{{{where}}})"
    if not p.base:
        return total
    return f"clamp_min({total} - {p.base * threshold(p):g}, 0)"


def threshold(p: Plan) -> float:
    """The review's per-replica threshold: requests in flight each replica keeps (costing.performance.scaling)."""
    return float(p.fleet.inflight_per_replica)


def scaled_object(p: Plan) -> dict[str, Any] | None:
    main = tiers(p)[-1]
    if not main.scaled:
        return None
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(p, p.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": main.name},
            "minReplicaCount": p.fleet.min_replicas - p.base,
            "maxReplicaCount": p.fleet.max_replicas - p.base,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {  # scale-in slowly: a replica leaving drains for up to the review's drain time
                "horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": p.options.prometheus_url,
                        "query": inflight_query(p),
                        "threshold": f"{threshold(p):g}",
                    },
                }
            ],
        },
    }


def node_pool(p: Plan, tier: Tier) -> dict[str, Any]:
    """Karpenter NodePool: the costed instance type and one capacity type, no other; GPU nodes tainted; at
    most the review's peak of GPUs; emptied nodes removed, serving ones never consolidated away."""
    most = p.fleet.max_replicas - p.base if tier.scaled else tier.replicas
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": meta(p, tier.name, namespaced=False),
        "spec": {
            "template": {
                "metadata": {"labels": {**p.labels, "selfhost/tier": tier.capacity}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": p.name},
                    "requirements": [
                        {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [p.review.offer.instance_type]},
                        {"key": CAPACITY_LABEL, "operator": "In", "values": [tier.capacity]},
                    ],
                    "taints": [{"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}],
                    "expireAfter": "720h",
                },
            },
            "limits": {GPU_RESOURCE: str(most * int(p.fit.gpus_per_node))},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m"},
        },
    }


def ec2_node_class(p: Plan) -> dict[str, Any]:
    """The nodes' AMI family (EKS-optimised AL2023, NVIDIA variant for GPU types), IMDSv2 only (pods can't
    reach it), an encrypted root volume, the cluster's subnets and security groups by discovery tag."""
    cluster = p.options.cluster_name
    discovery = [{"tags": {"karpenter.sh/discovery": cluster}}]
    return {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": meta(p, p.name, namespaced=False),
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "role": p.options.node_role or f"KarpenterNodeRole-{cluster}",
            "subnetSelectorTerms": discovery,
            "securityGroupSelectorTerms": discovery,
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpTokens": "required",
                "httpPutResponseHopLimit": 1,
                "httpProtocolIPv6": "disabled",
            },
            "blockDeviceMappings": [
                {
                    "deviceName": "/dev/xvda",
                    "rootVolume": True,
                    "ebs": {
                        "volumeSize": f"{NODE_ROOT_GB}Gi",
                        "volumeType": "gp3",
                        "encrypted": True,
                        "deleteOnTermination": True,
                    },
                }
            ],
            "tags": {"selfhost-stack": p.name},
        },
    }


def gke_node_pools(p: Plan) -> list[dict[str, Any]]:
    """What the GKE stack declares per tier (gcp.container.NodePool): name, spot, size range, machine, GPUs."""
    accelerator = GKE_ACCELERATORS.get(p.fit.gpu.name)
    if accelerator is None:
        raise UserError(f"no GKE accelerator type for {p.fit.gpu.name}", "use an L4 or A100 offer on gcp")
    pools = []
    for tier in tiers(p):
        most = p.fleet.max_replicas - p.base if tier.scaled else tier.replicas
        pools.append(
            {
                "name": tier.name,
                "spot": tier.capacity == "spot",
                "min": tier.replicas if not tier.scaled else p.fleet.min_replicas - p.base,
                "max": most,
                "machine_type": p.review.offer.instance_type,
                "accelerator": accelerator,
                "gpus": int(p.fit.gpus_per_node),
                "disk_gb": NODE_ROOT_GB,
            }
        )
    return pools
