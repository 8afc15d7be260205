"""Figures and the summary paragraph of notebook 03, drawn from metric tables (never recomputed here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.metrics.consensus import SCHWARTZ_VALUES


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    return plt, sns


def figures(df: pd.DataFrame, out: dict[str, Path]) -> dict[str, Path]:
    """Acceptance ratios, rounds to consensus, and final value vectors per method."""
    plt, sns = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    finite = df[np.isfinite(df["acceptance_ratio"])]
    sns.barplot(finite, x="method", y="acceptance_ratio", errorbar=("ci", 95), ax=axes[0])
    axes[0].axhline(1.0, color="grey", ls="--", lw=1)
    axes[0].set_title("D_final / D_initial (< 1: acceptance evened out)")
    sns.barplot(df, x="method", y="rounds_used", errorbar=("ci", 95), ax=axes[1])
    axes[1].set_title("rounds used")
    fig.tight_layout()
    fig.savefig(out["acceptance"], dpi=120)
    plt.close(fig)

    rows = [{"method": m, "value": v, "score": float(s)}
            for m, vec in ((r["method"], r[c]) for _, r in df.iterrows() for c in ("v_final_a", "v_final_b"))
            if vec is not None for v, s in zip(SCHWARTZ_VALUES, vec)]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if rows:
        sns.barplot(pd.DataFrame(rows), x="value", y="score", hue="method", errorbar=None, ax=ax)
    ax.set_title("Schwartz values expressed in the final statements (mean of −1 / 0 / 1)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out["values"], dpi=120)
    plt.close(fig)
    return out


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
