"""Is a model's text readable at all? One check every protocol and metric shares.

A perplexity, a value vector or a judge's score of text that says nothing measures the format,
not the content: ``##\\n##\\n…`` is very predictable under any agent whose prompt holds ``## Core
Values``, so it wins acceptance. :func:`degenerate` names what is wrong with such a text — empty, a word or
two, mostly markup, repetitive, section headings with nothing under them, or a short non-answer ("I have no
opinion.") — or returns ``None``; :func:`copied` says whether a readable text is mostly another text (the
source it was to rewrite, or the other side's words). Protocols re-ask a degenerate answer like an unparseable one
(``kit.engine.ask_parsed``) and record it as a failure with its raw text, and the evaluations
leave it out and count it. The thresholds are validated on real text in ``tests/test_metrics_text.py``:
no MoralChoice scenario or GlobalOpinionQA question is flagged.
"""

from __future__ import annotations

import re
import zlib

MIN_WORDS = 3  # words holding a letter; fewer is no statement ("I", "Yes.", "A.")
MIN_LETTER_SHARE = 0.5  # letters among the visible characters; below, markup or symbols dominate
MIN_COMPRESSION = 0.25  # compressed / raw bytes of a text of REPEAT_BYTES or more; prose sits near 0.5-0.7
REPEAT_BYTES = 120
MIN_DISTINCT = 0.3  # distinct words / words, for texts of at least 8 words
MAX_NON_ANSWER_WORDS = 12  # a non-answer phrase in a text this short is the whole answer
COPY_SHARE = 0.8  # word trigrams of a text found in another text: above, the text copies it
# A line that is only a label: a markdown heading, a marker in capitals ("AGREE"), or a short line ending in a colon
# ("**Reason:**", "Core Values:", "JOINT SOLUTION:")
_LABEL_LINE = re.compile(
    r"^\s*(?:#{1,6}\s*[^\n]*|[A-Z][A-Z _-]{1,30}|[-*+]?\s*(?:\*\*|__)?[^.!?\n]{0,60}?(?:\*\*|__)?\s*:\s*(?:\*\*|__)?)\s*$"
)
# Saying nothing in words: no opinion, no view, cannot answer, do not know, no comment
_NON_ANSWER = re.compile(
    r"\b(?:(?:have|hold)\s+no\s+(?:opinion|view|views|position|preference|stance)|no\s+comment"
    r"|(?:can\s*not|can't|cannot|won't|will\s+not|am\s+unable\s+to|unable\s+to)\s+(?:answer|say|comment|decide|judge|help\s+with\s+that)"
    r"|(?:i\s+)?(?:do\s+not|don't)\s+know|as\s+an\s+ai\b)",
    re.IGNORECASE,
)


def degenerate(text: str | None) -> str | None:
    """Why ``text`` is no readable statement — ``"empty"``, ``"too few words"``, ``"mostly markup"``,
    ``"repetitive"``, ``"headings only"`` (every line a heading or a label), ``"no statement"`` (a short
    non-answer: "I have no opinion.", "I cannot answer that.") — or ``None`` when it reads as text."""
    text = (text or "").strip()
    if not text:
        return "empty"
    words = [w for w in text.split() if re.search(r"[^\W\d_]", w)]
    if len(words) < MIN_WORDS:
        return "too few words"
    visible = re.sub(r"\s+", "", text)
    if sum(c.isalpha() for c in visible) < MIN_LETTER_SHARE * len(visible):
        return "mostly markup"
    raw = text.encode()
    if len(raw) >= REPEAT_BYTES and len(zlib.compress(raw, 9)) < MIN_COMPRESSION * len(raw):
        return "repetitive"
    folded = [re.sub(r"\W+", "", w.casefold()) for w in words]
    if len(folded) >= 8 and len(set(folded)) < MIN_DISTINCT * len(folded):
        return "repetitive"
    lines = [line for line in text.splitlines() if line.strip()]
    if all(_LABEL_LINE.match(line) for line in lines):
        return "headings only"
    if len(words) <= MAX_NON_ANSWER_WORDS and _NON_ANSWER.search(text):
        return "no statement"
    return None


def _trigrams(text: str) -> list[tuple[str, ...]]:
    words = [re.sub(r"\W+", "", w.casefold()) for w in text.split()]
    words = [w for w in words if w]
    return [tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 0))]


def copied(text: str | None, *others: str | None) -> bool:
    """Whether ``text`` is mostly one of ``others``: at least ``COPY_SHARE`` of its word trigrams (case and
    punctuation folded) occur in it. A text of fewer than three words copies a text it equals."""
    mine = _trigrams(text or "")
    for other in others:
        if not other or not (text or "").strip():
            continue
        if not mine:
            if " ".join((text or "").casefold().split()) == " ".join(other.casefold().split()):
                return True
            continue
        theirs = set(_trigrams(other))
        if sum(g in theirs for g in mine) >= COPY_SHARE * len(mine):
            return True
    return False


def readable(text: str) -> str | None:
    """``text`` stripped when it is readable, else ``None``: a parser for ``ask_parsed``."""
    return None if degenerate(text) else text.strip()
