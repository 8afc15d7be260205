"""One NCN round read back from its trace, for a lesson to score again with other weights.

A stored NCN trace (``kit.negotiation.trace``) keeps, per round, the readable candidates each agent proposed and
the one it kept, but not the pools and weights the round started from: :func:`round_texts` rebuilds them (the
initial guidelines, then each earlier round's kept candidate; the meta-game's weights of the round before, uniform
in round 1), so a notebook can embed the texts and call ``utility.utility_matrix``, ``utility.payoff_matrices``
and ``meta_solver.solve_bimatrix`` itself. :func:`candidates_frame` and :func:`payoff_frame` only lay the
numbers out as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kit.negotiation.guidelines import Guideline
from kit.negotiation.utility import PARTS


@dataclass(frozen=True)
class RoundTexts:
    """What round ``number`` of an NCN trace scored, per agent (A then B)."""

    number: int
    agents: tuple[str, str]  # the agents' cultures
    opinions: tuple[str, str]  # what Consist compares a candidate with: the agent's opening opinion
    pools: tuple[list[Guideline], list[Guideline]]  # each agent's guidelines at the start of the round
    weights: tuple[np.ndarray, np.ndarray]  # the meta-game's weights on them at the start of the round
    candidates: tuple[list[Guideline], list[Guideline]]  # the readable candidates each agent proposed
    kinds: tuple[list[str], list[str]]  # each candidate's kind: counter, gap or innovative


def _guideline(entry: dict[str, Any]) -> Guideline:
    return Guideline(title=entry["title"], reason=entry.get("reason", ""), description=entry["description"])


def round_texts(trace: dict[str, Any], number: int) -> RoundTexts:
    """Round ``number`` (1-based) of the NCN ``trace``, with the pools and weights it started from."""
    if trace.get("method") != "ncn" or trace.get("failed"):
        raise ValueError(
            f"{trace.get('id')}: not an NCN negotiation that ran (method {trace.get('method')!r}, "
            f"failed {trace.get('failed')})"
        )
    rounds = trace["rounds"]
    if not 1 <= number <= len(rounds):
        raise ValueError(f"{trace['id']} held {len(rounds)} round(s); ask for one of 1 … {len(rounds)}")
    initial = [_guideline(trace["initial"][i]["guideline"]) for i in range(2)]
    pools = tuple(
        [initial[i]] + [_guideline(r["chosen"][i]) for r in rounds[: number - 1] if r["chosen"][i]]
        for i in range(2)
    )
    weights = tuple(
        np.asarray(rounds[number - 2]["weights"][i], float) if number > 1 else np.ones(1) for i in range(2)
    )
    opinions = tuple(trace["initial"][i]["opinion"] or initial[i].text for i in range(2))
    now = rounds[number - 1]["candidates"]
    return RoundTexts(
        number,
        tuple(a["culture"] for a in trace["agents"]),
        opinions,
        pools,
        weights,
        tuple([_guideline(c) for c in now[i]] for i in range(2)),
        tuple([c["kind"] for c in now[i]] for i in range(2)),
    )


def candidates_frame(texts: RoundTexts, agent: int, parts: np.ndarray, utility: np.ndarray) -> pd.DataFrame:
    """Agent ``agent``'s candidates of the round: kind, title, the three terms (``parts``, columns in ``PARTS``
    order), ``U`` and which one it keeps (the highest ``U``, first on ties)."""
    kept = int(np.argmax(utility))
    return pd.DataFrame(
        {
            "agent": texts.agents[agent],
            "kind": texts.kinds[agent],
            "title": [g.title for g in texts.candidates[agent]],
            **{name: np.asarray(parts)[:, k] for k, name in enumerate(PARTS)},
            "U": np.asarray(utility),
            "kept": [k == kept for k in range(len(utility))],
        }
    )


def payoff_frame(matrix: np.ndarray, rows: list[Guideline], cols: list[Guideline]) -> pd.DataFrame:
    """A payoff matrix with A's guidelines (titles) down the side and B's across the top."""
    return pd.DataFrame(
        np.asarray(matrix, float),
        index=[f"A{k}: {g.title[:28]}" for k, g in enumerate(rows)],
        columns=[f"B{k}: {g.title[:28]}" for k, g in enumerate(cols)],
    )


def weights_frame(
    agents: tuple[str, str], pools: list[list[Guideline]], weights: list[np.ndarray]
) -> pd.DataFrame:
    """The meta-game's weights: one row per guideline of each agent's pool."""
    return pd.DataFrame(
        [
            {"agent": agents[i], "guideline": f"{'AB'[i]}{k}: {g.title}", "weight": float(w)}
            for i in range(2)
            for k, (g, w) in enumerate(zip(pools[i], weights[i]))
        ]
    )
