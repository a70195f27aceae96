"""PNG chart of a bench run: throughput and latency against concurrency (matplotlib imported lazily)."""

from __future__ import annotations

from pathlib import Path


def write_chart(doc: dict, path: str | Path) -> Path:
    """Left: output tokens/s (measured, and projected when present). Right: TTFT and TPOT p50/p90."""
    import matplotlib.pyplot as plt

    fig = chart_figure(doc)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def chart_figure(doc: dict):
    """The chart's matplotlib figure (see write_chart)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfhost.check.bench_report import compared

    pts = sorted((p for p in doc["points"] if p["completed"]), key=lambda p: p["concurrency"])
    x = [p["concurrency"] for p in pts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(x, [p["output_tokens_per_s"] for p in pts], "o-", label="measured")
    proj = [p for p in pts if p.get("projection")]
    target = doc.get("target") or {}
    if proj:
        what = target.get("label") or f"{target.get('gpus', 1)}x {target.get('gpu', '?')}"
        ax1.plot(
            [p["concurrency"] for p in proj],
            [compared(p)["output_tokens_per_s"] for p in proj],
            "s--",
            label=f"projected: {what}"[:70],
        )
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("output tokens/s")
    ax1.set_title("Throughput")
    ax1.legend()
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT")):
        for q, style in (("p50", "o-"), ("p90", "^:")):
            ax2.plot(x, [p[key][q] if p[key][q] > 0 else float("nan") for p in pts], style, label=f"{label} {q}")
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    ax2.set_title("Latency")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        if len(x) > 1 and max(x) / max(min(x), 1e-9) >= 8:
            ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(x))  # ticks at the measured concurrencies
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{c:g}" for c in x]))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3)
    served = target.get("label") or doc["model"]
    fig.suptitle(f"{served}: {doc['input_tokens']} in / {doc['output_tokens']} out tokens"[:110])
    fig.tight_layout()
    return fig
