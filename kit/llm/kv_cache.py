"""The transformers backend's KV cache: appended in place, and cut out per row for the prefix store.

transformers' ``DynamicLayer`` concatenates every new position onto the whole cache, so each decode
step copies all keys and values of the batch; on CPU that copy grew with rows × context and took a
quarter of a 16-row decode step over 300-token prompts. ``GrowingLayer`` writes into spare capacity
instead (re-allocating ``SPARE`` positions ahead when full) and hands attention a view.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from kit.llm.prefix_store import Layers

SPARE = 128  # positions allocated ahead of need


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of buffers with room to grow."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor, *args) -> None:
        super().lazy_initialization(key_states, value_states, *args)
        self._k = self._v = None
        self._n = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._n, self._n + key_states.shape[-2]
        if self._k is None or end > self._k.shape[-2] or self._k.shape[0] != key_states.shape[0]:
            self._k, self._v = (
                self._grown(self._k, key_states, start, end),
                self._grown(self._v, value_states, start, end),
            )
        self._k[..., start:end, :] = key_states
        self._v[..., start:end, :] = value_states
        self._n = end
        self.keys, self.values = self._k[..., :end, :], self._v[..., :end, :]
        return self.keys, self.values

    @staticmethod
    def _grown(old: torch.Tensor | None, new: torch.Tensor, start: int, end: int) -> torch.Tensor:
        buf = new.new_empty((*new.shape[:-2], end + SPARE, new.shape[-1]))
        if start:
            buf[..., :start, :] = old[..., :start, :]
        return buf

    def _adopt(self) -> None:
        """After an operation of the parent class replaced ``keys``/``values``: they become the buffers."""
        self._k, self._v, self._n = self.keys, self.values, self.keys.shape[-2]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._adopt()

    def crop(self, *args, **kwargs) -> None:
        super().crop(*args, **kwargs)
        self._adopt()

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._adopt()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._adopt()


def new_cache(layers: Layers | None = None) -> DynamicCache:
    """A cache of ``GrowingLayer``s, holding ``layers`` (``[batch, kv_heads, tokens, head_dim]`` each) if given."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    for i, (keys, values) in enumerate(layers or []):
        cache.update(keys, values, i)
    return cache


def supports(config) -> bool:
    """Whether a model's cache is one key/value per token in every layer — no sliding window, no
    recurrent state — so it can grow in place and a prefix of it can be cut out and reused."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def row_layers(cache, row: int, at: torch.Tensor) -> Layers:
    """One row's keys and values at cache positions ``at``, per layer (copies)."""
    return [(layer.keys[row][:, at], layer.values[row][:, at]) for layer in cache.layers]
