"""`selfhost render k8s` and its builder: every object through the strict Kubernetes schemas (core APIs) or its
published CRD schema (KEDA, Karpenter, prometheus-operator), checkov's Kubernetes policies, and the figures
against the review they come from (threshold, replica range, drain, node type, the key never in the YAML)."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, run_selfhost

from costing.data.spec import load_spec, spec_from_dict
from costing.errors import UserError
from costing.money.kubernetes import NODE_ROOT_GB, kubernetes_review
from costing.performance.scaling import drain_seconds
from costing.performance.vllm_args import API_KEY_ENV, VLLM_IMAGE, serve_args
from selfhost import auth_install
from selfhost.k8s import manifests
from selfhost.k8s.manifests import Options, build

EXAMPLE = ROOT / "examples" / "llama-3.1-8b-eks-g5-spot.yaml"
CRDS = ROOT / "tests" / "data" / "crds"
K8S_VERSION = "1.33.0"  # EKS and GKE both offer it in standard support (2026)
EKS = Options(cluster_name="demo", allowed_cidrs=("10.0.0.0/16",))
GKE_SPEC = {
    "name": "llama-8b",
    "model": "llama-3.1-8b",
    "target": {"cloud": "gcp", "offer": "gcp-g2-standard-8", "pricing": "on-demand"},
    "workload": {"requests_per_day": 150000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 3},
}
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
HARDENING = {  # checkov's pod hardening checks the Deployments must pass rather than skip
    "CKV_K8S_16",  # not privileged
    "CKV_K8S_20",  # allowPrivilegeEscalation false
    "CKV_K8S_22",  # read-only root filesystem
    "CKV_K8S_23",  # runAsNonRoot
    "CKV_K8S_25",  # no added capabilities
    "CKV_K8S_28",  # NET_RAW dropped
    "CKV_K8S_29",  # a pod securityContext
    "CKV_K8S_30",  # a container securityContext
    "CKV_K8S_31",  # seccomp RuntimeDefault
    "CKV_K8S_37",  # capabilities: drop ALL
    "CKV_K8S_38",  # no service account token mounted
    "CKV_K8S_40",  # a high UID
}
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# Where vLLM and what it loads write at run time, each asked of the installed package with the container's env:
# vLLM's own cache/config/asset roots and its IPC sockets' folder (vllm.envs), Hugging Face's caches and token
# file (huggingface_hub.constants), torch.compile's Inductor cache and torch hub, and the home folder that
# Triton (~/.triton), FlashInfer and CUDA's JIT cache (~/.nv) write under (not in the CPU build: by their rule).
WRITES = """import json, os, tempfile
import vllm.envs as envs
import huggingface_hub.constants as hf
import torch.hub
from torch._inductor.runtime.cache_dir_utils import default_cache_dir
paths = {name: getattr(envs, name) for name in
         ("VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT", "VLLM_ASSETS_CACHE", "VLLM_XLA_CACHE_PATH", "VLLM_RPC_BASE_PATH")}
paths.update({f"hf.{n}": getattr(hf, n) for n in ("HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_TOKEN_PATH",
                                                   "HF_XET_CACHE") if hasattr(hf, n)})
