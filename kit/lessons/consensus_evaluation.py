"""Notebook 03 · how good and how fair is the consensus? Acceptance and values per method, with CIs.

Reads the study's traces (notebook 02), scores every text under the other agent and under the plain model in
one ``score`` call, reads value vectors with the params' detector, and summarises per method (and pair) on the
(pair, topic) items every method scored, with bootstrap intervals and paired differences against ``none``
(a reference row: its statements are its opening answers); figures and the closing paragraph are drawn from
those tables, never recomputed here.
"""

from __future__ import annotations

import pandas as pd

from kit.evals.traces import (
    REFERENCE_METHOD,
    common_items,
    evaluate_traces,
    paired_against,
    self_consistency_ranking,
    summarise,
)
from kit.lessons import negotiation
from kit.reporting import plots
from kit.run import seeds
from kit.session import in_stage
from kit.values import SCHWARTZ_VALUES, make_value_detector

SUMMARY_COLUMNS = [
    "method",
    "n",
    "mean_rel_logppl_change",
    "median_rel_logppl_change",
    "mean_rel_logppl_change_low",
    "mean_rel_logppl_change_high",
    "mean_d_ratio",
    "median_d_ratio",
    "share_improved",
    "mean_self_consistency",
    "mean_consensus",
    "mean_distance_reduction",
    "mean_rounds",
    "share_converged",
]


@in_stage("03", "acceptance and values")
def evaluate(session) -> pd.DataFrame:
    """One row per usable trace of the study (``kit.evals.traces``): acceptance and value metrics (saved
    for the consensus board, which prefers notebook 32's evaluation of the same traces with the judge)."""
    p = session.params
    agent_by_country, trace_list = negotiation.study_traces(session)
    detector = make_value_detector(
        p.negotiation.value_judge,
        backend=session.role_backend("value_judge"),
        embedder=session.embedder,
        seed=p.seed,
    )
    with session.timed("evaluate traces"):
        per_trace = evaluate_traces(session.backend, detector, agent_by_country, trace_list)
    session.save_scores("03_consensus_evaluation", "consensus", per_trace.to_dict("records"))
    return per_trace


def counts_line(per_trace: pd.DataFrame) -> str:
    a = per_trace.attrs
    shared = common_items(per_trace)
    return (
        f"{len(per_trace)} negotiations evaluated; failed {a.get('failed', 0)}, empty {a.get('empty', 0)}, "
        f"degenerate per method {a.get('degenerate') or 'none'}, unreadable value vectors "
        f"{a.get('value_failures', 0)}; {shared['pair'].str.cat(shared['topic_id'], '|').nunique()} "
        "(pair, topic) items scored by every method, which every summary below reads"
    )


