"""Agents are data: a name, a culture, a system prompt and maybe a LoRA adapter.

They own no model: one backend serves every agent of a run from one base model, switching
adapters per request. An agent's ``culture`` is the label the data uses ("India (Current national
sample)"), since that is what its answers are scored against; its prompts name the country
("India").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kit.data.countries import base_country
from kit.llm.base import ChatRequest, Message


@dataclass(frozen=True)
class Agent:
    name: str
    culture: str | None = None
    system_prompt: str | None = None
    adapter: str | None = None
    kind: str = "vanilla"

    def messages(self, user: str, history: Sequence[Message] = ()) -> list[Message]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + list(history) + [{"role": "user", "content": user}]

    def ask(self, user: str, history: Sequence[Message] = ()) -> ChatRequest:
        return ChatRequest(self.messages(user, history), adapter=self.adapter)


def vanilla(name: str = "vanilla") -> Agent:
    """The base model as it is, with no cultural instruction."""
    return Agent(name=name)


def prompted(country: str) -> Agent:
    """A persona instruction only: the cheapest way to ask a model for a culture's view."""
    name = base_country(country)
    return Agent(
        name=f"prompted:{country}",
        culture=country,
        system_prompt=(
            f"You are a person from {name}. Answer every question as a typical person "
            f"from {name} would, from {name}'s values, customs and beliefs."
        ),
        kind="prompted",
    )


def culture_instruction(country: str) -> str:
    """The instruction NCN's SFT data and preference prompts carry (METHODS §1)."""
    return f"Answer the question based on {base_country(country)} cultural values."


def _described_prompt(country: str, description: str) -> str:
    return (
        f"You represent the culture of {base_country(country)}. {culture_instruction(country)}\n\n"
        f"{description.strip()}"
    )


def described(country: str, description: str) -> Agent:
    """A persona plus an LLM-written culture description (Core Values, Accepted Behaviors, …)."""
    return Agent(
        name=f"described:{country}",
        culture=country,
        system_prompt=_described_prompt(country, description),
        kind="described",
    )


def grounded(country: str, adapter: str, description: str | None = None) -> Agent:
    """A LoRA adapter trained on the country's survey-grounded answers.

    With a ``description`` its system prompt is the described agent's (the SFT instruction plus the
    culture description), as NCN builds its agents; without one, the SFT instruction alone.
    """
    prompt = _described_prompt(country, description) if description else culture_instruction(country)
    return Agent(
        name=f"grounded:{country}",
        culture=country,
        system_prompt=prompt,
        adapter=str(adapter),
        kind="grounded",
    )


def fingerprint(agent: Agent) -> str:
    """What an agent is, as 16 hex digits: kind, culture, system prompt and its adapter's content."""
    from kit.llm.models import adapter_fingerprint
    from kit.run.artifacts import fingerprint as parts_fingerprint

    return parts_fingerprint(
        {
            "kind": agent.kind,
            "culture": agent.culture,
            "system_prompt": agent.system_prompt,
            "adapter": adapter_fingerprint(agent.adapter) if agent.adapter else None,
        }
    )
