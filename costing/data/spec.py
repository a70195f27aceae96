"""The deployment spec: one YAML file (or CLI flags) that drives plan, render, stacks and CI.

Example (`examples/llama-3.1-8b-runpod.yaml`):

    model: llama-3.1-8b
    precision: bf16
    target: {cloud: runpod, gpu: A40, gpus: 1, pricing: on-demand}
    workload: {requests_per_day: 3000, input_tokens: 1000, output_tokens: 250}
    slo: {p90_latency_s: 20}
    budget: {max_monthly_usd: 500}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from costing.errors import UserError

Pricing = Literal["on-demand", "spot", "reserved-1y", "reserved-3y"]
Cloud = Literal["runpod", "aws", "gcp"]
Availability = Literal["standard", "high"]

# Limits every number is held to (named in the error message, so a user knows why).
MAX_CONTEXT_TOKENS = 131_072  # the longest Llama 3.x context
MAX_REQUESTS_PER_DAY = 1e9  # about 11,600 requests/s: beyond one fleet a review can size
MAX_REPLICAS = 1_000  # beyond any single-account GPU quota on the clouds in the catalog
MAX_MONTHLY_USD = 1e8
MAX_STORAGE_GB = 16_384  # 16 TiB: the largest gp3 / pd-balanced volume


SSH_PORT = 22


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KubernetesSpec(_Strict):
    """A team's own Kubernetes cluster as a placement (SkyPilot `infra: k8s/<context>`), priced as the team
    states it: its node price (per node-hour with the GPUs a node offers, or per GPU-hour) and where the figure
    comes from. No catalog knows what a team pays for its cluster: without a stated price it is refused."""

    context: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/\-]*$",
        description="the kubeconfig context SkyPilot launches on (`kubectl config get-contexts`)",
    )
    gpu: str = Field(min_length=1, max_length=32, description="the GPU type the cluster's nodes have, e.g. L4")
    gpus_per_node: int = Field(1, ge=1, le=8, description="GPUs one node offers, 1 to 8")
    usd_per_node_hour: float | None = Field(
        None, gt=0, le=1000, description="what one node costs the team an hour, in USD (at most 1,000)"
    )
    usd_per_gpu_hour: float | None = Field(
        None, gt=0, le=1000, description="or: what one GPU of a node costs an hour, in USD (at most 1,000)"
    )
    source: str = Field(
        min_length=3,
        max_length=200,
        description='where the price comes from, with its date (e.g. "FinOps rate card 2026-11")',
    )
    as_of: str | None = Field(
        None, pattern=r"^20[0-9]{2}-[01][0-9]-[0-3][0-9]$", description="the price's date, YYYY-MM-DD"
    )
    vcpus: int | None = Field(None, ge=1, le=512, description="vCPUs a node offers (SkyPilot's fit check)")
    memory_gb: float | None = Field(None, gt=0, le=8192, description="memory a node offers, GB")

    @model_validator(mode="after")
    def _one_price(self) -> KubernetesSpec:
        if (self.usd_per_node_hour is None) == (self.usd_per_gpu_hour is None):
            raise ValueError(
                "state the cluster's price once: usd_per_node_hour (with gpus_per_node) or usd_per_gpu_hour"
            )
        return self

    @property
    def gpu_hourly(self) -> float:
        """USD per GPU-hour: SkyPilot's own unit (its `kubernetes.pricing.accelerators`)."""
        if self.usd_per_gpu_hour is not None:
            return self.usd_per_gpu_hour
        return float(self.usd_per_node_hour or 0.0) / self.gpus_per_node


class TargetSpec(_Strict):
    cloud: Cloud | None = None
    offer: str | None = None
    gpu: str | None = None
    gpus: int | None = Field(None, ge=1, le=8, description="GPUs per node: at most 8 in one machine")
    nodes: int = Field(1, ge=1, le=4, description="nodes for pipeline parallel (multi-node), at most 4")
    pricing: Pricing = "on-demand"
    region: str | None = Field(None, max_length=64)
    replicas: int | None = Field(
        None,
        ge=1,
        le=MAX_REPLICAS,
        description=f"fixed replica count, at most {MAX_REPLICAS:,} (GPU quotas); default: what the workload needs",
    )
    kubernetes: KubernetesSpec | None = Field(
        None, description="a Kubernetes context (your cluster) priced at the rate you state, instead of a cloud"
    )


