"""NCN utility, meta-game payoffs and stopping rule: hand-computed 2-d cases and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.negotiation.meta_solver import solve_bimatrix
from kit.negotiation.utility import (
    PARTS,
    UtilityParts,
    UtilityWeights,
    converged,
    normalise_weights,
    payoff_matrices,
    utility_matrix,
    utility_parts,
)

R = 1 / math.sqrt(2)

# Candidate (1, 0); opinion along (1, 1); opponent guidelines (0, 1) and (1, 0) weighted 1 : 3;
# own guidelines (1, 1) and (-1, 0). By hand: consist = 1/√2, accept = ¼·0 + ¾·1 = ¾,
# novelty = 1 − max(1/√2, −1) = 1 − 1/√2.
CAND = np.array([1.0, 0.0])
OPINION = np.array([1.0, 1.0])
OPP = np.array([[0.0, 1.0], [1.0, 0.0]])
OPP_W = np.array([1.0, 3.0])
OWN = np.array([[1.0, 1.0], [-1.0, 0.0]])


def test_hand_computed_parts_and_total():
    parts = utility_parts(CAND, OPINION, OPP, OPP_W, OWN)
    assert parts.consist == pytest.approx(R)
    assert parts.accept == pytest.approx(0.75)
    assert parts.novelty == pytest.approx(1 - R)
    assert parts.total() == pytest.approx(0.5 * R + 0.3 * 0.75 + 0.2 * (1 - R))
    assert parts.total(1.0, 0.0, 0.0) == pytest.approx(R)
    assert parts.total(0.0, 2.0, 1.0) == pytest.approx(1.5 + 1 - R)


def test_unnormalised_embeddings_give_the_same_parts():
    scaled = utility_parts(7 * CAND, 0.1 * OPINION, OPP * [[3.0], [0.5]], OPP_W, OWN * [[2.0], [9.0]])
    np.testing.assert_allclose([scaled.consist, scaled.accept, scaled.novelty], [R, 0.75, 1 - R])


def test_opponent_weights_are_renormalised():
    # Only the proportions matter; all-zero weights mean uniform.
    assert utility_parts(CAND, OPINION, OPP, 100 * OPP_W, OWN).accept == pytest.approx(0.75)
    assert utility_parts(CAND, OPINION, OPP, [0.0, 0.0], OWN).accept == pytest.approx(0.5)
    np.testing.assert_allclose(normalise_weights([1, 3], 2), [0.25, 0.75])
    np.testing.assert_allclose(normalise_weights([0, 0, 0], 3), [1 / 3] * 3)


@pytest.mark.parametrize("own", [[], np.zeros((0, 2)), np.zeros(0)])
def test_empty_own_pool_is_fully_novel(own):
    assert utility_parts(CAND, OPINION, OPP, OPP_W, own).novelty == 1.0


def test_duplicate_of_own_guideline_has_no_novelty():
    assert utility_parts(CAND, OPINION, OPP, OPP_W, [[5.0, 0.0]]).novelty == pytest.approx(0.0)


def test_matrix_agrees_with_single_candidates_and_weights():
    rng = np.random.default_rng(0)
    cands, opinion = rng.normal(size=(6, 8)), rng.normal(size=8)
    opp, opp_w, own = rng.normal(size=(3, 8)), rng.random(3), rng.normal(size=(4, 8))
    table = utility_matrix(cands, opinion, opp, opp_w, own)
    assert table.shape == (6, len(PARTS))
    for row, cand in zip(table, cands):
        parts = utility_parts(cand, opinion, opp, opp_w, own)
        np.testing.assert_allclose(row, [parts.consist, parts.accept, parts.novelty])
        assert row @ UtilityWeights().vector == pytest.approx(parts.total())


def test_weights_validation():
    assert UtilityWeights() == UtilityWeights(0.5, 0.3, 0.2)
    UtilityWeights(0.0, 0.0, 1.0)
    for bad in [(-0.1, 0.5, 0.6), (0.0, 0.0, 0.0), (math.nan, 0.3, 0.2), (math.inf, 0.3, 0.2)]:
        with pytest.raises(ValueError, match="utility weights"):
            UtilityWeights(*bad)
    with pytest.raises(ValueError, match="utility weights"):
        UtilityParts(1.0, 1.0, 1.0).total(0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cand": [0.0, 0.0]}, "all-zero"),
        ({"opinion0": [1.0, 0.0, 0.0]}, "opinion0"),
        ({"opp_pool": []}, "opp_pool is empty"),
        ({"opp_weights": [1.0]}, "expected 2 weights"),
        ({"opp_weights": [1.0, -1.0]}, "non-negative"),
        ({"own_pool": [[1.0, 0.0, 0.0]]}, "own_pool"),
        ({"opp_pool": [[np.nan, 1.0], [1.0, 0.0]]}, "NaN"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    args = {
        "cand": CAND,
        "opinion0": OPINION,
        "opp_pool": OPP,
        "opp_weights": OPP_W,
        "own_pool": OWN,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        utility_parts(**args)


def reference_payoffs(pool_a, pool_b, op_a, op_b, w: UtilityWeights):
    """Entry by entry with plain Python, straight from the definition."""

    def cos(u, v):
        return sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))

    def nov(pool, i):
        others = [cos(pool[i], pool[k]) for k in range(len(pool)) if k != i]
        return 1.0 - max(others) if others else 1.0

    A = [
        [w.alpha * cos(a, op_a) + w.beta * cos(a, b) + w.gamma * nov(pool_a, i) for b in pool_b]
        for i, a in enumerate(pool_a)
    ]
    B = [
        [w.alpha * cos(b, op_b) + w.beta * cos(a, b) + w.gamma * nov(pool_b, j) for j, b in enumerate(pool_b)]
        for a in pool_a
    ]
    return np.array(A), np.array(B)


def test_payoffs_hand_computed_2d():
    pool_a = np.array([[1.0, 0.0], [0.0, 1.0]])
    pool_b = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    A, B = payoff_matrices(pool_a, pool_b, [1.0, 0.0], [0.0, 1.0])
    assert A.shape == B.shape == (2, 3)
    assert A[0, 0] == pytest.approx(0.5 * 1 + 0.3 * 1 + 0.2 * 1)  # on-opinion, shared with b0, novel
    assert A[1, 2] == pytest.approx(0.5 * 0 + 0.3 * -1 + 0.2 * 1)
    assert B[1, 2] == pytest.approx(0.5 * -1 + 0.3 * -1 + 0.2 * 1)  # b2 opposes opinion_b; nov = 1 − 0
    assert B[0, 1] == pytest.approx(0.5 * R + 0.3 * R + 0.2 * (1 - R))  # b1's nearest neighbour is b0


@pytest.mark.parametrize("m, n", [(1, 1), (1, 4), (3, 2), (5, 5)])
def test_payoffs_match_loop_reference(m, n):
    rng = np.random.default_rng(m * 10 + n)
    pool_a, pool_b = rng.normal(size=(m, 6)), rng.normal(size=(n, 6))
    op_a, op_b = rng.normal(size=6), rng.normal(size=6)
    weights = UtilityWeights(0.2, 0.5, 0.3)
    A, B = payoff_matrices(pool_a, pool_b, op_a, op_b, weights)
    A_ref, B_ref = reference_payoffs(pool_a.tolist(), pool_b.tolist(), op_a.tolist(), op_b.tolist(), weights)
    np.testing.assert_allclose(A, A_ref, atol=1e-12)
    np.testing.assert_allclose(B, B_ref, atol=1e-12)


def test_payoffs_use_the_weights():
    # A's first guideline sits on its opinion; the second is what B's guideline says. Consistency
    # alone (the anchor's payoff) keeps the first; with acceptability weighted in, A moves.
    pool_a = np.array([[1.0, 0.0], [0.6, 0.8]])
    pool_b = np.array([[0.0, 1.0]])
    consistency_only = solve_bimatrix(
        *payoff_matrices(pool_a, pool_b, [1, 0], [0, 1], UtilityWeights(1, 0, 0))
    )
    weighted = solve_bimatrix(*payoff_matrices(pool_a, pool_b, [1, 0], [0, 1], UtilityWeights(0.3, 0.7, 0.0)))
    np.testing.assert_array_equal(consistency_only.row, [1.0, 0.0])
    np.testing.assert_array_equal(weighted.row, [0.0, 1.0])


def test_payoff_game_is_an_exact_potential_game():
    rng = np.random.default_rng(4)
    pool_a, pool_b = rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    weights = UtilityWeights()
    A, B = payoff_matrices(pool_a, pool_b, rng.normal(size=5), rng.normal(size=5), weights)
    unit_a = pool_a / np.linalg.norm(pool_a, axis=1, keepdims=True)
    unit_b = pool_b / np.linalg.norm(pool_b, axis=1, keepdims=True)
    potential = A + B - weights.beta * unit_a @ unit_b.T
    # A's deviations change A's payoff exactly as much as the potential (A − Φ depends on j only),
    # and likewise for B; so the best cell of Φ is a pure equilibrium.
    np.testing.assert_allclose(A - potential, np.broadcast_to((A - potential)[0], A.shape), atol=1e-12)
    np.testing.assert_allclose(B - potential, np.broadcast_to((B - potential)[:, :1], B.shape), atol=1e-12)
    i, j = np.unravel_index(np.argmax(potential), potential.shape)
    assert A[i, j] == A[:, j].max() and B[i, j] == B[i, :].max()


def test_converged_uses_absolute_change():
    assert converged((0.50, 0.40), (0.51, 0.39), eps=0.02)
    assert not converged((0.50, 0.40), (0.40, 0.40), eps=0.02)  # a drop is a change too (the anchor's bug)
    assert not converged((0.50, 0.40), (0.50, 0.45), eps=0.02)  # one agent still moving
    assert not converged((0.5, 0.5), (0.5, 0.5 + 0.25), eps=0.25)  # "less than", not "at most"
    with pytest.raises(ValueError, match="eps"):
        converged((0.5, 0.5), (0.5, 0.5), eps=0.0)
    with pytest.raises(ValueError, match="two each"):
        converged((0.5,), (0.5, 0.5))
