"""Survey alignment: how well a model's answer distribution matches a country's (GlobalOpinionQA).

Four per-question scores, each comparing ``p_gen`` (the model's probability over the options)
with ``p_gold`` (the country's answer shares):

- ``s_align`` — Cultural Palette's score, ``(1 − JSD) × 100`` with the Jensen–Shannon
  *divergence* in log base 2 (so it lies in [0, 100]).
- ``js_similarity`` — Durmus et al. / Modular Pluralism, ``(1 − JS distance) × 100`` where the
  JS *distance* is ``sqrt(JSD)`` in log base 2. It is always ≤ ``s_align``; the Cultural Palette
  paper calls its score a "distance" but its formula is the divergence, so the kit reports both.
- ``js_similarity_e`` — the same with the natural log, as the Modular Pluralism release computes
  it (scipy's ``jensenshannon`` at its default base): ``(1 − sqrt(JSD · ln 2)) × 100``, higher
  than ``js_similarity`` for the same distributions, so the kit's numbers can sit beside that code's.
- ``argmax_agree`` — whether the most likely options coincide, in [0, 1].

``score_table`` averages them per (agent, country) with percentile-bootstrap CIs over questions;
``reference_rows`` makes the rows of three reference "agents" that go into the same tables (a
uniform answer, the other countries' mean, and the neighbour prior), and
``entropy_matched_reference`` a fourth from a model's own answers, flattened toward uniform until each
has the other-countries mean's entropy: a row that gains on it gained by flattening, not by knowing;
``paired_difference`` compares two agents question by question. Every interval is a percentile of the
bootstrap distribution of a (weighted) mean of the scores, so it lies inside the score's range.

An answer whose probability on the option letters fell below ``evals.min_label_mass`` (or is 0) is
*missing* (:func:`apply_label_floor`: ``p_gen`` None), never the uniform answer a renormalised near-zero
mass gives: tables leave it out and count it per row (``missing``); a verdict scores it as the score's
worst value (``kit.metrics.scorers``), so a method that stops answering in format is not credited.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import rel_entr

from kit.data.countries import base_country
from kit.data.cultures import region_of
from kit.metrics.verdicts import MIN_ITEMS
from kit.metrics.verdicts import verdict as verdict_of

log = logging.getLogger(__name__)

UNIFORM_AGENT = "uniform"
OTHER_COUNTRIES_AGENT = "other-countries mean"
NEIGHBOUR_AGENT = "neighbour prior"
ENTROPY_AGENT = "entropy-matched"
WORLD_REFERENCES = (UNIFORM_AGENT, OTHER_COUNTRIES_AGENT, NEIGHBOUR_AGENT)  # no model: from the survey alone
REFERENCES = (*WORLD_REFERENCES, ENTROPY_AGENT)
SCORES = ("s_align", "js_similarity", "js_similarity_e", "argmax_agree")
_ROW_KEYS = ("agent", "country", "question_id", "p_gen", "p_gold")
_ITEM_FIELDS = "items need question_id, country, options, distribution"


def _distribution(p: Any, name: str) -> np.ndarray:
    """A 1-D, finite, non-negative array with positive mass, renormalised to sum to 1."""
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of probabilities, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold finite non-negative values, got {arr.tolist()}")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"{name} has no probability mass (all zeros); give at least one positive value")
    return arr / total


def _pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    p_arr, q_arr = _distribution(p, "p"), _distribution(q, "q")
    if p_arr.shape != q_arr.shape:
        raise ValueError(f"p and q must cover the same options, got lengths {p_arr.size} and {q_arr.size}")
    return p_arr, q_arr


def js_divergence(p: Any, q: Any, base: float = 2) -> float:
    """Jensen–Shannon divergence ``½KL(P‖M) + ½KL(Q‖M)``, ``M = (P+Q)/2``, in log ``base``.

    Inputs are renormalised; zero entries contribute 0 (``0·log 0 = 0``). With base 2 the value
    lies in [0, 1].
    """
    p_arr, q_arr = _pair(p, q)
    m = (p_arr + q_arr) / 2
    jsd = 0.5 * (rel_entr(p_arr, m).sum() + rel_entr(q_arr, m).sum()) / np.log(base)
    # Rounding can push the sum a hair outside its bounds; clip so sqrt() and (1 − x) stay sane.
    return float(np.clip(jsd, 0.0, np.log(2) / np.log(base)))


def s_align(p_gen: Any, p_gold: Any) -> float:
    """Cultural Palette alignment ``(1 − ½KL(P_gen‖M) − ½KL(P_gold‖M)) × 100``, log base 2, in [0, 100]."""
    return (1.0 - js_divergence(p_gen, p_gold, base=2)) * 100.0


def js_similarity(p: Any, q: Any) -> float:
    """``(1 − JS distance) × 100`` with JS distance ``= sqrt(JSD)`` in log base 2, in [0, 100].

    Equals ``(1 − scipy.spatial.distance.jensenshannon(p, q, base=2)) × 100``.
    """
    return (1.0 - np.sqrt(js_divergence(p, q, base=2))) * 100.0


def js_similarity_e(p: Any, q: Any) -> float:
    """``(1 − JS distance) × 100`` with the natural log: ``(1 − scipy.spatial.distance.jensenshannon(p, q)) × 100``,
    the Modular Pluralism release's score (scipy's default base e), in [0, 100]."""
    return (1.0 - np.sqrt(js_divergence(p, q, base=np.e))) * 100.0


def argmax_agree(p: Any, q: Any, atol: float = 1e-9) -> float:
    """Agreement of the most likely options, in [0, 1].

    Ties (options within ``atol`` of the maximum after renormalising) are broken uniformly at
    random on each side, and the expected agreement is returned: ``|A ∩ B| / (|A|·|B|)`` for tie
    sets ``A`` and ``B``. So a unique shared mode scores 1, and a side that is flat over k options
    is credited 1/k — first-index argmax would instead favour whichever option is listed first.
    """
    p_arr, q_arr = _pair(p, q)
    top_p = p_arr >= p_arr.max() - atol
    top_q = q_arr >= q_arr.max() - atol
    return float(np.sum(top_p & top_q) / (top_p.sum() * top_q.sum()))


def bootstrap_ci(
    values: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[float, float]:
    """Percentile-bootstrap ``(1 − alpha)`` confidence interval of the (weighted) mean of ``values``.

    With ``groups``, whole groups are resampled (a cluster bootstrap; the statistic is the mean of
    all values in the drawn groups), for values that are not independent — e.g. one question
    asked in several countries. With ``weights`` the statistic is ``Σ w·x / Σ w`` over what was
    drawn (e.g. so that every country counts once). Either way each bootstrap statistic is a
    weighted mean of the values, so the interval lies within their range. Returns ``(nan, nan)``
    for fewer than two units, where a bootstrap says nothing. Uses numpy's ``default_rng(seed)``,
    so results are reproducible.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"values must be a 1-D sequence of finite numbers, got shape {arr.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    w = np.ones_like(arr) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != arr.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or (arr.size and w.sum() <= 0):
        raise ValueError(
            f"weights must be one finite non-negative number per value with a positive sum, got {w!r}"
        )
    if groups is None:
        sums, mass = arr * w, w
    else:
        if len(groups) != arr.size:
            raise ValueError(f"groups must have one label per value, got {len(groups)} for {arr.size} values")
        _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        sums, mass = np.bincount(codes, weights=arr * w), np.bincount(codes, weights=w)
    if sums.size < 2:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, sums.size, size=(n_boot, sums.size))
    drawn = mass[idx].sum(axis=1)
    # a draw of only zero-weight units has no statistic; drop it (it cannot happen without zero weights)
    means = sums[idx].sum(axis=1)[drawn > 0] / drawn[drawn > 0]
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def _check_row(row: Mapping[str, Any]) -> None:
    missing = [k for k in _ROW_KEYS if k not in row]
    if missing:
        raise ValueError(f"score row is missing keys {missing}; each row needs {list(_ROW_KEYS)}")