class VllmSpec(_Strict):
    max_model_len: int | None = Field(
        None, ge=256, le=MAX_CONTEXT_TOKENS, description=f"tokens, at most {MAX_CONTEXT_TOKENS:,} (Llama 3.x context)"
    )
    gpu_memory_utilization: float = Field(0.90, gt=0.3, le=0.98, description="share of GPU memory vLLM may use")
    max_num_seqs: int | None = Field(None, ge=1, le=4096, description="sequences per batch, at most 4,096")
    max_num_batched_tokens: int | None = Field(
        None, ge=16, le=MAX_CONTEXT_TOKENS, description=f"tokens per step, at most {MAX_CONTEXT_TOKENS:,}"
    )
    enable_prefix_caching: bool = True
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    served_model_name: str | None = Field(None, min_length=1, max_length=128)
    model_repo: str | None = Field(
        None, min_length=1, max_length=256, description="override the Hugging Face repo or a local path"
    )
    port: int = Field(8000, ge=1, le=65535, description="a TCP port: 80, 443 or 1024 to 65535, never 22")
    extra_args: tuple[str, ...] = ()

    @field_validator("model_repo", "served_model_name")
    @classmethod
    def _not_an_option(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Both go on `vllm serve`'s command line as values: one starting with '-' would be read as a flag (a
        model_repo of `--grpc` is vLLM's unauthenticated gRPC server). Characters a shell or script would
        split on are the stacks' own checks (selfhost.stack.checks), which name the stack config key."""
        if value is not None and value.lstrip().startswith("-"):
            key = next((k.config_key for k in SPEC_KEYS if k.path == f"vllm.{info.field_name}"), None)
            raise ValueError(f"may not start with '-' (vLLM would read it as a flag; stack config {key})")
        return value

    @field_validator("port")
    @classmethod
    def _serving_port(cls, port: int) -> int:
        """Never SSH's port; no other privileged port but 80/443 (the API is served on one port)."""
        if port == SSH_PORT:
            raise ValueError(f"port {port} is used by SSH")
        if port < 1024 and port not in (80, 443):
            raise ValueError(f"port {port} is a privileged port (below 1024, other than 80/443)")
        return port


class WorkloadSpec(_Strict):
    requests_per_day: float = Field(
        gt=0, le=MAX_REQUESTS_PER_DAY, description="at most 1e9 a day (about 11,600/s, beyond one fleet)"
    )
    input_tokens: int = Field(
        ge=1, le=MAX_CONTEXT_TOKENS, description=f"at most {MAX_CONTEXT_TOKENS:,} (Llama 3.x context)"
    )
    output_tokens: int = Field(
        ge=1, le=MAX_CONTEXT_TOKENS, description=f"at most {MAX_CONTEXT_TOKENS:,} (Llama 3.x context)"
    )
    peak_to_mean: float = Field(
        1.0, ge=1.0, le=24.0, description="peak-hour traffic over the mean, 1 to 24 (a whole day in one hour)"
    )


class ScheduleSpec(_Strict):
    hours_per_day: float = Field(24, ge=1, le=24, description="hours a day the deployment runs, 1 to 24")
    days_per_week: float = Field(7, ge=1, le=7, description="days a week it runs, 1 to 7")
    days_per_month: float | None = Field(
        None, ge=1, le=31, description="override: billed days a month (e.g. 30), 1 to 31"
    )

    @property
    def part_time(self) -> bool:
        """Not 24x7: something must stop and start the machines for this to be what is billed."""
        return self.hours_per_day < 24 or self.days_per_week < 7 or self.days_per_month is not None


class SloSpec(_Strict):
    p90_latency_s: float | None = Field(None, gt=0, le=3600, description="seconds, at most 3,600 (one hour)")


class BudgetSpec(_Strict):
    max_monthly_usd: float | None = Field(
        None, gt=0, le=MAX_MONTHLY_USD, description=f"dollars a month, at most {MAX_MONTHLY_USD:,.0f}"
    )
    allow_unpriced: bool = Field(
        False,
        description="let the budget gate pass on the priced total while parts have no dated price (they are listed)",
    )


class SkySpec(_Strict):
    """SkyPilot rendering options (`selfhost render sky`); the costing path ignores them."""

    service: bool = Field(False, description="render a SkyServe service instead of a dev-cluster task")
    any_of: tuple[TargetSpec, ...] = Field(
        (),
        description="candidate targets SkyPilot picks the cheapest of; "
        "each replaces cloud/offer/gpu/gpus/region of `target`",
    )
    weights_store: str | None = Field(
        None,
        pattern=r"^(s3|gs)://[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9](/[A-Za-z0-9._\-/]*)?$",
        description="bucket (s3://BUCKET/PREFIX on AWS, gs://... on GCP) mounted on every replica: filled once "
        "from Hugging Face, then replicas load the weights from it",
    )
    tls_keyfile: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=r"^[^\x00-\x1f]+$",
        description="a service's TLS private key (PEM, on the machine running `sky serve up`): SkyServe's endpoint "
        "serves HTTPS (service.tls)",
    )
    tls_certfile: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        pattern=r"^[^\x00-\x1f]+$",
        description="a service's TLS certificate chain (PEM), with tls_keyfile",
    )
    allow_plain_http: bool = Field(
        False,
        description="serve a SkyServe service over plain HTTP (the API key in clear on the network), e.g. behind "
        "your own TLS terminator; without it a service needs tls_keyfile and tls_certfile",
    )


