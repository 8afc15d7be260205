"""A backend the session can put away and bring back: loaded on first use, released for a stage that needs
the memory, restored on the next call.

The session (``kit.session``) hands out ``Resident`` backends behind the cache, so a cached answer
never wakes an engine. ``release()`` frees what the backend holds: a vLLM engine sleeps (weights to
host memory, KV cache dropped; ``VLLMBackend.release``), a transformers backend is dropped and loaded
again when next asked (its weights are read back from disk). Identity, backend name and numerics are
known from params before anything loads (``kit.run.artifacts.model_parts``), so cache keys and
fingerprints never need the weights.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence

from kit.llm.base import Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, Sampled, ScoreRequest

log = logging.getLogger(__name__)


def free_accelerator_memory() -> None:
    """Return freed tensors' memory to the device (after a model or trainer is dropped)."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Resident(Backend):
    """``load()`` builds the backend; ``on_use(self)`` runs before every call (the session releases what the
    current stage does not allow there)."""

    def __init__(
        self,
        key: str,
        load: Callable[[], Backend],
        parts: dict[str, str],
        tokenizer: Callable[[], object] | None = None,
        on_use: Callable[[Resident], None] | None = None,
        sampling_logprobs: bool = False,
    ):
        self.key, self._load, self._on_use = key, load, on_use
        self.sampling_logprobs = sampling_logprobs  # the backend class's, known before it loads
        self.name, self.identity, self.numerics = parts["backend"], parts["identity"], parts["numerics"]
        self._tokenizer_loader = tokenizer
        self._tokenizer = None
        self._backend: Backend | None = None
        self.loads = 0  # how often the weights were loaded or woken (a stage switch costs one)

    @property
    def loaded(self) -> bool:
        """Whether the backend holds its weights where it computes (loaded and not asleep)."""
        return self._backend is not None and not getattr(self._backend, "asleep", False)

    def live(self) -> Backend:
        if self._on_use is not None:
            self._on_use(self)
        if self._backend is None:
            self._backend = self._load()
            self.loads += 1
        elif getattr(self._backend, "asleep", False):
            self._backend.restore()
            self.loads += 1
        return self._backend

    def release(self) -> bool:
        """Free the backend's memory; True when something was freed."""
        if self._backend is None:
            return False
        if hasattr(self._backend, "release"):
            freed = self._backend.release()
            if freed:
                log.info("released %s (asleep)", self.key)
            return freed
        self._backend = None
        free_accelerator_memory()
        log.info("released %s", self.key)
        return True

    @property
    def tokenizer(self):
        if self._backend is not None:
            return getattr(self._backend, "tokenizer", None)
        if self._tokenizer is None and self._tokenizer_loader is not None:
            self._tokenizer = self._tokenizer_loader()
        return self._tokenizer

    def __getattr__(self, attr):  # stats, model, llm … of the live backend
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.live(), attr)

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        return self.live().generate(requests, params) if requests else []

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        return self.live().generate_sampled(requests, params) if requests else []

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return self.live().score(requests) if requests else []

    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        return self.live().choice_probs(requests) if requests else []

    def reset_prefix_cache(self) -> None:
        if self._backend is not None:
            self._backend.reset_prefix_cache()

    def adapter_identity(self, adapter: str | None) -> str | None:
        return (
            super().adapter_identity(adapter)
            if self._backend is None
            else self._backend.adapter_identity(adapter)
        )
