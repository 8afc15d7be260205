"""Meta-game solver: golden checks against nashpy's vertex enumeration and hand-solved games."""

from __future__ import annotations

import warnings

import nashpy
import numpy as np
import pytest
from nashpy.algorithms.support_enumeration import support_enumeration
from nashpy.algorithms.vertex_enumeration import vertex_enumeration

from kit.negotiation.meta_solver import enumerate_equilibria, nash_gap, solve_bimatrix
from kit.negotiation.utility import UtilityWeights, payoff_matrices

SHAPES = [
    (2, 2),
    (2, 3),
    (3, 2),
    (3, 3),
    (4, 2),
    (2, 5),
    (4, 3),
    (3, 5),
    (4, 4),
    (5, 3),
    (6, 4),
    (4, 6),
    (5, 5),
]


def independent_gap(A, B, x, y) -> float:
    """Exploitability from nashpy's payoff evaluation of every pure deviation."""
    game = nashpy.Game(A, B)
    base_row, base_col = game[x, y]
    best_row = max(game[np.eye(A.shape[0])[i], y][0] for i in range(A.shape[0]))
    best_col = max(game[x, np.eye(A.shape[1])[j]][1] for j in range(A.shape[1]))
    return max(best_row - base_row, best_col - base_col)


def contains(profiles, x, y, atol=1e-7) -> bool:
    return any(np.allclose(px, x, atol=atol) and np.allclose(py, y, atol=atol) for px, py in profiles)


def random_games(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for k in range(count):
        m, n = SHAPES[k % len(SHAPES)]
        yield rng.normal(size=(m, n)), rng.normal(size=(m, n))


def test_auto_matches_vertex_enumeration_on_random_games():
    for A, B in random_games(52, seed=0):
        reference = list(vertex_enumeration(A, B))
        ours = enumerate_equilibria(A, B)
        assert len(ours) == len(reference) and len(ours) % 2 == 1  # non-degenerate: an odd number
        assert all(contains(reference, x, y) for x, y in ours)
        with warnings.catch_warnings():  # nashpy warns on an even count: exactly the cases it misses
            warnings.simplefilter("ignore", RuntimeWarning)
            assert all(contains(ours, x, y) for x, y in support_enumeration(A, B))

        eq = solve_bimatrix(A, B)
        assert eq.method == "support_enumeration"
        assert eq.nash_gap < 1e-9 and independent_gap(A, B, eq.row, eq.col) < 1e-9
        assert contains(reference, eq.row, eq.col)
        # Deterministic choice: the largest total of range-normalised payoffs.
        An, Bn = (A - A.min()) / np.ptp(A), (B - B.min()) / np.ptp(B)
        totals = [x @ (An + Bn) @ y for x, y in reference]
        assert eq.row @ (An + Bn) @ eq.col == pytest.approx(max(totals), abs=1e-9)


@pytest.mark.parametrize("method", ["support_enumeration", "lemke_howson", "replicator"])
def test_every_method_finds_an_equilibrium_nashpy_knows(method):
    for A, B in random_games(26, seed=1):
        eq = solve_bimatrix(A, B, method)
        assert eq.nash_gap < 1e-6 and independent_gap(A, B, eq.row, eq.col) < 1e-6
        assert contains(list(vertex_enumeration(A, B)), eq.row, eq.col)
        if method != "replicator":  # the replicator may defer to the exact solvers on general games
            assert eq.method == method


def test_lemke_howson_on_more_rows_than_columns():
    # nashpy 0.0.43's own Lemke–Howson ends at no equilibrium from any label on this 6×4 game (cf.
    # drvinceknight/Nashpy#83); the kit pivots the transposed game. By hand: rows 3 and 4 both earn
    # 17/3 against y, columns 1 and 3 both earn 5 against x, every other strategy earns less.
    A = np.array([[5, 5, 6, 2], [8, 1, 8, 1], [5, 3, 4, 1], [3, 4, 7, 9], [8, 7, 9, 3], [9, 3, 0, 7]], float)
    B = np.array([[2, 9, 7, 6], [5, 2, 8, 4], [9, 1, 5, 4], [0, 8, 0, 2], [1, 4, 1, 6], [0, 9, 6, 6]], float)
    eq = solve_bimatrix(A, B, "lemke_howson")
    assert eq.method == "lemke_howson" and eq.nash_gap < 1e-9
    np.testing.assert_allclose(eq.row, [0, 0, 0, 1 / 4, 3 / 4, 0], atol=1e-12)
    np.testing.assert_allclose(eq.col, [0, 2 / 3, 0, 1 / 3], atol=1e-12)
    assert eq.payoffs(A, B) == pytest.approx((17 / 3, 5.0))


# Hand-solved 2×3 game: column 2 is strictly dominated for the column player; in the remaining 2×2
# the row player is indifferent when 2·y0 = y1 and the column player when 2·x1 = x0.
HAND_A = np.array([[2.0, 0.0, 5.0], [0.0, 1.0, 5.0]])
HAND_B = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, -1.0]])
HAND_X, HAND_Y = np.array([2 / 3, 1 / 3]), np.array([1 / 3, 2 / 3, 0.0])


