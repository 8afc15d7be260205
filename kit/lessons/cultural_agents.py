"""Notebook 01 · cultural agents: do they answer like the people they represent?

Splits GlobalOpinionQA by question, builds each agent kind from the train split only
(``kit.agents.build``), asks every agent the held-out questions of its country (one forward pass
each), and scores the answers against the survey with the reference rows every table must carry:
a uniform answer, the mean of the other countries' answers, the neighbour prior (the mean
answer of the countries that answered most like this one on the train questions), and the vanilla
model's own answers flattened to the other-countries mean's entropy (``entropy-matched``: what a kind
gains by flattening alone). An answer with less than ``evals.min_label_mass`` on the option letters is
missing: left out of the table, counted per kind, and the worst value in the verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from kit.agents import Agent, AgentSet
from kit.agents.build import build_agents
from kit.data import SurveySplits, resolve_countries, survey_splits
from kit.evals.capability import capability_kept
from kit.evals.references import neighbour_settings, with_references
from kit.evals.survey import answer_rows
from kit.llm.base import GenParams
from kit.metrics.alignment import (
    ENTROPY_AGENT,
    NEIGHBOUR_AGENT,
    OTHER_COUNTRIES_AGENT,
    REFERENCES,
    UNIFORM_AGENT,
    missing_answers,
    prior_check,
    reference_comparison,
    reference_rows,
    score_table,
)
from kit.reporting import plots
from kit.run import seeds
from kit.session import in_stage

NOTEBOOK = "01_cultural_agents"


def splits(session) -> SurveySplits:
    """The study's question split, for the agents' countries (train capped, test capped)."""
    p = session.params
    return survey_splits(
        p.data.goqa_path,
        resolve_countries(p.agents.countries, p.data.goqa_path),
        test_fraction=p.data.test_fraction,
        split_seed=p.data.split_seed,
        min_train_items=p.agents.min_train_items,
        max_train_items=p.agents.max_train_items,
        max_test_items=p.agents.max_test_items,
        goqa_test_path=p.data.goqa_test_path,
        train_source=p.agents.survey_source,
    )


def split_table(s: SurveySplits) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "country": s.countries,
            "train items": [len(s.train[c]) for c in s.countries],
            "test items": [len(s.test[c]) for c in s.countries],
        }
    )


@in_stage("01", "agents and descriptions")
def build(session, s: SurveySplits) -> AgentSet:
    """Every requested kind for every kept country, from train items only; saved for later notebooks."""
    return build_agents(session, s)


def grounding_table(agent_set: AgentSet) -> pd.DataFrame:
    return pd.DataFrame(agent_set.report.get("grounding", {})).T


@dataclass
class Evaluation:
    """Notebook 01's scores: per (kind, country) with CIs, every answer row, and the score rows
    (answers, the floor applied, plus the four references) the paired comparisons read."""

    table: pd.DataFrame
    answers: list[dict]
    score_rows: list[dict]
    expected: int  # (country, question) pairs on the test split: what full coverage means
    neighbours: tuple[int, int] = (
        5,
        3,
    )  # the neighbour prior's (k, min_shared), cross-validated on the train split


@in_stage("01", "fidelity and capability")
def evaluate(session, agents: Sequence[Agent], s: SurveySplits) -> Evaluation:
    """Every agent answers its country's held-out questions; scores with the reference rows. The
    answers are saved for the cross-method board, each kind's cost measured apart."""
    p = session.params
    answers = []
    for kind in dict.fromkeys(a.kind for a in agents):
        with session.timed(f"answer the test split ({kind})", row=kind):
            answers += answer_rows(session.backend, [a for a in agents if a.kind == kind], s.test_items)
    session.save_scores(NOTEBOOK, "alignment", answers)
    wanted = {(it.country, it.question_id) for it in s.test_items}
    k, m = neighbour_settings(p, s.train_all_countries)
    refs = reference_rows(s.train_all_countries, s.test_all_countries, wanted, k=k, min_shared=m)
    rows = with_references(answers, refs, base_kind(answers), p.evals.min_label_mass)
    table = score_table(rows, n_boot=p.n_boot, seed=seeds.derive(p.seed, "bootstrap"))
    return Evaluation(table, answers, rows, len(wanted), (k, m))


