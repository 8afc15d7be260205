"""The shared degenerate-text check: thresholds validated on real text, and the outputs that gamed the metrics."""

from __future__ import annotations

import pytest

from kit.data import load_goqa, load_moralchoice
from kit.metrics.text import degenerate, readable

# What a 135M model wrote in the smoke run's negotiations and what a negotiator writes when it works.
STATEMENTS = [
    "Children should respect their elders, and elders should listen to the young before deciding for them.",
    "We agree that the community decides together, with each family keeping its own customs at home.",
    "I think honesty matters most, but kindness sometimes asks us to keep a painful truth to ourselves.",
    "Yes, I would help.",
    "## Core Values\nRespect for family, hard work and faith guide daily life in Mexico.",
    "**Guideline:** Share the water by need. **Reason:** Both villages depend on the river.",
]


def test_no_real_sentence_is_flagged(shared_data):
    scenarios = load_moralchoice(shared_data / "moralchoice" / "dev.json")
    texts = [s.dilemma for s in scenarios] + [f"{s.context} {a}" for s in scenarios for a in s.actions]
    texts += sorted({it.question for it in load_goqa(shared_data / "globalopinionqa" / "dev.json")})
    flagged = [(t[:60], degenerate(t)) for t in texts + STATEMENTS if degenerate(t)]
    assert len(texts) > 3000 and flagged == []


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        (None, "empty"),
        ("##\n##\n##\n##\n##\n##\n##", "too few words"),  # the smoke run's Kenyan opening statement
        ("---\n***\n> >", "too few words"),
        ("A.", "too few words"),
        ("**Title:** **Reason:** ****", "too few words"),
        ("## ## ## Core ## ## ## ## Values ## ## ## ## ## ## ## ## ## ok", "mostly markup"),
        ("## Core Values\n" * 12, "repetitive"),
        ("yes " * 20, "repetitive"),
        ("I agree. I agree. I agree. I agree. I agree. I agree. I agree. I agree.", "repetitive"),
    ],
)
def test_degenerate_outputs_are_named(text, why):
    assert degenerate(text) == why
    assert readable(text or "") is None


def test_readable_returns_the_stripped_text():
    assert readable("  We share the duty of care.\n") == "We share the duty of care."
