"""What one negotiation is and what its protocol can use.

A negotiation *job* is a method (a registered protocol), two agents (A then B) and a topic
(:class:`JobSpec`). A protocol (``psro.ncn``, ``baselines.debate`` …) is a program for the engine
(``kit.engine``): a generator that takes a :class:`Context` and yields needs until it returns the
job's trace (``kit.negotiation.trace``). Protocols are registered by name in ``PROTOCOLS``, the
names ``negotiation.methods`` takes.

Seeds: every ``GenParams`` carries ``seeds.derive(run_seed, "negotiation", round, role)``. The seed depends on the
logical round and the prompt's role, never on the job, so all jobs at the same step share their
``GenParams`` (and batch into one call), and a rerun hits the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kit.agents import Agent
from kit.data.topics import Topic
from kit.llm.base import ChatRequest, GenParams
from kit.negotiation.trace import TRACE_SCHEMA
from kit.run import seeds

if TYPE_CHECKING:  # annotations only: the params are read here, never built
    from kit.config import NegotiationParams

# The NegotiationParams values a trace records under ``settings`` (the rest do not change a trace).
SETTINGS = (
    "max_rounds",
    "epsilon",
    "weights",
    "n_counter",
    "n_gap",
    "n_innovative",
    "temperature_low",
    "temperature_high",
    "max_retries",
    "guideline_format",
    "turn_tokens",
    "statement_words",
)


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

    def request(
        self,
        agent: Agent,
        user: str,
        round_: int,
        role: str,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[ChatRequest, GenParams]:
        """The agent's chat request for ``user``, with seeded params (``temperature_low`` and
        ``turn_tokens`` unless given)."""
        temperature = self.params.temperature_low if temperature is None else temperature
        params = GenParams(
            temperature=temperature,
            max_new_tokens=max_new_tokens or self.params.turn_tokens,
            seed=seeds.derive(self.seed, "negotiation", round_, role),
        )
        return agent.ask(user), params

    def trace(self) -> dict[str, Any]:
        """A trace with every field at its starting value (see ``kit.negotiation.trace``)."""
        spec = self.spec
        return {
            "id": spec.id,
            "schema": TRACE_SCHEMA,
            "method": spec.method,
            "seed": self.seed,
            "settings": settings_of(self.params),
            "topic": {"id": spec.topic.id, "text": spec.topic.text, "source": spec.topic.source},
            "agents": [{"name": a.name, "culture": a.culture, "kind": a.kind} for a in spec.agents],
            "initial": [],
            "rounds": [],
            "consensus": ["", ""],
            "truncated": [False, False],
            "rounds_used": 0,
            "converged": False,
            "failed": False,
            "parse_failures": 0,
            "retries": 0,
            "failures": [],
        }

    def finish(self, trace: dict[str, Any], statements: Sequence[str]) -> dict[str, Any]:
        """Set the consensus statements (cut to ``statement_words``) and the round count."""
        cut = [truncate_words(s, self.params.statement_words) for s in statements]
        trace["consensus"] = [text for text, _ in cut]
        trace["truncated"] = [was_cut for _, was_cut in cut]
        trace["rounds_used"] = len(trace["rounds"])
        return trace
