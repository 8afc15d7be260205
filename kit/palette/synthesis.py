"""The Pentachromatic Cultural Palette data: three synthesis steps per user query, and its preference records.

For each query, one engine program (all queries advance together, one batch per step):

1. **continent-aware responses** — one per continent (Africa, America, Asia, Europe, Oceania);
   a response shorter than ``palette.min_words`` is asked again, then dropped;
2. **cross-continent feedback** — every other continent reviews each response along Hofstede's
   six dimensions and names where it is confused with its own culture; a review covering fewer
   than ``palette.min_dimensions`` dimensions is asked again, then dropped; a response with no
   readable review is dropped;
3. **continent-specific aggregation** — each response rewritten with its reviews; too short →
   asked again, then dropped.

Every query is one record (``synthesis_store``), appended as it finishes, so a killed run resumes;
the store's file name is the fingerprint of what made it (model, prompts, query source, settings,
seed). Preference records follow the paper: for each query and continent, the continent's final
response is *chosen* and each other continent's is *rejected* — four pairs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.data import Topic
from kit.engine import Job, Program, ask_parsed, run_jobs
from kit.llm.base import Backend, GenParams
from kit.palette.prompts import (
    CONTINENTS,
    Feedback,
    aggregate_request,
    feedback_request,
    parse_feedback,
    record_prompt,
    response_request,
)
from kit.run import artifacts, seeds
from kit.run.cache import cache_key
from kit.run.records import RecordStore

STEPS = ("response", "feedback", "aggregation")


def readable(min_words: int) -> Callable[[str], str | None]:
    """A response is readable when it has at least ``min_words`` words."""

    def parse(text: str) -> str | None:
        text = text.strip()
        return text if len(text.split()) >= min_words else None

    return parse


def _gen(tokens: int, seed: int, step: str, attempt: int) -> GenParams:
    # the seed depends on the step and attempt only, so every query's requests batch together
    return GenParams(
        temperature=0.7, top_p=0.95, max_new_tokens=tokens, seed=seeds.derive(seed, "palette", step, attempt)
    )


def synthesise(query: Topic, palette, seed: int) -> Program:
    """One query through the three steps; returns its record (see the module docstring)."""
    text = query.text
    responses = yield from ask_parsed(
        [
            lambda a, c=c: (response_request(c, text), _gen(palette.response_tokens, seed, "response", a))
            for c in CONTINENTS
        ],
        readable(palette.min_words),
        palette.max_retries,
    )
    answered = {c: r.value for c, r in zip(CONTINENTS, responses) if r.value is not None}
    pairs = [(c, reviewer) for c in answered for reviewer in CONTINENTS if reviewer != c]
    reviews = yield from ask_parsed(
        [
            lambda a, c=c, r=r: (
                feedback_request(r, c, text, answered[c]),
                _gen(palette.feedback_tokens, seed, "feedback", a),
            )
            for c, r in pairs
        ],
        lambda t: parse_feedback(t, palette.min_dimensions, palette.min_words),
        palette.max_retries,
    )
    readable_reviews: dict[str, list[tuple[str, Feedback]]] = {c: [] for c in answered}
    for (c, reviewer), review in zip(pairs, reviews):
        if review.value is not None:
            readable_reviews[c].append((reviewer, review.value))
    reviewed = [c for c in answered if readable_reviews[c]]
    finals = yield from ask_parsed(
        [
            lambda a, c=c: (
                aggregate_request(c, text, answered[c], readable_reviews[c]),
                _gen(palette.aggregate_tokens, seed, "aggregation", a),
            )
            for c in reviewed
        ],
        readable(palette.min_words),
        palette.max_retries,
    )
    final = {c: r.value for c, r in zip(reviewed, finals) if r.value is not None}
    return {
        "id": query.id,
        "query": text,
        "source": query.source,
        "responses": {c: answered.get(c) for c in CONTINENTS},
        "reviews": {
            c: {reviewer: dataclasses.asdict(f) for reviewer, f in readable_reviews.get(c, [])}
            for c in CONTINENTS
        },
        "final": {c: final.get(c) for c in CONTINENTS},
        "dropped": {
            "response": [c for c in CONTINENTS if c not in answered],
            "feedback": [c for c in answered if c not in reviewed],
            "aggregation": [c for c in reviewed if c not in final],
        },
        "unreadable": {
            "response": sum(r.unreadable for r in responses),
            "feedback": sum(r.unreadable for r in reviews),
            "aggregation": sum(r.unreadable for r in finals),
        },
        "failures": [
            {"step": step, "continent": c, "raw": r.raw}
            for step, keys, results in (
                ("response", CONTINENTS, responses),
                ("feedback", [f"{c}<-{r}" for c, r in pairs], reviews),
                ("aggregation", reviewed, finals),
            )
            for c, r in zip(keys, results)
            if r.value is None
        ],
    }


def store_parts(palette, model: Mapping[str, str], source: str, seed: int) -> dict[str, Any]:
    """What the synthesised data depends on: the model, the exact prompt templates, the queries, the settings."""
    sample = Feedback("r", {"Power Distance": "p"}, "c")
    templates = [
        response_request("C", "Q").key(),
        feedback_request("R", "C", "Q", "A").key(),
        aggregate_request("C", "Q", "A", [("R", sample)]).key(),
    ]
    return {
        "model": dict(model),
        "prompts": cache_key(templates),
        "source": source,
        "seed": seed,
        "settings": palette.model_dump(
            mode="json",
            include={
                "response_tokens",
                "feedback_tokens",
                "aggregate_tokens",
                "min_words",
                "min_dimensions",
                "max_retries",
            },
        ),
    }


def synthesis_store(run_dir: Path, parts: Mapping[str, Any]) -> RecordStore:
    """The synthesis records of ``parts``, with the parts written beside them."""
    fp = artifacts.fingerprint(parts)
    folder = Path(run_dir) / "records" / "palette"
    if not (folder / f"{fp}.json").exists():
        artifacts.stamp(folder / f"{fp}.json", parts)
    return RecordStore(folder / f"{fp}.jsonl")


def run_synthesis(
    backend: Backend, queries: Sequence[Topic], palette, store: RecordStore, seed: int
) -> list[dict]:
    """Synthesise (or resume) every query's record; returns them in query order."""
    todo = [q for q in queries if q.id not in store]
    jobs = [Job(q.id, synthesise(q, palette, seed)) for q in todo]
    run_jobs(jobs, backend, on_finish=lambda done: store.extend([job.result for job in done]))
    return [store.get(q.id) for q in queries]


