"""The self-play policies on NCN's study: the same topics and culture pairs, read by the same evaluation.

Each topic × pair of the negotiation study becomes a dilemma whose two personas are the pair's
cultures holding their agents' initial statements (from the study's ``none`` traces, so every
method starts from the same two positions). A policy talks it through (``kit.selfplay.dialogue``)
and the dialogue becomes a trace like NCN's: the same initial statements, each side's last turn its
final statement, ``resolved`` when both stated one solution (``kit.selfplay.dialogue``). Then every method's traces —
NCN, debate, consultancy, none and the policies — go through one evaluation
(``kit.evals.traces``: acceptance, values, rounds) plus the Collective Agency judge on each side's
final statement, so the consensus board compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from kit.agents import Agent
from kit.evals.traces import evaluate_traces, trace_texts
from kit.llm.base import Backend, GenParams
from kit.selfplay.dialogue import Dialogue, play
from kit.selfplay.dilemmas import Dilemma, Persona
from kit.selfplay.judge import collective_agency
from kit.values import ValueDetector

STANCE_WORDS = 60  # a persona's stance: the head of its agent's initial statement


def _stance(text: str) -> str:
    return " ".join(text.split()[:STANCE_WORDS])


def dilemma_of(trace: Mapping) -> Dilemma:
    """A study trace's topic and pair as a self-play dilemma, each culture holding its initial statement."""
    texts = trace_texts(trace)
    a, b = (x["culture"] for x in trace["agents"])
    return Dilemma(
        id=f"{trace['topic']['id']}|{a}|{b}",
        source="ncn",
        text=trace["topic"]["text"],
        a=Persona(a, _stance(texts["initial_a"])),
        b=Persona(b, _stance(texts["initial_b"])),
        split="test",
    )


def as_trace(start: Mapping, method: str, dialogue: Dialogue) -> dict:
    """A dialogue as a study trace: ``start``'s topic, agents and initial statements; each side's last turn
    as its final statement (as NCN's agents each end on their own statement — the joint solution twice
    would make the two sides agree by construction); a round per two turns; ``resolved`` as the dialogue was
    (``converged`` is for stopping rules, and a dialogue's is its resolution)."""
    last = {t.speaker: t.text.strip() for t in dialogue.turns}
    solution = dialogue.solution.strip()
    return {
        "id": f"{method}|{start['topic']['id']}|{'|'.join(a['culture'] for a in start['agents'])}",
        "method": method,
        "topic": start["topic"],
        "agents": start["agents"],
        "initial": start["initial"],
        "consensus": [last.get("a", solution), last.get("b", solution)],
        "rounds_used": math.ceil(len(dialogue.turns) / 2),
        "converged": False,
        "resolved": dialogue.resolved,
        "failed": False,
        "solution": solution,
        "turns": [t.text for t in dialogue.turns],
    }


def starts(traces: Sequence[Mapping], excluded_topics: set[str] = frozenset()) -> list[Mapping]:
    """The study's ``none`` traces that can seed a dialogue (not failed, both initial statements present),
    leaving out ``excluded_topics``."""
    return [
        t
        for t in traces
        if t["method"] == "none"
        and not t["failed"]
        and t["topic"]["id"] not in excluded_topics
        and all(s.strip() for s in list(trace_texts(t).values())[:2])
    ]


def policy_traces(
    backend: Backend,
    seeds_: Sequence[Mapping],
    policies: Mapping[str, str | None],
    max_turns: int,
    params_for: Callable[[int], GenParams],
    turn_words: int,
    embedder,
    agree_cosine: float,
) -> list[dict]:
    """Every policy's dialogue on every seed trace's topic and pair (one engine run), as traces."""
    dilemmas = [dilemma_of(t) for t in seeds_]
    games = [(d, 0, adapter) for adapter in policies.values() for d in dilemmas]
    played = play(backend, games, max_turns, params_for, turn_words, embedder, agree_cosine)
    n = len(seeds_)
    return [
        as_trace(t, method, dlg)
        for i, method in enumerate(policies)
        for t, dlg in zip(seeds_, played[i * n : (i + 1) * n])
    ]


def consensus_rows(
    backend: Backend,
    judge: Backend,
    detector: ValueDetector,
    agents: Mapping[str, Agent],
    traces: Sequence[Mapping],
    min_mass: float = 0.0,
) -> pd.DataFrame:
    """One row per usable trace: ``evaluate_traces``' columns (``resolved`` for the dialogues), and the Collective
    Agency of each side's final statement and their mean (``collective_agency``)."""
    df = evaluate_traces(backend, detector, agents, traces)
    by_id = {t["id"]: t for t in traces}
    dilemmas = [dilemma_of(by_id[i]) for i in df["id"]]
    finals = [trace_texts(by_id[i]) for i in df["id"]]
    scores = (
        collective_agency(
            judge,
            [d for d in dilemmas for _ in (0, 1)],
            [f[s] for f in finals for s in ("final_a", "final_b")],
            min_mass,
        )
        if len(df)
        else []
    )
    df["collective_agency_a"] = scores[0::2]
    df["collective_agency_b"] = scores[1::2]
    # a side whose judgement is missing leaves the trace's score missing, not half of it
    df["collective_agency"] = (np.asarray(scores[0::2]) + np.asarray(scores[1::2])) / 2 if len(df) else []
    return df
