"""Notebook 01 · cultural agents: do they answer like the people they represent?

Splits GlobalOpinionQA by question, builds each agent kind from the train split only
(``kit.agents.build``), asks every agent the held-out questions of its country (one forward pass
each), and scores the answers against the survey with the reference rows every table must carry:
a uniform answer and the mean of the other countries' answers.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from kit import plots
from kit.agents import Agent, AgentSet
from kit.agents.build import build_agents
from kit.data import SurveySplits, resolve_countries, survey_splits
from kit.evals.survey import answer_rows
from kit.llm.base import GenParams
from kit.metrics.alignment import OTHER_COUNTRIES_AGENT, UNIFORM_AGENT, other_countries_reference, score_table, uniform_reference

REFERENCES = (UNIFORM_AGENT, OTHER_COUNTRIES_AGENT)


def splits(session) -> SurveySplits:
    """The study's question split, for the agents' countries (train capped, test capped)."""
    p = session.params
    return survey_splits(p.data.goqa_path, resolve_countries(p.agents.countries, p.data.goqa_path),
                         test_fraction=p.data.test_fraction, split_seed=p.data.split_seed,
                         min_train_items=p.agents.min_train_items, max_train_items=p.agents.max_train_items,
                         max_test_items=p.agents.max_test_items, goqa_test_path=p.data.goqa_test_path)


def split_table(s: SurveySplits) -> pd.DataFrame:
    return pd.DataFrame({"country": s.countries, "train items": [len(s.train[c]) for c in s.countries],
                         "test items": [len(s.test[c]) for c in s.countries]})


def build(session, s: SurveySplits) -> AgentSet:
    """Every requested kind for every kept country, from train items only; saved for later notebooks."""
    return build_agents(session, s)


def grounding_table(agent_set: AgentSet) -> pd.DataFrame:
    return pd.DataFrame(agent_set.report.get("grounding", {})).T


def evaluate(session, agents: Sequence[Agent], s: SurveySplits) -> tuple[pd.DataFrame, list[dict]]:
    """Score table (agent kind × country, with bootstrap CIs) including the reference rows; and the answers."""
    with session.timed("choice_probs on the test split"):
        rows = answer_rows(session.backend, agents, s.test_items)
    kept = set(s.countries)
    refs = [r for r in uniform_reference(s.test_all_countries) + other_countries_reference(s.test_all_countries)
            if r["country"] in kept and r["question_id"] in {it.question_id for it in s.test[r["country"]]}]
    table = score_table([{k: r[k] for k in ("agent", "country", "question_id", "p_gen", "p_gold")} for r in rows + refs],
                        n_boot=session.params.n_boot, seed=session.params.seed)
    return table, rows


def kind_summary(table: pd.DataFrame, metric: str = "js_similarity") -> pd.DataFrame:
    """Mean over countries per agent kind, and whether it beats each reference."""
    means = table.groupby("agent")[metric].mean().rename(metric).to_frame()
    means["beats uniform"] = means[metric] > means.loc[UNIFORM_AGENT, metric]
    means["beats other-countries mean"] = means[metric] > means.loc[OTHER_COUNTRIES_AGENT, metric]
    return means.sort_values(metric, ascending=False)


def verdict(summary: pd.DataFrame, metric: str = "js_similarity") -> str:
    """The plain sentence the notebook must say about each kind against the references."""
    lines = []
    for kind, row in summary.drop(index=list(REFERENCES), errors="ignore").iterrows():
        if not row["beats uniform"]:
            lines.append(f"{kind}: {row[metric]:.1f} — does NOT beat a uniform answer; it has learned nothing measurable.")
        elif not row["beats other-countries mean"]:
            lines.append(f"{kind}: {row[metric]:.1f} — beats uniform but not the other-countries mean: no country-specific signal.")
        else:
            lines.append(f"{kind}: {row[metric]:.1f} — beats both references.")
    return "\n".join(lines)


def letter_mass(rows: list[dict]) -> pd.DataFrame:
    """Format adherence per agent kind: the probability that fell on option letters at all."""
    return pd.DataFrame(rows).groupby("agent")["letter_mass"].agg(["mean", "min", "count"])


def heatmap(session, table: pd.DataFrame, metric: str = "js_similarity") -> None:
    import seaborn as sns

    grid = table.pivot(index="agent", columns="country", values=metric)
    with plots.figure(session.figure_paths("01_fidelity_heatmap.png"),
                      figsize=(1.4 + 1.1 * grid.shape[1], 0.9 + 0.5 * grid.shape[0])) as (_, ax):
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
        ax.set_title(f"{metric} (×100) on held-out questions")


def example_answers(session, agents: Sequence[Agent], s: SurveySplits) -> pd.DataFrame:
    """A held-out question answered in prose by a grounded agent and by the vanilla model (one batch)."""
    grounded = next((a for a in agents if a.kind == "grounded"), None)
    pick = [a for a in agents if a.kind == "vanilla"] + ([grounded] if grounded else [])
    if not pick or not s.countries:
        return pd.DataFrame()
    country = grounded.culture if grounded else s.countries[0]
    item = s.test[country][0]
    texts = session.backend.generate([a.ask(item.question) for a in pick],
                                     GenParams(max_new_tokens=session.params.agents.answer_tokens, seed=session.params.seed))
    return pd.DataFrame({"agent": [a.name for a in pick], "question": item.question, "answer": [t.strip() for t in texts]})


def key_numbers(table: pd.DataFrame, rows: list[dict], s: SurveySplits, agent_set: AgentSet) -> dict:
    """Per-kind averages over countries, the references, and what was built or skipped."""
    means = table.groupby("agent")[["js_similarity", "s_align"]].mean().round(2)
    return {
        "countries": len(s.countries),
        "test_items": sum(len(v) for v in s.test.values()),
        "skipped_countries": sorted(s.skipped),
        "js_similarity": means["js_similarity"].to_dict(),
        "s_align": means["s_align"].to_dict(),
        "letter_mass_mean": round(float(pd.DataFrame(rows)["letter_mass"].mean()), 4),
        "grounded_records_kept": {c: st.get("kept", 0) for c, st in agent_set.report.get("grounding", {}).items()},
    }
