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
from typing import Any, Iterable, Sequence

from kit import seeds
from kit.agents import culture_instruction

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
    # Each protocol sets its own flag: NCN's utility test, debate's "both agree"; consultancy's
    # single revision counts as converged when the protocol says so.
    if require_converged and not trace.get("converged"):
        counts["dropped_not_converged"] += 1
        return False
    return True


def _agents(trace: dict) -> Iterable[tuple[int, str, str]]:
    """(index, culture, topic text) for each of the trace's two agents."""
    topic = _clean((trace.get("topic") or {}).get("text"))
    for i, agent in enumerate(trace.get("agents", [])[:2]):
        yield i, _clean(agent.get("culture")), topic


def _keep(record: Record, key: str, seen: set[str], counts: Counter, out: list[Record]) -> None:
    if key in seen:
        counts["dropped_duplicate"] += 1
        return
    seen.add(key)
    out.append(record)
    counts["kept"] += 1


def _content_key(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def preference_records(traces: Iterable[dict], require_converged: bool = True) -> tuple[list[Record], dict[str, int]]:
    """One conversational preference record per agent: chosen = consensus, rejected = initial response.

    Drops failed traces, non-converged ones when ``require_converged``, agents without a culture,
    empty texts, pairs whose two sides are equal, and exact duplicates (same prompt and pair).
    """
    counts: Counter = Counter()
    out: list[Record] = []
    seen: set[str] = set()
    for trace in traces:
        if not _usable(trace, require_converged, counts):
            continue
        consensus = trace.get("consensus") or []
        initial = trace.get("initial") or []
        for i, culture, topic in _agents(trace):
            chosen = _clean(consensus[i]) if i < len(consensus) else ""
            rejected = _clean(initial[i].get("response")) if i < len(initial) else ""
            if not culture:
                counts["dropped_no_culture"] += 1
            elif not (topic and chosen and rejected):
                counts["dropped_empty"] += 1
            elif chosen == rejected:
                counts["dropped_identical"] += 1
            else:
                record = {
                    "id": f"{trace['id']}:{i}",
                    "prompt": _prompt(culture, topic),
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "culture": culture,
                    "topic": (trace.get("topic") or {}).get("id"),
                    "method": trace.get("method"),
                }
                _keep(record, _content_key(culture, topic, chosen, rejected), seen, counts, out)
    return out, _as_dict(counts)


def _last_statement(trace: dict, i: int) -> str:
    """The agent's position in the latest round that recorded one."""
    for rnd in reversed(trace.get("rounds") or []):
        statements = rnd.get("statements") if isinstance(rnd, dict) else None
        if statements and i < len(statements) and _clean(statements[i]):
            return _clean(statements[i])
    return ""


def sft_records(traces: Iterable[dict], require_converged: bool = True) -> tuple[list[Record], dict[str, int]]:
    """One chat record per agent: culture instruction, topic, then reasoning followed by consensus.

    The reasoning is the agent's last position statement (``rounds[k].statements[i]``); agents
    whose trace recorded none are dropped (``dropped_no_reasoning``), as are the cases
    :func:`preference_records` drops for empty texts and duplicates.
    """
    counts: Counter = Counter()
    out: list[Record] = []
    seen: set[str] = set()
    for trace in traces:
        if not _usable(trace, require_converged, counts):
            continue
        consensus = trace.get("consensus") or []
        for i, culture, topic in _agents(trace):
            outcome = _clean(consensus[i]) if i < len(consensus) else ""
            reasoning = _last_statement(trace, i)
            if not culture:
                counts["dropped_no_culture"] += 1
            elif not (topic and outcome):
                counts["dropped_empty"] += 1
            elif not reasoning:
                counts["dropped_no_reasoning"] += 1
            else:
                target = SFT_TARGET.format(reasoning=reasoning, consensus=outcome)
                record = {
                    "id": f"{trace['id']}:{i}",
                    "messages": _prompt(culture, topic) + [{"role": "assistant", "content": target}],
                    "culture": culture,
                    "topic": (trace.get("topic") or {}).get("id"),
                    "method": trace.get("method"),
                }
                _keep(record, _content_key(culture, topic, target), seen, counts, out)
    return out, _as_dict(counts)


def _as_dict(counts: Counter) -> dict[str, int]:
    base = {"traces": 0, "kept": 0}
    return base | dict(sorted(counts.items()))


def split_records(records: Sequence[Record], eval_fraction: float, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, eval) by a hash of each record's id: stable across runs and under added records.

    A record is held out when ``seeds.unit(seed, id)`` is below ``eval_fraction``, so small sets may
    get no eval records; that is the price of a split that never moves a record between sides.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    train: list[Record] = []
    held: list[Record] = []
    for r in records:
        (held if seeds.unit(seed, r["id"]) < eval_fraction else train).append(r)
    return train, held


def to_dataset(records: Sequence[Record]):
    """A ``datasets.Dataset`` of the records (columns = record keys)."""
    from datasets import Dataset

    if not records:
        raise ValueError("no records to train on: check the counts from preference_records/sft_records")
    return Dataset.from_list(list(records))
