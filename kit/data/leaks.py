"""Leak checks: no held-out question may reach anything an agent or a model is built or trained from.

:func:`assert_no_test_leak` guards what notebook 01 builds and :func:`agent_leak_counts` is what it records;
:func:`leak_counts` is what notebook 04 records about its finetuning data, :func:`palette_leak_counts` unit 1x's —
computed from the data itself, never assumed. Every count compares question stems
(``kit.data.goqa.question_stem``: a battery sibling or an option variant is the same question), not only
exact text; a notebook stops (:func:`assert_no_leaks`) when one is not 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from kit.data.goqa import OpinionItem, normalise_question, question_stem
from kit.data.splits import _stem, assert_disjoint
from kit.data.topics import Topic

log = logging.getLogger(__name__)

MIN_LEAK_CHARS = 20  # shorter test questions match ordinary prose by chance; they are not checked


class LeakError(ValueError):
    """Evaluation data reached what was trained on."""


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def assert_no_test_leak(
    train_items: Sequence[OpinionItem], test_items: Sequence[OpinionItem], texts: Sequence[str]
) -> None:
    """Raise ValueError if a test question's text appears in any of ``texts``.

    Matching is on whitespace-normalised, case-folded text. Test questions shorter than
    ``MIN_LEAK_CHARS`` and test questions whose text also occurs inside a train question (the
    data repeats a question's text with other options) cannot be told apart from legitimate
    train evidence, so they are not checked; the count of such questions is logged.
    """
    assert_disjoint(train_items, test_items)
    assert_disjoint(train_items, test_items, key=_stem)
    train_texts = "\x00".join(sorted({_norm(it.question) for it in train_items}))
    candidates = sorted({_norm(it.question) for it in test_items})
    checked = [q for q in candidates if len(q) >= MIN_LEAK_CHARS and q not in train_texts]
    if len(checked) < len(candidates):
        log.info(
            "leak check: %d of %d test questions are too short or also train text; not checked",
            len(candidates) - len(checked),
            len(candidates),
        )
    normed = [_norm(t) for t in texts]
    haystack = "\x00".join(normed)
    leaked = [q for q in checked if q in haystack]
    if leaked:
        where = next(i for i, t in enumerate(normed) if leaked[0] in t)
        raise ValueError(
            f"{len(leaked)} test questions appear in the given texts (e.g. {leaked[0][:80]!r} in text #{where}); "
            f"build descriptions and SFT data from train items only"
        )


class TestQuestions:
    """The test questions as stems and as normalised text: is a text one of them, or does it quote one?"""

    def __init__(self, test_items: Iterable[OpinionItem]):
        items = list(test_items)
        self.stems = {it.stem for it in items}
        self.texts = sorted(
            t for t in {normalise_question(it.question) for it in items} if len(t) >= MIN_LEAK_CHARS
        )

    def hit(self, text: str) -> bool:
        normed = normalise_question(text)
        return question_stem(text) in self.stems or any(t in normed for t in self.texts)


def agent_leak_counts(
    train_items: Sequence[OpinionItem], test_items: Sequence[OpinionItem], texts: Iterable[str]
) -> dict[str, int]:
    """What notebook 01 records about the agents it built, counted:

    - ``train_test_stems``: question stems with items on both sides of the split;
    - ``test_questions_in_agent_texts``: texts the agents were built from (description prompts, descriptions,
      grounding prompts and records) that are or quote a test question, by stem or normalised text.
    """
    test = TestQuestions(test_items)
    return {
        "train_test_stems": len({it.stem for it in train_items} & {it.stem for it in test_items}),
        "test_questions_in_agent_texts": sum(test.hit(t) for t in texts),
    }


class Stems:
    """Texts as question stems and normalised text: is a text one of them (same stem), or does it quote one?"""

    def __init__(self, texts: Iterable[str]):
        texts = list(texts)
        self.stems = {question_stem(t) for t in texts}
        self.texts = sorted(t for t in {normalise_question(t) for t in texts} if len(t) >= MIN_LEAK_CHARS)

    def hit(self, text: str) -> bool:
        normed = normalise_question(text)
        return question_stem(text) in self.stems or any(t in normed for t in self.texts)


def leak_counts(
    topics: Iterable[Topic],
    heldout: Iterable[Topic],
    traces: Iterable[dict],
    train_prompts: Iterable[str],
    test_items: Iterable[OpinionItem],
) -> dict[str, int]:
    """What finetuning on negotiation data must never see, counted:

    - ``topics_in_goqa_test``: negotiated or held-out topics that are GlobalOpinionQA test
      questions (by question id, by stem, or quoting one);
    - ``heldout_topics_negotiated``: held-out topics that occur in the traces training reads (by id, or
      by a negotiated topic of the same stem);
    - ``train_prompts_in_eval``: training prompts that are an evaluation text (a held-out topic or a test
      question, by stem or quoted).
    """
    topics, heldout, test_items, traces = list(topics), list(heldout), list(test_items), list(traces)
    test, test_ids = TestQuestions(test_items), {it.question_id for it in test_items}
    negotiated = {t["topic"]["id"] for t in traces}
    negotiated_stems = {question_stem(t["topic"]["text"]) for t in traces if t.get("topic", {}).get("text")}
    held = Stems(t.text for t in heldout)
    return {
        "topics_in_goqa_test": sum(t.id in test_ids or test.hit(t.text) for t in topics + heldout),
        "heldout_topics_negotiated": sum(
            t.id in negotiated or question_stem(t.text) in negotiated_stems for t in heldout
        ),
        "train_prompts_in_eval": sum(held.hit(p) or test.hit(p) for p in train_prompts),
    }


def palette_leak_counts(
    train_queries: Iterable[Topic],
    heldout_queries: Iterable[Topic],
    training_prompts: Iterable[str],
    router_prompts: Iterable[str],
    test_items: Iterable[OpinionItem],
) -> dict[str, int]:
    """What unit 1x must never train on or route by, counted against the GlobalOpinionQA test questions
    (by stem, or quoted inside the text):

    - ``train_queries_in_test``: palette training queries that are test questions;
    - ``heldout_queries_in_test``: held-out queries (whose synthesised answers are notebook 12's gold
      responses) that are test questions;
    - ``training_prompts_in_test``: prompts of the continent agents' preference records (synthesised or
      published data) that are or quote a test question;
    - ``router_prompts_in_test``: the merge recipes' router prompts that are or quote a test question;
    - ``heldout_queries_in_training``: held-out queries that share a stem with a training query or occur in
      a training prompt.
    """
    test, train_queries, heldout_queries = (
        TestQuestions(test_items),
        list(train_queries),
        list(heldout_queries),
    )
    training_prompts = list(training_prompts)
    trained = Stems([q.text for q in train_queries])
    held = Stems([q.text for q in heldout_queries])
    return {
        "train_queries_in_test": sum(test.hit(q.text) for q in train_queries),
        "heldout_queries_in_test": sum(test.hit(q.text) for q in heldout_queries),
        "heldout_queries_in_training": sum(trained.hit(q.text) for q in heldout_queries)
        + sum(held.hit(p) for p in training_prompts),
        "training_prompts_in_test": sum(test.hit(p) for p in training_prompts),
        "router_prompts_in_test": sum(test.hit(p) for p in router_prompts),
    }


def assert_no_leaks(counts: dict[str, int], what: str = "the finetuning data") -> None:
    """Stop with one clear line when any leak count is not 0."""
    bad = {k: v for k, v in counts.items() if v}
    if bad:
        raise LeakError(
            f"evaluation data reached {what}: {bad}; nothing trained here can be "
            "evaluated on it — check the topic or query source, heldout_share and the data split"
        )
