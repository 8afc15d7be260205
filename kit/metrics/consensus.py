"""Nash Consensus Negotiation metrics — the pure parts; model scoring and judging live elsewhere.

Perplexity-based acceptance: ``D = |PPL_B(r_A) − PPL_A(r_B)|`` is how unevenly two agents accept
each other's text; a negotiation helps when ``D_final / D_initial < 1``.

Schwartz value vectors: a judge maps a text to 10 values, each in [−1, 1] (the kit's judges say −1, 0
or 1; the NCN paper's GPT-4o vectors also hold half steps). Self-consistency is
``cos(v(final_A), v(initial_A))``, consensus is ``cos(v(final_A), v(final_B))``. The cosine of an
all-zero vector (a text expressing no value) is undefined and returned as ``nan``; ``value_summary``
skips those and counts them. Distances between value vectors are Euclidean, and *missing* (``nan``) when
either vector is all zeros: two answers that express no value are not close cultures.

The kit's acceptance, :func:`relative_acceptance`: ``log PPL_other(text) − log PPL_base(text)``, the other
side's persona against the plain model on the same text, so that the text's own predictability cancels
(below 0: the persona finds the text likelier than the model does on its own); ``rel_logppl_change`` is
its final − initial change, averaged over the two sides (:func:`rel_logppl`).

The paper's own summaries are computed differently, and :func:`release_value_summary` reproduces
them from the per-transcript vectors: an all-zero vector's cosine counts as 0, "vector consistency"
is the share of the ten values on which two vectors are equal, and the "increased number of
dimensions" is ``int(10 · (consistency_final − consistency_initial))`` (truncated, so a float error
turns 0.6 − 0.4 = 0.1999… into 1). :func:`release_ppl_row` does the same for the release's
perplexity files (a failed copy task is written as −1). ``docs/units/0x-nash-consensus.md`` names
each difference.
"""

from __future__ import annotations

