"""What the benchmarks share: prompts shaped like the protocols' own, and a wall-clock timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kit.llm.base import ChatRequest

TOPICS = (
    "Should elderly parents live with their adult children?",
    "Is it acceptable to question the decisions of your religious leaders?",
    "What role should the state play in caring for the poor?",
    "How important is it for children to learn obedience?",
    "Should people be free to marry someone their family disapproves of?",
    "Is hard work or luck more important for success in life?",
    "How should a community treat people who break its traditions?",
    "Should women and men share housework equally?",
    "Is it more important to protect the environment or to grow the economy?",
    "What do you owe to strangers in your own country?",
)
CULTURES = ("Japan", "Nigeria", "Brazil", "Germany", "India", "Mexico", "Egypt", "Sweden")


def chat_requests(n: int) -> list[ChatRequest]:
    """Cultural-advisor prompts of varied length, like the ones the protocols send."""
    return [
        ChatRequest(
            [
                {
                    "role": "system",
                    "content": f"You are a thoughtful person from {CULTURES[i % len(CULTURES)]}."
                    + " Answer from your culture's values." * (1 + i % 3),
                },
                {"role": "user", "content": TOPICS[i % len(TOPICS)]},
            ]
        )
        for i in range(n)
    ]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class Recorder:
    """Passes generate calls through, keeps each batch (so raw generation can replay them) and the
    seconds spent inside the backend (``seconds``)."""

    def __init__(self, backend):
        self.backend, self.calls, self.seconds = backend, [], 0.0

    def __getattr__(self, attr):
        return getattr(self.backend, attr)

    def generate(self, requests, params):
        self.calls.append((list(requests), params))
        out, seconds = timed(lambda: self.backend.generate(requests, params))
        self.seconds += seconds
        return out
