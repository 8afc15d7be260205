"""Culture descriptions for the ``described`` agents, written by an LLM from survey evidence.

NCN's agents carry a description with five sections (METHODS §1). The kit grounds it in the
country's own answers: the prompt lists the country's most peaked TRAIN-split answers, so a
description never sees a held-out question. Callers pass train items only; pass ``test_items``
as well and the prompts are checked against them before any model call.

Descriptions are generated for all countries as one engine program (one batched call per
attempt); a description is valid when all five section headings are present. Invalid ones are
asked again, with a new seed, up to ``params.max_retries`` times; after that the attempt with the
most sections is kept and marked incomplete. Each description is written to
``out_dir/<country>.md`` with the fingerprint of what made it (model, exact prompt, sampling,
seed) in ``<country>.json``; a rerun reads it back without a model call while they match.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kit.data import OpinionItem, base_country
from kit.data.leaks import assert_no_test_leak
from kit.engine import ask_parsed, run
from kit.llm.base import Backend, ChatRequest, GenParams, backend_parts
from kit.run import artifacts, seeds
from kit.run.files import atomic_write_text
from kit.run.paths import file_stem

if TYPE_CHECKING:  # annotations only: kit.config composes the packages' sections
    from kit.config import AgentsParams

log = logging.getLogger(__name__)

SECTIONS = (
    "Core Values",
    "Accepted Behaviors",
    "Rejected Phenomena",
    "Perspectives",
    "Attitude toward other worldviews",
)

# Spellings a model plausibly uses for each heading (plural/singular, British "behaviours").
_NAMES = {
    "Core Values": r"core\s+values?",
    "Accepted Behaviors": r"accepted\s+behaviou?rs?",
    "Rejected Phenomena": r"rejected\s+phenomen(?:a|on|ons)",
    "Perspectives": r"perspectives?",
    "Attitude toward other worldviews": r"attitudes?\s+towards?\s+other\s+world[\s-]*views?",
}
# A heading is a line that starts with the name after markdown decoration (#, bullets, bold,
# numbering like "1." / "2)" / "IV.") and ends there or continues after a colon; so a sentence
# that merely begins with "Perspectives on family …" does not count.
_PREFIX = r"^[ \t]*(?:#{1,6}[ \t]*)?(?:[-*+][ \t]+)?(?:\(?(?:\d+|[IVX]+)[.)][ \t]*)?(?:\*\*|__|\*|_)?[ \t]*"
_SUFFIX = r"[ \t]*(?:\*\*|__|\*|_)?[ \t]*(?::|$)"
_HEADINGS = {s: re.compile(_PREFIX + name + _SUFFIX, re.I | re.M) for s, name in _NAMES.items()}


@dataclass(frozen=True)
class DescriptionResult:
    """One country's description. ``attempts`` is 0 when it was read back from ``out_dir``;
    ``raw`` holds every generated text of this run, in attempt order."""

    text: str
    attempts: int
    complete: bool
    raw: tuple[str, ...] = ()


def section_starts(text: str) -> dict[str, int]:
    """Offset of the first heading of each section found in ``text``."""
    found = {s: rx.search(text) for s, rx in _HEADINGS.items()}
    return {s: m.start() for s, m in found.items() if m is not None}


MIN_SECTION_WORDS = 3  # words (holding a letter) under a heading; fewer, and the section says nothing


def section_bodies(text: str) -> dict[str, str]:
    """Each found section's text: from the end of its heading (a heading may go on after its colon) to the
    next section's heading."""
    found = {s: m for s, m in ((s, rx.search(text)) for s, rx in _HEADINGS.items()) if m is not None}
    starts = sorted(m.start() for m in found.values())
    return {
        s: text[m.end() : next((x for x in starts if x > m.start()), len(text))] for s, m in found.items()
    }


def missing_sections(text: str) -> list[str]:
    """The sections with no heading, or with fewer than ``MIN_SECTION_WORDS`` words under it (a description made
    of the headings alone is no description)."""
    bodies = section_bodies(text)
    return [
        s
        for s in SECTIONS
        if len([w for w in bodies.get(s, "").split() if re.search(r"[^\W\d_]", w)]) < MIN_SECTION_WORDS
    ]


def is_complete(text: str) -> bool:
    return not missing_sections(text)


def clean_description(text: str) -> str:
    """The text from its first section heading on (drops a chatty preamble), stripped."""
    starts = section_starts(text)
    return (text[min(starts.values()) :] if starts else text).strip()


