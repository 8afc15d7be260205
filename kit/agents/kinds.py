"""Agents are data: a name, a culture, a system prompt and maybe a LoRA adapter.

They own no model: one backend serves every agent of a run from one base model, switching
adapters per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    return Agent(
        name=f"prompted:{country}",
        culture=country,
        system_prompt=(f"You are a person from {country}. Answer every question as a typical person "
                       f"from {country} would, from {country}'s values, customs and beliefs."),
        kind="prompted",
    )


def culture_instruction(country: str) -> str:
    """The instruction NCN's SFT data and preference prompts carry (METHODS §1)."""
    return f"Answer the question based on {country} cultural values."


def described(country: str, description: str) -> Agent:
    """A persona plus an LLM-written culture description (Core Values, Accepted Behaviors, …)."""
    return Agent(
        name=f"described:{country}",
        culture=country,
        system_prompt=f"You represent the culture of {country}. {culture_instruction(country)}\n\n{description.strip()}",
        kind="described",
    )


def grounded(country: str, adapter: str) -> Agent:
    """A LoRA adapter trained on the country's survey-grounded answers, with the SFT instruction."""
    return Agent(name=f"grounded:{country}", culture=country, system_prompt=culture_instruction(country),
                 adapter=str(adapter), kind="grounded")
