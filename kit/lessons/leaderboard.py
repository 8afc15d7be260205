"""Notebook 90 · one leaderboard across every method, on held-out data, with what each row cost.

Reads the boards from what the units stored (``kit.reporting.leaderboard``) — no model runs here — draws them,
and writes the run's report page (``kit.reporting.report``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.reporting import leaderboard, plots, report

ALIGNMENT_VIEW = [
    "row",
    "s_align",
    "js_similarity",
    "js_similarity_low",
    "js_similarity_high",
    "js_similarity_e",
    "best_reference",
    "diff_vs_best",
    "verdict",
    "countries",
    "questions",
    "coverage",
    "calls",
    "generated_tokens",
    "scored_tokens",
    "seconds",
    "peak_rss_gb",
]


def boards(session) -> leaderboard.Boards:
    return leaderboard.boards(session.params)


def view(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns a reader compares first, rows by name (``not run`` and ``stale`` rows kept)."""
    return (
        df.reindex(columns=["status", "stale", *[c for c in columns if c != "row"]]).set_axis(df["row"])
        if len(df)
        else df
    )


def alignment_figure(session, b: leaderboard.Boards) -> None:
    """The report's forest plot: js_similarity of every scored row with its 95 % interval; references in grey."""
    n = int(b.alignment["status"].isin(["scored", "reference"]).sum()) if len(b.alignment) else 0
    with plots.figure(
        session.figure_paths("90_alignment_board.png"), figsize=(8, 0.6 + 0.26 * max(n, 1))
    ) as (_, ax):
        report.forest(ax, b.alignment)


def cost_figure(session, b: leaderboard.Boards) -> None:
    """Each scored row's alignment gain over its best reference against the wall seconds it cost."""
    scored = b.alignment[b.alignment["status"] == "scored"]
    a = scored[scored["seconds"] > 0] if "seconds" in scored else scored
    with plots.figure(session.figure_paths("90_alignment_vs_cost.png"), figsize=(7, 4)) as (_, ax):
        for _, r in a.iterrows():
            ax.scatter(r["seconds"], r["diff_vs_best"], color=f"C{int(r['unit'][0])}")
            ax.annotate(r["row"], (r["seconds"], r["diff_vs_best"]), fontsize=6)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("wall seconds spent on the row (log)")
        ax.set_ylabel("js_similarity − best reference")
        ax.set_title("What each point of alignment cost")


def write_report(session, b: leaderboard.Boards) -> Path:
    return report.write(session.params, b, writer="90_leaderboard")


def key_numbers(b: leaderboard.Boards) -> dict:
    return leaderboard.key_numbers(b)
