"""Train/test splits by question, decided by a hash rather than a shuffle.

Each question id is hashed with the seed to a number in [0, 1); the question is in the test
split when that number is below ``test_fraction``. All countries of one question therefore land
on the same side (no leakage of a question through another country), and a question keeps its
side when other items are added or removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T")

_question_id: Callable[[Any], str] = attrgetter("question_id")


def hash_unit(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from sha256(f"{seed}:{key}")."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_questions(
    items: Iterable[T], test_fraction: float, seed: int, *, key: Callable[[T], str] = _question_id
) -> tuple[list[T], list[T]]:
    """(train, test), keeping input order; ``key`` gives the unit not to split (default: question_id)."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    train: list[T] = []
    test: list[T] = []
    for item in items:
        (test if hash_unit(seed, str(key(item))) < test_fraction else train).append(item)
    return train, test


def assert_disjoint(train: Sequence[T], test: Sequence[T], *, key: Callable[[T], str] = _question_id) -> None:
    """Raise ValueError if any question has items in both splits."""
    shared = {key(item) for item in train} & {key(item) for item in test}
    if shared:
        sample = ", ".join(sorted(map(str, shared))[:5])
        raise ValueError(
            f"{len(shared)} questions are in both train and test (e.g. {sample}); split with split_questions"
        )