def below_floor(row: Mapping[str, Any], min_label_mass: float) -> bool:
    """Whether an answer row's letter mass says it is no answer: 0, or below ``min_label_mass`` (rows that
    carry no ``letter_mass`` — references — always answer)."""
    mass = row.get("letter_mass")
    return mass is not None and (not mass > 0 or mass < min_label_mass)


def apply_label_floor(rows: Iterable[Mapping[str, Any]], min_label_mass: float) -> list[dict[str, Any]]:
    """The rows, each answer below the floor (:func:`below_floor`) made *missing*: ``p_gen`` None and
    ``missing`` True. Nothing is dropped: the tables count what is missing per row."""
    if not 0 <= min_label_mass <= 1:
        raise ValueError(f"min_label_mass must lie in [0, 1], got {min_label_mass}")
    return [
        {**r, "p_gen": None, "missing": True} if below_floor(r, min_label_mass) else dict(r) for r in rows
    ]


def missing_answers(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Agent → how many of its rows are missing (``p_gen`` None), every agent named (0 when none)."""
    out: dict[str, int] = {}
    for r in rows:
        out[r["agent"]] = out.get(r["agent"], 0) + (r.get("p_gen") is None)
    return out


def per_question_scores(rows: Iterable[Mapping[str, Any]], missing: str = "drop") -> pd.DataFrame:
    """One line per row: agent, country, question_id and the four scores.

    A missing answer (``p_gen`` None) is left out (``missing="drop"``) or scored as each score's worst
    value (``missing="worst"``, ``kit.metrics.scorers``), where a failure must count against its agent.
    Raises on a repeated (agent, country, question_id), which would silently double-weight it.
    """
    from kit.metrics.scorers import worst

    if missing not in ("drop", "worst"):
        raise ValueError(f"missing must be 'drop' or 'worst', got {missing!r}")
    records = []
    seen: set[tuple[Any, Any, Any]] = set()
    for row in rows:
        _check_row(row)
        key = (row["agent"], row["country"], row["question_id"])
        if key in seen:
            raise ValueError(
                f"duplicate score row for (agent, country, question_id) = {key}; keep one per question"
            )
        seen.add(key)
        p_gen, p_gold = row["p_gen"], row["p_gold"]
        if p_gen is None:
            if missing == "worst":
                records.append(
                    {
                        "agent": key[0],
                        "country": key[1],
                        "question_id": key[2],
                        **{score: worst(score) for score in SCORES},
                    }
                )
            continue
        records.append(
            {
                "agent": key[0],
                "country": key[1],
                "question_id": key[2],
                "s_align": s_align(p_gen, p_gold),
                "js_similarity": js_similarity(p_gen, p_gold),
                "js_similarity_e": js_similarity_e(p_gen, p_gold),
                "argmax_agree": argmax_agree(p_gen, p_gold),
            }
        )
    return pd.DataFrame.from_records(records, columns=["agent", "country", "question_id", *SCORES])


def score_table(
    rows: Iterable[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Per (agent, country): ``n`` questions answered, ``missing`` answers left out, and for each score its
    mean and bootstrap CI over the answered ones.

    ``rows`` are dicts with keys agent, country, question_id, p_gen (None: missing), p_gold. Columns: agent,
    country, n, missing, then ``<score>``, ``<score>_ci_low``, ``<score>_ci_high`` for s_align, js_similarity,
    js_similarity_e (0–100) and argmax_agree (0–1).
    """
    rows = list(rows)
    scores = per_question_scores(rows)
    lost: dict[tuple[Any, Any], int] = {}
    for r in rows:
        lost[(r["agent"], r["country"])] = lost.get((r["agent"], r["country"]), 0) + (r.get("p_gen") is None)
    columns = ["agent", "country", "n", "missing"] + [
        f"{s}{suffix}" for s in SCORES for suffix in ("", "_ci_low", "_ci_high")
    ]
    groups = dict(iter(scores.groupby(["agent", "country"], sort=True)))
    records = []
    for agent, country in sorted(lost, key=lambda k: (str(k[0]), str(k[1]))):
        group = groups.get((agent, country), scores.iloc[0:0])
        record: dict[str, Any] = {
            "agent": agent,
            "country": country,
            "n": len(group),
            "missing": lost[(agent, country)],
        }
        for score in SCORES:
            values = group[score].to_numpy()
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha)
            record.update(
                {
                    score: float(values.mean()) if len(values) else float("nan"),
                    f"{score}_ci_low": low,
                    f"{score}_ci_high": high,
                }
            )
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