def validation_counts(records: Sequence[dict]) -> dict[str, int]:
    """How many (query, continent) items each step dropped, and how many survived all three."""
    counts = Counter({step: 0 for step in STEPS})
    for record in records:
        for step in STEPS:
            counts[step] += len(record["dropped"][step])
    kept = sum(v is not None for r in records for v in r["final"].values())
    return {
        "items": len(records) * len(CONTINENTS),
        **{f"dropped_{s}": counts[s] for s in STEPS},
        "kept": kept,
    }


def preference_records(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Per continent: ``{prompt, chosen, rejected}`` records, the continent's final response chosen
    and each other continent's final response rejected (the paper's four pairs per query)."""
    out: dict[str, list[dict]] = {c: [] for c in CONTINENTS}
    for record in records:
        final = {c: t for c, t in record["final"].items() if t}
        for c, chosen in final.items():
            for other, rejected in final.items():
                if other != c and rejected != chosen:
                    out[c].append(
                        {
                            "id": f"{record['id']}:{c}:{other}",
                            "prompt": record_prompt(c, record["query"]),
                            "chosen": [{"role": "assistant", "content": chosen}],
                            "rejected": [{"role": "assistant", "content": rejected}],
                            "continent": c,
                        }
                    )
    return out


def query_split(params) -> tuple[list[Topic], list[Topic]]:
    """(training queries, held-out queries): ``queries.n`` of the training pool, ``nli_items`` of the other."""
    from kit.data.topics import pick, topic_pools

    q = params.palette.queries
    train_pool, heldout_pool = topic_pools(params.data, q, params.seed)
    return (
        pick(train_pool, q.n, params.seed, "palette-queries", f"the training pool of {q.source}"),
        pick(
            heldout_pool,
            min(params.palette.nli_items, len(heldout_pool)),
            params.seed,
            "palette-heldout",
            f"the held-out pool of {q.source}",
        ),
    )


def study_store(params, model: Mapping[str, str]) -> RecordStore:
    """The synthesis records of this profile's ``model`` (``kit.run.artifacts.model_parts``), queries and settings."""
    from kit.data.topics import source_identity

    parts = store_parts(
        params.palette, model, source_identity(params.data, params.palette.queries), params.seed
    )
    return synthesis_store(params.run_dir, parts)


def training_data(params, model: Mapping[str, str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """(preference records per continent from the training queries, held-out query records), read from
    the store notebook 10 filled — or from the published data when ``palette.dataset`` names it."""
    train, heldout = query_split(params)
    found = study_store(params, model)
    missing = [q.id for q in [*train, *heldout] if q.id not in found]
    if missing and not params.palette.dataset:
        raise ValueError(
            f"{len(missing)} palette queries are not synthesised yet: run notebook 10 (10_palette_data) "
            "with these params first"
        )
    held = [found.get(q.id) for q in heldout if q.id in found]
    if params.palette.dataset:
        return published_records(params.palette.dataset, params.palette.dataset_continent_field), held
    return preference_records([found.get(q.id) for q in train]), held


def published_records(dataset: str, continent_field: str) -> dict[str, list[dict]]:
    """Preference records from the published data (``query``, ``response``, ``rejected_response``) on the hub."""
    from datasets import load_dataset

    rows = load_dataset(dataset, split="train")
    if continent_field not in rows.column_names:
        raise ValueError(
            f"{dataset} has no {continent_field!r} column ({rows.column_names}); name the continent "
            "column with palette.dataset_continent_field"
        )
    out: dict[str, list[dict]] = {c: [] for c in CONTINENTS}
    for i, row in enumerate(rows):
        continent = str(row[continent_field]).strip().title()
        if continent in out:
            out[continent].append(
                {
                    "id": f"{dataset}:{i}",
                    "prompt": record_prompt(continent, row["query"]),
                    "chosen": [{"role": "assistant", "content": row["response"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected_response"]}],
                    "continent": continent,
                }
            )
    return out
