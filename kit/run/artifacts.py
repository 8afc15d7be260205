"""Fingerprints of stored artifacts: what made them, so a rerun reuses one only when nothing changed.

Descriptions, grounded data and adapters, negotiation traces and finetuned adapters each store
the *parts* that made them (model identity and numerics, a hash of the data or of the exact
prompts, the split, the section's settings, the seed) beside them, as ``{"fingerprint", "parts"}``.
A rerun compares: on a match the artifact is reused; otherwise it is rebuilt and one log line says
which parts changed. Model outputs come from the content-addressed cache, so rebuilding an
artifact whose requests did not change costs no model call.

What one notebook hands to a later one (stored agents, the palette's models, trained adapters) and
every notebook's metrics carry :func:`made_by`: the params sections the notebook was given, with
the model's identity (revision and local weights included). A reader compares the sections both
notebooks were given (:func:`made_by_changes`): a hand-off from other params stops with one line
(:func:`check_made_by`), and the boards mark such a unit's rows ``stale``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from kit.run import paths, secrets
from kit.run.cache import cache_key
from kit.run.files import atomic_write_json, read_json, sha256_file

log = logging.getLogger(__name__)


def fingerprint(parts: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``parts``."""
    return cache_key(json.loads(json.dumps(parts, default=str)))[:16]


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of a data file, computed once per process while it is unchanged (size and mtime)."""
    path = paths.resolve(path)
    st = path.stat()
    return _file_hash(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def model_parts(model) -> dict[str, str]:
    """What a ``ModelParams`` section runs, known before any weights load: identity, backend, numerics."""
    from kit.llm import BACKENDS
    from kit.llm.models import resolve_model

    cls = BACKENDS.get(model.backend)
    # a served model is named by its server (kit.llm.openai_backend), not by local weights
    identity = (
        cls.identity_for(model)
        if hasattr(cls, "identity_for")
        else resolve_model(model.name, model.revision).identity
    )
    return {"identity": identity, "backend": model.backend, "numerics": cls.numerics_for(model)}


def changed(stored: Mapping[str, Any], parts: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two parts mappings."""
    keys = []
    for key in sorted(set(stored) | set(parts)):
        a, b = stored.get(key), parts.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += changed(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            keys.append(f"{prefix}{key}")
    return keys


def shown(keys: list[str], most: int = 6) -> str:
    """Changed keys for a one-line message: the first ``most``, then an ellipsis."""
    return ", ".join(keys[:most]) + (" …" if len(keys) > most else "")


def stamp(path: str | os.PathLike, parts: Mapping[str, Any], **extra: Any) -> None:
    """Store the fingerprint of ``parts`` (and any ``extra`` fields) at ``path``."""
    # the fingerprint is of the real parts; what is stored for reading is redacted
    atomic_write_json(path, {"fingerprint": fingerprint(parts), "parts": secrets.redact(parts), **extra})


def stale(path: str | os.PathLike, parts: Mapping[str, Any]) -> str | None:
    """``None`` when the stamp at ``path`` matches ``parts``; otherwise why not, in a few words."""
    stored = read_json(path)
    if stored is None:
        return "nothing stored"
    if stored.get("fingerprint") == fingerprint(parts):
        return None
    keys = changed(stored.get("parts", {}), secrets.redact(json.loads(json.dumps(parts, default=str))))
    return "changed: " + (shown(keys) if keys else "format")


def reusable(path: str | os.PathLike, parts: Mapping[str, Any], what: str) -> bool:
    """Whether the artifact stamped at ``path`` was made from ``parts``; logs one line when it was
    made from something else (a first build is not news)."""
    reason = stale(path, parts)
    if reason is None:
        return True
    if Path(path).exists():
        log.warning("%s was made from other inputs (%s); rebuilding it", what, reason)
    return False


# Where a run goes, where it reports (its tracker) and how a cluster schedules it, not what it makes; and the raw
# model section, whose identity and numerics ``model_parts`` states (its batch size or thread count change no artifact).
_NOT_MADE_BY = ("profile", "runs_dir", "model", "tracking", "cluster")


def made_by(params) -> dict[str, Any]:
    """The params a notebook ran with, redacted: the sections it was given (those set in ``params``)
    and ``model`` and each role's model as :func:`model_parts` states it."""
    names = sorted(params.model_fields_set)
    dump = params.model_dump(mode="json")
    if "models" in dump:  # each role's model as model_parts states it, like model's
        dump["models"] = {role: model_parts(m) for role, m in params.models.items()}
    return secrets.redact(
        {**{k: dump[k] for k in names if k not in _NOT_MADE_BY}, "model": model_parts(params.model)}
    )


def made_by_changes(stored: Mapping[str, Any], params, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys of the sections both ``stored`` (a :func:`made_by`) and ``params`` hold that differ,
    leaving out ``ignore`` (dotted prefixes of keys that change nothing the reader uses)."""
    current = made_by(params)
    common = sorted(set(stored) & set(current))
    keys = changed({k: stored[k] for k in common}, {k: current[k] for k in common})
    return [k for k in keys if not any(k == i or k.startswith(i + ".") for i in ignore)]


class StaleArtifact(ValueError):
    """A stored hand-off was made with other params than the reader's: one line, naming them."""


def check_made_by(
    stored: Mapping[str, Any] | None, params, what: str, rerun: str, ignore: tuple[str, ...] = ()
) -> None:
    """Stop when ``what`` was made with other params than ``params`` (sections both hold); ``rerun``
    names the notebook that makes it."""
    if stored is None:
        raise StaleArtifact(
            f"{what} records no params it was made with (made by an older kit): rerun {rerun}"
        )
    keys = made_by_changes(stored, params, ignore)
    if keys:
        raise StaleArtifact(
            f"{what} was made with other params ({shown(keys)} changed): rerun {rerun} with these "
            "params, or go back to the ones that made it"
        )


def content(folder: str | os.PathLike) -> str:
    """What a model folder holds, as 16 hex digits: a PEFT adapter's bytes, a full model's file
    names, sizes and mtimes (cheap for large checkpoints, changed by any rewrite)."""
    from kit.llm.models import _folder_fingerprint, adapter_fingerprint

    folder = Path(folder)
    return (
        adapter_fingerprint(str(folder))
        if (folder / "adapter_config.json").is_file()
        else _folder_fingerprint(folder)
    )


def hand_off(
    path: str | os.PathLike, params, models: Mapping[str, str | os.PathLike | None], **extra: Any
) -> Path:
    """Store, for later notebooks, the model folders a notebook made (``None``: none of that name, e.g. the
    base model), each with its :func:`content`, and the params it ran with (:func:`made_by`)."""
    from kit.run.files import atomic_write_json

    path = Path(path)
    rows = {
        name: None
        if f is None
        else {"folder": os.path.relpath(Path(f).resolve(), path.parent.resolve()), "content": content(f)}
        for name, f in models.items()
    }
    return atomic_write_json(path, {"models": rows, "made_by": made_by(params), **extra})


def take_over(
    path: str | os.PathLike, params, what: str, rerun: str, ignore: tuple[str, ...] = ()
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """(model folders by name, the whole stored record) of a :func:`hand_off`, after checking it was made
    with these params and that no folder changed on disk since; otherwise one line naming what differs."""
    path = Path(path)
    stored = read_json(path)
    if stored is None:
        raise StaleArtifact(f"no {what} recorded in {path}: run {rerun} with this profile first")
    check_made_by(stored.get("made_by"), params, what, rerun, ignore)
    folders = {}
    for name, row in stored["models"].items():
        folder = None if row is None else str((path.parent / row["folder"]).resolve())
        try:
            moved = folder is not None and content(folder) != row["content"]
        except (FileNotFoundError, NotADirectoryError):
            moved = True
        if moved:
            raise StaleArtifact(f"{what}: {folder} changed on disk since {rerun} recorded it: rerun {rerun}")
        folders[name] = folder
    return folders, stored


def read_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """What :func:`stamp` stored at ``path`` (fingerprint, parts and any extra fields)."""
    stored = read_json(path)
    if stored is None:
        raise ValueError(f"{path}: no fingerprint stored")
    return stored