def summary(session, per_trace: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> pd.DataFrame:
    """``summarise`` over the items every method scored."""
    return summarise(
        common_items(per_trace),
        n_boot=session.params.n_boot,
        seed=seeds.derive(session.params.seed, "bootstrap"),
        by=by,
    )


def paired(session, per_trace: pd.DataFrame) -> pd.DataFrame:
    """Each method against ``none`` on the shared items (relative acceptance change, value consensus), and
    the best self-consistency against the other negotiating methods."""
    shared, n_boot = common_items(per_trace), session.params.n_boot
    seed, least = seeds.derive(session.params.seed, "bootstrap"), session.params.verdicts.min_items
    return pd.concat(
        [
            paired_against(shared, n_boot=n_boot, seed=seed, min_items=least),
            self_consistency_ranking(shared, n_boot=n_boot, seed=seed, min_items=least),
        ],
        ignore_index=True,
    )


def figures(session, df: pd.DataFrame) -> None:
    """Acceptance ratios, rounds to consensus, and final value vectors per method."""
    import seaborn as sns

    with plots.figure(session.figure_paths("03_acceptance_and_rounds.png"), 1, 2, figsize=(10, 3.8)) as (
        _,
        axes,
    ):
        sns.barplot(df, x="method", y="rel_logppl_change", errorbar=("ci", 95), ax=axes[0])
        axes[0].axhline(0.0, color="grey", ls="--", lw=1)
        axes[0].set_title("change of log PPL_other − log PPL_base (< 0: more accepted)")
        sns.barplot(df, x="method", y="rounds_used", errorbar=("ci", 95), ax=axes[1])
        axes[1].set_title("rounds used")

    rows = [
        {"method": m, "value": v, "score": float(s)}
        for m, vec in ((r["method"], r[c]) for _, r in df.iterrows() for c in ("v_final_a", "v_final_b"))
        if vec is not None
        for v, s in zip(SCHWARTZ_VALUES, vec)
    ]
    with plots.figure(session.figure_paths("03_final_values.png"), figsize=(10, 3.8)) as (_, ax):
        if rows:
            sns.barplot(pd.DataFrame(rows), x="value", y="score", hue="method", errorbar=None, ax=ax)
        ax.set_title("Schwartz values expressed in the final statements (mean of −1 / 0 / 1)")
        ax.tick_params(axis="x", rotation=30)


def paragraph(summary: pd.DataFrame, compared: pd.DataFrame) -> str:
    """Which method did better than no negotiation, on what, stated only where the paired 95 % interval on the
    shared items excludes 0; ``none`` is the reference, never a winner."""
    what = {
        "rel_logppl_change": "made each side's statement likelier under the other's persona (relative "
        "log-perplexity change)",
        "value_consensus": "brought the two agents' values closer (value consensus)",
    }
    lines = []
    vs = compared[compared["against"] == REFERENCE_METHOD]
    for score, text in what.items():
        rows = vs[vs["score"] == score]
        better = rows[rows["verdict"] == "better"]
        if better.empty:
            lines.append(
                f"No method {text.split(' (')[0].replace('made', 'makes').replace('brought', 'brings')} "
                f"measurably better than no negotiation ({score}; paired 95 % intervals all hold 0 or favour none)."
            )
            continue
        best = better.loc[better["mean_diff"].abs().idxmax()]
        lines.append(
            f"{best['method']} {text} beyond no negotiation: {best['mean_diff']:+.3f} "
            f"[{best['ci_low']:+.3f}, {best['ci_high']:+.3f}] over {best['n']} items"
            + (
                f"; also {', '.join(better['method'][better['method'] != best['method']])}."
                if len(better) > 1
                else "."
            )
        )
    sc = compared[compared["score"] == "self_consistency"]
    if len(sc):
        best, beaten = sc["method"].iloc[0], sc[sc["verdict"] == "better"]["against"].tolist()
        lines.append(
            f"{best} kept each agent's own values best (self-consistency, {REFERENCE_METHOD} left out: it "
            f"keeps them by construction); measurably better than {', '.join(beaten) or 'none of the others'}."
        )
    n = int(summary["n"].max()) if len(summary) else 0
    lines.append(f"Over {n} shared items per method; the D ratio is the paper's, shown for comparison only.")
    return "\n".join(lines)


def key_numbers(per_trace: pd.DataFrame, summary_table: pd.DataFrame, compared: pd.DataFrame) -> dict:
    def number(v, digits):
        return None if pd.isna(v) else round(float(v), digits)

    rows = list(summary_table.itertuples())
    methods = list(dict.fromkeys(per_trace["method"]))
    vs = compared[compared["against"] == REFERENCE_METHOD]
    return {
        "evaluated": len(per_trace),
        "failed": int(per_trace.attrs.get("failed", 0)),
        "degenerate": {m: int(per_trace.attrs.get("degenerate", {}).get(m, 0)) for m in methods},
        "common_items": int(summary_table["n"].max()) if len(summary_table) else 0,
        "mean_d_ratio": {r.method: number(r.mean_d_ratio, 4) for r in rows},
        "share_improved": {r.method: number(r.share_improved, 3) for r in rows},
        "mean_consensus": {r.method: number(r.mean_consensus, 3) for r in rows},
        "rel_logppl_change": {r.method: number(r.mean_rel_logppl_change, 4) for r in rows},
        "vs_none": {f"{r.method}:{r.score}": r.verdict for r in vs.itertuples()},
    }