def _get(item: Any, name: str) -> Any:
    """Read a field from a dataclass-like object or a mapping."""
    if isinstance(item, Mapping):
        if name not in item:
            raise ValueError(f"opinion item is missing field {name!r}; {_ITEM_FIELDS}")
        return item[name]
    if not hasattr(item, name):
        raise ValueError(f"opinion item {item!r} has no attribute {name!r}; {_ITEM_FIELDS}")
    return getattr(item, name)


def _gold_by_question(items: Iterable[Any]) -> dict[Any, dict[Any, np.ndarray]]:
    """question_id → country → renormalised gold distribution, checked against the options."""
    gold: dict[Any, dict[Any, np.ndarray]] = defaultdict(dict)
    for item in items:
        qid, country = _get(item, "question_id"), _get(item, "country")
        options = list(_get(item, "options"))
        dist = _distribution(_get(item, "distribution"), f"distribution of {qid!r}/{country!r}")
        if dist.size != len(options):
            raise ValueError(
                f"item {qid!r}/{country!r} has {len(options)} options but {dist.size} probabilities; make them match"
            )
        if country in gold[qid]:
            raise ValueError(f"duplicate opinion item for question {qid!r}, country {country!r}; keep one")
        gold[qid][country] = dist
    return gold


def uniform_reference(items: Iterable[Any], agent: str = UNIFORM_AGENT) -> list[dict[str, Any]]:
    """Score rows for a model that spreads its probability evenly over each question's options."""
    return [
        {
            "agent": agent,
            "country": country,
            "question_id": qid,
            "p_gen": np.full(dist.size, 1.0 / dist.size),
            "p_gold": dist,
        }
        for qid, by_country in _gold_by_question(items).items()
        for country, dist in by_country.items()
    ]


