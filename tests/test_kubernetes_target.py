"""A team's Kubernetes context as a target or SkyPilot candidate, priced at the rate the spec states
(costing.data.cluster_offer): refused without one; the review, the render and `selfhost bill` price the same figure.
SkyPilot's own optimizer on the rendered task: tests/test_sky_kubernetes.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from cli_inprocess import one_line_error, run_cli

from costing.data.catalog import get_offer
from costing.data.spec import spec_from_dict
from costing.money.review import cost_review
from costing.money.spend import HOURS_PER_MONTH
from selfhost.bill.sky import bill_task
from selfhost.skypilot import render

WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250}
GCP_L4 = "gcp-g2-standard-4"  # the cheapest 1x L4 offer in us-central1


def cluster(**extra) -> dict:
    base = {"context": "team-gke", "gpu": "L4", "gpus_per_node": 4, "source": "FinOps rate card", "as_of": "2026-11-30"}
    return {**base, **extra}


def spec_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "workload": WORKLOAD, **data}))
    return path


def any_of(k8s: dict) -> dict:
    return {"sky": {"any_of": [{"cloud": "gcp", "gpu": "L4"}, {"kubernetes": k8s}]}}


@pytest.mark.parametrize(
    "k8s, words",
    [
        (cluster(), "usd_per_node_hour"),  # no stated price
        (cluster(usd_per_node_hour=2.0, usd_per_gpu_hour=0.5), "once"),  # two
        ({k: v for k, v in cluster(usd_per_gpu_hour=0.5).items() if k != "source"}, "source"),
    ],
)
def test_a_context_without_one_stated_price_and_source_is_refused(tmp_path: Path, k8s: dict, words: str) -> None:
    one_line_error(run_cli("render", "sky", "--spec", spec_file(tmp_path, any_of(k8s))), "kubernetes", words)


def test_spot_with_a_kubernetes_candidate_is_refused(tmp_path: Path) -> None:
    data = {**any_of(cluster(usd_per_gpu_hour=0.5)), "target": {"pricing": "spot"}}
    one_line_error(run_cli("render", "sky", "--spec", spec_file(tmp_path, data)), "spot", "team-gke")


def test_a_replica_larger_than_the_clusters_node_is_refused(tmp_path: Path) -> None:
    data = {"model": "llama-3.1-70b", "target": {"kubernetes": cluster(gpus_per_node=1, usd_per_gpu_hour=0.5)}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"workload": WORKLOAD, **data}))
    one_line_error(run_cli("plan", "--spec", path), "team-gke")


@pytest.mark.parametrize("price", [{"usd_per_node_hour": 2.4}, {"usd_per_gpu_hour": 0.6}])
def test_the_review_prices_the_stated_rate_per_gpu(price: dict) -> None:
    """4 GPUs a node at $2.40/node-hour (or $0.60/GPU-hour): an 8B replica on 1 L4 is $0.60/h, disk included."""
    spec = spec_from_dict({"model": "llama-3.1-8b", "workload": WORKLOAD, "target": {"kubernetes": cluster(**price)}})
    review = cost_review(spec)
    assert review.offer is not None and review.offer.gpus == 1
    assert math.isclose(review.monthly_usd, review.fleet.max_replicas * 0.6 * HOURS_PER_MONTH)
    assert not [line for line in review.cost_lines if "not priced" in line.item]
    assert any("stated rate" in n for n in review.notes)


@pytest.mark.parametrize("rate, picked", [(0.5, "k8s-team-gke-l4x1"), (0.9, GCP_L4)])
def test_render_and_bill_price_the_cheapest_candidate_at_its_rate(tmp_path: Path, rate: float, picked: str) -> None:
    spec = spec_from_dict({"model": "llama-3.1-8b", "workload": WORKLOAD, **any_of(cluster(usd_per_gpu_hour=rate))})
    chosen = render.cheapest(render.choices(spec))
    assert chosen.offer.id == picked
    text = render.render_yaml(spec)
    assert f"L4: {rate}" in text  # the SkyPilot pricing config in the header
    assert {"infra": "k8s/team-gke", "accelerators": "L4:1"} in yaml.safe_load(text)["resources"]["any_of"]
    path = tmp_path / "task.yaml"
    path.write_text(text)
    bill = bill_task(path)
    compute = [line for line in bill.lines if line.pricing == "on-demand"]
    hourly = rate if picked.startswith("k8s") else get_offer(GCP_L4).on_demand
    assert [round(line.usd_per_hour, 6) for line in compute] == [round(hourly, 6)]
    assert not bill.unpriced
    assert chosen.hourly_usd == pytest.approx(hourly)


def test_a_hand_written_task_on_a_context_is_not_priced_and_fails_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "resources": {
                    "any_of": [{"cloud": "gcp", "accelerators": "L4:1"}, {"infra": "k8s/team", "accelerators": "L4:1"}]
                },
                "run": "echo",
            }
        )
    )
    bill = bill_task(path)
    assert not bill.lines and "team's own" in bill.unpriced[0].why
    one_line_error(run_cli("bill", path, "--max-monthly-usd", "1000"), "team's own")
