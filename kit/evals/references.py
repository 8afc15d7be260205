"""The reference rows of every alignment table, from the study's question split and its params.

Uniform, the other countries' mean and the neighbour prior (``kit.metrics.alignment.REFERENCES``)
score the same (country, question) pairs as the rows beside them. The neighbour prior's country
similarity reads only the train side of the split; its predictions, like the other-countries mean's,
read the other countries' answers to the question itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from kit.data import goqa_split
from kit.metrics.alignment import reference_rows


def study_references(params, wanted: Iterable[tuple[str, str]]) -> list[dict]:
    """Score rows of the three references on the (country data label, question_id) pairs ``wanted``."""
    d, r = params.data, params.references
    train, test = goqa_split(d.goqa_path, d.test_fraction, d.split_seed, d.goqa_test_path)
    return reference_rows(train, test, set(wanted), k=r.neighbour_k, min_shared=r.min_shared)