def base_kind(answers: Sequence[dict]) -> str | None:
    """The kind whose answers the entropy-matched row flattens: vanilla, else the first kind asked."""
    kinds = list(dict.fromkeys(r["agent"] for r in answers))
    return "vanilla" if "vanilla" in kinds else (kinds[0] if kinds else None)


def comparison(session, ev: Evaluation, metric: str = "js_similarity") -> pd.DataFrame:
    """Each kind against every reference, paired on the rows both scored (95 % bootstrap intervals)."""
    kinds = [k for k in dict.fromkeys(r["agent"] for r in ev.answers)]
    return reference_comparison(
        ev.score_rows,
        kinds,
        REFERENCES,
        metric,
        n_boot=session.params.n_boot,
        seed=seeds.derive(session.params.seed, "bootstrap"),
        min_items=session.params.verdicts.min_items,
    )


def kind_summary(ev: Evaluation, metric: str = "js_similarity") -> pd.DataFrame:
    """Mean over countries per kind, coverage (the share of test (country, question) pairs it answered) and the
    answers missing below the letter-mass floor."""
    means = ev.table.groupby("agent")[metric].mean().rename(metric).to_frame()
    rows = pd.DataFrame(ev.score_rows)
    scored = rows[rows["p_gen"].notna()].groupby("agent").size()
    means["coverage"] = (scored / ev.expected).reindex(means.index)
    means["missing"] = pd.Series(missing_answers(ev.score_rows)).reindex(means.index).fillna(0).astype(int)
    return means.sort_values(metric, ascending=False)


def verdict(compared: pd.DataFrame, summary: pd.DataFrame, metric: str = "js_similarity") -> str:
    """The plain sentence the notebook must say about each kind: it "beats" a reference only when the
    paired 95 % interval of the difference lies above 0 over at least ``verdicts.min_items`` rows."""
    lines = []
    words = {
        "beats": "beats it",
        "worse": "WORSE",
        "no difference": "no difference",
        "too few": "too few rows to say",
        "no rows": "no rows",
    }
    for kind, group in compared.groupby("kind", sort=False):
        by = group.set_index("reference")
        parts = [
            f"{ref} {r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}] over {r['n']} rows: "
            + words[r["verdict"]]
            for ref, r in by.iterrows()
        ]
        head = (
            f"{kind}: {metric} {summary.loc[kind, metric]:.1f}, coverage {summary.loc[kind, 'coverage']:.0%}, "
            f"{summary.loc[kind, 'missing']} missing"
            if kind in summary.index
            else f"{kind}: every answer missing"
        )
        if (group["verdict"] == "too few").all():
            tail = "too few rows for any verdict (verdicts.min_items)."
        elif by.loc[UNIFORM_AGENT, "verdict"] != "beats":
            tail = "does NOT beat a uniform answer: it has learned nothing measurable."
        elif by.loc[OTHER_COUNTRIES_AGENT, "verdict"] != "beats":
            tail = "beats uniform but not the other-countries mean: no country-specific signal."
        elif by.loc[NEIGHBOUR_AGENT, "verdict"] != "beats":
            tail = (
                "beats the other-countries mean but not the neighbour prior: what it knows is which countries "
                "answer alike, not the culture."
            )
        elif ENTROPY_AGENT in by.index and by.loc[ENTROPY_AGENT, "verdict"] != "beats":
            tail = "beats the survey references but not the vanilla answers flattened to their entropy."
        else:
            tail = "beats every reference."
        lines.append(f"{head} — {tail} ({'; '.join(parts)})")
    return "\n".join(lines)


def prior_line(session, ev: Evaluation, metric: str = "js_similarity") -> dict:
    """The neighbour prior against the other-countries mean on the same rows (``kit.metrics.alignment.prior_check``):
    the table says so when the prior is not the stronger bar."""
    p = session.params
    return prior_check(
        ev.score_rows, metric, p.n_boot, seeds.derive(p.seed, "bootstrap"), p.verdicts.min_items
    )


