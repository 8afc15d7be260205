"""Guidelines (title ≤ 5 words, reason, description): parsed from model output, rendered for prompts.

Parsing never raises on model text: it returns what it could read (``[]`` or ``""`` when nothing),
and the caller decides whether to ask again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.negotiation.utility import normalise_weights


@dataclass(frozen=True)
class Guideline:
    """One negotiation guideline."""

    title: str
    reason: str
    description: str

    @property
    def text(self) -> str:
        """What gets embedded: the title and the description (the reason argues, it does not state)."""
        return f"{self.title}: {self.description}" if self.title else self.description


# Accepted spellings of each field, lower case; JSON keys and text labels alike.
_ALIASES = {
    "title": ("title", "name", "guideline"),
    "reason": ("reason", "rationale", "justification"),
    "description": ("description", "details"),
}
_CANONICAL = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_STOP_LABELS = ("opinion", "position", "stance", "summary", "analysis", "note", "notes")  # end a field only
_OPINION_KEYS = ("opinion", "position", "stance")

_LABELS = "|".join(sorted([*_CANONICAL, *_STOP_LABELS], key=len, reverse=True))
# A label opens a line, after any bullets, numbering, heading marks or emphasis: "1. **Title:** ...".
_LINE_LABEL = re.compile(rf"^[\s>#*_\-•\d.)]*({_LABELS})\b[\s*_]*[:：][\s*_]*", re.IGNORECASE)
# A capitalised label in mid-line ("Title: X Reason: Y"), moved onto its own line before parsing.
_INLINE_LABEL = re.compile(
    rf"(?<=\S)[ \t]+(?=(?:\*\*|__)?(?:{_LABELS.title()}|{_LABELS.upper()})(?:\*\*|__)?\s*[:：])"
)
_BREAK_LINE = re.compile(r"^\s*(#.*|[-*_=]{3,})\s*$")  # a heading or a rule ends the field above it
_EMPHASIS = re.compile(r"\*\*|__|`")
_FENCE = re.compile(r"```\w*")
_JSON_START = re.compile(r"[\[{]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def parse_guidelines(text: str, max_title_words: int = 5) -> list[Guideline]:
    """Guidelines in model output, in order; ``[]`` when none can be read.

    Reads JSON first (an object, a list, objects nested under any key, inside ``` fences or among
    prose), else labelled text blocks ("Title: … Reason: … Description: …", any case, markdown
    emphasis and numbering allowed). Titles are cut to ``max_title_words`` words; a block without a
    description is skipped.
    """
    if max_title_words < 1:
        raise ValueError(f"max_title_words must be at least 1; got {max_title_words}")
    blocks = [block for value in _json_values(text) for block in _json_blocks(value)] or _labelled_blocks(
        text
    )
    guidelines = []
    for block in blocks:
        description = _clean(block.get("description", ""))
        if description:
            title = " ".join(_clean(block.get("title", "")).split()[:max_title_words]).rstrip(" ,;:.-–—")
            guidelines.append(
                Guideline(title=title, reason=_clean(block.get("reason", "")), description=description)
            )
    return guidelines


def parse_opinion(text: str, max_sentences: int = 3) -> str:
    """The agent's opinion in model output, cut to ``max_sentences`` sentences; ``""`` when empty.

    Takes a JSON ``opinion`` (or ``position``/``stance``) value, else an "Opinion:" labelled
    paragraph, else the text itself without fences and a leading "Here is…:" line.
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be at least 1; got {max_sentences}")
    opinion = next((found for value in _json_values(text) for found in _json_opinions(value)), "")
    if not opinion:
        opinion = _labelled_opinion(text)
    if not opinion and not _is_json(_FENCE.sub("", text)):  # JSON without an opinion key has none
        lines = [line for line in _FENCE.sub("", text).splitlines() if line.strip()]
        while len(lines) > 1 and lines[0].rstrip().endswith(":"):
            lines.pop(0)
        opinion = " ".join(lines)
    sentences = _SENTENCE_END.split(_clean(opinion))
    return " ".join(sentences[:max_sentences])


def format_guidelines(
    guidelines: Sequence[Guideline], weights: Sequence[float] | np.ndarray | None = None
) -> str:
    """A numbered pool for prompts; with ``weights`` (renormalised) each title shows its share in %."""
    shares = None if weights is None else normalise_weights(np.asarray(weights, dtype=float), len(guidelines))
    entries = []
    for i, guideline in enumerate(guidelines):
        head = f"{i + 1}. {guideline.title or '(untitled)'}"
        if shares is not None:
            head += f" ({shares[i]:.0%})"
        lines = [head]
        if guideline.reason:
            lines.append(f"   Reason: {guideline.reason}")
        lines.append(f"   Description: {guideline.description}")
        entries.append("\n".join(lines))
    return "\n".join(entries)


def _json_values(text: str) -> Iterator[Any]:
    """Top-level JSON values anywhere in ``text``, left to right (fences and prose are skipped over)."""
    decoder = json.JSONDecoder()
    position = 0
    while (match := _JSON_START.search(text, position)) is not None:
        try:
            value, position = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
            position = match.start() + 1
            continue
        if _depth_ok(value):
            yield value


def _depth_ok(value: Any, limit: int = 64) -> bool:
    """Nested no deeper than ``limit`` (the walkers below recurse; no guideline is nested that deep)."""
    level = [value]
    for _ in range(limit):
        level = [
            v
            for x in level
            for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ())
        ]
        if not level:
            return True
    return False


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _json_blocks(value: Any) -> Iterator[dict[str, Any]]:
    """Guideline-shaped objects (a field key holding text), depth first, in order."""
    if isinstance(value, dict):
        fields = {
            _CANONICAL[key.lower()]: v
            for key, v in value.items()
            if isinstance(key, str) and key.lower() in _CANONICAL and _is_text(v)
        }
        if fields:
            yield {field: _as_text(v) for field, v in fields.items()}
            return
        for item in value.values():
            yield from _json_blocks(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_blocks(item)


def _json_opinions(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in _OPINION_KEYS and _as_text(item).strip():
                yield _as_text(item)
            else:
                yield from _json_opinions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_opinions(item)


def _is_text(value: Any) -> bool:
    """A string, number or list of them, as opposed to a wrapper around nested objects."""
    if isinstance(value, list):
        return all(_is_text(item) for item in value)
    return value is None or isinstance(value, (str, int, float))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_as_text(item) for item in value)
    return "" if value is None or isinstance(value, dict) else str(value)


def _labelled_fields(text: str) -> Iterator[tuple[str, str]]:
    """``(label, value)`` pairs of a labelled text; a value runs on until a blank line, heading or label."""
    label, lines = None, []
    for line in _INLINE_LABEL.sub("\n", text).splitlines():
        match = _LINE_LABEL.match(line)
        if match or _BREAK_LINE.match(line) or (not line.strip() and any(part.strip() for part in lines)):
            if label is not None:
                yield label, " ".join(lines)
            label, lines = (match.group(1).lower(), [line[match.end() :]]) if match else (None, [])
        elif label is not None:
            lines.append(line)
    if label is not None:
        yield label, " ".join(lines)


def _labelled_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for label, value in _labelled_fields(text):
        field = _CANONICAL.get(label)
        if field is None:
            continue
        # A title, or a field the current block already has, starts the next block.
        if not blocks or field == "title" or field in blocks[-1]:
            blocks.append({})
        blocks[-1][field] = value
    return blocks


def _labelled_opinion(text: str) -> str:
    return next(
        (value for label, value in _labelled_fields(text) if label in _OPINION_KEYS and value.strip()), ""
    )


def _clean(value: str) -> str:
    """Markdown emphasis and surrounding quotes removed, whitespace collapsed."""
    return " ".join(_EMPHASIS.sub("", value).split()).strip("\"'“”‘’ ")


_LEAD_LABEL = re.compile(r"^[\s>#*_\-•\d.)]*(?:guideline|description|title|reason)\s*[:：]\s*", re.IGNORECASE)


def parse_plain_field(text: str, max_sentences: int) -> str:
    """One prose field from a free reply: the first non-empty line, label and quotes removed,
    cut to ``max_sentences`` sentences; ``""`` when nothing is left."""
    line = next((s for s in (x.strip() for x in text.strip().splitlines()) if s), "")
    line = _EMPHASIS.sub("", _LEAD_LABEL.sub("", line)).strip().strip("\"“”'").strip()
    return " ".join(_SENTENCE_END.split(line)[:max_sentences]).strip()


def parse_description(text: str, min_words: int = 3) -> str | None:
    """A guideline description written as plain prose, or ``None`` when it is too short to be one."""
    found = parse_plain_field(text, max_sentences=2)
    return found if len(found.split()) >= min_words else None
