"""Every random choice of the kit derives from (seed, *keys) through one recipe: sha256.

``unit`` gives a number in [0, 1) (splits, hold-outs, rankings), ``derive`` a 31-bit integer seed
(sampling, numpy generators). Both are stable across processes, platforms and Python versions.
"""

from __future__ import annotations

import hashlib


def _digest(seed: int, keys: tuple) -> bytes:
    return hashlib.sha256(":".join(map(str, (seed, *keys))).encode()).digest()


def unit(seed: int, *keys: object) -> float:
    """A uniform number in [0, 1) from sha256 of ``seed`` and ``keys``."""
    return int.from_bytes(_digest(seed, keys)[:8], "big") / 2**64


def derive(seed: int, *keys: object) -> int:
    """A 31-bit seed from sha256 of ``seed`` and ``keys``."""
    return int.from_bytes(_digest(seed, keys)[:4], "big") >> 1
