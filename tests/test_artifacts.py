"""Stored artifacts carry the fingerprint of what made them and are reused only on a match."""

from __future__ import annotations

import logging

import pytest

from kit.agents import prompted
from kit.agents.descriptions import describe_cultures
from kit.config import AgentsParams, ModelParams, NegotiationParams, Params, TopicsParams
from kit.data import OpinionItem, question_id
from kit.llm.base import Backend, backend_parts
from kit.negotiation.run import store_parts, trace_store
from kit.run import artifacts

DESCRIPTION = "\n".join(
    f"## {s}\nFamily comes first here."
    for s in (
        "Core Values",
        "Accepted Behaviors",
        "Rejected Phenomena",
        "Perspectives",
        "Attitude toward other worldviews",
    )
)


class Counting(Backend):
    name, identity, numerics = "fake", "fake-model", "float32@cpu"

    def __init__(self):
        self.generated = 0

    def generate(self, requests, params):
        self.generated += len(requests)
        return [DESCRIPTION for _ in requests]

    def score(self, requests):
        raise AssertionError

    def choice_probs(self, requests):
        raise AssertionError


def items(country: str, n: int) -> list[OpinionItem]:
    out = []
    for k in range(n):
        q, options = f"Question {k} about family?", ("Yes", "No")
        out.append(OpinionItem(f"{k}:{country}", question_id(q, options), q, options, country, (0.8, 0.2)))
    return out


def test_fingerprints_name_what_changed(tmp_path, caplog):
    parts = {"model": {"identity": "m", "numerics": "float32@cpu"}, "seed": 0}
    assert artifacts.fingerprint(parts) == artifacts.fingerprint(dict(reversed(parts.items())))
    stamp = tmp_path / "a.json"
    assert artifacts.stale(stamp, parts) == "nothing stored"
    artifacts.stamp(stamp, parts)
    assert artifacts.stale(stamp, parts) is None and artifacts.reusable(stamp, parts, "x")
    other = {"model": {"identity": "m", "numerics": "bfloat16@cpu"}, "seed": 1}
    with caplog.at_level(logging.WARNING, logger="kit.run.artifacts"):
        assert not artifacts.reusable(stamp, other, "the thing")
    assert (
        caplog.text.count("\n") == 1
        and "the thing was made from other inputs (changed: model.numerics, seed)" in caplog.text
    )


def test_model_parts_from_params_equal_the_loaded_backends(tiny_backend):
    model = ModelParams(name="tiny-random", dtype="float32", device="cpu")
    assert artifacts.model_parts(model) == backend_parts(tiny_backend)
    assert artifacts.model_parts(model.model_copy(update={"dtype": "bfloat16"}))["numerics"] == "bfloat16@cpu"


def test_descriptions_are_reused_only_while_their_inputs_match(tmp_path):
    backend, data = Counting(), {"Mexico": items("Mexico", 4)}
    params = AgentsParams(description_items=2)
    describe_cultures(backend, ["Mexico"], data, params, 0, tmp_path)
    describe_cultures(backend, ["Mexico"], data, params, 0, tmp_path)
    assert backend.generated == 1  # reused
    describe_cultures(
        backend, ["Mexico"], data, params.model_copy(update={"description_items": 3}), 0, tmp_path
    )
    assert backend.generated == 2  # another prompt: rebuilt
    describe_cultures(
        backend, ["Mexico"], data, params.model_copy(update={"description_items": 3}), 1, tmp_path
    )
    assert backend.generated == 3  # another seed: rebuilt
    backend.numerics = "bfloat16@cpu"
    describe_cultures(
        backend, ["Mexico"], data, params.model_copy(update={"description_items": 3}), 1, tmp_path
    )
    assert backend.generated == 4  # the same weights run otherwise: rebuilt


@pytest.fixture
def study(shared_data):
    return Params(
        profile="t", negotiation=NegotiationParams(pairs=[["United States", "China"]], topics={"n": 2})
    )


def test_trace_stores_are_separate_for_other_studies(tmp_path, study):
    agents = {c: prompted(c) for c in ("United States", "China")}
    model = {"identity": "m", "backend": "transformers", "numerics": "float32@cpu"}
    base = trace_store(tmp_path, store_parts(study, agents, model, "emb")).path
    assert trace_store(tmp_path, store_parts(study, agents, model, "emb")).path == base
    more_topics = study.model_copy(
        update={"negotiation": study.negotiation.model_copy(update={"topics": TopicsParams(n=4)})}
    )
    assert (
        trace_store(tmp_path, store_parts(more_topics, agents, model, "emb")).path == base
    )  # same traces, more of them
    changed = [
        store_parts(study.model_copy(update={"seed": 1}), agents, model, "emb"),
        store_parts(study, {**agents, "China": prompted("Taiwan")}, model, "emb"),
        store_parts(study, agents, {**model, "numerics": "bfloat16@cpu"}, "emb"),
        store_parts(study, agents, model, "other-embedder"),
        store_parts(
            study.model_copy(update={"negotiation": study.negotiation.model_copy(update={"max_rounds": 3})}),
            agents,
            model,
            "emb",
        ),
    ]
    assert len({trace_store(tmp_path, parts).path for parts in changed} | {base}) == len(changed) + 1
    assert (base.parent / f"{base.stem}.json").is_file()  # what made the store, beside it
