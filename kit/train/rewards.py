"""Reward functions of the online trainers (GRPO), one registry for every method that has them.

A reward is a plain function in trl's shape: it takes ``completions`` and, as keyword arguments,
the dataset's other columns and whatever a rollout function returned besides token ids, and
returns one float per completion. What it needs besides — a value detector, an embedder, an LLM
judge — comes in a ``context`` object its method defines; :func:`bind` turns registered names
into callables that carry it and keep the name trl logs them under (``rewards/<name>/mean``).

Entries are lazy (``"module:function"``), so params name and validate rewards without importing
the methods that define them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kit.registry import Registry

REWARDS: Registry[Callable[..., list[float]]] = Registry("reward function")
# VISA (kit.visa.rewards): the value rewriter's rewards
for _name, _attr in (
    ("value_match", "value_match"),
    ("meaning_kept", "meaning_kept"),
    ("drift", "drift"),
    ("format", "format_ok"),
):
    REWARDS.register(_name, f"kit.visa.rewards:{_attr}")
# self-play negotiation (kit.selfplay.rewards): the judge's collective-agency score and resolution
REWARDS.register("collective_agency", "kit.selfplay.rewards:collective_agency")
REWARDS.register("joint_solution", "kit.selfplay.rewards:joint_solution")


def text_of(completion: Any) -> str:
    """A completion as text: trl passes a string, or a list of messages for conversational prompts."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def bind(names: Sequence[str], context: Any) -> list[Callable[..., list[float]]]:
    """The registered rewards ``names`` as trl reward functions carrying ``context``, named as registered."""
    funcs = []
    for name in names:
        fn = REWARDS.get(name)

        def reward(*args: Any, _fn: Callable = fn, **kwargs: Any) -> list[float]:
            return _fn(*args, context=context, **kwargs)

        reward.__name__ = reward.__qualname__ = name
        funcs.append(reward)
    return funcs
