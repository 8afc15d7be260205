"""Self-play's reward functions, plain functions in trl's shape registered in ``kit.train.rewards``.

- ``collective_agency``: the judge's expected CA score of the solution, mapped from 1–5 to [0, 1]; no
  solution (``kit.selfplay.judge.no_solution``) scores 0, and so does a judgement the judge left missing
  (no mass on the labels, or less than the context's ``min_mass``) — never the 0.5 of a uniform guess.
  In self-play the rollout function hands over each dialogue's ``solution``; for the single-agent
  baseline the solution is what the completion states after the marker (or the whole completion).
- ``joint_solution``: 1 when the dialogue was resolved — both sides stated a readable solution on a
  line starting with the marker and the two agree (the rollout's ``resolved``, the test of
  ``kit.selfplay.dialogue``); printing the marker, or two different solutions, earns 0. For a single
  agent, 1 when the completion states a readable solution on a line starting with the marker.

Both read the ``dilemma_id`` column of the training records; the judge and the dilemmas come in a
:class:`JudgeContext`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kit.llm.base import Backend
from kit.selfplay import judge as ca
from kit.selfplay.dialogue import has_marker, solution_of, stated
from kit.selfplay.dilemmas import Dilemma
from kit.train.rewards import text_of


@dataclass
class JudgeContext:
    judge: Backend
    dilemmas: dict[str, Dilemma]
    min_mass: float = 0.0  # selfplay.judge_min_mass


def stated_solution(completion: Any) -> str:
    text = text_of(completion)
    return solution_of(text) if has_marker(text) else text.strip()


def collective_agency(
    completions: Sequence[Any],
    dilemma_id: Sequence[str],
    solution: Sequence[str] | None = None,
    *,
    context: JudgeContext,
    **_: Any,
) -> list[float]:
    texts = list(solution) if solution is not None else [stated_solution(c) for c in completions]
    scores = ca.collective_agency(
        context.judge, [context.dilemmas[i] for i in dilemma_id], texts, context.min_mass
    )
    return [agency_reward(s) for s in scores]


def agency_reward(score: float) -> float:
    """A 1–5 CA score as a reward in [0, 1]; a missing judgement (NaN) earns 0, never a guess."""
    return 0.0 if math.isnan(score) else (score - 1) / 4


def joint_solution(
    completions: Sequence[Any], resolved: Sequence[bool] | None = None, *, context: JudgeContext, **_: Any
) -> list[float]:
    if resolved is not None:
        return [float(r) for r in resolved]
    return [float(stated(text_of(c)) is not None) for c in completions]
