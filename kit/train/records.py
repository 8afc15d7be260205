"""Training records from negotiation traces, in trl's conversational formats.

A trace is one negotiation (NCN, debate or consultancy) between two cultural agents; each agent
gives one record. Preference pairs follow METHODS §1: the prompt is the culture instruction plus
the topic, *chosen* is the agent's consensus statement and *rejected* its initial response, so
training moves the agent from where it started towards where the negotiation took it.
"Supervised reasoning" records teach the path too: the agent's last position statement, then the
consensus.

Both builders return ``(records, counts)``; ``counts`` says how many traces were read and how many
records were kept or dropped, and why, so a notebook can report its data funnel.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kit.agents import culture_instruction
from kit.metrics.text import copied, degenerate
from kit.registry import stopping_rules
from kit.run import seeds

Record = dict[str, Any]

# How an SFT target joins the agent's reasoning to the outcome it reached.
SFT_TARGET = "{reasoning}\n\nConsensus: {consensus}"


def _prompt(culture: str, topic: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": culture_instruction(culture)}, {"role": "user", "content": topic}]


def _clean(text: Any) -> str:
    return text.strip() if isinstance(text, str) else ""


def _usable(trace: dict, require_converged: bool, counts: Counter) -> bool:
    """Whole-trace filters; each dropped trace is counted once, under its first reason."""
    counts["traces"] += 1
    if trace.get("failed"):
        counts["dropped_failed"] += 1
        return False
    # Each protocol with a stopping rule sets the flag (NCN's utility test, debate's "both agree");
    # consultancy and "none" have no rule to meet, so the filter does not apply to them.
    if require_converged and trace.get("method") in stopping_rules() and not trace.get("converged"):
        counts["dropped_not_converged"] += 1
        return False
    # a consensus statement the evaluations would leave out (degenerate, or the other side's opening copied)
    # trains nothing either
    finals = [_clean(x) for x in (trace.get("consensus") or [])]
    openings = [_clean((x or {}).get("response")) for x in (trace.get("initial") or [])]
    if any(f and degenerate(f) for f in finals) or (
        len(finals) == len(openings) == 2
        and (copied(finals[0], openings[1]) or copied(finals[1], openings[0]))
    ):
        counts["dropped_degenerate"] += 1
        return False
    return True


def _agents(trace: dict) -> Iterable[tuple[int, str, str]]:
    """(index, culture, topic text) for each of the trace's two agents."""
    topic = _clean((trace.get("topic") or {}).get("text"))
    for i, agent in enumerate(trace.get("agents", [])[:2]):
        yield i, _clean(agent.get("culture")), topic


