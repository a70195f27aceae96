"""Find and tear down deployments carrying an `expires-at` mark, per cloud (boto3, google-cloud-compute, the RunPod
SDK, the `sky` CLI). Each `list_marked()` returns ONLY marked deployments: the cloud-side filter asks for the mark
and every result is checked again here, so nothing without one is ever a candidate.

Endpoints come from each client's own override: AWS_ENDPOINT_URL (boto3), RUNPOD_API_BASE_URL (RunPod SDK), the
compute client's `api_endpoint` (SELFHOST_GCP_COMPUTE_ENDPOINT), the `sky` on PATH (or $SELFHOST_SKY).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from costing.errors import UserError
from selfhost.reap import ttl
from selfhost.versions import install_hint

CLOUDS = ("aws", "gcp", "runpod", "sky")


@dataclass
class Deployment:
    cloud: str
    id: str
    name: str
    where: str
    state: str
    expires_at: dt.datetime | None
    preview: str | None = None
    hourly_usd: float | None = None
    started_at: dt.datetime | None = None

    def hours(self, now: dt.datetime) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (now - self.started_at).total_seconds() / 3600)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


ASG_TAG = "aws:autoscaling:groupName"


class AwsReaper:
    """Auto Scaling groups and EC2 instances tagged `expires-at`, in the given regions.

    A group (the spot stacks run an Auto Scaling group of one) is deleted as a whole: terminating its instance
    would only make it launch another. Its instances are left to the group. What else a stack made (security
    group, address, role) stays for `pulumi destroy`; the reaper stops the spend.
    """

    cloud = "aws"

    def __init__(self, regions: list[str] | None = None) -> None:
        import boto3

        default = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.regions = regions or ([default] if default else [])
        if not self.regions:
            raise UserError("no AWS region given", "pass --region (repeat for several) or set AWS_REGION")
        self._clients = {r: boto3.client("ec2", region_name=r) for r in self.regions}
        self._asg = {r: boto3.client("autoscaling", region_name=r) for r in self.regions}

    def list_marked(self) -> list[Deployment]:
        return self._groups() + self._instances()

    def _groups(self) -> list[Deployment]:
        out = []
        for region, asg in self._asg.items():
            pages = asg.get_paginator("describe_auto_scaling_groups").paginate(
                Filters=[{"Name": "tag-key", "Values": [ttl.EXPIRES_KEY]}]
            )
            for page in pages:
                for g in page.get("AutoScalingGroups", []):
                    tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
                    if ttl.EXPIRES_KEY not in tags:
                        continue
                    out.append(
                        Deployment(
                            "aws",
                            "asg:" + g["AutoScalingGroupName"],
                            g["AutoScalingGroupName"],
                            region,
                            f"group of {len(g.get('Instances', []))}",
                            ttl.parse_expiry(tags[ttl.EXPIRES_KEY]),
                            tags.get(ttl.PREVIEW_KEY),
                            ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)),
                            _utc(g.get("CreatedTime")),
                        )
                    )
        return out

    def _instances(self) -> list[Deployment]:
        out = []
        for region, ec2 in self._clients.items():
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": "tag-key", "Values": [ttl.EXPIRES_KEY]},
                    {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
                ]
            )
            for page in pages:
                for res in page.get("Reservations", []):
                    for inst in res.get("Instances", []):
                        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                        if ttl.EXPIRES_KEY not in tags or ASG_TAG in tags:  # a group's instance: the group goes
                            continue
                        out.append(
                            Deployment(
                                "aws",
                                inst["InstanceId"],
                                tags.get("Name", inst["InstanceId"]),
                                region,
                                inst["State"]["Name"],
                                ttl.parse_expiry(tags[ttl.EXPIRES_KEY]),
                                tags.get(ttl.PREVIEW_KEY),
                                ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)),
                                _utc(inst.get("LaunchTime")),
                            )
                        )
        return out

    def terminate(self, d: Deployment) -> None:
        if d.id.startswith("asg:"):
            self._asg[d.where].delete_auto_scaling_group(AutoScalingGroupName=d.name, ForceDelete=True)
        else:
            self._clients[d.where].terminate_instances(InstanceIds=[d.id])


class GcpReaper:
    """Compute Engine instances labelled `expires-at`, in every zone of the project (aggregated list).

    An instance a managed instance group made (the spot stacks: metadata `created-by` names the group) is reaped
    by deleting its group: deleting the instance alone would only make the group recreate it.
    """

    cloud = "gcp"

    def __init__(self, project: str | None = None) -> None:
        from google.cloud import compute_v1

        self.project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
        if not self.project:
            raise UserError("no GCP project given", "pass --gcp-project or set GOOGLE_CLOUD_PROJECT")
        endpoint = os.environ.get("SELFHOST_GCP_COMPUTE_ENDPOINT")
        options = {"api_endpoint": endpoint} if endpoint else None
        self.client = compute_v1.InstancesClient(transport="rest", client_options=options)
        self.groups = compute_v1.InstanceGroupManagersClient(transport="rest", client_options=options)

    def list_marked(self) -> list[Deployment]:
        out: list[Deployment] = []
        request = {"project": self.project, "filter": f"labels.{ttl.EXPIRES_KEY}:*"}
        for _scope, scoped in self.client.aggregated_list(request=request):
            for inst in scoped.instances:
                labels = dict(inst.labels)
                if ttl.EXPIRES_KEY not in labels:
                    continue
                zone = inst.zone.rsplit("/", 1)[-1]
                created = dt.datetime.fromisoformat(inst.creation_timestamp) if inst.creation_timestamp else None
                meta = {i.key: i.value for i in inst.metadata.items} if inst.metadata else {}
                group = meta.get("created-by", "")
                if "/instanceGroupManagers/" in group:
                    name, ident = group.rsplit("/", 1)[-1], "mig:" + group.rsplit("/", 1)[-1]
                    if any(d.id == ident and d.where == zone for d in out):
                        continue
                else:
                    name, ident = inst.name, str(inst.id) if inst.id else inst.name
                out.append(
                    Deployment(
                        "gcp",
                        ident,
                        name,
                        zone,
                        inst.status,
                        ttl.parse_expiry(labels[ttl.EXPIRES_KEY]),
                        labels.get(ttl.PREVIEW_KEY),
                        ttl.hourly_from_tag(labels.get(ttl.HOURLY_KEY)),
                        _utc(created),
                    )
                )
        return out

    def terminate(self, d: Deployment) -> None:
        if d.id.startswith("mig:"):
            op = self.groups.delete(project=self.project, zone=d.where, instance_group_manager=d.name)
        else:
            op = self.client.delete(project=self.project, zone=d.where, instance=d.name)
        op.result(timeout=600)


def _pod_env(raw) -> dict[str, str]:
    """A pod's env as the API returns it: ["KEY=value", ...] (or [{key, value}, ...])."""
    env: dict[str, str] = {}
    for item in raw or []:
        if isinstance(item, dict) and "key" in item:
            env[str(item["key"])] = str(item.get("value", ""))
        elif isinstance(item, str) and "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