@pytest.mark.parametrize("method", ["auto", "support_enumeration", "lemke_howson", "replicator"])
def test_non_square_hand_solved_game(method):
    # The column player's payoffs are xᵀB (length 3); the anchor's Bᵀa-style product B·x is not
    # even defined here, and on square games it scores the wrong player.
    eq = solve_bimatrix(HAND_A, HAND_B, method)
    np.testing.assert_allclose(eq.row, HAND_X, atol=1e-9)
    np.testing.assert_allclose(eq.col, HAND_Y, atol=1e-9)
    assert eq.payoffs(HAND_A, HAND_B) == pytest.approx((2 / 3, 2 / 3))
    # The same game with the players swapped (3×2).
    swapped = solve_bimatrix(HAND_B.T, HAND_A.T, method)
    np.testing.assert_allclose(swapped.row, HAND_Y, atol=1e-9)
    np.testing.assert_allclose(swapped.col, HAND_X, atol=1e-9)


def test_no_uniform_mixing_into_pure_equilibria():
    # Prisoner's dilemma: the only equilibrium is pure (defect, defect); the anchor's 50 % uniform
    # mixing would leave a positive gap.
    A = np.array([[3.0, 0.0], [5.0, 1.0]])
    eq = solve_bimatrix(A, A.T)
    np.testing.assert_array_equal(eq.row, [0.0, 1.0])
    np.testing.assert_array_equal(eq.col, [0.0, 1.0])
    assert eq.nash_gap == 0.0


def test_deterministic_choice_among_several_equilibria():
    coordination = np.array([[2.0, 0.0], [0.0, 1.0]])
    eq = solve_bimatrix(coordination, coordination)  # pure (0, 0), (1, 1) and one mixed
    np.testing.assert_array_equal(eq.row, [1.0, 0.0])
    np.testing.assert_array_equal(eq.col, [1.0, 0.0])
    # Battle of the sexes: both pure equilibria total 1.5 after normalising; the first found wins.
    eq = solve_bimatrix(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_array_equal(eq.row, [1.0, 0.0])
    np.testing.assert_array_equal(eq.col, [1.0, 0.0])


@pytest.mark.parametrize("method", ["auto", "support_enumeration", "lemke_howson", "replicator"])
@pytest.mark.parametrize(
    "A, B",
    [
        (np.ones((3, 3)), np.ones((3, 3))),  # all payoffs equal
        (np.zeros((3, 4)), np.zeros((3, 4))),
        (np.array([[1.0, 3.0, 3.0, 2.0]]), np.array([[1.0, 3.0, 3.0, 2.0]])),  # 1×n with a tie
        (np.array([[1.0], [4.0], [4.0]]), np.array([[0.0], [0.0], [0.0]])),  # m×1 with a tie
        (np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])),  # column player indifferent
        (np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), np.array([[2.0, 2.0, 1.0], [0.0, 0.0, 3.0]])),
    ],
)
def test_degenerate_games(A, B, method):
    eq = solve_bimatrix(A, B, method)
    assert eq.nash_gap < 1e-9 and independent_gap(A, B, eq.row, eq.col) < 1e-9
    assert eq.row.sum() == pytest.approx(1.0) and eq.col.sum() == pytest.approx(1.0)
    assert (eq.row >= 0).all() and (eq.col >= 0).all()


