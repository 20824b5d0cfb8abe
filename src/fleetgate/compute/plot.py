"""Plot training time against chip count, one line per chip type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fleetgate.compute.chips import Chip
from fleetgate.compute.plan import ModelSpec, time_curve


def plot_time_vs_chips(model: ModelSpec, clips: float, chips: list[Chip], path: Path, **kwargs: Any) -> Path:
    """Write a log-log PNG of days to train against number of chips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({int(v) for v in np.logspace(6, 15, 28, base=2)})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for chip in chips:
        ax.plot(counts, time_curve(model, clips, chip, counts, **kwargs), marker="o", ms=3, label=chip.name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.axhline(30, color="grey", lw=0.8, ls="--")
    ax.text(counts[0], 31, "30 days", color="grey", fontsize=8)
    ax.set_xlabel("accelerators")
    ax.set_ylabel("days to train")
    ax.set_title(f"{model.name}: {clips:.3g} clips × {model.epochs:g} epochs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
