"""List and tear down the kit's deployments, per cloud (boto3, google-cloud-compute, the RunPod SDK, the `sky` CLI).

Each `list_marked()` returns every resource carrying any of the kit's marks (`managed-by` or `expires-at`), each with
its marks; `ttl.decide` then says which may go: managed-by selfhost AND this owner AND expired (or the preview
named). A resource without the marks is never listed; one with them but another owner's is listed as skipped.

Endpoints come from each client's own override: AWS_ENDPOINT_URL (boto3), RUNPOD_API_BASE_URL (RunPod SDK), the
compute client's `api_endpoint` (SELFHOST_GCP_COMPUTE_ENDPOINT), the `sky` on PATH (or $SELFHOST_SKY).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field

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
    marks: dict[str, str]
    hourly_usd: float | None = None
    started_at: dt.datetime | None = None
    kind: str = "instance"
    order: int = 0  # teardown order: lower first (a group before its template, a load balancer before its targets)
    extra: dict = field(default_factory=dict)

    @property
    def expires_at(self) -> dt.datetime | None:
        return ttl.parse_expiry(self.marks.get(ttl.EXPIRES_KEY))

    @property
    def preview(self) -> str | None:
        return self.marks.get(ttl.PREVIEW_KEY)

    def hours(self, now: dt.datetime) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, (now - self.started_at).total_seconds() / 3600)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _marks(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k in ttl.MARK_KEYS}


def _marked(tags: dict[str, str]) -> bool:
    return ttl.EXPIRES_KEY in tags or ttl.MANAGED_KEY in tags


ASG_TAG = "aws:autoscaling:groupName"
MARK_FILTER = [ttl.EXPIRES_KEY, ttl.MANAGED_KEY]


class AwsReaper:
    """What the AWS stack runs, in teardown order: Auto Scaling groups (deleted with their instances: terminating an
    instance would only make the group launch another), lone instances, load balancers (their listeners go with
    them), target groups, launch templates. Every region the account has enabled, or the regions given. What else
    a stack made (security groups, bucket, secrets, role) costs nothing running and stays for `pulumi destroy`."""

    cloud = "aws"

    def __init__(self, regions: list[str] | None = None) -> None:
        import boto3

        default = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if not regions:
            listed = boto3.client("ec2", region_name=default).describe_regions()["Regions"]
            regions = sorted(r["RegionName"] for r in listed)
        self.regions = list(regions)
        self._ec2 = {r: boto3.client("ec2", region_name=r) for r in self.regions}
        self._asg = {r: boto3.client("autoscaling", region_name=r) for r in self.regions}
        self._elb = {r: boto3.client("elbv2", region_name=r) for r in self.regions}

    def list_marked(self) -> list[Deployment]:
        out: list[Deployment] = []
        for region in self.regions:
            out += self._groups(region) + self._instances(region) + self._balancers(region)
            out += self._templates(region)
        return out

    def _groups(self, region: str) -> list[Deployment]:
        out = []
        pages = (
            self._asg[region]
            .get_paginator("describe_auto_scaling_groups")
            .paginate(Filters=[{"Name": "tag-key", "Values": MARK_FILTER}])
        )
        for page in pages:
            for g in page.get("AutoScalingGroups", []):
                tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
                if not _marked(tags):
                    continue
                out.append(
                    Deployment(
                        "aws", "asg:" + g["AutoScalingGroupName"], g["AutoScalingGroupName"], region,
                        f"group of {len(g.get('Instances', []))}", _marks(tags),
                        ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)), _utc(g.get("CreatedTime")), "group", 0,
                    )
                )  # fmt: skip
        return out

    def _instances(self, region: str) -> list[Deployment]:
        out = []
        pages = (
            self._ec2[region]
            .get_paginator("describe_instances")
            .paginate(
                Filters=[
                    {"Name": "tag-key", "Values": MARK_FILTER},
                    {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
                ]
            )
        )
        for page in pages:
            for res in page.get("Reservations", []):
                for inst in res.get("Instances", []):
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    if not _marked(tags) or ASG_TAG in tags:  # a group's instance: the group goes
                        continue
                    out.append(
                        Deployment(
                            "aws", inst["InstanceId"], tags.get("Name", inst["InstanceId"]), region,
                            inst["State"]["Name"], _marks(tags), ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)),
                            _utc(inst.get("LaunchTime")), "instance", 1,
                        )
                    )  # fmt: skip
        return out

    def _tags_of(self, region: str, arns: list[str]) -> dict[str, dict[str, str]]:
        tags: dict[str, dict[str, str]] = {}
        for i in range(0, len(arns), 20):  # describe_tags takes at most 20 ARNs
            for d in self._elb[region].describe_tags(ResourceArns=arns[i : i + 20]).get("TagDescriptions", []):
                tags[d["ResourceArn"]] = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
        return tags

    def _balancers(self, region: str) -> list[Deployment]:
        elb = self._elb[region]
        out = []
        lbs = [lb for page in elb.get_paginator("describe_load_balancers").paginate() for lb in page["LoadBalancers"]]
        tags = self._tags_of(region, [lb["LoadBalancerArn"] for lb in lbs])
        for lb in lbs:
            t = tags.get(lb["LoadBalancerArn"], {})
            if _marked(t):
                out.append(
                    Deployment(
                        "aws", lb["LoadBalancerArn"], lb["LoadBalancerName"], region,
                        (lb.get("State") or {}).get("Code", "-"), _marks(t), None, _utc(lb.get("CreatedTime")),
                        "load balancer", 2,
                    )
                )  # fmt: skip
        tgs = [tg for page in elb.get_paginator("describe_target_groups").paginate() for tg in page["TargetGroups"]]
        tags = self._tags_of(region, [tg["TargetGroupArn"] for tg in tgs])
        for tg in tgs:
            t = tags.get(tg["TargetGroupArn"], {})
            if _marked(t):
                out.append(
                    Deployment(
                        "aws", tg["TargetGroupArn"], tg["TargetGroupName"], region, "-", _marks(t),
                        kind="target group", order=3,
                    )
                )  # fmt: skip
        return out

    def _templates(self, region: str) -> list[Deployment]:
        out = []
        pages = self._ec2[region].get_paginator("describe_launch_templates").paginate()
        for page in pages:
            for lt in page.get("LaunchTemplates", []):
                tags = {t["Key"]: t["Value"] for t in lt.get("Tags", [])}
                if _marked(tags):
                    out.append(
                        Deployment(
                            "aws", lt["LaunchTemplateId"], lt["LaunchTemplateName"], region, "-", _marks(tags),
                            started_at=_utc(lt.get("CreateTime")), kind="launch template", order=4,
                        )
                    )  # fmt: skip
        return out

    def terminate(self, d: Deployment) -> None:
        if d.kind == "group":
            self._asg[d.where].delete_auto_scaling_group(AutoScalingGroupName=d.name, ForceDelete=True)
        elif d.kind == "instance":
            self._ec2[d.where].terminate_instances(InstanceIds=[d.id])
        elif d.kind == "load balancer":
            self._elb[d.where].delete_load_balancer(LoadBalancerArn=d.id)
        elif d.kind == "target group":
            self._elb[d.where].delete_target_group(TargetGroupArn=d.id)
        elif d.kind == "launch template":
            self._ec2[d.where].delete_launch_template(LaunchTemplateId=d.id)


class GcpReaper:
    """Compute Engine instances with the kit's labels, in every zone of the project (aggregated list).

    An instance a managed instance group made (metadata `created-by` names the group: `.../regions/R/...` for the
    stacks' regional groups, `.../zones/Z/...` for zonal ones) is reaped by deleting its group: deleting the
    instance alone would only make the group recreate it. Groups go before lone instances.
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
        self.regional = compute_v1.RegionInstanceGroupManagersClient(transport="rest", client_options=options)

    def list_marked(self) -> list[Deployment]:
        out: list[Deployment] = []
        seen: set[str] = set()
        request = {"project": self.project, "filter": f"labels.{ttl.MANAGED_KEY}:*"}
        for _scope, scoped in self.client.aggregated_list(request=request):
            for inst in scoped.instances:
                labels = dict(inst.labels)
                if not _marked(labels):
                    continue
                zone = inst.zone.rsplit("/", 1)[-1]
                created = dt.datetime.fromisoformat(inst.creation_timestamp) if inst.creation_timestamp else None
                meta = {i.key: i.value for i in inst.metadata.items} if inst.metadata else {}
                parts = meta.get("created-by", "").split("/")
                if len(parts) >= 6 and parts[-2] == "instanceGroupManagers" and parts[-4] in ("regions", "zones"):
                    scope_kind, where, name = parts[-4], parts[-3], parts[-1]
                    kind = "regional group" if scope_kind == "regions" else "zonal group"
                    ident = f"{kind}:{where}/{name}"
                    if ident in seen:
                        continue
                    seen.add(ident)
                    order = 0
                else:
                    where, name, kind, order = zone, inst.name, "instance", 1
                    ident = str(inst.id) if inst.id else inst.name
                out.append(
                    Deployment(
                        "gcp", ident, name, where, inst.status, _marks(labels),
                        ttl.hourly_from_tag(labels.get(ttl.HOURLY_KEY)), _utc(created), kind, order,
                    )
                )  # fmt: skip
        return out

    def terminate(self, d: Deployment) -> None:
        if d.kind == "regional group":
            op = self.regional.delete(project=self.project, region=d.where, instance_group_manager=d.name)
        elif d.kind == "zonal group":
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
    """RunPod pods whose env carries the kit's marks (SELFHOST_MANAGED_BY, SELFHOST_OWNER, SELFHOST_EXPIRES_AT)."""

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
            if not _marked(tags):
                continue
            uptime = pod.get("uptimeSeconds")
            out.append(
                Deployment(
                    "runpod", pod["id"], pod.get("name") or pod["id"],
                    (pod.get("machine") or {}).get("gpuDisplayName") or "-", pod.get("desiredStatus") or "-", tags,
                    pod.get("costPerHr") if pod.get("costPerHr") is not None
                    else ttl.hourly_from_tag(tags.get(ttl.HOURLY_KEY)),
                    None if uptime is None else now - dt.timedelta(seconds=float(uptime)), "pod",
                )
            )  # fmt: skip
        return out

    def terminate(self, d: Deployment) -> None:
        self.sdk.terminate_pod(d.id)


class SkyReaper:
    """SkyPilot clusters named by the kit (`<name>-sh<owner hash>-exp-<time>`; `sky status -o json`, `sky down`).

    `sky status` lists the clusters of the identity the client runs as: in CI, the service account whose token is
    $SKYPILOT_SERVICE_ACCOUNT_TOKEN (the same one preview.yml launches with)."""

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
            marks = ttl.marks_in_name(name)
            if not marks:
                continue
            launched = rec.get("launched_at")
            started = dt.datetime.fromtimestamp(launched, dt.timezone.utc) if launched else None
            status = rec.get("status")
            out.append(
                Deployment("sky", name, name, "-", str(status or "-"), marks, self.hourly_usd, started, "cluster")
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
