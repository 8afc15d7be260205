"""One degenerate-output contract for every scorer, reward and verdict the kit registers.

Each spec of ``kit.metrics.scorers.SCORERS`` is fed every case of the battery it reads — empty, ``##``×k, one
word repeated, a bare marker, the source copied, the opponent copied, headings only, "I have no opinion.",
zero label mass, flat and half-flattened distributions, all-zero vectors, and for verdicts too few items,
failures dropped and a reference row as winner — through its probe (``kit.evals.contract``), beside a real,
faithful output of the same kind (``tests/fixtures/faithful.json``, real GlobalOpinionQA answers, a real
model and embedder). A degenerate case must come back missing or score no better than the faithful one
(strictly worse for a verdict). The test is parametrised by the registry, so a scorer registered later is
covered without a new test; its output lists every scorer by name with what each case gave.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kit.evals.contract import Bench, kind_of
from kit.metrics.scorers import BATTERY, SCORERS, ScorerSpec, missing, spec

ROOT = Path(__file__).resolve().parents[1]
FAITHFUL = json.loads((ROOT / "tests" / "fixtures" / "faithful.json").read_text())


@pytest.fixture(scope="module")
def bench(tiny_backend, shared_data):
    import torch

    from kit.data import goqa_split
    from kit.embed import Embedder
    from kit.metrics.alignment import other_countries_reference

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster
    _, test = goqa_split(str(shared_data / "globalopinionqa" / "dev.json"), 0.3, 0)
    # real survey rows: each country's answer, and the faithful answer a model that knows world opinion gives
    survey = [(r["p_gold"], r["p_gen"]) for r in other_countries_reference(test)][::7][:200]
    yield Bench(FAITHFUL, tiny_backend, Embedder("all-minilm-l6-v2"), survey)
    torch.set_num_threads(threads)


def _ok(s: ScorerSpec, got, faithful, kind: str = "") -> bool:
    if missing(got):
        return True
    if not s.in_range(got):
        return False
    if s.gated and kind == "text":  # a model would read it: it must be left out or worst before that
        return got == s.worst
    return s.better(faithful, got) if s.kind == "verdict" else not s.better(got, faithful)


def _shown(v) -> str:
    return "missing" if missing(v) else f"{v:.3g}"


@pytest.mark.parametrize("name", list(SCORERS))
def test_no_degenerate_output_scores_better_than_a_faithful_one(name, bench, capsys):
    s = spec(name)
    probe = s.run_probe()
    faithful = {kind: probe(name, f"faithful:{kind}", bench) for kind in s.reads}
    for kind, v in faithful.items():  # the faithful output is scored, and in range: the gate is not too wide
        assert not missing(v) and s.in_range(v), f"{name}: the faithful {kind} output gave {v!r}"
    got = {case: probe(name, case, bench) for case in s.cases}
    bad = {case: v for case, v in got.items() if not _ok(s, v, faithful[kind_of(case)], kind_of(case))}
    with capsys.disabled():
        print(
            f"\n{name} ({s.kind}, {s.direction} is better, units {', '.join(s.units)}): faithful "
            + ", ".join(f"{k} {_shown(v)}" for k, v in faithful.items())
            + " | "
            + ", ".join(f"{c}: {_shown(v)}" for c, v in got.items())
            + (f" | exempt: {', '.join(s.exempt)}" if s.exempt else "")
        )
    assert not bad, f"{name} rewards degenerate output: {bad} (faithful {faithful})"


def test_the_contract_can_fail():
    """The comparison the test makes catches a scorer that rewards a degenerate case, in either direction."""
    higher = spec("js_similarity")
    lower = spec("value_distance")
    assert not _ok(higher, 90.0, 80.0) and _ok(higher, 70.0, 80.0) and _ok(higher, float("nan"), 80.0)
    assert not _ok(lower, 1.0, 2.0) and _ok(lower, 3.0, 2.0) and not _ok(higher, 120.0, 80.0)  # out of range
    verdict = spec("verdict:paired")
    assert not _ok(verdict, 1.0, 1.0) and _ok(verdict, 0.0, 1.0)  # a verdict must be strictly worse
    judge = spec(
        "collective_agency"
    )  # a model reads it: a degenerate text scored by chance below faithful fails
    assert (
        not _ok(judge, 2.0, 3.0, "text")
        and _ok(judge, 1.0, 3.0, "text")
        and _ok(judge, 2.0, 3.0, "distribution")
    )


def test_every_reward_nli_scorer_and_table_score_is_registered():
    from kit.evals.nli import NLI_SCORERS
    from kit.evals.traces import PAIRED_SCORES
    from kit.metrics.alignment import SCORES as ALIGNMENT
    from kit.train.rewards import REWARDS
    from kit.visa.evaluation import SCORES as VISA

    wanted = (
        {f"reward:{r}" for r in REWARDS}
        | {f"nli:{n}" for n in NLI_SCORERS}
        | set(ALIGNMENT)
        | set(VISA)
        | set(PAIRED_SCORES)
        | {
            "collective_agency",
            "resolution_rate",
            "rel_logppl",
            "d_ratio",
            "share_improved",
            "value_distance",
            "distance_reduction",
            "moralchoice_low_accuracy",
            "semantic_consistency",
            "description_complete",
        }
    )
    assert wanted <= set(SCORERS), f"not registered in kit.metrics.scorers: {sorted(wanted - set(SCORERS))}"


def test_every_spec_is_fed_every_case_of_what_it_reads_or_says_why_not():
    for s in SCORERS.values():
        assert set(s.cases) | set(s.exempt) == {c for r in s.reads for c in BATTERY[r]}, s.name
        assert all(len(why) > 20 for why in s.exempt.values()), s.name
        assert s.worst in (s.low, s.high) and s.best != s.worst
    # what the issue names is in the battery
    assert set(BATTERY["text"]) >= {
        "empty",
        "hashes",
        "one word repeated",
        "bare marker",
        "source copied",
        "opponent copied",
        "headings only",
        "no opinion",
    }
    assert set(BATTERY["distribution"]) == {"zero label mass", "flat", "half-flattened"}
    assert BATTERY["vector"] == ("all-zero vectors",)


def test_a_bad_spec_is_refused():
    with pytest.raises(ValueError, match="direction"):
        ScorerSpec("x", "metric", "up", 0, 1, ("01",), ("text",), "m:f", "doc")
    with pytest.raises(ValueError, match="exempts"):
        ScorerSpec(
            "x",
            "metric",
            "higher",
            0,
            1,
            ("01",),
            ("text",),
            "m:f",
            "doc",
            {"flat": "not a text case at all"},
        )
    with pytest.raises(ValueError, match="unknown scorer"):
        spec("js_similarty")


def test_the_docs_list_every_scorer_as_the_registry_says():
    from kit.metrics.scorers import scorer_table

    text = (ROOT / "docs" / "metrics.md").read_text()
    assert scorer_table() in text, (
        "docs/metrics.md's table of scorers differs from the registry; paste "
        "python -c 'from kit.metrics.scorers import scorer_table; print(scorer_table())'"
    )


def test_worst_values_come_from_the_registry():
    from kit.metrics.alignment import per_question_scores

    rows = [{"agent": "m", "country": "c", "question_id": 1, "p_gen": None, "p_gold": [0.5, 0.5]}]
    worst = per_question_scores(rows, missing="worst").iloc[0]
    assert worst["js_similarity"] == spec("js_similarity").worst == 0.0
    assert spec("drift").worst == 1.0 and spec("rel_logppl_change").worst == math.inf
    assert np.isinf(spec("d_ratio").worst)
