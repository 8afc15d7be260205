"""Culture descriptions: evidence selection, tolerant section parsing, batched retries, file reuse."""

from __future__ import annotations

import pytest

from kit.agents.descriptions import (
    SECTIONS,
    clean_description,
    describe_cultures,
    description_request,
    is_complete,
    missing_sections,
    survey_summary,
)
from kit.config import AgentsParams
from kit.data import OpinionItem, question_id
from kit.llm.base import Backend, GenParams

PARAMS = AgentsParams(description_items=2, max_retries=2, answer_tokens=8)
FULL = "\n\n".join(f"## {s}\nSome sentences about it." for s in SECTIONS)
PARTIAL = "\n\n".join(f"## {s}\nSome sentences about it." for s in SECTIONS[:3])


def item(country: str, n: int, dist) -> OpinionItem:
    question = f"Survey question number {n} about public life?"
    options = tuple(f"Choice {k}" for k in range(len(dist)))
    qid = question_id(question, options)
    return OpinionItem(f"{qid}:{country}", qid, question, options, country, tuple(dist))


ITEMS = [
    item("Japan", 0, (0.4, 0.6)),
    item("Japan", 1, (0.9, 0.1)),
    item("Japan", 2, (0.5, 0.5)),
    item("Japan", 3, (0.2, 0.7, 0.1)),
]


class Scripted(Backend):
    """Replies by country and call number; records every batch."""

    name = identity = "scripted"

    def __init__(self, script):
        self.script = script  # country -> list of replies, the last one repeated
        self.batches: list[list[str]] = []
        self.seeds: list[int | None] = []

    def generate(self, requests, params: GenParams):
        self.seeds.append(params.seed)
        countries = [
            next(c for c in self.script if f"culture of {c}" in r.chat[-1]["content"]) for r in requests
        ]
        self.batches.append(countries)
        calls = {c: sum(c in b for b in self.batches) - 1 for c in countries}
        return [self.script[c][min(calls[c], len(self.script[c]) - 1)] for c in countries]

    def score(self, requests):
        raise AssertionError("not used")

    def choice_probs(self, requests):
        raise AssertionError("not used")


def test_summary_picks_the_most_peaked_answers():
    summary = survey_summary(ITEMS, 2)
    lines = summary.splitlines()
    assert len(lines) == 2
    assert ITEMS[1].question in lines[0] and '"Choice 0" (90%)' in lines[0]
    assert ITEMS[3].question in lines[1] and '"Choice 1" (70%)' in lines[1]
    assert survey_summary(ITEMS[::-1], 2) == summary


def test_summary_refuses_mixed_countries():
    with pytest.raises(ValueError, match="one country"):
        survey_summary(ITEMS + [item("Peru", 9, (1.0,))], 3)


@pytest.mark.parametrize(
    "heading",
    [
        "## Core Values",
        "**Core Values:** harmony first",
        "1. Core Values",
        "### 1) **Core Values**",
        "- __Core values__: respect",
        "CORE VALUES",
    ],
)
def test_heading_styles_are_recognised(heading):
    assert "Core Values" not in missing_sections(heading + "\nthree words here")


def test_variant_spellings_and_sentences():
    text = (
        "Intro.\n**Core Values**\nHarmony comes first.\n## Accepted Behaviours\nBowing to elders daily.\n"
        "3. Rejected phenomenon: open public conflict\nIV. Perspectives\nThe group before the self.\n"
        "#### 5. Attitudes towards other world-views\nCurious but cautious ones."
    )
    assert is_complete(text)
    # the headings alone, or a heading with a word or two under it, are no description
    headings = "\n".join(f"## {s}" for s in SECTIONS)
    assert not is_complete(headings) and missing_sections(headings) == list(SECTIONS)
    assert missing_sections(text.replace("Harmony comes first.", "Harmony.")) == ["Core Values"]
    assert clean_description(text).startswith("**Core Values**")
    assert missing_sections("Perspectives on family are broad.\nCore values matter here.") == list(SECTIONS)
    assert missing_sections(PARTIAL) == list(SECTIONS[3:])


