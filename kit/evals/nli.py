"""Semantic consistency: the probability that a generated text is entailed by a gold one (NLI).

Scorers are registered by name (``palette.nli``): ``cross-encoder`` is the paper's NLI model, a
sentence-transformers cross-encoder (the ``nli`` role's model when ``models.nli`` names one, else
``CROSS_ENCODER`` from the hub); ``judge`` asks the ``nli`` role's model (by default the run's own)
the entailment question as options A/B/C with one ``choice_probs`` pass per pair (offline); a judgement
whose probability on A/B/C is 0 (or below ``min_mass``) is *missing* (NaN), never the 1/3 a renormalised
uniform answer would be. A degenerate answer (``kit.metrics.text``) is not asked about: it entails
nothing (0). Every number says which scorer made it (``Scorer.identity``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from kit.llm.base import Backend, ChoiceRequest, ChoiceResult
from kit.metrics.text import degenerate
from kit.registry import Registry

NLI_SCORERS: Registry = Registry("NLI scorer")
CROSS_ENCODER = "sileod/deberta-v3-large-tasksource-nli"
NLI_LABELS = ("A", "B", "C")  # entailment, neutral, contradiction


def nli_request(premise: str, hypothesis: str) -> ChoiceRequest:
    """Does ``hypothesis`` follow from ``premise``? A = entailment, B = neutral, C = contradiction."""
    return ChoiceRequest(
        [
            {
                "role": "user",
                "content": (
                    f"Premise:\n{premise.strip()}\n\nHypothesis:\n{hypothesis.strip()}\n\nDoes the hypothesis follow from "
                    f"the premise?\nA. Entailment\nB. Neutral\nC. Contradiction\nAnswer with the letter of one option."
                ),
            }
        ],
        NLI_LABELS,
        prefix="Answer:",
    )


class Scorer(Protocol):
    identity: str

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """P(entailment) of each (premise, hypothesis)."""


def judged_entailment(result: ChoiceResult, min_mass: float = 0.0) -> float:
    """P(A = entailment) renormalised over A/B/C; NaN (missing) when no mass, or less than ``min_mass``, fell
    on the letters."""
    return (
        float("nan")
        if not result.label_mass > 0 or result.label_mass < min_mass
        else float(result.probs["A"])
    )


class JudgeScorer:
    """The run's model as the NLI judge: P(A = entailment) renormalised over A/B/C (:func:`judged_entailment`)."""

    def __init__(self, backend: Backend, min_mass: float = 0.0):
        self.backend, self.min_mass = backend, min_mass
        self.identity = f"judge:{backend.identity}"

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        asked = [i for i, (_, h) in enumerate(pairs) if not degenerate(h)]
        results = self.backend.choice_probs([nli_request(*pairs[i]) for i in asked]) if asked else []
        out = [0.0] * len(pairs)  # a degenerate hypothesis entails nothing
        for i, r in zip(asked, results):
            out[i] = judged_entailment(r, self.min_mass)
        return out


class CrossEncoderScorer:
    """A sentence-transformers cross-encoder NLI model; its entailment class is read from its config."""

    def __init__(self, name: str = CROSS_ENCODER, device: str | None = None):
        from sentence_transformers import CrossEncoder

        from kit.llm.models import TINY_MODELS, resolve_model

        path = resolve_model(name).path if name in TINY_MODELS else name
        self.model = CrossEncoder(path, device=device)
        labels = {v.lower(): int(k) for k, v in self.model.model.config.id2label.items()}
        if "entailment" not in labels:
            raise ValueError(
                f"{name} has no 'entailment' label ({sorted(labels)}); pick an NLI cross-encoder"
            )
        self.index, self.identity = labels["entailment"], f"cross-encoder:{name}"

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        asked = [i for i, (_, h) in enumerate(pairs) if not degenerate(h)]
        out = [0.0] * len(pairs)  # a degenerate hypothesis entails nothing
        if not asked:
            return out
        logits = np.asarray(self.model.predict([pairs[i] for i in asked], apply_softmax=False))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        for i, p in zip(asked, (probs[:, self.index] / probs.sum(axis=1)).tolist()):
            out[i] = p
        return out


@NLI_SCORERS.register("judge")
def _judge(backend: Callable[[], Backend], **_: Any) -> JudgeScorer:
    return JudgeScorer(backend())


@NLI_SCORERS.register("cross-encoder")
def _cross_encoder(
    backend: Callable[[], Backend], model: str | None = None, device: str | None = None, **_: Any
) -> CrossEncoderScorer:
    return CrossEncoderScorer(model or CROSS_ENCODER, device)


def make_scorer(
    name: str, backend: Callable[[], Backend], model: str | None = None, device: str | None = None
) -> Scorer:
    """The scorer registered as ``name`` (``palette.nli``). ``backend`` gives the ``nli`` role's LLM (called only by
    the scorers that ask one); ``model`` names the cross-encoder (None: ``CROSS_ENCODER``)."""
    return NLI_SCORERS.get(name)(backend, model=model, device=device)
