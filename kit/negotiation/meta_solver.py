"""Nash equilibria of the two-player meta-game over guideline pools, with their Nash gap.

``A[i, j]`` is the row player's payoff and ``B[i, j]`` the column player's when row plays ``i``
and column plays ``j``; pools may differ in size (``m × n``). Three solvers, chosen by size in
``"auto"``:

- ``support_enumeration`` (``C(m+n, m) - 1 ≤ 1000`` support pairs, e.g. up to 6×6): every
  equilibrium with equal-size supports — all of them in a non-degenerate game. We solve the
  indifference equations on the support only and accept a candidate by its Nash gap, because
  nashpy's ``support_enumeration`` compares floats exactly and drops valid equilibria of float
  games (e.g. 4 of the 5 of a random 6×6 game).
- ``lemke_howson`` (up to 12 strategies a side): nashpy's lexicographic tableaux, pivoted from
  every initial dropped label under a pivot cap (on float payoffs nashpy's own loop can cycle
  forever or raise), each end point polished by solving its support exactly. It needs at least
  two strategies a side; smaller games fall through to support enumeration.
- ``replicator`` (larger pools): nashpy's asymmetric replicator dynamics from the uniform profile
  on range-normalised payoffs, then the support it settles on is solved exactly. It converges on
  the NCN meta-game, an exact potential game (see ``kit.negotiation.utility.payoff_matrices``);
  on general games it may cycle.

The named method runs first; the others follow only while the gap exceeds ``1e-9`` of the payoff
range, so every result is the best the solvers find and ``Equilibrium.method`` names the one that
found it. Among equilibria, the kit picks the largest total payoff ``xᵀ(A+B)y`` with each player's
payoffs rescaled to [0, 1] (so neither player's scale decides), then the first found (smaller
supports first, then lexicographic supports, then lower Lemke–Howson label).

Unlike the anchor code, the result is never mixed with the uniform strategy, and the column
player's payoffs are ``xᵀB`` (the anchor's ``Bᵀa`` fails on non-square pools).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
from nashpy.learning.replicator_dynamics import asymmetric_replicator_dynamics
from nashpy.linalg.tableau import create_col_tableau, create_row_tableau

log = logging.getLogger(__name__)

METHODS = ("auto", "support_enumeration", "lemke_howson", "replicator")
SUPPORT_ENUMERATION_MAX_PAIRS = 1000  # auto: exhaustive search up to ~6×6 (923 pairs), < 0.1 s
SUPPORT_ENUMERATION_HARD_LIMIT = 200_000  # explicit requests: ~10×10, a few seconds
LEMKE_HOWSON_MAX_SIDE = 12
TOL = 1e-9  # Nash gap, in units of each player's payoff range, that counts as an equilibrium
REPLICATOR_HORIZON = 1000.0  # time on range-normalised payoffs; strict equilibria attract like e^{-t·margin}
SUPPORT_MASS = 1e-6  # replicator mass below which a strategy counts as extinct when polishing

Profile = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class Equilibrium:
    """Mixed strategies of the row and column player, their Nash gap and the solver that found them."""

    row: np.ndarray
    col: np.ndarray
    nash_gap: float
    method: str

    def payoffs(self, A: np.ndarray, B: np.ndarray) -> tuple[float, float]:
        """Expected payoffs ``(xᵀAy, xᵀBy)`` of the row and column player."""
        return float(self.row @ np.asarray(A, float) @ self.col), float(
            self.row @ np.asarray(B, float) @ self.col
        )


def nash_gap(A: np.ndarray, B: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Exploitability ``max(max_i (Ay)_i − xᵀAy, max_j (xᵀB)_j − xᵀBy)``; 0 exactly at an equilibrium."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    x, y = np.asarray(x, float), np.asarray(y, float)
    row_values, col_values = A @ y, x @ B
    return float(max(row_values.max() - x @ row_values, col_values.max() - col_values @ y))


def solve_bimatrix(A: np.ndarray, B: np.ndarray, method: str = "auto") -> Equilibrium:
    """A Nash equilibrium of the bimatrix game ``(A, B)``; see the module docstring for ``method``."""
    A, B = _validate(A, B)
    if method not in METHODS:
        raise ValueError(f"method {method!r} is unknown; use one of {METHODS}")
    m, n = A.shape
    pairs = math.comb(m + n, m) - 1
    if method == "support_enumeration" and pairs > SUPPORT_ENUMERATION_HARD_LIMIT:
        raise ValueError(
            f"support enumeration on a {m}×{n} game needs {pairs:.2e} support pairs; "
            "use method='lemke_howson' or 'auto'"
        )
    if method == "auto":
        method = (
            "support_enumeration"
            if pairs <= SUPPORT_ENUMERATION_MAX_PAIRS
            else "lemke_howson"
            if max(m, n) <= LEMKE_HOWSON_MAX_SIDE
            else "replicator"
        )
    fallbacks = [
        name
        for name in METHODS[1:]
        if name != method and (name != "support_enumeration" or pairs <= SUPPORT_ENUMERATION_MAX_PAIRS)
    ]

    # Payoffs rescaled to [0, 1] per player: same equilibria, scale-free tolerances.
    An, Bn = _normalise(A), _normalise(B)
    best: tuple[Profile, str] | None = None
    for name in [method, *fallbacks]:
        found = _choose(_SOLVERS[name](An, Bn), An, Bn)
        if found is not None and (best is None or nash_gap(An, Bn, *found) < nash_gap(An, Bn, *best[0])):
            best = (found, name)
        if best is not None and nash_gap(An, Bn, *best[0]) <= TOL:
            break
        log.info("%s left no equilibrium within %g on a %d×%d game", name, TOL, m, n)
    assert best is not None, "the replicator always returns a profile"
    (x, y), name = best
    x.setflags(write=False)
    y.setflags(write=False)
    return Equilibrium(row=x, col=y, nash_gap=nash_gap(A, B, x, y), method=name)


def enumerate_equilibria(A: np.ndarray, B: np.ndarray) -> list[Profile]:
    """All equilibria with equal-size supports (every one, for a non-degenerate game), in search order.

    Exponential in the pool sizes: meant for games up to about 8×8.
    """
    A, B = _validate(A, B)
    return _support_enumeration(_normalise(A), _normalise(B))


def _validate(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    A, B = np.asarray(A, dtype=float), np.asarray(B, dtype=float)
    if A.ndim != 2 or A.shape != B.shape or A.size == 0:
        raise ValueError(
            f"payoff matrices must be non-empty and of one 2-D shape; got A {A.shape} and B {B.shape}"
        )
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        raise ValueError("payoff matrices contain NaN or inf; replace them with finite payoffs")
    return A, B


def _normalise(M: np.ndarray) -> np.ndarray:
    spread = M.max() - M.min()
    return (M - M.min()) / spread if spread > 0 else np.zeros_like(M)


def _choose(candidates: list[Profile], A: np.ndarray, B: np.ndarray) -> Profile | None:
    """Smallest gap (all gaps ≤ TOL tie), then largest total (normalised) payoff, then first."""
    if not candidates:
        return None
    gaps = np.array([max(nash_gap(A, B, x, y), TOL) for x, y in candidates])
    totals = np.array([x @ (A + B) @ y for x, y in candidates])
    tied = np.flatnonzero(gaps <= gaps.min())
    top = tied[totals[tied] >= totals[tied].max() - 1e-12]
    return candidates[int(top[0])]


def _indifferent(M: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]) -> np.ndarray | None:
    """The mix over ``cols`` that makes the player with payoffs ``M`` indifferent among ``rows``."""
    k = len(rows)
    system = np.zeros((k + 1, k + 1))
    system[:k, :k] = M[np.ix_(rows, cols)]
    system[:k, k] = -1.0  # every row in the support earns the same value v
    system[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        solution = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return None
    mix = solution[:k]
    if not np.isfinite(mix).all() or (mix < -1e-12).any():
        return None
    full = np.zeros(M.shape[1])
    full[list(cols)] = np.clip(mix, 0.0, None)
    return full / full.sum()


def _solve_on_support(
    A: np.ndarray, B: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]
) -> Profile | None:
    y = _indifferent(A, rows, cols)
    x = None if y is None else _indifferent(B.T, cols, rows)
    if x is None or nash_gap(A, B, x, y) > TOL:
        return None
    return x, y


def _support_enumeration(A: np.ndarray, B: np.ndarray) -> list[Profile]:
    m, n = A.shape
    found = []
    for k in range(1, min(m, n) + 1):
        for rows in itertools.combinations(range(m), k):
            for cols in itertools.combinations(range(n), k):
                profile = _solve_on_support(A, B, rows, cols)
                if profile is not None:
                    found.append(profile)
    return found


def _lemke_howson_path(A: np.ndarray, B: np.ndarray, label: int) -> Profile | None:
    """nashpy's Lemke–Howson loop with a pivot cap; ``None`` where it cycles or breaks down."""
    col_tableau, row_tableau = create_col_tableau(A, True), create_row_tableau(B, True)
    tableaux = (
        (row_tableau, col_tableau) if label in row_tableau.non_basic_variables else (col_tableau, row_tableau)
    )
    entering = label
    try:
        # nashpy pivots "integer" style without dividing by the previous pivot, so on float payoffs
        # the entries grow geometrically; a long path overflows, and we abandon it there.
        with np.errstate(over="raise", divide="ignore", invalid="ignore"):
            for step in range(50 * sum(A.shape)):
                entering = tableaux[step % 2].pivot_and_drop_label(entering)
                if col_tableau.non_basic_variables | row_tableau.non_basic_variables == col_tableau.labels:
                    break
            else:
                return None
            x = row_tableau.to_strategy(col_tableau.non_basic_variables)
            y = col_tableau.to_strategy(row_tableau.non_basic_variables)
    except (ValueError, IndexError, KeyError, ZeroDivisionError, FloatingPointError):
        return None
    if (
        x.shape != (A.shape[0],)
        or y.shape != (A.shape[1],)
        or not (np.isfinite(x).all() and np.isfinite(y).all())
    ):
        return None
    return _clean(x), _clean(y)