def _content_key(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


Made = tuple[Record, str] | str  # (record, content key), or why the agent gives none


def _collect(
    traces: Iterable[dict], require_converged: bool, make: Callable[[dict, int, str, str], Made]
) -> tuple[list[Record], dict[str, int]]:
    """One record per agent of every usable trace, from ``make(trace, i, culture, topic)``; exact
    duplicates (same content key) are kept once. Every drop is counted under its reason."""
    counts: Counter = Counter()
    out: list[Record] = []
    seen: set[str] = set()
    for trace in traces:
        if not _usable(trace, require_converged, counts):
            continue
        for i, culture, topic in _agents(trace):
            made = make(trace, i, culture, topic) if culture else "no_culture"
            if isinstance(made, str):
                counts[f"dropped_{made}"] += 1
            elif made[1] in seen:
                counts["dropped_duplicate"] += 1
            else:
                seen.add(made[1])
                out.append(made[0])
                counts["kept"] += 1
    return out, _as_dict(counts)


def _meta(trace: dict, i: int, culture: str) -> Record:
    origin = (
        f"{trace['origin']}:" if trace.get("origin") else ""
    )  # a release trace never shares an id with the kit's
    return {
        "id": f"{origin}{trace['id']}:{i}",
        "culture": culture,
        "topic": (trace.get("topic") or {}).get("id"),
        "method": trace.get("method"),
    }


def preference_records(
    traces: Iterable[dict], require_converged: bool = True
) -> tuple[list[Record], dict[str, int]]:
    """One conversational preference record per agent: chosen = consensus, rejected = initial response.

    Drops failed traces, non-converged ones when ``require_converged``, agents without a culture,
    empty texts, pairs whose two sides are equal, and exact duplicates (same prompt and pair).
    """

    def make(trace: dict, i: int, culture: str, topic: str) -> Made:
        consensus, initial = trace.get("consensus") or [], trace.get("initial") or []
        chosen = _clean(consensus[i]) if i < len(consensus) else ""
        rejected = _clean(initial[i].get("response")) if i < len(initial) else ""
        if not (topic and chosen and rejected):
            return "empty"
        if chosen == rejected:
            return "identical"
        return (
            {
                **_meta(trace, i, culture),
                "prompt": _prompt(culture, topic),
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            },
            _content_key(culture, topic, chosen, rejected),
        )

    return _collect(traces, require_converged, make)


def _last_statement(trace: dict, i: int) -> str:
    """The agent's position in the latest round that recorded one."""
    for rnd in reversed(trace.get("rounds") or []):
        statements = rnd.get("statements") if isinstance(rnd, dict) else None
        if statements and i < len(statements) and _clean(statements[i]):
            return _clean(statements[i])
    return ""


def sft_records(
    traces: Iterable[dict], require_converged: bool = True
) -> tuple[list[Record], dict[str, int]]:
    """One chat record per agent: culture instruction, topic, then reasoning followed by consensus.

    The reasoning is the agent's last position statement (``rounds[k].statements[i]``); agents
    whose trace recorded none are dropped (``dropped_no_reasoning``), as are the cases
    :func:`preference_records` drops for empty texts and duplicates.
    """

    def make(trace: dict, i: int, culture: str, topic: str) -> Made:
        consensus = trace.get("consensus") or []
        outcome = _clean(consensus[i]) if i < len(consensus) else ""
        if not (topic and outcome):
            return "empty"
        reasoning = _last_statement(trace, i)
        if not reasoning:
            return "no_reasoning"
        target = SFT_TARGET.format(reasoning=reasoning, consensus=outcome)
        return (
            {
                **_meta(trace, i, culture),
                "messages": _prompt(culture, topic) + [{"role": "assistant", "content": target}],
            },
            _content_key(culture, topic, target),
        )

    return _collect(traces, require_converged, make)


def _as_dict(counts: Counter) -> dict[str, int]:
    base = {"traces": 0, "kept": 0}
    return base | dict(sorted(counts.items()))


def split_records(
    records: Sequence[Record], eval_fraction: float, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """(train, eval) by a hash of each record's id: stable across runs and under added records.

    A record is held out when ``seeds.unit(seed, "finetune-eval", id)`` is below ``eval_fraction``, so small sets may
    get no eval records; that is the price of a split that never moves a record between sides.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    train: list[Record] = []
    held: list[Record] = []
    for r in records:
        (held if seeds.unit(seed, "finetune-eval", r["id"]) < eval_fraction else train).append(r)
    return train, held


def to_dataset(records: Sequence[Record]):
    """A ``datasets.Dataset`` of the records (columns = record keys)."""
    from datasets import Dataset

    if not records:
        raise ValueError("no records to train on: check the counts from preference_records/sft_records")
    return Dataset.from_list(list(records))


TrainingSet = tuple[list[Record], list[Record], dict[str, int]]


def source_folder(source: str) -> str:
    """The folder name of a source's adapters under ``train/`` (``ncn_release:ncn`` → ``ncn_release_ncn``)."""
    return source.replace(":", "_")


def source_of(trace: dict) -> str:
    """The source a trace trains as (``finetune.from_methods``): its method, or ``<origin>:<method>`` for a trace
    the kit did not make (``ncn_release:ncn``: the NCN paper's own transcript of NCN)."""
    origin = trace.get("origin")
    return f"{origin}:{trace.get('method')}" if origin else str(trace.get("method"))


def training_sets(traces: Sequence[dict], finetune, seed: int) -> dict[tuple[str, str], TrainingSet]:
    """Per (source method, training method): (train, eval, counts) from the traces of that source.

    ``finetune`` is the params section: ``from_methods`` names the negotiation methods whose traces
    train (each gets its own adapters, so a gain can be credited to the method that made the data;
    ``ncn_release:<method>`` the NCN release's transcripts of it, ``source_of``),
    ``methods`` the trainers, ``require_converged`` and ``eval_fraction`` the filters. The notebook
    and ``python -m kit train`` both build their data here.
    """
    from kit.train.recipes import TRAINERS

    out = {}
    for source in finetune.from_methods:
        of_source = [t for t in traces if source_of(t) == source]
        for method in finetune.methods:
            build = preference_records if TRAINERS.get(method).preference else sft_records
            records, counts = build(of_source, require_converged=finetune.require_converged)
            out[(source, method)] = (*split_records(records, finetune.eval_fraction, seed), counts)
    return equalise_sources(out, seed) if finetune.equal_sources else out


def equalise_sources(
    sets: dict[tuple[str, str], TrainingSet], seed: int
) -> dict[tuple[str, str], TrainingSet]:
    """Each training method's train records cut to the smallest non-empty source's count, by hash order
    (``seeds.unit(seed, "equal-sources", id)``), input order kept; ``counts["subsampled_from"]`` says
    how many there were. An empty source stays empty: it cannot be made as large as the others."""
    out = dict(sets)
    for method in dict.fromkeys(m for _, m in sets):
        sizes = [len(tr) for (_, m), (tr, _, _) in sets.items() if m == method and tr]
        for key in [k for k in sets if k[1] == method]:
            train, held, counts = sets[key]
            if sizes and len(train) > min(sizes):
                kept = {
                    r["id"]
                    for r in sorted(train, key=lambda r: seeds.unit(seed, "equal-sources", r["id"]))[
                        : min(sizes)
                    ]
                }
                out[key] = (
                    [r for r in train if r["id"] in kept],
                    held,
                    {**counts, "subsampled_from": len(train)},
                )
    return out