class DeploymentSpec(_Strict):
    name: str | None = None
    model: str
    precision: Literal["bf16", "fp16", "fp8", "int8", "awq"] = "bf16"
    target: TargetSpec = TargetSpec()
    vllm: VllmSpec = VllmSpec()
    workload: WorkloadSpec | None = None
    schedule: ScheduleSpec = ScheduleSpec()
    slo: SloSpec = SloSpec()
    budget: BudgetSpec = BudgetSpec()
    storage_gb: float | None = Field(
        None,
        gt=0,
        le=MAX_STORAGE_GB,
        description=f"disk for weights, at most {MAX_STORAGE_GB:,} GB (the largest volume); default: from the weights",
    )
    target_utilization: float = Field(
        0.8,
        ge=0.1,
        le=1.0,
        description="share of each replica's SLO-bound capacity the peak may use (headroom), 0.1 to 1",
    )
    availability: Availability | None = Field(
        None,
        description="high: at least 2 replicas across zones; default: high for spot services, else standard",
    )
    sky: SkySpec = SkySpec()

    @property
    def effective_availability(self) -> Availability:
        if self.availability:
            return self.availability
        return "high" if (self.sky.service and self.target.pricing == "spot") else "standard"


def _field_description(loc: tuple[Any, ...]) -> str | None:
    """The description (which names the limit) of the spec field at `loc`, if any."""
    model: Any = DeploymentSpec
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            if isinstance(part, int):
                continue  # an index into a tuple of sub-models
            return None
        info = fields[part]
        model = info.annotation
        for arg in getattr(model, "__args__", ()):  # X | None, tuple[X, ...]
            if getattr(arg, "model_fields", None):
                model = arg
    return info.description if info else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    text = f"{where}: {first['msg']} (got {_short(first.get('input'))})"
    why = _field_description(tuple(first["loc"]))
    return f"{text}; {why}" if why else text


def spec_from_dict(data: dict[str, Any]) -> DeploymentSpec:
    """Validate a spec mapping; bad input becomes one UserError line."""
    _check_extra_args(data)  # before validation: pydantic's message would echo the value (maybe a key)
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(
            f"invalid deployment spec, {_describe(err)}", "correct that field (see docs/reference/spec.md)"
        ) from None


def _check_extra_args(data: Mapping[str, Any]) -> None:
    """`vllm.extra_args` may carry only flags reviewed safe for the pinned vLLM (costing.performance.vllm_allowlist)."""
    from costing.performance.vllm_allowlist import check_extra_args

    vllm = data.get("vllm")
    extra = vllm.get("extra_args") if isinstance(vllm, Mapping) else None
    if extra is None:
        return
    if isinstance(extra, str) or not isinstance(extra, list | tuple):
        raise UserError("vllm.extra_args must be a list of strings", "write it as `extra_args: [--flag, value]`")
    if not all(isinstance(a, str) for a in extra):
        raise UserError("vllm.extra_args must hold strings only", "quote each item (e.g. `['--seed', '1']`)")
    check_extra_args(extra)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file '{path}' not found", "give the path of a YAML spec with --spec")
    return parse_spec_yaml(p.read_bytes(), f"spec file '{path}'")


