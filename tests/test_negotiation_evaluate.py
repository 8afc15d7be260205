"""Consensus evaluation of negotiation traces: one score call, one detector call, golden metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine, euclidean

from kit.agents import prompted
from kit.evals.traces import (
    acceptance_row,
    acceptance_table,
    evaluate_traces,
    split_usable,
    summarise,
    swap_names,
)
from kit.llm.base import ScoreRequest
from kit.values import ValueResult

US, CN = prompted("United States"), prompted("China")
AGENTS = {"United States": US, "China": CN}


def make_trace(
    tid,
    method="ncn",
    failed=False,
    texts=("US first said here", "CN first said here", "US final said here", "CN final said here"),
    topic="Should children care for their elderly parents?",
    rounds=3,
    converged=True,
):
    return {
        "id": tid,
        "method": method,
        "topic": {"id": f"topic-{tid}", "text": topic},
        "agents": [{"name": a.name, "culture": a.culture, "kind": a.kind} for a in (US, CN)],
        "initial": [
            {"opinion": "", "guideline": {}, "response": texts[0]},
            {"opinion": "", "guideline": {}, "response": texts[1]},
        ],
        "consensus": list(texts[2:]),
        "rounds_used": rounds,
        "converged": converged,
        "failed": failed,
    }


class CountingBackend:
    """Passes calls to the tiny backend and records the size of each score call."""

    def __init__(self, inner):
        self.inner, self.score_calls = inner, []

    def score(self, requests):
        self.score_calls.append(len(requests))
        return self.inner.score(requests)


class TableDetector:
    """Looks a text's vector up in a table (``None`` for an unreadable one); counts calls."""

    def __init__(self, table):
        self.table, self.calls, self.failures = table, 0, 0

    def vectors(self, texts):
        self.calls += 1
        return [
            ValueResult(None if self.table[t] is None else np.array(self.table[t], float), "", 1)
            for t in texts
        ]


def test_acceptance_row_by_hand():
    row = acceptance_row(10.0, 4.0, 6.0, 5.0)
    assert {k: row[k] for k in ("d_initial", "d_final", "d_ratio", "improved")} == pytest.approx(
        {"d_initial": 6.0, "d_final": 1.0, "d_ratio": 1 / 6, "improved": True}
    )
    row = acceptance_row(2.0, 3.0, 5.0, 1.0)
    assert (row["d_initial"], row["d_final"], row["d_ratio"], row["improved"]) == (1.0, 4.0, 4.0, False)
    assert acceptance_row(3.0, 3.0, 2.0, 2.0)["d_ratio"] == 1.0
    assert acceptance_row(3.0, 3.0, 2.0, 5.0)["d_ratio"] == math.inf


