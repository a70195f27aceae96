"""Regenerate templates/*.yaml and templates/README.md from templates/specs/*.yaml (`make templates`).

`--check` writes nothing and exits 1 when a shipped file differs from what its spec renders now.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("SELFHOST_PRICES", "shipped")  # templates are priced from the shipped snapshot

from costing.data.spec import load_spec
from costing.money.review import cost_review
from selfhost.skypilot.render import cheapest, choices, render_spec_file

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "templates" / "specs"

INTRO = """\
# SkyPilot templates: vLLM + Llama 3.x on RunPod, AWS and GCP

Rendered by `selfhost render sky` from the specs in [`specs/`](specs/) (`make templates` re-renders them
all; a test fails when one is out of date). Each file names, in its header, the offer it was costed
on, the fit (weights, KV cache, max context) and the spec it came from. The `vllm serve` line comes
from the same builder as the cost review and the Pulumi stacks, so it fits the card: no "max seq len
larger than the KV cache" on 24 GB GPUs.

Launch with the cost review first (stops on `--max-monthly-usd`; `--dry-run` launches nothing):

    export HF_TOKEN=hf_...  VLLM_API_KEY=$(openssl rand -hex 24)
    selfhost launch sky templates/llama-3.1-8b-runpod-a40.yaml --dry-run
    selfhost launch sky templates/llama-3.1-8b-runpod-a40.yaml --max-monthly-usd 600

or by hand (the header of each file has the exact line):

    sky launch -c llama8b -i 120 --down --wait-for none templates/llama-3.1-8b-runpod-a40.yaml \\
        --secret HF_TOKEN --secret VLLM_API_KEY
    sky serve up -n llama8b templates/llama-3.1-8b-runpod-a40-service.yaml --secret HF_TOKEN --secret VLLM_API_KEY

- `HF_TOKEN` and `VLLM_API_KEY` are SkyPilot secrets (`null` in the YAML, passed with `--secret`):
  never written into a file or printed. Clients send `Authorization: Bearer $VLLM_API_KEY`.
- Weights are downloaded once in `setup` into `HF_HOME` on the cluster disk (`disk_size` is sized from
  the weights); re-running the task or restarting vLLM reuses them.
- Dev clusters (tasks) tear themselves down 120 minutes after launch (`autostop` with `down: true`,
  `wait_for: none`: a serving job never lets a cluster go idle). `sky autostop -i N CLUSTER` extends it.
- Services: the readiness probe is a real one-token chat completion carrying the API key (a hung
  engine can still answer /health); `initial_delay_seconds` covers engine start plus the weights
  download; `target_qps_per_replica` is what one replica serves within the spec's p90 latency SLO
  (the cost review's projection); `max_replicas` is the replica count the review costed, so
  autoscaling never spends more than the review said. Spot services fall back to on-demand while
  spot is short, and keep one replica on-demand when they run two or more.
- RunPod: SkyPilot launches Secure Cloud pods (its catalog lists no Community Cloud), and no spot:
  RunPod is removing interruptible pods, so `--spot` on RunPod is refused.
- `any_of` templates let SkyPilot pick the cheapest candidate; each candidate runs the vLLM line fitted
  to its own GPU (chosen at run time from `nvidia-smi`), and the cost review prices the cheapest.

Render your own:

    selfhost render sky --model llama-3.1-8b --gpu L4 --cloud gcp --spot --service \\
        --requests-per-day 20000 --input-tokens 1000 --output-tokens 250 > task.yaml
    selfhost render sky --model llama-3.1-8b --gpu A40,A10G,L4 > any.yaml   # any_of

## Model to GPU

Hourly price of one replica (all nodes) under the spec's pricing; monthly cost and $/1M output
tokens at the spec's workload (requests/day, 1,000 input + 250 output tokens, p90 SLO), from the
cost review (`selfhost plan --spec templates/specs/<file>`).
"""


def _order(spec_path: Path) -> tuple:
    """Smallest model first, then cheapest per hour."""
    c = cheapest(choices(load_spec(spec_path)))
    return (c.fit.model.params_b, c.hourly_usd, spec_path.name)


def _row(spec_path: Path) -> str:
    spec = load_spec(spec_path)
    found = choices(spec)
    c = cheapest(found)
    review = cost_review(c.spec, resolved=c.resolved)
    fit, s = c.fit, c.fit.settings
    where = " / ".join(f"{x.offer.cloud} {x.offer.instance_type}" for x in found)
    gpus = (
        f"{fit.nodes} x {fit.gpus_per_node}x {fit.gpu.name}"
        if fit.nodes > 1
        else f"{fit.gpus_per_node}x {fit.gpu.name}"
    )
    if len(found) > 1:
        gpus = " / ".join(f"{x.fit.gpus_per_node}x {x.fit.gpu.name}" for x in found)
        where += f" (cheapest: {c.offer.id})"
    kind = "service" if spec.sky.service else "task"
    name = spec_path.name
    return (
        f"| {fit.model.name} | {fit.precision.id} | {gpus} | {where} | {spec.target.pricing} "
        f"| ${c.hourly_usd:,.2f} | {fit.max_model_len:,} | {s.tensor_parallel_size} x {s.pipeline_parallel_size} "
        f"| ${review.monthly_usd:,.0f} | ${review.usd_per_million_output_tokens:,.2f} | {kind} | [{name}]({name}) |"
    )


def readme() -> str:
    head = (
        "| Model | Precision | GPUs | Instance | Pricing | $/h | Max context | TP x PP | $/month "
        "| $/1M out | Kind | File |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    return INTRO + "\n" + head + "\n".join(_row(p) for p in sorted(SPECS.glob("*.yaml"), key=_order)) + "\n"


def rendered() -> dict[Path, str]:
    """Each shipped file and what its spec renders to now."""
    out = {
        ROOT / "templates" / spec.name: render_spec_file(spec, source=str(spec.relative_to(ROOT)))
        for spec in sorted(SPECS.glob("*.yaml"))
    }
    out[ROOT / "templates" / "README.md"] = readme()
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in rendered().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if check and stale:
        print(
            "out of date: " + ", ".join(str(p.relative_to(ROOT)) for p in stale) + " (run `make templates`)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
