"""Golden tests for kit.metrics.consensus against scipy and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine, euclidean

from kit.metrics.consensus import (
    acceptance_gap,
    acceptance_ratio,
    acceptance_summary,
    distance_reduction,
    perplexity,
    value_consensus,
    value_cosine,
    value_distance,
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
        "Self-Direction", "Stimulation", "Hedonism", "Achievement", "Power",
        "Security", "Conformity", "Tradition", "Benevolence", "Universalism",
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
    assert value_distance([0] * 10, [0] * 10) == 0.0
    assert value_distance(ones, [-1] * 10) == pytest.approx(2 * math.sqrt(10))
    scores = dict.fromkeys(SCHWARTZ_VALUES, 0) | {"Power": 1, "Universalism": -1}
    np.testing.assert_array_equal(value_vector(scores), [0, 0, 0, 0, 1, 0, 0, 0, 0, -1])
    assert value_cosine(scores, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]) == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1] * 9, "10 entries"),
        ([2] + [0] * 9, "-1, 0 or 1"),
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
