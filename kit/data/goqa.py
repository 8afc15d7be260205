"""GlobalOpinionQA (Durmus et al. 2023): survey questions with per-country answer shares.

Two on-disk formats are read, told apart by their first character:

- the Modular Pluralism JSON list — one record per (question, country):
  ``{question: "Question: …\\nOptions: A. … B. …\\nAnswer:", options, attribute, gold_distribution, id}``;
- the CSV of ``Anthropic/llm_global_opinions`` — one row per question, with ``options`` a
  stringified Python list and ``selections`` a stringified ``defaultdict`` of
  country -> answer shares. Each row expands to one item per country.

Country labels go through ``normalize_country``. Distributions are renormalised to sum to 1;
the sum as read is kept in ``OpinionItem.raw_sum`` so callers can drop items with much mass
missing.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import math
import re
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from kit.run.paths import resolve

from .countries import normalize_country, resolve_country

log = logging.getLogger(__name__)

_MP_QUESTION = re.compile(r"^Question: (?P<question>.*)\nOptions: (?P<options>.*)\nAnswer:\s*$", re.S)
_DEFAULTDICT = re.compile(r"^\s*defaultdict\(\s*<class '\w+'>\s*,\s*(?P<body>.*)\)\s*$", re.S)
_CSV_COLUMNS = ("question", "selections", "options")
_FIX = "fix it or load with on_bad='skip'"


@dataclass(frozen=True)
class OpinionItem:
    """One country's answer shares on one survey question."""

    id: str
    question_id: str
    question: str
    options: tuple[str, ...]
    country: str
    distribution: tuple[float, ...]
    source: str | None = None
    raw_sum: float = 1.0

    @property
    def prompt(self) -> str:
        return render_prompt(self.question, self.options)

    @property
    def stem(self) -> str:
        return question_stem(self.question)


def option_labels(n: int) -> tuple[str, ...]:
    """Letter labels A, B, … for ``n`` options."""
    if not 0 < n <= len(string.ascii_uppercase):
        raise ValueError(f"need 1–26 options to label with letters, got {n}")
    return tuple(string.ascii_uppercase[:n])


def render_prompt(question: str, options: Sequence[str], *, inline: bool = False) -> str:
    """The survey prompt ending in "Answer:".

    ``inline=True`` puts the options on one line, the layout of the Modular Pluralism release
    (up to the stray whitespace the loader strips), for comparison with numbers on its prompts.
    """
    lettered = [f"{label}. {option}" for label, option in zip(option_labels(len(options)), options)]
    if inline:
        return f"Question: {question}\nOptions: {' '.join(lettered)}\nAnswer:"
    return "Question: {}\nOptions:\n{}\nAnswer:".format(question, "\n".join(lettered))


def question_id(question: str, options: Sequence[str]) -> str:
    """A short stable id of a question: sha1 of its whitespace-normalised text and options."""
    parts = [" ".join(question.split())] + [" ".join(o.split()) for o in options]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


STEM_CHARS = 60  # battery items share their opening sentence; 60 characters of it name the battery


def question_stem(question: str) -> str:
    """The first ``STEM_CHARS`` characters of a question, case-folded, punctuation and spacing dropped.

    Survey batteries ask one stem about several objects ("…how much of a problem … a. China's growing
    military power", "… b. the loss of jobs"), and the data holds some questions with two option sets;
    all of them share a stem, so splitting by stem keeps a battery's siblings and option variants on one
    side (111 near-duplicate items straddled a split by question id).
    """
    return normalise_question(question)[:STEM_CHARS].strip()


def normalise_question(text: str) -> str:
    """``text`` case-folded, apostrophes dropped, every other run of non-alphanumerics one space."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.casefold().replace("’", "").replace("'", "")).split())


def _distribution(values: Any, n_options: int, where: str) -> tuple[tuple[float, ...], float]:
    """Validated, renormalised shares and their sum as read."""
    try:
        shares = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: distribution {values!r} is not a list of numbers") from exc
    if len(shares) != n_options:
        raise ValueError(f"{where}: distribution has {len(shares)} values for {n_options} options; {_FIX}")
    if any(not math.isfinite(v) or v < 0 for v in shares):
        raise ValueError(f"{where}: distribution {shares} has negative or non-finite values; {_FIX}")
    total = math.fsum(shares)
    if total <= 0:
        raise ValueError(f"{where}: distribution {shares} has no mass; {_FIX}")
    return tuple(v / total for v in shares), total


def _options(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(o, str) for o in values):
        raise ValueError(f"{where}: options must be a non-empty list of strings, got {values!r}")
    # the release has stray trailing spaces in a few options
    return tuple(o.strip() for o in values)


def _mp_item(rec: Any, where: str) -> OpinionItem:
    """One record of the Modular Pluralism JSON."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = {"question", "options", "attribute", "gold_distribution", "id"} - set(rec)
    if missing:
        raise ValueError(f"{where}: missing fields {sorted(missing)}")
    options = _options(rec["options"], where)
    match = _MP_QUESTION.match(str(rec["question"]))
    # a question string without the template is taken as the bare question
    question = (match["question"] if match else str(rec["question"])).strip()
    if not question:
        raise ValueError(f"{where}: empty question")
    distribution, total = _distribution(rec["gold_distribution"], len(options), where)
    return OpinionItem(
        id=str(rec["id"]),
        question_id=question_id(question, options),
        question=question,
        options=options,
        country=_country(rec["attribute"], where),
        distribution=distribution,
        source=rec.get("source"),
        raw_sum=total,
    )