def test_prompt_holds_the_evidence_and_headings():
    text = description_request("Japan", survey_summary(ITEMS, 2)).chat[-1]["content"]
    assert ITEMS[1].question in text and ITEMS[0].question not in text
    assert all(f"## {s}" in text for s in SECTIONS)


def test_batched_retries_best_attempt_and_reuse(tmp_path):
    backend = Scripted({"Japan": [FULL], "Peru": ["junk", FULL], "Chad": ["junk", PARTIAL, "junk"]})
    train = {"Japan": ITEMS, "Peru": [item("Peru", 5, (0.3, 0.7))], "Chad": []}
    res = describe_cultures(backend, ["Japan", "Peru", "Chad"], train, PARAMS, 0, tmp_path)
    # one call per attempt, each with only the countries still lacking a valid description
    assert backend.batches == [["Japan", "Peru", "Chad"], ["Peru", "Chad"], ["Chad"]]
    assert len(set(backend.seeds)) == 3
    assert (res["Japan"].attempts, res["Japan"].complete) == (1, True)
    assert (res["Peru"].attempts, res["Peru"].complete, res["Peru"].raw) == (2, True, ("junk", FULL))
    assert (res["Chad"].attempts, res["Chad"].complete, res["Chad"].text) == (3, False, PARTIAL)
    assert (tmp_path / "Chad.md").read_text() == PARTIAL

    again = Scripted({"Japan": ["x"], "Peru": ["x"], "Chad": ["x"]})
    rerun = describe_cultures(again, ["Japan", "Peru", "Chad"], train, PARAMS, 0, tmp_path)
    assert again.batches == []
    assert {c: (r.text, r.attempts, r.complete) for c, r in rerun.items()} == {
        "Japan": (FULL, 0, True),
        "Peru": (FULL, 0, True),
        "Chad": (PARTIAL, 0, False),
    }


def test_no_retries_when_max_retries_is_zero(tmp_path):
    backend = Scripted({"Japan": ["junk", FULL]})
    res = describe_cultures(
        backend, ["Japan"], {"Japan": ITEMS}, PARAMS.model_copy(update={"max_retries": 0}), 0, tmp_path
    )
    assert len(backend.batches) == 1 and not res["Japan"].complete and res["Japan"].text == "junk"


def test_items_must_belong_to_the_country(tmp_path):
    with pytest.raises(ValueError, match="Japan"):
        describe_cultures(Scripted({"Peru": [FULL]}), ["Peru"], {"Peru": ITEMS}, PARAMS, 0, tmp_path)


def test_test_items_in_the_prompt_are_refused(tmp_path):
    backend = Scripted({"Japan": [FULL]})
    with pytest.raises(ValueError, match="both train and test"):
        describe_cultures(backend, ["Japan"], {"Japan": ITEMS}, PARAMS, 0, tmp_path, test_items=ITEMS[1:2])
    assert backend.batches == []
    describe_cultures(
        backend, ["Japan"], {"Japan": ITEMS}, PARAMS, 0, tmp_path, test_items=[item("Japan", 8, (0.5, 0.5))]
    )
    assert backend.batches == [["Japan"]]


def test_tiny_model_gibberish_is_kept_incomplete(tmp_path, tiny_backend):
    params = PARAMS.model_copy(update={"max_retries": 1})
    res = describe_cultures(
        tiny_backend,
        ["Japan"],
        {"Japan": ITEMS},
        params,
        0,
        tmp_path,
        gen=GenParams(temperature=0.7, max_new_tokens=8),
    )
    assert res["Japan"].attempts == 2 and not res["Japan"].complete and len(res["Japan"].raw) == 2
    assert (tmp_path / "Japan.md").read_text() == res["Japan"].text
