"""The NCN paper's public release, read as it is: its transcripts as the kit's negotiation traces, its own
evaluation files as per-transcript rows joined to them by ``source_file``, its summaries as published.

The layout (any culture pair of it: five are beside the project, more exist, and nothing here names one)::

    <root>/debate/config/params.yaml          lora_adapter_api: zone -> {model_name: <Country>_opinion_adapter}
    <root>/debate/config/topics/refined_topics.json                        the topics (kit.data.topics)
    <root>/data/debate_data/<ZoneA> and <ZoneB>/<OurMethod|baselineDebate|baselineConsultancy>/<category>/
        <psro|debate|consultancy>_<topic index>_<time>[_<adapter>].json    one transcript
    <root>/data/eval_result/results_model_based/<pair>/<method>/consensus_eval/
        <category>_model_based_[<judge>_]<YYYYMMDD_HHMM>.json             value vectors per transcript
    <root>/data/eval_result/results_model_based/<pair>/<method>/summary_model_based_<newest|time>.json
    <root>/data/eval_result/results_ppl_based/<pair>/<method>/consensus_eval/<category>_PPL_<time>.json
    <root>/data/eval_result/results_ppl_based/<pair>/ppl_stats.json

Methods are named as the kit names them (``RELEASE_METHODS``); a zone's culture is the country its adapter is
named after (``US`` → ``United States``), the kit's label, so a zone meets the kit's agent of that culture.
Messy files are read as they are and every kind of thing left out, or kept with a caveat, is counted in one
line of :meth:`Release.skipped_lines`: the empty first record of each evaluation list, several evaluation
versions of one category (the paper's judge ``PAPER_JUDGE`` is kept, else the latest), several summary
versions (``_newest``, else the latest), evaluations of transcripts the release does not hold, methods
without an evaluation, half-step vectors, failed perplexities (−1), a topic negotiated twice. A folder or
archive that is not the release, or a file that is corrupt, raises :class:`ReleaseError` in one line.

Traces carry ``origin: "ncn_release"`` and keep every round the release recorded (``kit.negotiation.trace``
says what such rounds hold). ``pairs``, ``methods`` and ``max_items`` choose the transcripts read as traces —
what costs model calls downstream (judges, scores, training); the evaluation files and summaries of every pair
and method are always read whole, since recomputing them is arithmetic.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kit.data.countries import normalize_country
from kit.data.cultures import NCN_ZONES
from kit.data.topics import RELEASE_DEFAULT, Topic, is_release_topics, parse_release_topics, release_topic_id
from kit.negotiation.trace import TRACE_SCHEMA
from kit.run import seeds
from kit.run.files import archive_files
from kit.run.paths import resolve

ORIGIN = "ncn_release"
DEFAULT_PATH = RELEASE_DEFAULT
RELEASE_METHODS = {"OurMethod": "ncn", "baselineDebate": "debate", "baselineConsultancy": "consultancy"}
KIT_METHODS = tuple(RELEASE_METHODS.values())
PAPER_JUDGE = "gpt-4o"  # the judge of the paper's value evaluation; other judges' files are earlier trials
PARAMS_FILE = "debate/config/params.yaml"
RELEASE_SEED = 0  # the release is the paper's seed 000

_TRANSCRIPT = re.compile(r"^(?P<kind>[a-z]+)_(?P<index>\d+)_(?P<rest>.+)\.json$")
_MODEL_EVAL = re.compile(r"^(?P<category>.+)_model_based_(?:(?P<judge>.+?)_)?(?P<time>\d{8}_\d{4})\.json$")
_PPL_EVAL = re.compile(r"^(?P<category>.+)_PPL_(?P<time>\d{8}_\d{4})\.json$")
_SUMMARY = re.compile(r"^summary_model_based_(?P<version>newest|\d{8}_\d{6})\.json$")
_BEST = re.compile(r"^\s*(?P<title>.+?)\s*:\s*reason:\s*(?P<reason>.*?)\s*detail:\s*(?P<detail>.*)$", re.S)
_VECTORS = ("init_vectors", "final_vectors")
_RESPONSES = ("response1_vector", "response2_vector")
SLOT_COLUMNS = ("v_initial_a", "v_initial_b", "v_final_a", "v_final_b")
PPL_COLUMNS = ("ppl_initial_a", "ppl_initial_b", "ppl_final_a", "ppl_final_b")
RELEASE_PPL = ("PPL_init_distance", "PPL_final_distance", "PPL_distance_difference")


class ReleaseError(ValueError):
    """The NCN release could not be read: one line naming the file, what is wrong and the fix."""


@dataclass(frozen=True)
class Zone:
    """A cultural zone of the release: its name, the agent (adapter) behind it, and that agent's culture."""

    name: str
    adapter: str
    country: str