def letter_mass(ev: Evaluation) -> pd.DataFrame:
    """Format adherence per agent kind: the probability that fell on option letters at all."""
    return pd.DataFrame(ev.answers).groupby("agent")["letter_mass"].agg(["mean", "min", "count"])


def heatmap(session, ev: Evaluation, metric: str = "js_similarity") -> None:
    import seaborn as sns

    grid = ev.table.pivot(index="agent", columns="country", values=metric)
    with plots.figure(
        session.figure_paths("01_fidelity_heatmap.png"),
        figsize=(1.4 + 1.1 * grid.shape[1], 0.9 + 0.5 * grid.shape[0]),
    ) as (_, ax):
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
        ax.set_title(f"{metric} (×100) on held-out questions")
        ax.tick_params(axis="x", rotation=30)


@in_stage("01", "fidelity and capability")
def example_answers(session, agents: Sequence[Agent], s: SurveySplits) -> pd.DataFrame:
    """A held-out question answered in prose by a grounded agent and by the vanilla model (one batch)."""
    grounded = next((a for a in agents if a.kind == "grounded"), None)
    pick = [a for a in agents if a.kind == "vanilla"] + ([grounded] if grounded else [])
    if not pick or not s.countries:
        return pd.DataFrame()
    country = grounded.culture if grounded else s.countries[0]
    item = s.test[country][0]
    p = session.params
    texts = session.backend.generate(
        [a.ask(item.question) for a in pick],
        GenParams(max_new_tokens=p.agents.answer_tokens, seed=seeds.derive(p.seed, "example")),
    )
    return pd.DataFrame(
        {"agent": [a.name for a in pick], "question": item.question, "answer": [t.strip() for t in texts]}
    )


def capability(session, agent_set: AgentSet) -> pd.DataFrame:
    """lm-eval's capability tasks (``capability.tasks``) on every grounded agent's adapter beside the base model
    (``kit.evals.capability``; saved for the capability board)."""
    models = {"base": None, **{a.name: a.adapter for a in agent_set.agents if a.adapter}}
    return capability_kept(session, NOTEBOOK, models, session.params.agents.capability_items, "base")


def key_numbers(
    ev: Evaluation,
    compared: pd.DataFrame,
    summary: pd.DataFrame,
    s: SurveySplits,
    agent_set: AgentSet,
    kept: pd.DataFrame,
    prior: dict | None = None,
) -> dict:
    """Per-kind averages over countries, the references, each kind's verdict and coverage, and what
    was built or skipped."""
    means = ev.table.groupby("agent")[["js_similarity", "js_similarity_e", "s_align"]].mean().round(2)
    kinds = list(dict.fromkeys(r["agent"] for r in ev.answers))
    return {
        "countries": len(s.countries),
        "test_items": sum(len(v) for v in s.test.values()),
        "skipped_countries": sorted(s.skipped),
        "leaks": agent_set.report.get("leaks", {}),
        "js_similarity": means["js_similarity"].to_dict(),
        "js_similarity_e": means["js_similarity_e"].to_dict(),
        "s_align": means["s_align"].to_dict(),
        "verdict": {k: dict(zip(g["reference"], g["verdict"])) for k, g in compared.groupby("kind")},
        "coverage": summary["coverage"].round(3).to_dict(),
        "missing_answers": {k: v for k, v in missing_answers(ev.score_rows).items() if k in kinds},
        "neighbour_prior": {
            "k": ev.neighbours[0],
            "min_shared": ev.neighbours[1],
            **({"vs_other_countries": prior["verdict"]} if prior else {}),
        },
        "letter_mass_mean": round(float(pd.DataFrame(ev.answers)["letter_mass"].mean()), 4),
        "grounded_records_kept": {
            c: st.get("kept", 0) for c, st in agent_set.report.get("grounding", {}).items()
        },
        "moralchoice_low_accuracy": kept["moralchoice_low_accuracy"].round(4).to_dict(),
        "neutral_ppl": kept["neutral_ppl"].round(3).to_dict(),
    }
