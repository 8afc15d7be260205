"""Schwartz value vectors: map a text to the 10 basic values, each −1 (opposes), 0 (not expressed) or 1 (supports).

Two detectors share one interface, ``.vectors(texts) -> list[ValueResult]`` plus a ``failures`` count:

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
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from kit.llm.base import Backend, ChatRequest, GenParams
from kit.metrics.consensus import SCHWARTZ_VALUES

log = logging.getLogger(__name__)

# Defining goals after Schwartz (1992; 2012, "An Overview of the Schwartz Theory of Basic Values").
VALUE_DEFINITIONS = {
    "Self-Direction": "independent thought and action — choosing, creating, exploring",
    "Stimulation": "excitement, novelty and challenge in life",
    "Hedonism": "pleasure or sensuous gratification for oneself",
    "Achievement": "personal success through demonstrating competence according to social standards",
    "Power": "social status and prestige, control or dominance over people and resources",
    "Security": "safety, harmony and stability of society, of relationships and of self",
    "Conformity": ("restraint of actions, inclinations and impulses likely to upset or harm others "
                   "and violate social expectations or norms"),
    "Tradition": ("respect, commitment and acceptance of the customs and ideas that one's culture "
                  "or religion provides"),
    "Benevolence": ("preserving and enhancing the welfare of those with whom one is in frequent "
                    "personal contact (family, friends, the in-group)"),
    "Universalism": ("understanding, appreciation, tolerance and protection for the welfare of all "
                     "people and for nature"),
}

# (supports, opposes) for the embedding detector, written from the definitions and Schwartz's value
# items. Both poles of a value are stated in the same voice, as a stance someone would argue for:
# sentence embeddings barely register negation, and a bleak-sounding pole ("exploit your friends")
# would lose to any pleasant text whatever its stance.
VALUE_POLES = {
    "Self-Direction": (
        "Individuals have the right to decide for themselves: freedom to choose one's own beliefs, "
        "goals and way of life.",
        "Individuals must submit to the decisions of authorities and family about their beliefs, "
        "goals and way of life.",
    ),
    "Stimulation": (
        "People should seek excitement, adventure, novelty and daring challenges in life.",
        "People should prefer a calm, predictable routine and avoid adventure, risk and novelty.",
    ),
    "Hedonism": (
        "People should enjoy life and pursue pleasure, fun, comfort and gratification for themselves.",
        "People should live with self-denial and discipline, giving up pleasure, fun and comfort.",
    ),
    "Achievement": (
        "People should be ambitious and strive for personal success, competence and recognition.",
        "People should be modest and content, without striving to succeed or outperform others.",
    ),
    "Power": (
        "People should seek status, wealth and authority, with control over others and resources.",
        "People should share power equally, rejecting hierarchy, status and control over others.",
    ),
    "Security": (
        "Society should put safety, order and stability first, protecting people from danger and "
        "disorder.",
        "Society should accept risk, disorder and instability as the price of freedom and change.",
    ),
    "Conformity": (
        "People should obey rules, be polite and self-disciplined, honour their elders and avoid "
        "upsetting others.",
        "People should defy rules and social expectations and act as they wish, even if it upsets "
        "others.",
    ),
    "Tradition": (
        "People should respect and preserve the customs, rituals and religion handed down by their "
        "culture.",
        "Old customs and religious traditions are outdated and should be abandoned for modern, new "
        "ways of living.",
    ),
    "Benevolence": (
        "People should care for and help their family, friends and community, being loyal and honest "
        "with them.",
        "People should put their own interests before the needs of their family, friends and "
        "community.",
    ),
    "Universalism": (
        "People should protect the welfare of all humanity and nature: equality, justice, tolerance "
        "and the environment.",
        "People should care for their own group first, and need not worry about outsiders or nature.",
    ),
}


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
    fixed = _TRAILING_COMMA.sub(r"\1", _PLUS_NUMBER.sub(r"\1", text))
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", fixed):
        try:
            obj, _ = decoder.raw_decode(fixed, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and (vec := _vector_from(obj)) is not None:
            return vec
    return None


# --- LLM judge -------------------------------------------------------------------------------------

JUDGE_SYSTEM = ("You annotate which human values a text expresses, using Schwartz's theory of basic "
                "human values. You reply with a single JSON object and nothing else.")


def judge_prompt(text: str) -> str:
    """The judge's user turn: the ten definitions, the scale, the output format and the text."""
    definitions = "\n".join(f"- {name}: {VALUE_DEFINITIONS[name]}" for name in SCHWARTZ_VALUES)
    keys = ", ".join(f'"{name}": v' for name in SCHWARTZ_VALUES)
    return (f"Schwartz's ten basic values:\n{definitions}\n\n"
            "For each value, decide whether the text below supports it (1), opposes it (-1) or does "
            "not express it (0).\n"
            f"Reply with one JSON object with exactly these ten keys, each v being -1, 0 or 1:\n{{{keys}}}\n\n"
            f'Text:\n"""\n{text.strip()}\n"""')


