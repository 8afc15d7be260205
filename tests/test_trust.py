"""Results people can trust: no test leakage, independent seeds, honest verdicts, prompts that name
countries, figures that follow the run folder. Each test here failed on the kit before these fixes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.config import DataParams, Params, TopicsParams
from kit.data import OpinionItem, goqa_split, split_questions
from kit.data.leaks import LeakError, assert_no_leaks, leak_counts
from kit.data.topics import Topic, heldout_topics, negotiation_topics, topic_pools
from kit.metrics.alignment import (
    UNIFORM_AGENT,
    other_countries_reference,
    reference_comparison,
    uniform_reference,
)
from kit.run import seeds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(shared_data) -> DataParams:
    return DataParams()  # the default split: test_fraction 0.3, split_seed 0


# --- leakage and seeds ------------------------------------------------------------------------


def test_goqa_topics_come_from_the_train_split_only(data):
    """Topics ranked by the same bare hash as the split were all test questions (50 of 50 before)."""
    _, test = goqa_split(data.goqa_path, data.test_fraction, data.split_seed)
    test_ids = {it.question_id for it in test}
    topics = TopicsParams(source="goqa", n=50)
    negotiated, pool = negotiation_topics(data, topics, seed=0), topic_pools(data, topics, seed=0)
    assert len(negotiated) == 50 and not {t.id for t in negotiated} & test_ids
    assert not {t.id for pool_ in pool for t in pool_} & test_ids


def test_seeds_namespace_each_purpose(data):
    """A 10 % hold-out drawn inside the train split came out empty with the split's own numbers."""
    train, _ = goqa_split(data.goqa_path, data.test_fraction, data.split_seed)
    records = [{"question_id": q} for q in dict.fromkeys(it.question_id for it in train)]
    _, held = split_questions(records, 0.1, 0, "grounding-eval", key=lambda r: r["question_id"])
    assert 0.07 < len(held) / len(records) < 0.13
    # The same seed and key give unrelated numbers for two purposes …
    a = np.array([seeds.unit(0, "goqa-split", r["question_id"]) for r in records])
    b = np.array([seeds.unit(0, "grounding-eval", r["question_id"]) for r in records])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    # … and no choice can be made without naming its purpose.
    with pytest.raises(ValueError, match="purpose"):
        seeds.unit(0, "", "q1")


def test_heldout_topics_are_never_negotiated_whatever_n(data):
    """With "the next topics of the same ranking" as the held-out set, a run with n=4 then one with n=2
    trained on its own held-out topics."""
    heldout = {t.id for t in heldout_topics(data, TopicsParams(source="moralchoice"), 20, seed=0)}
    for n in (2, 4, 50, 300):
        negotiated = {t.id for t in negotiation_topics(data, TopicsParams(source="moralchoice", n=n), seed=0)}
        assert len(negotiated) == n and not negotiated & heldout


def test_readers_take_the_traces_of_the_current_plan_only(tmp_path, data):
    from kit.negotiation.run import planned_traces
    from kit.run.records import RecordStore

    params = Params(
        profile="t",
        data=data,
        negotiation={"pairs": [["United States", "China"]], "methods": ["ncn"], "topics": {"n": 4}},
    )
    store = RecordStore(tmp_path / "s.jsonl")
    four = negotiation_topics(data, params.negotiation.topics, 0)
    store.extend([{"id": f"ncn:United States|China:{t.id}", "topic": {"id": t.id}} for t in four])
    two = params.model_copy(
        update={"negotiation": params.negotiation.model_copy(update={"topics": TopicsParams(n=2)})}
    )
    read = planned_traces(store, two, negotiation_topics(data, two.negotiation.topics, 0))
    assert len(read) == 2 and {r["topic"]["id"] for r in read} < {t.id for t in four}


def test_leak_counts_by_hand():
    q = OpinionItem("i", "q1", "Is family the most important thing?", ("Yes", "No"), "Mexico", (0.5, 0.5))
    topics = [
        Topic("q1", "Is family the most important thing?", "goqa"),
        Topic("t2", "Lie to a friend?", "file"),
    ]
    heldout = [Topic("t3", "Share the housework?", "file")]
    traces = [{"topic": {"id": "t2"}}, {"topic": {"id": "t3"}}]
    prompts = ["lie to a  friend?", "SHARE the housework?", "Is family the most important thing?"]
    counts = leak_counts(topics, heldout, traces, prompts, [q])
    assert counts == {"topics_in_goqa_test": 1, "heldout_topics_negotiated": 1, "train_prompts_in_eval": 2}
    with pytest.raises(LeakError, match="heldout_topics_negotiated"):
        assert_no_leaks(counts)
    assert_no_leaks(dict.fromkeys(counts, 0))


# --- honest comparisons -----------------------------------------------------------------------


def _rows(agent, country, qid, p_gen, p_gold):
    return {"agent": agent, "country": country, "question_id": qid, "p_gen": p_gen, "p_gold": p_gold}