def other_countries_reference(
    items: Iterable[Any], agent: str = OTHER_COUNTRIES_AGENT
) -> list[dict[str, Any]]:
    """Score rows whose prediction for (question, country) is the mean of the other countries' gold.

    Each gold distribution is renormalised before averaging; every sample of the target country
    ("India", "India (Non-national sample)", …) is left out; a (question, country) that no other
    country answered gets no row. It is the bar a model must clear to show country-specific
    knowledge rather than a generic world answer.
    """
    rows = []
    for qid, by_country in _gold_by_question(items).items():
        sizes = {dist.size for dist in by_country.values()}
        if len(sizes) > 1:
            raise ValueError(f"question {qid!r} has different option counts across countries {sorted(sizes)}")
        for country, dist in by_country.items():
            # every sample of the target country is left out (national, non-national, current national)
            others = [d for c, d in by_country.items() if base_country(c) != base_country(country)]
            if others:
                p_gen = np.mean(others, axis=0)
                rows.append(
                    {"agent": agent, "country": country, "question_id": qid, "p_gen": p_gen, "p_gold": dist}
                )
    return rows


def _pairwise_js_similarity(dists: np.ndarray) -> np.ndarray:
    """``js_similarity`` of every pair of rows of ``dists`` (countries × options, rows summing to 1)."""
    p, q = dists[:, None, :], dists[None, :, :]
    m = (p + q) / 2
    jsd = 0.5 * (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)) / np.log(2)
    return (1.0 - np.sqrt(np.clip(jsd, 0.0, 1.0))) * 100.0


