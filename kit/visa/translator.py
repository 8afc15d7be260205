"""The value translator: a natural-language value instruction ↔ a target vector.

- ``instruction(vector)`` writes the instruction the rewriter reads ("Give more weight to tradition
  and security. Give less weight to stimulation."): deterministic, so prompts are cacheable.
- ``ValueTranslator`` reads any instruction back into a vector: the model answers with JSON
  ``{"more": [...], "less": [...]}``; replies that do not parse are asked again (greedy first,
  then seeded samples, all texts in one batch per attempt), and the ones still unreadable are
  counted in ``failures`` and returned with their raw text.

``INSTRUCTION_EXAMPLES`` are hand-written instructions with their intended vectors: the round-trip
figure scores the translator on them as well as on its own template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from kit.engine import ask_parsed, run
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.run import seeds
from kit.values.detectors import ValueResult, first_json
from kit.values.schwartz import SCHWARTZ_VALUES, VALUE_DEFINITIONS

log = logging.getLogger(__name__)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


_INDEX = {_norm(name): i for i, name in enumerate(SCHWARTZ_VALUES)}


def _names(indices: Sequence[int]) -> str:
    words = [SCHWARTZ_VALUES[i].lower() for i in indices]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def instruction(vector: Sequence[float]) -> str:
    """The instruction for a target vector (+1: more weight, −1: less weight — the value not expressed, which is
    what ``kit.visa.rewards.value_scores`` rewards; never "argue against")."""
    vec = np.asarray(vector, dtype=float)
    if vec.shape != (len(SCHWARTZ_VALUES),) or not vec.any():
        raise ValueError(f"a target names at least one of the {len(SCHWARTZ_VALUES)} values, got {vector!r}")
    parts = []
    if (more := np.flatnonzero(vec > 0)).size:
        parts.append(f"Give more weight to {_names(more)}.")
    if (less := np.flatnonzero(vec < 0)).size:
        parts.append(f"Give less weight to {_names(less)}.")
    return " ".join(parts)


def _indices(entry: Any) -> list[int] | None:
    if isinstance(entry, str):
        entry = [entry]
    if not isinstance(entry, list) or not all(isinstance(e, str) for e in entry):
        return None
    found = [_INDEX.get(_norm(e)) for e in entry]
    return None if any(i is None for i in found) else found


def _from_object(obj: dict) -> np.ndarray | None:
    keys = {_norm(str(k)): v for k, v in obj.items()}
    if not {"more", "less"} & keys.keys() or set(keys) - {"more", "less"}:
        return None
    more, less = _indices(keys.get("more", [])), _indices(keys.get("less", []))
    if more is None or less is None or set(more) & set(less):
        return None
    vec = np.zeros(len(SCHWARTZ_VALUES))
    vec[more], vec[less] = 1.0, -1.0
    return vec if vec.any() else None


def parse_target(text: str) -> np.ndarray | None:
    """The target in a reply: the first JSON object with only ``more``/``less`` keys, each a value name or
    a list of them (any case or hyphenation), naming no value twice and at least one; else None."""
    return first_json(text, _from_object)


SYSTEM = (
    "You translate instructions about human values into Schwartz's ten basic values. You reply with a single "
    "JSON object and nothing else."
)


def translator_prompt(text: str) -> str:
    definitions = "\n".join(f"- {name}: {VALUE_DEFINITIONS[name]}" for name in SCHWARTZ_VALUES)
    return (
        f"Schwartz's ten basic values:\n{definitions}\n\n"
        "Which values does the instruction below ask a text to express more, and which less? Reply with "
        '{"more": [value names], "less": [value names]}, using the names above; leave out values it does '
        f'not mention.\n\nInstruction: "{text.strip()}"'
    )


# One worked exchange before the real one: small models copy the reply's shape from it.
EXAMPLE = (
    "Make it more adventurous and less concerned with rules.",
    '{"more": ["Stimulation"], "less": ["Conformity"]}',
)


def translator_messages(text: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": translator_prompt(EXAMPLE[0])},
        {"role": "assistant", "content": EXAMPLE[1]},
        {"role": "user", "content": translator_prompt(text)},
    ]


class ValueTranslator:
    """Instruction → target vector by a model's JSON; ``failures`` counts instructions left unreadable."""

    def __init__(
        self,
        backend: Backend,
        max_retries: int = 2,
        seed: int = 0,
        max_new_tokens: int = 96,
        retry_temperature: float = 0.7,
    ):
        self.backend, self.max_retries, self.seed = backend, max_retries, seed
        self.max_new_tokens, self.retry_temperature = max_new_tokens, retry_temperature
        self.failures = 0

    def params(self, attempt: int) -> GenParams:
        if attempt == 0:
            return GenParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        return GenParams(
            temperature=self.retry_temperature,
            max_new_tokens=self.max_new_tokens,
            seed=seeds.derive(self.seed, "value-translator", attempt),
        )

    def vectors(self, instructions: Sequence[str]) -> list[ValueResult]:
        unique = list(dict.fromkeys(instructions))
        makers = [
            lambda attempt, t=t: (ChatRequest(translator_messages(t)), self.params(attempt)) for t in unique
        ]
        results = run(ask_parsed(makers, parse_target, self.max_retries), self.backend)
        found = {t: ValueResult(r.value, r.raw, r.attempts) for t, r in zip(unique, results)}
        unreadable = sum(r.value is None for r in results)
        if unreadable:
            self.failures += unreadable
            log.warning("value translator: %d of %d instructions unreadable", unreadable, len(unique))
        return [found[t] for t in instructions]


def _vec(**named: int) -> tuple[float, ...]:
    vec = [0.0] * len(SCHWARTZ_VALUES)
    for key, v in named.items():
        vec[_INDEX[_norm(key)]] = float(v)
    return tuple(vec)


# Hand-written instructions and the vectors they mean, for the translator's round-trip check.
INSTRUCTION_EXAMPLES: tuple[tuple[str, tuple[float, ...]], ...] = (
    (
        "Make it sound more respectful of custom and religion, and more cautious about risk.",
        _vec(tradition=1, security=1),
    ),
    (
        "Less about getting ahead of others; more about caring for friends and family.",
        _vec(achievement=-1, benevolence=1),
    ),
    (
        "Encourage the reader to think for themselves and try new things.",
        _vec(self_direction=1, stimulation=1),
    ),
    ("Tone down the thrill-seeking and the pursuit of pleasure.", _vec(stimulation=-1, hedonism=-1)),
    ("Stress fairness to all people and care for nature.", _vec(universalism=1)),
    ("Put less emphasis on obeying rules and fitting in.", _vec(conformity=-1)),
    ("Emphasise status, wealth and control over resources.", _vec(power=1)),
    ("Play down safety and stability; favour independence.", _vec(security=-1, self_direction=1)),
)
