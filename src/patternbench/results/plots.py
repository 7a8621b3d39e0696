"""How every PNG of a report is written: matplotlib on the Agg backend, one size, one
resolution, the figure closed after."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, imported on first use: it takes about half a
    second, kept off the CLI's start and the offline report's import. None: not importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig: Any, path: Path) -> Path:
    """Lay the figure out, write it at 90 dpi, free it; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path
