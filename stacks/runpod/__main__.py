"""selfhost on RunPod: vLLM serving Llama 3.x on an A40 pod, costed before anything is declared.

Read top to bottom: config (validated and cost-reviewed; a bad value or a budget overrun ends
`pulumi up` with one line and nothing declared), then the steps volume -> pod, then the exports.
Shared pieces (config -> spec, cost review, budget, the VllmEndpoint component, exports) come from
selfhost.stack; the offer and checks from selfhost.stack.runpod_config.
"""

import runpodinfra

from selfhost import auth_install
from selfhost.reap import ttl
from selfhost.stack import runpod_config
from selfhost.stack.component import VllmEndpoint, read_config, refusals, secret, stack_scope

# ---- config: checked and costed before any resource ------------------------------------------------
with refusals():
    config = read_config(runpod_config.KEYS)
    p = runpod_config.plan(config, scope=stack_scope())
    container_disk = runpod_config.container_disk_gb(config)

secure = p.offer.cloud_type == "SECURE"
data_center = str(config.get("dataCenterId") or runpod_config.DEFAULT_DATA_CENTER)
endpoint = VllmEndpoint(p)


def volume() -> runpodinfra.NetworkStorage | None:
    """The weights' network volume (Secure Cloud only; Community Cloud pods get a pod volume)."""
    if not secure:
        return None
    return runpodinfra.NetworkStorage(
        f"{p.name}-weights",
        name=f"{p.name}-weights",
        size=p.storage_gb,
        data_center_id=data_center,
        opts=endpoint.child(),
    )


def pod(weights: runpodinfra.NetworkStorage | None) -> runpodinfra.Pod:
    """The pod: the costed vLLM command, the secrets as secret env, the HTTP port behind RunPod's proxy."""
    env = [
        {"key": p.env_names["apiKey"], "value": secret(p.secrets["apiKey"])},
        {"key": p.env_names["hfToken"], "value": secret(p.secrets["hfToken"])},
        {"key": "HF_HOME", "value": f"{runpod_config.MOUNT}/hf"},
        # the owner and expiry marks `selfhost reap` scopes by (SELFHOST_MANAGED_BY, SELFHOST_OWNER, ...)
        *({"key": k, "value": v} for k, v in ttl.runpod_env(ttl.marks_of(p.labels)).items()),
    ]
    return runpodinfra.Pod(
        p.name,
        name=p.name,
        image_name=p.image,
        gpu_type_id=runpod_config.GPU_TYPE_ID,
        gpu_count=p.fit.gpus_per_node,
        cloud_type=p.offer.cloud_type,
        # writes the auth layer, runs vLLM under a supervisor (restart on exit or 3 failed probes; RunPod has no
        # health check for pods)
        docker_args=auth_install.runpod_docker_args(p.container_args, runpod_config.supervisor(p)),
        env=env,
        ports=f"{p.port}/http",
        container_disk_in_gb=container_disk,
        volume_mount_path=runpod_config.MOUNT,
        start_ssh=False,
        network_volume_id=weights.id if weights else None,
        data_center_id=data_center if weights else None,
        volume_in_gb=None if weights else p.storage_gb,
        opts=endpoint.child(depends_on=[weights] if weights else None),
    )


# ---- the program: the steps in order -----------------------------------------------------------------
weights = volume()
server = pod(weights)

# ---- exports (the cost review's figures are added by the component) ---------------------------------
url = server.id.apply(lambda pod_id: f"https://{pod_id}-{p.port}.proxy.runpod.net")
endpoint.finish(
    endpointUrl=url,
    healthUrl=url.apply(lambda u: u + p.readiness.path),
    podId=server.id,
    weightsVolumeId=weights.id if weights else None,
)
