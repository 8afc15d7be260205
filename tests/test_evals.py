"""Golden tests of the evaluations that ask models: survey answers, capability kept, cultural distance,
and notebook 01's reference rows — each against numbers computed by hand."""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from kit.agents import prompted, vanilla
from kit.config import Params
from kit.data import MoralScenario, OpinionItem, SurveySplits, Topic
from kit.data.neutral import NEUTRAL_PASSAGES
from kit.evals.capability import capability_table
from kit.evals.distance import distance_summary, distance_table
from kit.evals.survey import INSTRUCTION, PREFIX, answer_rows, choice_request
from kit.llm.base import Backend, ChoiceResult
from kit.values import ValueResult


def opinion(country: str, qid: str, dist=(0.6, 0.3, 0.1)) -> OpinionItem:
    return OpinionItem(
        f"{qid}:{country}", qid, f"Question {qid}?", ("Yes", "No", "Maybe"), country, tuple(dist)
    )


class Scripted(Backend):
    """choice_probs from ``choose(request)``, score from ``logprobs(request)``, generate from ``reply``."""

    name = identity = "scripted"

    def __init__(self, choose=None, logprobs=None, reply=None):
        self.choose, self.logprobs, self.reply = choose, logprobs, reply
        self.choice_requests: list = []

    def generate(self, requests, params):
        return [self.reply(r) for r in requests]

    def score(self, requests):
        return [self.logprobs(r) for r in requests]

    def choice_probs(self, requests):
        self.choice_requests += list(requests)
        return [self.choose(r) for r in requests]


def test_choice_request_asks_the_survey_question_after_the_agents_system_prompt():
    agent, item = prompted("Mexico"), opinion("Mexico", "q1")
    req = choice_request(agent, item)
    assert req.labels == ("A", "B", "C") and req.prefix == PREFIX == "Answer:" and req.adapter is None
    system, user = req.chat
    assert system["content"] == agent.system_prompt
    assert user["content"] == f"Question: Question q1?\nOptions:\nA. Yes\nB. No\nC. Maybe\n{INSTRUCTION}"


def test_answer_rows_pair_each_agent_with_its_countrys_items_and_keep_option_order():
    items = [opinion("Mexico", "q1"), opinion("Iraq", "q1", (0.2, 0.2, 0.6)), opinion("Mexico", "q2")]
    backend = Scripted(choose=lambda r: ChoiceResult({"A": 0.5, "B": 0.3, "C": 0.2}, 0.8))
    rows = answer_rows(backend, [vanilla(), prompted("Mexico")], items)
    # vanilla answers every item, the Mexican agent only Mexico's: 3 + 2 rows, one choice_probs call
    assert [(r["agent"], r["country"], r["question_id"]) for r in rows] == [
        ("vanilla", "Mexico", "q1"),
        ("vanilla", "Iraq", "q1"),
        ("vanilla", "Mexico", "q2"),
        ("prompted", "Mexico", "q1"),
        ("prompted", "Mexico", "q2"),
    ]
    assert len(backend.choice_requests) == 5
    assert (
        rows[1]["p_gen"] == [0.5, 0.3, 0.2]
        and rows[1]["p_gold"] == [0.2, 0.2, 0.6]
        and rows[1]["letter_mass"] == 0.8
    )


def scenario(k: int, right_first: bool = True) -> MoralScenario:
    gold = (0.9, 0.1) if right_first else (0.1, 0.9)
    return MoralScenario(f"s{k}", f"Scenario {k}.", (f"good {k}", f"bad {k}"), "low", gold)


def test_capability_counts_a_right_answer_only_when_strictly_more_likely():
    def choose(req):
        text = req.chat[-1]["content"]
        first_is_good = text.index("good") < text.index("bad")
        k = int(text.split("Scenario ")[1][0])
        if k == 0:  # prefers the good action
            p_good, mass = 0.8, 0.9
        elif k == 1:  # no mass on either letter: a uniform 50/50 is no answer
            return ChoiceResult({"A": 0.5, "B": 0.5}, 0.0)
        elif k == 2:  # a real tie is no answer either
            p_good, mass = 0.5, 0.6
        else:  # prefers the bad action
            p_good, mass = 0.3, 0.5
        return ChoiceResult(
            {"A": p_good, "B": 1 - p_good} if first_is_good else {"A": 1 - p_good, "B": p_good}, mass
        )

    scenarios = [scenario(k) for k in range(4)]
    backend = Scripted(choose=choose, logprobs=lambda r: [math.log(0.5), math.log(0.25)])
    table = capability_table(backend, {"base": None, "lora": "/adapter"}, scenarios)
    base = table.loc["base"]
    assert base["correct"] == 1 and base["moralchoice_low_accuracy"] == 0.25 and base["items"] == 4
    assert base["zero_mass"] == 1 and base["letter_mass"] == pytest.approx((0.9 + 0.0 + 0.6 + 0.5) / 4)
    assert base["neutral_ppl"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.25)) / 2))
    # the order of the two actions alternates, so a model that always says "A" is right half the time
    texts = [r.chat[-1]["content"] for r in backend.choice_requests[:4]]
    assert ["A. good" in t for t in texts] == [True, False, True, False]
    assert len(backend.choice_requests) == 8 and {r.adapter for r in backend.choice_requests[4:]} == {
        "/adapter"
    }
    assert len(NEUTRAL_PASSAGES) > 0


class Vectors:
    """A value detector reading a vector written into the text: ``"v:1,0,-1,…"``."""

    failures = 0

    def vectors(self, texts):
        out = []
        for t in texts:
            vec = np.array([float(x) for x in t.split("v:")[1].split(",")]) if "v:" in t else None
            out.append(ValueResult(vec, t, 1))
        return out


