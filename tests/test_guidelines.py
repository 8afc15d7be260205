"""Reading guidelines and opinions from model output, and rendering pools for prompts."""

from __future__ import annotations

import pytest

from kit.negotiation.guidelines import Guideline, format_guidelines, parse_guidelines, parse_opinion

FAMILY = Guideline("Family First", "Families hold society together.", "Support multigenerational households.")
DIALOGUE = Guideline("Open Dialogue", "", "Listen before judging.")


def test_json_object():
    text = (
        '{"title": "Family First", "reason": "Families hold society together.", '
        '"description": "Support multigenerational households."}'
    )
    assert parse_guidelines(text) == [FAMILY]


def test_fenced_json_with_prose_around_it():
    text = (
        "Sure! Here are my proposals:\n```json\n"
        '[{"title": "Family First", "reason": "Families hold society together.",\n'
        '  "description": "Support multigenerational households."},\n'
        ' {"title": "Open Dialogue", "description": "Listen before judging."}]\n'
        "```\nLet me know if you need more {ideas}."
    )
    assert parse_guidelines(text) == [FAMILY, DIALOGUE]


def test_json_list_nested_under_a_key_with_any_case():
    text = (
        '{"candidates": [{"Title": "Family First", "Reason": "Families hold society together.", '
        '"Description": "Support multigenerational households."}], "opinion": "Family matters."}'
    )
    assert parse_guidelines(text) == [FAMILY]


def test_json_wrapper_object_and_trailing_prose():
    text = (
        '{"guideline": {"title": "Open Dialogue", "description": "Listen before judging."}} Hope this helps!'
    )
    assert parse_guidelines(text) == [DIALOGUE]


def test_labelled_text_with_markdown_and_numbering():
    text = (
        "Here are two guidelines.\n\n"
        "1. **Title:** Family First\n"
        "   **Reason:** Families hold society together.\n"
        "   **Description:** Support multigenerational\n   households.\n\n"
        "2. **TITLE**: Open Dialogue\n"
        "   description:\n   Listen before judging.\n\n"
        "I hope these help!"
    )
    assert parse_guidelines(text) == [FAMILY, DIALOGUE]


def test_labelled_text_on_one_line_and_under_headings():
    inline = (
        "Title: Family First Reason: Families hold society together. "
        "Description: Support multigenerational households."
    )
    assert parse_guidelines(inline) == [FAMILY]
    headed = (
        "### Guideline 1\ntitle: Family First\nreason: Families hold society together.\n"
        "description: Support multigenerational households.\n### Guideline 2\n"
        "Title: Open Dialogue\nDescription: Listen before judging.\nOpinion: Both matter."
    )
    assert parse_guidelines(headed) == [FAMILY, DIALOGUE]


def test_block_without_description_is_skipped():
    text = "Title: Lonely Title\nReason: no body\n\nTitle: Open Dialogue\nDescription: Listen before judging."
    assert parse_guidelines(text) == [DIALOGUE]
    assert parse_guidelines(
        '[{"title": "Lonely"}, {"title": "Open Dialogue", "description": "Listen before judging."}]'
    ) == [DIALOGUE]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot help with that.",
        "{broken json",
        "[1, 2, 3]",
        '{"answer": 42}',
        "Reason: but no body",
    ],
)
def test_garbage_gives_nothing(text):
    assert parse_guidelines(text) == []


def test_long_title_is_cut_to_five_words():
    text = '{"title": "Respect for elders, family, community and faith", "description": "d"}'
    assert parse_guidelines(text)[0].title == "Respect for elders, family, community"
    assert (
        parse_guidelines(text, max_title_words=3)[0].title == "Respect for elders"
    )  # trailing comma dropped
    with pytest.raises(ValueError, match="max_title_words"):
        parse_guidelines(text, max_title_words=0)


def test_text_is_title_and_description():
    assert FAMILY.text == "Family First: Support multigenerational households."
    assert Guideline("", "", "Just a body.").text == "Just a body."


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '{"opinion": "Elders deserve care. Families should provide it."}',
            "Elders deserve care. Families should provide it.",
        ),
        (
            '```json\n{"guideline": {"title": "T", "description": "D"}, "Opinion": "Care matters."}\n```',
            "Care matters.",
        ),
        (
            "Title: T\nDescription: D\n\n**Opinion:** Care matters.\nIt is a duty.",
            "Care matters. It is a duty.",
        ),
        (
            "Here is my opinion:\nCare matters. It is a duty. Society gains. Costs fall. More.",
            "Care matters. It is a duty. Society gains.",
        ),
        ("   ", ""),
        ('{"title": "T", "description": "D"}', ""),
    ],
)
def test_parse_opinion(text, expected):
    assert parse_opinion(text) == expected


def test_format_guidelines_with_and_without_weights():
    assert format_guidelines([FAMILY, DIALOGUE]) == (
        "1. Family First\n   Reason: Families hold society together.\n"
        "   Description: Support multigenerational households.\n"
        "2. Open Dialogue\n   Description: Listen before judging."
    )
    weighted = format_guidelines([FAMILY, DIALOGUE], weights=[3, 1])
    assert weighted.splitlines()[0] == "1. Family First (75%)"
    assert "2. Open Dialogue (25%)" in weighted
    assert format_guidelines([]) == ""
    with pytest.raises(ValueError, match="expected 2 weights"):
        format_guidelines([FAMILY, DIALOGUE], weights=[1.0])
