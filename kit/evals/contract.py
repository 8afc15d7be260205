"""The probes of the scorer contract: each registered scorer (``kit.metrics.scorers.SCORERS``) fed one case.

A probe takes the scorer's name, a case — a battery case (``kit.metrics.scorers.BATTERY``) or
``"faithful:<kind>"``, the faithful output of that kind — and a :class:`Bench` (the faithful outputs, a real
model, a real embedder, real survey rows), and returns the score the units would report for it through the
code path they use: ``None`` or NaN when that path leaves it out as missing. Nothing here is a test; the
test (``tests/test_scorer_contract.py``) compares the answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from kit.metrics.scorers import BATTERY, distribution_case, text_case, vector_case
from kit.values.schwartz import SCHWARTZ_VALUES

FAITHFUL = "faithful:"


@dataclass
class Bench:
    """What the probes read: ``faithful`` (tests/fixtures/faithful.json), a real ``backend`` and ``embedder``,
    and ``survey``: real (gold distribution, faithful answer) pairs of GlobalOpinionQA."""

    faithful: Mapping[str, Any]
    backend: Any
    embedder: Any
    survey: Sequence[tuple[Sequence[float], Sequence[float]]] = ()
    min_label_mass: float = 0.1
    min_items: int = 20
    _cache: dict = field(default_factory=dict)

    @cached_property
    def detector(self):
        from kit.values.detectors import EmbeddingValueDetector

        return EmbeddingValueDetector(self.embedder)


def kind_of(case: str) -> str:
    """The battery key a case belongs to (``text``, ``distribution``, ``vector``, ``verdict``)."""
    if case.startswith(FAITHFUL):
        return case.removeprefix(FAITHFUL)
    return next(k for k, cases in BATTERY.items() if case in cases)


def _text(case: str, faithful: str, source: str, opponent: str) -> str:
    return faithful if case.startswith(FAITHFUL) else text_case(case, source, opponent)


# --- survey alignment ------------------------------------------------------------------------------------------


def alignment(name: str, case: str, bench: Bench) -> float | None:
    """The mean score over the bench's survey rows of the answers ``case`` makes of the faithful ones, the
    letter-mass floor applied as every alignment table applies it."""
    from kit.metrics.alignment import apply_label_floor, per_question_scores

    rows = []
    for k, (gold, answer) in enumerate(bench.survey):
        p, mass = (
            (np.asarray(answer, float), 1.0) if case.startswith(FAITHFUL) else distribution_case(case, answer)
        )
        rows.append(
            {
                "agent": "m",
                "country": "c",
                "question_id": k,
                "p_gen": list(p),
                "p_gold": list(gold),
                "letter_mass": mass,
            }
        )
    scores = per_question_scores(apply_label_floor(rows, bench.min_label_mass))
    return float(scores[name].mean()) if len(scores) else None


# --- negotiation traces ----------------------------------------------------------------------------------------


def _trace(case: str, bench: Bench) -> dict:
    f = bench.faithful["negotiation"]
    if case.startswith(FAITHFUL) or kind_of(case) == "vector":
        finals = [f["final_a"], f["final_b"]]
    else:
        finals = [
            text_case(case, f["initial_a"], f["initial_b"]),
            text_case(case, f["initial_b"], f["initial_a"]),
        ]
    return {
        "id": "t",
        "method": "probe",
        "failed": False,
        "rounds_used": 1,
        "converged": True,
        "topic": {"id": "t", "text": f["topic"]},
        "agents": [{"name": c, "culture": c, "kind": "prompted"} for c in f["cultures"]],
        "initial": [{"response": f["initial_a"]}, {"response": f["initial_b"]}],
        "consensus": finals,
    }


def acceptance(name: str, case: str, bench: Bench) -> float | None:
    """Acceptance of a trace whose consensus statements are ``case``'s texts: left out (None) where the evaluation
    leaves the trace out; else scored by the bench's model under prompted agents of the two cultures."""
    from kit.agents.kinds import prompted
    from kit.evals.traces import acceptance_table, split_usable

    trace = _trace(case, bench)
    usable = split_usable([trace])[0]
    if not usable:
        return None
    agents = {c: prompted(c) for c in bench.faithful["negotiation"]["cultures"]}
    row = acceptance_table(bench.backend, agents, usable).iloc[0]
    return float(
        {
            "rel_logppl_change": row["rel_logppl_change"],
            "d_ratio": row["d_ratio"],
            "share_improved": float(row["improved"]),
            "rel_logppl": row["rel_logppl_final"],
        }[name]
    )


