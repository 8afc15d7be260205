"""Schwartz value detectors: JSON parsing, bounded batched retries, the embedding proxy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kit.llm.base import Backend, GenParams
from kit.run import seeds
from kit.values import (
    SCHWARTZ_VALUES,
    VALUE_DEFINITIONS,
    VALUE_POLES,
    EmbeddingValueDetector,
    LLMValueJudge,
    judge_prompt,
    make_value_detector,
    parse_value_json,
)

VEC = [1, 0, -1, 0, 0, 1, 1, 1, 0, -1]
GOOD = json.dumps(dict(zip(SCHWARTZ_VALUES, VEC)))


def test_parse_plain_json():
    np.testing.assert_array_equal(parse_value_json(GOOD), VEC)


def test_parse_fenced_lowercase_string_scores():
    body = ",\n".join(
        f'  "{name.lower().replace("-", " ")}": "{"+1" if v == 1 else v}"'
        for name, v in zip(SCHWARTZ_VALUES, VEC)
    )
    text = f"Here is my annotation:\n```json\n{{\n{body}\n}}\n```\nThe text stresses tradition."
    np.testing.assert_array_equal(parse_value_json(text), VEC)


def test_parse_near_json_and_nesting():
    bare_plus = GOOD.replace(": 1", ": +1")[:-1] + ",}"  # "Power": +1 and a trailing comma
    np.testing.assert_array_equal(parse_value_json(bare_plus), VEC)
    np.testing.assert_array_equal(parse_value_json(json.dumps({"values": json.loads(GOOD)})), VEC)
    # A float 1.0 is a score; the first readable object wins over an unreadable one before it.
    floats = json.dumps({k: float(v) for k, v in json.loads(GOOD).items()})
    np.testing.assert_array_equal(parse_value_json('{"note": "draft"} then ' + floats), VEC)


@pytest.mark.parametrize(
    "bad",
    [
        json.dumps(dict(zip(SCHWARTZ_VALUES[:9], VEC))),  # a value missing
        GOOD.replace('"Power": 0', '"Power": 2'),  # out of range
        GOOD.replace('"Power": 0', '"Power": "yes"'),  # not a score
        GOOD.replace('"Power": 0', '"Power": true'),  # bool is no score
        GOOD.replace('"Power": 0', '"Power": 0.5'),  # not in {-1, 0, 1}
        GOOD[:-5],  # cut off
        "The text supports Tradition and Conformity.",  # no JSON
        "",
    ],
)
def test_parse_invalid(bad):
    assert parse_value_json(bad) is None


def test_judge_prompt_names_every_value():
    prompt = judge_prompt("  Respect your elders.  ")
    for name in SCHWARTZ_VALUES:
        assert f'"{name}": v' in prompt and VALUE_DEFINITIONS[name] in prompt
    assert '"""\nRespect your elders.\n"""' in prompt


class ScriptedBackend(Backend):
    """Replies with unreadable text to texts containing "hard" for the first ``fail_calls`` calls."""

    name = identity = "scripted"

    def __init__(self, fail_calls: int):
        self.fail_calls, self.calls = fail_calls, []

    def generate(self, requests, params: GenParams) -> list[str]:
        self.calls.append((len(requests), params))
        failing = len(self.calls) <= self.fail_calls
        return [
            "sorry, I cannot" if failing and "hard" in r.chat[-1]["content"] else f"```json\n{GOOD}\n```"
            for r in requests
        ]

    def score(self, requests):
        raise NotImplementedError

    def choice_probs(self, requests):
        raise NotImplementedError


def test_judge_retries_only_unread_texts_one_call_per_attempt():
    backend = ScriptedBackend(fail_calls=1)
    judge = LLMValueJudge(backend, max_retries=2, seed=7)
    results = judge.vectors(["easy one", "hard one", "easy one"])
    assert [n for n, _ in backend.calls] == [
        2,
        1,
    ]  # duplicates asked once; the retry asks only the unread text
    assert [r.attempts for r in results] == [1, 2, 1]
    assert all(r.valid for r in results) and judge.failures == 0
    first, retry = backend.calls[0][1], backend.calls[1][1]
    assert (
        first.greedy
        and not retry.greedy
        and retry.seed == seeds.derive(7, "value-judge", 1)
        and retry.deterministic
    )


def test_judge_gives_up_after_max_retries():
    backend = ScriptedBackend(fail_calls=10)
    judge = LLMValueJudge(backend, max_retries=2)
    results = judge.vectors(["hard a", "hard b", "easy"])
    assert len(backend.calls) == 3 and [n for n, _ in backend.calls] == [3, 2, 2]
    assert [r.vector is None for r in results] == [True, True, False]
    assert results[0].raw == "sorry, I cannot" and results[0].attempts == 3
    assert judge.failures == 2
    judge.vectors(["hard c"])
    assert judge.failures == 3  # counted over the judge's life
    assert len({p.seed for _, p in backend.calls[3:]}) == 3  # greedy, then two distinct seeds


def test_judge_no_retries():
    backend = ScriptedBackend(fail_calls=10)
    assert LLMValueJudge(backend, max_retries=0).vectors(["hard"])[0].attempts == 1
    assert len(backend.calls) == 1
    with pytest.raises(ValueError, match="max_retries"):
        LLMValueJudge(backend, max_retries=-1)


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode(self, texts):
        self.calls += 1
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def embedder():
    from kit.embed import Embedder

    return Embedder("all-minilm-l6-v2")


TRADITION = (
    "Young people should obey their elders and follow the traditions and customs of their ancestors; "
    "respecting the old ways and honouring one's parents keeps the community together."
)
FREEDOM = (
    "Every person should be free to choose their own path in life, think independently and decide for "
    "themselves what to believe."
)


def test_embedding_detector_on_clear_texts(embedder):
    counting = CountingEmbedder(embedder)
    detector = EmbeddingValueDetector(counting)
    assert counting.calls == 1  # the 20 pole descriptions, once
    results = detector.vectors([TRADITION, FREEDOM])
    assert counting.calls == 2  # all texts in one call
    tradition, freedom = (dict(zip(SCHWARTZ_VALUES, r.vector)) for r in results)
    assert tradition["Tradition"] == 1 and tradition["Conformity"] == 1 and tradition["Self-Direction"] == -1
    assert freedom["Self-Direction"] == 1
    assert detector.vectors([]) == [] and detector.failures == 0


def test_embedding_scores_match_independent_cosines(embedder):
    detector = EmbeddingValueDetector(embedder, margin=0.05)
    text_vec = embedder.encode([TRADITION])[0]
    expected = []
    for name in SCHWARTZ_VALUES:
        sup, opp = embedder.encode(list(VALUE_POLES[name]))
        cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
        expected.append(cos(text_vec, sup) - cos(text_vec, opp))
    result = detector.vectors([TRADITION])[0]
    np.testing.assert_allclose(list(json.loads(result.raw).values()), expected, atol=1e-4)
    expected = np.array(expected)
    np.testing.assert_array_equal(
        result.vector, np.where(expected > 0.05, 1, np.where(expected < -0.05, -1, 0))
    )


def test_make_value_detector(embedder):
    backend = ScriptedBackend(fail_calls=0)
    judge = make_value_detector("llm", backend, None, max_retries=1)
    assert isinstance(judge, LLMValueJudge) and judge.max_retries == 1
    assert isinstance(make_value_detector("embedding", None, embedder, margin=0.1), EmbeddingValueDetector)
    with pytest.raises(ValueError, match="needs a backend"):
        make_value_detector("llm", None, embedder)
    with pytest.raises(ValueError, match="needs an embedder"):
        make_value_detector("embedding", backend, None)
    with pytest.raises(ValueError, match="unknown value detector"):
        make_value_detector("survey", backend, embedder)