@dataclass(frozen=True)
class Pair:
    """A culture pair: its folder name (``"<ZoneA> and <ZoneB>"``) and its two zones, A first."""

    folder: str
    a: Zone
    b: Zone

    @property
    def cultures(self) -> tuple[str, str]:
        return self.a.country, self.b.country


@dataclass
class Release:
    """What :func:`read_release` found: zones, topics, every pair and method it holds, the traces read (of
    ``traced_pairs`` × ``traced_methods``), per-transcript evaluation rows and summaries of every pair and method,
    and what was left out or kept with a caveat (``skipped``: kind → [count, why])."""

    source: Path
    zones: dict[str, Zone]
    topics: dict[str, Topic]
    categories: dict[str, str]
    pairs: list[Pair]
    methods: list[str]
    traced_pairs: list[str]
    traced_methods: list[str]
    traces: list[dict]
    evaluations: pd.DataFrame
    summaries: dict[tuple[str, str], dict]
    skipped: dict[str, list] = field(default_factory=dict)

    def skipped_lines(self) -> list[str]:
        """One line per kind: how many, and why."""
        return [f"{kind}: {count} — {why}" for kind, (count, why) in self.skipped.items()]

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"kind": k, "count": c, "why": w} for k, (c, w) in self.skipped.items()],
            columns=["kind", "count", "why"],
        )

    def pair(self, folder: str) -> Pair:
        return next(p for p in self.pairs if p.folder == folder)


class _Skips:
    def __init__(self):
        self.found: dict[str, list] = {}

    def add(self, kind: str, why: str, count: int = 1) -> None:
        if count:
            entry = self.found.setdefault(kind, [0, why])
            entry[0] += count


def read_release(
    path: str | Path = DEFAULT_PATH,
    pairs: list[str] | None = None,
    methods: list[str] | None = None,
    max_items: int | None = None,
    seed: int = 0,
) -> Release:
    """The release at ``path`` (its tarball, read in memory, or an unpacked folder): the transcripts of ``pairs``
    (folder names; None: all it holds) and kit ``methods`` (None: all three) as traces, at most ``max_items``
    topics per pair (None: all; the same topics for every method, chosen by ``seeds.unit(seed, …)``); the
    evaluations and summaries of every pair and method."""
    source = resolve(path)
    wanted_methods = list(KIT_METHODS) if methods is None else list(methods)
    unknown = [m for m in wanted_methods if m not in KIT_METHODS]
    if unknown:
        raise ReleaseError(f"methods {unknown} are not in the release; it holds {list(KIT_METHODS)}")
    if max_items is not None and max_items < 1:
        raise ReleaseError(f"max_items must be at least 1 (or None for all), got {max_items}")
    try:
        files = archive_files(source, lambda name: name.endswith((".json", ".yaml", ".yml")))
    except ValueError as e:
        raise ReleaseError(
            f"{e}; fix: point ncn_release.path at the release's tarball or its unpacked folder"
        ) from None
    root = _root(files, source)
    rel = {name[len(root) :]: data for name, data in files.items() if name.startswith(root)}
    skips = _Skips()
    zones, max_rounds, embedder = _zones(rel, source)
    topic_entries = parse_release_topics(_topics_file(rel, source), f"{source}: topics file")
    topics = {t.id: t for t, _ in topic_entries}
    categories = {t.id: info["category"] for t, info in topic_entries}
    found_pairs = _pairs(rel, zones, skips, source)
    if pairs is not None:
        missing = [p for p in pairs if p not in {fp.folder for fp in found_pairs}]
        if missing:
            raise ReleaseError(
                f"{source}: no pair {missing[0]!r}; it holds {[p.folder for p in found_pairs]}; "
                "fix: name pairs as the release's folders, or null for all"
            )
    traced = [p for p in found_pairs if pairs is None or p.folder in pairs]
    _zone_notes(found_pairs, skips)
    every_method = list(RELEASE_METHODS)
    transcripts = _transcripts(
        rel, traced, [m for m, k in RELEASE_METHODS.items() if k in wanted_methods], topics, skips, source
    )
    model_rows = _model_evaluations(rel, found_pairs, every_method, skips, source)
    ppl_rows = _ppl_evaluations(rel, found_pairs, every_method, skips, source)
    summaries = _summaries(rel, found_pairs, every_method, skips, source)
    evaluations = _join(model_rows, ppl_rows, found_pairs, topics, categories)
    read_as = {(p.folder, m) for p in traced for m, k in RELEASE_METHODS.items() if k in wanted_methods}
    skips.add(
        "transcripts not read (ncn_release.pairs, methods)",
        "transcripts of the pairs and methods not asked "
        "for as traces; their evaluations are read all the same",
        sum(
            n.startswith("data/debate_data/")
            and n.count("/") == 5
            and tuple(n.split("/")[2:4]) not in read_as
            for n in rel
        ),
    )
    chosen = _dedupe(transcripts, evaluations, skips)
    picked = _pick(chosen, max_items, seed, skips)
    traces = [_trace(t, max_rounds, embedder) for t in picked]
    ids = {(t["release"]["pair"], t["method"], t["release"]["file"]): t["id"] for t in traces}
    known = {
        (parts[2], RELEASE_METHODS[parts[3]], parts[5])
        for parts in (n.split("/") for n in rel)
        if len(parts) == 6 and parts[:2] == ["data", "debate_data"] and parts[3] in RELEASE_METHODS
    }
    if len(evaluations):
        evaluations["trace_id"] = [
            ids.get(k) for k in zip(evaluations["pair"], evaluations["method"], evaluations["source_file"])
        ]
        evaluations["has_transcript"] = [
            (p, m, f) in known
            for p, m, f in zip(evaluations["pair"], evaluations["method"], evaluations["source_file"])
        ]
        without = int((~evaluations["has_transcript"]).sum())
        skips.add(
            "evaluations of transcripts not in the release",
            "their source_file names a transcript the "
            "release does not hold (a later run of the same topics); kept, joined to their topic by the number "
            "in the name",
            without,
        )
        _coverage_notes(evaluations, chosen, skips)
    return Release(
        source,
        zones,
        topics,
        categories,
        found_pairs,
        list(KIT_METHODS),
        [p.folder for p in traced],
        wanted_methods,
        traces,
        evaluations,
        summaries,
        skips.found,
    )


