"""Does a cultural agent answer like the people it represents? (notebook 01)

Splits GlobalOpinionQA by question, builds each agent kind from the train split only, asks every
agent the held-out questions of its country (one forward pass each), and scores the answers
against the survey with the reference rows every table must carry: a uniform answer and the mean
of the other countries' answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from kit import agents as agent_kinds
from kit.agents import Agent
from kit.config import Params
from kit.data import OpinionItem, by_country, hash_unit, load_goqa, resolve_country, split_questions
from kit.metrics.alignment import OTHER_COUNTRIES_AGENT, UNIFORM_AGENT, other_countries_reference, score_table, uniform_reference

log = logging.getLogger(__name__)

REFERENCES = (UNIFORM_AGENT, OTHER_COUNTRIES_AGENT)


@dataclass
class Splits:
    countries: list[str]
    train: dict[str, list[OpinionItem]]
    test: dict[str, list[OpinionItem]]
    test_all_countries: list[OpinionItem]  # every country's answers on the test questions (for references)
    skipped: dict[str, str] = field(default_factory=dict)


def _cap(items: list[OpinionItem], n: int, seed: int) -> list[OpinionItem]:
    """A deterministic subset, stable as n grows (hash order, not a shuffle)."""
    return sorted(items, key=lambda it: hash_unit(seed, it.question_id))[:n]


def prepare_splits(params: Params) -> Splits:
    a = params.agents
    items = load_goqa(params.data.goqa_path)
    train, test = split_questions(items, a.test_fraction, a.split_seed)
    if params.data.goqa_test_path:  # evaluate on data the user holds back, train on all of goqa_path
        train, test = items, load_goqa(params.data.goqa_test_path)
    known = {it.country for it in items}
    countries = [resolve_country(c, known) for c in a.countries]
    train_by, test_by = by_country(train), by_country(test)
    splits = Splits([], {}, {}, [])
    for c in countries:
        n_train = len(train_by.get(c, []))
        if n_train < a.min_train_items or not test_by.get(c):
            splits.skipped[c] = f"{n_train} train / {len(test_by.get(c, []))} test items (needs ≥ {a.min_train_items} and ≥ 1)"
            log.warning("skipping %s: %s", c, splits.skipped[c])
            continue
        splits.countries.append(c)
        splits.train[c] = _cap(train_by[c], a.max_train_items, a.split_seed)
        splits.test[c] = _cap(test_by[c], a.max_test_items, a.split_seed)
    qids = {it.question_id for its in splits.test.values() for it in its}
    splits.test_all_countries = [it for it in test if it.question_id in qids]
    return splits


def build_agents(session, splits: Splits) -> tuple[list[Agent], dict]:
    """Every requested kind for every kept country, built from train items only; reports what it did."""
    from kit.culture_description import describe_cultures
    from kit.grounding import assert_no_test_leak, train_grounded_agents
    from kit.llm.models import resolve_model

    p = session.params
    kinds, report = p.agents.kinds, {}
    built: list[Agent] = [agent_kinds.vanilla()] if "vanilla" in kinds else []
    if "prompted" in kinds:
        built += [agent_kinds.prompted(c) for c in splits.countries]
    texts: list[str] = []
    if "described" in kinds:
        with session.timed("describe cultures"):
            desc = describe_cultures(session.backend, splits.countries, splits.train, p.agents, p.seed,
                                     session.run_dir / "agents" / "descriptions")
        built += [agent_kinds.described(c, d.text) for c, d in desc.items()]
        texts += [d.text for d in desc.values()]
        report["descriptions_incomplete"] = [c for c, d in desc.items() if not d.complete]
    if "grounded" in kinds:
        base = resolve_model(p.model.name, p.model.revision).path
        with session.timed("ground agents (data + LoRA SFT)"):
            grounded = train_grounded_agents(session.backend, base, splits.countries, splits.train, p.agents, p.seed,
                                             session.run_dir / "agents" / "grounded")
        built += [agent_kinds.grounded(c, g.adapter_dir) for c, g in grounded.items() if g.adapter_dir]
        report["grounding"] = {c: g.stats for c, g in grounded.items()}
        texts += [m["content"] for g in grounded.values() for r in g.records for m in r["messages"][1:]]
    train_items = [it for its in splits.train.values() for it in its]
    test_items = [it for its in splits.test.values() for it in its]
    assert_no_test_leak(train_items, test_items, texts)
    return built, report


def evaluate(session, agents: Sequence[Agent], splits: Splits) -> tuple[pd.DataFrame, list[dict]]:
    """Score table (agent kind × country, with bootstrap CIs) including the reference rows."""
    from kit.survey import answer_rows

    test_items = [it for c in splits.countries for it in splits.test[c]]
    with session.timed("choice_probs on the test split"):
        rows = answer_rows(session.backend, agents, test_items)
    kept = set(splits.countries)
    refs = [r for r in uniform_reference(splits.test_all_countries) + other_countries_reference(splits.test_all_countries)
            if r["country"] in kept and r["question_id"] in {it.question_id for it in splits.test[r["country"]]}]
    table = score_table([{k: r[k] for k in ("agent", "country", "question_id", "p_gen", "p_gold")} for r in rows + refs],
                        n_boot=session.params.agents.n_boot, seed=session.params.seed)
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


def heatmap(table: pd.DataFrame, path: Path, metric: str = "js_similarity") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    grid = table.pivot(index="agent", columns="country", values=metric)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * grid.shape[1], 0.9 + 0.5 * grid.shape[0]))
    sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
    ax.set_title(f"{metric} (×100) on held-out questions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def example_answers(session, agents: Sequence[Agent], splits: Splits) -> pd.DataFrame:
    """A held-out question answered in prose by a grounded agent and by the vanilla model (one batch)."""
    from kit.llm.base import GenParams

    grounded = next((a for a in agents if a.kind == "grounded"), None)
    pick = [a for a in agents if a.kind == "vanilla"] + ([grounded] if grounded else [])
    if not pick or not splits.countries:
        return pd.DataFrame()
    country = grounded.culture if grounded else splits.countries[0]
    item = splits.test[country][0]
    texts = session.backend.generate([a.ask(item.question) for a in pick],
                                     GenParams(max_new_tokens=session.params.agents.answer_tokens, seed=session.params.seed))
    return pd.DataFrame({"agent": [a.name for a in pick], "question": item.question, "answer": [t.strip() for t in texts]})


def key_numbers(table: pd.DataFrame, rows: list[dict], splits: Splits, report: dict) -> dict:
    """Per-kind averages over countries, the references, and what was built or skipped."""
    means = table.groupby("agent")[["js_similarity", "s_align"]].mean().round(2)
    return {
        "countries": len(splits.countries),
        "test_items": sum(len(v) for v in splits.test.values()),
        "skipped_countries": sorted(splits.skipped),
        "js_similarity": means["js_similarity"].to_dict(),
        "s_align": means["s_align"].to_dict(),
        "letter_mass_mean": round(float(pd.DataFrame(rows)["letter_mass"].mean()), 4),
        "grounded_records_kept": {c: s.get("kept", 0) for c, s in report.get("grounding", {}).items()},
    }
