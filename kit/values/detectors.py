"""Value detectors: map a text to the 10 Schwartz values, each −1 (opposes), 0 (not expressed) or 1 (supports).

Detectors share one interface, ``.vectors(texts) -> list[ValueResult]`` plus a ``failures`` count,
and are registered by name in ``DETECTORS`` (the name ``negotiation.value_judge`` takes):

- ``LLMValueJudge`` asks a model for a JSON object (the NCN paper's method). Every attempt is one
  batched ``generate`` call for all texts still unread; the first is greedy, retries are seeded
  samples, so every call is deterministic and cacheable.
- ``EmbeddingValueDetector`` compares a sentence embedding of the text with a "supports" and an
  "opposes" description of each value. It runs offline in seconds and suits smoke runs; it is a
  coarse proxy (sentence embeddings see topic more than stance), not a validated instrument.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from kit.engine import ask_parsed, run
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.registry import Registry
from kit.run import seeds
from kit.values.schwartz import SCHWARTZ_VALUES, VALUE_DEFINITIONS, VALUE_POLES

log = logging.getLogger(__name__)

DETECTORS: Registry = Registry("value detector")
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ValueResult:
    """A detector's reading of one text: the vector (``None`` when unreadable), its raw evidence, tries."""

    vector: np.ndarray | None
    raw: str
    attempts: int

    @property
    def valid(self) -> bool:
        return self.vector is not None


class ValueDetector(Protocol):
    failures: int

    def vectors(self, texts: Sequence[str]) -> list[ValueResult]: ...


# --- parsing ---------------------------------------------------------------------------------------


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())  # "Self-Direction", "self_direction", "SELF DIRECTION"


_KEYS = {_norm_key(name): i for i, name in enumerate(SCHWARTZ_VALUES)}
_SCORE_STRING = re.compile(r"^[+-]?[01](?:\.0*)?$")
# Near-JSON that small models write: "Power": +1 and a comma before the closing brace.
_PLUS_NUMBER = re.compile(r"(:\s*)\+(?=\d)")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _score(value: Any) -> int | None:
    if isinstance(value, bool):  # bool is an int in Python; true/false is no score
        return None
    if isinstance(value, (int, float)):
        return int(value) if value in (-1, 0, 1) else None
    if isinstance(value, str) and _SCORE_STRING.match(value.strip()):
        return int(float(value.strip()))
    return None


def _vector_from(obj: dict) -> np.ndarray | None:
    """The vector an object holds directly or under one nested key (``{"values": {...}}``), else None."""
    scores = {_KEYS[k]: v for k, v in ((_norm_key(str(key)), val) for key, val in obj.items()) if k in _KEYS}
    if scores:
        if len(scores) < len(SCHWARTZ_VALUES):
            return None
        vec = [_score(scores[i]) for i in range(len(SCHWARTZ_VALUES))]
        return None if any(s is None for s in vec) else np.array(vec, dtype=float)
    for value in obj.values():
        if isinstance(value, dict) and (vec := _vector_from(value)) is not None:
            return vec
    return None


def parse_value_json(text: str) -> np.ndarray | None:
    """The value vector (``SCHWARTZ_VALUES`` order) in a judge's reply; ``None`` when it cannot be read.

    Reads the first JSON object anywhere in the text (fences and prose around it are fine) that maps
    all ten values — keys in any case, spacing or hyphenation — to −1, 0 or 1 (numbers or strings
    such as ``"+1"``). A missing value or any other score makes the object invalid.
    """
    return first_json(_TRAILING_COMMA.sub(r"\1", _PLUS_NUMBER.sub(r"\1", text)), _vector_from)


def first_json(text: str, read: Callable[[dict], T | None]) -> T | None:
    """``read`` of the first JSON object anywhere in ``text`` (fences and prose around it are fine) that
    it accepts (returns not None); None when there is none."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
            value = read(obj) if isinstance(obj, dict) else None
        except (
            ValueError,
            TypeError,
            RecursionError,
        ):  # not JSON, too deep, or not of the shape read expects
            continue
        if value is not None:
            return value
    return None


# --- LLM judge -------------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You annotate which human values a text expresses, using Schwartz's theory of basic "
    "human values. You reply with a single JSON object and nothing else."
)


def judge_prompt(text: str) -> str:
    """The judge's user turn: the ten definitions, the scale, the output format and the text."""
    definitions = "\n".join(f"- {name}: {VALUE_DEFINITIONS[name]}" for name in SCHWARTZ_VALUES)
    keys = ", ".join(f'"{name}": v' for name in SCHWARTZ_VALUES)
    return (
        f"Schwartz's ten basic values:\n{definitions}\n\n"
        "For each value, decide whether the text below supports it (1), opposes it (-1) or does "
        "not express it (0).\n"
        f"Reply with one JSON object with exactly these ten keys, each v being -1, 0 or 1:\n{{{keys}}}\n\n"
        f'Text:\n"""\n{text.strip()}\n"""'
    )