import math
from collections import Counter
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
        raise ValueError(
            f"logprobs must be a non-empty 1-D sequence of token log-probabilities, got shape {arr.shape}"
        )
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

    Scores must be finite and lie in [−1, 1] (−1 opposes, 0 not expressed, 1 supports; the NCN release's
    half steps ±0.5 are weaker stances); a mapping must name all ten values exactly.
    """
    if isinstance(v, Mapping):
        missing = [name for name in SCHWARTZ_VALUES if name not in v]
        unknown = [name for name in v if name not in SCHWARTZ_VALUES]
        if missing or unknown:
            raise ValueError(
                f"value scores must name each of SCHWARTZ_VALUES; missing {missing}, unknown {unknown}"
            )
        v = [v[name] for name in SCHWARTZ_VALUES]
    arr = np.asarray(v, dtype=float)
    if arr.shape != (len(SCHWARTZ_VALUES),):
        raise ValueError(f"a value vector needs 10 entries in SCHWARTZ_VALUES order, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1):
        raise ValueError(
            f"value scores must each lie in [-1, 1] (-1, 0 or 1, or a half step), got {arr.tolist()}"
        )
    return arr


def value_cosine(
    u: Mapping[str, float] | Sequence[float],
    v: Mapping[str, float] | Sequence[float],
    all_zero: float = float("nan"),
) -> float:
    """Cosine similarity of two value vectors in [−1, 1]; ``all_zero`` (``nan``: undefined) if either is all
    zeros — the NCN release counts that case as 0 (``all_zero=0.0``)."""
    a, b = value_vector(u), value_vector(v)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return float(all_zero)
    return float(a @ b / norm)


def value_agreement(u: Any, v: Any) -> float:
    """Share of the ten values on which two vectors hold the same score (the release's "vector consistency")."""
    return float(np.mean(value_vector(u) == value_vector(v)))


def value_l1(u: Any, v: Any) -> float:
    """L1 distance between two value vectors (the release's "dimension L1 distance"), in [0, 20]."""
    return float(np.abs(value_vector(u) - value_vector(v)).sum())


def value_self_consistency(v_final: Any, v_initial: Any) -> float:
    """``cos(v(final_A), v(initial_A))``: how much of an agent's values survive the negotiation."""
    return value_cosine(v_final, v_initial)


def value_consensus(v_final_a: Any, v_final_b: Any) -> float:
    """``cos(v(final_A), v(final_B))``: how far the two agents' final statements share values."""
    return value_cosine(v_final_a, v_final_b)


def value_distance(u: Any, v: Any) -> float:
    """Euclidean distance between two value vectors, in [0, 2·sqrt(10)]; ``nan`` (missing) when either is
    all zeros — a text that expresses no value has no position to be near, and two of them would otherwise
    score the best distance, 0.

    Chosen over ``1 − cos`` because it is a metric and sees magnitude (one shared value against five).
    """
    a, b = value_vector(u), value_vector(v)
    if not a.any() or not b.any():
        return float("nan")
    return float(np.linalg.norm(a - b))


def relative_acceptance(ppl_other: float, ppl_base: float) -> float:
    """``log PPL_other − log PPL_base`` of one text: below 0, the other side's persona finds it likelier than
    the plain model does (the text's own predictability cancels)."""
    return float(np.log(_non_negative(ppl_other, "ppl_other") / _non_negative(ppl_base, "ppl_base")))


def rel_logppl(ppl_b_of_a: float, ppl_base_of_a: float, ppl_a_of_b: float, ppl_base_of_b: float) -> float:
    """The two sides' :func:`relative_acceptance`, averaged: each text under the other side against the base."""
    return (
        relative_acceptance(ppl_b_of_a, ppl_base_of_a) + relative_acceptance(ppl_a_of_b, ppl_base_of_b)
    ) / 2


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


# ---------------------------------------------------------------------------------------------
# the NCN release's own summary, reproduced from its per-transcript vectors

RELEASE_SCALARS = (
    "average_init_vector_consistency",
    "average_final_vector_consistency",
    "final_better_than_init",
    "final_better_than_init_ratio",
    "average_increased_number_of_dimensions",
    "average_response1_vector_consistency",
    "average_response2_vector_consistency",
    "average_response_vector_consistency",
    "average_final_A_to_init_A",
    "average_final_B_to_init_A",
    "average_final_A_to_init_B",
    "average_final_B_to_init_B",
    "final_dist_less_than_init",
    "final_dist_less_than_init_ratio",
    "average_cosine_sim_init",
    "average_cosine_sim_final",
    "average_dimension_l1_distance_init",
    "average_dimension_l1_distance_final",
    "diff_dimension_l1_distance",
    "total_dabte_number",
)
# per-transcript lists: the release writes them in its file system's listing order, so they are compared as
# multisets; the two ``final_*_to_init_A_init_B`` lists hold [cos(·, init A), cos(·, init B)] pairs
RELEASE_LISTS = (
    "cosine_sim_init",
    "cosine_sim_final",
    "dimension_l1_distance_init",
    "dimension_l1_distance_final",
    "init_vector_consistency",
    "final_vector_consistency",
    "increased_number_of_dimensions",
    "response1_vector_consistency",
    "response2_vector_consistency",
    "final_A_to_init_A_init_B",
    "final_B_to_init_A_init_B",
)
# per Schwartz dimension ("1" … "10"), how often each score ("-1.0" … "1.0") occurs
RELEASE_COUNTS = (
    "init_A_dimensions_statistics",
    "init_B_dimensions_statistics",
    "final_A_dimensions_statistics",
    "final_B_dimensions_statistics",
)
RELEASE_SCORES = (-1.0, -0.5, 0.0, 0.5, 1.0)


def _release_cos(u: Any, v: Any) -> float:
    return value_cosine(u, v, all_zero=0.0)


def release_value_summary(
    initial_a: Sequence[Any], initial_b: Sequence[Any], final_a: Sequence[Any], final_b: Sequence[Any]
) -> dict[str, Any]:
    """Every key of the release's ``summary_model_based_*.json`` from its per-transcript vectors (four
    parallel sequences, response 1 = A, response 2 = B), under the release's own definitions: an all-zero
    vector's cosine is 0; consistency is ``value_agreement``; a transcript counts as "final better than
    init" when its final agreement is *at least* its initial one, and as "final dist less than init" when
    its final cosine is at least its initial one; the increased number of dimensions is
    ``int((agreement_final − agreement_initial) × 10)``, truncated toward 0 as the release's float
    arithmetic has it; L1 distances are ``value_l1``."""
    n = len(initial_a)
    if not n or not len(initial_b) == len(final_a) == len(final_b) == n:
        raise ValueError(
            f"need four equally long, non-empty sequences of vectors; got {len(initial_a)}, "
            f"{len(initial_b)}, {len(final_a)}, {len(final_b)}"
        )
    a0, b0, a1, b1 = ([value_vector(x) for x in seq] for seq in (initial_a, initial_b, final_a, final_b))
    agree0 = [value_agreement(x, y) for x, y in zip(a0, b0)]
    agree1 = [value_agreement(x, y) for x, y in zip(a1, b1)]
    keep_a = [value_agreement(x, y) for x, y in zip(a1, a0)]
    keep_b = [value_agreement(x, y) for x, y in zip(b1, b0)]
    increased = [int((f - i) * 10) for f, i in zip(agree1, agree0)]
    cos0 = [_release_cos(x, y) for x, y in zip(a0, b0)]
    cos1 = [_release_cos(x, y) for x, y in zip(a1, b1)]
    a_to = [[_release_cos(x, y), _release_cos(x, z)] for x, y, z in zip(a1, a0, b0)]
    b_to = [[_release_cos(x, y), _release_cos(x, z)] for x, y, z in zip(b1, a0, b0)]
    l1_0 = [value_l1(x, y) for x, y in zip(a0, b0)]
    l1_1 = [value_l1(x, y) for x, y in zip(a1, b1)]
    better = sum(f >= i for f, i in zip(agree1, agree0))
    closer = sum(f >= i for f, i in zip(cos1, cos0))
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    out = {
        "average_init_vector_consistency": mean(agree0),
        "average_final_vector_consistency": mean(agree1),
        "final_better_than_init": better,
        "final_better_than_init_ratio": better / n,
        "average_increased_number_of_dimensions": mean(increased),
        "average_response1_vector_consistency": mean(keep_a),
        "average_response2_vector_consistency": mean(keep_b),
        "average_response_vector_consistency": (mean(keep_a) + mean(keep_b)) / 2,
        "average_final_A_to_init_A": mean([p[0] for p in a_to]),
        "average_final_B_to_init_A": mean([p[0] for p in b_to]),
        "average_final_A_to_init_B": mean([p[1] for p in a_to]),
        "average_final_B_to_init_B": mean([p[1] for p in b_to]),
        "final_dist_less_than_init": closer,
        "final_dist_less_than_init_ratio": closer / n,
        "average_cosine_sim_init": mean(cos0),
        "average_cosine_sim_final": mean(cos1),
        "average_dimension_l1_distance_init": mean(l1_0),
        "average_dimension_l1_distance_final": mean(l1_1),
        "diff_dimension_l1_distance": mean(l1_0) - mean(l1_1),
        "cosine_sim_init": cos0,
        "cosine_sim_final": cos1,
        "dimension_l1_distance_init": l1_0,
        "dimension_l1_distance_final": l1_1,
        **{
            f"{side}_dimensions_statistics": _score_counts(vs)
            for side, vs in (("init_A", a0), ("init_B", b0), ("final_A", a1), ("final_B", b1))
        },
        "init_vector_consistency": agree0,
        "final_vector_consistency": agree1,
        "increased_number_of_dimensions": increased,
        "response1_vector_consistency": keep_a,
        "response2_vector_consistency": keep_b,
        "final_A_to_init_A_init_B": a_to,
        "final_B_to_init_A_init_B": b_to,
        "total_dabte_number": n,
    }
    return out


def _score_counts(vectors: Sequence[np.ndarray]) -> dict[str, dict[str, int]]:
    """Per dimension "1" … "10": how many vectors hold each of ``RELEASE_SCORES`` there (zeros kept)."""
    counts = [Counter(float(v[j]) for v in vectors) for j in range(len(SCHWARTZ_VALUES))]
    return {
        str(j + 1): {str(score): counts[j][score] for score in RELEASE_SCORES} for j in range(len(counts))
    }


def release_values_equal(key: str, ours: Any, theirs: Any, tol: float = 1e-9) -> bool:
    """Whether one summary value of ours equals the release's: numbers to ``tol``, per-transcript lists as
    multisets (sorted) to ``tol``, score counts exactly."""
    if key in RELEASE_COUNTS:
        return ours == theirs
    if key in RELEASE_LISTS:
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return False
        mine, other = sorted(map(_as_tuple, ours)), sorted(map(_as_tuple, theirs))
        return all(
            len(x) == len(y) and all(abs(p - q) <= tol for p, q in zip(x, y)) for x, y in zip(mine, other)
        )
    return (
        isinstance(theirs, (int, float))
        and not isinstance(theirs, bool)
        and abs(float(ours) - float(theirs)) <= tol
    )


def _as_tuple(x: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in x) if isinstance(x, (list, tuple)) else (float(x),)


def release_ppl_row(
    ppl_initial_a: float, ppl_initial_b: float, ppl_final_a: float, ppl_final_b: float
) -> dict[str, float | None]:
    """The derived numbers of one record of the release's perplexity files, under its own rule: each distance is
    ``|PPL(response 1) − PPL(response 2)|`` of the numbers as written (a failed copy task is −1 and enters
    as −1), and ``PPL_distance_difference`` is ``D_final / D_initial``, ``None`` when any perplexity is −1."""
    values = (ppl_initial_a, ppl_initial_b, ppl_final_a, ppl_final_b)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"perplexities must be finite numbers, got {values}")
    d0, d1 = abs(ppl_initial_a - ppl_initial_b), abs(ppl_final_a - ppl_final_b)
    failed = any(v == -1 for v in values)
    return {
        "PPL_init_distance": d0,
        "PPL_final_distance": d1,
        "PPL_distance_difference": None if failed or d0 == 0 else d1 / d0,
    }


