"""Semantic consistency: the probability that a generated text is entailed by a gold one (NLI).

Scorers are registered by name (``palette.nli``): ``cross-encoder`` is the paper's NLI model, a
sentence-transformers cross-encoder (the ``nli`` role's model when ``models.nli`` names one, else
``CROSS_ENCODER`` from the hub); ``judge`` asks the ``nli`` role's model (by default the run's own)
the entailment question as options A/B/C with one ``choice_probs`` pass per pair (offline). Every
number says which scorer made it (``Scorer.identity``).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np

from kit.llm.base import Backend, ChoiceRequest
from kit.registry import Registry

NLI_SCORERS: Registry = Registry("NLI scorer")
CROSS_ENCODER = "sileod/deberta-v3-large-tasksource-nli"
NLI_LABELS = ("A", "B", "C")  # entailment, neutral, contradiction


def nli_request(premise: str, hypothesis: str) -> ChoiceRequest:
    """Does ``hypothesis`` follow from ``premise``? A = entailment, B = neutral, C = contradiction."""
    return ChoiceRequest([{"role": "user", "content": (
        f"Premise:\n{premise.strip()}\n\nHypothesis:\n{hypothesis.strip()}\n\nDoes the hypothesis follow from "
        f"the premise?\nA. Entailment\nB. Neutral\nC. Contradiction\nAnswer with the letter of one option.")}],
        NLI_LABELS, prefix="Answer:")


class Scorer(Protocol):
    identity: str

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """P(entailment) of each (premise, hypothesis)."""


class JudgeScorer:
    """The run's model as the NLI judge: P(A = entailment) renormalised over A/B/C."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.identity = f"judge:{backend.identity}"

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        results = self.backend.choice_probs([nli_request(p, h) for p, h in pairs]) if pairs else []
        return [r.probs["A"] for r in results]


class CrossEncoderScorer:
    """A sentence-transformers cross-encoder NLI model; its entailment class is read from its config."""

    def __init__(self, name: str = CROSS_ENCODER, device: str | None = None):
        from sentence_transformers import CrossEncoder

        from kit.llm.models import TINY_MODELS, resolve_model

        path = resolve_model(name).path if name in TINY_MODELS else name
        self.model = CrossEncoder(path, device=device)
        labels = {v.lower(): int(k) for k, v in self.model.model.config.id2label.items()}
        if "entailment" not in labels:
            raise ValueError(f"{name} has no 'entailment' label ({sorted(labels)}); pick an NLI cross-encoder")
        self.index, self.identity = labels["entailment"], f"cross-encoder:{name}"

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        logits = np.asarray(self.model.predict(list(pairs), apply_softmax=False))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (probs[:, self.index] / probs.sum(axis=1)).tolist()


@NLI_SCORERS.register("judge")
def _judge(backend: Callable[[], Backend], **_: Any) -> JudgeScorer:
    return JudgeScorer(backend())


@NLI_SCORERS.register("cross-encoder")
def _cross_encoder(backend: Callable[[], Backend], model: str | None = None, device: str | None = None,
                   **_: Any) -> CrossEncoderScorer:
    return CrossEncoderScorer(model or CROSS_ENCODER, device)


def make_scorer(name: str, backend: Callable[[], Backend], model: str | None = None, device: str | None = None) -> Scorer:
    """The scorer registered as ``name`` (``palette.nli``). ``backend`` gives the ``nli`` role's LLM (called only by
    the scorers that ask one); ``model`` names the cross-encoder (None: ``CROSS_ENCODER``)."""
    return NLI_SCORERS.get(name)(backend, model=model, device=device)