# --- files and layout ------------------------------------------------------------------------------


def _root(files: dict[str, bytes], source: Path) -> str:
    """The prefix of the release inside the archive or folder (e.g. ``ncn-release/``)."""
    found = sorted((n for n in files if n == PARAMS_FILE or n.endswith("/" + PARAMS_FILE)), key=len)
    if not found:
        raise ReleaseError(
            f"{source}: not the NCN release — no {PARAMS_FILE} inside; fix: point ncn_release.path "
            "at the release's tarball or its unpacked folder"
        )
    return found[0][: -len(PARAMS_FILE)]


def _load_json(rel: dict[str, bytes], name: str, source: Path) -> Any:
    try:
        return json.loads(rel[name])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ReleaseError(
            f"{source}: {name} is not valid JSON{where}; the release is corrupt — fetch it again"
        ) from None


def _zones(rel: dict[str, bytes], source: Path) -> tuple[dict[str, Zone], int, str]:
    try:
        config = yaml.safe_load(rel[PARAMS_FILE])
    except yaml.YAMLError:
        raise ReleaseError(
            f"{source}: {PARAMS_FILE} is not valid YAML; the release is corrupt — fetch it again"
        ) from None
    agents = config.get("lora_adapter_api") if isinstance(config, dict) else None
    if not isinstance(agents, dict) or not agents:
        raise ReleaseError(
            f"{source}: {PARAMS_FILE} names no zones (lora_adapter_api); not the NCN release's config"
        )
    zones = {}
    for zone, entry in agents.items():
        adapter = entry.get("model_name") if isinstance(entry, dict) else None
        if not isinstance(adapter, str) or not adapter.strip():
            raise ReleaseError(
                f"{source}: {PARAMS_FILE}: zone {zone!r} has no model_name; not the NCN release's config"
            )
        country = re.sub(r"_?opinion_adapter$", "", adapter).replace("_", " ").strip() or adapter
        zones[str(zone)] = Zone(str(zone), adapter, normalize_country(country))
    rounds = config.get("max_rounds")
    return zones, int(rounds) if isinstance(rounds, int) else 10, str(config.get("embedding_model") or "")


def _topics_file(rel: dict[str, bytes], source: Path) -> bytes:
    found = sorted((n for n in rel if is_release_topics(n)), key=len)
    if not found:
        raise ReleaseError(
            f"{source}: no topics file (debate/config/topics/refined_topics.json); not the NCN release"
        )
    return rel[found[0]]


