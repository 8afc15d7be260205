"""Multi-step LLM programs as small state machines the scheduler advances in lock-step.

A *program* is a generator that yields a :class:`Need` — chat requests to generate, texts to
embed, option questions to answer (``choice_probs``), continuations to score — and receives a
:class:`Reply` with the results, until it returns its result. A negotiation, a Palette draft, a
VISA rollout or a batch of survey rewrites are all programs. :class:`Job` wraps one with
``pending()`` / ``receive()``, so the scheduler (``kit.engine.scheduler``) can collect the needs
of every job of a run and serve them with one backend call per verb (one per distinct
``GenParams`` for generation) and hand each job its share.

The step helpers :func:`ask`, :func:`embed`, :func:`choose` and :func:`score` are what programs
``yield from``; :func:`kit.engine.retry.ask_parsed` adds "parse, and re-ask the unreadable".
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.llm.base import ChatRequest, ChoiceRequest, ChoiceResult, GenParams, ScoreRequest


@dataclass(frozen=True)
class Need:
    """What a job needs for its next step; every field may be empty.

    ``model`` names the backend that serves the step's requests (``None``: the run's default; a
    merged or MoE model is another name, see ``scheduler.step``). ``retry`` is 0 for a new step and
    k for the k-th re-ask of the step before it; the scheduler lets jobs that re-ask catch up before
    the others go on (see ``Job.position``).
    """

    generate: tuple[tuple[ChatRequest, GenParams], ...] = ()
    embed: tuple[str, ...] = ()
    choose: tuple[ChoiceRequest, ...] = ()
    score: tuple[ScoreRequest, ...] = ()
    retry: int = 0
    model: str | None = None


@dataclass(frozen=True)
class Reply:
    """The answer to a :class:`Need`, in the order of its fields: one text per generation, one
    embedding row per text, one result per choice request, one log-prob list per score request."""

    texts: tuple[str, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    choices: tuple[ChoiceResult, ...] = ()
    scores: tuple[list[float], ...] = ()


Program = Generator[Need, Reply, Any]


def ask(
    items: Sequence[tuple[ChatRequest, GenParams]], retry: int = 0, model: str | None = None
) -> Generator[Need, Reply, list[str]]:
    """One step (the ``retry``-th re-ask of the step before, if ``retry``): generate a text for every item."""
    reply = yield Need(generate=tuple(items), retry=retry, model=model)
    return list(reply.texts)


def embed(texts: Sequence[str]) -> Generator[Need, Reply, np.ndarray]:
    """One step: embed every text (rows in order)."""
    reply = yield Need(embed=tuple(texts))
    return reply.vectors


def choose(
    requests: Sequence[ChoiceRequest], retry: int = 0, model: str | None = None
) -> Generator[Need, Reply, list[ChoiceResult]]:
    """One step: option probabilities for every request (one forward pass each)."""
    reply = yield Need(choose=tuple(requests), retry=retry, model=model)
    return list(reply.choices)


def score(
    requests: Sequence[ScoreRequest], model: str | None = None
) -> Generator[Need, Reply, list[list[float]]]:
    """One step: teacher-forced log-probabilities of every continuation."""
    reply = yield Need(score=tuple(requests), model=model)
    return list(reply.scores)


class Job:
    """A program run step by step: ``pending()`` is its current need, ``receive()`` answers it.

    ``position`` is ``(new steps so far, re-asks of the latest)`` of the pending need. Jobs that
    started together and sit at the same position are at the same point of their script, so
    their requests share ``GenParams`` (when seeds come from the step, not the job) and batch
    together. ``result`` is what the program returned, once ``done``; ``error`` the exception it raised
    instead (the job is then done, and the jobs stepped with it go on).
    """

    def __init__(self, id: str, program: Program):
        self.id = id
        self._program = program
        self._need: Need | None = None
        self.result: Any = None
        self.error: Exception | None = None
        self.done = False
        self.position = (0, 0)
        self._resume(lambda: next(program))

    def pending(self) -> Need:
        """The requests and texts this job waits for; raises once the job is done."""
        if self._need is None:
            raise ValueError(f"job {self.id} is finished; read job.result instead")
        return self._need

    def receive(self, reply: Reply) -> None:
        """Answer the pending need; the job runs on to its next need or to its end."""
        need = self.pending()
        wanted = (len(need.generate), len(need.embed), len(need.choose), len(need.score))
        got = (len(reply.texts), len(reply.vectors), len(reply.choices), len(reply.scores))
        if got != wanted:
            raise ValueError(
                f"job {self.id}: reply has {got} (texts, vectors, choices, scores); it needs {wanted}"
            )
        self._resume(lambda: self._program.send(reply))

    def fail(self, error: Exception) -> None:
        """The pending need cannot be answered (its server failed the request): ``error`` is raised inside the
        program where it waits, which may handle it; otherwise the job is done with that error."""
        self.pending()
        self._resume(lambda: self._program.throw(error))

    def _resume(self, run: Callable[[], Need]) -> None:
        try:
            self._need = run()
        except StopIteration as stop:
            self._need, self.result, self.done = None, stop.value, True
            return
        except Exception as e:  # noqa: BLE001 — this job's fault; kept on the job, raised once its siblings are done
            self._need, self.error, self.done = None, e, True
            return
        steps, _ = self.position
        self.position = (steps, self._need.retry) if self._need.retry else (steps + 1, 0)