def value_metric(name: str, case: str, bench: Bench) -> float | None:
    """A value metric of the trace, read by the embedding detector; the vector case reads the final statements
    as all-zero vectors (texts that express no value)."""
    from kit.evals.traces import SLOTS, split_usable, trace_texts, value_row

    trace = _trace(case, bench)
    if not split_usable([trace])[0]:
        return None
    texts = trace_texts(trace)
    read = dict(zip(SLOTS, (r.vector for r in bench.detector.vectors([texts[s] for s in SLOTS]))))
    if kind_of(case) == "vector" and not case.startswith(FAITHFUL):
        read["final_a"] = read["final_b"] = vector_case(case)
    row = value_row(read)
    if name == "self_consistency":
        sides = [row["self_consistency_a"], row["self_consistency_b"]]
        return float(np.nanmean(sides)) if not all(math.isnan(s) for s in sides) else None
    return float(
        {
            "value_consensus": row["value_consensus"],
            "value_distance": row["value_distance_final"],
            "distance_reduction": row["distance_reduction"],
        }[name]
    )


# --- capability, NLI ---------------------------------------------------------------------------------------------


def _choice(case: str, faithful: Mapping[str, float]):
    from kit.llm.base import ChoiceResult

    labels = list(faithful)
    if case.startswith(FAITHFUL):
        return ChoiceResult(dict(faithful), 1.0)
    p, mass = distribution_case(case, [faithful[k] for k in labels])
    return ChoiceResult(dict(zip(labels, p.tolist())), mass)


def moralchoice(name: str, case: str, bench: Bench) -> float:
    """Whether a low-ambiguity dilemma is answered right from ``case``'s letter probabilities."""
    from kit.evals.capability import answered_right

    f = bench.faithful["moralchoice"]
    return float(answered_right(_choice(case, f["probs"]), f["right"]))


def _judge_scorer(bench: Bench):
    from kit.evals.nli import JudgeScorer

    return bench._cache.setdefault("nli_judge", JudgeScorer(bench.backend))


def entailment(name: str, case: str, bench: Bench) -> float | None:
    """Semantic consistency of an answer (text cases, through the NLI judge on the bench's model) or of a judge's
    letter probabilities (distribution cases)."""
    from kit.evals.nli import judged_entailment

    f = bench.faithful["palette"]
    if kind_of(case) == "distribution":
        return judged_entailment(_choice(case, f["judge_probs"]))
    return _judge_scorer(bench).entailment([(f["gold"], _text(case, f["answer"], f["gold"], f["gold"]))])[0]


def nli_judge(name: str, case: str, bench: Bench) -> float | None:
    from kit.evals.nli import judged_entailment

    return judged_entailment(_choice(case, bench.faithful["palette"]["judge_probs"]))


def nli_cross_encoder(name: str, case: str, bench: Bench) -> float | None:
    """The cross-encoder NLI scorer on the tiny random cross-encoder of the same architecture family (offline)."""
    from kit.evals.nli import CrossEncoderScorer

    scorer = bench._cache.setdefault("cross_encoder", CrossEncoderScorer("tiny-random-nli", device="cpu"))
    f = bench.faithful["palette"]
    return scorer.entailment([(f["gold"], _text(case, f["answer"], f["gold"], f["gold"]))])[0]


# --- VISA ----------------------------------------------------------------------------------------------------------


def _visa_target(f: Mapping[str, Any]) -> np.ndarray:
    t = np.zeros(len(SCHWARTZ_VALUES))
    for v in f["more"]:
        t[SCHWARTZ_VALUES.index(v)] = 1.0
    for v in f["less"]:
        t[SCHWARTZ_VALUES.index(v)] = -1.0
    return t


def _visa_texts(case: str, bench: Bench) -> tuple[str, str, np.ndarray]:
    """(rewrite, original, target); the rewriter's "opponent" is the instruction it was given (copying it is
    keyword injection)."""
    from kit.visa.translator import instruction

    f = bench.faithful["visa"]
    target = _visa_target(f)
    if kind_of(case) == "vector":
        return f["rewrite"], f["original"], target
    return _text(case, f["rewrite"], f["original"], instruction(target)), f["original"], target


def visa_metric(name: str, case: str, bench: Bench) -> float:
    """A held-out table score of one rewrite (``kit.visa.evaluation.score_rows``'s path), read by the embedding
    detector; the vector case is a readable rewrite the detector reads as expressing no value."""
    from kit.visa.evaluation import rewrite_scores
    from kit.visa.rewards import unreadable

    rewrite, original, target = _visa_texts(case, bench)
    emb = bench.embedder.encode([rewrite, original])
    cosine = float(emb[0] @ emb[1])
    o = bench.detector.vectors([original])[0].vector
    if kind_of(case) == "vector" and not case.startswith(FAITHFUL):
        d = vector_case(case)
    else:
        d = None if unreadable(rewrite, target) else bench.detector.vectors([rewrite])[0].vector
    return rewrite_scores(d, o, target, cosine, len(rewrite.split()))[name]


