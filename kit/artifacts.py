"""Fingerprints of stored artifacts: what made them, so a rerun reuses one only when nothing changed.

Descriptions, grounded data and adapters, negotiation traces and finetuned adapters each store
the *parts* that made them (model identity and numerics, a hash of the data or of the exact
prompts, the split, the section's settings, the seed) beside them, as ``{"fingerprint", "parts"}``.
A rerun compares: on a match the artifact is reused; otherwise it is rebuilt and one log line says
which parts changed. Model outputs come from the content-addressed cache, so rebuilding an
artifact whose requests did not change costs no model call.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from kit import paths, secrets
from kit.cache import cache_key
from kit.files import atomic_write_json, read_json, sha256_file

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

    return {"identity": resolve_model(model.name, model.revision).identity, "backend": model.backend,
            "numerics": BACKENDS.get(model.backend).numerics_for(model)}


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
    return "changed: " + (", ".join(keys[:6]) + (" …" if len(keys) > 6 else "") if keys else "format")


def reusable(path: str | os.PathLike, parts: Mapping[str, Any], what: str) -> bool:
    """Whether the artifact stamped at ``path`` was made from ``parts``; logs one line when it was
    made from something else (a first build is not news)."""
    reason = stale(path, parts)
    if reason is None:
        return True
    if Path(path).exists():
        log.warning("%s was made from other inputs (%s); rebuilding it", what, reason)
    return False


def read_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """What :func:`stamp` stored at ``path`` (fingerprint, parts and any extra fields)."""
    stored = read_json(path)
    if stored is None:
        raise ValueError(f"{path}: no fingerprint stored")
    return stored
