"""Negotiation jobs as small state machines the engine advances in lock-step.

A job is a generator (a *protocol*: ``psro.ncn``, ``baselines.debate`` …) that yields a
:class:`Need` — chat requests to generate and/or texts to embed — and receives a :class:`Reply`
with the results, until it returns its trace. :class:`Job` wraps one with ``pending()`` /
``receive()``, so the engine can collect the needs of every job of a run, serve them with one
``generate`` call per distinct ``GenParams`` and one ``encode`` call, and hand each job its share.

Seeds: every ``GenParams`` carries ``derive_seed(run_seed, round, role)``. The seed depends on the
logical round and the prompt's role, never on the job, so all jobs at the same step share their
``GenParams`` (and batch into one call), and a rerun hits the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Generic, Sequence, TypeVar

import numpy as np

from kit.agents import Agent
from kit.config import NegotiationParams
from kit.data.topics import Topic
from kit.llm.base import ChatRequest, GenParams
from kit.negotiation.trace import TRACE_SCHEMA

T = TypeVar("T")

# The NegotiationParams values a trace records under ``settings`` (the rest do not change a trace).
SETTINGS = ("max_rounds", "epsilon", "weights", "n_counter", "n_gap", "n_innovative", "temperature_low",
            "temperature_high", "max_retries", "guideline_format", "turn_tokens", "statement_words")


@dataclass(frozen=True)
class Need:
    """What a job needs for its next step: generations (request, params) and texts to embed.

    ``retry`` is 0 for a new step and k for the k-th re-ask of the step before it; the engine
    lets jobs that re-ask catch up before the others go on (see ``Job.position``).
    """

    generate: tuple[tuple[ChatRequest, GenParams], ...] = ()
    embed: tuple[str, ...] = ()
    retry: int = 0


@dataclass(frozen=True)
class Reply:
    """The answer to a :class:`Need`: one text per request, one embedding row per text, in order."""

    texts: tuple[str, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


Protocol = Generator[Need, Reply, dict]


@dataclass(frozen=True)
class JobSpec:
    """One negotiation: a method, two agents (A then B, with the countries that key them) and a topic."""

    method: str
    countries: tuple[str, str]
    agents: tuple[Agent, Agent]
    topic: Topic

    @property
    def id(self) -> str:
        return job_id(self.method, *self.countries, self.topic.id)


def job_id(method: str, country_a: str, country_b: str, topic_id: str) -> str:
    """The trace id: ``f"{method}:{countryA}|{countryB}:{topic_id}"``."""
    return f"{method}:{country_a}|{country_b}:{topic_id}"


def settings_of(params: NegotiationParams) -> dict[str, Any]:
    """The ``settings`` a trace records: the ``SETTINGS`` values of ``params``, as plain JSON."""
    return params.model_dump(mode="json", include=set(SETTINGS))


def derive_seed(seed: int, round_: int, role: str) -> int:
    """A 31-bit seed from (run seed, round, prompt role), stable across processes and platforms."""
    digest = hashlib.sha256(f"{seed}:{round_}:{role}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def truncate_words(text: str, words: int) -> tuple[str, bool]:
    """``text`` stripped, cut to its first ``words`` words (whitespace then collapsed); and whether it was cut."""
    parts = text.split()
    if len(parts) <= words:
        return text.strip(), False
    return " ".join(parts[:words]), True


class Context:
    """What a protocol needs besides model output: its job, params, seed, and request builders."""

    def __init__(self, spec: JobSpec, params: NegotiationParams, seed: int):
        self.spec, self.params, self.seed = spec, params, seed

    def request(self, agent: Agent, user: str, round_: int, role: str, temperature: float | None = None,
                max_new_tokens: int | None = None) -> tuple[ChatRequest, GenParams]:
        """The agent's chat request for ``user``, with seeded params (``temperature_low`` and
        ``turn_tokens`` unless given)."""
        temperature = self.params.temperature_low if temperature is None else temperature
        params = GenParams(temperature=temperature, max_new_tokens=max_new_tokens or self.params.turn_tokens,
                           seed=derive_seed(self.seed, round_, role))
        return agent.ask(user), params

    def trace(self) -> dict[str, Any]:
        """A trace with every field at its starting value (see ``kit.negotiation.trace``)."""
        spec = self.spec
        return {
            "id": spec.id, "schema": TRACE_SCHEMA, "method": spec.method, "seed": self.seed,
            "settings": settings_of(self.params),
            "topic": {"id": spec.topic.id, "text": spec.topic.text, "source": spec.topic.source},
            "agents": [{"name": a.name, "culture": a.culture, "kind": a.kind} for a in spec.agents],
            "initial": [], "rounds": [], "consensus": ["", ""], "truncated": [False, False], "rounds_used": 0,
            "converged": False, "failed": False, "parse_failures": 0, "retries": 0, "failures": [],
        }

    def finish(self, trace: dict[str, Any], statements: Sequence[str]) -> dict[str, Any]:
        """Set the consensus statements (cut to ``statement_words``) and the round count."""
        cut = [truncate_words(s, self.params.statement_words) for s in statements]
        trace["consensus"] = [text for text, _ in cut]
        trace["truncated"] = [was_cut for _, was_cut in cut]
        trace["rounds_used"] = len(trace["rounds"])
        return trace


def ask(items: Sequence[tuple[ChatRequest, GenParams]], retry: int = 0) -> Generator[Need, Reply, list[str]]:
    """One step (the ``retry``-th re-ask of the step before, if ``retry``): generate a text for every item."""
    reply = yield Need(generate=tuple(items), retry=retry)
    return list(reply.texts)


def embed(texts: Sequence[str]) -> Generator[Need, Reply, np.ndarray]:
    """One step: embed every text (rows in order)."""
    reply = yield Need(embed=tuple(texts))
    return reply.vectors


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed output, or ``None`` where every attempt was unreadable; the last raw text; attempts made."""

    value: T | None
    raw: str
    attempts: int