def _clean(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 0.0, None)
    return p / p.sum() if p.sum() > 0 else np.full(p.shape, 1.0 / p.size)


def _polish(A: np.ndarray, B: np.ndarray, x: np.ndarray, y: np.ndarray, mass: float) -> Profile:
    """Solve the game restricted to where ``(x, y)`` puts weight; keep whichever profile has the smaller gap."""
    rows, cols = np.flatnonzero(x > mass), np.flatnonzero(y > mass)
    if len(rows) == len(cols):
        exact = _solve_on_support(A, B, tuple(rows), tuple(cols))
        if exact is not None:
            return exact
    if len(rows) * len(cols) < A.size:  # a strictly smaller game: solve it and extend with zeros
        sub = solve_bimatrix(A[np.ix_(rows, cols)], B[np.ix_(rows, cols)])
        x_full, y_full = np.zeros(A.shape[0]), np.zeros(A.shape[1])
        x_full[rows], y_full[cols] = sub.row, sub.col
        if nash_gap(A, B, x_full, y_full) < nash_gap(A, B, x, y):
            return x_full, y_full
    return x, y


def _lemke_howson(A: np.ndarray, B: np.ndarray) -> list[Profile]:
    # nashpy 0.0.43's tableaux often end at a non-equilibrium when the row player has more
    # strategies (cf. drvinceknight/Nashpy#83): pivot the transposed game, players swapped, instead.
    swap = A.shape[0] > A.shape[1]
    game = (B.T, A.T) if swap else (A, B)
    ends = [
        end for end in (_lemke_howson_path(*game, label) for label in range(sum(A.shape))) if end is not None
    ]
    return [_polish(A, B, *((y, x) if swap else (x, y)), 1e-12) for x, y in ends]


def _replicator(A: np.ndarray, B: np.ndarray) -> list[Profile]:
    xs, ys = asymmetric_replicator_dynamics(A, B, timepoints=np.linspace(0.0, REPLICATOR_HORIZON, 100))
    x, y = _clean(xs[-1]), _clean(ys[-1])
    return [_polish(A, B, x, y, SUPPORT_MASS)]


_SOLVERS = {
    "support_enumeration": _support_enumeration,
    "lemke_howson": _lemke_howson,
    "replicator": _replicator,
}