class RunpodReaper:
    """RunPod pods whose env carries SELFHOST_EXPIRES_AT (or whose name carries `-exp-<time>`)."""

    cloud = "runpod"

    def __init__(self) -> None:
        import runpod

        key = os.environ.get("RUNPOD_API_KEY")
        if not key:
            raise UserError(
                "RUNPOD_API_KEY is not set", "put the RunPod API key in the CI secret store as RUNPOD_API_KEY"
            )
        runpod.api_key = key
        self.sdk = runpod

    def list_marked(self) -> list[Deployment]:
        out = []
        now = ttl.now_utc()
        for pod in self.sdk.get_pods() or []:
            tags = ttl.tags_from_runpod_env(_pod_env(pod.get("env")))
            expiry = ttl.parse_expiry(tags.get(ttl.EXPIRES_KEY)) or ttl.expiry_in_name(pod.get("name") or "")
            if ttl.EXPIRES_KEY not in tags and expiry is None:
                continue
            uptime = pod.get("uptimeSeconds")
            out.append(
                Deployment(
                    "runpod",
                    pod["id"],
                    pod.get("name") or pod["id"],
                    (pod.get("machine") or {}).get("gpuDisplayName") or "-",
                    pod.get("desiredStatus") or "-",
                    expiry,
                    tags.get(ttl.PREVIEW_KEY),
                    pod.get("costPerHr")
                    if pod.get("costPerHr") is not None
                    else ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)),
                    None if uptime is None else now - dt.timedelta(seconds=float(uptime)),
                )
            )
        return out

    def terminate(self, d: Deployment) -> None:
        self.sdk.terminate_pod(d.id)


class SkyReaper:
    """SkyPilot clusters whose name carries `-exp-<time>` (`sky status -o json`; `sky down -y NAME`)."""

    cloud = "sky"

    def __init__(self, hourly_usd: float | None = None) -> None:
        sky = os.environ.get("SELFHOST_SKY") or shutil.which("sky")
        if not sky:
            raise UserError("the `sky` command is not installed", install_hint("sky"))
        self.sky: str = sky
        self.hourly_usd = hourly_usd

    def _run(self, *args: str) -> str:
        proc = subprocess.run([self.sky, *args], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.split())[-300:]
            raise RuntimeError(f"`sky {' '.join(args)}` exited {proc.returncode}: {tail}")
        return proc.stdout

    def list_marked(self) -> list[Deployment]:
        out = []
        for rec in json.loads(self._run("status", "-o", "json") or "[]"):
            name = rec.get("name") or ""
            expiry = ttl.expiry_in_name(name)
            if expiry is None:
                continue
            launched = rec.get("launched_at")
            started = dt.datetime.fromtimestamp(launched, dt.timezone.utc) if launched else None
            preview = name.split(ttl.NAME_MARK)[0]
            status = rec.get("status")
            out.append(
                Deployment("sky", name, name, "-", str(status or "-"), expiry, preview, self.hourly_usd, started)
            )
        return out

    def terminate(self, d: Deployment) -> None:
        self._run("down", "-y", d.name)


EXTRA = {"aws": "aws", "gcp": "gcp", "runpod": "runpod", "sky": "sky"}


def reaper(cloud: str, *, regions=None, gcp_project=None, hourly_usd=None):
    try:
        return _reaper(cloud, regions=regions, gcp_project=gcp_project, hourly_usd=hourly_usd)
    except ImportError as err:
        raise UserError(
            f"{cloud} support is not installed ({err.name} is missing)", install_hint(EXTRA[cloud])
        ) from None


def _reaper(cloud: str, *, regions=None, gcp_project=None, hourly_usd=None):
    if cloud == "aws":
        return AwsReaper(regions)
    if cloud == "gcp":
        return GcpReaper(gcp_project)
    if cloud == "runpod":
        return RunpodReaper()
    if cloud == "sky":
        return SkyReaper(hourly_usd)
    raise UserError(f"unknown cloud '{cloud}'", f"use --cloud with one of: {', '.join(CLOUDS)}")