class LLMValueJudge:
    """A model reads each text's values as JSON; unreadable replies are asked again, all in one batch.

    ``failures`` counts texts still unreadable after ``max_retries`` retries, over the judge's life.
    """

    def __init__(
        self,
        backend: Backend,
        max_retries: int = 2,
        seed: int = 0,
        max_new_tokens: int = 200,
        retry_temperature: float = 0.7,
    ):
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.backend, self.max_retries, self.seed = backend, max_retries, seed
        self.max_new_tokens, self.retry_temperature = max_new_tokens, retry_temperature
        self.failures = 0

    def params(self, attempt: int) -> GenParams:
        """Greedy first; a retry must differ from the reply it replaces, so it samples with a fixed seed."""
        if attempt == 0:
            return GenParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        return GenParams(
            temperature=self.retry_temperature,
            max_new_tokens=self.max_new_tokens,
            seed=seeds.derive(self.seed, "value-judge", attempt),
        )

    def vectors(self, texts: Sequence[str]) -> list[ValueResult]:
        unique = list(dict.fromkeys(texts))
        makers = [
            lambda attempt, t=t: (
                ChatRequest(
                    [
                        {"role": "system", "content": JUDGE_SYSTEM},
                        {"role": "user", "content": judge_prompt(t)},
                    ]
                ),
                self.params(attempt),
            )
            for t in unique
        ]
        results = run(ask_parsed(makers, parse_value_json, self.max_retries), self.backend)
        found = {t: ValueResult(r.value, r.raw, r.attempts) for t, r in zip(unique, results)}
        unreadable = sum(r.value is None for r in results)
        if unreadable:
            self.failures += unreadable
            log.warning(
                "value judge: %d of %d texts unreadable after %d attempts",
                unreadable,
                len(unique),
                self.max_retries + 1,
            )
        return [found[t] for t in texts]


# --- embedding detector ----------------------------------------------------------------------------


class EmbeddingValueDetector:
    """Offline proxy: ``cos(text, supports) − cos(text, opposes)`` per value, thresholded at ±``margin``.

    Coarse by construction: it tells which values a text is *about* better than which side it takes,
    and it has not been validated against human annotation. At the default margin it rarely says 0
    (even a neutral sentence gets most values ±1), so "not expressed" is under-reported. Use it for
    smoke runs and plumbing; use ``LLMValueJudge`` for results.
    """

    def __init__(self, embedder: Any, margin: float = 0.02):
        if margin < 0:
            raise ValueError(f"margin must be 0 or more, got {margin}")
        self.embedder, self.margin = embedder, margin
        self.failures = 0  # never fails; kept so both detectors read the same
        poles = embedder.encode([text for name in SCHWARTZ_VALUES for text in VALUE_POLES[name]])
        self._supports, self._opposes = poles[0::2], poles[1::2]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 10)`` support-minus-oppose cosine margins; embeddings are unit-norm."""
        emb = self.embedder.encode(list(texts))
        return emb @ self._supports.T - emb @ self._opposes.T

    def vectors(self, texts: Sequence[str]) -> list[ValueResult]:
        if not texts:
            return []
        scores = self.scores(texts)
        vecs = np.where(scores > self.margin, 1.0, np.where(scores < -self.margin, -1.0, 0.0))
        return [
            ValueResult(vec, json.dumps({n: round(float(s), 4) for n, s in zip(SCHWARTZ_VALUES, row)}), 1)
            for vec, row in zip(vecs, scores)
        ]


@DETECTORS.register("llm")
def _llm_judge(backend: Backend | None, embedder: Any, seed: int, **kw: Any) -> LLMValueJudge:
    if backend is None:
        raise ValueError("value detector 'llm' needs a backend; pass backend=session.backend")
    return LLMValueJudge(backend, seed=seed, **kw)


@DETECTORS.register("embedding")
def _embedding_detector(
    backend: Backend | None, embedder: Any, seed: int, **kw: Any
) -> EmbeddingValueDetector:
    if embedder is None:
        raise ValueError("value detector 'embedding' needs an embedder; pass embedder=session.embedder")
    return EmbeddingValueDetector(embedder, **kw)


def make_value_detector(
    kind: str, backend: Backend | None = None, embedder: Any = None, seed: int = 0, **kw: Any
) -> ValueDetector:
    """The detector registered as ``kind`` (``negotiation.value_judge``). Factories are called with
    ``backend``, ``embedder`` and ``seed`` (the LLM judge's retry seed) and use what they need;
    ``kw`` go to the detector."""
    return DETECTORS.get(kind)(backend, embedder, seed, **kw)
