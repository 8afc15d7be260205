"""Train/test splits by question, decided by a hash rather than a shuffle.

Each unit (by default a question id) is hashed with the seed and a purpose to a number in [0, 1)
(``kit.run.seeds.unit``); it is in the test split when that number is below ``test_fraction``. The
study's GlobalOpinionQA split hashes the question's *stem* (``kit.data.goqa.question_stem``), so
all countries of a question, a survey battery's sibling items and a question's option variants land
on the same side (no leakage through another country or a near-duplicate), and a question keeps
its side when other items are added or removed.

:func:`survey_splits` applies it to the countries of a study: every unit that builds from
GlobalOpinionQA (agents, topics, finetuning prompts) reads the train side, and every evaluation
reads the test side, of the same split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

from kit.data.goqa import OpinionItem, by_country, load_goqa
from kit.run import seeds

log = logging.getLogger(__name__)

T = TypeVar("T")

_question_id: Callable[[Any], str] = attrgetter("question_id")
_stem: Callable[[Any], str] = attrgetter("stem")


SPLIT = "goqa-split"  # the purpose of the study's question split


def split_questions(
    items: Iterable[T],
    test_fraction: float,
    seed: int,
    purpose: str = SPLIT,
    *,
    key: Callable[[T], str] = _question_id,
) -> tuple[list[T], list[T]]:
    """(train, test), keeping input order; ``key`` gives the unit not to split (default: question_id).

    ``purpose`` keeps splits of different things independent: a hold-out drawn inside the train
    side must not reuse the study split's numbers (they are all above ``test_fraction`` there).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    train: list[T] = []
    test: list[T] = []
    for item in items:
        (test if seeds.unit(seed, purpose, str(key(item))) < test_fraction else train).append(item)
    return train, test


def assert_disjoint(train: Sequence[T], test: Sequence[T], *, key: Callable[[T], str] = _question_id) -> None:
    """Raise ValueError if any question has items in both splits."""
    shared = {key(item) for item in train} & {key(item) for item in test}
    if shared:
        sample = ", ".join(sorted(map(str, shared))[:5])
        raise ValueError(
            f"{len(shared)} questions are in both train and test (e.g. {sample}); split with split_questions"
        )


def first_by_hash(
    items: Sequence[T], n: int, seed: int, purpose: str, key: Callable[[T], str] = _question_id
) -> list[T]:
    """A deterministic subset of ``n`` items, stable as ``n`` grows (hash order, not a shuffle)."""
    return sorted(items, key=lambda it: seeds.unit(seed, purpose, key(it)))[:n]


@dataclass
class SurveySplits:
    """The GlobalOpinionQA split of a study, per country (train capped, test capped)."""

    countries: list[str]
    train: dict[str, list[OpinionItem]]
    test: dict[str, list[OpinionItem]]
    test_all_countries: list[OpinionItem]  # every country's answers on the test questions (for references)
    skipped: dict[str, str] = field(default_factory=dict)
    source_note: str = ""  # which survey rows the train side keeps, in one sentence
    train_all_countries: list[OpinionItem] = field(
        default_factory=list
    )  # the whole train side (the neighbour prior)

    @property
    def train_items(self) -> list[OpinionItem]:
        return [it for c in self.countries for it in self.train[c]]

    @property
    def test_items(self) -> list[OpinionItem]:
        return [it for c in self.countries for it in self.test[c]]


def goqa_split(
    goqa_path: str, test_fraction: float, split_seed: int, goqa_test_path: str | None = None
) -> tuple[list[OpinionItem], list[OpinionItem]]:
    """(train, test) items of the data: the split of ``goqa_path`` by question stem, or ``goqa_test_path``
    for testing (data the user holds back) and the rows of ``goqa_path`` that share no stem with it for
    training."""
    items = load_goqa(goqa_path)
    if goqa_test_path:
        test = load_goqa(goqa_test_path)
        # a battery sibling or option variant of a held-back question is held back with it
        stems = {it.stem for it in test}
        train = [it for it in items if it.stem not in stems]
        if len(train) < len(items):
            log.info(
                "%d rows of %s share a question stem with %s and are left out of training",
                len(items) - len(train),
                goqa_path,
                goqa_test_path,
            )
        return train, test
    return split_questions(items, test_fraction, split_seed, key=_stem)


def survey_splits(
    goqa_path: str,
    countries: Sequence[str],
    *,
    test_fraction: float,
    split_seed: int,
    min_train_items: int,
    max_train_items: int,
    max_test_items: int,
    goqa_test_path: str | None = None,
    train_source: str | None = None,
) -> SurveySplits:
    """Train and test items of each country (countries already resolved to data labels).

    ``train_source`` (e.g. ``"WVS"``) keeps only train rows of that survey where the data says
    which survey a row comes from (the HF CSV does; the Modular Pluralism JSON does not), as NCN
    built its agents from World Values Survey rows; ``source_note`` says what was done. A country
    with fewer than ``min_train_items`` train items or no test item is skipped, with its reason in
    ``skipped``.
    """
    train, test = goqa_split(goqa_path, test_fraction, split_seed, goqa_test_path)
    whole_train, note = train, ""
    if train_source:
        if any(it.source for it in train):
            kept = [it for it in train if it.source == train_source]
            note = f"agents are built from the {len(kept)} {train_source} rows of the {len(train)} train rows"
            train = kept
        else:
            note = (
                f"the data carries no survey source, so agents are built from every train row "
                f"(NCN built them from {train_source} rows only)"
            )
    train_by, test_by = by_country(train), by_country(test)
    splits = SurveySplits([], {}, {}, [], source_note=note, train_all_countries=whole_train)
    for c in countries:
        n_train = len(train_by.get(c, []))
        if n_train < min_train_items or not test_by.get(c):
            splits.skipped[c] = (
                f"{n_train} train / {len(test_by.get(c, []))} test items (needs ≥ {min_train_items} and ≥ 1)"
            )
            log.warning("skipping %s: %s", c, splits.skipped[c])
            continue
        splits.countries.append(c)
        splits.train[c] = first_by_hash(train_by[c], max_train_items, split_seed, "train-cap")
        splits.test[c] = first_by_hash(test_by[c], max_test_items, split_seed, "test-cap")
    qids = {it.question_id for its in splits.test.values() for it in its}
    splits.test_all_countries = [it for it in test if it.question_id in qids]
    return splits
