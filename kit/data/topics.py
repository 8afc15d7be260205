"""Discussion topics for negotiation, debate and self-play.

A topic is a short text to argue about. Sources:

- ``"goqa"`` — GlobalOpinionQA question texts, one per question;
- ``"moralchoice"`` — high-ambiguity MoralChoice scenarios with both actions;
- ``"file"`` — the user's own: ``.jsonl`` (objects with ``text``, optional ``id``), ``.csv``
  (a ``text`` column, optional ``id``), or ``.yaml``/``.yml`` (a list of strings or of
  ``{text, id}`` mappings, bare or under a ``topics:`` key).

``n`` topics are picked by ranking ids on a seeded hash, so a pick is reproducible and mostly
unchanged when topics are added to the source. Topics keep source order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kit import seeds

from .goqa import load_goqa
from .moralchoice import load_moralchoice

log = logging.getLogger(__name__)

TopicSource = Literal["goqa", "moralchoice", "file"]


@dataclass(frozen=True)
class Topic:
    id: str
    text: str
    source: str


def _file_topic(entry: Any, where: str) -> Topic:
    if isinstance(entry, str):
        entry = {"text": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a topic must be a string or a mapping with 'text', got {type(entry).__name__}")
    text = str(entry.get("text") or "").strip()
    if not text:
        raise ValueError(f"{where}: topic has no 'text'")
    raw_id = entry.get("id")
    # without an id, the text's hash keeps the id stable when the file is reordered
    topic_id = str(raw_id).strip() if raw_id not in (None, "") else hashlib.sha1(text.encode()).hexdigest()[:12]
    return Topic(id=topic_id, text=text, source="file")


def _read_file(path: Path) -> list[Topic]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        topics = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {line_no}: not valid JSON ({exc.msg})") from exc
                topics.append(_file_topic(entry, f"{path} line {line_no}"))
        return topics
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "text" not in (reader.fieldnames or ()):
                raise ValueError(f"{path}: CSV needs a 'text' column, found {reader.fieldnames}")
            return [_file_topic(row, f"{path} row {i}") for i, row in enumerate(reader)]
    if suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("topics")
        if not isinstance(data, list):
            raise ValueError(f"{path}: YAML must be a list of topics or a mapping with a 'topics:' list")
        return [_file_topic(entry, f"{path} item {i}") for i, entry in enumerate(data)]
    raise ValueError(f"{path}: unsupported topic file type {suffix!r}; use .jsonl, .csv, .yaml or .yml")


def _read(source: str, path: Path) -> list[Topic]:
    if source == "goqa":
        first: dict[str, Topic] = {}
        for item in load_goqa(path):
            first.setdefault(item.question_id, Topic(id=item.question_id, text=item.question, source="goqa"))
        return list(first.values())
    if source == "moralchoice":
        scenarios = load_moralchoice(path, ambiguity="high")
        return [Topic(id=s.id, text=s.dilemma, source="moralchoice") for s in scenarios]
    if source == "file":
        if not path.is_file():
            raise ValueError(f"topic file {path} does not exist")
        return _read_file(path)
    raise ValueError(f"unknown topic source {source!r}; use 'goqa', 'moralchoice' or 'file'")


def load_topics(source: TopicSource, path: str | Path, n: int | None = None, seed: int = 0) -> list[Topic]:
    """``n`` topics (all when ``n`` is None) from ``source`` read at ``path``."""
    topics = _read(source, Path(path))
    ids = [t.id for t in topics]
    dupes = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
    if dupes:
        raise ValueError(f"{path}: duplicate topic ids {dupes}; give each topic a unique id (or unique text)")
    if n is None:
        return topics
    if not 0 < n <= len(topics):
        raise ValueError(
            f"asked for n={n} topics but {path} has {len(topics)}; pass 1 ≤ n ≤ {len(topics)} or n=None"
        )
    chosen = set(sorted(ids, key=lambda i: seeds.unit(seed, i))[:n])
    log.info("picked %d of %d %s topics (seed %d)", n, len(topics), source, seed)
    return [t for t in topics if t.id in chosen]


def _source_path(data, topics) -> Path:
    return Path({"goqa": data.goqa_path, "moralchoice": data.moralchoice_path, "file": topics.path}[topics.source])


def negotiation_topics(data, topics, seed: int) -> list[Topic]:
    """The ``topics.n`` topics a negotiation study runs on (``data``/``topics``: the params sections)."""
    return load_topics(topics.source, _source_path(data, topics), n=topics.n, seed=seed)


def heldout_topics(data, topics, n_heldout: int, seed: int) -> list[Topic]:
    """Topics never negotiated in this study: the next ``n_heldout`` of the same source.

    Topic selection ranks by a seeded hash, so a larger pick contains the negotiated one."""
    used = {t.id for t in negotiation_topics(data, topics, seed)}
    more = load_topics(topics.source, _source_path(data, topics), n=topics.n + n_heldout, seed=seed)
    return [t for t in more if t.id not in used]
