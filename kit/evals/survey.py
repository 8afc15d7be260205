"""Asking agents survey questions: option distributions from one forward pass, no sampling.

As in Modular Pluralism's evaluation, the prompt ends with the assistant turn opened on
``"Answer:"`` and the next-token probabilities of the option letters are renormalised; the
mass that fell on the letters at all is kept as a format-adherence measure.
"""

from __future__ import annotations

from collections.abc import Sequence

from kit.agents import Agent
from kit.data import OpinionItem, option_labels
from kit.llm.base import Backend, ChoiceRequest

INSTRUCTION = "Answer with the letter of one option."
PREFIX = "Answer:"


def choice_request(agent: Agent, item: OpinionItem) -> ChoiceRequest:
    try:
        labels = option_labels(len(item.options))
    except ValueError as e:
        raise ValueError(f"question {item.question_id} ({item.question[:60]!r}…): {e}") from None
    return ChoiceRequest(
        agent.messages(f"{item.prompt.removesuffix('Answer:').rstrip()}\n{INSTRUCTION}"),
        labels,
        adapter=agent.adapter,
        prefix=PREFIX,
    )


def answer_rows(backend: Backend, agents: Sequence[Agent], items: Sequence[OpinionItem]) -> list[dict]:
    """One row per (agent, item), all sent to the backend as one batch.

    Rows carry what :func:`kit.metrics.alignment.score_table` reads (agent, country,
    question_id, p_gen, p_gold) plus the letter mass.
    """
    pairs = [(a, it) for a in agents for it in items if a.culture in (None, it.country)]
    results = backend.choice_probs([choice_request(a, it) for a, it in pairs])
    return [
        {
            "agent": a.kind,
            "agent_name": a.name,
            "country": it.country,
            "question_id": it.question_id,
            "p_gen": [r.probs[lab] for lab in option_labels(len(it.options))],
            "p_gold": list(it.distribution),
            "letter_mass": r.label_mass,
        }
        for (a, it), r in zip(pairs, results)
    ]
