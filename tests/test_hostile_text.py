"""Model text that breaks a parser is unreadable text, never a crash.

Each parser of model output gets replies built to hurt it (JSON nested past Python's recursion limit,
a thousand open brackets, control characters); the retry loop turns any exception a parser raises
into an unreadable attempt, re-asked and then recorded with its raw text.
"""

import numpy as np
import pytest

from kit.agents.grounding import parse_rewrite
from kit.engine.retry import ask_parsed
from kit.engine.scheduler import run
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.negotiation.guidelines import parse_description, parse_guidelines, parse_opinion
from kit.palette.prompts import parse_feedback
from kit.selfplay.dilemmas import parse_dilemma
from kit.values.detectors import parse_value_json
from kit.visa.translator import parse_target

HOSTILE = {
    "open_brackets": "[" * 1000,
    "open_braces": "{" * 1000,
    "deep_valid_list": "[" * 5000 + "]" * 5000,
    "deep_object": '{"a": ' * 3000 + "1" + "}" * 3000,
    "deep_guideline": '{"title": "t", "description": ' + "[" * 200 + '"x"' + "]" * 200 + "}",
    "control": "\x00\x1b[2J\ufffd" * 50,
    "long": "word " * 20000,
}

PARSERS = {
    "guidelines": parse_guidelines,
    "opinion": parse_opinion,
    "description": parse_description,
    "value_json": parse_value_json,
    "target": parse_target,
    "dilemma": parse_dilemma,
    "feedback": parse_feedback,
    "rewrite": parse_rewrite,
}


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_parsers_survive_hostile_text(parser, case):
    out = PARSERS[parser](HOSTILE[case])
    # nothing is read out of these texts, except prose parsers taking the words as prose
    if parser in ("value_json", "target", "dilemma"):
        assert out is None
    if parser == "guidelines" and case != "deep_guideline":
        assert out == []


def test_deep_json_is_not_a_guideline_but_a_sibling_is():
    text = "[" * 100 + "]" * 100 + ' {"title": "Share", "description": "Both sides share the harvest."}'
    assert [g.description for g in parse_guidelines(text)] == ["Both sides share the harvest."]


class Replies(Backend):
    """Replies with the next text of a script, one per call."""

    name = identity = "replies"

    def __init__(self, texts):
        self.texts, self.calls = list(texts), 0

    def generate(self, requests, params):
        self.calls += 1
        return [self.texts.pop(0) for _ in requests]

    def score(self, requests):
        raise NotImplementedError

    def choice_probs(self, requests):
        raise NotImplementedError


def _crashing_parser(text: str):
    if text.startswith("boom"):
        raise RecursionError("maximum recursion depth exceeded")
    return text


def test_a_parser_that_raises_is_an_unreadable_attempt():
    backend = Replies(["boom 1", "boom 2", "fine"])

    def maker(attempt):
        return ChatRequest([{"role": "user", "content": "q"}]), GenParams(max_new_tokens=4, seed=attempt)

    [got] = run(ask_parsed([maker], _crashing_parser, max_retries=2), backend)
    assert (
        got.value == "fine"
        and got.attempts == 3
        and got.unreadable == 2
        and got.raws[:2] == ("boom 1", "boom 2")
    )

    backend = Replies(["boom 1", "boom 2"])
    [failed] = run(ask_parsed([maker], _crashing_parser, max_retries=1), backend)
    assert failed.value is None and failed.raws == ("boom 1", "boom 2") and failed.unreadable == 2


def test_value_vector_still_read_beside_hostile_text():
    good = (
        "{"
        + ", ".join(
            f'"{v}": 0'
            for v in (
                "Self-Direction",
                "Stimulation",
                "Hedonism",
                "Achievement",
                "Power",
                "Security",
                "Conformity",
                "Tradition",
                "Benevolence",
                "Universalism",
            )
        )
        + "}"
    )
    vector = parse_value_json("[" * 1000 + "\n" + good)
    assert vector is not None and np.all(vector == 0)
