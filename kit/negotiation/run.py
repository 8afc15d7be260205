"""Running a negotiation study: its agents, the jobs, shards, the lock-step run, and the trace store.

A run is ``params.pairs × topics × params.methods`` jobs (``protocol.JobSpec``), all advanced
together by the engine (``kit.engine.scheduler``): one batch per step across every negotiation.
Jobs that finish are validated and appended to the store right after the step that finished
them, so a killed run loses only unfinished jobs, and a rerun skips every stored id.

A study's traces live in ``records/negotiations/<fingerprint>.jsonl``, the fingerprint of what
made them (:func:`store_parts`: model and numerics, embedder, seed, negotiation settings, the
agents' fingerprints, the topic source's data): traces made from anything else are never read
as this study's. Readers take the traces of the current plan only (:func:`planned_traces`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.agents import Agent, AgentSet, prompted
from kit.agents.kinds import fingerprint as agent_fingerprint
from kit.data import resolve_countries
from kit.data.topics import Topic, source_identity
from kit.engine import Job, TextEmbedder, run_jobs
from kit.llm.base import Backend
from kit.negotiation.protocol import Context, JobSpec, job_id, settings_of
from kit.negotiation.trace import TRACE_SCHEMA, validate_trace
from kit.registry import PROTOCOLS
from kit.run import artifacts, seeds
from kit.run.records import RecordStore

if TYPE_CHECKING:  # annotations only: the params are read here, never built
    from kit.config import NegotiationParams, Params

log = logging.getLogger(__name__)


def plan_jobs(
    agents: Mapping[str, Agent],
    topics: Sequence[Topic],
    params: NegotiationParams,
    pairs: Sequence[Sequence[str]] | None = None,
) -> list[JobSpec]:
    """Every job of a run, in job order: pairs, then topics, then methods.

    ``pairs`` (default ``params.pairs``) name countries as ``agents`` is keyed: data labels, from
    :func:`resolve_pairs`.
    """
    pairs = params.pairs if pairs is None else pairs
    for pair in pairs:
        for country in pair:
            if country not in agents:
                raise ValueError(
                    f"no agent for country {country!r} of negotiation.pairs; "
                    f"pass one in agents (have {sorted(agents)})"
                )
    specs = [
        JobSpec(method, (a, b), (agents[a], agents[b]), topic)
        for a, b in pairs
        for topic in topics
        for method in params.methods
    ]
    ids = [spec.id for spec in specs]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"job {duplicate!r} appears twice; make topic ids, pairs and methods unique")
    return specs


def shard_of(job_id: str, shard_count: int, seed: int = 0) -> int:
    """The shard a job belongs to: a stable hash of its id, cut into ``shard_count`` equal ranges."""
    return int(seeds.unit(seed, "shard", job_id) * shard_count)


def start_job(spec: JobSpec, params: NegotiationParams, seed: int) -> Job:
    """A job at its first step."""
    return Job(spec.id, PROTOCOLS.get(spec.method).start(Context(spec, params, seed)))


def run_negotiations(
    backend: Backend,
    embedder: TextEmbedder,
    agents: Mapping[str, Agent],
    topics: Sequence[Topic],
    params: NegotiationParams,
    store: RecordStore,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    pairs: Sequence[Sequence[str]] | None = None,
) -> list[dict]:
    """Run (or resume) this shard's negotiations; returns every stored trace of the run, in job order.

    Jobs already in ``store`` are skipped; of the rest, only those with
    ``shard_of(id, shard_count) == shard_index`` run. Traces are validated and appended as jobs
    finish. ``progress(finished, total)`` is called whenever jobs finish, with the count this call
    has finished and the count it set out to run. A store holds one study (:func:`trace_store`):
    stored traces run with other settings are kept, and a warning says how many.
    """
    # shard_index < shard_count and temperature_low <= temperature_high are NegotiationParams' own checks
    if "ncn" in params.methods and params.n_counter + params.n_gap + params.n_innovative == 0:
        raise ValueError(
            "negotiation.n_counter + n_gap + n_innovative is 0; NCN needs at least one candidate a round"
        )
    specs = plan_jobs(agents, topics, params, pairs)
    stored = [spec.id for spec in specs if spec.id in store]
    todo = [
        spec
        for spec in specs
        if spec.id not in store and shard_of(spec.id, params.shard_count, seed) == params.shard_index
    ]
    current = settings_of(params)
    stale = sum(1 for rid in stored if store.get(rid).get("settings") != current)
    if stale:
        log.warning(
            "%d stored traces in %s ran with other negotiation settings; they are kept as they are "
            "(use a new store to rerun them)",
            stale,
            store.path,
        )
    log.info(
        "negotiations: %d jobs, %d stored, %d to run in shard %d/%d",
        len(specs),
        len(stored),
        len(todo),
        params.shard_index,
        params.shard_count,
    )

    jobs = [start_job(spec, params, seed) for spec in todo]
    finished_count = 0

    def save(finished: list[Job]) -> None:
        nonlocal finished_count
        for job in finished:
            validate_trace(job.result)
        store.extend([job.result for job in finished])
        finished_count += len(finished)
        if progress is not None:
            progress(finished_count, len(jobs))

    run_jobs(jobs, backend, embedder, on_finish=save)
    return [store.get(spec.id) for spec in specs if spec.id in store]


def resolve_pairs(params: Params) -> list[tuple[str, str]]:
    """``negotiation.pairs`` as the data spells each country ("UK" -> "Britain")."""
    return [
        tuple(resolve_countries([c], params.data.goqa_path)[0] for c in pair)
        for pair in params.negotiation.pairs
    ]


def study_agents(params: Params, agent_set: AgentSet | None) -> dict[str, Agent]:
    """One agent of ``negotiation.agent_kind`` per pair country (data labels): prompted ones are made
    here, the others come from the agents notebook 01 built (``agent_set``)."""
    countries = list(dict.fromkeys(c for pair in resolve_pairs(params) for c in pair))
    kind = params.negotiation.agent_kind
    if kind == "prompted":
        return {c: prompted(c) for c in countries}
    built = agent_set.of_kind(kind) if agent_set is not None else {}
    missing = [c for c in countries if c not in built]
    if missing:
        raise ValueError(
            f"notebook 01 built no {kind} agent for {missing}: add them to agents.countries (and "
            f"{kind} to agents.kinds) and run notebook 01 again"
        )
    return {c: built[c] for c in countries}


def store_parts(
    params: Params, agents: Mapping[str, Agent], model: Mapping[str, str], embedder: str
) -> dict[str, Any]:
    """What a study's traces depend on (the pairs, topics' count and methods only pick among them)."""
    t = params.negotiation.topics
    return {
        "schema": TRACE_SCHEMA,
        "model": dict(model),
        "embedder": embedder,
        "seed": params.seed,
        "settings": settings_of(params.negotiation),
        "agent_kind": params.negotiation.agent_kind,
        "agents": {c: agent_fingerprint(a) for c, a in sorted(agents.items())},
        "topics": {"source": t.source, "data": source_identity(params.data, t)},
    }


def trace_store(run_dir: Path, parts: Mapping[str, Any]) -> RecordStore:
    """The JSONL store of the study ``parts`` describe, with its parts written beside it."""
    fp = artifacts.fingerprint(parts)
    folder = Path(run_dir) / "records" / "negotiations"
    if not (folder / f"{fp}.json").exists():
        artifacts.stamp(folder / f"{fp}.json", parts)
    return RecordStore(folder / f"{fp}.jsonl")


def planned_ids(params: Params, topics: Sequence[Topic]) -> list[str]:
    """The trace ids of the current plan: pairs × topics × methods."""
    return [
        job_id(method, a, b, topic.id)
        for a, b in resolve_pairs(params)
        for topic in topics
        for method in params.negotiation.methods
    ]


def planned_traces(store: RecordStore, params: Params, topics: Sequence[Topic]) -> list[dict]:
    """The stored traces of the current plan, in plan order (a store may hold more, from larger plans)."""
    return [store.get(i) for i in planned_ids(params, topics) if i in store]


def study_store(
    params: Params, run_dir: Path, agents: Mapping[str, Agent], model: Mapping[str, str]
) -> RecordStore:
    """The trace store of the study ``params`` describe with these agents, on this model."""
    from kit.embed import resolve_embedder

    return trace_store(run_dir, store_parts(params, agents, model, resolve_embedder(params.embedder.name)[1]))
