"""Target value vectors: which values a rewrite should express more (+1) or less (−1); 0 leaves a value alone.

A text's target is derived from (seed, text id), so every run and every method sees the same
targets, and ``opposite`` gives the mirror target for the "two opposite rewrites" figure. A
culture's profile (the values its notebook-01 description expresses) is a target too, so an answer
can be made to speak for a culture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.run import seeds
from kit.values.schwartz import SCHWARTZ_VALUES

N_VALUES = len(SCHWARTZ_VALUES)


def sample_target(seed: int, text_id: str, n_targeted: int = 2) -> np.ndarray:
    """``n_targeted`` distinct values, each pushed up or down, chosen by (seed, "visa-target", text id)."""
    if not 1 <= n_targeted <= N_VALUES:
        raise ValueError(f"n_targeted must lie in [1, {N_VALUES}], got {n_targeted}")
    order = sorted(range(N_VALUES), key=lambda i: seeds.unit(seed, "visa-target", text_id, i))
    target = np.zeros(N_VALUES)
    for i in order[:n_targeted]:
        target[i] = 1.0 if seeds.unit(seed, "visa-target-sign", text_id, i) < 0.5 else -1.0
    return target


def opposite(target: Sequence[float]) -> np.ndarray:
    return -np.asarray(target, dtype=float)


def culture_target(profile: Sequence[float] | None, max_targeted: int = 3) -> np.ndarray | None:
    """A target from a culture's value profile (a detector's vector of its description): the values the
    profile expresses, at most ``max_targeted`` of them in SCHWARTZ_VALUES order; None when it expresses none."""
    if profile is None:
        return None
    vec = np.asarray(profile, dtype=float)
    keep = np.flatnonzero(vec)[:max_targeted]
    if not len(keep):
        return None
    target = np.zeros(N_VALUES)
    target[keep] = np.sign(vec[keep])
    return target
