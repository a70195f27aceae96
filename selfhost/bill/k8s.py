"""Price Kubernetes manifests (any, not only the kit's): the GPU nodes their pods need, and their volumes.

Read as data (multi-document YAML, a `kind: List`, or a folder of them); no cluster, no Kubernetes client.
A Deployment or StatefulSet runs `replicas` pods (a KEDA ScaledObject or an HPA targeting it sets the range
min..max instead), each asking `nvidia.com/gpu`. The node type is the well-known label
`node.kubernetes.io/instance-type` (EKS and GKE both set it) in the pod's nodeSelector or required node
affinity, or in the requirements of the Karpenter NodePool it selects (`karpenter.sh/nodepool`); the market
is `karpenter.sh/capacity-type` or `cloud.google.com/gke-spot` (default on-demand). Pods per node are the
catalog's GPUs per node over the pod's request, so the node count is what is billed, min and max like an
autoscaling group (`selfhost.bill.price.price_group`). A PersistentVolumeClaim is its size at the cloud's
disk rate. A GPU pod with no instance type is "not priced" with the reason, never zero; the cluster's
control plane is the user's existing cluster: not priced, said in a note.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from costing.data.catalog import Offer
from costing.errors import UserError
from costing.money.spend import HOURS_PER_MONTH
from selfhost.bill.price import Bill, Group, Usage, disk_rate, offer_for, price_group

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
GKE_SPOT = "cloud.google.com/gke-spot"
NODEPOOL = "karpenter.sh/nodepool"
WORKLOADS = ("Deployment", "StatefulSet")
# Kinds with no charge of their own: they configure, route inside the cluster, or authorise.
FREE_KINDS = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "TriggerAuthentication",
    "ClusterTriggerAuthentication",
    "NodePool",
    "EC2NodeClass",
    "StorageClass",
    "PriorityClass",
    "LimitRange",
    "ResourceQuota",
    "ServiceMonitor",
    "PodMonitor",
}
# The default StorageClass of each cluster kind and what it provisions (EKS: the EBS CSI driver, gp3 when the
# class says so; GKE: standard-rwo is pd-balanced).
CLASS_DISKS = {
    "gp3": ("aws", "gp3"),
    "gp2": ("aws", "gp2"),
    "standard-rwo": ("gcp", "pd-balanced"),
    "balanced-rwo": ("gcp", "pd-balanced"),
    "premium-rwo": ("gcp", "pd-ssd"),
    "standard": ("gcp", "pd-standard"),
}
PROVISIONERS = {"ebs.csi.aws.com": "aws", "kubernetes.io/aws-ebs": "aws", "pd.csi.storage.gke.io": "gcp"}
KEDA_DEFAULT_MIN, KEDA_DEFAULT_MAX = 0, 100  # keda.sh/v1alpha1 ScaledObject defaults
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([EPTGMk]i?|m)?$")
UNITS = {
    None: 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": 1e-3,
}
MAX_REPLICAS = 10_000


@dataclass(frozen=True)
class Doc:
    kind: str
    api: str
    name: str
    namespace: str
    body: dict[str, Any]

    @classmethod
    def of(cls, item: dict[str, Any]) -> Doc:
        meta: dict[str, Any] = item["metadata"] if isinstance(item.get("metadata"), dict) else {}
        name, namespace = str(meta.get("name") or "?"), str(meta.get("namespace") or "default")
        return cls(str(item["kind"]), str(item["apiVersion"]), name, namespace, item)

    @property
    def rid(self) -> str:
        where = f"{self.namespace}/" if self.namespace != "default" else ""
        return f"{self.kind}::{where}{self.name}"

    def get(self, *path: str | int, default: Any = None) -> Any:
        value: Any = self.body
        for part in path:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and len(value) > part else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                return default
        return value


def is_manifest(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("apiVersion"), str)


def load_docs(text: str, where: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise UserError(f"'{where}' is not YAML ({str(err).splitlines()[0]})", "pass Kubernetes manifests") from None


def looks_like_manifests(path: Path) -> bool:
    """A folder, or a YAML file whose documents are Kubernetes objects (apiVersion and kind)."""
    if path.is_dir():
        return True
    if not path.is_file() or path.suffix not in (".yaml", ".yml"):
        return False
    docs = load_docs(path.read_text(), str(path))
    return bool(docs) and all(is_manifest(d) for d in docs)


def read_docs(path: Path) -> list[Doc]:
    """Every object in the file or the folder's *.yaml / *.yml files (sorted), `kind: List` items included."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise UserError(f"folder '{path}' holds no .yaml or .yml file", "pass a folder of Kubernetes manifests")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"'{path}' not found", "pass a manifests file or folder")
    out: list[Doc] = []
    for f in files:
        for i, data in enumerate(load_docs(f.read_text(), str(f))):
            items = data.get("items") if isinstance(data, dict) and data.get("kind") == "List" else [data]
            for item in items or []:
                if not is_manifest(item):
                    raise UserError(
                        f"'{f}' document {i + 1} is not a Kubernetes object (no apiVersion and kind)",
                        "pass Kubernetes manifests (e.g. `kubectl kustomize` or `helm template` output)",
                    )
                out.append(Doc.of(item))
    return out