# Where the kit's own definition of a summary number differs from the release's: key → what differs. The unit
# page (docs/units/0x-nash-consensus.md, "The paper's own numbers") says each in full.
KIT_DIFFERENCES = {
    "average_cosine_sim_init": "all-zero vector: release 0, kit undefined (skipped)",
    "average_cosine_sim_final": "all-zero vector: release 0, kit undefined (skipped)",
    "average_final_A_to_init_A": "all-zero vector: release 0, kit undefined (skipped)",
    "average_final_B_to_init_A": "all-zero vector: release 0, kit undefined (skipped)",
    "average_final_A_to_init_B": "all-zero vector: release 0, kit undefined (skipped)",
    "average_final_B_to_init_B": "all-zero vector: release 0, kit undefined (skipped)",
    "average_response1_vector_consistency": "self-consistency: release exact-match share, kit cosine",
    "average_response2_vector_consistency": "self-consistency: release exact-match share, kit cosine",
    "average_response_vector_consistency": "self-consistency: release exact-match share, kit cosine",
    "average_increased_number_of_dimensions": "release truncates a float difference, kit counts exactly",
    "final_better_than_init": "release counts ties as better, kit strict",
    "final_better_than_init_ratio": "release counts ties as better, kit strict",
    "final_dist_less_than_init": "release counts ties and zero vectors, kit strict on defined cosines",
    "final_dist_less_than_init_ratio": "release counts ties and zero vectors, kit strict on defined cosines",
    "average_dimension_l1_distance_init": "distance: release L1, kit Euclidean (all-zero vector: kit missing)",
    "average_dimension_l1_distance_final": "distance: release L1, kit Euclidean (all-zero vector: kit missing)",
    "diff_dimension_l1_distance": "distance: release L1, kit Euclidean (all-zero vector: kit missing)",
}


