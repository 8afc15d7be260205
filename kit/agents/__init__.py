"""Cultural agents: kinds (``kinds``), LLM-written culture descriptions (``descriptions``), LoRA
agents grounded in survey answers (``grounding``), building them for a study (``build``) and the
stored set later notebooks load (``store``)."""

from kit.agents.kinds import Agent, culture_instruction, described, grounded, prompted, vanilla
from kit.agents.store import AgentSet

__all__ = ["Agent", "AgentSet", "culture_instruction", "described", "grounded", "prompted", "vanilla"]
