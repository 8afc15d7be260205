"""The base every params section builds on, wherever it is declared (``kit.config`` composes them).

``Section``: a pydantic model that forbids unknown keys, is frozen and refuses inf and nan. ``ParamsError``: the
one-line error every params problem ends as. The validators sections share (a list names each entry once, a name
is registered, reward weights, files that exist) raise ``ValueError``, which pydantic reports under the key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from kit.run import paths


class ParamsError(ValueError):
    """A params problem, always one line: where, what, and how to fix it."""


# Model output is re-asked at most this often: a larger budget only hides a prompt the model cannot follow.
MAX_RETRIES = 10


class Section(BaseModel):
    # inf and nan are never a setting: a temperature or weight of .inf fails deep inside a run
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def unique(v: list) -> list:
    """A list of names in which each appears once (a method listed twice would run, and count, twice)."""
    seen = [x for i, x in enumerate(v) if x in v[:i]]
    if seen:
        raise ValueError(f"lists {seen[0]!r} twice; name each once")
    return v


def reward_weights(v: dict[str, float]) -> dict[str, float]:
    """Reward weights are ≥ 0 with one above 0: a negative weight trains the policy away from the named goal."""
    negative = [k for k, w in v.items() if w < 0]
    if negative:
        raise ValueError(
            f"weight of {negative[0]!r} is {v[negative[0]]}; weights are ≥ 0 (drop a reward to leave it out)"
        )
    if not any(w > 0 for w in v.values()):
        raise ValueError("every weight is 0, so nothing would be learned; give one reward a weight above 0")
    return v


def existing_file(v: str | None) -> str | None:
    if v is not None and not paths.resolve(v).is_file():
        raise ValueError(f"file not found: {v} (resolved to {paths.resolve(v)})")
    return v


def existing_path(v: str | None) -> str | None:
    """A file or a folder (the NCN release is read from its tarball or from an unpacked copy)."""
    if v is not None and not paths.resolve(v).exists():
        raise ValueError(f"no such file or folder: {v} (resolved to {paths.resolve(v)})")
    return v


def registered(registry, name: str) -> str:
    if name not in registry:
        raise ValueError(registry.unknown(name))
    return name
