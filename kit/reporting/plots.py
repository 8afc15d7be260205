"""Figure boilerplate in one place: a headless matplotlib, seaborn's style, save, show inline, close.

Figures are drawn from metric tables handed in by the caller, never recomputed here::

    with plots.figure(session.figure_paths("02_utility.png"), figsize=(7, 4)) as (fig, ax):
        sns.lineplot(table, x="round", y="utility", ax=ax)
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DPI = 120


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed, in a kernel or a shell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(
    paths: str | os.PathLike | Sequence[str | os.PathLike], nrows: int = 1, ncols: int = 1, **subplots: Any
) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` from ``plt.subplots``; on exit the figure is laid out, saved to every path, closed."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
    except BaseException:
        plt.close(fig)
        raise
    save(fig, paths)


def placeholder(paths: str | os.PathLike | Sequence[str | os.PathLike], title: str, why: str) -> None:
    """A figure that says why it is empty (no readable value, nothing trained), saved where the real one would be,
    so a weak judge or a small run never stops a notebook at its figure cell."""
    with figure(paths, figsize=(6, 1.6)) as (_, ax):
        ax.axis("off")
        ax.set_title(title)
        ax.text(0.5, 0.4, why, ha="center", va="center", wrap=True, fontsize=9)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def save(fig: Any, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
    """Lay out, save to every path, show inline when in a notebook, and close a figure (also one made
    elsewhere, e.g. by ``DataFrame.plot``). The inline copy is the saved PNG, so the notebook (and its
    HTML export) shows exactly the file."""
    plt = pyplot()
    try:
        fig.tight_layout()
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI)
        if _in_kernel():
            from IPython.display import Image, display

            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=DPI)
            display(Image(data=buffer.getvalue()))
    finally:
        plt.close(fig)
