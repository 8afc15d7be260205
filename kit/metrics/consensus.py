"""Nash Consensus Negotiation metrics — the pure parts; model scoring and judging live elsewhere.

Perplexity-based acceptance: ``D = |PPL_B(r_A) − PPL_A(r_B)|`` is how unevenly two agents accept
each other's text; a negotiation helps when ``D_final / D_initial < 1``.

Schwartz value vectors: a judge maps a text to 10 values, each in {−1, 0, 1}. Self-consistency
is ``cos(v(final_A), v(initial_A))``, consensus is ``cos(v(final_A), v(final_B))``. The cosine of
an all-zero vector (a text expressing no value) is undefined and returned as ``nan``;
``value_summary`` skips those and counts them. Distances between value vectors are Euclidean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kit.values.schwartz import SCHWARTZ_VALUES

# Scoring back-ends return log-softmax values; allow float rounding just above 0.
_LOGPROB_TOLERANCE = 1e-6


def perplexity(logprobs: Sequence[float]) -> float:
    """``exp(−mean(logprobs))`` over the scored tokens; logprobs are natural-log (base e)."""
    arr = np.asarray(logprobs, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"logprobs must be a non-empty 1-D sequence of token log-probabilities, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr > _LOGPROB_TOLERANCE):
        raise ValueError("logprobs must be finite natural-log probabilities (≤ 0); check the scoring output")
    return float(np.exp(-arr.mean()))


def _non_negative(x: float, name: str) -> float:
    value = float(x)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {x!r}")
    return value


def acceptance_gap(ppl_b_of_a: float, ppl_a_of_b: float) -> float:
    """``D = |PPL_B(r_A) − PPL_A(r_B)|``: A's text under agent B versus B's text under agent A."""
    return abs(_non_negative(ppl_b_of_a, "ppl_b_of_a") - _non_negative(ppl_a_of_b, "ppl_a_of_b"))


def acceptance_ratio(d_initial: float, d_final: float) -> float:
    """``D_final / D_initial``; below 1 means the agents accept each other more evenly than before.

    With ``D_initial = 0`` the ratio is 1.0 if ``D_final`` is also 0 (nothing changed) and ``inf``
    otherwise (a perfectly even start got worse).
    """
    d0, d1 = _non_negative(d_initial, "d_initial"), _non_negative(d_final, "d_final")
    if d0 == 0:
        return 1.0 if d1 == 0 else float("inf")
    return d1 / d0


def acceptance_summary(pairs: Iterable[tuple[float, float]]) -> dict[str, float]:
    """Summary over topics of ``(d_initial, d_final)`` pairs.

    Keys: n, mean_d_ratio (``inf`` if any ratio is), median_d_ratio, share_improved (share of topics
    with ``d_final < d_initial``), mean_d_initial, mean_d_final.
    """
    pairs = [(_non_negative(a, "d_initial"), _non_negative(b, "d_final")) for a, b in pairs]
    if not pairs:
        raise ValueError("acceptance_summary needs at least one (d_initial, d_final) pair")
    d0, d1 = np.array(pairs).T
    ratios = np.array([acceptance_ratio(a, b) for a, b in pairs])
    return {
        "n": len(pairs),
        "mean_d_ratio": float(ratios.mean()),
        "median_d_ratio": float(np.median(ratios)),
        "share_improved": float(np.mean(d1 < d0)),
        "mean_d_initial": float(d0.mean()),
        "mean_d_final": float(d1.mean()),
    }


def value_vector(v: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """A Schwartz vector in ``SCHWARTZ_VALUES`` order from a name → score mapping or a sequence of 10.

    Scores must be −1, 0 or 1; a mapping must name all ten values exactly.
    """
    if isinstance(v, Mapping):
        missing = [name for name in SCHWARTZ_VALUES if name not in v]
        unknown = [name for name in v if name not in SCHWARTZ_VALUES]
        if missing or unknown:
            raise ValueError(f"value scores must name each of SCHWARTZ_VALUES; missing {missing}, unknown {unknown}")
        v = [v[name] for name in SCHWARTZ_VALUES]
    arr = np.asarray(v, dtype=float)
    if arr.shape != (len(SCHWARTZ_VALUES),):
        raise ValueError(f"a value vector needs 10 entries in SCHWARTZ_VALUES order, got shape {arr.shape}")
    if not np.all(np.isin(arr, (-1.0, 0.0, 1.0))):
        raise ValueError(f"value scores must each be -1, 0 or 1, got {arr.tolist()}")
    return arr


def value_cosine(u: Mapping[str, float] | Sequence[float], v: Mapping[str, float] | Sequence[float]) -> float:
    """Cosine similarity of two value vectors in [−1, 1]; ``nan`` if either is all zeros."""
    a, b = value_vector(u), value_vector(v)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return float("nan")
    return float(a @ b / norm)


def value_self_consistency(v_final: Any, v_initial: Any) -> float:
    """``cos(v(final_A), v(initial_A))``: how much of an agent's values survive the negotiation."""
    return value_cosine(v_final, v_initial)


def value_consensus(v_final_a: Any, v_final_b: Any) -> float:
    """``cos(v(final_A), v(final_B))``: how far the two agents' final statements share values."""
    return value_cosine(v_final_a, v_final_b)


def value_distance(u: Any, v: Any) -> float:
    """Euclidean distance between two value vectors, in [0, 2·sqrt(10)].

    Chosen over ``1 − cos`` because it is a metric and is defined for all-zero vectors, so the
    distance between two agents is never missing.
    """
    return float(np.linalg.norm(value_vector(u) - value_vector(v)))


def distance_reduction(before: float, after: float) -> float:
    """``(before − after) / before × 100``: % of a distance removed; ``nan`` when ``before`` is 0."""
    b0, b1 = _non_negative(before, "before"), _non_negative(after, "after")
    if b0 == 0:
        return float("nan")
    return (b0 - b1) / b0 * 100.0


def value_summary(scores: Iterable[float]) -> dict[str, float]:
    """Mean and median of cosine scores, skipping ``nan`` (undefined) ones and counting them.

    Keys: n, n_undefined, mean, median (``nan`` if every score is undefined).
    """
    arr = np.asarray(list(scores), dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("value_summary needs a non-empty 1-D sequence of scores")
    defined = arr[~np.isnan(arr)]
    return {
        "n": int(arr.size),
        "n_undefined": int(arr.size - defined.size),
        "mean": float(defined.mean()) if defined.size else float("nan"),
        "median": float(np.median(defined)) if defined.size else float("nan"),
    }
