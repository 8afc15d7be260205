"""Golden tests for kit.metrics.consensus against scipy and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine, euclidean

from kit.metrics.consensus import (
    KIT_DIFFERENCES,
    RELEASE_COUNTS,
    RELEASE_LISTS,
    RELEASE_SCALARS,
    acceptance_gap,
    acceptance_ratio,
    acceptance_summary,
    distance_reduction,
    kit_value_summary,
    perplexity,
    release_ppl_row,
    release_value_summary,
    release_values_equal,
    value_agreement,
    value_consensus,
    value_cosine,
    value_distance,
    value_l1,
    value_self_consistency,
    value_summary,
    value_vector,
)
from kit.values import SCHWARTZ_VALUES


def test_perplexity_by_hand():
    # Token probabilities ½ and ¼: mean NLL = (ln 2 + ln 4) / 2 = ln 8 / 2 → PPL = sqrt(8).
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(math.sqrt(8))
    assert perplexity([0.0, 0.0]) == pytest.approx(1.0)
    assert perplexity(np.log(np.full(5, 0.1))) == pytest.approx(10.0)


@pytest.mark.parametrize("bad", [[], [[-1.0]], [-0.5, 0.3], [-np.inf], [np.nan]])
def test_perplexity_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        perplexity(bad)


def test_acceptance_gap_and_ratio():
    assert acceptance_gap(10.0, 4.0) == pytest.approx(6.0)
    assert acceptance_gap(4.0, 10.0) == pytest.approx(6.0)
    assert acceptance_ratio(4.0, 2.0) == pytest.approx(0.5)
    assert acceptance_ratio(2.0, 4.0) == pytest.approx(2.0)
    assert acceptance_ratio(0.0, 0.0) == 1.0
    assert acceptance_ratio(0.0, 3.0) == math.inf
    with pytest.raises(ValueError, match="d_initial"):
        acceptance_ratio(-1.0, 1.0)
    with pytest.raises(ValueError, match="ppl_a_of_b"):
        acceptance_gap(1.0, float("nan"))


def test_acceptance_summary():
    summary = acceptance_summary([(4.0, 2.0), (2.0, 4.0), (5.0, 5.0)])
    expected = {"n": 3, "mean_d_ratio": 7 / 6, "median_d_ratio": 1.0, "share_improved": 1 / 3}
    assert summary == pytest.approx(expected | {"mean_d_initial": 11 / 3, "mean_d_final": 11 / 3})
    assert acceptance_summary([(1.0, 0.5), (0.0, 1.0)])["mean_d_ratio"] == math.inf
    with pytest.raises(ValueError, match="at least one"):
        acceptance_summary([])


def test_schwartz_values_order():
    assert SCHWARTZ_VALUES == (
        "Self-Direction",
        "Stimulation",
        "Hedonism",
        "Achievement",
        "Power",
        "Security",
        "Conformity",
        "Tradition",
        "Benevolence",
        "Universalism",
    )


def test_value_cosine_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(50):
        u, v = rng.integers(-1, 2, size=10), rng.integers(-1, 2, size=10)
        if not u.any() or not v.any():
            continue
        assert value_cosine(u, v) == pytest.approx(1 - cosine(u, v), abs=1e-12)
        assert value_distance(u, v) == pytest.approx(euclidean(u, v), abs=1e-12)
        assert value_self_consistency(u, v) == value_consensus(u, v) == value_cosine(u, v)


def test_value_cosine_edge_cases_and_mapping():
    ones = [1] * 10
    assert value_cosine(ones, ones) == pytest.approx(1.0)
    assert value_cosine(ones, [-1] * 10) == pytest.approx(-1.0)
    assert math.isnan(value_cosine([0] * 10, ones))
    # two texts expressing no value are not close cultures: their distance is missing, never the best (0)
    assert math.isnan(value_distance([0] * 10, [0] * 10)) and math.isnan(value_distance([0] * 10, ones))
    assert value_distance(ones, [-1] * 10) == pytest.approx(2 * math.sqrt(10))
    scores = dict.fromkeys(SCHWARTZ_VALUES, 0) | {"Power": 1, "Universalism": -1}
    np.testing.assert_array_equal(value_vector(scores), [0, 0, 0, 0, 1, 0, 0, 0, 0, -1])
    assert value_cosine(scores, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]) == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1] * 9, "10 entries"),
        ([2] + [0] * 9, r"\[-1, 1\]"),
        ([-1.5] + [0] * 9, r"\[-1, 1\]"),
        ([float("nan")] + [0] * 9, r"\[-1, 1\]"),
        ([float("inf")] + [0] * 9, r"\[-1, 1\]"),
        ({"Power": 1}, "missing"),
        (dict.fromkeys(SCHWARTZ_VALUES, 0) | {"Joy": 1}, "unknown"),
    ],
)
def test_value_vector_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        value_vector(bad)


def test_distance_reduction():
    assert distance_reduction(10.0, 0.447) == pytest.approx(95.53)
    assert distance_reduction(2.0, 3.0) == pytest.approx(-50.0)
    assert math.isnan(distance_reduction(0.0, 0.0))
    with pytest.raises(ValueError, match="after"):
        distance_reduction(1.0, -1.0)


def test_value_summary_skips_undefined():
    summary = value_summary([1.0, float("nan"), 0.5, 0.0])
    assert summary == pytest.approx({"n": 4, "n_undefined": 1, "mean": 0.5, "median": 0.5})
    empty = value_summary([float("nan")])
    assert empty["n_undefined"] == 1 and math.isnan(empty["mean"])
    with pytest.raises(ValueError):
        value_summary([])


def test_half_steps_are_valid_scores_and_cosines_match_scipy():
    """The NCN release's GPT-4o vectors hold ±0.5: valid everywhere, cosine and distance as scipy has them."""
    u = [0, 0, 0, 0, 0, 0.5, 0, 1, 0, 0.5]
    v = [0, 0, 0, 0, 0.5, 0.5, 1, 1, 0.5, 1]
    np.testing.assert_array_equal(value_vector(u), u)
    assert value_cosine(u, v) == pytest.approx(1 - cosine(u, v), abs=1e-12)
    assert value_distance(u, v) == pytest.approx(euclidean(u, v))
    assert value_cosine(u, v) == pytest.approx(
        0.7378647873726218, abs=1e-12
    )  # the release's own initial_dist