def visa_reward(name: str, case: str, bench: Bench) -> float:
    """A VISA reward (``reward:<name>``) of one completion, or their weighted sum (``reward:visa``, the params
    default weights), through ``kit.visa.rewards.score_all``."""
    from kit.visa.evaluation import DEFAULT_WEIGHTS
    from kit.visa.rewards import RewardContext, score_all

    rewrite, original, target = _visa_texts(case, bench)
    total, parts = score_all(
        DEFAULT_WEIGHTS, RewardContext(bench.detector, bench.embedder), [rewrite], [original], [target]
    )
    reward = name.removeprefix("reward:")
    return float(total[0] if reward == "visa" else parts[reward][0])


# --- self-play ---------------------------------------------------------------------------------------------------


def _dilemma(bench: Bench):
    from kit.selfplay.dilemmas import Dilemma, Persona

    f = bench.faithful["selfplay"]
    return Dilemma(
        "probe", "generated", f["dilemma"], Persona(**f["persona_a"]), Persona(**f["persona_b"]), "test"
    )


def _solution(case: str, bench: Bench) -> str:
    from kit.selfplay.dialogue import solution_of

    f = bench.faithful["selfplay"]
    return _text(case, solution_of(f["turn_b"]), f["dilemma"], f["persona_b"]["stance"])


def selfplay_acceptance(name: str, case: str, bench: Bench) -> float | None:
    """``rel_logppl`` of a dialogue whose joint solution is ``case``'s, through the self-play table's scoring
    (``kit.selfplay.evaluation.score_rows``, the bench's model as judge and scorer)."""
    from kit.selfplay.dialogue import Dialogue, Turn
    from kit.selfplay.evaluation import score_rows

    f = bench.faithful["selfplay"]
    solution = _solution(case, bench)
    dlg = Dialogue("probe", 0, (Turn("a", f["turn_a"]), Turn("b", f["turn_b"])), True, solution)
    rows = score_rows(bench.backend, bench.backend, [_dilemma(bench)], {"probe": [dlg]}, 60)
    return float(rows[rows["method"] == "probe"].iloc[0][name])


def collective_agency(name: str, case: str, bench: Bench) -> float:
    """The judge's CA score of ``case``'s solution (text cases, the bench's model as judge), or of a judge's label
    probabilities (distribution cases)."""
    from kit.selfplay.judge import judgement, judgements

    if kind_of(case) == "distribution":
        return judgement(_choice(case, bench.faithful["selfplay"]["judge_probs"])).score
    return judgements(bench.backend, [_dilemma(bench)], [_solution(case, bench)])[0].score


def selfplay_reward(name: str, case: str, bench: Bench) -> float:
    """``reward:collective_agency`` (through the registered reward, or its mapping of a judgement for the
    distribution cases) and ``reward:joint_solution`` of a single agent's completion."""
    from kit.selfplay.judge import judgement
    from kit.selfplay.rewards import JudgeContext, agency_reward, joint_solution
    from kit.selfplay.rewards import collective_agency as ca_reward

    f = bench.faithful["selfplay"]
    d = _dilemma(bench)
    context = JudgeContext(bench.backend, {d.id: d})
    if name == "reward:joint_solution":
        text = _text(case, f["turn_a"], f["dilemma"], f["turn_b"])
        return joint_solution([text], context=context)[0]
    if kind_of(case) == "distribution":
        return agency_reward(judgement(_choice(case, f["judge_probs"])).score)
    return ca_reward([""], [d.id], solution=[_solution(case, bench)], context=context)[0]


def resolution(name: str, case: str, bench: Bench) -> float:
    """Whether a dialogue whose last two turns are the faithful one of side a and ``case``'s of side b is resolved
    (``kit.selfplay.dialogue``: both state a readable solution after the marker, and the two agree)."""
    from kit.selfplay.dialogue import agree, stated

    f = bench.faithful["selfplay"]
    turns = [f["turn_a"], _text(case, f["turn_b"], f["dilemma"], f["turn_a"])]
    both = [stated(t) for t in turns]
    return float(None not in both and agree(bench.embedder.encode(both)))


# --- descriptions ------------------------------------------------------------------------------------------------


def description(name: str, case: str, bench: Bench) -> float:
    """Whether a culture description counts as complete (``kit.agents.descriptions.is_complete``): the source is
    the survey evidence it was written from, the opponent another country's description."""
    from kit.agents.descriptions import is_complete

    f = bench.faithful["description"]
    return float(is_complete(_text(case, f["text"], f["evidence"], f["other"])))


