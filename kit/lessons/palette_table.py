"""Notebook 12 · Cultural Palette's Table 1 on GlobalOpinionQA, with references, intervals, ablations,
and semantic consistency against the gold responses.

Every row answers the same held-out questions of every palette country (the question split every
unit shares); rows, references and paired comparisons come from ``kit.palette.evaluation``.
"""

from __future__ import annotations

import pandas as pd

from kit import plots, seeds
from kit.data import OpinionItem
from kit.evals.capability import capability_kept
from kit.evals.nli import make_scorer
from kit.metrics.alignment import (
    UNIFORM_AGENT,
    continent_table,
    other_countries_reference,
    reference_comparison,
    uniform_reference,
)
from kit.palette.agents import load_models
from kit.palette.baselines import ROWS
from kit.palette.evaluation import (
    REFERENCES,
    answer_all,
    best_baseline,
    consistency,
    test_items,
    wide,
)
from kit.palette.meta_agent import META, VARIANTS

ROW_NAMES = (*ROWS, *VARIANTS, *REFERENCES)
NOTEBOOK = "12_palette_table"


def items(session) -> tuple[dict[str, list[OpinionItem]], list[OpinionItem]]:
    """Each palette country's held-out questions, and every country's answers to them (for the references)."""
    return test_items(session.params)


def models(session) -> tuple[dict[str, str], dict]:
    """The adapters notebook 11 trained and the merged models it built, as backends by engine name."""
    adapters, merged = load_models(session.run_dir / "palette")
    return adapters, {name: session.backend_of(path) for name, path in merged.items()}


def answer(session, test: dict[str, list[OpinionItem]], everyone: list[OpinionItem]) -> list[dict]:
    """Score rows of every Table 1 row and of the two references, on the same (country, question) pairs."""
    adapters, backends = models(session)
    with session.timed("Table 1 rows"):  # each row measured apart, for its cost on the board
        rows = [r for part in session.each_row("Table 1", dict.fromkeys((*ROWS, *VARIANTS)), lambda one: answer_all(
            session.backend, backends, adapters, test, session.params.palette, list(one))) for r in part]
    session.save_scores(NOTEBOOK, "alignment", rows)
    wanted = {(c, it.question_id) for c, its in test.items() for it in its}
    rows += [r for r in uniform_reference(everyone) + other_countries_reference(everyone)
             if (r["country"], r["question_id"]) in wanted]
    return rows


def table(session, rows: list[dict], metric: str) -> pd.DataFrame:
    p = session.params
    return continent_table(rows, metric, n_boot=p.n_boot, seed=seeds.derive(p.seed, "bootstrap"))


def comparison(session, rows: list[dict], long: pd.DataFrame, metric: str = "s_align") -> pd.DataFrame:
    """Each palette row against vanilla, the best baseline and the uniform answer, paired on the same rows."""
    p = session.params
    against = list(dict.fromkeys(["vanilla", best_baseline(long), UNIFORM_AGENT]))
    return reference_comparison(rows, list(VARIANTS), against, metric, n_boot=p.n_boot,
                                seed=seeds.derive(p.seed, "bootstrap"))


def table_figure(session, long: pd.DataFrame, metric: str) -> None:
    import seaborn as sns

    grid = wide(long).loc[[r for r in ROW_NAMES if r in set(long["agent"])]]
    with plots.figure(session.figure_paths("12_palette_table.png"), figsize=(8, 0.5 + 0.42 * len(grid))) as (_, ax):
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
        ax.set_title(f"Table 1: {metric} (×100) on held-out GlobalOpinionQA questions")
        ax.set_ylabel("")


def ablation_figure(session, long: pd.DataFrame, metric: str) -> None:
    overall = long[(long["continent"] == "overall") & long["agent"].isin(["vanilla", *VARIANTS])].set_index("agent")
    overall = overall.loc[[r for r in ("vanilla", *VARIANTS) if r in overall.index]]
    with plots.figure(session.figure_paths("12_palette_ablations.png"), figsize=(7, 3.6)) as (_, ax):
        err = [overall["mean"] - overall["ci_low"], overall["ci_high"] - overall["mean"]]
        ax.bar(overall.index, overall["mean"], yerr=err, capsize=4, color="#4c72b0")
        ax.set_ylabel(f"{metric} (×100), 95 % CI")
        ax.set_ylim(overall["ci_low"].min() - 5, overall["ci_high"].max() + 5)
        ax.set_title("Cultural Palette and its ablations")
        ax.tick_params(axis="x", rotation=20)


def semantic_consistency(session, heldout: list[dict]) -> tuple[pd.DataFrame, str]:
    """P(entailment) of each model's answers given the gold responses of the held-out queries; and the scorer."""
    p = session.params
    adapters, backends = models(session)
    scorer = make_scorer(p.palette.nli, session.backend)
    with session.timed("semantic consistency"):
        return consistency(session.backend, backends, adapters, heldout, scorer, p.palette.draft_tokens), scorer.identity


def capability(session) -> pd.DataFrame:
    """MoralChoice low-ambiguity accuracy and neutral perplexity of every palette artifact (continent and
    joint adapters, the merged models) beside the base model's."""
    adapters, backends = models(session)
    return capability_kept(session, NOTEBOOK, {"base": None, **adapters, **dict.fromkeys(backends)},
                           session.params.palette.capability_items, "base", served_by=backends)


def key_numbers(session, rows: list[dict], js: pd.DataFrame, s_align: pd.DataFrame, compared: pd.DataFrame,
                nli: pd.DataFrame, scorer: str, kept: pd.DataFrame) -> dict:
    def overall(long: pd.DataFrame) -> dict:
        o = long[long["continent"] == "overall"].set_index("agent")["mean"]
        return {name: round(float(o[name]), 2) for name in ROW_NAMES if name in o.index}

    scored = pd.DataFrame(rows).groupby("agent").size()
    return {
        "js_similarity": overall(js), "s_align": overall(s_align),
        "best_baseline": best_baseline(s_align),
        "verdict": {k: dict(zip(g["reference"], g["verdict"])) for k, g in compared.groupby("kind")},
        "coverage": (scored / scored.max()).round(3).to_dict(),
        "letter_mass_mean": round(float(pd.DataFrame([r for r in rows if "letter_mass" in r])["letter_mass"].mean()), 4),
        "semantic_consistency": {m: round(float(v), 4) for m, v in
                                 nli[nli["continent"] == "overall"].set_index("model")["mean"].items()},
        "nli_scorer": scorer,
        "moralchoice_low_accuracy": kept["moralchoice_low_accuracy"].round(4).to_dict(),
        "neutral_ppl": kept["neutral_ppl"].round(3).to_dict(),
        "meta_agent": META,
        "seconds": session.timings.get("Table 1 rows"),
    }