def survey_summary(items: Sequence[OpinionItem], max_items: int) -> str:
    """Evidence lines for one country: its ``max_items`` most peaked answers (largest top share).

    Ties are broken by question id, so the choice does not depend on input order.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    countries = {it.country for it in items}
    if len(countries) > 1:
        raise ValueError(f"survey_summary takes one country's items, got {sorted(countries)}")
    unique = {it.question_id: it for it in items}.values()
    chosen = sorted(unique, key=lambda it: (-max(it.distribution), it.question_id))[:max_items]
    lines = []
    for it in chosen:
        top = max(range(len(it.options)), key=it.distribution.__getitem__)
        lines.append(
            f'- {it.question} -> most common answer: "{it.options[top]}" ({it.distribution[top]:.0%})'
        )
    return "\n".join(lines)


def description_request(country: str, summary: str) -> ChatRequest:
    """The request for one country's description (named by country, not by survey sample)."""
    name = base_country(country)
    headings = "\n".join(f"## {s}" for s in SECTIONS)
    evidence = (
        f"Survey answers of people in {name} (the most common answer and its share):\n{summary}\n\n"
        if summary
        else ""
    )
    prompt = (
        f"{evidence}Describe the culture of {name} for someone who must answer questions as a typical "
        f"person from {name} would. Use the survey evidence where it applies and general knowledge "
        f"otherwise. Write exactly these five sections, each a markdown heading followed by two to four "
        f"sentences:\n{headings}\nStart with the first heading and write nothing else."
    )
    return ChatRequest([{"role": "user", "content": prompt}])


def _best(texts: Sequence[str]) -> str:
    """The attempt with the most sections; the earliest among equals."""
    return max(texts, key=lambda t: len(section_starts(t)))


def describe_cultures(
    backend: Backend,
    countries: Sequence[str],
    train_by_country: Mapping[str, Sequence[OpinionItem]],
    params: AgentsParams,
    seed: int,
    out_dir: Path,
    *,
    gen: GenParams | None = None,
    test_items: Sequence[OpinionItem] = (),
) -> dict[str, DescriptionResult]:
    """Descriptions for ``countries`` from their TRAIN items, reusing ``out_dir/<country>.md``.

    ``gen`` defaults to temperature 0.7 with ``params.description_tokens`` new tokens; its seed is
    replaced by one derived from ``seed`` and the attempt, so retries sample anew and reruns
    hit the cache.
    """
    out_dir = Path(out_dir)
    gen = gen or GenParams(temperature=0.7, top_p=0.95, max_new_tokens=params.description_tokens)
    requests: dict[str, ChatRequest] = {}
    for country in dict.fromkeys(countries):
        items = list(train_by_country.get(country, ()))
        wrong = sorted({it.country for it in items} - {country})
        if wrong:
            raise ValueError(
                f"train_by_country[{country!r}] holds items of {wrong}; pass each country its own items"
            )
        if not items:
            log.warning(
                "no train items for %s: its description rests on the model's general knowledge only", country
            )
        summary = survey_summary(items, params.description_items) if items else ""
        requests[country] = description_request(country, summary)
    if test_items:
        train = [it for c in requests for it in train_by_country.get(c, ())]
        assert_no_test_leak(train, test_items, [r.chat[-1]["content"] for r in requests.values()])

    def parts(country: str) -> dict:
        return {
            "model": backend_parts(backend),
            "request": requests[country].key(),
            "gen": gen.key(),
            "max_retries": params.max_retries,
            "seed": seed,
        }

    results: dict[str, DescriptionResult] = {}
    for country in requests:
        path = out_dir / f"{file_stem(country)}.md"
        if path.exists() and artifacts.reusable(
            path.with_suffix(".json"), parts(country), f"description of {country}"
        ):
            text = path.read_text(encoding="utf-8")
            results[country] = DescriptionResult(text, 0, is_complete(text))
    todo = [c for c in requests if c not in results]
    if not todo:
        return results

    makers = [
        lambda attempt, r=requests[c]: (
            r,
            dataclasses.replace(gen, seed=seeds.derive(seed, "describe", attempt)),
        )
        for c in todo
    ]
    found = run(
        ask_parsed(makers, lambda text: text if is_complete(text) else None, params.max_retries), backend
    )
    for country, result in zip(todo, found):
        best = result.value if result.value is not None else _best(result.raws)
        complete = result.value is not None
        if not complete:
            log.warning(
                "description of %s lacks %s after %d attempts; keeping the best attempt",
                country,
                missing_sections(best),
                result.attempts,
            )
        text = clean_description(best)
        atomic_write_text(out_dir / f"{file_stem(country)}.md", text)
        artifacts.stamp(out_dir / f"{file_stem(country)}.json", parts(country), complete=complete)
        results[country] = DescriptionResult(text, result.attempts, complete, result.raws)
    return {c: results[c] for c in requests}