def _similarity_sums(
    gold: Mapping[Any, Mapping[Any, np.ndarray]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sorted country names, Σ js_similarity, count of shared questions) of every pair over ``gold``'s questions."""
    names = sorted({c for by_country in gold.values() for c in by_country})
    index = {c: i for i, c in enumerate(names)}
    total, count = np.zeros((len(names), len(names))), np.zeros((len(names), len(names)))
    for by_country in gold.values():
        if len(by_country) < 2 or len({d.size for d in by_country.values()}) > 1:
            continue
        at = np.array([index[c] for c in by_country])
        total[np.ix_(at, at)] += _pairwise_js_similarity(np.stack(list(by_country.values())))
        count[np.ix_(at, at)] += 1
    return names, total, count


def country_similarity(items: Iterable[Any], min_shared: int = 3) -> dict[tuple[str, str], float]:
    """(country, other country) → the mean js_similarity of their answers over the questions both answered
    in ``items`` (the train side of a split), for pairs that share at least ``min_shared`` questions and are
    not samples of one country. Symmetric; each pair is listed both ways."""
    names, total, count = _similarity_sums(_gold_by_question(items))
    base = [base_country(c) for c in names]
    return {
        (a, b): float(total[i, j] / count[i, j])
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if count[i, j] >= min_shared and base[i] != base[j]
    }


def neighbour_prior_reference(
    train_items: Iterable[Any],
    test_items: Iterable[Any],
    k: int = 5,
    min_shared: int = 3,
    agent: str = NEIGHBOUR_AGENT,
) -> list[dict[str, Any]]:
    """Score rows that predict (question, country) by the mean answer to that question of the ``k`` countries
    whose answers on the *train* questions were most like the country's (:func:`country_similarity`).

    No language model: it knows only which countries answer alike. A cultural agent that cannot beat it has learned
    "countries like this one answered so", not the culture. Similarity never reads a test answer; the prediction
    reads the neighbours' answers to the question itself, as the other-countries mean does. Ties in similarity go
    to the country named first. Where fewer than ``k`` countries that answered the question are neighbours (share
    ``min_shared`` train questions with the country), each missing neighbour counts as the other countries' mean
    answer: the mean of one or two countries' answers is noisier than the world's, and a prior that dropped such
    rows, or averaged them as they are, trailed the other-countries mean it should beat. So it has a row wherever
    the other-countries mean has one (the same rows: a table compares the two on the same questions).
    """
    if k < 1:
        raise ValueError(f"the neighbour prior needs k >= 1 neighbours, got {k}")
    similar = country_similarity(train_items, min_shared)
    rows = []
    for qid, by_country in _gold_by_question(test_items).items():
        for country, dist in by_country.items():
            others = [
                c
                for c in by_country
                if base_country(c) != base_country(country) and by_country[c].size == dist.size
            ]
            if not others:
                continue
            world = np.mean([by_country[c] for c in others], axis=0)
            ranked = sorted(
                (c for c in others if (country, c) in similar), key=lambda c: (-similar[(country, c)], c)
            )[:k]
            p_gen = (np.sum([by_country[c] for c in ranked], axis=0) + (k - len(ranked)) * world) / k
            rows.append(
                {
                    "agent": agent,
                    "country": country,
                    "question_id": qid,
                    "p_gen": p_gen,
                    "p_gold": dist,
                    "neighbours": ranked,
                }
            )
    return rows


# the neighbour prior's settings cross-validation chooses among (references.neighbour_k / min_shared: cv)
NEIGHBOUR_K_GRID = (1, 2, 3, 5, 8, 13, 20)
NEIGHBOUR_DEFAULT = (5, 3)  # (k, min_shared) where there is nothing to cross-validate on
MIN_SHARED_GRID = (1, 2, 3, 5, 10, 20)
_CHOSEN: dict[str, tuple[int, int, pd.DataFrame]] = {}


def choose_neighbours(
    train_items: Iterable[Any],
    folds: int = 5,
    seed: int = 0,
    ks: Sequence[int] = NEIGHBOUR_K_GRID,
    shared: Sequence[int] = MIN_SHARED_GRID,
) -> tuple[int, int, pd.DataFrame]:
    """``(k, min_shared)`` of the neighbour prior by ``folds``-fold cross-validation *inside the train split*:
    the train questions are split by stem into folds (``kit.run.seeds``); each fold's answers are predicted from
    the similarity of the other folds' questions, and the pair with the highest mean js_similarity over every
    predicted (country, question) row wins (ties: the smaller k, then the smaller min_shared). Never reads a test
    answer. Also returns the grid's scores (columns k, min_shared, js_similarity, rows). Cached per train set."""
    from kit.run import seeds

    items = list(train_items)
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    import hashlib

    key = hashlib.sha256(
        "|".join(
            [str(folds), str(seed), repr(tuple(ks)), repr(tuple(shared))]
            + sorted(
                f"{_get(it, 'question_id')}/{_get(it, 'country')}/{tuple(_get(it, 'distribution'))}"
                for it in items
            )
        ).encode()
    ).hexdigest()
    if key in _CHOSEN:
        return _CHOSEN[key]
    gold = _gold_by_question(items)
    stems = {}
    for it in items:
        stems[_get(it, "question_id")] = str(getattr(it, "stem", None) or _get(it, "question_id"))
    fold_of = {q: int(seeds.unit(seed, "neighbour-cv", stems[q]) * folds) for q in gold}
    ks = sorted(set(ks))
    totals: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for f in range(folds):
        fit = {q: g for q, g in gold.items() if fold_of[q] != f}
        held = {q: g for q, g in gold.items() if fold_of[q] == f}
        if not fit or not held:
            continue
        names, total, count = _similarity_sums(fit)
        index = {c: i for i, c in enumerate(names)}
        base = [base_country(c) for c in names]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_sim = total / count
        for m in shared:
            for by_country in held.values():
                scores = _fold_scores(by_country, index, base, np.where(count >= m, mean_sim, np.nan), ks)
                for k, values in scores.items():
                    totals[(k, m)].append(values)
    grid = pd.DataFrame(
        [
            {
                "k": k,
                "min_shared": m,
                "js_similarity": float(np.concatenate(v).mean()),
                "rows": int(sum(len(x) for x in v)),
            }
            for (k, m), v in totals.items()
            if sum(len(x) for x in v)
        ]
    )
    if grid.empty:  # nothing to cross-validate on: no train question two countries answered
        log.warning(
            "the neighbour prior's cross-validation found no train question two countries answered; it uses "
            "k=%d, min_shared=%d (where every neighbour is missing it is the other countries' mean)",
            *NEIGHBOUR_DEFAULT,
        )
        return (*NEIGHBOUR_DEFAULT, grid)
    best = grid.sort_values(["js_similarity", "k", "min_shared"], ascending=[False, True, True]).iloc[0]
    _CHOSEN[key] = (int(best["k"]), int(best["min_shared"]), grid)
    return _CHOSEN[key]


def _fold_scores(
    by_country: Mapping[str, np.ndarray],
    index: Mapping[str, int],
    base: Sequence[str],
    sim: np.ndarray,
    ks: Sequence[int],
) -> dict[int, np.ndarray]:
    """js_similarity of the neighbour prior's prediction for every country of one question, for each ``k``: the same
    rule as :func:`neighbour_prior_reference` (countries unknown to the fit's similarity have no neighbour)."""
    names = list(by_country)
    dists = (
        np.stack([by_country[c] for c in names]) if len({d.size for d in by_country.values()}) == 1 else None
    )
    out: dict[int, list[float]] = {k: [] for k in ks}
    if dists is None:
        return {k: np.array([]) for k in ks}
    idx = [index.get(c) for c in names]
    bases = [base_country(c) for c in names]
    for i in range(len(names)):
        others = [j for j in range(len(names)) if bases[j] != bases[i]]
        if not others:
            continue
        world = dists[others].mean(axis=0)
        sims = [
            (sim[idx[i], idx[j]] if idx[i] is not None and idx[j] is not None else np.nan, names[j], j)
            for j in others
        ]
        ranked = [
            j for s_, _, j in sorted((t for t in sims if not np.isnan(t[0])), key=lambda t: (-t[0], t[1]))
        ]
        cum = np.cumsum(dists[ranked], axis=0) if ranked else np.zeros((0, dists.shape[1]))
        preds = []
        for k in ks:
            n = min(k, len(ranked))
            preds.append(((cum[n - 1] if n else 0) + (k - n) * world) / k)
        p = np.stack(preds)
        q = np.broadcast_to(dists[i], p.shape)
        mid = (p + q) / 2
        jsd = 0.5 * (rel_entr(p, mid).sum(-1) + rel_entr(q, mid).sum(-1)) / np.log(2)
        for k, v in zip(ks, (1.0 - np.sqrt(np.clip(jsd, 0.0, 1.0))) * 100.0):
            out[k].append(float(v))
    return {k: np.array(v) for k, v in out.items()}


def prior_check(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "js_similarity",
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
) -> dict[str, Any]:
    """Whether the neighbour prior beats the other-countries mean on the rows both scored (paired, as every verdict):
    ``{"diff", "ci_low", "ci_high", "n", "verdict", "line"}``, ``line`` saying so in words when it does not."""
    present = {r.get("agent") for r in rows}
    if not {NEIGHBOUR_AGENT, OTHER_COUNTRIES_AGENT} <= present:
        return {
            "diff": None,
            "ci_low": None,
            "ci_high": None,
            "n": 0,
            "verdict": "no rows",
            "line": "the neighbour prior or the other-countries mean has no row here",
        }
    d = paired_difference(rows, NEIGHBOUR_AGENT, OTHER_COUNTRIES_AGENT, metric, n_boot=n_boot, seed=seed)
    verdict = verdict_of(d.ci_low, d.ci_high, d.n, min_items, better="beats")
    line = (
        ""
        if verdict == "beats"
        else f"the neighbour prior does NOT beat the other-countries mean here ({metric} {d.mean:+.2f} "
        f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}] over {d.n} rows: {verdict}): a reference row, not the strongest bar"
    )
    return {
        "diff": d.mean,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "n": d.n,
        "verdict": verdict,
        "line": line,
    }