def quantity(value: Any, what: str) -> float:
    """A Kubernetes quantity (`100Gi`, `2`, `500M`) as a plain number."""
    match = QUANTITY.match(str(value).strip())
    if not match:
        raise UserError(f"{what} {value!r} is not a Kubernetes quantity", "write e.g. 100Gi or 1")
    number = float(match.group(1)) * UNITS[match.group(2)]
    if not math.isfinite(number):
        raise UserError(f"{what} {value!r} is not finite", "write e.g. 100Gi or 1")
    return number


def pod_gpus(pod: dict[str, Any], where: str) -> int:
    """GPUs one pod asks for: its containers' `nvidia.com/gpu` (limits, else requests), summed."""
    total = 0.0
    for c in pod.get("containers") or []:
        res = (c or {}).get("resources") or {}
        value = (res.get("limits") or {}).get(GPU_RESOURCE, (res.get("requests") or {}).get(GPU_RESOURCE))
        if value is not None:
            total += quantity(value, f"{where}: {GPU_RESOURCE}")
    if total != int(total) or total > 64:
        raise UserError(f"{where}: {GPU_RESOURCE} {total:g} is not a whole GPU count up to 64", "request whole GPUs")
    return int(total)


def _terms(pod: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    return [t for t in affinity.get("nodeSelectorTerms") or [] if isinstance(t, dict)]


def _requirement(reqs: list[Any], key: str) -> list[str] | None:
    for r in reqs:
        if isinstance(r, dict) and r.get("key") == key and r.get("operator") == "In":
            return [str(v) for v in r.get("values") or []]
    return None


def selected(pod: dict[str, Any], key: str) -> list[str] | None:
    """The values a pod allows for node label `key`: its nodeSelector, else its required node affinity
    (every term's values: the scheduler may pick any term)."""
    sel = pod.get("nodeSelector") or {}
    if key in sel:
        return [str(sel[key])]
    found: list[str] = []
    for term in _terms(pod):
        values = _requirement(term.get("matchExpressions") or [], key)
        if values is None:
            return None  # one term leaves it open
        found += values
    return found or None


def _count(value: Any, where: str) -> int:
    """A replica count as declared: a whole number, else one line naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise UserError(f"{where} {value!r} is not a whole number", "write a replica count, e.g. 2")
    return int(value)


def scale_range(workload: Doc, docs: list[Doc]) -> tuple[int, int, str]:
    """(min, max, what sets them): a KEDA ScaledObject or an HPA targeting the workload, else its replicas."""
    for d in docs:
        if d.kind not in ("ScaledObject", "HorizontalPodAutoscaler") or d.namespace != workload.namespace:
            continue
        ref = d.get("spec", "scaleTargetRef", default={})
        kind = ref.get("kind") or ("Deployment" if d.kind == "ScaledObject" else None)
        if ref.get("name") != workload.name or kind != workload.kind:
            continue
        if d.kind == "ScaledObject":
            low = _count(d.get("spec", "minReplicaCount", default=KEDA_DEFAULT_MIN), f"{d.rid}: minReplicaCount")
            high = _count(d.get("spec", "maxReplicaCount", default=KEDA_DEFAULT_MAX), f"{d.rid}: maxReplicaCount")
        else:
            low = _count(d.get("spec", "minReplicas", default=1), f"{d.rid}: minReplicas")
            high = _count(d.get("spec", "maxReplicas", default=1), f"{d.rid}: maxReplicas")
        if not (0 <= low <= high <= MAX_REPLICAS):
            raise UserError(
                f"{d.rid}: replicas {low}..{high} are not 0 <= min <= max <= {MAX_REPLICAS:,}", "fix the range"
            )
        return low, high, d.rid
    n = _count(workload.get("spec", "replicas", default=1), f"{workload.rid}: replicas")
    if not (0 <= n <= MAX_REPLICAS):
        raise UserError(f"{workload.rid}: replicas {n} is not in 0..{MAX_REPLICAS:,}", "fix spec.replicas")
    return n, n, "spec.replicas"


@dataclass(frozen=True)
class Placement:
    types: list[str]
    spot: bool
    region: str | None
    nodepool: Doc | None


def placement(pod: dict[str, Any], docs: list[Doc], bill: Bill, rid: str) -> Placement | str:
    """The instance types, market and region a pod's nodes have; a string says why none is known."""
    pool_name = selected(pod, NODEPOOL)
    pool = None
    reqs: list[Any] = []
    if pool_name:
        pools = [d for d in docs if d.kind == "NodePool" and d.api.startswith("karpenter.sh/") and d.name in pool_name]
        if not pools:
            return f"selects Karpenter NodePool {', '.join(pool_name)}, which is not in these manifests"
        pool = pools[0]
        reqs = pool.get("spec", "template", "spec", "requirements", default=[])
    types = selected(pod, INSTANCE_TYPE) or (_requirement(reqs, INSTANCE_TYPE) if pool else None)
    if not types:
        where = f" nor in NodePool {pool.name}'s requirements" if pool else ""
        return (
            f"no {INSTANCE_TYPE} in the pod's nodeSelector or required node affinity{where}: "
            "the node type (and so its price) is not declared"
        )
    capacity = selected(pod, CAPACITY_TYPE) or (_requirement(reqs, CAPACITY_TYPE) if pool else None) or []
    gke_spot = str((pod.get("nodeSelector") or {}).get(GKE_SPOT, "")).lower() == "true" or selected(pod, GKE_SPOT) == [
        "true"
    ]
    if "spot" in capacity and "on-demand" in capacity:
        bill.notes.append(
            f"{rid}: capacity may be spot or on-demand (Karpenter prefers spot): billed on-demand, the dearer"
        )
    spot = gke_spot or (capacity == ["spot"])
    regions = selected(pod, REGION_LABEL) or (_requirement(reqs, REGION_LABEL) if pool else None)
    return Placement(types, spot, regions[0] if regions else None, pool)


def _cloud_of(types: list[str]) -> tuple[str, list[Offer]] | str:
    offers = []
    for t in types:
        found = offer_for("aws", t) or offer_for("gcp", t)
        if found is None:
            return f"instance type {t} is not in the catalog"
        offers.append(found)
    clouds = {o.cloud for o in offers}
    if len(clouds) > 1:
        return f"instance types {', '.join(types)} span clouds"
    return offers[0].cloud, offers


def price_workload(w: Doc, docs: list[Doc], bill: Bill, usage: Usage, clouds: list[tuple[str, str]]) -> None:
    pod = w.get("spec", "template", "spec", default={})
    gpus = pod_gpus(pod, w.rid)
    low, high, by = scale_range(w, docs)
    if not gpus:
        bill.free.append(w.rid)
        bill.notes.append(f"{w.rid}: no {GPU_RESOURCE} request: runs on the cluster's existing nodes (not priced)")
        return
    where = placement(pod, docs, bill, w.rid)
    if isinstance(where, str):
        bill.not_priced(w.rid, f"{high} pod(s) x {gpus} GPU: {where}")
        return
    found = _cloud_of(where.types)
    if isinstance(found, str):
        bill.not_priced(w.rid, found)
        return
    cloud, offers = found
    small = [o for o in offers if o.gpus < gpus]
    if small:
        bill.not_priced(w.rid, f"a pod asks {gpus} GPUs, more than {small[0].instance_type} has ({small[0].gpus})")
        return
    per_node = min(o.gpus for o in offers) // gpus  # the fewest pods any allowed type holds: the most nodes
    nodes_low, nodes_high = math.ceil(low / per_node), math.ceil(high / per_node)
    region = where.region or usage.region or offers[0].region
    if not (where.region or usage.region):
        bill.notes.append(f"{w.rid}: no {REGION_LABEL} declared: priced in {region} (pass --region)")
    clouds.append((cloud, region))
    bill.notes.append(
        f"{w.rid}: {low}..{high} pod(s) ({by}) x {gpus} GPU, {per_node} pod(s) per {offers[0].instance_type} "
        f"node: {nodes_low}..{nodes_high} node(s)"
    )
    disks: list[tuple[float, str]] = []
    unpriced = None
    node_class = _node_class(where.nodepool, docs)
    if isinstance(node_class, str):
        unpriced = node_class
    else:
        disks = node_class
    states = [(HOURS_PER_MONTH, nodes_low, nodes_high)]
    od_share = 0.0 if where.spot else 100.0
    group = Group(w.rid, cloud, region, where.types, where.spot, 0, od_share, states, disks, unpriced, usage.zones)
    price_group(bill, group, usage)
    share = usage.peak_hours_share
    for vol in pod.get("volumes") or []:
        claim = ((vol or {}).get("ephemeral") or {}).get("volumeClaimTemplate")
        if isinstance(claim, dict):  # a generic ephemeral volume: created and deleted with its pod
            pods = low + (high - low) * share
            named = {**claim, "metadata": {**(claim.get("metadata") or {}), "name": vol.get("name", "ephemeral")}}
            price_claim(bill, w.rid, named, pods, docs, cloud, region, "per pod (lives with the pod)")
    for claim in w.get("spec", "volumeClaimTemplates", default=[]) or []:
        # A StatefulSet's claims outlive a scale-down: one per pod it ever ran, billed at the max.
        price_claim(bill, w.rid, claim, high, docs, cloud, region, "per pod (kept after scale-down)")


def _node_class(pool: Doc | None, docs: list[Doc]) -> list[tuple[float, str]] | str:
    """The nodes' root volumes from the EC2NodeClass a NodePool names; a string says why they are unknown."""
    if pool is None:
        return "the nodes' boot disks: declared with the cluster's node group, not in these manifests"
    ref = pool.get("spec", "template", "spec", "nodeClassRef", default={})
    classes = [d for d in docs if d.kind == ref.get("kind", "EC2NodeClass") and d.name == ref.get("name")]
    if not classes:
        return f"the nodes' boot disks: {ref.get('kind', 'node class')} {ref.get('name')} is not in these manifests"
    out = []
    for m in classes[0].get("spec", "blockDeviceMappings", default=[]) or []:
        ebs = (m or {}).get("ebs") or {}
        if not ebs.get("volumeSize"):
            return f"the nodes' volume {m.get('deviceName')}: size not declared"
        out.append((_gb(ebs["volumeSize"]), str(ebs.get("volumeType") or "gp3")))
    if not out:
        return f"the nodes' boot disks: {classes[0].rid} declares no blockDeviceMappings (the AMI's size)"
    return out


def _gb(value: Any) -> float:
    """A storage quantity in GiB (what the clouds bill per 'GB-month')."""
    return quantity(value, "storage") / 2**30


def claim_disk(claim: dict[str, Any], docs: list[Doc], cloud: str | None) -> tuple[str, str] | str:
    """(cloud, disk kind) of a claim: its StorageClass (in the manifests, or a well-known name), else the
    cloud's default class."""
    name = (claim.get("spec") or {}).get("storageClassName")
    classes = [d for d in docs if d.kind == "StorageClass" and d.name == name]
    if classes:
        sc = classes[0]
        c = PROVISIONERS.get(str(sc.get("provisioner", default="")))
        if c is None:
            return f"StorageClass {name}: provisioner {sc.get('provisioner')} is not priced"
        kind = str(sc.get("parameters", "type", default="gp3" if c == "aws" else "pd-balanced"))
        return c, kind
    if name in CLASS_DISKS:
        return CLASS_DISKS[str(name)]
    if cloud is None:
        return f"storage class {name or '(default)'}: the cloud is unknown (no priced GPU node in these manifests)"
    if name:
        return f"StorageClass {name} is not in these manifests"
    return (cloud, "gp3" if cloud == "aws" else "pd-balanced")


def price_claim(
    bill: Bill,
    rid: str,
    claim: dict[str, Any],
    count: float,
    docs: list[Doc],
    cloud: str | None,
    region: str | None,
    each: str,
) -> None:
    size = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    name = (claim.get("metadata") or {}).get("name", "claim")
    if not size:
        bill.not_priced(rid, f"volume claim {name}: no resources.requests.storage")
        return
    gb = _gb(size)
    disk = claim_disk(claim, docs, cloud)
    if isinstance(disk, str):
        bill.not_priced(rid, f"volume claim {name} {gb:g} GiB: {disk}")
        return
    c, kind = disk
    rate = disk_rate(c, kind, region or "")
    if isinstance(rate, str):
        bill.not_priced(rid, f"volume claim {name} {gb:g} GiB {kind}: {rate}")
        return
    bill.storage(rid, f"volume claim {name} {gb:g} GiB {kind} {each}".rstrip(), count, gb, rate)


def bill_manifests(path: Path, usage: Usage | None = None) -> Bill:
    """The bill of a manifests file or folder."""
    return bill_docs(read_docs(path), str(path), usage)


def bill_docs(docs: list[Doc], source: str, usage: Usage | None = None) -> Bill:
    """Every object priced, listed as not priced, or counted as carrying no charge of its own."""
    usage = (usage or Usage()).check()
    bill = Bill(source)
    clouds: list[tuple[str, str]] = []
    for d in docs:
        if d.kind in WORKLOADS:
            price_workload(d, docs, bill, usage, clouds)
    where = sorted(set(clouds))
    cloud, region = where[0] if len(where) == 1 else (None, usage.region)
    for d in docs:
        if d.kind in WORKLOADS:
            continue
        if d.kind == "PersistentVolumeClaim":
            price_claim(bill, d.rid, d.body, 1, docs, cloud, region or usage.region, "")
        elif d.kind == "Service":
            if d.get("spec", "type") == "LoadBalancer":
                bill.not_priced(d.rid, "type LoadBalancer: the cloud load balancer it creates is not priced")
            else:
                bill.free.append(d.rid)
        elif d.kind == "Ingress":
            bill.not_priced(d.rid, "the cloud load balancer an Ingress controller creates is not priced")
        elif d.kind in FREE_KINDS:
            bill.free.append(d.rid)
        elif d.kind in ("Pod", "Job", "CronJob", "DaemonSet", "ReplicaSet"):
            bill.not_priced(d.rid, f"kind {d.kind} is not priced by `selfhost bill` (priced: Deployment, StatefulSet)")
        else:
            bill.not_priced(d.rid, f"kind {d.kind} ({d.api}) not recognised by `selfhost bill`")
    bill.notes.append(
        "the cluster's control plane (EKS/GKE cluster fee) and its system nodes are not priced: the manifests run "
        "on your existing cluster"
    )
    bill.lines.sort(key=lambda line: line.resource)
    bill.unpriced.sort(key=lambda u: u.resource)
    bill.free.sort()
    bill.notes.sort()
    return bill