def parse_spec_yaml(raw: bytes, where: str, yaml_fix: str = "fix the YAML syntax") -> dict[str, Any]:
    """A spec's YAML bytes as a mapping with string keys; `where` names it in the errors (a file, or a
    file at a git ref), `yaml_fix` is the fix for a syntax error."""
    import yaml

    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except UnicodeDecodeError as err:
        raise UserError(f"{where} is not UTF-8 text (byte {err.start})", "save the spec as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise UserError(f"{where} is not valid YAML ({str(err).splitlines()[0]})", yaml_fix) from None
    if not isinstance(data, dict):
        raise UserError(f"{where} must hold a mapping", "start it with `model: ...`")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise UserError(f"{where} has a key that is not a name ({_short(bad[0])})", "use field names as keys")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` (flags; None means 'not given') into `base` (the spec file)."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            current = out.get(key) or {}
            if not isinstance(current, Mapping):
                raise UserError(
                    f"spec field {key} must be a mapping, got {_short(current)}",
                    f"write `{key}:` as fields (e.g. `{key}: {{...}}`), see docs/reference/spec.md",
                )
            out[key] = merge(dict(current), value)
        else:
            out[key] = value
    return out


def load_spec(path: str | Path | None = None, **overrides: Any) -> DeploymentSpec:
    """A spec from an optional YAML file with flag values laid over it."""
    base = read_spec_file(path) if path else {}
    data = merge(base, overrides)
    if "model" not in data:
        raise UserError("no model given", "pass --model (e.g. --model llama-3.1-8b) or set `model:` in the spec")
    return spec_from_dict(data)


# ---- one declared mapping: spec field <-> CLI flag <-> Pulumi stack config key ----------------------


@dataclass(frozen=True)
class SpecKey:
    """One spec field, the `selfhost` flag that sets it and the `pulumi config` key that sets it."""

    path: str  # dotted spec path, e.g. "workload.requests_per_day"
    flag: str | None  # CLI flag (its Python parameter name is the flag without dashes, '-' -> '_')
    config_key: str | None  # Pulumi stack config key (camelCase)
    kind: type = str
    help: str = ""  # the flag's --help text

    @property
    def param(self) -> str | None:
        return self.flag[2:].replace("-", "_") if self.flag else None


SPEC_KEYS: tuple[SpecKey, ...] = (
    SpecKey("name", "--name", "name", help="task / service name"),
    SpecKey("model", "--model", "model", help="llama-3.1-8b, meta-llama/Llama-3.1-8B-Instruct, ..."),
    SpecKey("precision", "--precision", "precision", help="bf16 | fp16 | fp8 | int8 | awq"),
    SpecKey("target.cloud", "--cloud", None, help="runpod | aws | gcp"),  # a stack's cloud is the stack's own
    SpecKey(
        "target.offer", "--offer", None, help="pin an offer, e.g. aws-g5.xlarge"
    ),  # stacks pick the machine by their own keys (instanceType, ...)
    SpecKey("target.gpu", "--gpu", None, help="A40, A10G, L4, A100, ..."),
    SpecKey("target.gpus", "--gpus", None, int, help="GPUs per node; default: fewest that fit"),
    SpecKey("target.nodes", "--nodes", None, int, help="nodes (pipeline parallel)"),
    SpecKey("target.pricing", "--pricing", "pricing", help="on-demand | spot | reserved-1y | reserved-3y"),
    SpecKey(
        "target.region", "--region", "region", help="price and deploy this region (e.g. eu-west-1); default: the spec's"
    ),
    SpecKey("target.replicas", "--replicas", None, int, help="fix the replica count"),  # a stack runs one machine
    SpecKey("vllm.max_model_len", "--max-model-len", "maxModelLen", int),
    SpecKey("vllm.max_num_seqs", "--max-num-seqs", "maxNumSeqs", int),
    SpecKey("vllm.gpu_memory_utilization", "--gpu-memory-utilization", "gpuMemoryUtilization", float),
    SpecKey("vllm.served_model_name", "--served-model-name", "servedModelName"),
    SpecKey("vllm.model_repo", "--model-repo", "modelRepo"),
    SpecKey("vllm.port", "--port", "port", int),
    SpecKey("workload.requests_per_day", "--requests-per-day", "requestsPerDay", float, help="requests a day"),
    SpecKey("workload.input_tokens", "--input-tokens", "inputTokens", int, help="mean prompt tokens a request"),
    SpecKey("workload.output_tokens", "--output-tokens", "outputTokens", int, help="mean generated tokens a request"),
    SpecKey("workload.peak_to_mean", "--peak-to-mean", "peakToMean", float, help="peak traffic over the mean (>= 1)"),
    SpecKey("schedule.hours_per_day", "--hours-per-day", "hoursPerDay", float, help="hours a day the deployment runs"),
    SpecKey("schedule.days_per_week", "--days-per-week", "daysPerWeek", float, help="days a week the deployment runs"),
    SpecKey("slo.p90_latency_s", "--p90-latency-s", "p90LatencyS", float, help="latency SLO: p90 end-to-end seconds"),
    SpecKey("budget.max_monthly_usd", "--max-monthly-usd", "maxMonthlyUsd", float, help="budget: exit 2 when over"),
    SpecKey(
        "budget.allow_unpriced",
        "--allow-unpriced",
        "allowUnpriced",
        bool,
        help="budget: gate on the priced total though parts have no dated price (they stay listed)",
    ),
    SpecKey("storage_gb", "--storage-gb", "storageGb", float),
    SpecKey(
        "target_utilization",
        "--target-utilization",
        "targetUtilization",
        float,
        help="share of a replica's SLO capacity the peak may use (default 0.8)",
    ),
    SpecKey("availability", "--availability", "availability", help="standard | high (>= 2 replicas)"),
    SpecKey("sky.service", "--service", None, bool),
    SpecKey(
        "sky.weights_store",
        "--weights-store",
        None,
        help="s3://BUCKET/PREFIX or gs://...: weights filled once, read by every replica",
    ),
    SpecKey("sky.tls_keyfile", "--tls-keyfile", None, help="service: TLS private key (PEM) for an HTTPS endpoint"),
    SpecKey("sky.tls_certfile", "--tls-certfile", None, help="service: TLS certificate chain (PEM)"),
    SpecKey(
        "sky.allow_plain_http",
        "--allow-plain-http",
        None,
        bool,
        help="service: plain HTTP endpoint (the API key in clear), e.g. behind your own TLS terminator",
    ),
)
BY_PARAM = {k.param: k for k in SPEC_KEYS if k.param}
BY_CONFIG_KEY = {k.config_key: k for k in SPEC_KEYS if k.config_key}
CONFIG_KEYS = tuple(BY_CONFIG_KEY)


def _nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in pairs:
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def overrides_from_flags(**flags: Any) -> dict[str, Any]:
    """CLI flag values (by parameter name; None = not given) as nested spec overrides."""
    unknown = sorted(set(flags) - set(BY_PARAM))
    if unknown:
        raise TypeError(f"not spec flags: {unknown}")  # a programming error, not user input
    return _nest([(BY_PARAM[name].path, value) for name, value in flags.items() if value is not None])


def _config_value(key: SpecKey, value: Any) -> Any:
    if key.kind is str:
        return str(value)
    if key.kind is bool:
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in ("true", "false"):
            return value if isinstance(value, bool) else text == "true"
    else:
        try:
            number = float(value) if not isinstance(value, bool) else None
            if number is not None and number == number and abs(number) != float("inf"):
                if key.kind is float:
                    return number
                if number == int(number):
                    return int(number)
        except (TypeError, ValueError, OverflowError):
            pass
    what = {int: "whole number", float: "finite number", bool: "true or false"}[key.kind]
    raise UserError(
        f"stack config {key.config_key} must be a {what}, got {_short(value)}",
        f"pulumi config set {key.config_key} <{what}>",
    )


def overrides_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Pulumi stack config (camelCase keys, string values) as nested spec overrides; empty = not given."""
    pairs = []
    for name, key in BY_CONFIG_KEY.items():
        value = config.get(name)
        if value is None or value == "":
            continue
        pairs.append((key.path, _config_value(key, value)))
    return _nest(pairs)