def _pairs(rel: dict[str, bytes], zones: dict[str, Zone], skips: _Skips, source: Path) -> list[Pair]:
    folders = sorted(
        {n.split("/")[2] for n in rel if n.startswith("data/debate_data/") and n.count("/") >= 3}
    )
    if not folders:
        raise ReleaseError(
            f"{source}: no transcripts under data/debate_data/<pair>/; not the NCN release, or an "
            "incomplete copy"
        )
    out = []
    for folder in folders:
        split = [(a, b) for a in zones for b in zones if a != b and folder == f"{a} and {b}"]
        if not split:
            skips.add(
                "folders naming no pair",
                f"a folder under data/debate_data/ that is not '<ZoneA> and <ZoneB>' "
                f"of {PARAMS_FILE}'s zones; not read",
            )
            continue
        a, b = split[0]
        out.append(Pair(folder, zones[a], zones[b]))
    if not out:
        raise ReleaseError(
            f"{source}: no folder of data/debate_data/ names two zones of {PARAMS_FILE}; not the NCN release"
        )
    return out


def _fold(zone: str) -> str:
    return re.sub(r"[^a-z]", "", zone.lower().replace("&", "and"))


def _zone_notes(pairs: list[Pair], skips: _Skips) -> None:
    """Zones whose agent's culture differs from the paper's text (``NCN_ZONES``): the release's agent is used."""
    kit = {_fold(z): c for z, c in NCN_ZONES.items()}
    differ = {z.name for p in pairs for z in (p.a, p.b) if kit.get(_fold(z.name), z.country) != z.country}
    skips.add(
        "zones whose agent differs from the paper's text",
        "the release's adapter is named after another "
        "country than kit.data.cultures.NCN_ZONES gives; the release's agent (the one that negotiated) is used",
        len(differ),
    )


# --- transcripts -----------------------------------------------------------------------------------


def _transcripts(
    rel: dict[str, bytes],
    pairs: list[Pair],
    methods: list[str],
    topics: dict[str, Topic],
    skips: _Skips,
    source: Path,
) -> list[dict]:
    out = []
    for pair in pairs:
        base = f"data/debate_data/{pair.folder}/"
        for name in sorted(n for n in rel if n.startswith(base)):
            parts = name[len(base) :].split("/")
            if len(parts) != 3 or parts[0] not in RELEASE_METHODS:
                if parts[0] not in RELEASE_METHODS:
                    skips.add(
                        "folders of no known method",
                        f"a method folder not among {list(RELEASE_METHODS)}; not read",
                    )
                continue
            if parts[0] not in methods:
                continue
            m = _TRANSCRIPT.match(parts[2])
            if not m or release_topic_id(int(m["index"])) not in topics:
                skips.add(
                    "transcripts without a topic",
                    "the file name holds no number of a topic in refined_topics.json; not read",
                )
                continue
            out.append(
                {
                    "pair": pair,
                    "method": RELEASE_METHODS[parts[0]],
                    "category": parts[1],
                    "file": parts[2],
                    "name": name,
                    "topic_id": release_topic_id(int(m["index"])),
                    "time": m["rest"],
                    "rel": rel,
                    "source": source,
                    "topics": topics,
                    "skips": skips,
                }
            )
    return out


def _dedupe(transcripts: list[dict], evaluations: pd.DataFrame, skips: _Skips) -> list[dict]:
    """One transcript per (pair, method, topic): the one the paper's evaluation names, else the latest."""
    evaluated = (
        set(zip(evaluations["pair"], evaluations["method"], evaluations["source_file"]))
        if len(evaluations)
        else set()
    )
    by_item = defaultdict(list)
    for t in transcripts:
        by_item[(t["pair"].folder, t["method"], t["topic_id"])].append(t)
    out = []
    for group in by_item.values():
        group.sort(
            key=lambda t: ((t["pair"].folder, t["method"], t["file"]) in evaluated, t["time"]), reverse=True
        )
        out.append(group[0])
        skips.add(
            "topics negotiated twice",
            "a second transcript of one topic, pair and method; the one the "
            "paper's evaluation names (else the latest) is kept",
            len(group) - 1,
        )
    order = {id(t): i for i, t in enumerate(transcripts)}
    return sorted(out, key=lambda t: order[id(t)])


