"""VISA's texts: what the base model answers to open questions, beside the questions themselves.

Questions come from two sources, never from data other units evaluate on: the **train** side of
the GlobalOpinionQA question split every unit shares, and MoralChoice's **high**-ambiguity
dilemmas (capability checks use the low-ambiguity ones). Each question becomes an item with a
stable id; the base model answers it (one batched greedy step through the engine), and that answer
is the text the rewriter edits. Items are split by question stem into ``train`` and ``test``
(``seeds.unit(seed, "visa-split", stem) < test_fraction``, ``kit.data.goqa.question_stem``, as notebook 01
splits): the detector, the rewriter and both
trained baselines learn from train items only, and every table is measured on test items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from kit.data import OpinionItem, goqa_split, load_moralchoice
from kit.data.goqa import question_stem
from kit.data.splits import first_by_hash
from kit.engine import ask, run
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.run import seeds

SPLIT = "visa-split"
ANSWER_SYSTEM = "You are a helpful assistant. Answer in a few sentences of plain prose."
VIEW = "What is your view? "  # a GlobalOpinionQA question asked without its options


@dataclass(frozen=True)
class Question:
    id: str
    source: str  # goqa | moralchoice
    text: str


@dataclass(frozen=True)
class Item:
    """A question, the base model's answer to it (the text to rewrite) and its split."""

    id: str
    source: str
    question: str
    answer: str
    split: str  # train | test

    def as_dict(self) -> dict:
        return asdict(self)


def questions(data, n_goqa: int, n_moralchoice: int, seed: int) -> list[Question]:
    """``n_goqa`` train-split GlobalOpinionQA questions and ``n_moralchoice`` high-ambiguity dilemmas,
    chosen by hash order (stable as n grows)."""
    train, _ = goqa_split(data.goqa_path, data.test_fraction, data.split_seed, data.goqa_test_path)
    unique = list({it.question_id: it for it in train}.values())
    goqa = first_by_hash(unique, n_goqa, seed, "visa-goqa")
    dilemmas = first_by_hash(
        load_moralchoice(data.moralchoice_path, ambiguity="high"),
        n_moralchoice,
        seed,
        "visa-moralchoice",
        key=lambda s: s.id,
    )
    return [Question(f"goqa:{it.question_id}", "goqa", f"{VIEW}{it.question}") for it in goqa] + [
        Question(f"moralchoice:{s.id}", "moralchoice", f"{s.context}\nWhat should one do, and why?")
        for s in dilemmas
    ]


def split_of(seed: int, question: str, test_fraction: float) -> str:
    """An item's split, by its question's stem (``kit.data.goqa.question_stem``, as notebook 01 splits), so a
    survey battery's siblings and near-duplicate questions never straddle train and test."""
    return (
        "test"
        if seeds.unit(seed, SPLIT, question_stem(question.removeprefix(VIEW))) < test_fraction
        else "train"
    )


def answer_request(question: str) -> ChatRequest:
    return ChatRequest([{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": question}])


def build(
    backend: Backend,
    qs: Sequence[Question],
    answer_tokens: int,
    min_words: int,
    seed: int,
    test_fraction: float,
    temperature: float = 0.0,
) -> tuple[list[Item], list[dict]]:
    """Items with the base model's answers (greedy, or one seeded sample at ``temperature``), and the
    dropped ones (answers under ``min_words`` words, with their text)."""
    params = GenParams(
        temperature=temperature,
        max_new_tokens=answer_tokens,
        seed=seeds.derive(seed, "visa-answer") if temperature else None,
    )
    answers = run(ask([(answer_request(q.text), params) for q in qs]), backend)
    items, dropped = [], []
    for q, a in zip(qs, answers):
        if len(a.split()) < min_words:
            dropped.append({"id": q.id, "raw": a, "reason": f"fewer than {min_words} words"})
            continue
        items.append(Item(q.id, q.source, q.text, a.strip(), split_of(seed, q.text, test_fraction)))
    for split in ("train", "test"):
        if not any(it.split == split for it in items):
            raise ValueError(
                f"VISA corpus: no {split} item among {len(items)} kept ({len(dropped)} dropped); "
                "fix: raise visa.n_goqa / visa.n_moralchoice, or move visa.test_fraction toward 0.5"
            )
    return items, dropped


def detector_texts(items: Sequence[Item]) -> list[tuple[str, str, str]]:
    """(text id, text, split) for the detector: every answer and every question, each in its item's split."""
    return [(f"{it.id}:answer", it.answer, it.split) for it in items] + [
        (f"{it.id}:question", it.question, it.split) for it in items
    ]


def overlap(
    items: Sequence[Item], goqa_test: Sequence[OpinionItem], capability_ids: set[str]
) -> dict[str, int]:
    """Leak counts of the unit (all must be 0): test items sharing an id or a question stem with a train item,
    items that are a GOQA test question (by id, by stem or quoting its normalised text), capability scenarios
    used."""
    from kit.data.leaks import TestQuestions

    stem = lambda it: question_stem(it.question.removeprefix(VIEW))  # noqa: E731
    train = {it.id for it in items if it.split == "train"}
    train_stems = {stem(it) for it in items if it.split == "train"}
    test = {it.id for it in items if it.split == "test"}
    shared = {it.id for it in items if it.split == "test" and (it.id in train or stem(it) in train_stems)}
    test_ids, test_questions = {it.question_id for it in goqa_test}, TestQuestions(goqa_test)
    ids = {it.id.partition(":")[2] for it in items}
    goqa = {
        it.id
        for it in items
        if it.id.partition(":")[2] in test_ids
        or (it.source == "goqa" and test_questions.hit(it.question.removeprefix(VIEW)))
    }
    return {
        "train_test_items": len(shared | (train & test)),
        "goqa_test_questions": len(goqa),
        "capability_scenarios": len(ids & capability_ids),
    }
