"""NCN utility of a guideline, the meta-game payoffs over two guideline pools, and the stopping rule.

A guideline ``g`` is scored from sentence embeddings ``E`` as
``U = α·Consist + β·Accept + γ·Nov`` with ``Consist = cos(E(g), E(opinion0))``,
``Accept = Σ_j w̃_j cos(E(g), E(g_opp,j))`` (opponent weights renormalised to sum 1) and
``Nov = 1 − max_k cos(E(g), E(g_own,k))``, the redundancy penalty. Embeddings may come
unnormalised; every row is L2-normalised here, so cosines are dot products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PARTS = ("consist", "accept", "novelty")  # column order of ``utility_matrix``


@dataclass(frozen=True)
class UtilityWeights:
    """Weights α (consistency with the agent's opinion), β (acceptability to the opponent), γ (novelty)."""

    alpha: float = 0.5
    beta: float = 0.3
    gamma: float = 0.2

    def __post_init__(self):
        values = (self.alpha, self.beta, self.gamma)
        if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) == 0:
            raise ValueError(
                f"utility weights (alpha, beta, gamma) = {values} must be finite, non-negative "
                "and not all zero"
            )

    @property
    def vector(self) -> np.ndarray:
        """``[α, β, γ]``, to weight the columns of ``utility_matrix``."""
        return np.array([self.alpha, self.beta, self.gamma])


@dataclass(frozen=True)
class UtilityParts:
    """The three utility terms of one candidate guideline."""

    consist: float
    accept: float
    novelty: float

    def total(self, alpha: float = 0.5, beta: float = 0.3, gamma: float = 0.2) -> float:
        """``α·consist + β·accept + γ·novelty`` (weights validated as in ``UtilityWeights``)."""
        weights = UtilityWeights(alpha, beta, gamma)
        return float(weights.vector @ np.array([self.consist, self.accept, self.novelty]))


def normalise_weights(weights: np.ndarray, size: int) -> np.ndarray:
    """Non-negative weights rescaled to sum 1; uniform when they sum to 0."""
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != (size,):
        raise ValueError(f"expected {size} weights, one per guideline; got {w.size}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and non-negative; got {w.tolist()}")
    return w / w.sum() if w.sum() > 0 else np.full(size, 1.0 / size)


def utility_matrix(
    candidates: np.ndarray,
    opinion0: np.ndarray,
    opp_pool: np.ndarray,
    opp_weights: np.ndarray,
    own_pool: np.ndarray,
) -> np.ndarray:
    """Utility terms of many candidates at once: shape ``(c, 3)``, columns in ``PARTS`` order.

    ``candidates`` is ``(c, d)``, ``opinion0`` ``(d,)``, ``opp_pool`` ``(k, d)`` with ``opp_weights``
    ``(k,)`` (the opponent's meta-strategy), ``own_pool`` ``(m, d)`` and may be empty (novelty 1).
    Totals: ``utility_matrix(...) @ UtilityWeights().vector``.
    """
    if np.size(opp_pool) == 0:
        raise ValueError("opp_pool is empty; acceptability needs at least one opponent guideline")
    cands = _unit_rows(candidates, "candidates")
    d = cands.shape[1]
    opinion = _unit_rows(np.reshape(opinion0, (1, -1)), "opinion0", d)[0]
    opp = _unit_rows(opp_pool, "opp_pool", d)
    consist = cands @ opinion
    accept = (cands @ opp.T) @ normalise_weights(opp_weights, len(opp))
    own = np.asarray(own_pool, dtype=float)
    if own.size == 0:
        novelty = np.ones(len(cands))
    else:
        novelty = 1.0 - (cands @ _unit_rows(own, "own_pool", d).T).max(axis=1)
    return np.stack([consist, accept, novelty], axis=1)


