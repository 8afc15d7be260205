"""LLM backends behind one protocol (generate, score, choice_probs), with a cache in front.

``load_backend(params.model, cache_path)`` is the one way the kit gets a model; vLLM is
imported only when ``model.backend: vllm`` is chosen.
"""

from __future__ import annotations

from pathlib import Path

from kit.llm.base import Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, ScoreRequest

__all__ = ["Backend", "ChatRequest", "ChoiceRequest", "ChoiceResult", "GenParams", "ScoreRequest", "load_backend"]


def load_backend(model, cache_path: str | Path | None = None, seed: int = 0) -> Backend:
    """A backend for a ``ModelParams`` section, wrapped in the on-disk cache unless ``cache_path`` is None."""
    if model.backend == "vllm":
        from kit.llm.models import resolve_model
        from kit.llm.vllm_backend import VLLMBackend

        resolved = resolve_model(model.name, model.revision)  # registry names become local folders
        backend: Backend = VLLMBackend(
            resolved.path, identity=resolved.identity, revision=resolved.revision, dtype=model.dtype, tensor_parallel_size=model.tensor_parallel_size,
            gpu_memory_utilization=model.gpu_memory_utilization, max_model_len=model.max_model_len,
            trust_remote_code=model.trust_remote_code, max_lora_rank=model.max_lora_rank, seed=seed,
        )
    else:
        from kit.llm.hf_backend import HFBackend

        backend = HFBackend(model.name, revision=model.revision, dtype=model.dtype, device=model.device,
                            batch_size=model.batch_size, trust_remote_code=model.trust_remote_code)
    if cache_path is None:
        return backend
    from kit.cache import Cache
    from kit.llm.cached import CachedBackend

    return CachedBackend(backend, Cache(cache_path))
