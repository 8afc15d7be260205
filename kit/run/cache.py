"""A content-addressed, persistent cache for model outputs (generations, scores, embeddings).

Keys are sha256 hashes of a canonical JSON of everything that determines an output (model
identity, adapter hash, messages, all parameters). Values are stored with their own sha256, so a
corrupt or truncated entry is detected on read, dropped and recomputed — never returned.
SQLite gives atomic writes; WAL mode lets several notebooks of one profile share the file. On a file
system where SQLite's locks or WAL's shared memory do not work (Lustre, NFS without locking) the cache
opens with SQLite's dot-file locking VFS and a rollback journal instead, said in one ``warning:`` line;
the run lock (``kit.run.lock``) keeps it to one writer there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _scrubbed(value: bytes) -> bytes:
    """``value`` without an API key this process read (a server that echoed it), as every stored text."""
    from kit.run.secrets import scrub_values

    text = value.decode("utf-8", errors="surrogateescape")
    clean = scrub_values(text)
    return value if clean == text else clean.encode("utf-8", errors="surrogateescape")


def cache_key(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()


class CacheUnavailable(RuntimeError):
    """The cache file is sound but cannot be used now (locked, read-only, disk full, a network file system)."""


def _damaged(e: sqlite3.DatabaseError) -> bool:
    """SQLite says the file itself is damaged (not a database, or a malformed image), as opposed to a lock
    or a disk that refuses the write, where the file is fine and must not be moved aside."""
    name = getattr(e, "sqlite_errorname", "")
    if name:
        return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
    return "malformed" in str(e) or "not a database" in str(e)


DOTFILE_VFS = "unix-dotfile"  # SQLite's locking by lock file, for file systems without POSIX locks


def _unlockable(e: sqlite3.OperationalError) -> bool:
    """SQLite says the file system refused its locks or WAL's shared memory."""
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith(
        ("SQLITE_IOERR_LOCK", "SQLITE_IOERR_SHM", "SQLITE_PROTOCOL", "SQLITE_NOLFS")
    ) or any(s in str(e) for s in ("locking protocol", "disk I/O error", "unable to open database file"))


class Cache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.corrupt = 0
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:
            if not _damaged(e):
                raise CacheUnavailable(
                    f"cache {self.path}: {e}; the file is left as it is. Fix: free disk space, make "
                    "its folder writable, or wait for the process holding it"
                ) from None
            # the whole file is damaged: keep it for inspection, start anew
            aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning("cache %s is unreadable (%s); moved to %s and starting empty", self.path, e, aside)
            self.path.rename(aside)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect(None)
        except sqlite3.OperationalError as e:
            if not _unlockable(e):
                raise
            import sys

            print(
                f"warning: cache {self.path}: SQLite cannot lock files here ({e}); using dot-file locks and a "
                "rollback journal",
                file=sys.stderr,
            )
            return self._connect(DOTFILE_VFS)

    def _connect(self, vfs: str | None) -> sqlite3.Connection:
        if vfs is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
        else:
            db = sqlite3.connect(f"file:{self.path}?vfs={vfs}", timeout=60, isolation_level=None, uri=True)
            db.execute("PRAGMA journal_mode=DELETE")
        db.execute(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, sha256 TEXT NOT NULL)"
        )
        db.execute("SELECT count(*) FROM entries").fetchone()
        return db

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """Stored values for the keys that have an intact entry."""
        found: dict[str, bytes] = {}
        for s in range(0, len(keys), 500):  # SQLite limits the number of bound parameters
            chunk = keys[s : s + 500]
            rows = self._db.execute(
                f"SELECT key, value, sha256 FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            for key, value, digest in rows:
                if hashlib.sha256(value).hexdigest() == digest:
                    found[key] = value
                else:
                    self.corrupt += 1
                    log.warning("cache entry %s… is corrupt; recomputing it", key[:12])
                    self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, bytes]) -> None:
        """Store values in one transaction: all of them land, or none. A write SQLite or the disk refuses (full,
        read-only, locked past the timeout) rolls back and stops with one line; the file stays readable."""
        rows = [
            (k, v, hashlib.sha256(v).hexdigest()) for k, v in ((k, _scrubbed(v)) for k, v in items.items())
        ]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO entries (key, value, sha256) VALUES (?, ?, ?)", rows
                )
        except sqlite3.DatabaseError as e:
            if self._db.in_transaction:
                try:
                    self._db.rollback()
                except sqlite3.DatabaseError:
                    pass
            if _damaged(e):
                raise
            raise CacheUnavailable(
                f"cache {self.path}: could not store {len(rows)} entr{'y' if len(rows) == 1 else 'ies'} "
                f"({e}); the entries stored before are kept and readable. Fix: free disk space, make "
                "its folder writable, or wait for the process holding it, and rerun"
            ) from None

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM entries").fetchone()[0]

    def close(self) -> None:
        self._db.close()
