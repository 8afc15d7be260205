"""The reference rows of every alignment table, from the study's question split and its params.

Uniform, the other countries' mean and the neighbour prior (``kit.metrics.alignment.WORLD_REFERENCES``)
score the same (country, question) pairs as the rows beside them. The neighbour prior's country
similarity reads only the train side of the split; its predictions, like the other-countries mean's,
read the other countries' answers to the question itself. The fourth, ``entropy-matched``, is the
table's base model's own answers flattened to the other-countries mean's entropy
(``kit.metrics.alignment.entropy_matched_reference``): what flattening alone would earn.

:func:`table_rows` is what every alignment table scores: the answer rows with the letter-mass floor
applied (``evals.min_label_mass``; an answer below it is missing, counted, never uniform) and the four
references beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kit.data import goqa_split
from kit.metrics.alignment import (
    apply_label_floor,
    choose_neighbours,
    entropy_matched_reference,
    reference_rows,
)

ROW_KEYS = ("agent", "country", "question_id", "p_gen", "p_gold")


def neighbour_settings(params, train) -> tuple[int, int]:
    """The neighbour prior's ``(k, min_shared)``: the params' numbers, or where they say ``cv`` the pair
    cross-validation chooses inside the ``train`` side of the split (``kit.metrics.alignment.choose_neighbours``)."""
    r = params.references
    if r.neighbour_k != "cv" and r.min_shared != "cv":
        return int(r.neighbour_k), int(r.min_shared)
    ks = [r.neighbour_k] if r.neighbour_k != "cv" else None
    shared = [r.min_shared] if r.min_shared != "cv" else None
    k, m, _ = choose_neighbours(
        train,
        r.cv_folds,
        params.data.split_seed,
        **({"ks": ks} if ks else {}),
        **({"shared": shared} if shared else {}),
    )
    return k, m


def study_references(params, wanted: Iterable[tuple[str, str]]) -> list[dict]:
    """Score rows of the three survey references on the (country data label, question_id) pairs ``wanted``."""
    d = params.data
    train, test = goqa_split(d.goqa_path, d.test_fraction, d.split_seed, d.goqa_test_path)
    k, m = neighbour_settings(params, train)
    return reference_rows(train, test, set(wanted), k=k, min_shared=m)


def with_references(
    answers: Sequence[Mapping], world: Sequence[Mapping], base: str | None, min_label_mass: float
) -> list[dict]:
    """``answers`` (the floor applied) and the survey references ``world``, and the entropy-matched row made
    from ``base``'s answers (none when ``base`` answered nothing), reduced to the score-row keys and
    ``letter_mass`` where a row has one."""
    floored = apply_label_floor(answers, min_label_mass)
    refs = list(world) + (entropy_matched_reference(floored, world, base) if base else [])
    return [{k: r[k] for k in (*ROW_KEYS, "letter_mass") if k in r} for r in floored + refs]


def table_rows(params, answers: Sequence[Mapping], base: str | None) -> list[dict]:
    """Every alignment table's score rows: ``answers`` with ``evals.min_label_mass`` applied, and the four
    references on their (country, question) pairs, the entropy-matched one from ``base``'s answers."""
    wanted = {(r["country"], r["question_id"]) for r in answers}
    return with_references(answers, study_references(params, wanted), base, params.evals.min_label_mass)
