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
  (t = −1) wants X *not* expressed (d = 0) — a rewrite that turns against X is a stance flip, not
  less weight, and earns nothing for it. Recall = share of targeted values with the wanted reading;
  precision = among targeted values the rewrite expresses (d ≠ 0), the share with the wanted reading
  (only a "more" value can be); when it expresses none of them, precision is 1 if no value was to be
  expressed (every target a "less") and 0 otherwise. F1 is 0 when neither is positive. In [0, 1].
- ``meaning_kept`` = cosine of the sentence embeddings of rewrite and original (unit vectors); with
  an NLI scorer, the mean of that and P(original entails rewrite). In [−1, 1].
- ``drift`` = − share of untargeted values whose reading moved (d ≠ o). In [−1, 0].
- ``format`` = 1 when the rewrite has between ``min_words`` and ``max_words`` words, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from kit.train.rewards import bind, text_of
from kit.values.schwartz import SCHWARTZ_VALUES


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
        return np.array([r.vector if r.vector is not None else np.zeros(10) for r in results]).reshape(len(texts), 10)


def wanted_reading(target: Sequence[float]) -> np.ndarray:
    """The reading each targeted value should get: +1 for "more", 0 (not expressed) for "less"."""
    return np.where(np.asarray(target, dtype=float) > 0, 1.0, 0.0)


def value_scores(predicted: Sequence[float], target: Sequence[float]) -> tuple[float, float, float]:
    """(precision, recall, F1) of a reading against a target, on the targeted values (module docstring)."""
    d, t = np.asarray(predicted, dtype=float), np.asarray(target, dtype=float)
    mask = t != 0
    if not mask.any():
        raise ValueError("a target names at least one value")
    right = (d == wanted_reading(t)) & mask
    expressed = (d != 0) & mask
    if expressed.any():
        precision = int(np.sum(right & expressed)) / int(expressed.sum())
    else:  # nothing targeted is expressed: right exactly when nothing was to be expressed
        precision = 0.0 if (t > 0).any() else 1.0
    recall = int(right.sum()) / int(mask.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def drift_share(predicted: Sequence[float], original: Sequence[float], target: Sequence[float]) -> float:
    """Share of the untargeted values whose reading differs between rewrite and original (0 if none untargeted)."""
    d, o, t = (np.asarray(x, dtype=float) for x in (predicted, original, target))
    free = t == 0
    return float(np.sum((d != o) & free) / free.sum()) if free.any() else 0.0


def value_match(completions: Sequence[Any], target_vector: Sequence[Sequence[float]], *, context: RewardContext,
                **_: Any) -> list[float]:
    readings = context.detect([text_of(c) for c in completions])
    return [value_scores(d, t)[2] for d, t in zip(readings, target_vector)]


def meaning_kept(completions: Sequence[Any], source_text: Sequence[str], *, context: RewardContext,
                 **_: Any) -> list[float]:
    texts = [text_of(c) for c in completions]
    emb = context.embedder.encode(texts + list(source_text))  # one embedder call for the batch
    cosine = np.sum(emb[: len(texts)] * emb[len(texts):], axis=1)
    if context.nli is None:
        return cosine.astype(float).tolist()
    entailed = context.nli.entailment(list(zip(source_text, texts)))
    return ((cosine + np.asarray(entailed)) / 2).astype(float).tolist()


def drift(completions: Sequence[Any], source_text: Sequence[str], target_vector: Sequence[Sequence[float]], *,
          context: RewardContext, **_: Any) -> list[float]:
    texts = [text_of(c) for c in completions]
    readings = context.detect(texts + list(source_text))
    return [-drift_share(d, o, t) for d, o, t in zip(readings[: len(texts)], readings[len(texts):], target_vector)]


def format_ok(completions: Sequence[Any], *, context: RewardContext, **_: Any) -> list[float]:
    return [float(context.min_words <= len(text_of(c).split()) <= context.max_words) for c in completions]


def score_all(weights: dict[str, float], context: RewardContext, completions: Sequence[Any],
              source_text: Sequence[str], target_vector: Sequence[Sequence[float]]) -> tuple[np.ndarray, dict]:
    """The weighted sum GRPO optimises, and each reward's scores, for a batch of completions."""
    columns = {"completions": list(completions), "source_text": list(source_text),
               "target_vector": [list(map(float, t)) for t in target_vector]}
    parts = {name: np.asarray(fn(**columns)) for name, fn in zip(weights, bind(list(weights), context))}
    total = sum(weights[name] * parts[name] for name in weights)
    return np.asarray(total, dtype=float), parts


def keyword_text(text: str, target: Sequence[float]) -> str:
    """``text`` with the names of the values its target asks more of appended: what a rewriter that games a
    keyword-reading detector would write (the keyword-injection diagnostic)."""
    more = [SCHWARTZ_VALUES[i] for i in np.flatnonzero(np.asarray(target, dtype=float) > 0)]
    return f"{text} {' '.join(more)}".strip()


def gaming_rewards(weights: dict[str, float], context: RewardContext, source_text: Sequence[str],
                   target_vector: Sequence[Sequence[float]]) -> dict[str, float]:
    """The mean weighted reward of two rewrites that do no rewriting — the source copied, and the source with
    the target values' names appended — to print beside what GRPO reached: a reward they score as high as the
    policy can be won without rewriting."""
    copies = [[{"role": "assistant", "content": t}] for t in source_text]
    keywords = [[{"role": "assistant", "content": keyword_text(t, v)}] for t, v in zip(source_text, target_vector)]
    return {name: float(score_all(weights, context, completions, source_text, target_vector)[0].mean())
            for name, completions in (("copy", copies), ("keywords", keywords))}