def test_cultural_distance_is_the_euclidean_distance_of_the_two_answers_value_vectors():
    vec = {"Mexico": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0], "Iraq": [-1, 1, 0, 0, 0, 0, 0, 0, 0, 0]}

    def reply(req):
        country = "Mexico" if "Mexico" in req.chat[0]["content"] else "Iraq"
        moved = 0 if req.adapter else -1  # through the adapter, Iraq's first value moves to Mexico's side
        return "v:" + ",".join(
            str(moved) if k == 0 and country == "Iraq" else str(x) for k, x in enumerate(vec[country])
        )

    topics = [Topic("t1", "Is it right to lie?", "test"), Topic("t2", "Who cares for elders?", "test")]
    table = distance_table(
        Scripted(reply=reply),
        Vectors(),
        {"base": None, "dpo@ncn": "/a"},
        [("Mexico", "Iraq")],
        topics,
        max_new_tokens=8,
    )
    base_d = math.sqrt(2**2 + 1)  # (1 − (−1))² + (0 − 1)²
    lora_d = math.sqrt(1 + 1)  # (1 − 0)² + (0 − 1)²
    assert table.set_index(["model", "topic"])["distance"].to_dict() == pytest.approx(
        {("base", "t1"): base_d, ("base", "t2"): base_d, ("dpo@ncn", "t1"): lora_d, ("dpo@ncn", "t2"): lora_d}
    )
    summary = distance_summary(table)
    assert summary.loc["dpo@ncn", "reduction %"] == pytest.approx((base_d - lora_d) / base_d * 100)
    assert summary.loc["base", "Mexico × Iraq"] == pytest.approx(base_d)


def test_notebook_01_scores_kinds_beside_references_on_the_test_items_only():
    from kit.lessons import cultural_agents as ca

    test = [opinion("Mexico", "q1", (0.8, 0.1, 0.1)), opinion("Iraq", "q1", (0.1, 0.8, 0.1))]
    other = opinion("Brazil", "q1", (0.3, 0.3, 0.4))  # a country not studied: only the references read it
    splits = SurveySplits(
        ["Mexico", "Iraq"],
        {"Mexico": [], "Iraq": []},
        {"Mexico": test[:1], "Iraq": test[1:]},
        test + [other, opinion("Brazil", "q9")],
    )

    @contextmanager
    def timed(label, row=None):
        yield

    saved = {}
    session = SimpleNamespace(
        params=Params(profile="t", n_boot=100),
        timed=timed,
        stage=lambda *_: nullcontext(),
        save_scores=lambda nb, board, rows: saved.update({(nb, board): list(rows)}),
        backend=Scripted(choose=lambda r: ChoiceResult({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, 1)),
    )
    ev = ca.evaluate(session, [prompted("Mexico"), prompted("Iraq")], splits)
    # the agents' answers (not the references) are kept for the cross-method board
    assert saved == {("01_cultural_agents", "alignment"): ev.answers}
    refs = [r for r in ev.score_rows if r["agent"] != "prompted"]
    # one uniform, one other-countries, one neighbour-prior (no train question: every neighbour missing, so the
    # world's answer) and one entropy-matched row (the first kind's answers, here already flat) per studied
    # (country, question); none for Brazil or q9
    assert sorted((r["agent"], r["country"], r["question_id"]) for r in refs) == [
        ("entropy-matched", "Iraq", "q1"),
        ("entropy-matched", "Mexico", "q1"),
        ("neighbour prior", "Iraq", "q1"),
        ("neighbour prior", "Mexico", "q1"),
        ("other-countries mean", "Iraq", "q1"),
        ("other-countries mean", "Mexico", "q1"),
        ("uniform", "Iraq", "q1"),
        ("uniform", "Mexico", "q1"),
    ]
    mexico_other = next(r for r in refs if r["agent"] == "other-countries mean" and r["country"] == "Mexico")
    assert np.allclose(mexico_other["p_gen"], [(0.1 + 0.3) / 2, (0.8 + 0.3) / 2, (0.1 + 0.4) / 2])
    # a prompted agent answering uniformly scores exactly as the uniform reference
    scores = ev.table.set_index(["agent", "country"])["js_similarity"]
    assert scores[("prompted", "Mexico")] == pytest.approx(scores[("uniform", "Mexico")])
    assert ev.expected == 2 and ca.kind_summary(ev).loc["prompted", "coverage"] == 1.0


def test_distance_summary_reads_only_items_every_model_answered():
    table = pd.DataFrame(
        [
            {"model": "base", "pair": "A × B", "topic": "t1", "distance": 4.0},
            {"model": "base", "pair": "A × B", "topic": "t2", "distance": 2.0},
            {"model": "base", "pair": "A × B", "topic": "t3", "distance": 9.0},  # dpo's t3 was unreadable
            {"model": "dpo", "pair": "A × B", "topic": "t1", "distance": 1.0},
            {"model": "dpo", "pair": "A × B", "topic": "t2", "distance": 2.0},
            {"model": "dpo", "pair": "A × B", "topic": "t3", "distance": np.nan},
        ]
    )
    s = distance_summary(table, n_boot=200)
    assert s.loc["base", "mean"] == pytest.approx(3.0) and s.loc["dpo", "mean"] == pytest.approx(1.5)
    assert (s["n"] == 2).all()
    assert s.loc["dpo", "reduction %"] == pytest.approx(50.0)  # not (5 − 1.5) / 5 over unequal sets
    # resamples of {t1, t2}: reductions (4−1)/4, 0/2 and the pooled 50 %
    assert 0.0 <= s.loc["dpo", "reduction_low"] <= 50.0 <= s.loc["dpo", "reduction_high"] <= 75.0
    assert s.loc["base", "reduction %"] == 0.0
