"""The few steps notebook 00 shows, kept here so the notebook only calls and displays."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from kit.agents import Agent
from kit.data import OpinionItem, load_goqa, option_labels, questions, resolve_country
from kit.llm.base import Backend, GenParams
from kit.metrics.alignment import s_align
from kit.survey import choice_request


def chat(backend: Backend, agents: Sequence[Agent], prompt: str, max_new_tokens: int, seed: int) -> list[str]:
    """Every agent answers the same prompt; one batched, seeded (hence cacheable) call."""
    params = GenParams(temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens, seed=seed)
    return [t.strip() for t in backend.generate([a.ask(prompt) for a in agents], params)]


def shared_question(goqa_path: str, countries: Sequence[str]) -> dict[str, OpinionItem]:
    """The first GlobalOpinionQA question that every named country answered, per country."""
    items = load_goqa(goqa_path)
    known = {it.country for it in items}
    wanted = [resolve_country(c, known) for c in countries]
    for group in questions(items).values():
        by = {it.country: it for it in group}
        if all(c in by for c in wanted):
            return {c: by[c] for c in wanted}
    raise ValueError(f"no GlobalOpinionQA question was answered by all of {wanted}; pick other quickstart.countries")


def survey_table(backend: Backend, agents: Sequence[Agent], item_by_country: dict[str, OpinionItem]) -> pd.DataFrame:
    """Each agent's option distribution beside the gold shares of each country, one batch."""
    # a cultural agent answers for its own country; an agent without a culture, for every country
    pairs = [(a, it) for a in agents for c, it in item_by_country.items() if a.culture in (None, c)]
    results = backend.choice_probs([choice_request(a, it) for a, it in pairs])
    rows = []
    for (a, it), r in zip(pairs, results):
        labels = option_labels(len(it.options))
        p_gen = [r.probs[lab] for lab in labels]
        rows.append({"agent": a.name, "scored against": it.country,
                     **{f"P({lab})": round(p, 3) for lab, p in zip(labels, p_gen)},
                     **{f"gold({lab})": round(g, 3) for lab, g in zip(labels, it.distribution)},
                     "letter mass": round(r.label_mass, 4), "S_align": round(s_align(p_gen, it.distribution), 2)})
    return pd.DataFrame(rows)
