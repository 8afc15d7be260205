"""Small file helpers every module shares: atomic writes, JSON/JSONL reading, content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path, PurePath
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def json_default(obj: Any) -> Any:
    """``json.dumps`` hook for numpy scalars/arrays and paths; anything else is an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return obj.as_posix()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable; convert it to str/number/list/dict first")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so readers see the old file or the new one, never half.

    The temporary file sits in the same directory, because ``os.replace`` is atomic only within
    one file system.
    """
    from kit.run.secrets import scrub_values

    text = scrub_values(text)  # an API key this process read never lands in a file it writes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would (tempfile
    # would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy values and paths converted)."""
    text = json.dumps(obj, ensure_ascii=False, indent=2, default=json_default) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every JSON line of ``path`` (blank lines skipped); a bad line raises naming its number."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such JSONL file")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: not valid JSON; fix or delete that line") from None
    return rows


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
