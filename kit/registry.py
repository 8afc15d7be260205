"""Name registries: backends, value detectors, negotiation protocols, reward functions.

A negotiation protocol is one spec (:class:`Protocol`: its name, the program that runs it, whether it has
a stopping rule, the module of its prompts, what a job costs in model turns); every list of protocol names
(``negotiation.methods``, the trace validator, the stopping-rule filters, the plan) reads ``PROTOCOLS``.

A registry maps a params name to an object, so a new backend, judge or protocol drops in by
registering a name instead of editing an if/else. Entries may be registered lazily as
``"module:attribute"`` strings, so heavy modules (torch, vLLM) load only when their name is used,
while every name is known — and validated in params — without importing anything.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """``registry.register("x", obj)``, ``registry.register("x", "pkg.module:attr")``, or as a decorator."""
        if obj is None:

            def decorate(fn: T) -> T:
                self.register(name, fn)
                return fn

            return decorate
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        entry = self._entries[name]
        if isinstance(entry, str):  # lazy "module:attribute"
            module, _, attr = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry  # type: ignore[return-value]

    def unknown(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; registered: {', '.join(self.names())}"

    def unregister(self, name: str) -> None:
        """Drop ``name`` (a test's toy entry, registered for the test only)."""
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        del self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def _resolve(entry: Any) -> Any:
    """A ``"module:attribute"`` string imported, anything else as it is."""
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        return getattr(importlib.import_module(module), attr)
    return entry


@dataclass(frozen=True)
class Protocol:
    """One negotiation protocol, everything the kit knows of it by name.

    ``program``: the engine program (a callable taking a ``kit.negotiation.protocol.Context`` and yielding
    needs until it returns the trace), or its ``"module:attribute"``, imported on first use.
    ``stopping_rule``: the protocol ends by a rule of its own, so a trace's ``converged`` flag is a rule met
    (NCN's utility test, debate's AGREE); without one the flag is always false and filters on it skip it.
    ``prompts``: the module holding its prompts (read by the docs and by a newcomer).
    ``turns``: model turns one job costs at most, from the ``NegotiationParams`` (the GPU-hours plan).
    """

    name: str
    program: Callable[..., Any] | str
    stopping_rule: bool
    prompts: str = "kit.negotiation.prompts"
    turns: Callable[[Any], int] = field(default=lambda n: 2)

    def start(self, ctx: Any) -> Any:
        """The protocol's program started on ``ctx`` (a generator for the engine)."""
        return _resolve(self.program)(ctx)


# Negotiation protocols are named here rather than in kit.negotiation, so that params validation
# (kit.config) knows every name without importing the package that itself reads kit.config.
PROTOCOLS: Registry[Protocol] = Registry("negotiation protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Register ``protocol`` under its name: ``negotiation.methods`` accepts it, traces of it validate."""
    return PROTOCOLS.register(protocol.name, protocol)  # type: ignore[return-value]


def protocol_names() -> tuple[str, ...]:
    """Every registered protocol, in registration order (a trace's ``method`` is one of them)."""
    return tuple(PROTOCOLS.names())


def stopping_rules() -> tuple[str, ...]:
    """The protocols whose ``converged`` flag is a rule met, not a default."""
    return tuple(name for name in PROTOCOLS.names() if PROTOCOLS.get(name).stopping_rule)


def _ncn_turns(n: Any) -> int:  # every round: each side's candidates, then its statement
    return n.max_rounds * 2 * (n.n_counter + n.n_gap + n.n_innovative)


register_protocol(Protocol("ncn", "kit.negotiation.psro:ncn", stopping_rule=True, turns=_ncn_turns))
register_protocol(
    Protocol(
        "debate", "kit.negotiation.baselines:debate", stopping_rule=True, turns=lambda n: n.max_rounds * 2
    )
)
register_protocol(Protocol("consultancy", "kit.negotiation.baselines:consultancy", stopping_rule=False))
register_protocol(Protocol("none", "kit.negotiation.baselines:no_negotiation", stopping_rule=False))