def test_all_zero_cosine_is_undefined_unless_the_release_rule_is_asked_for():
    assert math.isnan(value_cosine([0] * 10, [1] * 10))
    assert value_cosine([0] * 10, [1] * 10, all_zero=0.0) == 0.0
    assert value_cosine([1] * 10, [1] * 10, all_zero=0.0) == pytest.approx(1.0)


def test_agreement_and_l1_by_hand():
    u = [1, 0, -1, 0.5, 0, 0, 0, 0, 0, 0]
    v = [1, 0, 1, -0.5, 0, 0, 0, 0, 0, 1]
    assert value_agreement(u, v) == pytest.approx(0.7)  # 10 values, 3 differ
    assert value_l1(u, v) == pytest.approx(0 + 0 + 2 + 1 + 1)
    assert value_agreement(u, u) == 1.0 and value_l1(u, u) == 0.0


def _hand_case():
    """Two transcripts; the second opens with an all-zero vector for A."""
    z = [0.0] * 10
    e = lambda i, x=1.0: [x if j == i else 0.0 for j in range(10)]  # noqa: E731
    a0 = [e(0), z]
    b0 = [[1.0, 1.0] + [0.0] * 8, e(1)]
    a1 = [[1.0, 1.0] + [0.0] * 8, e(1)]
    b1 = [[1.0, 1.0] + [0.0] * 8, e(1, -0.5)]
    return a0, b0, a1, b1