def _pick(transcripts: list[dict], max_items: int | None, seed: int, skips: _Skips) -> list[dict]:
    if max_items is None:
        return transcripts
    methods_of = defaultdict(set)  # (pair, topic) -> the methods holding a transcript of it
    for t in transcripts:
        methods_of[(t["pair"].folder, t["topic_id"])].add(t["method"])
    wanted = {t["method"] for t in transcripts}
    by_pair = defaultdict(list)
    for (pair, topic), held in methods_of.items():
        by_pair[pair].append((held != wanted, seeds.unit(seed, "ncn-release-items", topic), topic))
    # topics every method holds come first, so the items read are paired across methods
    kept = {p: {topic for *_, topic in sorted(ranked)[:max_items]} for p, ranked in by_pair.items()}
    out = [t for t in transcripts if t["topic_id"] in kept[t["pair"].folder]]
    skips.add(
        "transcripts not read (ncn_release.max_items)",
        f"only {max_items} topic(s) per pair are read as "
        "traces, the same for every method; the evaluation files are read whole",
        len(transcripts) - len(out),
    )
    return out


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise ReleaseError(
            f"{where}: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}; the "
            "release is corrupt or not the NCN release's transcript layout"
        )
    return value


def _texts(obj: dict, key: str, pair: Pair, where: str) -> list[str]:
    value = _need(obj, key, dict, where)
    out = []
    for zone in (pair.a.name, pair.b.name):
        text = value.get(zone, "")
        if not isinstance(text, str):
            raise ReleaseError(f"{where}: {key}[{zone!r}] is not a text; the release is corrupt")
        out.append(text.strip())
    return out


def _trace(t: dict, max_rounds: int, embedder: str) -> dict:
    pair, where = t["pair"], f"{t['source']}: {t['name']}"
    raw = _load_json(t["rel"], t["name"], t["source"])
    if not isinstance(raw, dict):
        raise ReleaseError(f"{where}: a transcript is a JSON object; the release is corrupt")
    topic = t["topics"][t["topic_id"]]
    initial, consensus = (
        _texts(raw, "initial_response", pair, where),
        _texts(raw, "consensus_response", pair, where),
    )
    if " ".join(_need(raw, "topic", str, where).split()) != " ".join(topic.text.split()):
        t["skips"].add(
            "transcripts whose topic text differs",
            "the transcript's topic is not the text of its number "
            "in refined_topics.json; kept, with the transcript's own text",
        )
    if not all(consensus):
        t["skips"].add(
            "transcripts with an empty consensus statement",
            "the negotiation wrote none (NCN: consensus "
            "not reached); kept, and left out wherever a text is scored",
        )
    method = t["method"]
    meta = raw.get("meta_data") or raw.get("metadata") or {}
    if method == "ncn":
        rounds = [_ncn_round(r, k + 1, pair, where) for k, r in enumerate(_need(raw, "history", list, where))]
        converged = bool(meta.get("consensus_reached"))
    elif method == "debate":
        history = _need(raw, "debate_history", list, where)
        rounds = [
            {"round": k + 1, "statements": [str(r.get(pair.a.name, "")), str(r.get(pair.b.name, ""))]}
            for k, r in enumerate(history)
        ]
        # the release ends a debate early when both sides agree, and then records one round more than it holds
        converged = int(meta.get("true_round", len(history))) > len(history)
    else:
        rounds, converged = [], False
    agents = [
        {"name": z.adapter, "culture": z.country, "kind": "release", "zone": z.name} for z in (pair.a, pair.b)
    ]
    return {
        "id": f"{method}:{pair.a.country}|{pair.b.country}:{t['topic_id']}",
        "schema": TRACE_SCHEMA,
        "origin": ORIGIN,
        "method": method,
        "seed": RELEASE_SEED,
        "settings": {"max_rounds": max_rounds, "embedding_model": embedder},
        "topic": {"id": t["topic_id"], "text": topic.text, "source": topic.source, "category": t["category"]},
        "agents": agents,
        "initial": [{"response": x, "opinion": x, "guideline": None} for x in initial],
        "rounds": rounds,
        "consensus": consensus,
        "truncated": [False, False],
        "rounds_used": len(rounds),
        "converged": converged,
        "failed": False,
        "parse_failures": 0,
        "retries": 0,
        "failures": [],
        "release": {"pair": pair.folder, "file": t["file"], "category": t["category"], "metadata": meta},
    }


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _ncn_round(r: Any, number: int, pair: Pair, where: str) -> dict:
    if not isinstance(r, dict):
        raise ReleaseError(f"{where}: history round {number} is not an object; the release is corrupt")
    first, second = r.get("first_exchange") or {}, r.get("second_exchange") or {}
    weights = r.get("guidelines_weight") or {}
    chosen, best, pools, shares = [], [], [], []
    for zone in (pair.a.name, pair.b.name):
        text = str(second.get(f"{zone}_best_response") or "").strip()
        utility = second.get(f"{zone}_utility") or {}
        m = _BEST.match(text)
        parts = (
            {
                "title": m["title"].strip(),
                "reason": m["reason"].strip().rstrip(".").strip(),
                "description": m["detail"].strip(),
            }
            if m
            else {"title": text.split(":")[0].strip(), "reason": "", "description": text}
        )
        total = _number(utility.get("total"))
        chosen.append(
            {
                **parts,
                "consist": _number(utility.get("consistency")),
                "accept": _number(utility.get("acceptance")),
                "novelty": _number(utility.get("novelty")),
                "total": total,
            }
            if text
            else None
        )
        best.append(total if text else None)
        dist = weights.get(f"{zone}_distribution") or {}
        pools.append([str(k) for k in dist])
        shares.append([float(v) for v in dist.values()])
    return {
        "round": number,
        "statements": [str(first.get(f"{z}_response") or "") for z in (pair.a.name, pair.b.name)],
        "responses": [str(second.get(f"{z}_response") or "") for z in (pair.a.name, pair.b.name)],
        "chosen": chosen,
        "best_utility": best,
        "pools": pools,
        "weights": shares,
        "nash_gap": None,
        "solver": "unrecorded",
    }


