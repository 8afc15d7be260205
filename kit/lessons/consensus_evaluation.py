"""Notebook 03 · how good and how fair is the consensus? Acceptance and values per method, with CIs.

Reads the study's traces (notebook 02), scores every text under the other agent in one ``score`` call, reads
value vectors with the params' detector, and summarises per method (and pair) with bootstrap
intervals; figures and the closing paragraph are drawn from those tables, never recomputed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit import plots, seeds
from kit.evals.traces import evaluate_traces, summarise
from kit.lessons import negotiation
from kit.values import SCHWARTZ_VALUES, make_value_detector

SUMMARY_COLUMNS = ["method", "n", "mean_ratio", "mean_ratio_low", "mean_ratio_high", "share_improved",
                   "mean_self_consistency", "mean_consensus", "mean_distance_reduction", "mean_rounds",
                   "share_converged"]


def evaluate(session) -> pd.DataFrame:
    """One row per usable trace of the study (``kit.evals.traces``): acceptance and value metrics (saved
    for the consensus board, which prefers notebook 32's evaluation of the same traces with the judge)."""
    p = session.params
    agent_by_country, trace_list = negotiation.study_traces(session)
    detector = make_value_detector(p.negotiation.value_judge, backend=session.backend, embedder=session.embedder,
                                   seed=p.seed)
    with session.timed("evaluate traces"):
        per_trace = evaluate_traces(session.backend, detector, agent_by_country, trace_list)
    session.save_scores("03_consensus_evaluation", "consensus", per_trace.to_dict("records"))
    return per_trace


def counts_line(per_trace: pd.DataFrame) -> str:
    a = per_trace.attrs
    return (f"{len(per_trace)} negotiations evaluated; failed {a.get('failed', 0)}, empty {a.get('empty', 0)}, "
            f"unreadable value vectors {a.get('value_failures', 0)}")


def summary(session, per_trace: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> pd.DataFrame:
    return summarise(per_trace, n_boot=session.params.n_boot, seed=seeds.derive(session.params.seed, "bootstrap"),
                     by=by)


def figures(session, df: pd.DataFrame) -> None:
    """Acceptance ratios, rounds to consensus, and final value vectors per method."""
    import seaborn as sns

    with plots.figure(session.figure_paths("03_acceptance_and_rounds.png"), 1, 2, figsize=(10, 3.8)) as (_, axes):
        finite = df[np.isfinite(df["acceptance_ratio"])]
        sns.barplot(finite, x="method", y="acceptance_ratio", errorbar=("ci", 95), ax=axes[0])
        axes[0].axhline(1.0, color="grey", ls="--", lw=1)
        axes[0].set_title("D_final / D_initial (< 1: acceptance evened out)")
        sns.barplot(df, x="method", y="rounds_used", errorbar=("ci", 95), ax=axes[1])
        axes[1].set_title("rounds used")

    rows = [{"method": m, "value": v, "score": float(s)}
            for m, vec in ((r["method"], r[c]) for _, r in df.iterrows() for c in ("v_final_a", "v_final_b"))
            if vec is not None for v, s in zip(SCHWARTZ_VALUES, vec)]
    with plots.figure(session.figure_paths("03_final_values.png"), figsize=(10, 3.8)) as (_, ax):
        if rows:
            sns.barplot(pd.DataFrame(rows), x="value", y="score", hue="method", errorbar=None, ax=ax)
        ax.set_title("Schwartz values expressed in the final statements (mean of −1 / 0 / 1)")
        ax.tick_params(axis="x", rotation=30)


def paragraph(summary: pd.DataFrame) -> str:
    """Which method won on what, stated from the summary table (best on each criterion)."""
    s = summary.set_index("method")
    criteria = [
        ("mean_ratio", "evened out mutual acceptance most (lowest D_final/D_initial)", "min"),
        ("share_improved", "improved acceptance in the largest share of negotiations", "max"),
        ("mean_self_consistency", "kept each agent's own values best (self-consistency)", "max"),
        ("mean_consensus", "brought the two agents' values closest (value consensus)", "max"),
    ]
    lines = []
    for col, what, how in criteria:
        vals = s[col].replace([np.inf, -np.inf], np.nan).dropna()
        if vals.empty:
            lines.append(f"No method has a defined {col}.")
            continue
        best = vals.idxmin() if how == "min" else vals.idxmax()
        lines.append(f"{best} {what}: {vals[best]:.3f} (others: "
                     + ", ".join(f"{m} {v:.3f}" for m, v in vals.items() if m != best) + ").")
    n = int(s["n"].sum()) if "n" in s else len(s)
    lines.append(f"Over {n} negotiations; intervals in the table above say which differences the data can carry.")
    return "\n".join(lines)


def key_numbers(per_trace: pd.DataFrame, summary_table: pd.DataFrame) -> dict:
    def number(v, digits):
        return None if pd.isna(v) else round(float(v), digits)

    rows = list(summary_table.itertuples())
    return {
        "evaluated": len(per_trace), "failed": int(per_trace.attrs.get("failed", 0)),
        "mean_ratio": {r.method: number(r.mean_ratio, 4) for r in rows},
        "share_improved": {r.method: number(r.share_improved, 3) for r in rows},
        "mean_consensus": {r.method: number(r.mean_consensus, 3) for r in rows},
    }