def utility_parts(
    cand: np.ndarray,
    opinion0: np.ndarray,
    opp_pool: np.ndarray,
    opp_weights: np.ndarray,
    own_pool: np.ndarray,
) -> UtilityParts:
    """Utility terms of one candidate embedding ``cand`` ``(d,)``; see ``utility_matrix``."""
    consist, accept, novelty = utility_matrix(
        np.reshape(cand, (1, -1)), opinion0, opp_pool, opp_weights, own_pool
    )[0]
    return UtilityParts(float(consist), float(accept), float(novelty))


def payoff_matrices(
    pool_a_emb: np.ndarray,
    pool_b_emb: np.ndarray,
    opinion_a: np.ndarray,
    opinion_b: np.ndarray,
    weights: UtilityWeights = UtilityWeights(),
) -> tuple[np.ndarray, np.ndarray]:
    """Meta-game payoffs ``(A, B)``, both ``(m, n)``, when A plays guideline ``i`` and B plays ``j``.

    ``A[i, j] = α·cos(a_i, opinion_a) + β·cos(a_i, b_j) + γ·nov_A(i)`` with
    ``nov_A(i) = 1 − max_{k≠i} cos(a_i, a_k)`` (1 for a lone guideline), and symmetrically
    ``B[i, j] = α·cos(b_j, opinion_b) + β·cos(a_i, b_j) + γ·nov_B(j)``. Against a mixed opponent
    ``y`` the acceptability term averages to ``Σ_j y_j cos(a_i, b_j)``, the candidates' Accept.

    Unlike the anchor code, the payoff uses α, β, γ, so an agent's initial guideline (the one
    closest to its own opinion) does not dominate by construction. The game is an exact
    potential game, ``Φ = α·cos(a_i, op_a) + γ·nov_A(i) + α·cos(b_j, op_b) + γ·nov_B(j) + β·cos(a_i, b_j)``:
    it has a pure equilibrium and the replicator solver converges on it.
    """
    if np.size(pool_a_emb) == 0 or np.size(pool_b_emb) == 0:
        raise ValueError("both pools need at least one guideline embedding; one of them is empty")
    a = _unit_rows(pool_a_emb, "pool_a_emb")
    d = a.shape[1]
    b = _unit_rows(pool_b_emb, "pool_b_emb", d)
    op_a = _unit_rows(np.reshape(opinion_a, (1, -1)), "opinion_a", d)[0]
    op_b = _unit_rows(np.reshape(opinion_b, (1, -1)), "opinion_b", d)[0]
    shared = weights.beta * (a @ b.T)
    own_a = weights.alpha * (a @ op_a) + weights.gamma * _pool_novelty(a)
    own_b = weights.alpha * (b @ op_b) + weights.gamma * _pool_novelty(b)
    return own_a[:, None] + shared, own_b[None, :] + shared


def converged(prev_best: tuple[float, float], new_best: tuple[float, float], eps: float = 0.02) -> bool:
    """True when both agents' best new utility moved by less than ``eps`` in ABSOLUTE value.

    The anchor tested the signed change, so any drop counted as convergence.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive; got {eps}")
    if len(prev_best) != 2 or len(new_best) != 2:
        raise ValueError(
            f"expected one best utility per agent (two each); got {prev_best!r} and {new_best!r}"
        )
    return all(abs(new - prev) < eps for prev, new in zip(prev_best, new_best))


def _unit_rows(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    rows = np.asarray(x, dtype=float)
    if rows.ndim != 2 or (dim is not None and rows.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(f"{name} must be a 2-D array of embeddings shaped {want}; got shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError(f"{name} contains NaN or inf; embed the text again")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(
            f"{name} has an all-zero embedding (row {int(np.flatnonzero(norms[:, 0] == 0)[0])}); "
            "cosine is undefined for it"
        )
    return rows / norms


def _pool_novelty(pool: np.ndarray) -> np.ndarray:
    """``1 − max_{k≠i} cos(p_i, p_k)`` for unit rows; 1 for a pool of one."""
    if len(pool) == 1:
        return np.ones(1)
    sims = pool @ pool.T
    np.fill_diagonal(sims, -np.inf)
    return 1.0 - sims.max(axis=1)
