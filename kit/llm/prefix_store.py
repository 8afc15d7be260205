"""Key/value caches of token sequences already run, reused by any later prompt that starts the same way.

An NCN agent asks for its counter-proposal, gap-filler and innovative guideline in three calls
(one per temperature) whose prompts differ only in their last lines; a dialogue's next turn repeats
the whole conversation so far. The transformers backend keeps the KV cache of every row it runs
(prompt and generated tokens) here, keyed by adapter and tokens, and a later prompt is prefilled
only past its longest stored prefix — what vLLM's automatic prefix caching does with blocks.

Entries are evicted least-recently-used first once their tensors pass the byte budget or their
count passes ``max_entries``. A stored sequence that another one extends is dropped, since the
longer entry serves every prompt the shorter one could. Only a match of at least ``min_length``
tokens counts, so entries are indexed by their first ``min_length`` tokens and a lookup scans only
the entries that share them. Keys and values are kept per layer as ``[kv_heads, tokens, head_dim]`` at the
positions they were computed for (a prefix always starts at position 0), so any later batch layout
can use them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    a, b = np.asarray(a), np.asarray(b)
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class PrefixStore:
    """An LRU, by bytes and count, of ``(adapter, tokens) -> per-layer keys and values``."""

    def __init__(self, budget_bytes: int, min_length: int = 1, max_entries: int = 1024):
        self.budget, self.min_length, self.max_entries = budget_bytes, min_length, max_entries
        self.bytes = 0
        self._entries: OrderedDict[int, tuple[tuple, np.ndarray, Layers, int]] = OrderedDict()
        self._buckets: dict[tuple, set[int]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._buckets.clear()
        self.bytes = 0

    def _bucket(self, adapter: str | None, tokens: Sequence[int]) -> tuple:
        return (adapter, tuple(tokens[: self.min_length]))

    def longest(self, adapter: str | None, tokens: Sequence[int], limit: int) -> tuple[Layers | None, int]:
        """The stored keys/values of the longest prefix of ``tokens`` (at most ``limit``, at least
        ``min_length`` tokens) and its length; ``(None, 0)`` when none is held."""
        if limit < self.min_length:
            return None, 0
        query = np.asarray(tokens[:limit])
        best, best_n = None, 0
        for key in self._buckets.get(self._bucket(adapter, tokens), ()):
            n = common_length(self._entries[key][1], query)
            if n > best_n:
                best, best_n = key, n
        if best is None or best_n < self.min_length:
            return None, 0
        self._entries.move_to_end(best)
        return [(k[:, :best_n], v[:, :best_n]) for k, v in self._entries[best][2]], best_n

    def put(self, adapter: str | None, tokens: Sequence[int], layers: Layers) -> None:
        """Keep ``layers`` (``[kv_heads, len(tokens), head_dim]`` each) for ``tokens``; evict to the budget."""
        seq = np.asarray(tokens)
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if size > self.budget or len(seq) < self.min_length:
            return
        bucket = self._bucket(adapter, tokens)
        for key in list(self._buckets.get(bucket, ())):
            stored = self._entries[key][1]
            shared = common_length(stored, seq)
            if shared == len(seq):  # already held, maybe within a longer entry
                self._entries.move_to_end(key)
                return
            if shared == len(stored):  # the new sequence extends this one
                self._drop(key)
        key, self._next = self._next, self._next + 1
        self._entries[key] = (bucket, seq, layers, size)
        self._buckets.setdefault(bucket, set()).add(key)
        self.bytes += size
        while self.bytes > self.budget or len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        bucket, _, _, size = self._entries.pop(key)
        self._buckets[bucket].discard(key)
        if not self._buckets[bucket]:
            del self._buckets[bucket]
        self.bytes -= size
