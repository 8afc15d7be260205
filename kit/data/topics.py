"""Discussion topics for negotiation, debate and self-play.

A topic is a short text to argue about. Sources:

- ``"goqa"`` — GlobalOpinionQA question texts, one per question;
- ``"moralchoice"`` — high-ambiguity MoralChoice scenarios with both actions;
- ``"file"`` — the user's own: ``.jsonl`` (objects with ``text``, optional ``id``), ``.csv``
  (a ``text`` column, optional ``id``), or ``.yaml``/``.yml`` (a list of strings or of
  ``{text, id}`` mappings, bare or under a ``topics:`` key);
- ``"prism"`` — the PRISM opening prompts (``HannahRoseKirk/prism-alignment``, config
  ``conversations``) from the hub: online runs only;
- ``"ncn_release"`` — the NCN paper's 457 negotiation topics (``debate/config/topics/refined_topics.json`` of
  its release, read from the tarball or an unpacked folder), id ``ncn<index>`` after their place in that file,
  which the release's transcript names carry too (``kit.negotiation.ncn_release``).

``n`` topics are picked by ranking ids on a seeded hash, so a pick is reproducible and mostly
unchanged when topics are added to the source. Topics keep source order. A study splits its
source into a negotiation pool and a held-out pool (:func:`topic_pools`) by question stem, with the
function notebook 01 splits GlobalOpinionQA with (``kit.data.splits.split_questions``), so what
finetuning is evaluated on was never negotiated — nor a battery sibling or option variant of it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kit.run import seeds
from kit.run.paths import resolve

from .goqa import load_goqa
from .moralchoice import load_moralchoice

log = logging.getLogger(__name__)

TopicSource = Literal["goqa", "moralchoice", "file", "prism", "ncn_release"]
PRISM = "HannahRoseKirk/prism-alignment"
# The NCN paper's release (Apache-2.0): where its topics sit inside it, and where the release sits beside the project.
RELEASE_DEFAULT = "../shared/data/ncn_release/ncn-release-5pairs.tar.gz"
RELEASE_TOPICS = "debate/config/topics/refined_topics.json"


@dataclass(frozen=True)
class Topic:
    id: str
    text: str
    source: str


def _file_topic(entry: Any, where: str) -> Topic:
    if isinstance(entry, str):
        entry = {"text": entry}
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where}: a topic must be a string or a mapping with 'text', got {type(entry).__name__}"
        )
    text = str(entry.get("text") or "").strip()
    if not text:
        raise ValueError(f"{where}: topic has no 'text'")
    raw_id = entry.get("id")
    # without an id, the text's hash keeps the id stable when the file is reordered
    topic_id = (
        str(raw_id).strip() if raw_id not in (None, "") else hashlib.sha1(text.encode()).hexdigest()[:12]
    )
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
    if source == "prism":
        from datasets import load_dataset

        try:
            rows = load_dataset(PRISM, "conversations", split="train")
        except Exception as e:  # offline, or the hub refused: say what to do instead
            raise ValueError(
                f"topic source 'prism' reads {PRISM} from the hub and could not ({type(e).__name__}); "
                "run online (HF_HUB_OFFLINE=0) or use source 'file' with a local copy"
            ) from None
        return [
            _file_topic({"text": r["opening_prompt"], "id": r.get("conversation_id")}, f"{PRISM} row {i}")
            for i, r in enumerate(rows)
        ]
    if source == "ncn_release":
        return list(release_topics(path))
    raise ValueError(
        f"unknown topic source {source!r}; use 'goqa', 'moralchoice', 'file', 'prism' or 'ncn_release'"
    )


def release_topic_id(index: int) -> str:
    """The id of the NCN release's topic at ``index`` of its topics file (its transcripts' number)."""
    return f"ncn{index:03d}"


def release_topics(path: str | Path) -> tuple[Topic, ...]:
    """The NCN release's topics, in file order, from its tarball or unpacked folder (read once per file state)."""
    path = resolve(path)
    try:
        stat = path.stat()
    except OSError:
        raise ValueError(
            f"{path}: no such file or folder; fix: point the topic path at the NCN release's tarball or "
            "its unpacked folder"
        ) from None
    return _release_topics(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _release_topics(path: Path, mtime_ns: int, size: int) -> tuple[Topic, ...]:
    from kit.run.files import archive_files

    found = archive_files(path, is_release_topics)
    if not found:
        raise ValueError(
            f"{path}: holds no {RELEASE_TOPICS}, so it is not the NCN release; fix: point the topic "
            "path at the release's tarball or its unpacked folder"
        )
    name = min(found, key=len)
    return tuple(topic for topic, _ in parse_release_topics(found[name], f"{path}: {name}"))


def is_release_topics(name: str) -> bool:
    """Whether a path inside the release is its topics file."""
    return name == RELEASE_TOPICS or name.endswith("/" + RELEASE_TOPICS)


def parse_release_topics(raw: bytes, where: str) -> list[tuple[Topic, dict[str, str]]]:
    """(topic, {category, source}) for each entry of the release's topics file, in file order; a file of
    another shape raises one line naming ``where``."""
    try:
        entries = json.loads(raw)
        out = [
            (
                Topic(id=release_topic_id(i), text=str(e["content"]).strip(), source="ncn_release"),
                {"category": str(e.get("category", "")), "source": str(e.get("source", ""))},
            )
            for i, e in enumerate(entries)
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError(
            f"{where} is not the release's topic list (a JSON list of objects with 'content'); "
            "fix: use the release as published"
        ) from None
    if not out or not all(t.text for t, _ in out):
        raise ValueError(f"{where} holds no topics, or a topic without text")
    return out


def pick(
    topics: list[Topic], n: int | None, seed: int, purpose: str, where: str = "the source"
) -> list[Topic]:
    """``n`` of ``topics`` (all when ``n`` is None): the lowest ``seeds.unit(seed, purpose, id)``, in source order."""
    if n is None:
        return topics
    if not 0 < n <= len(topics):
        raise ValueError(f"asked for n={n} topics but {where} has {len(topics)}; pass 1 ≤ n ≤ {len(topics)}")
    chosen = set(sorted((t.id for t in topics), key=lambda i: seeds.unit(seed, purpose, i))[:n])
    return [t for t in topics if t.id in chosen]


def read_topics(source: TopicSource, path: str | Path) -> list[Topic]:
    """Every topic of ``source`` read at ``path``; topic ids must be unique."""
    topics = _read(source, resolve(path))
    ids = [t.id for t in topics]
    dupes = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
    if dupes:
        raise ValueError(f"{path}: duplicate topic ids {dupes}; give each topic a unique id (or unique text)")
    return topics


def load_topics(source: TopicSource, path: str | Path, n: int | None = None, seed: int = 0) -> list[Topic]:
    """``n`` topics (all when ``n`` is None) from ``source`` read at ``path``."""
    return pick(read_topics(source, path), n, seed, "topics", str(path))


def topic_source_path(data, topics) -> Path:
    """The file a study's topics are read from (the hub id for ``prism``; the release's tarball or folder for
    ``ncn_release``, ``topics.path`` or the release beside the project)."""
    return Path(
        {
            "goqa": data.goqa_path,
            "moralchoice": data.moralchoice_path,
            "file": topics.path,
            "prism": PRISM,
            "ncn_release": topics.path or RELEASE_DEFAULT,
        }[topics.source]
    )


def source_identity(data, topics) -> str:
    """What a topic source's content is, for fingerprints: its file's sha256, the hub id, or for the NCN release
    the sha256 of its topics' text (the same topics whether read from the tarball or an unpacked folder)."""
    from kit.run.artifacts import file_hash

    if topics.source == "prism":
        return f"hub:{PRISM}"
    if topics.source == "ncn_release":
        found = release_topics(topic_source_path(data, topics))
        return (
            "ncn_release:"
            + hashlib.sha256("\x00".join(f"{t.id}\t{t.text}" for t in found).encode()).hexdigest()
        )
    return file_hash(topic_source_path(data, topics))


def topic_pools(data, topics, seed: int) -> tuple[list[Topic], list[Topic]]:
    """(negotiation pool, held-out pool) of a study's topic source (``data``/``topics``: params sections).

    Each topic belongs to one pool by its question stem (:func:`topic_stem`):
    ``seeds.unit(seed, "topic-heldout", stem) < topics.heldout_share`` puts it in the held-out pool, so a
    held-out topic — and every topic sharing its stem — can never be negotiated, whatever ``n`` any run picks.
    GlobalOpinionQA topics come from the train side of the study's question split only: a test question (or
    one sharing its stem) never becomes a topic, nor a training prompt built from one.
    """
    found = read_topics(topics.source, topic_source_path(data, topics))
    if topics.source == "goqa":
        from .splits import goqa_split

        train, test = goqa_split(data.goqa_path, data.test_fraction, data.split_seed, data.goqa_test_path)
        test_stems = {it.stem for it in test}
        allowed = {it.question_id for it in train if it.stem not in test_stems}
        found = [t for t in found if t.id in allowed]
    from .splits import split_questions

    return split_questions(found, topics.heldout_share, seed, "topic-heldout", key=topic_stem)


def topic_stem(topic: Topic) -> str:
    """A topic's question stem (``kit.data.goqa.question_stem`` of its text): what the splits keep together."""
    from .goqa import question_stem

    return question_stem(topic.text)


def negotiation_topics(data, topics, seed: int) -> list[Topic]:
    """The ``topics.n`` topics a negotiation study runs on, from the negotiation pool."""
    pool, _ = topic_pools(data, topics, seed)
    return pick(
        pool,
        topics.n,
        seed,
        "topics",
        f"the negotiation pool of {topics.source} (fix: lower negotiation.topics.n or heldout_share)",
    )


def heldout_topics(data, topics, n_heldout: int, seed: int) -> list[Topic]:
    """``n_heldout`` topics of the held-out pool: never negotiated in this study, for evaluating what
    the negotiation data trained."""
    _, pool = topic_pools(data, topics, seed)
    return pick(
        pool,
        n_heldout,
        seed,
        "heldout-topics",
        f"the held-out pool of {topics.source} (fix: lower finetune.heldout_topics or raise heldout_share)",
    )
