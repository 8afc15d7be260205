"""Every random choice of the kit derives from (seed, purpose, *keys) through one recipe: sha256.

``unit`` gives a number in [0, 1) (splits, hold-outs, rankings), ``derive`` a 31-bit integer seed
(sampling, numpy generators). Both are stable across processes, platforms and Python versions.

The purpose is part of the hash on purpose: two choices made from the same seed must not be
correlated. With one bare ``hash(seed, id)`` for both, the question split (test when the number is
below 0.3) and the topic choice (the n lowest numbers) picked only test questions as topics, and a
10 % hold-out drawn inside the train split (all numbers above 0.3) came out empty.
"""

from __future__ import annotations

import hashlib


def _digest(seed: int, purpose: str, keys: tuple) -> bytes:
    if not purpose:
        raise ValueError("a seed needs a purpose (e.g. 'goqa-split'), so unrelated choices stay independent")
    return hashlib.sha256(":".join(map(str, (seed, purpose, *keys))).encode()).digest()


def unit(seed: int, purpose: str, *keys: object) -> float:
    """A uniform number in [0, 1) from sha256 of ``seed``, ``purpose`` and ``keys``."""
    return int.from_bytes(_digest(seed, purpose, keys)[:8], "big") / 2**64


def derive(seed: int, purpose: str, *keys: object) -> int:
    """A 31-bit seed from sha256 of ``seed``, ``purpose`` and ``keys``."""
    return int.from_bytes(_digest(seed, purpose, keys)[:4], "big") >> 1
