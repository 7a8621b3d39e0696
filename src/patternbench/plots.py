"""How every PNG of a report is written: one size, one resolution, the figure closed after."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(fig: Any, path: Path) -> Path:
    """Lay the figure out, write it at 90 dpi, free it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
