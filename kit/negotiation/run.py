"""Running a negotiation study: plan the jobs, shard them, run them in lock-step, store the traces.

A run is ``params.pairs × topics × params.methods`` jobs (``protocol.JobSpec``), all advanced
together by the engine (``kit.engine.scheduler``): one batch per step across every negotiation.
Jobs that finish are validated and appended to the store right after the step that finished
them, so a killed run loses only unfinished jobs, and a rerun skips every stored id.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Mapping, Sequence

from kit.agents import Agent
from kit.config import NegotiationParams
from kit.data.topics import Topic
from kit.engine import Job, TextEmbedder, run_jobs
from kit.llm.base import Backend
from kit.negotiation.protocol import PROTOCOLS, Context, JobSpec, settings_of
from kit.negotiation.trace import validate_trace
from kit.runs import RecordStore

log = logging.getLogger(__name__)


def plan_jobs(agents: Mapping[str, Agent], topics: Sequence[Topic], params: NegotiationParams) -> list[JobSpec]:
    """Every job of a run, in job order: pairs, then topics, then methods."""
    for pair in params.pairs:
        for country in pair:
            if country not in agents:
                raise ValueError(f"no agent for country {country!r} of negotiation.pairs; "
                                 f"pass one in agents (have {sorted(agents)})")
    specs = [JobSpec(method, (a, b), (agents[a], agents[b]), topic)
             for a, b in params.pairs for topic in topics for method in params.methods]
    ids = [spec.id for spec in specs]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"job {duplicate!r} appears twice; make topic ids, pairs and methods unique")
    return specs


def shard_of(job_id: str, shard_count: int) -> int:
    """The shard a job belongs to: a stable hash of its id, modulo ``shard_count``."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def start_job(spec: JobSpec, params: NegotiationParams, seed: int) -> Job:
    """A job at its first step."""
    return Job(spec.id, PROTOCOLS.get(spec.method)(Context(spec, params, seed)))


def run_negotiations(backend: Backend, embedder: TextEmbedder, agents: Mapping[str, Agent], topics: Sequence[Topic],
                     params: NegotiationParams, store: RecordStore, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run (or resume) this shard's negotiations; returns every stored trace of the run, in job order.

    Jobs already in ``store`` are skipped; of the rest, only those with
    ``shard_of(id, shard_count) == shard_index`` run. Traces are validated and appended as jobs
    finish. ``progress(finished, total)`` is called whenever jobs finish, with the count this call
    has finished and the count it set out to run. A store holds one params setting: stored traces
    run with other settings are kept (a warning says how many).
    """
    if params.shard_index >= params.shard_count:
        raise ValueError(f"negotiation.shard_index {params.shard_index} must be below shard_count {params.shard_count}")
    if params.temperature_low > params.temperature_high:
        raise ValueError(f"negotiation.temperature_low {params.temperature_low} exceeds temperature_high "
                         f"{params.temperature_high}; swap them")
    if "ncn" in params.methods and params.n_counter + params.n_gap + params.n_innovative == 0:
        raise ValueError("negotiation.n_counter + n_gap + n_innovative is 0; NCN needs at least one candidate a round")
    specs = plan_jobs(agents, topics, params)
    stored = [spec.id for spec in specs if spec.id in store]
    todo = [spec for spec in specs if spec.id not in store
            and shard_of(spec.id, params.shard_count) == params.shard_index]
    current = settings_of(params)
    stale = sum(1 for rid in stored if store.get(rid).get("settings") != current)
    if stale:
        log.warning("%d stored traces in %s ran with other negotiation settings; they are kept as they are "
                    "(use a new store to rerun them)", stale, store.path)
    log.info("negotiations: %d jobs, %d stored, %d to run in shard %d/%d", len(specs), len(stored), len(todo),
             params.shard_index, params.shard_count)

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
