"""The reports' plots as PNG bytes (matplotlib's object API, no pyplot state): scores
against the frame length with error bars, and per-fold scores as a distribution."""

from __future__ import annotations

import io

import numpy as np


def _figure(size):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=120)


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def length_plot(lengths: list[str], series: dict[str, tuple[list[float], list[float]]], title: str) -> bytes:
    """``series``: label -> (means, stds) per length, as fractions (plotted in %)."""
    fig = _figure((5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(lengths))
    for label, (mean, std) in series.items():
        ax.errorbar(x, np.asarray(mean) * 100, yerr=np.nan_to_num(np.asarray(std, np.float64) * 100),
                    marker="o", capsize=3, label=label)
    ax.set_xticks(x, lengths)
    ax.set_xlabel("frames per clip (N)")
    ax.set_ylabel("test score (%)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def distribution_plot(lengths: list[str], values: dict[str, list[list[float]]], title: str,
                      pooled: dict[str, list[float]] | None = None, ylabel: str = "test score (%)") -> bytes:
    """``values``: metric label -> one list of scores per length; a box per length and
    metric with every score drawn over it (a strip); ``pooled``: label -> one score per
    length, drawn as a diamond beside its box."""
    fig = _figure((max(5, 1.3 * len(lengths) * len(values)), 3.4))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(values))
    rng = np.random.default_rng(0)  # the strip's horizontal jitter only
    for k, (label, per_length) in enumerate(values.items()):
        pos = np.arange(len(lengths)) + (k - (len(values) - 1) / 2) * width
        data = [np.asarray(v, np.float64) * 100 for v in per_length]
        box = ax.boxplot(data, positions=pos, widths=width * 0.8, patch_artist=True, showfliers=False)
        color = f"C{k}"
        for patch in box["boxes"]:
            patch.set(facecolor=color, alpha=0.3)
        for p, d in zip(pos, data):
            ax.scatter(p + rng.uniform(-width / 4, width / 4, len(d)), d, s=10, color=color, zorder=3,
                       label=label if p == pos[0] else None)
        if pooled and label in pooled:
            ax.scatter(pos + width * 0.45, np.asarray(pooled[label], np.float64) * 100, marker="D", s=28,
                       color=color, edgecolor="black", zorder=4, label=f"{label} pooled")
    ax.set_xticks(np.arange(len(lengths)), lengths)
    ax.set_xlabel("frames per clip (N)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, framealpha=0.6)
    ax.grid(alpha=0.3)
    return _png(fig)
