"""Notebook 12 · Cultural Palette's Table 1 on GlobalOpinionQA, with references, intervals, ablations,
and semantic consistency against the gold responses.

Every row answers the same held-out questions of every palette country (the question split every
unit shares); rows, references and paired comparisons come from ``kit.palette.evaluation``.
"""

from __future__ import annotations

import pandas as pd

from kit.data import OpinionItem, goqa_split
from kit.data.leaks import assert_no_leaks, palette_leak_counts
from kit.evals.capability import capability_kept
from kit.evals.references import table_rows
from kit.metrics.alignment import (
    ENTROPY_AGENT,
    NEIGHBOUR_AGENT,
    REFERENCES,
    UNIFORM_AGENT,
    continent_table,
    missing_answers,
    prior_check,
    reference_comparison,
)
from kit.palette.agents import load_models
from kit.palette.baselines import ROWS
from kit.palette.evaluation import (
    answer_all,
    best_baseline,
    consistency,
    test_items,
    wide,
)
from kit.palette.merges import router_prompts
from kit.palette.meta_agent import META, VARIANTS
from kit.palette.synthesis import query_split
from kit.reporting import plots
from kit.run import seeds
from kit.session import in_stage

ROW_NAMES = (*ROWS, *VARIANTS, *REFERENCES)
NOTEBOOK = "12_palette_table"


def items(session) -> dict[str, list[OpinionItem]]:
    """Each palette country's held-out questions."""
    return test_items(session.params)[0]


def models(session) -> tuple[dict[str, str], dict]:
    """The adapters notebook 11 trained and the merged models it built, as backends by engine name."""
    adapters, merged = load_models(session.run_dir / "palette", session.params)
    return adapters, {name: session.backend_of(path) for name, path in merged.items()}


@in_stage("12", "Table 1, consistency and capability")
def answer(session, test: dict[str, list[OpinionItem]]) -> list[dict]:
    """Score rows of every Table 1 row and of the four references, on the same (country, question) pairs
    (``evals.min_label_mass`` applied; the entropy-matched row from vanilla's answers)."""
    adapters, backends = models(session)
    with session.timed("Table 1 rows"):  # each row measured apart, for its cost on the board
        rows = [
            r
            for part in session.each_row(
                "Table 1",
                dict.fromkeys((*ROWS, *VARIANTS)),
                lambda one: answer_all(
                    session.backend, backends, adapters, test, session.params.palette, list(one)
                ),
            )
            for r in part
        ]
    session.save_scores(NOTEBOOK, "alignment", rows)
    return table_rows(session.params, rows, "vanilla")


def leaks(session, prefs: dict[str, list[dict]]) -> dict[str, int]:
    """The unit's leak counts (``kit.data.leaks.palette_leak_counts``) against every GlobalOpinionQA test
    question of the study's split; stops the notebook when one is not 0."""
    p = session.params
    train, heldout = query_split(p)
    _, test = goqa_split(p.data.goqa_path, p.data.test_fraction, p.data.split_seed, p.data.goqa_test_path)
    prompts = [
        m["content"] for recs in prefs.values() for r in recs for m in r["prompt"] if m["role"] == "user"
    ]
    counts = palette_leak_counts(train, heldout, prompts, router_prompts(p.palette.merges.values()), test)
    assert_no_leaks(counts, "the palette's training queries, gold responses or router prompts")
    return counts


def table(session, rows: list[dict], metric: str) -> pd.DataFrame:
    p = session.params
    return continent_table(rows, metric, n_boot=p.n_boot, seed=seeds.derive(p.seed, "bootstrap"))


def comparison(session, rows: list[dict], long: pd.DataFrame, metric: str = "s_align") -> pd.DataFrame:
    """Each palette row against vanilla, the best baseline, the uniform answer, the neighbour prior and vanilla
    flattened to the world answer's entropy, paired on the same rows."""
    p = session.params
    against = list(
        dict.fromkeys(["vanilla", best_baseline(long), UNIFORM_AGENT, NEIGHBOUR_AGENT, ENTROPY_AGENT])
    )
    prior = prior_check(rows, metric, p.n_boot, seeds.derive(p.seed, "bootstrap"), p.verdicts.min_items)
    if prior["line"]:  # the table says when its strongest reference is not the stronger bar on these rows
        print(prior["line"])
    return reference_comparison(
        rows,
        list(VARIANTS),
        against,
        metric,
        n_boot=p.n_boot,
        seed=seeds.derive(p.seed, "bootstrap"),
        min_items=p.verdicts.min_items,
    )


