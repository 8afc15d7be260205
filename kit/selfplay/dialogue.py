"""Self-play: two instances of one policy, with opposing personas, talk a dilemma through in turns.

Persona a speaks first; turns alternate up to ``max_turns``. Each side sees the conversation from
its own chair — its persona as the system prompt, the dilemma as the first user message (for b,
with a's opening turn), its own turns as assistant messages and the other side's as user
messages — so the same chat model plays both. A dialogue is **resolved** when two consecutive
turns (one per side) each hold a line that *starts* with :data:`MARKER` followed by a readable
solution (``kit.metrics.text``), and the two solutions agree: their sentence embeddings' cosine is
at least ``agree_cosine`` (``selfplay.agree_cosine``, validated in ``tests/test_selfplay.py``). The
marker alone, two different solutions, or an empty one keep the talk going. The joint solution is
the last turn's. Unresolved dialogues are judged on the last solution anyone stated, else the last turn.

Each dialogue is an engine program that asks for one turn per step, and for the embeddings of a stated
pair in the step after (the agreement decides whether the talk goes on, so it is read where the
dialogue runs, not after it), so :func:`play` advances all dialogues one turn at a time with one
backend call per turn and one embedder call for every pair of that turn (``kit.engine``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kit.engine import Job, ask, embed, run_jobs
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.metrics.text import degenerate
from kit.selfplay.dilemmas import Dilemma, Persona

MARKER = "JOINT SOLUTION:"
_MARKER_RE = re.compile(
    r"^[ \t]*joint\s+solution\s*:", re.IGNORECASE | re.MULTILINE
)  # at a line's start only
# Cosine of the two sides' solutions (all-MiniLM-L6-v2) at which they count as one solution: every
# different-solution pair on one topic of the validation set is below it (max 0.754), the paraphrases that
# restate above it (reworded ones, 0.58-0.80, are missed: the safe error). Swapped roles read as one solution.
AGREE_COSINE = 0.8


@dataclass(frozen=True)
class Turn:
    speaker: str  # a | b
    text: str


@dataclass(frozen=True)
class Dialogue:
    dilemma_id: str
    sample: int
    turns: tuple[Turn, ...]
    resolved: bool
    solution: str

    def as_dict(self) -> dict:
        return {**asdict(self), "turns": [asdict(t) for t in self.turns]}

    @classmethod
    def from_dict(cls, d: dict) -> Dialogue:
        return cls(
            d["dilemma_id"], d["sample"], tuple(Turn(**t) for t in d["turns"]), d["resolved"], d["solution"]
        )


def persona(d: Dilemma, side: str) -> Persona:
    return d.a if side == "a" else d.b


def other(side: str) -> str:
    return "b" if side == "a" else "a"


def system_prompt(d: Dilemma, side: str, turn_words: int) -> str:
    me, them = persona(d, side), persona(d, other(side))
    return (
        f"You are {me.name}. {me.stance}\nYou are talking with {them.name}, who sees this differently. Say what "
        f"matters to you, listen to {them.name}, and work toward one solution you can both accept. Keep each turn "
        f"under {turn_words} words. When you accept a solution, end your turn with a line that starts with "
        f"'{MARKER}' and states it; the talk ends once you have both stated one."
    )


def opening(d: Dilemma, side: str, first_turn: str | None = None) -> str:
    """The first user message: the dilemma, and who speaks first (for b, a's opening turn)."""
    them = persona(d, other(side)).name
    if side == "a":
        return f"The dilemma: {d.text}\n\nYou speak first."
    if first_turn is None:
        return f"The dilemma: {d.text}\n\n{them} speaks first."
    return f"The dilemma: {d.text}\n\n{them} spoke first:\n{first_turn}"


def view(d: Dilemma, side: str, turns: Sequence[Turn], turn_words: int) -> list[dict]:
    """``side``'s chat before its next turn: its own turns as assistant messages, the other's as user messages."""
    if side == "b" and not turns:
        raise ValueError("b speaks after a: its view needs a's first turn")
    messages = [
        {"role": "system", "content": system_prompt(d, side, turn_words)},
        {"role": "user", "content": opening(d, side, turns[0].text if side == "b" else None)},
    ]
    for t in turns[1:] if side == "b" else turns:
        messages.append({"role": "assistant" if t.speaker == side else "user", "content": t.text})
    return messages


def setting(d: Dilemma, side: str, turn_words: int) -> list[dict]:
    """``side``'s persona and dilemma before anyone spoke: the prompt column of its training records."""
    return [
        {"role": "system", "content": system_prompt(d, side, turn_words)},
        {"role": "user", "content": opening(d, side)},
    ]


def has_marker(text: str) -> bool:
    """Whether a line of ``text`` starts with the marker."""
    return bool(_MARKER_RE.search(text))


def solution_of(text: str) -> str:
    """What follows the last line-start marker in ``text`` (stripped), or "" when there is none."""
    found = list(_MARKER_RE.finditer(text))
    return text[found[-1].end() :].strip() if found else ""


def stated(text: str) -> str | None:
    """The readable solution a turn states after a line-start marker, or None (no marker, empty, degenerate)."""
    solution = solution_of(text)
    return solution if has_marker(text) and not degenerate(solution) else None


def agree(vectors: np.ndarray, threshold: float = AGREE_COSINE) -> bool:
    """Whether two unit-norm solution embeddings are one solution (cosine at least ``threshold``)."""
    return float(np.dot(vectors[0], vectors[1])) >= threshold


def final_solution(turns: Sequence[Turn]) -> str:
    """An unresolved dialogue's solution: the last one anyone stated, else the last turn."""
    said = [s for s in (solution_of(t.text) for t in turns if has_marker(t.text)) if s]
    return said[-1] if said else (turns[-1].text if turns else "")


def program(
    d: Dilemma,
    max_turns: int,
    params_for: Callable[[int], GenParams],
    turn_words: int,
    adapter: str | None = None,
    sample: int = 0,
    agree_cosine: float = AGREE_COSINE,
):
    """One dialogue as an engine program: a generation step per turn and, from the second turn on, an embedding
    step after it (empty unless both sides just stated a solution), ending early when resolved.

    Every dialogue takes the embedding step, needed or not: a step costs nothing without texts, and were only
    some to take it, they would fall a step behind the rest for good and each later turn would split into
    one generate call per group.
    """
    turns: list[Turn] = []
    for t in range(max_turns):
        side = "a" if t % 2 == 0 else "b"
        request = ChatRequest(view(d, side, turns, turn_words), adapter=adapter, sample=sample)
        (text,) = yield from ask([(request, params_for(t))])
        turns.append(Turn(side, text.strip()))
        if t == 0:
            continue
        both = [stated(x.text) for x in turns[-2:]]
        vectors = yield from embed(both if None not in both else [])
        if len(vectors) and agree(vectors, agree_cosine):
            return Dialogue(d.id, sample, tuple(turns), True, both[-1])
    return Dialogue(d.id, sample, tuple(turns), False, final_solution(turns))


def play(
    backend: Backend,
    games: Sequence[tuple[Dilemma, int, str | None]],
    max_turns: int,
    params_for: Callable[[int], GenParams],
    turn_words: int,
    embedder,
    agree_cosine: float = AGREE_COSINE,
) -> list[Dialogue]:
    """The dialogues of ``(dilemma, sample, adapter)`` games, all advancing one turn per step (in ``games`` order).

    Games with different adapters (one per method being compared) share the steps; the backend
    batches each adapter's requests apart within a call, and ``embedder`` reads every solution pair of
    a step in one call.
    """
    jobs = [
        Job(f"{d.id}#{k}#{adapter}", program(d, max_turns, params_for, turn_words, adapter, k, agree_cosine))
        for d, k, adapter in games
    ]
    run_jobs(jobs, backend, embedder)
    return [job.result for job in jobs]