def test_a_kind_that_skipped_a_hard_country_is_not_credited_for_it():
    """Mean over its own countries vs the references' mean over all: the kind "beat" uniform before."""
    easy, hard = [0.9, 0.1], [0.5, 0.5]
    rows = []
    for q in range(8):
        rows += [
            _rows(UNIFORM_AGENT, "Easy", f"q{q}", [0.5, 0.5], easy),
            _rows(UNIFORM_AGENT, "Hard", f"q{q}", [0.5, 0.5], hard),
            _rows("grounded", "Easy", f"q{q}", [0.5, 0.5], easy),
        ]  # answers like uniform; skipped Hard
    table = reference_comparison(rows, ["grounded"], [UNIFORM_AGENT], min_items=8)
    assert table.loc[0, "n"] == 8 and table.loc[0, "diff"] == pytest.approx(0.0)
    assert table.loc[0, "verdict"] == "no difference"
    better = [dict(r, p_gen=[0.85, 0.15]) if r["agent"] == "grounded" else r for r in rows]
    assert (
        reference_comparison(better, ["grounded"], [UNIFORM_AGENT], min_items=8).loc[0, "verdict"] == "beats"
    )
    # eight questions are fewer than the default minimum: no verdict at all
    assert reference_comparison(better, ["grounded"], [UNIFORM_AGENT]).loc[0, "verdict"] == "too few"


def test_other_countries_mean_leaves_out_every_sample_of_the_country():
    items = [
        {"question_id": "q", "country": c, "options": ["A", "B"], "distribution": d}
        for c, d in [
            ("India (Current national sample)", [1.0, 0.0]),
            ("India (Non-national sample)", [0.9, 0.1]),
            ("Brazil", [0.2, 0.8]),
            ("Chile", [0.4, 0.6]),
        ]
    ]
    refs = {r["country"]: r["p_gen"] for r in other_countries_reference(items)}
    assert np.allclose(refs["India (Current national sample)"], [0.3, 0.7])  # Brazil and Chile only
    assert np.allclose(refs["Brazil"], [(1.0 + 0.9 + 0.4) / 3, (0.0 + 0.1 + 0.6) / 3])
    assert len(uniform_reference(items)) == 4


def test_prompts_name_the_country_not_the_survey_sample():
    from kit.agents import culture_instruction, described, grounded, prompted
    from kit.agents.descriptions import description_request
    from kit.agents.grounding import judge_request, rewrite_request
    from kit.negotiation.prompts import answer_prompt, who

    label = "India (Current national sample)"
    item = OpinionItem("i", "q", "Is family important?", ("Yes", "No"), label, (0.6, 0.4))
    texts = [
        culture_instruction(label),
        prompted(label).system_prompt,
        described(label, "## Core Values").system_prompt,
        grounded(label, "/a", "## Core Values").system_prompt,
        description_request(label, "- evidence").chat[-1]["content"],
        rewrite_request(label, item, 0).chat[-1]["content"],
        judge_request(label, item, 0, "Q?", "A.").chat[-1]["content"],
        answer_prompt(prompted(label), "Topic?"),
        who(prompted(label)),
    ]
    assert all("India" in t and "sample" not in t for t in texts)
    assert prompted(label).culture == label  # scored against the data's own label


def test_figures_follow_the_run_folder(tmp_path, monkeypatch):
    from kit.run import paths
    from kit.session import Session

    monkeypatch.setattr(paths, "ROOT", tmp_path / "project")
    elsewhere = Session(Params(profile="t", runs_dir=str(tmp_path / "elsewhere")))
    assert elsewhere.figure_paths("f.png") == [tmp_path / "elsewhere" / "t" / "figures" / "f.png"]
    default = Session(Params(profile="t"))  # the default runs folder also updates the project's figures/
    assert default.figure_paths("f.png") == [
        tmp_path / "project" / "runs" / "t" / "figures" / "f.png",
        tmp_path / "project" / "figures" / "t" / "f.png",
    ]


def test_ncn_agents_can_be_grounded_adapter_and_description(data):
    """negotiation.agent_kind admitted only prompted and described: no score ran under an adapter."""
    from kit.agents import AgentSet, grounded
    from kit.evals.traces import acceptance_requests
    from kit.negotiation.run import study_agents

    params = Params(
        profile="t", data=data, negotiation={"pairs": [["Mexico", "Iraq"]], "agent_kind": "grounded"}
    )
    built = AgentSet(
        tuple(grounded(c, f"/adapters/{c}", f"## Core Values\n{c} values.") for c in ("Mexico", "Iraq")),
        ("Mexico", "Iraq"),
    )
    agents = study_agents(params, built)
    assert {a.kind for a in agents.values()} == {"grounded"}
    assert agents["Iraq"].adapter == "/adapters/Iraq" and "Iraq values." in agents["Iraq"].system_prompt
    trace = {
        "id": "ncn:Mexico|Iraq:t",
        "topic": {"text": "Topic?"},
        "agents": [{"culture": "Mexico"}, {"culture": "Iraq"}],
        "initial": [{"response": "a"}, {"response": "b"}],
        "consensus": ["c", "d"],
    }
    requests = acceptance_requests(trace, agents)
    # A's text is scored under B's adapter and system prompt, and the other way round
    assert requests["ppl_b_of_initial_a"].adapter == "/adapters/Iraq"
    assert requests["ppl_a_of_final_b"].adapter == "/adapters/Mexico"
    from kit.config import load_params

    assert load_params(ROOT / "params" / "full.yaml").negotiation.agent_kind == "grounded"
    with pytest.raises(ValueError, match="no grounded agent for \\['Iraq'\\]"):
        study_agents(params, AgentSet(built.agents[:1], ("Mexico",)))