class LLMValueJudge:
    """A model reads each text's values as JSON; unreadable replies are asked again, all in one batch.

    ``failures`` counts texts still unreadable after ``max_retries`` retries, over the judge's life.
    """

    def __init__(self, backend: Backend, max_retries: int = 2, seed: int = 0, max_new_tokens: int = 200,
                 retry_temperature: float = 0.7):
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.backend, self.max_retries, self.seed = backend, max_retries, seed
        self.max_new_tokens, self.retry_temperature = max_new_tokens, retry_temperature
        self.failures = 0

    def params(self, attempt: int) -> GenParams:
        """Greedy first; a retry must differ from the reply it replaces, so it samples with a fixed seed."""
        if attempt == 0:
            return GenParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        return GenParams(temperature=self.retry_temperature, max_new_tokens=self.max_new_tokens,
                         seed=self.seed + attempt)

    def vectors(self, texts: Sequence[str]) -> list[ValueResult]:
        unique = list(dict.fromkeys(texts))
        found: dict[str, ValueResult] = {}
        todo = unique
        for attempt in range(self.max_retries + 1):
            if not todo:
                break
            requests = [ChatRequest([{"role": "system", "content": JUDGE_SYSTEM},
                                     {"role": "user", "content": judge_prompt(t)}]) for t in todo]
            replies = self.backend.generate(requests, self.params(attempt))
            for text, reply in zip(todo, replies):
                found[text] = ValueResult(parse_value_json(reply), reply, attempt + 1)
            todo = [t for t in todo if not found[t].valid]
        if todo:
            self.failures += len(todo)
            log.warning("value judge: %d of %d texts unreadable after %d attempts", len(todo), len(unique),
                        self.max_retries + 1)
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
        return [ValueResult(vec, json.dumps({n: round(float(s), 4) for n, s in zip(SCHWARTZ_VALUES, row)}), 1)
                for vec, row in zip(vecs, scores)]


def make_value_detector(kind: Literal["llm", "embedding"], backend: Backend | None = None, embedder: Any = None,
                        seed: int = 0, **kw: Any) -> LLMValueJudge | EmbeddingValueDetector:
    """The detector ``NegotiationParams.value_judge`` names; ``seed`` seeds the LLM judge's retries,
    other ``kw`` go to the detector's constructor."""
    if kind == "llm":
        if backend is None:
            raise ValueError("value detector 'llm' needs a backend; pass backend=session.backend")
        return LLMValueJudge(backend, seed=seed, **kw)
    if kind == "embedding":
        if embedder is None:
            raise ValueError("value detector 'embedding' needs an embedder; pass embedder=session.embedder")
        return EmbeddingValueDetector(embedder, **kw)
    raise ValueError(f"unknown value detector {kind!r}; use 'llm' or 'embedding'")