def reference_rows(
    train_items: Iterable[Any],
    test_items: Iterable[Any],
    wanted: set[tuple[Any, Any]] | None = None,
    k: int = 5,
    min_shared: int = 3,
) -> list[dict[str, Any]]:
    """The rows of every reference without a model (``WORLD_REFERENCES``) on ``test_items``, kept to the (country, question_id) pairs
    in ``wanted`` (all when None): what every alignment table carries beside its own rows."""
    test_items = list(test_items)
    rows = (
        uniform_reference(test_items)
        + other_countries_reference(test_items)
        + neighbour_prior_reference(train_items, test_items, k, min_shared)
    )
    return [r for r in rows if wanted is None or (r["country"], r["question_id"]) in wanted]


def entropy(p: Any) -> float:
    """Shannon entropy of a distribution, in bits."""
    arr = _distribution(p, "p")
    nz = arr[arr > 0]
    return float(-(nz * np.log2(nz)).sum())


def flatten_to_entropy(p: Any, target_bits: float, tol: float = 1e-9) -> np.ndarray:
    """``(1 − λ)·p + λ·uniform`` with the smallest λ in [0, 1] whose entropy reaches ``target_bits`` (capped at
    the uniform's): ``p`` itself when it is already as flat. Entropy grows monotonically with λ, so a
    bisection finds it."""
    arr = _distribution(p, "p")
    flat = np.full(arr.size, 1.0 / arr.size)
    target = min(float(target_bits), float(np.log2(arr.size)))
    if entropy(arr) >= target - tol:
        return arr
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if entropy((1 - mid) * arr + mid * flat) < target:
            lo = mid
        else:
            hi = mid
    return (1 - hi) * arr + hi * flat