# --- evaluations -----------------------------------------------------------------------------------


def _versions(names: list[str], pattern: re.Pattern, what: str, skips: _Skips) -> list[str]:
    """Per category, the file kept: the paper's judge where there is one, else the latest; the rest counted."""
    by_category = defaultdict(list)
    for name in names:
        m = pattern.match(name.rsplit("/", 1)[-1])
        if m:
            by_category[m["category"]].append((m.groupdict().get("judge") == PAPER_JUDGE, m["time"], name))
        else:
            skips.add(f"{what} files of another name", "not '<category>_…_<YYYYMMDD_HHMM>.json'; not read")
    kept = []
    for versions in by_category.values():
        versions.sort(reverse=True)
        kept.append(versions[0][2])
        skips.add(
            f"superseded {what} versions",
            f"another judge's or an older {what} of the same pair, method and "
            f"category; the paper's judge ({PAPER_JUDGE}) is kept, else the latest",
            len(versions) - 1,
        )
    return sorted(kept)


def _records(rel: dict[str, bytes], name: str, source: Path, skips: _Skips) -> list[dict]:
    data = _load_json(rel, name, source)
    if not isinstance(data, list):
        raise ReleaseError(f"{source}: {name} is not a list of evaluation records; the release is corrupt")
    out = []
    for record in data:
        if not isinstance(record, dict) or not record.get("source_file"):
            skips.add(
                "empty evaluation records",
                "records without a source_file (each evaluation list of the release opens with one); skipped",
            )
            continue
        out.append(record)
    return out


def _vector(raw: Any) -> list[float] | None:
    if not isinstance(raw, list) or len(raw) != 10:
        return None
    values = [_number(x) for x in raw]
    return values if all(v is not None and -1 <= v <= 1 for v in values) else None


def _model_evaluations(
    rel: dict[str, bytes], pairs: list[Pair], methods: list[str], skips: _Skips, source: Path
) -> list[dict]:
    rows = []
    for pair in pairs:
        for method in methods:
            folder = f"data/eval_result/results_model_based/{pair.folder}/{method}/consensus_eval/"
            names = [n for n in rel if n.startswith(folder)]
            if not names:
                skips.add(
                    "methods without a value evaluation", "no consensus_eval files for this pair and method"
                )
                continue
            for name in _versions(names, _MODEL_EVAL, "value evaluation", skips):
                judge = _MODEL_EVAL.match(name.rsplit("/", 1)[-1]).groupdict().get("judge") or "unnamed"
                for k, record in enumerate(_records(rel, name, source, skips)):
                    metrics = record.get("evaluation_metrics") or {}
                    vectors = [_vector((metrics.get(v) or {}).get(r)) for v in _VECTORS for r in _RESPONSES]
                    if any(v is None for v in vectors):
                        skips.add(
                            "unreadable value vectors",
                            "a record whose four vectors are not ten numbers in [−1, 1]; skipped",
                        )
                        continue
                    skips.add(
                        "vectors with half steps",
                        "±0.5 although the judge's prompt asks for −1, 0 or 1; kept "
                        "as they are (the kit reads any score in [−1, 1])",
                        sum(any(x not in (-1.0, 0.0, 1.0) for x in v) for v in vectors),
                    )
                    rows.append(
                        {
                            "pair": pair.folder,
                            "method": RELEASE_METHODS[method],
                            "source_file": str(record["source_file"]),
                            "judge": judge,
                            "eval_file": name.rsplit("/", 1)[-1],
                            "eval_order": k,
                            **dict(zip(SLOT_COLUMNS, vectors)),
                            "initial_dist": _number(metrics.get("initial_dist")),
                            "final_dist": _number(metrics.get("final_dist")),
                        }
                    )
    return rows