def test_one_by_n_picks_the_first_best_response():
    eq = solve_bimatrix(np.zeros((1, 4)), np.array([[1.0, 3.0, 3.0, 2.0]]))
    np.testing.assert_array_equal(eq.row, [1.0])
    np.testing.assert_array_equal(eq.col, [0.0, 1.0, 0.0, 0.0])


def test_scale_and_shift_do_not_change_the_answer():
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    base = solve_bimatrix(A, B)
    scaled = solve_bimatrix(1e6 * A + 7.0, 1e-6 * B - 3.0)
    np.testing.assert_allclose(scaled.row, base.row, atol=1e-9)
    np.testing.assert_allclose(scaled.col, base.col, atol=1e-9)
    assert scaled.nash_gap <= 1e-9 * 1e6 * np.ptp(A)  # the tolerance is relative to the payoff range


def negotiation_game(m: int, n: int, seed: int, dim: int = 16):
    rng = np.random.default_rng(seed)
    pool_a, pool_b = rng.normal(size=(m, dim)), rng.normal(size=(n, dim))
    opinion_a, opinion_b = rng.normal(size=dim), rng.normal(size=dim)
    return payoff_matrices(pool_a, pool_b, opinion_a, opinion_b, UtilityWeights())


@pytest.mark.parametrize("seed", range(5))
def test_large_pool_through_replicator_dynamics(seed):
    # 20×20 is beyond exhaustive search. The NCN meta-game is a potential game, where replicator
    # dynamics converge; the brief's bar is a gap below 1e-3, and the polished result is exact.
    A, B = negotiation_game(20, 20, seed)
    eq = solve_bimatrix(A, B)
    assert eq.method == "replicator"
    assert eq.nash_gap < 1e-3 and independent_gap(A, B, eq.row, eq.col) < 1e-9
    explicit = solve_bimatrix(A, B, "replicator")
    assert explicit.method == "replicator" and explicit.nash_gap < 1e-9


def test_large_general_game_still_solved():
    # Replicator dynamics can cycle on a general game; auto then falls back to Lemke–Howson.
    rng = np.random.default_rng(11)
    A, B = rng.normal(size=(14, 13)), rng.normal(size=(14, 13))
    eq = solve_bimatrix(A, B)
    assert eq.nash_gap < 1e-6 and independent_gap(A, B, eq.row, eq.col) < 1e-6


def test_nash_gap_by_hand():
    pennies = np.array([[1.0, -1.0], [-1.0, 1.0]])
    pure = np.array([1.0, 0.0])
    assert nash_gap(pennies, -pennies, pure, pure) == pytest.approx(2.0)  # the column player gains 2
    assert nash_gap(pennies, -pennies, np.full(2, 0.5), np.full(2, 0.5)) == pytest.approx(0.0)
    eq = solve_bimatrix(pennies, -pennies)
    np.testing.assert_allclose(eq.row, [0.5, 0.5])
    np.testing.assert_allclose(eq.col, [0.5, 0.5])


def test_equilibrium_is_read_only():
    eq = solve_bimatrix(HAND_A, HAND_B)
    with pytest.raises(ValueError):
        eq.row[0] = 1.0


@pytest.mark.parametrize(
    "A, B, method, message",
    [
        (np.ones((2, 2)), np.ones((2, 3)), "auto", "shape"),
        (np.ones((0, 2)), np.ones((0, 2)), "auto", "non-empty"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "auto", "NaN"),
        (np.ones((2, 2)), np.ones((2, 2)), "simplex", "unknown"),
        (np.ones((20, 20)), np.ones((20, 20)), "support_enumeration", "support pairs"),
    ],
)
def test_bad_input_is_named(A, B, method, message):
    with pytest.raises(ValueError, match=message):
        solve_bimatrix(A, B, method)