def kit_value_summary(
    initial_a: Sequence[Any], initial_b: Sequence[Any], final_a: Sequence[Any], final_b: Sequence[Any]
) -> dict[str, float]:
    """The kit's own reading of each summary number in ``KIT_DIFFERENCES`` from the same vectors: cosines with
    an all-zero vector undefined and skipped, self-consistency as ``value_self_consistency`` (agents A and B
    pooled for the combined key), exact counts, strict improvement, Euclidean ``value_distance``."""
    a0, b0, a1, b1 = ([value_vector(x) for x in seq] for seq in (initial_a, initial_b, final_a, final_b))
    n = len(a0)
    mean = lambda xs: value_summary(xs)["mean"]  # noqa: E731 — nan-skipping
    cos0 = [value_consensus(x, y) for x, y in zip(a0, b0)]
    cos1 = [value_consensus(x, y) for x, y in zip(a1, b1)]
    self_a = [value_self_consistency(x, y) for x, y in zip(a1, a0)]
    self_b = [value_self_consistency(x, y) for x, y in zip(b1, b0)]
    agree0 = [int(np.sum(x == y)) for x, y in zip(a0, b0)]
    agree1 = [int(np.sum(x == y)) for x, y in zip(a1, b1)]
    better = sum(f > i for f, i in zip(agree1, agree0))
    defined = [(f, i) for f, i in zip(cos1, cos0) if not (math.isnan(f) or math.isnan(i))]
    closer = sum(f > i for f, i in defined)
    d0 = np.array([value_distance(x, y) for x, y in zip(a0, b0)])
    d1 = np.array([value_distance(x, y) for x, y in zip(a1, b1)])
    both = ~np.isnan(d0) & ~np.isnan(d1)  # a pair with an all-zero vector has no distance: left out

    def defined_mean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if (~np.isnan(x)).any() else float("nan")

    return {
        "average_cosine_sim_init": mean(cos0),
        "average_cosine_sim_final": mean(cos1),
        "average_final_A_to_init_A": mean(self_a),
        "average_final_B_to_init_B": mean(self_b),
        "average_final_B_to_init_A": mean([value_cosine(x, y) for x, y in zip(b1, a0)]),
        "average_final_A_to_init_B": mean([value_cosine(x, y) for x, y in zip(a1, b0)]),
        "average_response1_vector_consistency": mean(self_a),
        "average_response2_vector_consistency": mean(self_b),
        "average_response_vector_consistency": mean(self_a + self_b),
        "average_increased_number_of_dimensions": float(np.mean(np.subtract(agree1, agree0))),
        "final_better_than_init": better,
        "final_better_than_init_ratio": better / n,
        "final_dist_less_than_init": closer,
        "final_dist_less_than_init_ratio": closer / len(defined) if defined else float("nan"),
        "average_dimension_l1_distance_init": defined_mean(d0),
        "average_dimension_l1_distance_final": defined_mean(d1),
        "diff_dimension_l1_distance": float(np.mean(d0[both] - d1[both])) if both.any() else float("nan"),
    }
