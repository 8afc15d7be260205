"""VISA's reward functions, plain functions in trl's shape registered in ``kit.train.rewards``.

``GRPOTrainer`` calls each reward with ``prompts``, ``completions`` and the dataset's other columns
as keyword arguments (here ``source_text`` and ``target_vector``), and sums them with
``GRPOConfig.reward_weights`` (params ``visa.rewards``). What a reward needs besides — the value
detector, the embedder, an NLI scorer, the length bounds — comes in a :class:`RewardContext`
(``kit.train.rewards.bind`` hands it over).

The scores, per completion (t the target, d the detector's vector of the rewrite, o that of the
original text; "targeted" means t ≠ 0):

- ``value_match`` = F1 of precision and recall on the targeted values, each read as the instruction
  says it: "give more weight to X" (t = +1) wants X expressed (d = +1); "give less weight to X"
  (t = −1) wants X *not* expressed (d = 0) *in a text that still says what the original said* — so a
  "less" counts only when the meaning is kept (sentence-embedding cosine with the original at least
  :data:`KEPT_COSINE`); a rewrite that turns against X is a stance flip, not less weight, and earns
  nothing for it. Recall = share of targeted values with the wanted reading; precision = among
  targeted values the rewrite expresses (d ≠ 0), the share with the wanted reading (only a "more"
  value can be); when it expresses none of them, precision is 1 if no value was to be expressed
  (every target a "less") and the meaning is kept, and 0 otherwise. F1 is 0 when neither is positive.
  Silence earns nothing: an empty, degenerate (``kit.metrics.text``) or unreadable rewrite scores 0.
  In [0, 1].
- ``meaning_kept`` = cosine of the sentence embeddings of rewrite and original (unit vectors); with
  an NLI scorer, the mean of that and P(original entails rewrite) (the cosine alone where the NLI judge
  put no mass on its letters). In [−1, 1].
- ``drift`` = − share of untargeted values whose reading moved (d ≠ o). In [−1, 0].
- ``format`` = 1 when the rewrite has between ``min_words`` and ``max_words`` words, else 0.

A degenerate rewrite (``kit.metrics.text``: empty, markup, repetition, headings only, "I have no
opinion.") or its instruction copied (keyword injection) scores every reward's worst value and is never
shown to the detector (:func:`unreadable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.metrics.text import copied, degenerate
from kit.train.rewards import bind, text_of
from kit.values.schwartz import SCHWARTZ_VALUES

# Sentence-embedding cosine (all-MiniLM-L6-v2) of a rewrite with its original at which it still says the same
# thing, so that leaving a value out counts as "less weight" rather than as saying nothing; the faithful
# rewrites of tests/test_visa.py sit above it, unrelated texts on another topic below.
KEPT_COSINE = 0.5


@dataclass
class RewardContext:
    detector: Any  # .vectors(texts) -> ValueResult with .vector
    embedder: Any  # .encode(texts) -> unit-norm rows
    nli: Any = None  # .entailment(pairs) -> P(entailment), or None
    min_words: int = 5
    max_words: int = 120

    def detect(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 10)`` readings; an unreadable text reads as all 0 (expresses nothing)."""
        results = self.detector.vectors(list(texts))
        return np.array([r.vector if r.vector is not None else np.zeros(10) for r in results]).reshape(
            len(texts), 10
        )

    def readings(
        self, texts: Sequence[str], targets: Sequence[Sequence[float]] | None = None
    ) -> list[np.ndarray | None]:
        """Each text's reading, ``None`` for a text :func:`unreadable` for its target (never shown to the
        detector) or one the detector cannot read."""
        texts = list(texts)
        targets = list(targets) if targets is not None else [None] * len(texts)
        asked = [i for i, (t, g) in enumerate(zip(texts, targets)) if not unreadable(t, g)]
        results = self.detector.vectors([texts[i] for i in asked]) if asked else []
        out: list[np.ndarray | None] = [None] * len(texts)
        for i, r in zip(asked, results):
            out[i] = None if r.vector is None else np.asarray(r.vector, dtype=float)
        return out

    def cosine(self, texts: Sequence[str], sources: Sequence[str]) -> np.ndarray:
        """Sentence-embedding cosine of each text with its source (one embedder call)."""
        emb = self.embedder.encode(list(texts) + list(sources))
        return np.sum(emb[: len(texts)] * emb[len(texts) :], axis=1)


def unreadable(text: str, target: Sequence[float] | None = None) -> bool:
    """Whether a rewrite says nothing the rewards may read: degenerate (``kit.metrics.text``), or its instruction
    for ``target`` copied (keyword injection)."""
    from kit.visa.translator import instruction

    return bool(degenerate(text)) or (
        target is not None
        and np.any(np.asarray(target) != 0)
        and copied(text, instruction(np.asarray(target, dtype=float)))
    )


def wanted_reading(target: Sequence[float]) -> np.ndarray:
    """The reading each targeted value should get: +1 for "more", 0 (not expressed) for "less"."""
    return np.where(np.asarray(target, dtype=float) > 0, 1.0, 0.0)


