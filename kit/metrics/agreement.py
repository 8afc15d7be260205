"""Agreement between two judges of the same texts: exact agreement and Cohen's κ per Schwartz value, Spearman's
ρ of the cosines they imply, each with a bootstrap interval over the units judged.

Scores are −1, 0 or 1; a judge that writes half steps (the NCN release's GPT-4o vectors) has them rounded away
from 0 first (``round_half_steps``: ±0.5 → ±1, a weak stance is still a stance) and counted. κ is
``(p_o − p_e) / (1 − p_e)`` over the labels −1/0/1 (``sklearn.metrics.cohen_kappa_score`` is its golden test);
it is undefined (``nan``) when chance agreement is 1 — both judges give one label throughout — and such a
value says nothing, so it is never shown as agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

LABELS = (-1, 0, 1)


def round_half_steps(scores: Any) -> np.ndarray:
    """Scores in [−1, 1] rounded to −1, 0 or 1, halves away from 0 (−0.5 → −1, 0.5 → 1)."""
    arr = np.asarray(scores, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1):
        raise ValueError("scores must be finite and lie in [-1, 1]")
    return (np.sign(arr) * np.floor(np.abs(arr) + 0.5)).astype(int)


def half_steps(scores: Any) -> int:
    """How many scores are not −1, 0 or 1 (what ``round_half_steps`` changes)."""
    arr = np.asarray(scores, dtype=float)
    return int(np.sum(~np.isin(arr, LABELS)))


def cohen_kappa(a: Sequence[int], b: Sequence[int], labels: Sequence[int] = LABELS) -> float:
    """Cohen's κ of two raters' labels on the same items; ``nan`` when chance agreement is 1 (or no items)."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"two 1-D label sequences of one length are needed, got shapes {x.shape} and {y.shape}"
        )
    unknown = set(np.unique(np.concatenate([x, y]))) - set(labels)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not among {list(labels)}")
    if x.size == 0:
        return float("nan")
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for p, q in zip(x, y):
        table[index[p], index[q]] += 1
    table /= x.size
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    return float("nan") if expected >= 1 else float((observed - expected) / (1 - expected))


def bootstrap_statistic(
    stat: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile interval of ``stat(indices)`` over bootstrap resamples of ``n`` units (whole ``groups`` when
    given: a cluster bootstrap). Resamples where the statistic is undefined are left out; ``(nan, nan)`` for
    fewer than two units or no defined resample."""
    if groups is None:
        clusters = [np.array([i]) for i in range(n)]
    else:
        if len(groups) != n:
            raise ValueError(f"groups must have one label per unit, got {len(groups)} for {n}")
        codes = pd.factorize(pd.Series(list(groups), dtype=object).astype(str))[0]
        clusters = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)] if n else []
    if len(clusters) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        picked = rng.integers(0, len(clusters), size=len(clusters))
        value = stat(np.concatenate([clusters[c] for c in picked]))
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return (float("nan"), float("nan"))
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def agreement_table(
    reference: np.ndarray,
    judged: np.ndarray,
    names: Sequence[str],
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per dimension (``names``, the columns of two ``(texts, dims)`` arrays): items, half steps of
    ``reference`` rounded, exact agreement and κ after rounding, each with a 95 % bootstrap interval over texts
    (or over ``groups`` of texts)."""
    ref, got = np.asarray(reference, dtype=float), np.asarray(judged, dtype=float)
    if ref.shape != got.shape or ref.ndim != 2 or ref.shape[1] != len(names):
        raise ValueError(
            f"two (texts, {len(names)}) arrays of one shape are needed, got {ref.shape} and {got.shape}"
        )
    rounded_ref, rounded_got = round_half_steps(ref), round_half_steps(got)
    rows = []
    for j, name in enumerate(names):
        x, y = rounded_ref[:, j], rounded_got[:, j]
        exact = lambda idx, x=x, y=y: float(np.mean(x[idx] == y[idx])) if len(idx) else float("nan")  # noqa: E731
        kappa = lambda idx, x=x, y=y: cohen_kappa(x[idx], y[idx])  # noqa: E731
        everything = np.arange(len(x))
        rows.append(
            {
                "value": name,
                "n": len(x),
                "half_steps_rounded": half_steps(ref[:, j]),
                "exact": exact(everything),
                **dict(
                    zip(("exact_low", "exact_high"), bootstrap_statistic(exact, len(x), n_boot, seed, groups))
                ),
                "kappa": kappa(everything),
                **dict(
                    zip(("kappa_low", "kappa_high"), bootstrap_statistic(kappa, len(x), n_boot, seed, groups))
                ),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "value",
            "n",
            "half_steps_rounded",
            "exact",
            "exact_low",
            "exact_high",
            "kappa",
            "kappa_low",
            "kappa_high",
        ],
    ).set_index("value")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (``scipy.stats.spearmanr``); ``nan`` for fewer than three pairs or a constant side."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def spearman_with_ci(
    x: Sequence[float],
    y: Sequence[float],
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ρ, low, high): Spearman's ρ with a 95 % bootstrap interval over the pairs (or their ``groups``)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = spearman(a, b)
    low, high = bootstrap_statistic(lambda idx: spearman(a[idx], b[idx]), len(a), n_boot, seed, groups)
    return rho, low, high
