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

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costing.errors import UserError

Pricing = Literal["on-demand", "spot", "reserved-1y", "reserved-3y"]
Cloud = Literal["runpod", "aws", "gcp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Strict):
    cloud: Cloud | None = None
    offer: str | None = None
    gpu: str | None = None
    gpus: int | None = Field(None, ge=1, le=8)
    nodes: int = Field(1, ge=1, le=4, description="nodes for pipeline parallel (multi-node)")
    pricing: Pricing = "on-demand"
    region: str | None = None
    replicas: int | None = Field(None, ge=1, description="fixed replica count; default: what the workload needs")


class VllmSpec(_Strict):
    max_model_len: int | None = Field(None, ge=16)
    gpu_memory_utilization: float = Field(0.90, gt=0.3, le=0.98)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=16)
    enable_prefix_caching: bool = True
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    served_model_name: str | None = None
    model_repo: str | None = Field(None, description="override the Hugging Face repo or a local path")
    port: int = Field(8000, ge=1, le=65535)
    extra_args: tuple[str, ...] = ()


class WorkloadSpec(_Strict):
    requests_per_day: float = Field(gt=0)
    input_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    peak_to_mean: float = Field(1.0, ge=1.0, description="peak-hour traffic over the daily mean")


class ScheduleSpec(_Strict):
    hours_per_day: float = Field(24, gt=0, le=24)
    days_per_week: float = Field(7, gt=0, le=7)
    days_per_month: float | None = Field(None, gt=0, le=31, description="override: billed days a month (e.g. 30)")


class SloSpec(_Strict):
    p90_latency_s: float | None = Field(None, gt=0)


class BudgetSpec(_Strict):
    max_monthly_usd: float | None = Field(None, gt=0)


class SkySpec(_Strict):
    """SkyPilot rendering options (`selfhost render sky`); the costing path ignores them."""

    service: bool = Field(False, description="render a SkyServe service instead of a dev-cluster task")
    any_of: tuple[TargetSpec, ...] = Field(
        (),
        description="candidate targets SkyPilot picks the cheapest of; "
        "each replaces cloud/offer/gpu/gpus/region of `target`",
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
    storage_gb: float | None = Field(None, gt=0, description="disk for weights; default: sized from the weights")
    sky: SkySpec = SkySpec()


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    return f"{where}: {first['msg']} (got {first.get('input')!r})"


def spec_from_dict(data: dict[str, Any]) -> DeploymentSpec:
    """Validate a spec mapping; bad input becomes one UserError line."""
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(
            f"invalid deployment spec, {_describe(err)}", "correct that field (see README, 'The deployment spec')"
        ) from None


def read_spec_file(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file '{path}' not found", "give the path of a YAML spec with --spec")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(
            f"spec file '{path}' is not valid YAML ({str(err).splitlines()[0]})", "fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"spec file '{path}' must hold a mapping", "start it with `model: ...`")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` (flags; None means 'not given') into `base` (the spec file)."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out[key] = merge(dict(out.get(key) or {}), value)
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