def _ppl_evaluations(
    rel: dict[str, bytes], pairs: list[Pair], methods: list[str], skips: _Skips, source: Path
) -> list[dict]:
    rows = []
    for pair in pairs:
        stats = f"data/eval_result/results_ppl_based/{pair.folder}/ppl_stats.json"
        if stats in rel:
            data = _load_json(rel, stats, source)
            if isinstance(data, list) and not any(isinstance(r, dict) and r.get("source_file") for r in data):
                skips.add(
                    "empty perplexity summaries",
                    "ppl_stats.json holds only empty records: the release "
                    "publishes no perplexity summary, so its per-transcript numbers are what is reproduced",
                )
        for method in methods:
            folder = f"data/eval_result/results_ppl_based/{pair.folder}/{method}/consensus_eval/"
            names = [n for n in rel if n.startswith(folder)]
            if not names:
                skips.add(
                    "methods without a perplexity evaluation",
                    "no PPL files for this pair and method (the "
                    "release evaluated some baselines by their values only)",
                )
                continue
            for name in _versions(names, _PPL_EVAL, "perplexity evaluation", skips):
                for record in _records(rel, name, source, skips):
                    score = (record.get("evaluation_metrics") or {}).get("consensus_score") or {}
                    first, last = score.get("initial_metrics") or {}, score.get("final_metrics") or {}
                    ppl = [
                        _number(first.get("PPL_init_response1")),
                        _number(first.get("PPL_init_response2")),
                        _number(last.get("PPL_final_response1")),
                        _number(last.get("PPL_final_response2")),
                    ]
                    if any(p is None for p in ppl):
                        skips.add(
                            "unreadable perplexity records", "a record without its four perplexities; skipped"
                        )
                        continue
                    skips.add(
                        "failed perplexities",
                        "−1 where the release's copy task failed; the release's "
                        "distance uses −1 as written, the kit leaves such records out of acceptance",
                        sum(p == -1 for p in ppl),
                    )
                    rows.append(
                        {
                            "pair": pair.folder,
                            "method": RELEASE_METHODS[method],
                            "source_file": str(record["source_file"]),
                            **dict(zip(PPL_COLUMNS, ppl)),
                            "PPL_init_distance": _number(first.get("PPL_init_distance")),
                            "PPL_final_distance": _number(last.get("PPL_final_distance")),
                            "PPL_distance_difference": _number(score.get("PPL_distance_difference")),
                        }
                    )
    return rows


def _summaries(
    rel: dict[str, bytes], pairs: list[Pair], methods: list[str], skips: _Skips, source: Path
) -> dict[tuple[str, str], dict]:
    out = {}
    for pair in pairs:
        for method in methods:
            folder = f"data/eval_result/results_model_based/{pair.folder}/{method}/"
            versions = sorted(
                (
                    (m["version"] == "newest", m["version"], n)
                    for n in rel
                    if n.startswith(folder)
                    and n.count("/") == folder.count("/")
                    and (m := _SUMMARY.match(n.rsplit("/", 1)[-1]))
                ),
                reverse=True,
            )
            if not versions:
                continue
            data = _load_json(rel, versions[0][2], source)
            if not isinstance(data, dict):
                raise ReleaseError(
                    f"{source}: {versions[0][2]} is not a summary object; the release is corrupt"
                )
            out[(pair.folder, RELEASE_METHODS[method])] = data
            skips.add(
                "older summary versions",
                "summary_model_based_newest.json is kept (else the latest); the "
                "others are earlier runs of the paper's summary script",
                len(versions) - 1,
            )
    return out


