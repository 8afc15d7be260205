"""Golden tests for kit.metrics.agreement: κ against sklearn, ρ against scipy, rounding and intervals by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from kit.metrics.agreement import (
    agreement_table,
    bootstrap_statistic,
    cohen_kappa,
    half_steps,
    round_half_steps,
    spearman,
    spearman_with_ci,
)


@pytest.mark.parametrize("seed", range(5))
def test_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    a = rng.choice([-1, 0, 1], size=80, p=[0.2, 0.5, 0.3])
    b = np.where(rng.random(80) < 0.6, a, rng.choice([-1, 0, 1], size=80))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b, labels=[-1, 0, 1]), abs=1e-12)


def test_kappa_by_hand_and_degenerate_cases():
    # 2×2 agreement: p_o = 0.5, p_e = 0.5 → κ = 0; perfect agreement on two labels → 1
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
    assert cohen_kappa([1, 0, -1], [1, 0, -1]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, -1], [-1, 1, 0]) < 0  # worse than chance
    # one label throughout on both sides: chance agreement is 1, κ undefined — never a perfect score
    assert math.isnan(cohen_kappa([0, 0, 0], [0, 0, 0]))
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="not among"):
        cohen_kappa([2], [1])
    with pytest.raises(ValueError, match="one length"):
        cohen_kappa([1, 0], [1])


def test_half_steps_round_away_from_zero_and_are_counted():
    np.testing.assert_array_equal(round_half_steps([-1, -0.5, 0, 0.5, 1]), [-1, -1, 0, 1, 1])
    assert half_steps([[-0.5, 0, 1], [0.5, 0.5, -1]]) == 3
    with pytest.raises(ValueError):
        round_half_steps([1.5])


def test_spearman_matches_scipy_and_is_undefined_on_a_constant_side():
    rng = np.random.default_rng(3)
    x, y = rng.random(30), rng.random(30)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4])) and math.isnan(spearman([1, 2], [2, 1]))
    rho, low, high = spearman_with_ci(x, x + 0.01 * rng.random(30), n_boot=200)
    assert rho > 0.9 and low <= rho <= high <= 1


def test_bootstrap_statistic_stays_in_range_and_resamples_clusters():
    values = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    low, high = bootstrap_statistic(lambda idx: values[idx].mean(), len(values), n_boot=300, seed=0)
    assert 0 <= low <= values.mean() <= high <= 1
    # two clusters of identical values: every resample is one of three means
    low, high = bootstrap_statistic(lambda idx: values[:2][idx].mean(), 2, n_boot=300, groups=["a", "b"])
    assert {low, high} <= {0.0, 0.5, 1.0}
    assert all(math.isnan(v) for v in bootstrap_statistic(lambda idx: 1.0, 1))
    assert all(math.isnan(v) for v in bootstrap_statistic(lambda idx: float("nan"), 5, n_boot=20))


def test_agreement_table_per_dimension():
    reference = np.array([[1, 0.5], [0, -0.5], [-1, 0], [1, 0]])
    judged = np.array([[1, 1], [0, -1], [1, 0], [1, 1]])
    table = agreement_table(reference, judged, ["A", "B"], n_boot=200)
    assert list(table.index) == ["A", "B"] and (table["n"] == 4).all()
    assert table.loc["A", "exact"] == pytest.approx(0.75) and table.loc["B", "exact"] == pytest.approx(0.75)
    assert table.loc["B", "half_steps_rounded"] == 2  # 0.5 → 1 and −0.5 → −1 before comparing
    assert table.loc["A", "kappa"] == pytest.approx(cohen_kappa_score([1, 0, -1, 1], [1, 0, 1, 1]))
    assert table.loc["A", "kappa_low"] <= table.loc["A", "kappa"] <= table.loc["A", "kappa_high"]
    with pytest.raises(ValueError, match="arrays of one shape"):
        agreement_table(reference, judged[:, :1], ["A", "B"])
