"""Small file helpers every module shares: atomic writes, JSON/JSONL reading, content hashes, the files of a
folder or a tar archive read in memory."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePath, PurePosixPath
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
    raise TypeError(
        f"{type(obj).__name__} is not JSON-serialisable; convert it to str/number/list/dict first"
    )


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


def archive_files(path: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> dict[str, bytes]:
    """The regular files of a folder or of a tar archive (``.tar``, ``.tar.gz`` …) that ``keep`` accepts:
    relative POSIX path → bytes. A tar is read in one pass and nothing is extracted to disk; links, and
    members whose path is absolute or climbs out with ``..``, are never read. A missing path or an archive
    that cannot be read raises ``ValueError`` in one line."""
    path = Path(path)
    wanted = keep or (lambda _: True)
    if path.is_dir():
        out = {}
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path).as_posix()
            if file.is_file() and not file.is_symlink() and wanted(rel):
                out[rel] = file.read_bytes()
        return out
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    try:
        with tarfile.open(path, "r:*") as tar:
            out = {}
            for member in tar:
                name = PurePosixPath(member.name)
                if (
                    not member.isreg()
                    or name.is_absolute()
                    or ".." in name.parts
                    or not wanted(name.as_posix())
                ):
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    out[name.as_posix()] = handle.read()
            return out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(
            f"{path}: not a readable tar archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})"
        ) from None
