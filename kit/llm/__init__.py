"""LLM backends behind one protocol (generate, score, choice_probs), with a cache in front.

``load_backend(params.model, cache_path)`` is the one way the kit gets a model. Backends are
registered by name in ``BACKENDS`` (lazily: vLLM is imported only when ``model.backend: vllm`` is
chosen; ``openai`` is any OpenAI-compatible server by base URL); a new server drops in with ``BACKENDS.register("name", "package.module:Class")``, where
the class has ``from_params(model, seed)`` and ``numerics_for(model)``.
"""

from __future__ import annotations

from pathlib import Path

from kit.llm.base import Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, ScoreRequest
from kit.registry import Registry

__all__ = [
    "BACKENDS",
    "Backend",
    "ChatRequest",
    "ChoiceRequest",
    "ChoiceResult",
    "GenParams",
    "ScoreRequest",
    "load_backend",
]

BACKENDS: Registry = Registry("backend")
BACKENDS.register("transformers", "kit.llm.hf_backend:HFBackend")
BACKENDS.register("vllm", "kit.llm.vllm_backend:VLLMBackend")
BACKENDS.register("openai", "kit.llm.openai_backend:OpenAIBackend")


def load_backend(model, cache_path: str | Path | None = None, seed: int = 0) -> Backend:
    """A backend for a ``ModelParams`` section, wrapped in the on-disk cache unless ``cache_path`` is None."""
    backend: Backend = BACKENDS.get(model.backend).from_params(model, seed=seed)
    if cache_path is None:
        return backend
    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache

    return CachedBackend(backend, Cache(cache_path))