paths["torch inductor"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
paths["torch hub"] = torch.hub.get_dir()
paths["home (triton, flashinfer, CUDA JIT caches)"] = os.path.expanduser("~")
paths["tempfile"] = tempfile.gettempdir()
print(json.dumps(paths))
"""


def example_spec():
    return load_spec(EXAMPLE)


@pytest.fixture(scope="module")
def eks() -> tuple[Any, list[dict]]:
    review = kubernetes_review(example_spec(), "eks")
    return review, build(review, "eks", EKS)


@pytest.fixture(scope="module")
def gke() -> tuple[Any, list[dict]]:
    review = kubernetes_review(spec_from_dict(GKE_SPEC), "gke")
    return review, build(review, "gke", Options(allowed_cidrs=("10.0.0.0/16",)))


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD's openAPIV3Schema, made strict as `kubectl apply --validate=strict` is:
    a field the schema does not declare is an error (the API server would prune it silently)."""

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the server, not the CRD
            out[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = schema
    return out


SCHEMAS = crd_schemas()


def problems(obj: dict) -> list[str]:
    """Every schema error of one object: strict Kubernetes schemas for core kinds, the CRD's for the others."""
    schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        return [
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [str(err)]
    return []


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_every_object_passes_the_strict_core_schemas_or_its_published_crd(eks, gke):
    for objects in (eks[1], gke[1]):
        for obj in objects:
            assert problems(obj) == [], obj["kind"]
    kinds = {(o["apiVersion"], o["kind"]) for o in eks[1]}
    assert set(SCHEMAS) <= kinds | {("keda.sh/v1alpha1", "ScaledObject")}  # every CRD copied is exercised


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "readinessprobe"), {}),  # a typo
        ("NodePool", ("spec", "template", "spec", "requirements", 0, "operator"), "Within"),  # not an enum value
        ("ScaledObject", ("spec", "minReplicaCount"), "2"),  # a string for an integer
        ("EC2NodeClass", ("spec", "metadataOptions", "httpTokens"), "sometimes"),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "bearerTokenFile"), "/var/run/token"),  # removed field
    ],
)
def test_the_validation_catches_a_broken_object(eks, kind, path, value):
    obj = copy.deepcopy(by_kind(eks[1], kind)[-1])
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert problems(obj), f"{kind} with {path}={value!r} passed"


def test_the_autoscaler_keeps_the_reviews_threshold_between_its_replica_range(eks):
    review, objects = eks
    fleet = review.fleet
    assert fleet.max_replicas > fleet.min_replicas and fleet.base_ondemand_replicas == 1  # spot with a base
    (scaler,) = by_kind(objects, "ScaledObject")
    (trigger,) = scaler["spec"]["triggers"]
    assert float(trigger["metadata"]["threshold"]) == fleet.inflight_per_replica
    assert trigger["metricType"] == "AverageValue"
    query = trigger["metadata"]["query"]
    assert "vllm:num_requests_waiting" in query and "vllm:num_requests_running" in query
    base = fleet.base_ondemand_replicas
    assert f"- {base * fleet.inflight_per_replica:g}" in query  # the base's share: KEDA counts the spot replicas
    spec = scaler["spec"]
    assert (spec["minReplicaCount"] + base, spec["maxReplicaCount"] + base) == (fleet.min_replicas, fleet.max_replicas)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert spec["scaleTargetRef"]["name"] in deployments
    assert "replicas" not in deployments[spec["scaleTargetRef"]["name"]]["spec"]  # KEDA owns the count
    assert deployments["llama-8b-base"]["spec"]["replicas"] == base