# --- verdicts ----------------------------------------------------------------------------------------------------


def _items(n: int, gain: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    other = rng.uniform(0.2, 0.8, n)
    return other + gain + rng.normal(0, 0.05, n), other


def paired_verdict(name: str, case: str, bench: Bench) -> float:
    """``kit.metrics.alignment.paired_verdicts`` (and ``kit.evals.traces.paired_against``) as a number: the faithful
    case is a real gain over 40 items; the battery: the same gain on two items, a method that failed (flagged) on
    the 30 items it would lose, and the ``none`` reference row as the best."""
    from kit.evals.traces import paired_against
    from kit.metrics.alignment import paired_verdicts
    from kit.metrics.verdicts import as_number

    if case == "reference row":  # none keeps its own values by construction: never a winner
        mine, other = _items(bench.min_items * 2, 0.3, 1)
        df = pd.DataFrame(
            [
                {
                    "method": m,
                    "pair": "A vs B",
                    "topic_id": str(k),
                    "rel_logppl_change": -v,
                    "value_consensus": v,
                    "self_consistency_a": v,
                    "self_consistency_b": v,
                }
                for m, vals in (("none", mine), ("ncn", other))
                for k, v in enumerate(vals)
            ]
        )
        verdicts = paired_against(df, "none", n_boot=200, min_items=bench.min_items)
        return float(
            max([as_number(v) for v in verdicts[verdicts["method"] == "none"]["verdict"]], default=0)
        )
    n = 2 if case == "too few items" else bench.min_items * 2
    mine, other = _items(n, 0.1, 0)
    failed = np.zeros(n, dtype=bool)
    if case == "failures dropped":  # it would lose three items in four, and fails exactly on those
        mine[: 3 * n // 4] = other[: 3 * n // 4] - 0.3
        failed[: 3 * n // 4] = True
    rows = pd.DataFrame(
        [{"method": "m", "id": k, "value_f1": v, "failed": f} for k, (v, f) in enumerate(zip(mine, failed))]
        + [{"method": "o", "id": k, "value_f1": v, "failed": False} for k, v in enumerate(other)]
    )
    rows.loc[rows["failed"], "value_f1"] = np.nan
    (v,) = paired_verdicts(rows, "m", "value_f1", n_boot=200, min_items=bench.min_items)  # a score in [0, 1]
    return float(as_number(v["verdict"]))


def reference_verdict(name: str, case: str, bench: Bench) -> float:
    """``kit.metrics.alignment.reference_comparison`` as a number: a kind that knows the answers on 40 questions
    (faithful), on two, one that leaves the questions it would get wrong missing, and a reference row offered as
    a kind."""
    from kit.metrics.alignment import UNIFORM_AGENT, reference_comparison
    from kit.metrics.verdicts import as_number

    n = 2 if case == "too few items" else bench.min_items * 2
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        gold = rng.dirichlet(np.ones(3) * 0.5)
        good = 0.7 * gold + 0.3 / 3
        wrong = np.roll(gold, 1)
        answer = good if case != "failures dropped" or k < n // 4 else None  # missing where it would be wrong
        rows += [
            {"agent": "kind", "country": "c", "question_id": k, "p_gen": answer, "p_gold": gold},
            {
                "agent": UNIFORM_AGENT,
                "country": "c",
                "question_id": k,
                "p_gen": np.full(3, 1 / 3),
                "p_gold": gold,
            },
            {"agent": "worse", "country": "c", "question_id": k, "p_gen": wrong, "p_gold": gold},
        ]
    kind, ref = (UNIFORM_AGENT, "worse") if case == "reference row" else ("kind", UNIFORM_AGENT)
    out = reference_comparison(rows, [kind], [ref], n_boot=200, min_items=bench.min_items).iloc[0]
    return float(as_number(out["verdict"]))


def claims_verdict(name: str, case: str, bench: Bench) -> float:
    """The NCN release's claims (``kit.lessons.ncn_release.claims``' rule: paired verdicts with the claim's
    direction) as a number, on a real gain over 40 items (faithful) and on two."""
    from kit.metrics.alignment import paired_verdicts
    from kit.metrics.verdicts import as_number

    n = 2 if case == "too few items" else bench.min_items * 2
    mine, other = _items(n, -0.1, 2)  # a lower D ratio is better
    rows = pd.DataFrame(
        [
            {"method": m, "id": k, "d_ratio": v}
            for m, vals in (("ncn", mine), ("debate", other))
            for k, v in enumerate(vals)
        ]
    )
    (v,) = paired_verdicts(rows, "ncn", "d_ratio", n_boot=200, min_items=bench.min_items, direction="lower")
    return float(as_number(v["verdict"]))
