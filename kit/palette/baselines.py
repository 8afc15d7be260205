"""The rows Cultural Palette is compared with in its Table 1, as engine programs over all questions.

- ``vanilla`` — the base model, no country named;
- ``prompted`` — the base model told the country (and to consider its context);
- ``joint`` — one ORPO adapter on every continent's data (Xu et al. 2024), asked as the country;
- ``ties``, ``model_stock`` — the continent agents merged by mergekit, asked as the country;
- ``moe_routing`` — the query routed to the country's continent agent (the paper's MoE baseline);
- ``modular_overton`` / ``modular_steerable`` / ``modular_distributional`` — Modular Pluralism
  (Feng et al. 2024) with the continent agents as community models: every community comments and
  the base model answers with all comments / with the comment of the country's continent /
  the community models' option distributions are averaged.

Each program answers every (country, question) of the evaluation in one batch per step, on the
model it names; comments depend on the question only, so they are written once per question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kit.agents import vanilla
from kit.data import OpinionItem, continent_of, option_labels
from kit.engine import Program, ask, choose
from kit.evals.survey import choice_request
from kit.llm.base import ChoiceRequest, GenParams
from kit.palette.prompts import CONTINENTS, comment_request, comments_context, persona_choice

Pairs = Sequence[tuple[str, OpinionItem]]  # (country, item) to answer
ROWS = (
    "vanilla",
    "prompted",
    "joint",
    "ties",
    "model_stock",
    "moe_routing",
    "modular_overton",
    "modular_steerable",
    "modular_distributional",
)


def _row(country: str, item: OpinionItem, probs: Sequence[float], mass: float) -> dict:
    return {
        "country": country,
        "question_id": item.question_id,
        "p_gen": list(probs),
        "p_gold": list(item.distribution),
        "letter_mass": mass,
    }


def _labels(item: OpinionItem) -> tuple[str, ...]:
    return option_labels(len(item.options))


def answers(requests: Sequence[ChoiceRequest], pairs: Pairs, model: str | None = None) -> Program:
    """One choose step over every pair; returns score rows."""
    results = yield from choose(list(requests), model=model)
    return [
        _row(c, it, [r.probs[lab] for lab in _labels(it)], r.label_mass) for (c, it), r in zip(pairs, results)
    ]


def row_program(row: str, pairs: Pairs, adapters: Mapping[str, str], comment_tokens: int) -> Program:
    """The program of one Table 1 row (see the module docstring)."""
    if row == "vanilla":
        return answers([choice_request(vanilla(), it) for _, it in pairs], pairs)
    if row == "prompted":
        return answers([persona_choice(c, it, _labels(it)) for c, it in pairs], pairs)
    if row == "joint":
        return answers(
            [persona_choice(c, it, _labels(it), adapter=adapters["joint"]) for c, it in pairs], pairs
        )
    if row in ("ties", "model_stock"):
        return answers([persona_choice(c, it, _labels(it)) for c, it in pairs], pairs, model=row)
    if row == "moe_routing":
        return answers(
            [persona_choice(c, it, _labels(it), adapter=adapters[continent_of(c)]) for c, it in pairs], pairs
        )
    if row == "modular_distributional":
        return _distributional(pairs, adapters)
    if row in ("modular_overton", "modular_steerable"):
        return _with_comments(row, pairs, adapters, comment_tokens)
    raise ValueError(f"unknown Table 1 row {row!r}; use one of {ROWS}")


def _distributional(pairs: Pairs, adapters: Mapping[str, str]) -> Program:
    requests = [
        persona_choice(c, it, _labels(it), adapter=adapters[k]) for c, it in pairs for k in CONTINENTS
    ]
    results = yield from choose(requests)
    rows = []
    for n, (c, it) in enumerate(pairs):
        mine = results[n * len(CONTINENTS) : (n + 1) * len(CONTINENTS)]
        probs = np.mean([[r.probs[lab] for lab in _labels(it)] for r in mine], axis=0)
        rows.append(_row(c, it, probs.tolist(), float(np.mean([r.label_mass for r in mine]))))
    return rows


def _with_comments(row: str, pairs: Pairs, adapters: Mapping[str, str], comment_tokens: int) -> Program:
    questions = list({it.question_id: it for _, it in pairs}.values())
    texts = yield from ask(
        [
            (comment_request(k, it, adapters[k]), GenParams(max_new_tokens=comment_tokens))
            for it in questions
            for k in CONTINENTS
        ]
    )
    comments = {
        (it.question_id, k): texts[n * len(CONTINENTS) + j]
        for n, it in enumerate(questions)
        for j, k in enumerate(CONTINENTS)
    }
    requests = []
    for c, it in pairs:
        chosen = CONTINENTS if row == "modular_overton" else (continent_of(c),)
        context = comments_context([(k, comments[(it.question_id, k)]) for k in chosen])
        requests.append(persona_choice(c, it, _labels(it), context=context))
    return (yield from answers(requests, pairs))
