"""Training curves from the trainers' own log histories, drawn the same way in notebooks 04, 11, 21 and 31.

Independently of any tracker (``kit.run.tracking``), every finished training folder holds trl's
``log_history.json`` (``kit.train.trainers``). :func:`training_curves` reads it into one long table — per run and
logged step the training loss, the evaluation loss, GRPO's total (weighted) reward and each reward component's
mean — and :func:`figure` draws it: a loss panel, and for GRPO runs a reward panel with the total and its
components, where the windows ``reward_fell`` compares (the first and the last quarter of the logged steps,
``kit.train.trainers.reward_window``) are shaded and a run whose reward fell is named in the title.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from kit.reporting import plots
from kit.run.files import read_json

LOSSES = ("loss", "eval_loss")
REWARD = "reward"  # GRPO's total: the weighted sum of the components
COMPONENT = "reward/"  # GRPO's rewards/<name>/mean, as reward/<name>
DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))  # one per component of a run


def _history_file(folder: str | os.PathLike) -> Path:
    """A training folder's log history: the folder itself, or the adapter folder inside it."""
    folder = Path(folder)
    return (
        folder / "log_history.json"
        if (folder / "log_history.json").is_file()
        else folder.parent / "log_history.json"
    )


def history_rows(history: Sequence[dict]) -> list[dict]:
    """``(step, metric, value)`` rows of one trainer's log history: losses, the total reward and each component."""
    rows = []
    for h in history:
        if "step" not in h:
            continue
        for key in (*LOSSES, REWARD):
            if isinstance(h.get(key), (int, float)):
                rows.append({"step": h["step"], "metric": key, "value": float(h[key])})
        for key, value in h.items():
            if key.startswith("rewards/") and key.endswith("/mean") and isinstance(value, (int, float)):
                rows.append(
                    {
                        "step": h["step"],
                        "metric": COMPONENT + key[len("rewards/") : -len("/mean")],
                        "value": float(value),
                    }
                )
    return rows


def training_curves(folders: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Long table ``run, step, metric, value`` of every named training folder (or its adapter folder)."""
    rows = [
        {"run": name, **row}
        for name, folder in folders.items()
        for row in history_rows(read_json(_history_file(folder), []))
    ]
    return pd.DataFrame(rows, columns=["run", "step", "metric", "value"])


def fell_windows(steps: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The step spans of the first and last windows ``reward_fell`` compares; None with fewer than two steps."""
    from kit.train.trainers import reward_window

    steps = sorted(steps)
    if len(steps) < 2:
        return None
    w = reward_window(len(steps))
    return (steps[0], steps[w - 1]), (steps[-w], steps[-1])


def figure(paths, curves: pd.DataFrame, title: str) -> None:
    """The loss panel, and a reward panel where a run logged rewards; a placeholder saying why when nothing was
    logged (a run shorter than its ``logging_steps``)."""
    from kit.train.trainers import reward_fell

    if curves.empty:
        plots.placeholder(
            paths, title, "no step logged a loss or a reward (a run shorter than its logging_steps)"
        )
        return
    rewarded = curves[curves["metric"] == REWARD]["run"].unique().tolist()
    panels = 2 if rewarded else 1
    fell = []
    with plots.figure(paths, 1, panels, figsize=(6.5 * panels, 3.8), squeeze=False) as (fig, axes):
        ax = axes[0][0]
        for (run, metric), g in curves[curves["metric"].isin(LOSSES)].groupby(["run", "metric"], sort=False):
            ax.plot(
                g["step"],
                g["value"],
                marker="o",
                ms=3,
                ls="-" if metric == "loss" else "--",
                label=run if metric == "loss" else f"{run} (eval)",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("training loss")
        if ax.lines:
            ax.legend(fontsize=7)
        if rewarded:
            ax = axes[0][1]
            for run in rewarded:
                mine = curves[curves["run"] == run]
                total = mine[mine["metric"] == REWARD].sort_values("step")
                (line,) = ax.plot(
                    total["step"], total["value"], marker="o", ms=3, lw=2.4, label=f"{run}: total"
                )
                components = [m for m in mine["metric"].unique() if m.startswith(COMPONENT)]
                for k, metric in enumerate(
                    components if len(components) > 1 else ()
                ):  # one reward is the total
                    g = mine[mine["metric"] == metric].sort_values("step")
                    ax.plot(
                        g["step"],
                        g["value"],
                        ls=DASHES[k % len(DASHES)],
                        lw=1.1,
                        color=line.get_color(),
                        label=f"{run}: {metric[len(COMPONENT) :]}",
                    )
                windows = fell_windows(total["step"].tolist())
                if windows is not None:
                    for start, end in windows:
                        ax.axvspan(start - 0.4, end + 0.4, color=line.get_color(), alpha=0.08, lw=0)
                    if reward_fell(total["value"].tolist()):
                        fell.append(run)
            ax.set_xlabel("GRPO step")
            ax.set_ylabel("mean reward of the step's samples")
            ax.set_title("reward by component (shaded: the windows reward_fell compares)")
            ax.legend(fontsize=7)
        fig.suptitle(title + (f" — reward fell: {', '.join(fell)}" if fell else ""))
