"""Cost against traffic: one line per API, self-hosting as a step per replica, break-evens marked."""

from __future__ import annotations

import math
from pathlib import Path

from costing.money.review import CostReview
from costing.money.spend import api_usd, monthly_usd, operating_days_per_month


def cost_curves(review: CostReview, points: int = 200) -> dict:
    """The data behind the chart (requests/day on x; $/month on y), so it can be tested without pixels."""
    w, sched = review.workload, review.spec.schedule
    per_replica_day = (
        review.projection.requests_per_s * review.spec.target_utilization * sched.hours_per_day * 3600 / w.peak_to_mean
    )
    x_max = max(
        w.requests_per_day * 2,
        per_replica_day * 3,
        *(b.requests_per_day * 1.5 for b in review.breakeven if b.requests_per_day),
    )
    xs = [x_max * i / points for i in range(1, points + 1)]
    days = operating_days_per_month(sched)
    replica_month = review.replica_monthly_usd or monthly_usd(
        review.hourly_usd, sched, 1, review.storage_gb, review.storage_usd_per_gb_month, review.spec.target.pricing
    )  # the break-evens' base: one replica with every disk it runs (a SkyPilot replica's system part too)
    selfhost = [
        replica_month * max(1, math.ceil(x / per_replica_day - 1e-9)) if per_replica_day > 0 else math.inf for x in xs
    ]
    apis = {
        b.api.label: [api_usd(b.api, x * days * w.input_tokens, x * days * w.output_tokens) for x in xs]
        for b in review.breakeven
    }
    marks = {b.api.label: (b.requests_per_day, replica_month) for b in review.breakeven if b.requests_per_day}
    return {
        "requests_per_day": xs,
        "selfhost_usd": selfhost,
        "api_usd": apis,
        "managed_usd": managed_curves(review, xs),
        "breakeven": marks,
        "workload_requests_per_day": w.requests_per_day,
    }


def managed_curves(review: CostReview, xs: list[float]) -> dict[str, list[float]]:
    """The cheapest endpoint of each managed service (set by `plan`'s three-way review), at each traffic level."""
    tw = review.three_way
    if tw is None:
        return {}
    from costing.money.managed import ManagedReview, monthly_at

    cheapest: dict[str, ManagedReview] = {}
    for m in tw.managed:  # cheapest first
        cheapest.setdefault(m.service, m)
    return {f"managed: {m.label} ({m.region})": [monthly_at(m, review.spec, x) for x in xs] for m in cheapest.values()}


def cost_chart(review: CostReview, path: Path | str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    data = cost_curves(review)
    fig, ax = plt.subplots(figsize=(10, 6), dpi=110)
    xs = data["requests_per_day"]
    label = f"self-host: {review.offer.id if review.offer else review.fit.gpu.name} ({review.spec.target.pricing})"
    ax.step(xs, data["selfhost_usd"], where="post", color="black", linewidth=2.5, label=label)
    for name, ys in data["api_usd"].items():
        ax.plot(xs, ys, linewidth=1.3, label=name)
    for name, ys in data["managed_usd"].items():
        ax.plot(xs, ys, linewidth=1.6, linestyle="--", label=name)
    marks = sorted(data["breakeven"].items(), key=lambda item: item[1][0])
    for i, (name, (x, y)) in enumerate(marks):  # stagger the labels: break-evens often sit close together
        ax.plot([x], [y], marker="o", color="red", markersize=6)
        short = name if name.startswith("openai/") else name.split("/")[0]  # closed models: name the model
        ax.annotate(
            f"{short}: {x:,.0f}/day",
            (x, y),
            textcoords="offset points",
            xytext=(6, 8 + 11 * i),
            fontsize=7,
            arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5},
        )
    ax.axvline(data["workload_requests_per_day"], color="grey", linestyle="--", linewidth=1, label="your workload")
    top = max(data["selfhost_usd"]) * 2.5
    ax.set_ylim(0, top)
    ax.set_xlim(0, xs[-1])
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel(f"requests/day ({review.workload.input_tokens} in + {review.workload.output_tokens} out tokens)")
    ax.set_ylabel("USD / month")
    kinds = "self-host vs managed vs pay-per-token" if data["managed_usd"] else "self-host vs pay-per-token"
    ax.set_title(f"{review.fit.model.id} {review.fit.precision.id}: {kinds}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