def _country(name: Any, where: str) -> str:
    try:
        return normalize_country(name)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _literal(text: str | None, where: str, column: str) -> Any:
    """Parse a stringified Python literal; ``defaultdict(<class 'list'>, {...})`` becomes ``{...}``."""
    text = text or ""
    match = _DEFAULTDICT.match(text)
    body = match["body"] if match else text
    try:
        return ast.literal_eval(body.strip())
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{where}: column {column!r} is not a Python literal: {text[:80]!r}") from exc


def _csv_items(row: dict, row_no: int, where: str, skipped: list[str] | None) -> list[OpinionItem]:
    """The items of one HF CSV row, one per country; bad countries are raised or noted in ``skipped``."""
    question = (row["question"] or "").strip()
    if not question:
        raise ValueError(f"{where}: empty question")
    options = _options(_literal(row["options"], where, "options"), where)
    selections = _literal(row["selections"], where, "selections")
    if not isinstance(selections, dict) or not selections:
        raise ValueError(
            f"{where}: selections must map country -> answer shares, got {type(selections).__name__}"
        )
    qid = question_id(question, options)
    source = (row.get("source") or "").strip() or None
    items: dict[str, OpinionItem] = {}
    for raw_country, shares in selections.items():
        try:
            country = _country(raw_country, where)
            if country in items:
                raise ValueError(f"{where}: country {raw_country!r} appears twice after normalisation")
            distribution, total = _distribution(shares, len(options), f"{where} ({raw_country})")
        except ValueError as exc:
            _bad(exc, skipped)
            continue
        items[country] = OpinionItem(
            # the CSV has no ids; row number + country identifies an item within a release
            id=f"r{row_no}:{country}",
            question_id=qid,
            question=question,
            options=options,
            country=country,
            distribution=distribution,
            source=source,
            raw_sum=total,
        )
    return list(items.values())


def _bad(exc: ValueError, skipped: list[str] | None) -> None:
    """Raise ``exc``, or note it when bad rows are being skipped."""
    if skipped is None:
        raise exc
    skipped.append(str(exc))


def _read_modular_pluralism(path: Path, skipped: list[str] | None) -> list[OpinionItem]:
    records = json.loads(path.read_text(encoding="utf-8-sig"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of GlobalOpinionQA records")
    items = []
    for i, rec in enumerate(records):
        try:
            items.append(_mp_item(rec, f"{path} record {i}"))
        except ValueError as exc:
            _bad(exc, skipped)
    return items


def _read_hf_csv(path: Path, skipped: list[str] | None) -> list[OpinionItem]:
    items = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = set(_CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a GlobalOpinionQA CSV, missing columns {sorted(missing)}")
        # rows are numbered from 0, not counting the header (as pandas and the HF viewer do)
        for row_no, row in enumerate(reader):
            try:
                items.extend(_csv_items(row, row_no, f"{path} row {row_no}", skipped))
            except ValueError as exc:
                _bad(exc, skipped)
    return items


def load_goqa(path: str | Path, *, on_bad: Literal["raise", "skip"] = "raise") -> list[OpinionItem]:
    """Read GlobalOpinionQA from a Modular Pluralism JSON file or the HF CSV.

    A malformed record, row or country entry raises ValueError naming it; with
    ``on_bad="skip"`` it is dropped and logged instead (the full HF CSV has a few such rows).
    A file is parsed once per process while it is unchanged (same size and mtime). A relative
    path is read from the project root, as every params path is.
    """
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
    path = resolve(path)
    if not path.is_file():
        raise ValueError(
            f"GlobalOpinionQA file {path} does not exist; point the data path at dev.json or the HF CSV"
        )
    st = path.stat()
    return list(_load_goqa(str(path.resolve()), st.st_size, st.st_mtime_ns, on_bad))


def country_labels(path: str | Path) -> list[str]:
    """The sorted country labels of a GlobalOpinionQA file."""
    return countries(load_goqa(path))


def resolve_countries(names: Iterable[str], path: str | Path) -> list[str]:
    """Each name as the data at ``path`` spells it ("UK" -> "Britain"), duplicates dropped; unknown
    names raise ValueError listing the closest labels (``resolve_country``)."""
    known = country_labels(path)
    return list(dict.fromkeys(resolve_country(name, known) for name in names))


@lru_cache(maxsize=8)
def _load_goqa(path: str, size: int, mtime_ns: int, on_bad: str) -> tuple[OpinionItem, ...]:
    path = Path(path)
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(256).lstrip()
    skipped: list[str] | None = [] if on_bad == "skip" else None
    reader = _read_modular_pluralism if head.startswith("[") else _read_hf_csv
    items = reader(path, skipped)
    if skipped:
        log.warning("skipped %d bad GlobalOpinionQA entries in %s, e.g. %s", len(skipped), path, skipped[0])
    renormalised = sum(abs(item.raw_sum - 1.0) > 1e-6 for item in items)
    log.info(
        "loaded %d GlobalOpinionQA items from %s (%d distributions renormalised)",
        len(items),
        path,
        renormalised,
    )
    return tuple(items)


def by_country(items: Iterable[OpinionItem]) -> dict[str, list[OpinionItem]]:
    """Items grouped by country label, in first-seen order."""
    groups: dict[str, list[OpinionItem]] = defaultdict(list)
    for item in items:
        groups[item.country].append(item)
    return dict(groups)


def questions(items: Iterable[OpinionItem]) -> dict[str, list[OpinionItem]]:
    """Items grouped by question id (one entry per country), in first-seen order."""
    groups: dict[str, list[OpinionItem]] = defaultdict(list)
    for item in items:
        groups[item.question_id].append(item)
    return dict(groups)


def countries(items: Iterable[OpinionItem]) -> list[str]:
    """The sorted country labels present in ``items``."""
    return sorted({item.country for item in items})
