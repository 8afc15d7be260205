"""Generate, parse, and re-ask what could not be read — the one retry loop of the kit.

Small models often answer in a shape the kit cannot read (no JSON, a missing section, a reply
that drops the format). :func:`ask_parsed` asks for every item, parses each text, optionally
checks the parsed values in one further batched step (a judge), and re-asks only the failures,
each with a request its maker builds for that attempt (a new seed, or a note in the prompt, so
greedy decoding does not repeat itself). After ``max_retries`` re-asks an item gives up: its
``value`` is ``None`` and its raw texts are kept, so the caller records the failure instead of
stopping the run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kit.engine.jobs import Need, Reply, ask
from kit.llm.base import ChatRequest, GenParams

T = TypeVar("T")

Maker = Callable[[int], tuple[ChatRequest, GenParams]]
# check([(item index, value)], attempt) -> one accept flag per value; it may take engine steps (a judge).
Check = Callable[[list[tuple[int, T]], int], Generator[Need, Reply, list[bool]]]


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """An item's outcome: the accepted ``value`` (``None`` when no attempt was accepted), the last raw
    text, the attempts made, every raw text in attempt order, and the values the check turned down."""

    value: T | None
    raw: str
    attempts: int
    raws: tuple[str, ...] = ()
    rejected: tuple[T, ...] = ()

    @property
    def unreadable(self) -> int:
        """Attempts whose text did not parse."""
        return self.attempts - len(self.rejected) - (self.value is not None)


def read(parse: Callable[[str], T | None], text: str) -> T | None:
    """``parse(text)``, or None when the parser raises: model text that breaks a parser is unreadable
    text, re-asked and then recorded, never a crash (a reply of 1,000 ``[`` makes json recurse past
    Python's limit)."""
    try:
        return parse(text)
    except Exception:  # noqa: BLE001 — whatever the text does to the parser, the text is at fault
        return None


def ask_parsed(
    makers: Sequence[Maker], parse: Callable[[str], T | None], max_retries: int, check: Check | None = None
) -> Generator[Need, Reply, list[Parsed[T]]]:
    """Generate for every maker, parse, check, and re-ask the failures (only those, one step per attempt).

    ``makers[i](attempt)`` builds item i's request for attempt 0, 1, …, ``max_retries``.
    ``check(parsed, attempt)``, when given, receives the ``(item index, value)`` pairs parsed in an
    attempt and returns which to accept; rejected items are re-asked like unreadable ones.
    """
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
    values: list[T | None] = [None] * len(makers)
    raws: list[list[str]] = [[] for _ in makers]
    rejected: list[list[T]] = [[] for _ in makers]
    todo = list(range(len(makers)))
    for attempt in range(max_retries + 1):
        if not todo:
            break
        texts = yield from ask([makers[i](attempt) for i in todo], retry=attempt)
        parsed: list[tuple[int, T]] = []
        for i, text in zip(todo, texts):
            raws[i].append(text)
            value = read(parse, text)
            if value is not None:
                parsed.append((i, value))
        accepted = (yield from check(parsed, attempt)) if check and parsed else [True] * len(parsed)
        for (i, value), ok in zip(parsed, accepted):
            if ok:
                values[i] = value
            else:
                rejected[i].append(value)
        todo = [i for i in todo if values[i] is None]
    return [
        Parsed(values[i], raws[i][-1] if raws[i] else "", len(raws[i]), tuple(raws[i]), tuple(rejected[i]))
        for i in range(len(makers))
    ]