def test_acceptance_perplexities_match_independent_scores(tiny_backend):
    traces = [
        make_trace("t1"),
        make_trace(
            "t2",
            texts=("US a said here", "CN b said here", "US c said here", "CN d said here"),
            topic="Is lying ever right?",
        ),
    ]
    counting = CountingBackend(tiny_backend)
    table = acceptance_table(counting, AGENTS, traces)
    # every perplexity of every trace — the other persona, the control persona, the plain model — in ONE call
    assert counting.score_calls == [24]
    for row, trace in zip(table.itertuples(), traces):
        topic = trace["topic"]["text"]
        a_init, b_init = (i["response"] for i in trace["initial"])
        a_final, b_final = trace["consensus"]

        def under(agent, text, topic=topic):
            return ScoreRequest(
                [{"role": "system", "content": agent.system_prompt}, {"role": "user", "content": topic}], text
            )

        # A's text is scored as China's reply (China's system prompt), B's as the United States'.
        requests = [under(CN, a_init), under(US, b_init), under(CN, a_final), under(US, b_final)]
        expected = [math.exp(-np.mean(lp)) for lp in tiny_backend.score(requests)]
        got = [row.ppl_b_of_initial_a, row.ppl_a_of_initial_b, row.ppl_b_of_final_a, row.ppl_a_of_final_b]
        np.testing.assert_allclose(got, expected, rtol=1e-4)
        # the plain model: the same user turn, no system prompt, no adapter
        plain = [
            ScoreRequest([{"role": "user", "content": topic}], t) for t in (a_init, b_init, a_final, b_final)
        ]
        base = [math.exp(-np.mean(lp)) for lp in tiny_backend.score(plain)]
        np.testing.assert_allclose(
            [
                row.ppl_base_of_initial_a,
                row.ppl_base_of_initial_b,
                row.ppl_base_of_final_a,
                row.ppl_base_of_final_b,
            ],
            base,
            rtol=1e-4,
        )
        rel0 = (math.log(got[0] / base[0]) + math.log(got[1] / base[1])) / 2
        rel1 = (math.log(got[2] / base[2]) + math.log(got[3] / base[3])) / 2
        assert (row.rel_logppl_plain_initial, row.rel_logppl_plain_final) == pytest.approx(
            (rel0, rel1), abs=1e-3
        )
        # the control persona: a culture not party to the negotiation (none in AGENTS: Japan, prompted), each text
        # with its listener's name put as the control's
        assert row.control == "Japan"
        japan = prompted("Japan")
        swapped = [
            ScoreRequest(japan.messages(topic), swap_names(t, listener, "Japan"))
            for t, listener in (
                (a_init, "China"),
                (b_init, "United States"),
                (a_final, "China"),
                (b_final, "United States"),
            )
        ]
        control = [math.exp(-np.mean(lp)) for lp in tiny_backend.score(swapped)]
        np.testing.assert_allclose(
            [
                row.ppl_control_of_initial_a,
                row.ppl_control_of_initial_b,
                row.ppl_control_of_final_a,
                row.ppl_control_of_final_b,
            ],
            control,
            rtol=1e-4,
        )
        rel0 = (math.log(got[0] / control[0]) + math.log(got[1] / control[1])) / 2
        rel1 = (math.log(got[2] / control[2]) + math.log(got[3] / control[3])) / 2
        assert (row.rel_logppl_initial, row.rel_logppl_final) == pytest.approx((rel0, rel1), abs=1e-3)
        assert row.rel_logppl_change == pytest.approx(row.rel_logppl_final - row.rel_logppl_initial)
        # Gaps from the row's own perplexities: batch padding moves float32 scores in the 5th digit.
        assert row.d_initial == pytest.approx(abs(got[0] - got[1]))
        assert row.d_final == pytest.approx(abs(got[2] - got[3]))
        assert row.improved == (row.d_final < row.d_initial)


def test_acceptance_scores_each_distinct_request_once(tiny_backend):
    # A "none" baseline whose statements are the initial responses, and an NCN trace sharing them.
    same = ("US first said here", "CN first said here", "US first said here", "CN first said here")
    counting = CountingBackend(tiny_backend)
    table = acceptance_table(counting, AGENTS, [make_trace("n", "none", texts=same), make_trace("c")])
    # 4 distinct texts, each once under the other persona, the control persona and the plain model
    assert counting.score_calls == [12]
    assert table.loc[0, "d_ratio"] == 1.0 and not table.loc[0, "improved"]
    assert table.loc[0, "rel_logppl_change"] == 0.0
    assert table.loc[0, "d_initial"] == table.loc[1, "d_initial"]