def test_pods_run_the_costed_node_type_gpus_and_vllm_line(eks, gke):
    for review, objects in (eks, gke):
        for deployment in by_kind(objects, "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            assert c["image"] == VLLM_IMAGE
            assert c["args"] == serve_args(review.fit.settings)  # the one argument builder's line
            assert c["resources"]["limits"]["nvidia.com/gpu"] == str(review.fit.gpus_per_node)
            assert pod["nodeSelector"][manifests.INSTANCE_TYPE_LABEL] == review.offer.instance_type
    _, objects = eks
    selectors = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["nodeSelector"] for d in by_kind(objects, "Deployment")
    }
    assert selectors["llama-8b"][manifests.CAPACITY_LABEL] == "spot"
    assert selectors["llama-8b-base"][manifests.CAPACITY_LABEL] == "on-demand"
    pools = {p["metadata"]["name"]: p for p in by_kind(objects, "NodePool")}
    for name, selector in selectors.items():
        pool = pools[selector[manifests.NODEPOOL_LABEL]]
        requirements = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
        # no silent widening: the costed type and the costed capacity type, nothing else
        assert requirements == {
            manifests.INSTANCE_TYPE_LABEL: [eks[0].offer.instance_type],
            manifests.CAPACITY_LABEL: [selector[manifests.CAPACITY_LABEL]],
        }, name
    (node_class,) = by_kind(objects, "EC2NodeClass")
    assert node_class["spec"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == f"{NODE_ROOT_GB}Gi"
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"


def test_the_weights_volume_is_the_reviews_storage_per_pod(eks):
    review, objects = eks
    for deployment in by_kind(objects, "Deployment"):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        claim = volumes["weights"]["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert claim["accessModes"] == ["ReadWriteOnce"]
        gib = int(claim["resources"]["requests"]["storage"].removesuffix("Gi"))
        assert gib >= review.storage_gb >= review.fit.weight_gib
    disk = next(line for line in review.cost_lines if line.item.startswith("disk "))
    assert f"{NODE_ROOT_GB} GB system" in disk.item  # the node's root volume is costed with the weights volume


def test_the_key_comes_from_the_secret_and_never_appears_in_the_yaml(tmp_path):
    key = "sk-live-9f8e7d6c5b4a3210zz"
    result = run_selfhost(
        "render", "k8s", "--spec", str(EXAMPLE), "--cluster-name", "demo", "--allowed-cidrs", "10.0.0.0/16",
        "--out", str(tmp_path / "out"), env={API_KEY_ENV: key, "HF_TOKEN": "hf_secret_token_value"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = "".join(p.read_text() for p in sorted((tmp_path / "out").iterdir()))
    assert key not in text and "hf_secret_token_value" not in text
    objects = [o for p in sorted((tmp_path / "out").glob("*.yaml")) for o in yaml.safe_load_all(p.read_text())]
    assert not by_kind(objects, "Secret")  # the user creates it (kubectl create secret), the render never does
    for deployment in by_kind(objects, "Deployment"):
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env[API_KEY_ENV] == {
            "name": API_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": "llama-8b-keys", "key": "api-key"}},
        }
        assert "value" not in env["HF_TOKEN"]
        assert not any(API_KEY_ENV in a or "api-key" in a for a in c["args"])


def test_the_auth_layer_is_loaded_and_readiness_generates_with_the_key(eks):
    _, objects = eks
    (config_map,) = by_kind(objects, "ConfigMap")
    assert config_map["data"][auth_install.FILENAME] == auth_install.source().decode()
    c = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert auth_install.KEY_CHECK in c["command"][2]  # the key rules before vLLM loads a model
    assert "--middleware" in c["args"] and {"name": "PYTHONPATH", "value": auth_install.CONTAINER_DIR} in c["env"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[auth_install.CONTAINER_DIR]["readOnly"] is True
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    script = c["readinessProbe"]["exec"]["command"][-1]
    assert f'os.environ["{API_KEY_ENV}"]' in script and "/v1/completions" in script


def test_the_readiness_probe_passes_only_with_the_key_on_the_auth_layer(eks, tmp_path):
    """The probe's own script against the kit's auth layer in front of a stand-in completion route."""
    import os
    import sys

    from fake_vllm_server import free_port, wait_port

    review, objects = eks
    c = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    key = "probe-key-0123456789abcdef"
    port = free_port()
    script = c["readinessProbe"]["exec"]["command"][-1].replace(
        f"127.0.0.1:{review.fit.settings.port}", f"127.0.0.1:{port}"
    )
    auth_install.write_module(tmp_path)
    server = tmp_path / "server.py"
    server.write_text(
        "import asyncio, sys\nfrom selfhost_auth import BearerAuth\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http': return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'{}'})\n"
        "import uvicorn\nuvicorn.run(BearerAuth(app), host='127.0.0.1', port=int(sys.argv[1]), log_level='error')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), API_KEY_ENV: key}
    proc = subprocess.Popen([sys.executable, str(server), str(port)], env=env)
    try:
        wait_port(port, proc)

        def probe(k: str) -> int:
            return subprocess.run([sys.executable, "-c", script], env={**os.environ, API_KEY_ENV: k}).returncode

        assert probe(key) == 0
        assert probe("wrong-key-0123456789abcdef") != 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_termination_grace_covers_prestop_and_the_reviews_drain(eks):
    review, objects = eks
    drain = drain_seconds(review)
    assert drain == review.fit.settings.shutdown_timeout_s
    for deployment in by_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        args = c["args"]
        assert args[args.index("--shutdown-timeout") + 1] == str(drain)
        sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert pod["terminationGracePeriodSeconds"] >= sleep + drain + manifests.STOP_MARGIN_S


def test_network_policy_admits_the_allowed_cidrs_and_prometheus_only(eks):
    (policy,) = by_kind(eks[1], "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in rule["from"] and len(rule["from"]) == 2
    assert rule["ports"] == [{"protocol": "TCP", "port": eks[0].fit.settings.port}]


def test_gke_pods_select_the_stacks_node_pools(gke):
    review, objects = gke
    assert not by_kind(objects, "NodePool") and not by_kind(objects, "EC2NodeClass")
    (deployment,) = by_kind(objects, "Deployment")  # on-demand: one tier
    selector = deployment["spec"]["template"]["spec"]["nodeSelector"]
    assert selector[manifests.GKE_NODEPOOL_LABEL] == "llama-8b" and manifests.GKE_SPOT_LABEL not in selector
    plan = manifests.plan_for(review, "gke", Options())
    (pool,) = manifests.gke_node_pools(plan)
    assert (pool["min"], pool["max"], pool["spot"]) == (review.fleet.min_replicas, review.fleet.max_replicas, False)
    assert pool["machine_type"] == "g2-standard-8" and pool["accelerator"] == "nvidia-l4"


def test_checkov_finds_nothing_the_kit_has_not_justified(tmp_path_factory):
    if not CHECKOV.exists():
        pytest.skip("checkov lives in its own virtualenv: make checkov-venv")
    out = tmp_path_factory.mktemp("k8s")
    for cluster, spec, opts in (
        ("eks", example_spec(), EKS),
        ("gke", spec_from_dict(GKE_SPEC), Options(allowed_cidrs=("10.0.0.0/8",))),
    ):
        for i, obj in enumerate(build(spec, cluster, opts)):
            (out / f"{cluster}-{i:02d}.yaml").write_text(yaml.safe_dump(obj))
    result = subprocess.run(
        [str(CHECKOV), "-d", str(out), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["passed"] > 50, failed
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {s.split("=")[0] for s in manifests.CHECKOV_SKIPS}  # each skip is one the kit justifies
    # the locked-down pod: every Deployment passes the hardening checks themselves (none skipped, none n/a)
    passed: dict[tuple[str, str], set[str]] = {}  # by (file, resource): the eks and gke objects share names
    for c in report["results"]["passed_checks"]:
        passed.setdefault((c["file_path"], c["resource"]), set()).add(c["check_id"])
    deployments = [r for r in passed if r[1].startswith("Deployment.")]
    assert len(deployments) == 3, sorted(passed)  # eks: the spot and the on-demand base; gke: on-demand
    for resource in deployments:
        assert passed[resource] >= HARDENING, f"{resource}: {sorted(HARDENING - passed[resource])}"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--cluster", "aks"), "unknown cluster kind 'aks'"),
        (("--cluster", "gke"), "runs gcp nodes, but the spec's target.cloud is aws"),
        (("--allowed-cidrs", ""), "--allowed-cidrs is empty"),
        (("--allowed-cidrs", "10.0.0.0/99"), "is not a CIDR block"),
        (("--namespace", "Bad_Name"), "is not a Kubernetes name"),
        (("--pricing", "reserved-1y"), "buy no reservation"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, words):
    base = {"--cluster-name": "demo", "--allowed-cidrs": "10.0.0.0/16"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    flags = [x for k, v in {**base, **given}.items() for x in (k, v)]
    result = run_selfhost("render", "k8s", "--spec", str(EXAMPLE), *flags, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_cluster_kind_follows_the_offer_and_refuses_a_cloud_without_one():
    spec = spec_from_dict({**GKE_SPEC, "target": {"offer": "gcp-g2-standard-8"}})  # no cloud: the offer's
    assert kubernetes_review(spec).offer.cloud == "gcp"
    runpod = spec_from_dict({**GKE_SPEC, "target": {"offer": "runpod-a40x1-secure"}})
    with pytest.raises(UserError, match=r"no Kubernetes cluster kind for target\.cloud runpod"):
        kubernetes_review(runpod)


def test_an_eks_render_needs_the_cluster_name():
    with pytest.raises(UserError, match="cluster's name"):
        build(example_spec(), "eks", Options(allowed_cidrs=("10.0.0.0/16",)))


def test_part_time_schedules_are_refused_not_billed_around_the_clock():
    spec = spec_from_dict({**GKE_SPEC, "schedule": {"hours_per_day": 10}})
    with pytest.raises(UserError, match="part-time schedule"):
        kubernetes_review(spec, "gke")


def test_the_rendered_yaml_files_round_trip_to_the_builders_objects(tmp_path):
    result = run_selfhost(
        "render", "k8s", "--spec", str(EXAMPLE), "--cluster-name", "demo", "--allowed-cidrs", "10.0.0.0/16",
        "--out", str(tmp_path / "all.yaml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "all.yaml").read_text()
    assert list(yaml.safe_load_all(text)) == build(example_spec(), "eks", EKS)
    assert "kubectl -n llama-8b create secret generic llama-8b-keys" in text


def test_the_review_prices_the_nodes_and_leaves_the_control_plane_out(eks):
    review, _ = eks
    assert any("EKS control plane $0.10/h" in n and "not in the monthly total" in n for n in review.notes)
    assert not any("CloudWatch" in n for n in review.notes)  # the VM groups' metrics are not these pods'
    assert review.monthly_usd == pytest.approx(sum(line.usd for line in review.cost_lines))
    gke_review = kubernetes_review(spec_from_dict(GKE_SPEC), "gke")
    assert any("GKE control plane: not priced" in n for n in gke_review.notes)


def test_plan_kubernetes_is_the_same_review(eks):
    result = run_selfhost("plan", "--spec", str(EXAMPLE), "--kubernetes", "eks", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    monthly = data.get("monthly_usd", data.get("cost", {}).get("monthly_usd"))
    assert monthly == pytest.approx(eks[0].monthly_usd, abs=0.01)
    assert data["target"]["kubernetes"] == "eks"  # the JSON says the replicas are pods on a cluster
    table = run_selfhost("plan", "--spec", str(EXAMPLE), "--kubernetes", "eks").stdout
    assert "autoscaled by KEDA" in table and "SkyServe" not in table.split("Replicas", 1)[1].split("│ Schedule")[0]


def test_a_re_render_into_the_same_folder_leaves_no_stale_object(tmp_path):
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "notes.yaml").write_text("mine: true\n")  # not the render's: left alone
    first = ("--spec", str(EXAMPLE), "--cluster-name", "demo", "--allowed-cidrs", "10.0.0.0/16", "--out", str(out))
    assert run_selfhost("render", "k8s", *first).returncode == 0
    assert any("ec2nodeclass" in p.name for p in out.iterdir())
    again = run_selfhost("render", "k8s", *first, "--cluster", "eks", "--name", "other")
    assert again.returncode == 0, again.stderr
    rendered = sorted(p.name for p in out.glob("[0-9][0-9]-*.yaml"))
    assert rendered and all(p.endswith("-other.yaml") or "other-" in p for p in rendered), rendered
    assert (out / "notes.yaml").read_text() == "mine: true\n" and "removed" in again.stderr


def test_everywhere_vllm_writes_is_a_writable_volume_of_the_read_only_pod(eks):
    """The root filesystem is read-only: each place vLLM (and torch, Hugging Face) writes, as the installed
    packages resolve it from the container's own environment, is under one of the pod's writable volumes."""
    if not VLLM_PYTHON.exists():
        pytest.skip("vLLM for the CPU lives in its own virtualenv: make vllm-venv")
    _, objects = eks
    for deployment in by_kind(objects, "Deployment"):
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}  # the Secret's variables aside
        writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert all("configMap" not in volumes[m["name"]] for m in c["volumeMounts"] if not m.get("readOnly"))
        result = subprocess.run(
            [str(VLLM_PYTHON), "-c", WRITES], env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        paths = json.loads(result.stdout.strip().splitlines()[-1])
        outside = {
            what: path for what, path in paths.items()
            if not any(path == m or path.startswith(m.rstrip("/") + "/") for m in writable)
        }  # fmt: skip
        assert not outside, f"written outside the pod's writable volumes {writable}: {outside}"
        assert paths["hf.HF_HUB_CACHE"].startswith(manifests.HF_HOME + "/")  # the weights: the costed volume
