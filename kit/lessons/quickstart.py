"""Notebook 00 · quickstart: one backend, two cultural agents, the three verbs, the cache."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kit.agents import Agent, vanilla
from kit.data import OpinionItem, load_goqa, option_labels, questions, resolve_countries
from kit.evals.survey import choice_request
from kit.llm.base import Backend, GenParams
from kit.metrics.alignment import UNIFORM_AGENT, s_align
from kit.run import seeds
from kit.session import in_stage

CHAT, SURVEY, RERUN = (
    "chat (2 agents, 1 batch)",
    "choice_probs (2 agents + vanilla)",
    "rerun of both steps (cached)",
)


def chat(backend: Backend, agents: Sequence[Agent], prompt: str, max_new_tokens: int, seed: int) -> list[str]:
    """Every agent answers the same prompt; one batched, seeded (hence cacheable) call."""
    params = GenParams(
        temperature=0.7, top_p=0.95, max_new_tokens=max_new_tokens, seed=seeds.derive(seed, "quickstart")
    )
    return [t.strip() for t in backend.generate([a.ask(prompt) for a in agents], params)]


@in_stage("00", "chat and survey")
def agents_chat(session, agents: Sequence[Agent]) -> list[str]:
    """The quickstart prompt answered by every agent, timed."""
    q = session.params.quickstart
    with session.timed(CHAT):
        return chat(session.backend, agents, q.prompt, q.max_new_tokens, session.params.seed)


@in_stage("00", "chat and survey")
def agents_survey(session, agents: Sequence[Agent]) -> tuple[OpinionItem, pd.DataFrame]:
    """A survey question every quickstart country answered, and the distributions of the agents and of
    the vanilla model on it, timed."""
    item_by_country = shared_question(session.params.data.goqa_path, session.params.quickstart.countries)
    with session.timed(SURVEY):
        table = survey_table(session.backend, [*agents, vanilla()], item_by_country)
    return next(iter(item_by_country.values())), table


@in_stage("00", "chat and survey")
def rerun(session, agents: Sequence[Agent], replies: list[str]) -> pd.DataFrame:
    """Both steps again: the answers must come back identical with no model call. Returns the costs."""
    calls_before = dict(session.backend.stats)
    q = session.params.quickstart
    with session.timed(RERUN):
        again = chat(session.backend, agents, q.prompt, q.max_new_tokens, session.params.seed)
        survey_table(
            session.backend, [*agents, vanilla()], shared_question(session.params.data.goqa_path, q.countries)
        )
    if again != replies or session.backend.stats != calls_before:
        raise AssertionError("the rerun reached the model: the cache did not serve it")
    return pd.DataFrame({"step": list(session.timings), "seconds": list(session.timings.values())})


def shared_question(goqa_path: str, countries: Sequence[str]) -> dict[str, OpinionItem]:
    """The first GlobalOpinionQA question that every named country answered, per country."""
    wanted = resolve_countries(countries, goqa_path)
    for group in questions(load_goqa(goqa_path)).values():
        by = {it.country: it for it in group}
        if all(c in by for c in wanted):
            return {c: by[c] for c in wanted}
    raise ValueError(
        f"no GlobalOpinionQA question was answered by all of {wanted}; pick other quickstart.countries"
    )


def survey_table(
    backend: Backend, agents: Sequence[Agent], item_by_country: dict[str, OpinionItem]
) -> pd.DataFrame:
    """Each agent's option distribution beside the gold shares of each country, one batch; a uniform
    answer per country closes the table as the reference every agent must beat."""
    # a cultural agent answers for its own country; an agent without a culture, for every country
    pairs = [(a, it) for a in agents for c, it in item_by_country.items() if a.culture in (None, c)]
    results = backend.choice_probs([choice_request(a, it) for a, it in pairs])
    answered = [
        (a.name, it, [r.probs[lab] for lab in option_labels(len(it.options))], r.label_mass)
        for (a, it), r in zip(pairs, results)
    ]
    answered += [
        (UNIFORM_AGENT, it, [1 / len(it.options)] * len(it.options), None) for it in item_by_country.values()
    ]
    rows = []
    for name, it, p_gen, mass in answered:
        labels = option_labels(len(it.options))
        rows.append(
            {
                "agent": name,
                "scored against": it.country,
                **{f"P({lab})": round(p, 3) for lab, p in zip(labels, p_gen)},
                **{f"gold({lab})": round(g, 3) for lab, g in zip(labels, it.distribution)},
                "letter mass": None if mass is None else round(mass, 4),
                "S_align": round(s_align(p_gen, it.distribution), 2),
            }
        )
    return pd.DataFrame(rows)


def key_numbers(session, replies: list[str], table: pd.DataFrame) -> dict:
    """What notebook 00 records: reply lengths, format adherence, alignment beside a uniform answer's,
    and the cache at work."""
    t = session.timings
    agents = table[table["agent"] != UNIFORM_AGENT]
    return {
        "model": session.params.model.name,
        "reply_chars": [len(r) for r in replies],
        "letter_mass_mean": round(float(agents["letter mass"].mean()), 4),
        "s_align_mean": round(float(agents["S_align"].mean()), 2),
        "s_align_uniform": round(float(table.loc[table["agent"] == UNIFORM_AGENT, "S_align"].mean()), 2),
        "first_run_s": round(t[CHAT] + t[SURVEY], 3),
        "cached_rerun_s": t[RERUN],
        "cache_entries": len(session.cache),
    }
