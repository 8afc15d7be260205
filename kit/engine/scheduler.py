"""The lock-step scheduler: every job of a run advances one step at a time, together.

Each :func:`step` serves the jobs at the earliest position (``Job.position``: steps taken,
re-asks of the latest) — all of them, in the common case — by collecting their pending
:class:`~kit.engine.jobs.Need` and sending

- one ``embedder.encode`` call for all texts to embed,
- one ``backend.generate`` call per distinct ``GenParams`` (requests grouped by their params, in
  first-seen order; a request repeated within a group is sent once — the same request with the
  same seeded params means the same output, as the cache would also say),
- one ``backend.choice_probs`` call and one ``backend.score`` call for all such requests,
- per model: a step's needs may name another backend (``Need.model``: a merged model, an MoE),
  whose requests are batched the same way, apart,

so the number of model calls per step depends on the programs, not on the number of jobs.
A served model that fails some requests of a batch (:class:`kit.llm.errors.PartialFailure`) fails the
jobs that asked them, with that request's line, and the step goes on for the others, as for a job
whose program raises; the answers that came back are cached, so a rerun sends only the failed ones.
When some jobs re-ask an unreadable output, the others wait for that step: a re-ask is its own
call anyway (its seed differs), and without the wait the jobs would drift apart for good and
every later step would split into one call per drifted group.

Batching changes no output under greedy decoding in float32 (the transformers backend is
batch-invariant there; bfloat16 rounding depends on the batch's shape). With sampling, a seed is
fixed per call, so outputs are reproducible for the same set of jobs (and cached), but may differ
when a job runs with different company.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from kit.engine.jobs import Job, Program, Reply
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.llm.errors import EndpointError, PartialFailure


class TextEmbedder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def ready(jobs: Sequence[Job]) -> list[Job]:
    """The unfinished jobs at the earliest position: the ones the next step serves."""
    active = [job for job in jobs if not job.done]
    if not active:
        return []
    first = min(job.position for job in active)
    return [job for job in active if job.position == first]


def _unique(items):
    return list(dict.fromkeys(items))


def _check(results: Sequence, requests: Sequence, verb: str, backend: Any) -> None:
    if len(results) != len(requests):
        raise ValueError(
            f"{type(backend).__name__}.{verb} returned {len(results)} results for {len(requests)} "
            "requests; it must return one per request"
        )


def step(
    jobs: Sequence[Job],
    backend: Backend,
    embedder: TextEmbedder | None = None,
    models: Mapping[str, Backend] | None = None,
) -> list[Job]:
    """Advance the :func:`ready` jobs by one step (see the module docstring); returns the jobs it finished.

    ``models`` names further backends (a merged model, an MoE) that needs select with
    ``Need.model``; each model's requests are batched apart, in the same step.
    """
    active = ready(jobs)
    needs = [job.pending() for job in active]

    texts = [text for need in needs for text in need.embed]
    if texts and embedder is None:
        raise ValueError(
            "a job asked for embeddings but the scheduler has no embedder; pass embedder=session.embedder"
        )
    vectors = np.asarray(embedder.encode(texts)) if texts else None

    def serving(model: str | None) -> Backend:
        if model is None:
            return backend
        if not models or model not in models:
            raise ValueError(f"a job asked for model {model!r}; the scheduler serves {sorted(models or {})}")
        return models[model]

    groups: dict[tuple[str | None, GenParams], dict[ChatRequest, str | None]] = {}
    for need in needs:
        for request, params in need.generate:
            groups.setdefault((need.model, params), {})[request] = None
    failed: dict[tuple, str] = {}  # (verb, model, params, request) -> the line its server failed with

    def call(verb: str, model: str | None, requests: list, *args) -> list:
        """The verb's results; a server's partial failure fails its requests only (None in their place)."""
        try:
            out = getattr(serving(model), verb)(requests, *args)
        except PartialFailure as partial:
            out = [partial.answers.get(i) for i in range(len(requests))]
            failed.update({(verb, model, *args, requests[i]): line for i, line in partial.failures.items()})
        _check(out, requests, verb, serving(model))
        return out

    for (model, params), outputs in groups.items():
        requests = list(outputs)
        outputs.update(zip(requests, call("generate", model, requests, params)))

    served: dict[tuple[str, str | None], dict] = {}
    for verb, attr in (("choice_probs", "choose"), ("score", "score")):
        for model in dict.fromkeys(need.model for need in needs if getattr(need, attr)):
            requests = _unique(r for need in needs if need.model == model for r in getattr(need, attr))
            served[(attr, model)] = dict(zip(requests, call(verb, model, requests)))

    finished, offset = [], 0
    for job, need in zip(active, needs):
        rows = vectors[offset : offset + len(need.embed)] if need.embed else np.zeros((0, 0), np.float32)
        offset += len(need.embed)
        lost = [
            failed[k]
            for k in [
                *(("generate", need.model, p, r) for r, p in need.generate),
                *(("choice_probs", need.model, r) for r in need.choose),
                *(("score", need.model, r) for r in need.score),
            ]
            if k in failed
        ]
        if lost:  # this job's request failed at the server: the job fails with that line, the others go on
            job.fail(EndpointError(lost[0]))
        else:
            job.receive(
                Reply(
                    tuple(groups[(need.model, params)][request] for request, params in need.generate),
                    rows,
                    tuple(served[("choose", need.model)][r] for r in need.choose),
                    tuple(served[("score", need.model)][r] for r in need.score),
                )
            )
        if job.done:
            finished.append(job)
    return finished


def run_jobs(
    jobs: Sequence[Job],
    backend: Backend,
    embedder: TextEmbedder | None = None,
    on_finish: Callable[[list[Job]], None] | None = None,
    models: Mapping[str, Backend] | None = None,
) -> int:
    """Step all jobs until all are done; ``on_finish(jobs)`` after each step that finished some. Returns the steps.

    A job whose program raises is done with its ``error``; the others run on and are handed to
    ``on_finish`` as usual (so they are stored), and the first error is raised at the end, naming how
    many jobs failed. A rerun then finds the finished ones stored and runs only the failed ones.
    """
    steps = 0
    while any(not job.done for job in jobs):
        finished = [job for job in step(jobs, backend, embedder, models) if job.error is None]
        steps += 1
        if finished and on_finish is not None:
            on_finish(finished)
    failed = [job for job in jobs if job.error is not None]
    if failed:
        error = failed[0].error
        error.add_note(
            f"job {failed[0].id} raised this; {len(failed)} of {len(jobs)} jobs failed "
            f"({', '.join(j.id for j in failed[:5])}{' …' if len(failed) > 5 else ''}), the others finished"
        )
        raise error
    return steps


def run(
    program: Program,
    backend: Backend,
    embedder: TextEmbedder | None = None,
    models: Mapping[str, Backend] | None = None,
) -> Any:
    """Run one program to its end and return its result (its steps are batched as they come)."""
    job = Job("program", program)
    run_jobs([job], backend, embedder, models=models)
    return job.result
