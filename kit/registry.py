"""Name registries: backends, value detectors, negotiation protocols, reward functions.

A registry maps a params name to an object, so a new backend, judge or protocol drops in by
registering a name instead of editing an if/else. Entries may be registered lazily as
``"module:attribute"`` strings, so heavy modules (torch, vLLM) load only when their name is used,
while every name is known — and validated in params — without importing anything.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

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

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


# Negotiation protocols are named here rather than in kit.negotiation, so that params validation
# (kit.config) knows every name without importing the package that itself reads kit.config.
PROTOCOLS: Registry = Registry("negotiation protocol")
PROTOCOLS.register("ncn", "kit.negotiation.psro:ncn")
PROTOCOLS.register("debate", "kit.negotiation.baselines:debate")
PROTOCOLS.register("consultancy", "kit.negotiation.baselines:consultancy")
PROTOCOLS.register("none", "kit.negotiation.baselines:no_negotiation")