def test_release_summary_by_hand():
    a0, b0, a1, b1 = _hand_case()
    s = release_value_summary(a0, b0, a1, b1)
    assert set(s) == set(RELEASE_SCALARS) | set(RELEASE_LISTS) | set(RELEASE_COUNTS)
    # transcript 1: cos(e0, e0+e1) = 1/√2 initially, 1 finally; transcript 2: A opens with nothing → 0; finally −1
    assert s["cosine_sim_init"] == pytest.approx([1 / math.sqrt(2), 0.0])
    assert s["cosine_sim_final"] == pytest.approx([1.0, -1.0])
    assert s["average_cosine_sim_init"] == pytest.approx(1 / math.sqrt(8))
    # agreement: t1 9/10 → 10/10, t2 9/10 → 9/10 (the value where they differ moved, the rest stay 0)
    assert s["init_vector_consistency"] == pytest.approx([0.9, 0.9])
    assert s["final_vector_consistency"] == pytest.approx([1.0, 0.9])
    # final ≥ initial counts as better (ties too); the cosine test counts ties as well
    assert s["final_better_than_init"] == 2 and s["final_better_than_init_ratio"] == 1.0
    assert s["final_dist_less_than_init"] == 1
    # 1.0 − 0.9 = 0.09999… in floating point: ×10 and truncated it is 0, not 1 — the release's own quirk
    assert s["increased_number_of_dimensions"] == [0, 0]
    assert s["dimension_l1_distance_init"] == pytest.approx([1.0, 1.0])
    assert s["dimension_l1_distance_final"] == pytest.approx([0.0, 1.5])
    assert s["init_A_dimensions_statistics"]["1"] == {"-1.0": 0, "-0.5": 0, "0.0": 1, "0.5": 0, "1.0": 1}
    assert s["final_B_dimensions_statistics"]["2"] == {"-1.0": 0, "-0.5": 1, "0.0": 0, "0.5": 0, "1.0": 1}
    assert s["total_dabte_number"] == 2


def test_kit_own_reading_of_the_same_vectors_differs_where_named():
    a0, b0, a1, b1 = _hand_case()
    own = kit_value_summary(a0, b0, a1, b1)
    assert set(own) == set(KIT_DIFFERENCES)
    assert own["average_cosine_sim_init"] == pytest.approx(
        1 / math.sqrt(2)
    )  # the zero vector is skipped, not 0
    assert own["average_increased_number_of_dimensions"] == pytest.approx(0.5)  # exact: +1 and 0
    assert own["final_better_than_init"] == 1  # strict
    assert own["average_dimension_l1_distance_final"] == pytest.approx(0.75)  # Euclidean: 0 and 1.5
    # the second opening's all-zero vector has no distance: only the first transcript's (1.0) counts, and the
    # change is read on that transcript alone (1.0 − 0)
    assert own["average_dimension_l1_distance_init"] == pytest.approx(1.0)
    assert own["diff_dimension_l1_distance"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="four equally long"):
        release_value_summary(a0, b0, a1, b1[:1])


def test_release_values_equal_compares_lists_as_multisets_and_counts_exactly():
    assert release_values_equal("average_cosine_sim_init", 0.5, 0.5 + 1e-12)
    assert not release_values_equal("average_cosine_sim_init", 0.5, 0.5 + 1e-6)
    assert release_values_equal("cosine_sim_init", [0.1, 0.2], [0.2, 0.1])
    assert not release_values_equal("cosine_sim_init", [0.1, 0.2], [0.2, 0.1, 0.3])
    assert release_values_equal(
        "final_A_to_init_A_init_B", [[0.1, 0.2], [0.3, 0.4]], [[0.3, 0.4], [0.1, 0.2]]
    )
    counts = {"1": {"0.0": 2}}
    assert release_values_equal("init_A_dimensions_statistics", counts, {"1": {"0.0": 2}})
    assert not release_values_equal("init_A_dimensions_statistics", counts, {"1": {"0.0": 1}})
    assert not release_values_equal("total_dabte_number", 2, True)  # a flag is not a count


def test_release_perplexity_row():
    row = release_ppl_row(1.00002, 1.000004, 1.000005, 1.000013)
    assert row["PPL_init_distance"] == pytest.approx(1.6e-5)
    assert row["PPL_distance_difference"] == pytest.approx(8e-6 / 1.6e-5)
    failed = release_ppl_row(1.0000025, -1, 1.000007, 1.00001)
    assert (
        failed["PPL_init_distance"] == pytest.approx(2.0000025) and failed["PPL_distance_difference"] is None
    )
    with pytest.raises(ValueError):
        release_ppl_row(float("nan"), 1, 1, 1)