def ask_parsed(makers: Sequence[Callable[[int], tuple[ChatRequest, GenParams]]], parse: Callable[[str], T | None],
               max_retries: int) -> Generator[Need, Reply, list[Parsed[T]]]:
    """Generate and parse; unreadable outputs are asked again (only those, one step per attempt).

    ``makers[i](attempt)`` builds item i's request for attempt 0, 1, …, ``max_retries``; a retry
    should change the prompt or the seed, or greedy decoding would repeat itself.
    """
    values: list[T | None] = [None] * len(makers)
    raws = [""] * len(makers)
    attempts = [0] * len(makers)
    todo = list(range(len(makers)))
    for attempt in range(max_retries + 1):
        if not todo:
            break
        texts = yield from ask([makers[i](attempt) for i in todo], retry=attempt)
        failed = []
        for i, text in zip(todo, texts):
            raws[i], attempts[i] = text, attempt + 1
            values[i] = parse(text)
            if values[i] is None:
                failed.append(i)
        todo = failed
    return [Parsed(value, raw, n) for value, raw, n in zip(values, raws, attempts)]


class Job:
    """A protocol run step by step: ``pending()`` is its current need, ``receive()`` answers it.

    ``position`` is ``(new steps so far, re-asks of the latest)`` of the pending need. Jobs that
    started together and sit at the same position are at the same point of their script, so
    their requests share ``GenParams`` (seeds come from round and role) and batch together.
    """

    def __init__(self, spec: JobSpec, protocol: Protocol):
        self.spec = spec
        self._protocol = protocol
        self._need: Need | None = None
        self.trace: dict[str, Any] | None = None
        self.position = (0, 0)
        self._resume(lambda: next(protocol))

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def done(self) -> bool:
        return self.trace is not None

    def pending(self) -> Need:
        """The requests and texts this job waits for; raises once the job is done."""
        if self._need is None:
            raise ValueError(f"job {self.id} is finished; read job.trace instead")
        return self._need

    def receive(self, reply: Reply) -> None:
        """Answer the pending need; the job runs on to its next need or to its end."""
        need = self.pending()
        if len(reply.texts) != len(need.generate) or len(reply.vectors) != len(need.embed):
            raise ValueError(f"job {self.id}: reply has {len(reply.texts)} texts and {len(reply.vectors)} vectors; "
                             f"it needs {len(need.generate)} and {len(need.embed)}")
        self._resume(lambda: self._protocol.send(reply))

    def _resume(self, run: Callable[[], Need]) -> None:
        try:
            self._need = run()
        except StopIteration as stop:
            self._need, self.trace = None, stop.value
            return
        steps, _ = self.position
        self.position = (steps, self._need.retry) if self._need.retry else (steps + 1, 0)
