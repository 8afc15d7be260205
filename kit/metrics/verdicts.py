"""Verdicts need evidence: "better", "beats" or "worse" only from a paired interval over enough common items.

Every verdict of the kit — a method against another (:func:`kit.metrics.alignment.paired_verdicts`), an
agent against a reference row (``reference_comparison``), the NCN paper's claims on its own data, the
boards — comes from :func:`verdict`: the 95 % bootstrap interval of the paired difference (the score's
direction taken into account by the caller) and the number of items both sides scored. Below
``verdicts.min_items`` items the verdict is ``"too few"`` whatever the interval, so two questions with a
zero-width interval never make a winner. Reference rows (``none``, uniform, the priors) are compared
against, never ranked as winners.
"""

from __future__ import annotations

import math

MIN_ITEMS = 20  # the params default (verdicts.min_items)
BETTER, WORSE, SAME, TOO_FEW = "better", "worse", "no difference", "too few"
VERDICTS = (BETTER, WORSE, SAME, TOO_FEW)


def verdict(
    low: float, high: float, n: int, min_items: int = MIN_ITEMS, better: str = BETTER, worse: str = WORSE
) -> str:
    """``better`` when the interval of (method − other, sign turned so above 0 is better) lies above 0,
    ``worse`` below, ``no difference`` when it holds 0 — and ``too few`` with fewer than ``min_items``
    items or no interval (``better``/``worse`` name the words a table uses, e.g. "beats")."""
    if min_items < 1:
        raise ValueError(f"min_items must be at least 1, got {min_items}")
    if n < min_items or not (math.isfinite(low) and math.isfinite(high)):
        return TOO_FEW
    return better if low > 0 else worse if high < 0 else SAME


def as_number(v: str) -> int:
    """A verdict as a number for ranking and the contract test: 1 better (or beats), −1 worse, else 0."""
    return 1 if v in (BETTER, "beats") else -1 if v == WORSE else 0