def value_scores(
    predicted: Sequence[float] | None, target: Sequence[float], kept: bool = True
) -> tuple[float, float, float]:
    """(precision, recall, F1) of a reading against a target, on the targeted values (module docstring):
    ``predicted`` None (an empty, degenerate or unreadable rewrite) scores (0, 0, 0); ``kept`` says whether
    the rewrite kept the original's meaning, without which a "less" value's absence earns nothing."""
    t = np.asarray(target, dtype=float)
    mask = t != 0
    if not mask.any():
        raise ValueError("a target names at least one value")
    if predicted is None:
        return 0.0, 0.0, 0.0
    d = np.asarray(predicted, dtype=float)
    right = (d == wanted_reading(t)) & mask & ((t > 0) | kept)
    expressed = (d != 0) & mask
    if expressed.any():
        precision = int(np.sum(right & expressed)) / int(expressed.sum())
    else:  # nothing targeted is expressed: right exactly when nothing was to be expressed and the meaning is kept
        precision = 1.0 if not (t > 0).any() and kept else 0.0
    recall = int(right.sum()) / int(mask.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def drift_share(predicted: Sequence[float], original: Sequence[float], target: Sequence[float]) -> float:
    """Share of the untargeted values whose reading differs between rewrite and original (0 if none untargeted)."""
    d, o, t = (np.asarray(x, dtype=float) for x in (predicted, original, target))
    free = t == 0
    return float(np.sum((d != o) & free) / free.sum()) if free.any() else 0.0


def value_match(
    completions: Sequence[Any],
    target_vector: Sequence[Sequence[float]],
    source_text: Sequence[str] | None = None,
    *,
    context: RewardContext,
    **_: Any,
) -> list[float]:
    texts = [text_of(c) for c in completions]
    readings = context.readings(texts, target_vector)
    kept = (
        context.cosine(texts, source_text) >= KEPT_COSINE
        if source_text is not None
        else np.ones(len(texts), dtype=bool)
    )
    return [value_scores(d, t, bool(k))[2] for d, t, k in zip(readings, target_vector, kept)]


def meaning_kept(
    completions: Sequence[Any],
    source_text: Sequence[str],
    target_vector: Sequence[Sequence[float]] | None = None,
    *,
    context: RewardContext,
    **_: Any,
) -> list[float]:
    texts = [text_of(c) for c in completions]
    cosine = context.cosine(texts, source_text)  # one embedder call for the batch
    if context.nli is not None:
        entailed = np.asarray(context.nli.entailment(list(zip(source_text, texts))), dtype=float)
        # an NLI judge with no mass on its letters is missing: the cosine alone speaks then
        cosine = np.where(np.isfinite(entailed), (cosine + np.nan_to_num(entailed)) / 2, cosine)
    # a degenerate rewrite, or the instruction copied, keeps nothing: the worst value
    targets = list(target_vector) if target_vector is not None else [None] * len(texts)
    return [-1.0 if unreadable(t, g) else float(c) for t, g, c in zip(texts, targets, cosine)]


def drift(
    completions: Sequence[Any],
    source_text: Sequence[str],
    target_vector: Sequence[Sequence[float]],
    *,
    context: RewardContext,
    **_: Any,
) -> list[float]:
    texts = [text_of(c) for c in completions]
    readings = context.detect(list(source_text))
    mine = context.readings(texts, target_vector)
    # a degenerate or unreadable rewrite moved everything it could: the worst value
    return [-1.0 if d is None else -drift_share(d, o, t) for d, o, t in zip(mine, readings, target_vector)]


def format_ok(
    completions: Sequence[Any],
    target_vector: Sequence[Sequence[float]] | None = None,
    *,
    context: RewardContext,
    **_: Any,
) -> list[float]:
    targets = list(target_vector) if target_vector is not None else [None] * len(completions)
    return [
        float(
            context.min_words <= len(text_of(c).split()) <= context.max_words
            and not unreadable(text_of(c), g)
        )
        for c, g in zip(completions, targets)
    ]


def score_all(
    weights: dict[str, float],
    context: RewardContext,
    completions: Sequence[Any],
    source_text: Sequence[str],
    target_vector: Sequence[Sequence[float]],
) -> tuple[np.ndarray, dict]:
    """The weighted sum GRPO optimises, and each reward's scores, for a batch of completions."""
    columns = {
        "completions": list(completions),
        "source_text": list(source_text),
        "target_vector": [list(map(float, t)) for t in target_vector],
    }
    parts = {name: np.asarray(fn(**columns)) for name, fn in zip(weights, bind(list(weights), context))}
    total = sum(weights[name] * parts[name] for name in weights)
    return np.asarray(total, dtype=float), parts


def keyword_text(text: str, target: Sequence[float]) -> str:
    """``text`` with the names of the values its target asks more of appended: what a rewriter that games a
    keyword-reading detector would write (the keyword-injection diagnostic)."""
    more = [SCHWARTZ_VALUES[i] for i in np.flatnonzero(np.asarray(target, dtype=float) > 0)]
    return f"{text} {' '.join(more)}".strip()


def gaming_rewards(
    weights: dict[str, float],
    context: RewardContext,
    source_text: Sequence[str],
    target_vector: Sequence[Sequence[float]],
) -> dict[str, float]:
    """The mean weighted reward of two rewrites that do no rewriting — the source copied, and the source with
    the target values' names appended — to print beside what GRPO reached: a reward they score as high as the
    policy can be won without rewriting."""
    copies = [[{"role": "assistant", "content": t}] for t in source_text]
    keywords = [
        [{"role": "assistant", "content": keyword_text(t, v)}] for t, v in zip(source_text, target_vector)
    ]
    return {
        name: float(score_all(weights, context, completions, source_text, target_vector)[0].mean())
        for name, completions in (("copy", copies), ("keywords", keywords))
    }
