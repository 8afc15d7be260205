"""A negotiation protocol is one spec in ``kit.registry.PROTOCOLS``: a new one, registered with its program
and whether it has a stopping rule, runs through the kit's own study code on the tiny profile — params accept
it, its traces are stored and validated, notebook 03's evaluation scores them and the consensus board shows
its row — with nothing else to edit."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.negotiation.baselines import initial_answers
from kit.negotiation.protocol import Context
from kit.registry import PROTOCOLS, Protocol, protocol_names, register_protocol, stopping_rules

TOY = "opening_echo"
ROOT = Path(__file__).resolve().parents[1]


def opening_echo(ctx: Context):
    """The toy protocol: each side states its opening answer, then restates it once; the restatements are
    the consensus (nothing is negotiated, so it has no stopping rule)."""
    trace = ctx.trace()
    openings = yield from initial_answers(ctx, trace)
    trace["rounds"] = [{"round": 1, "statements": list(openings)}]
    return ctx.finish(trace, openings)


@pytest.fixture
def toy_protocol():
    register_protocol(Protocol(TOY, opening_echo, stopping_rule=False, prompts="kit.negotiation.prompts"))
    try:
        yield TOY
    finally:
        PROTOCOLS.unregister(TOY)
    assert TOY not in protocol_names()


def test_the_shipped_protocols_and_their_stopping_rules():
    assert protocol_names()[:4] == ("ncn", "debate", "consultancy", "none")
    assert stopping_rules() == ("ncn", "debate")
    from kit.config import NegotiationParams

    assert NegotiationParams().methods == list(protocol_names())  # the default runs every registered protocol


def test_a_protocol_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        register_protocol(Protocol("ncn", opening_echo, stopping_rule=False))
    with pytest.raises(ValueError, match="unknown negotiation protocol"):
        PROTOCOLS.unregister("parley")


def test_an_unregistered_method_fails_the_trace_validator(toy_protocol):
    from kit.negotiation.trace import validate_trace

    PROTOCOLS.unregister(TOY)
    try:
        with pytest.raises(ValueError, match=f"method '{TOY}' is not one of"):
            validate_trace(
                {
                    "id": f"{TOY}:a|b:t",
                    "schema": "negotiation-trace/2",
                    "method": TOY,
                    "seed": 0,
                    "settings": {},
                    "topic": {},
                    "agents": [],
                    "initial": [],
                    "rounds": [],
                    "consensus": [],
                    "truncated": [],
                    "rounds_used": 0,
                    "converged": False,
                    "failed": False,
                    "parse_failures": 0,
                    "retries": 0,
                    "failures": [],
                }
            )
    finally:
        register_protocol(Protocol(TOY, opening_echo, stopping_rule=False))


def test_a_new_protocol_runs_end_to_end_on_tiny(toy_protocol, shared_data, tmp_path):
    from kit.config import load_params
    from kit.lessons import consensus_evaluation, negotiation
    from kit.negotiation.trace import validate_trace
    from kit.plan.hours import workload
    from kit.reporting.leaderboard import consensus_board
    from kit.session import Session

    params = load_params(
        ROOT / "params" / "tiny.yaml",
        [
            f"runs_dir={tmp_path}",
            f"negotiation.methods=[{TOY}, none]",
            f"finetune.from_methods=[{TOY}]",
            "negotiation.agent_kind=prompted",
        ],
    )  # params accept it
    assert any(w.notebook == "02" for w in workload(params))  # the plan prices it from its spec
    session = Session(params)
    agents = negotiation.agents(session)
    topics = negotiation.topics(session)
    traces = negotiation.run(session, agents, topics)
    toy = [t for t in traces if t["method"] == TOY]
    assert len(toy) == len(topics) * len(params.negotiation.pairs)
    for trace in toy:
        validate_trace(trace)
        assert trace["rounds_used"] == 1 and not trace["converged"]
    store = negotiation.store(session, agents)
    assert all(t["id"] in store for t in toy)  # stored, so a rerun skips them

    per_trace = consensus_evaluation.evaluate(session)  # notebook 03's evaluation, saved for the board
    assert TOY in set(per_trace["method"])
    assert (
        per_trace.loc[per_trace["method"] == TOY, "converged"].isna().all()
    )  # no stopping rule: no flag to read
    board = consensus_board(per_trace, n_boot=50)
    assert TOY in board.index and board.loc[TOY, "n"] >= 1