def table_figure(session, long: pd.DataFrame, metric: str) -> None:
    import seaborn as sns

    grid = wide(long).loc[[r for r in ROW_NAMES if r in set(long["agent"])]]
    with plots.figure(session.figure_paths("12_palette_table.png"), figsize=(8, 0.5 + 0.42 * len(grid))) as (
        _,
        ax,
    ):
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
        ax.set_title(f"Table 1: {metric} (×100) on held-out GlobalOpinionQA questions")
        ax.set_ylabel("")


def ablation_figure(session, long: pd.DataFrame, metric: str) -> None:
    overall = long[(long["continent"] == "overall") & long["agent"].isin(["vanilla", *VARIANTS])].set_index(
        "agent"
    )
    overall = overall.loc[[r for r in ("vanilla", *VARIANTS) if r in overall.index]]
    with plots.figure(session.figure_paths("12_palette_ablations.png"), figsize=(7, 3.6)) as (_, ax):
        err = [overall["mean"] - overall["ci_low"], overall["ci_high"] - overall["mean"]]
        ax.bar(overall.index, overall["mean"], yerr=err, capsize=4, color="#4c72b0")
        ax.set_ylabel(f"{metric} (×100), 95 % CI")
        ax.set_ylim(overall["ci_low"].min() - 5, overall["ci_high"].max() + 5)
        ax.set_title("Cultural Palette and its ablations")
        ax.tick_params(axis="x", rotation=20)


@in_stage("12", "Table 1, consistency and capability")
def semantic_consistency(session, heldout: list[dict]) -> tuple[pd.DataFrame, str]:
    """P(entailment) of each model's answers given the gold responses of the held-out queries; and the scorer."""
    p = session.params
    adapters, backends = models(session)
    scorer = session.nli_scorer(p.palette.nli)
    with session.timed("semantic consistency"):
        return consistency(
            session.backend, backends, adapters, heldout, scorer, p.palette.draft_tokens
        ), scorer.identity


def capability(session) -> pd.DataFrame:
    """lm-eval's capability tasks on every palette artifact (continent and joint adapters, the merged models by their
    folders) beside the base model (``kit.evals.capability``)."""
    adapters, merged = load_models(session.run_dir / "palette", session.params)
    return capability_kept(
        session,
        NOTEBOOK,
        {"base": None, **adapters, **dict.fromkeys(merged)},
        session.params.palette.capability_items,
        "base",
        folders=merged,
    )


def key_numbers(
    session,
    rows: list[dict],
    js: pd.DataFrame,
    s_align: pd.DataFrame,
    compared: pd.DataFrame,
    nli: pd.DataFrame,
    scorer: str,
    kept: pd.DataFrame,
    leak: dict[str, int],
    js_e: pd.DataFrame,
) -> dict:
    def overall(long: pd.DataFrame) -> dict:
        o = long[long["continent"] == "overall"].set_index("agent")["mean"]
        return {name: round(float(o[name]), 2) for name in ROW_NAMES if name in o.index}

    frame = pd.DataFrame(rows)
    scored = frame[frame["p_gen"].notna()].groupby("agent").size()
    p = session.params
    return {
        "js_similarity": overall(js),
        "js_similarity_e": overall(js_e),
        "s_align": overall(s_align),
        "leaks": leak,
        "best_baseline": best_baseline(s_align),
        "verdict": {k: dict(zip(g["reference"], g["verdict"])) for k, g in compared.groupby("kind")},
        "coverage": (scored / scored.max()).round(3).to_dict(),
        "missing_answers": {k: v for k, v in missing_answers(rows).items() if k not in REFERENCES},
        "neighbour_prior_vs_other_countries": prior_check(
            rows, "s_align", p.n_boot, seeds.derive(p.seed, "bootstrap"), p.verdicts.min_items
        )["verdict"],
        "letter_mass_mean": round(
            float(pd.DataFrame([r for r in rows if "letter_mass" in r])["letter_mass"].mean()), 4
        ),
        "semantic_consistency": {
            m: round(float(v), 4)
            for m, v in nli[nli["continent"] == "overall"].set_index("model")["mean"].items()
        },
        "nli_scorer": scorer,
        "moralchoice_low_accuracy": kept["moralchoice_low_accuracy"].round(4).to_dict(),
        "neutral_ppl": kept["neutral_ppl"].round(3).to_dict(),
        "meta_agent": META,
        "seconds": session.timings.get("Table 1 rows"),
    }