U0, C0 = [1, 0, 0, 0, 0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, -1, -1, 0, 0]
U1, C1 = [1, 0, 0, 0, 0, 1, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
VALUES = {
    "US first said here": U0,
    "CN first said here": C0,
    "US final said here": U1,
    "CN final said here": C1,
    "US again said here": U0,
    "CN again said here": C0,
    "US end said here": [0] * 10,
    "CN end said here": None,
}


def traces_for_eval():
    return [
        make_trace("t1"),
        make_trace(
            "t2",
            "debate",
            texts=("US again said here", "CN again said here", "US end said here", "CN end said here"),
            rounds=5,
            converged=False,
        ),
        make_trace("t3", failed=True, texts=("US first said here", "CN first said here", "", "")),
    ]


def test_evaluate_traces_golden(tiny_backend):
    counting, detector = CountingBackend(tiny_backend), TableDetector(VALUES)
    df = evaluate_traces(counting, detector, AGENTS, traces_for_eval())
    assert len(df) == 2 and list(df["id"]) == ["t1", "t2"]
    assert df.attrs == {"failed": 1, "empty": 0, "degenerate": {}, "value_failures": 1}
    assert counting.score_calls == [24] and detector.calls == 1
    assert list(df["pair"]) == ["United States vs China"] * 2 and list(df["method"]) == ["ncn", "debate"]

    t1 = df.iloc[0]
    assert t1["self_consistency_a"] == pytest.approx(1 - cosine(U1, U0))
    assert t1["self_consistency_b"] == pytest.approx(1 - cosine(C1, C0))
    assert t1["value_consensus"] == pytest.approx(1 - cosine(U1, C1))
    assert t1["value_consensus_initial"] == pytest.approx(1 - cosine(U0, C0))
    d0, d1 = euclidean(U0, C0), euclidean(U1, C1)
    assert (t1["value_distance_initial"], t1["value_distance_final"]) == pytest.approx((d0, d1))
    assert t1["distance_reduction"] == pytest.approx((d0 - d1) / d0 * 100)
    assert t1["v_final_a"] == U1 and t1["values_missing"] == 0

    # t2: A's final vector is all zeros (cosines undefined), B's could not be read (all B metrics missing).
    t2 = df.iloc[1]
    assert math.isnan(t2["self_consistency_a"]) and math.isnan(t2["self_consistency_b"])
    assert math.isnan(t2["value_consensus"]) and math.isnan(t2["value_distance_final"])
    assert t2["value_distance_initial"] == pytest.approx(d0) and t2["v_final_b"] is None
    assert t2["values_missing"] == 1 and not t2["converged"] and t2["rounds_used"] == 5


def test_empty_text_and_unknown_agent(tiny_backend):
    traces = [
        make_trace("e", texts=("US first said here", "CN first said here", "US final said here", "  ")),
        make_trace("ok"),
    ]
    usable, failed, empty, bad = split_usable(traces)
    assert [t["id"] for t in usable] == ["ok"] and (failed, empty, bad) == (0, 1, {})
    with pytest.raises(ValueError, match="no agent for culture"):
        evaluate_traces(tiny_backend, TableDetector(VALUES), {"China": CN}, [make_trace("x")])
    with pytest.raises(ValueError, match="no field 'failed'"):
        split_usable([{"id": "broken"}])


def test_summarise(tiny_backend):
    df = evaluate_traces(
        tiny_backend,
        TableDetector(VALUES),
        AGENTS,
        traces_for_eval() + [make_trace("t4", rounds=7, converged=False)],
    )
    summary = summarise(df, n_boot=200, seed=0)
    assert list(summary["method"]) == ["debate", "ncn"] and list(summary["n"]) == [1, 2]
    expected = {
        "n",
        "mean_d_ratio",
        "mean_d_ratio_low",
        "mean_d_ratio_high",
        "median_d_ratio",
        "share_improved",
        "share_improved_low",
        "share_improved_high",
        "mean_d_initial",
        "mean_d_final",
        "mean_self_consistency",
        "mean_self_consistency_low",
        "mean_self_consistency_high",
        "n_self_consistency_undefined",
        "mean_consensus",
        "mean_consensus_low",
        "mean_consensus_high",
        "n_consensus_undefined",
        "mean_distance_reduction",
        "mean_distance_reduction_low",
        "mean_distance_reduction_high",
        "n_distance_reduction_undefined",
        "distance_reduction_of_means",
        "mean_rounds",
        "share_converged",
        "resolution_rate",
        *(
            f"{stat}_rel_logppl_{part}{end}"
            for part in ("initial", "final", "change")
            for stat, end in (("mean", ""), ("median", ""), ("mean", "_low"), ("mean", "_high"))
        ),
    }
    assert set(summary.columns) == expected | {"method"}

    ncn, debate = summary.set_index("method").loc["ncn"], summary.set_index("method").loc["debate"]
    ncn_rows = df[df["method"] == "ncn"]
    assert ncn["mean_d_ratio"] == pytest.approx(ncn_rows["d_ratio"].mean())
    assert ncn["share_improved"] == pytest.approx(ncn_rows["improved"].mean())
    assert (ncn["mean_rounds"], ncn["share_converged"]) == (5.0, 0.5)
    assert ncn["mean_self_consistency"] == pytest.approx(np.mean([1 - cosine(U1, U0), 1 - cosine(C1, C0)]))
    # t1 and t4 hold the same texts, so every resample has the same mean.
    assert ncn["mean_consensus_low"] == pytest.approx(ncn["mean_consensus_high"])
    assert debate["n_consensus_undefined"] == 1 and math.isnan(debate["mean_consensus"])
    assert math.isnan(debate["mean_d_ratio_low"])  # one trace: a bootstrap says nothing

    by_pair = summarise(df, n_boot=50, by=("method", "pair"))
    assert list(by_pair["pair"]) == ["United States vs China"] * 2
    with pytest.raises(ValueError, match="group by"):
        summarise(df, by=("country",))


def test_relative_acceptance_by_hand():
    row = acceptance_row(10.0, 4.0, 6.0, 5.0, 5.0, 4.0, 6.0, 10.0)
    assert row["rel_logppl_initial"] == pytest.approx((math.log(2) + 0) / 2)
    assert row["rel_logppl_final"] == pytest.approx((0 + math.log(0.5)) / 2)
    assert row["rel_logppl_change"] == pytest.approx(-math.log(2))


class FlatScorer:
    """Every token of a text gets the same log-probability under every model: ``lp[text]``."""

    def __init__(self, lp):
        self.lp = lp

    def score(self, requests):
        return [[self.lp[r.continuation]] * 3 for r in requests]


def test_a_text_predictable_under_every_model_earns_no_acceptance():
    # The statements are very predictable under everyone (as "##" was under a "## Core Values" prompt): the
    # paper's D moves with their predictability, the relative acceptance does not move at all.
    texts = (
        "We keep the old ways.",
        "We choose the new ways.",
        "We all agree on this.",
        "We all agree on that.",
    )
    lp = {texts[0]: -3.0, texts[1]: -1.0, texts[2]: -0.1, texts[3]: -0.1}
    (row,) = acceptance_table(FlatScorer(lp), AGENTS, [make_trace("p", texts=texts)]).to_dict("records")
    assert row["d_ratio"] < 0.01 and row["improved"]  # D "improved" hugely …
    assert (
        row["rel_logppl_initial"] == row["rel_logppl_final"] == row["rel_logppl_change"] == 0.0
    )  # … nothing accepted


def test_degenerate_statements_are_left_out_and_counted(tiny_backend):
    marker = make_trace(
        "m", texts=("##\n##\n##\n##", "CN first said here", "US final said here", "CN final said here")
    )
    copied = make_trace(
        "r", "debate", texts=("US first said here", "CN first said here", "agree " * 30, "CN end said here")
    )
    usable, _, _, bad = split_usable([marker, copied, make_trace("ok")])
    assert [t["id"] for t in usable] == ["ok"] and bad == {"ncn": 1, "debate": 1}


def test_the_control_persona_is_a_culture_not_party_to_the_negotiation():
    from kit.evals.traces import control_agent

    trace = make_trace("t1")
    assert control_agent(trace, AGENTS).culture == "Japan"  # no third culture in the study: a prompted one
    study = {**AGENTS, "Kenya": prompted("Kenya"), "Mexico": prompted("Mexico")}
    chosen = control_agent(trace, study)
    assert chosen.culture in ("Kenya", "Mexico") and chosen is study[chosen.culture]
    # every method's trace of one topic and pair reads the same control
    assert control_agent(make_trace("t1", "debate"), study) is chosen
    assert (
        swap_names(
            "This respects the United States' values, as the United States asks.", "United States", "Japan"
        )
        == "This respects Japan's values, as Japan asks."
    )
    assert swap_names("China's elders; Chinatown.", "China", "Kenya") == "Kenya's elders; Chinatown."


CONTROL_TOLERANCE = (
    0.1  # nats per token: what naming the listener may move the controlled acceptance change by
)


@pytest.mark.slow
def test_naming_the_other_culture_moves_acceptance_by_less_than_the_tolerance():
    """Appending "This respects {B}'s values." to each side's statement changes no substance: against the control
    persona (the listener's name put as the control's) the acceptance change stays within ``CONTROL_TOLERANCE``,
    while against the plain model it falls well below it (SmolLM2-135M-Instruct, the embedded model)."""
    from kit.llm.hf_backend import HFBackend
    from kit.llm.models import SMOLLM2, resolve_model

    backend = HFBackend(resolve_model(SMOLLM2), dtype="float32", device="cpu", batch_size=8)
    statements = [
        (
            "Should adult children care for their ageing parents at home?",
            "Families should decide for themselves; paid professional care can give parents dignity.",
            "Caring for one's parents at home is a duty of gratitude that keeps the family close.",
        ),
        (
            "Is it ever right to lie to protect a friend?",
            "Honesty matters most, and a friend is better served by the truth told kindly.",
            "Loyalty to a friend can outweigh a small lie that harms no one.",
        ),
        (
            "Should cities ban cars from their centres?",
            "People should be free to drive where they need to; better transit should earn riders.",
            "Clean air and quiet streets serve everyone, so the city should limit cars in its centre.",
        ),
    ]
    traces = [
        make_trace(
            f"n{k}",
            texts=(
                a,
                b,
                f"{a} This respects China's values.",
                f"{b} This respects the United States' values.",
            ),
            topic=topic,
        )
        for k, (topic, a, b) in enumerate(statements)
    ]
    table = acceptance_table(backend, AGENTS, traces)
    assert (table["rel_logppl_change"].abs() < CONTROL_TOLERANCE).all(), table["rel_logppl_change"].tolist()
    assert (table["rel_logppl_plain_change"] < -3 * CONTROL_TOLERANCE).all(), table[
        "rel_logppl_plain_change"
    ].tolist()
