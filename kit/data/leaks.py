"""Leak checks: no held-out question may reach anything an agent or a model is built or trained from."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kit.data.goqa import OpinionItem
from kit.data.splits import assert_disjoint

log = logging.getLogger(__name__)

MIN_LEAK_CHARS = 20  # shorter test questions match ordinary prose by chance; they are not checked


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def assert_no_test_leak(train_items: Sequence[OpinionItem], test_items: Sequence[OpinionItem],
                        texts: Sequence[str]) -> None:
    """Raise ValueError if a test question's text appears in any of ``texts``.

    Matching is on whitespace-normalised, case-folded text. Test questions shorter than
    ``MIN_LEAK_CHARS`` and test questions whose text also occurs inside a train question (the
    data repeats a question's text with other options) cannot be told apart from legitimate
    train evidence, so they are not checked; the count of such questions is logged.
    """
    assert_disjoint(train_items, test_items)
    train_texts = "\x00".join(sorted({_norm(it.question) for it in train_items}))
    candidates = sorted({_norm(it.question) for it in test_items})
    checked = [q for q in candidates if len(q) >= MIN_LEAK_CHARS and q not in train_texts]
    if len(checked) < len(candidates):
        log.info("leak check: %d of %d test questions are too short or also train text; not checked",
                 len(candidates) - len(checked), len(candidates))
    normed = [_norm(t) for t in texts]
    haystack = "\x00".join(normed)
    leaked = [q for q in checked if q in haystack]
    if leaked:
        where = next(i for i, t in enumerate(normed) if leaked[0] in t)
        raise ValueError(
            f"{len(leaked)} test questions appear in the given texts (e.g. {leaked[0][:80]!r} in text #{where}); "
            f"build descriptions and SFT data from train items only"
        )
