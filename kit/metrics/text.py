"""Is a model's text readable at all? One check every protocol and metric shares.

A perplexity, a value vector or a judge's score of text that says nothing measures the format,
not the content: ``##\\n##\\n…`` is very predictable under any agent whose prompt holds ``## Core
Values``, so it wins acceptance. :func:`degenerate` names what is wrong with such a text, or
returns ``None``; protocols re-ask a degenerate answer like an unparseable one
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


def degenerate(text: str | None) -> str | None:
    """Why ``text`` is no readable statement — ``"empty"``, ``"too few words"``, ``"mostly markup"``,
    ``"repetitive"`` — or ``None`` when it reads as text."""
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
    return None


def readable(text: str) -> str | None:
    """``text`` stripped when it is readable, else ``None``: a parser for ``ask_parsed``."""
    return None if degenerate(text) else text.strip()
