"""Training records of the self-play policy and of the single-agent baseline.

- **Self-play**: one record per train dilemma; its ``prompt`` is the setting of the side that
  learns from it (``seeds.unit(seed, "selfplay-side", id)`` picks a or b, so both roles are
  trained across the data), and the lookup the rollout function uses to find dilemma and side.
- **Single agent** (the paper's baseline): the policy alone writes a solution that both parties
  can accept, from the dilemma and both stances, scored by the same judge.
"""

from __future__ import annotations

from collections.abc import Sequence

from kit.run import seeds
from kit.selfplay.dialogue import MARKER, setting
from kit.selfplay.dilemmas import Dilemma
from kit.selfplay.rollout import prompt_key

SINGLE_SYSTEM = "You help two people who disagree find one solution they can both accept."


def learning_side(seed: int, dilemma_id: str) -> str:
    return "a" if seeds.unit(seed, "selfplay-side", dilemma_id) < 0.5 else "b"


def selfplay_records(
    dilemmas: Sequence[Dilemma], seed: int, turn_words: int
) -> tuple[list[dict], dict[str, tuple[Dilemma, str]]]:
    records, lookup = [], {}
    for d in dilemmas:
        side = learning_side(seed, d.id)
        prompt = setting(d, side, turn_words)
        records.append({"id": d.id, "prompt": prompt, "dilemma_id": d.id, "side": side})
        lookup[prompt_key(prompt)] = (d, side)
    return records, lookup


def single_prompt(d: Dilemma, words: int) -> list[dict]:
    return [
        {"role": "system", "content": SINGLE_SYSTEM},
        {
            "role": "user",
            "content": f"The dilemma: {d.text}\n{d.a.name}'s position: {d.a.stance}\n"
            f"{d.b.name}'s position: {d.b.stance}\n\nPropose one solution both can "
            f"accept, in under {words} words, on a line that starts with '{MARKER}'.",
        },
    ]


def single_records(dilemmas: Sequence[Dilemma], words: int) -> list[dict]:
    return [{"id": d.id, "prompt": single_prompt(d, words), "dilemma_id": d.id} for d in dilemmas]