def entropy_matched_reference(
    answers: Iterable[Mapping[str, Any]],
    references: Iterable[Mapping[str, Any]],
    agent: str,
    name: str = ENTROPY_AGENT,
) -> list[dict[str, Any]]:
    """Score rows of ``agent``'s own answers, each flattened toward uniform (:func:`flatten_to_entropy`) to the
    entropy of the other-countries mean's answer to the same (country, question) — what flattening alone
    earns a model that knows what ``agent`` knows. An answer that is missing, or a pair with no
    other-countries row, gets no row."""
    world = {
        (r["country"], r["question_id"]): r["p_gen"]
        for r in references
        if r["agent"] == OTHER_COUNTRIES_AGENT
    }
    rows = []
    for r in answers:
        key = (r["country"], r["question_id"])
        if r["agent"] != agent or r.get("p_gen") is None or key not in world:
            continue
        rows.append(
            {
                "agent": name,
                "country": key[0],
                "question_id": key[1],
                "p_gen": flatten_to_entropy(r["p_gen"], entropy(world[key])),
                "p_gold": r["p_gold"],
            }
        )
    return rows


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``score(agent_a) − score(agent_b)`` over shared (country, question) pairs, with CI."""

    agent_a: str
    agent_b: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    n: int


def paired_verdicts(
    rows: pd.DataFrame,
    method: str,
    score: str,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
    direction: str | None = None,
) -> list[dict]:
    """``method`` minus each other method on the items both scored (``rows``: one row per method and
    ``id``): mean difference, 95 % bootstrap interval, n, and "better" / "worse" when the interval excludes 0
    in the score's direction (``direction``, else the registry's for ``score``, else higher), "no difference"
    when it holds 0, "too few" below ``min_items`` items (:func:`kit.metrics.verdicts.verdict`).

    A row flagged ``failed`` (a column of ``rows``, when present) is the method's failure on that item: it is
    scored as the score's worst value (``kit.metrics.scorers``), so failing on the items it would lose does
    not help a method; where the worst value is unbounded, the item is dropped for both. A score that is
    merely undefined (NaN, not failed) drops the item for both."""
    from kit.metrics.scorers import SCORERS

    known = SCORERS.get(score)
    direction = direction or (known.direction if known else "higher")
    sign = 1.0 if direction == "higher" else -1.0
    rows = rows.copy()
    if "failed" in rows.columns:
        worst = known.worst if known else (-np.inf if direction == "higher" else np.inf)
        failed = rows["failed"].fillna(False).astype(bool)
        rows.loc[failed, score] = worst if np.isfinite(worst) else np.nan
    wide = rows.pivot(index="id", columns="method", values=score)
    out = []
    for other in [m for m in wide.columns if m != method]:
        diffs = (wide[method] - wide[other]).dropna().to_numpy(dtype=float)
        low, high = bootstrap_ci(diffs, n_boot=n_boot, seed=seed)
        verdict = verdict_of(*sorted((sign * low, sign * high)), len(diffs), min_items)
        out.append(
            {
                "against": other,
                "score": score,
                "mean_diff": float(diffs.mean()) if diffs.size else np.nan,
                "ci_low": low,
                "ci_high": high,
                "n": len(diffs),
                "verdict": verdict,
            }
        )
    return out


def paired_difference(
    table_rows: Iterable[Mapping[str, Any]],
    agent_a: str,
    agent_b: str,
    metric: str = "s_align",
    country: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedDifference:
    """Paired comparison of two agents on the (country, question) pairs both answered.

    ``table_rows`` are ``score_table`` input rows. Pass ``country`` to restrict to one country.
    The CI resamples *questions* (a cluster bootstrap): one question asked in several countries
    is one unit, since its differences across countries are not independent. A CI that excludes
    0 means the agents differ on this question set.
    """
    if metric not in SCORES:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(SCORES)}")
    wanted = {agent_a, agent_b}
    # a missing answer of either agent is scored as the worst value: a failure counts against its agent
    scores = per_question_scores(
        (
            r
            for r in table_rows
            if r.get("agent") in wanted and (country is None or r.get("country") == country)
        ),
        missing="worst",
    )
    wide = scores.pivot(index=["country", "question_id"], columns="agent", values=metric)
    if agent_a not in wide or agent_b not in wide:
        raise ValueError(
            f"no rows for agent {agent_a!r} or {agent_b!r}; check the agent names and country filter"
        )
    diffs = (wide[agent_a] - wide[agent_b]).dropna()
    if diffs.empty:
        raise ValueError(
            f"agents {agent_a!r} and {agent_b!r} share no (country, question) pair; nothing to compare"
        )
    question_ids = diffs.index.get_level_values("question_id").tolist()
    low, high = bootstrap_ci(diffs.to_numpy(), n_boot=n_boot, seed=seed, alpha=alpha, groups=question_ids)
    return PairedDifference(agent_a, agent_b, metric, float(diffs.mean()), low, high, int(diffs.size))


def reference_comparison(
    table_rows: Sequence[Mapping[str, Any]],
    kinds: Sequence[str],
    references: Sequence[str] = REFERENCES,
    metric: str = "js_similarity",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_items: int = MIN_ITEMS,
) -> pd.DataFrame:
    """Each kind against each reference on the (country, question) rows both scored, with the paired
    bootstrap interval of the difference (:func:`paired_difference`).

    Columns: kind, reference, n, diff, ci_low, ci_high, and ``verdict`` — ``"beats"`` only when the
    interval lies above 0 over at least ``min_items`` rows, ``"worse"`` when below, ``"no difference"`` when it
    holds 0, ``"too few"`` below ``min_items`` rows (:func:`kit.metrics.verdicts.verdict`), ``"no rows"`` for a
    reference that scored none of these rows. A kind's missing answer (``p_gen`` None) counts as the score's
    worst value on its row, so it cannot drop the questions it would lose. Comparing
    means taken over different countries (a kind that skipped one) would credit or blame the kind
    for the countries' difficulty; pairing removes that.
    """
    rows = []
    present = {r.get("agent") for r in table_rows}
    for kind in kinds:
        for ref in references:
            if kind in REFERENCES:  # a reference row is compared against, never scored as a winner
                rows.append(
                    {
                        "kind": kind,
                        "reference": ref,
                        "n": 0,
                        "diff": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "verdict": "reference",
                    }
                )
                continue
            if (
                ref not in present
            ):  # e.g. a neighbour prior with no neighbour for these countries: said, not hidden
                rows.append(
                    {
                        "kind": kind,
                        "reference": ref,
                        "n": 0,
                        "diff": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "verdict": "no rows",
                    }
                )
                continue
            d = paired_difference(table_rows, kind, ref, metric, n_boot=n_boot, seed=seed, alpha=alpha)
            verdict = verdict_of(d.ci_low, d.ci_high, d.n, min_items, better="beats")
            rows.append(
                {
                    "kind": kind,
                    "reference": ref,
                    "n": d.n,
                    "diff": d.mean,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows, columns=["kind", "reference", "n", "diff", "ci_low", "ci_high", "verdict"])


def continent_table(
    score_rows: Sequence[Mapping], metric: str = "js_similarity", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per row and continent, and overall: the mean over countries of each country's mean score, with a
    bootstrap 95 % interval that resamples questions (one question asked in several countries is one unit).

    Long format: agent, continent (a continent or ``"overall"``), mean, ci_low, ci_high, n.
    """
    scores = per_question_scores(
        {k: r[k] for k in ("agent", "country", "question_id", "p_gen", "p_gold")} for r in score_rows
    )
    scores["continent"] = [region_of(c) for c in scores["country"]]
    out = []
    for agent, group in scores.groupby("agent", sort=False):
        for continent, part in [*group.groupby("continent"), ("overall", group)]:
            by_country = part.groupby("country")[metric].mean()
            # weight each row so every country counts once (the mean of country means), then bootstrap questions
            weights = part["country"].map(1 / part.groupby("country").size()).to_numpy()
            low, high = bootstrap_ci(
                part[metric].to_numpy(),
                n_boot=n_boot,
                seed=seed,
                groups=part["question_id"].tolist(),
                weights=weights,
            )
            out.append(
                {
                    "agent": agent,
                    "continent": continent,
                    "mean": float(by_country.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n": len(part),
                }
            )
    return pd.DataFrame(out)


def between_culture_distance(score_rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """How differently each agent answers as each culture: per agent, the mean JS distance (``100 −
    js_similarity``) between its answers as two countries to the same question, over every pair of
    countries it answered one question for; beside it the same distance between those countries' gold
    answers. A model that stops following the culture instruction drifts to 0 (homogenisation) while
    its gold column stays put. Columns: agent, n (country pairs × questions), model_distance, gold_distance.
    """
    by: dict[tuple[Any, Any], dict[Any, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for r in score_rows:
        if r.get("p_gen") is None:  # a missing answer has no distribution to compare
            continue
        by[(r["agent"], r["question_id"])][r["country"]] = (
            _distribution(r["p_gen"], "p_gen"),
            _distribution(r["p_gold"], "p_gold"),
        )
    out: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for (agent, _), countries in by.items():
        if len(countries) < 2:
            continue
        gen, gold = (np.stack([v[i] for v in countries.values()]) for i in (0, 1))
        upper = np.triu_indices(len(countries), k=1)
        out[agent] += list(
            zip(100.0 - _pairwise_js_similarity(gen)[upper], 100.0 - _pairwise_js_similarity(gold)[upper])
        )
    return pd.DataFrame(
        [
            {
                "agent": a,
                "n": len(v),
                "model_distance": float(np.mean([m for m, _ in v])),
                "gold_distance": float(np.mean([g for _, g in v])),
            }
            for a, v in out.items()
        ],
        columns=["agent", "n", "model_distance", "gold_distance"],
    )
