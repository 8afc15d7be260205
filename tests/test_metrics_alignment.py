"""Golden tests for kit.metrics.alignment against scipy and hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import bootstrap, entropy

from kit.metrics.alignment import (
    OTHER_COUNTRIES_AGENT,
    UNIFORM_AGENT,
    argmax_agree,
    bootstrap_ci,
    js_divergence,
    js_similarity,
    other_countries_reference,
    paired_difference,
    per_question_scores,
    s_align,
    score_table,
    uniform_reference,
)

HAND_PAIRS = [
    ([1.0, 0.0], [0.0, 1.0]),
    ([1.0, 0.0], [0.5, 0.5]),
    ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),
    ([0.0, 0.0, 1.0, 0.0], [0.1, 0.4, 0.5, 0.0]),
    ([3, 1, 0], [1, 1, 2]),  # unnormalised: both sides are renormalised
]


def _random_pairs(n: int = 25, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        k = int(rng.integers(2, 8))
        p, q = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
        p[rng.random(k) < 0.3] = 0.0  # zeros exercise 0·log 0 = 0
        if p.sum() == 0:
            p[0] = 1.0
        pairs.append((p, q))
    return pairs


@pytest.mark.parametrize("p, q", HAND_PAIRS + _random_pairs())
def test_js_divergence_matches_scipy(p, q):
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    # Independent route: JSD = H(M) − (H(P) + H(Q)) / 2 and the two KL terms, via scipy.stats.entropy.
    pn, qn = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    m = (pn + qn) / 2
    via_entropy = entropy(m, base=2) - (entropy(pn, base=2) + entropy(qn, base=2)) / 2
    assert js_divergence(p, q) == pytest.approx(via_entropy, abs=1e-12)
    assert js_divergence(p, q, base=math.e) == pytest.approx(0.5 * (entropy(pn, m) + entropy(qn, m)), abs=1e-12)


@pytest.mark.parametrize("p, q", HAND_PAIRS + _random_pairs())
def test_js_similarity_and_s_align_match_scipy(p, q):
    distance = jensenshannon(p, q, base=2)
    assert js_similarity(p, q) == pytest.approx((1 - distance) * 100, abs=1e-9)
    assert s_align(p, q) == pytest.approx((1 - distance**2) * 100, abs=1e-9)
    assert 0 <= js_similarity(p, q) <= s_align(p, q) <= 100
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-15)


def test_s_align_hand_computed_two_options():
    # P = (1, 0), Q = (½, ½), M = (¾, ¼): KL(P‖M) = 2 − log2 3, KL(Q‖M) = 1 − ½ log2 3,
    # so JSD = 3/2 − ¾ log2 3 and S_align = (¾ log2 3 − ½) × 100 ≈ 68.872.
    expected = (0.75 * math.log2(3) - 0.5) * 100
    assert s_align([1, 0], [0.5, 0.5]) == pytest.approx(expected, abs=1e-12)
    assert s_align([1, 0], [0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert s_align([0.3, 0.7], [0.3, 0.7]) == pytest.approx(100.0)
    assert js_similarity([1, 0], [0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_argmax_agree_and_ties():
    assert argmax_agree([0.6, 0.4], [0.9, 0.1]) == 1.0
    assert argmax_agree([0.6, 0.4], [0.1, 0.9]) == 0.0
    # p ties over options 0 and 1; q picks option 0: expected agreement ½.
    assert argmax_agree([0.5, 0.5, 0.0], [1.0, 0.0, 0.0]) == pytest.approx(0.5)
    # Both flat over the same two options: |A∩B| / (|A|·|B|) = 2 / 4.
    assert argmax_agree([1, 1, 0], [2, 2, 1]) == pytest.approx(0.5)
    assert argmax_agree([1, 1, 1], [0, 0, 1]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, 0.5], [0.2, 0.3, 0.5], "same options"),
        ([-0.1, 1.1], [0.5, 0.5], "non-negative"),
        ([0.0, 0.0], [0.5, 0.5], "no probability mass"),
        ([[0.5, 0.5]], [[0.5, 0.5]], "1-D"),
        ([], [], "non-empty"),
        ([np.nan, 1.0], [0.5, 0.5], "finite"),
    ],
)
def test_invalid_distributions_raise(p, q, match):
    with pytest.raises(ValueError, match=match):
        js_divergence(p, q)


def test_bootstrap_ci_hand_cases():
    # Two units {0, 1}: resampled means are 0, ½, 1 with probabilities ¼, ½, ¼ → 95 % CI (0, 1).
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert all(math.isnan(x) for x in bootstrap_ci([5.0]))
    assert bootstrap_ci([1.0, 2.0, 4.0], seed=7) == bootstrap_ci([1.0, 2.0, 4.0], seed=7)


def test_bootstrap_ci_matches_scipy_percentile():
    values = np.random.default_rng(3).gamma(2.0, 1.5, size=60)
    low, high = bootstrap_ci(values, n_boot=20000, seed=0)
    ref = bootstrap(
        (values,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert low == pytest.approx(ref.low, abs=0.1 * se)
    assert high == pytest.approx(ref.high, abs=0.1 * se)


def test_cluster_bootstrap_reduces_to_plain_bootstrap():
    values = np.random.default_rng(4).normal(size=8)
    labels = [f"q{i}" for i in range(8)]
    # One value per group is the plain bootstrap, draw for draw.
    assert bootstrap_ci(values, groups=labels) == bootstrap_ci(values)
    # Every question repeated in two countries with the same value: the same draws over questions.
    doubled = np.repeat(values, 2)
    assert bootstrap_ci(doubled, groups=np.repeat(labels, 2).tolist()) == pytest.approx(bootstrap_ci(values))
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_ci(values, groups=labels[:-1])


@dataclass(frozen=True)
class Item:
    question_id: str
    country: str
    options: tuple[str, ...]
    distribution: tuple[float, ...]


TOY_ITEMS = [
    Item("q1", "A", ("x", "y", "z"), (0.5, 0.3, 0.2)),
    Item("q1", "B", ("x", "y", "z"), (0.1, 0.6, 0.3)),
    Item("q1", "C", ("x", "y", "z"), (0.2, 0.2, 0.6)),
    Item("q2", "A", ("yes", "no"), (0.8, 0.2)),
    Item("q2", "B", ("yes", "no"), (2.0, 3.0)),  # raw counts: renormalised to (0.4, 0.6)
    Item("q3", "C", ("yes", "no"), (1.0, 0.0)),  # nobody else answered q3
]


def _by_key(rows):
    return {(r["question_id"], r["country"]): r for r in rows}


def test_other_countries_reference_by_hand():
    rows = other_countries_reference(TOY_ITEMS)
    got = _by_key(rows)
    expected = {
        ("q1", "A"): [0.15, 0.40, 0.45],
        ("q1", "B"): [0.35, 0.25, 0.40],
        ("q1", "C"): [0.30, 0.45, 0.25],
        ("q2", "A"): [0.4, 0.6],
        ("q2", "B"): [0.8, 0.2],
    }
    assert set(got) == set(expected)  # no row for ("q3", "C")
    for key, p_gen in expected.items():
        assert got[key]["agent"] == OTHER_COUNTRIES_AGENT
        np.testing.assert_allclose(got[key]["p_gen"], p_gen, atol=1e-12)
    np.testing.assert_allclose(got[("q2", "B")]["p_gold"], [0.4, 0.6])


def test_uniform_reference_and_dict_items():
    dict_items = [vars(item) for item in TOY_ITEMS]
    for items in (TOY_ITEMS, dict_items):
        got = _by_key(uniform_reference(items))
        assert len(got) == len(TOY_ITEMS)
        assert got[("q1", "A")]["agent"] == UNIFORM_AGENT
        np.testing.assert_allclose(got[("q1", "A")]["p_gen"], [1 / 3] * 3)
        np.testing.assert_allclose(got[("q3", "C")]["p_gen"], [0.5, 0.5])
    # Uniform against gold (1, 0) is the hand-computed two-option case.
    scores = per_question_scores(uniform_reference(TOY_ITEMS)).set_index(["question_id", "country"])
    assert scores.loc[("q3", "C"), "s_align"] == pytest.approx((0.75 * math.log2(3) - 0.5) * 100)


def test_reference_rejects_bad_items():
    with pytest.raises(ValueError, match="options"):
        uniform_reference([Item("q", "A", ("x", "y"), (1.0, 0.0, 0.0))])
    with pytest.raises(ValueError, match="duplicate"):
        uniform_reference([TOY_ITEMS[0], TOY_ITEMS[0]])
    with pytest.raises(ValueError, match="option counts"):
        other_countries_reference([TOY_ITEMS[0], Item("q1", "B", ("x", "y"), (0.5, 0.5))])
    with pytest.raises(ValueError, match="distribution"):
        uniform_reference([{"question_id": "q", "country": "A", "options": ["x"]}])


def _rows(agent, country, pairs):
    return [
        {"agent": agent, "country": country, "question_id": f"q{i}", "p_gen": p, "p_gold": q}
        for i, (p, q) in enumerate(pairs)
    ]


def test_score_table_by_hand():
    rows = _rows("m", "A", [([1, 0], [0, 1]), ([0.3, 0.7], [0.3, 0.7])]) + _rows("m", "B", [([1, 0], [0.5, 0.5])])
    table = score_table(rows)
    assert list(table[["agent", "country", "n"]].itertuples(index=False, name=None)) == [("m", "A", 2), ("m", "B", 1)]
    a = table.iloc[0]
    assert a["s_align"] == pytest.approx(50.0)
    assert (a["s_align_ci_low"], a["s_align_ci_high"]) == pytest.approx((0.0, 100.0))
    assert a["argmax_agree"] == pytest.approx(0.5)
    b = table.iloc[1]
    assert b["s_align"] == pytest.approx((0.75 * math.log2(3) - 0.5) * 100)
    assert b["js_similarity"] == pytest.approx((1 - jensenshannon([1, 0], [0.5, 0.5], base=2)) * 100)
    assert math.isnan(b["s_align_ci_low"])  # one question: no interval
    with pytest.raises(ValueError, match="duplicate"):
        score_table(rows + rows[:1])
    with pytest.raises(ValueError, match="missing keys"):
        score_table([{"agent": "m"}])


def test_paired_difference():
    gold = [[0.7, 0.3], [0.2, 0.8], [0.5, 0.5], [0.1, 0.9]]
    good = [([0.7, 0.3], g) for g in gold[:1]] + [(g, g) for g in gold[1:]]
    bad = [([0.5, 0.5], g) for g in gold]
    rows = []
    for country in ("A", "B"):
        rows += _rows("good", country, good) + _rows("flat", country, bad)
    expected = np.mean([s_align(p, q) - s_align([0.5, 0.5], q) for p, q in good])
    result = paired_difference(rows, "good", "flat")
    assert result.n == 8
    assert result.mean == pytest.approx(expected)
    assert result.ci_low <= result.mean <= result.ci_high
    # Each question appears in both countries with the same difference: the cluster bootstrap
    # over 4 questions gives the plain bootstrap of the 4 per-question differences.
    per_q = [s_align(p, q) - s_align([0.5, 0.5], q) for p, q in good]
    assert (result.ci_low, result.ci_high) == pytest.approx(bootstrap_ci(per_q))
    only_a = paired_difference(rows, "good", "flat", country="A", metric="js_similarity")
    assert only_a.n == 4 and only_a.metric == "js_similarity"
    same = paired_difference(rows, "good", "good")
    assert (same.mean, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no rows"):
        paired_difference(rows, "good", "missing")
    with pytest.raises(ValueError, match="unknown metric"):
        paired_difference(rows, "good", "flat", metric="accuracy")


def test_per_question_scores_columns():
    frame = per_question_scores(_rows("m", "A", [([1, 0], [1, 0])]))
    assert list(frame.columns) == ["agent", "country", "question_id", "s_align", "js_similarity", "argmax_agree"]
    assert frame.iloc[0]["s_align"] == pytest.approx(100.0)


def test_paired_verdicts_by_hand():
    import pandas as pd

    from kit.metrics.alignment import paired_verdicts

    rows = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3 + ["c"] * 3, "id": [1, 2, 3] * 3,
                         "score": [0.5, 0.6, 0.7, 0.1, 0.2, 0.3, 0.5, 0.7, 0.6]})
    out = {v["against"]: v for v in paired_verdicts(rows, "a", "score", n_boot=200, seed=0)}
    assert out["b"]["mean_diff"] == pytest.approx(0.4) and out["b"]["verdict"] == "better" and out["b"]["n"] == 3
    assert out["b"]["ci_low"] == pytest.approx(0.4) and out["b"]["ci_high"] == pytest.approx(0.4)  # constant diffs
    assert out["c"]["mean_diff"] == pytest.approx(0.0) and out["c"]["verdict"] == "no difference"
