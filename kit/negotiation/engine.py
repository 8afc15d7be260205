"""The round-synchronous negotiation engine: every job of a run advances one step at a time, together.

A run is ``params.pairs × topics × params.methods`` jobs (see ``protocols.JobSpec``). Each engine
:func:`step` serves the jobs at the earliest position (``Job.position``: steps taken, re-asks of
the latest) — all of them, in the common case — by collecting their pending
:class:`~kit.negotiation.protocols.Need` and sending

- one ``backend.generate`` call per distinct ``GenParams`` (requests grouped by their params, in
  first-seen order; a request repeated within a group is sent once — the same request with the
  same seeded params means the same output, as the cache would also say), and
- one ``embedder.encode`` call for all texts to embed,

so the number of model calls per step depends on the protocol, not on the number of jobs.
When some jobs re-ask an unreadable output, the others wait for that step: a re-ask is its own
call anyway (its seed differs), and without the wait the jobs would drift apart for good and
every later step would split into one call per drifted group.

Jobs that finish are validated and appended to the store right after the step that finished
them, so a killed run loses only unfinished jobs, and a rerun skips every stored id.

Batching changes no output under greedy decoding in float32 (the transformers backend is
batch-invariant there; bfloat16 rounding depends on the batch's shape). With sampling, a seed is fixed per call, so outputs are reproducible for the same set
of jobs (and cached), but may differ when a job runs with different company.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Mapping, Protocol as TypingProtocol, Sequence

import numpy as np

from kit.agents import Agent
from kit.config import NegotiationParams
from kit.data.topics import Topic
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.negotiation.baselines import consultancy, debate, no_negotiation
from kit.negotiation.protocols import Context, Job, JobSpec, Reply, settings_of
from kit.negotiation.psro import ncn
from kit.negotiation.trace import validate_trace
from kit.runs import RecordStore

log = logging.getLogger(__name__)

PROTOCOLS = {"ncn": ncn, "debate": debate, "consultancy": consultancy, "none": no_negotiation}


class TextEmbedder(TypingProtocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


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
    return Job(spec, PROTOCOLS[spec.method](Context(spec, params, seed)))


def ready(jobs: Sequence[Job]) -> list[Job]:
    """The unfinished jobs at the earliest position: the ones the next step serves."""
    active = [job for job in jobs if not job.done]
    if not active:
        return []
    first = min(job.position for job in active)
    return [job for job in active if job.position == first]


def step(jobs: Sequence[Job], backend: Backend, embedder: TextEmbedder) -> list[Job]:
    """Advance the :func:`ready` jobs by one step (see the module docstring); returns the jobs it finished."""
    active = ready(jobs)
    needs = [job.pending() for job in active]

    texts = [text for need in needs for text in need.embed]
    vectors = np.asarray(embedder.encode(texts)) if texts else None

    groups: dict[GenParams, dict[ChatRequest, str | None]] = {}
    for need in needs:
        for request, params in need.generate:
            groups.setdefault(params, {})[request] = None
    for params, outputs in groups.items():
        requests = list(outputs)
        texts_out = backend.generate(requests, params)
        if len(texts_out) != len(requests):
            raise ValueError(f"{type(backend).__name__}.generate returned {len(texts_out)} texts "
                             f"for {len(requests)} requests; it must return one per request")
        outputs.update(zip(requests, texts_out))

    finished, offset = [], 0
    for job, need in zip(active, needs):
        rows = vectors[offset : offset + len(need.embed)] if need.embed else np.zeros((0, 0), np.float32)
        offset += len(need.embed)
        job.receive(Reply(tuple(groups[params][request] for request, params in need.generate), rows))
        if job.done:
            finished.append(job)
    return finished


def run_jobs(jobs: Sequence[Job], backend: Backend, embedder: TextEmbedder,
             on_finish: Callable[[list[Job]], None] | None = None) -> int:
    """Step all jobs until all are done; ``on_finish(jobs)`` after each step that finished some. Returns the steps."""
    steps = 0
    while any(not job.done for job in jobs):
        finished = step(jobs, backend, embedder)
        steps += 1
        if finished and on_finish is not None:
            on_finish(finished)
    return steps


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
            validate_trace(job.trace)
        store.extend([job.trace for job in finished])
        finished_count += len(finished)
        if progress is not None:
            progress(finished_count, len(jobs))

    run_jobs(jobs, backend, embedder, on_finish=save)
    return [store.get(spec.id) for spec in specs if spec.id in store]