def _join(
    model_rows: list[dict],
    ppl_rows: list[dict],
    pairs: list[Pair],
    topics: dict[str, Topic],
    categories: dict[str, str],
) -> pd.DataFrame:
    """One row per (pair, method, source_file) evaluated either way: vectors and perplexities side by side."""
    key = ["pair", "method", "source_file"]
    values = pd.DataFrame(
        model_rows,
        columns=[*key, "judge", "eval_file", "eval_order", *SLOT_COLUMNS, "initial_dist", "final_dist"],
    )
    ppl = pd.DataFrame(ppl_rows, columns=[*key, *PPL_COLUMNS, *RELEASE_PPL])
    values = values.drop_duplicates(key)
    ppl = ppl.drop_duplicates(key)
    df = (
        values.merge(ppl, on=key, how="outer", indicator=True)
        .sort_values(key, kind="stable")
        .reset_index(drop=True)
    )
    df["has_values"] = df["_merge"] != "right_only"
    df["has_ppl"] = df["_merge"] != "left_only"
    df = df.drop(columns="_merge")
    index = df["source_file"].str.extract(_TRANSCRIPT)["index"]
    df["topic_id"] = [release_topic_id(int(i)) if isinstance(i, str) else None for i in index]
    df = df[df["topic_id"].isin(topics)].reset_index(drop=True)
    df["category"] = df["topic_id"].map(categories)
    by_folder = {p.folder: p for p in pairs}
    df["culture_a"] = df["pair"].map(lambda f: by_folder[f].a.country)
    df["culture_b"] = df["pair"].map(lambda f: by_folder[f].b.country)
    for col in SLOT_COLUMNS:  # vectors stay lists (None where a transcript was not evaluated for values)
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def _coverage_notes(evaluations: pd.DataFrame, transcripts: list[dict], skips: _Skips) -> None:
    evaluated = set(
        zip(evaluations["pair"], evaluations["method"], evaluations["source_file"], evaluations["has_values"])
    )
    no_values = sum((t["pair"].folder, t["method"], t["file"], True) not in evaluated for t in transcripts)
    skips.add(
        "transcripts without a value evaluation",
        "the paper's value evaluation has no record of them; kept "
        "as traces, absent from the recomputed summaries",
        no_values,
    )
    twice = evaluations[evaluations["has_values"]].groupby(["pair", "method", "topic_id"]).size()
    skips.add(
        "topics evaluated twice",
        "two evaluated transcripts of one topic, pair and method; both count in the "
        "release's summary, the paired claims read the first",
        int((twice - 1).sum()),
    )


def item_rows(evaluations: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows with one row per (pair, method, topic): the first evaluated transcript of a topic
    negotiated twice (what a paired comparison over (pair, topic) items reads)."""
    ordered = evaluations.sort_values(["has_values", "has_ppl"], ascending=False, kind="stable")
    return ordered.drop_duplicates(["pair", "method", "topic_id"]).sort_index()


def summary_counts(release: Release) -> pd.DataFrame:
    """Per pair and method: transcripts read as traces, evaluation records with vectors and with perplexities,
    and whether a summary was found."""
    rows = []
    ev = release.evaluations
    for pair in release.pairs:
        for method in release.methods:
            mine = ev[(ev["pair"] == pair.folder) & (ev["method"] == method)] if len(ev) else ev
            rows.append(
                {
                    "pair": pair.folder,
                    "method": method,
                    "traces": sum(
                        t["release"]["pair"] == pair.folder and t["method"] == method for t in release.traces
                    ),
                    "value_records": int(mine["has_values"].sum()) if len(mine) else 0,
                    "ppl_records": int(mine["has_ppl"].sum()) if len(mine) else 0,
                    "summary": (pair.folder, method) in release.summaries,
                }
            )
    return pd.DataFrame(rows)


def zone_table(release: Release) -> pd.DataFrame:
    """The zones of the pairs read: the release's agent behind each, and the culture the kit reads it as."""
    zones = dict.fromkeys(z for p in release.pairs for z in (p.a, p.b))
    return pd.DataFrame([{"zone": z.name, "agent": z.adapter, "culture": z.country} for z in zones])


def training_traces(params) -> tuple[list[dict], dict[str, int]]:
    """The release's traces that train as ``ncn_release:<method>`` sources of ``params.finetune.from_methods``
    (read with ``params.ncn_release``), less any whose topic is in the study's held-out pool (by id or text:
    no topic finetuning may be evaluated on is trained on); and counts: read, dropped as held out."""
    from kit.data.topics import topic_pools

    sources = [
        m.removeprefix(f"{ORIGIN}:") for m in params.finetune.from_methods if m.startswith(f"{ORIGIN}:")
    ]
    if not sources:
        return [], {"read": 0, "dropped_heldout": 0}
    r = params.ncn_release
    release = read_release(
        r.path, r.pairs, [m for m in KIT_METHODS if m in sources], r.max_items, params.seed
    )
    _, held = topic_pools(params.data, params.negotiation.topics, params.seed)
    held_ids, held_texts = {t.id for t in held}, {" ".join(t.text.split()).casefold() for t in held}
    kept = [
        t
        for t in release.traces
        if t["topic"]["id"] not in held_ids
        and " ".join(t["topic"]["text"].split()).casefold() not in held_texts
    ]
    return kept, {"read": len(release.traces), "dropped_heldout": len(release.traces) - len(kept)}
