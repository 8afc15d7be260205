"""Run outputs: resumable JSONL records and the run manifest.

Every notebook run writes into ``runs/<profile>/``. Records go to append-only JSONL files keyed
by item id, so a killed run resumes where it stopped with nothing lost and nothing twice::

    store = RecordStore(run_dir / "records.jsonl")
    for item_id in store.pending(all_ids):
        store.append({"id": item_id, **evaluate(item_id)})

Concurrency model: one writer per file, no locks. A record is committed once its line, newline
included, has been written and fsync'ed; a kill can only leave a partial *last* line, which the
next open drops. A write the disk refuses (full, a quota) is cut back to the last complete record
and stops with one line (:class:`RecordWriteError`). Two processes appending to the same file is a bug the store detects (the file
grew behind its back) rather than tolerates.
"""

from __future__ import annotations

import datetime as _dt
import errno
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath

from kit.run import secrets
from kit.run.files import atomic_write_json, atomic_write_text, json_default, sha256_file
from kit.run.paths import FIGURES

logger = logging.getLogger(__name__)

RecordId = str | int


class RecordWriteError(OSError):
    """The disk refused a record write (full, a quota, a file size limit): one line; the store stays readable."""


MANIFEST = "manifest.json"
MANIFEST_PACKAGES = (
    "agora-kit",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "sentence-transformers",
    "papermill",
    "vllm",
)
# Caches are content-addressed and rebuilt on demand; hashing them would be slow and say nothing
# about the results.
_SKIP_DIRS = frozenset({"cache"})
_SKIP_SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-shm")


def _dumps_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=json_default) + "\n"


# ---------------------------------------------------------------------------------------------
# records


class RecordStore:
    """Append-only JSONL file of dict records, unique by ``record[key]`` (a str or int).

    Opening reads every record. A corrupt or unterminated last line (a kill mid-write) is
    dropped and the file truncated back to the last complete line; a corrupt line anywhere else
    raises ValueError. Records returned by ``get``/iteration are the stored objects: treat them
    as read-only.
    """

    def __init__(self, path: str | os.PathLike, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[RecordId, dict] = {}
        self._size = self._load()

    # -- reading ------------------------------------------------------------------------------

    def _parse(self, raw: bytes) -> tuple[RecordId, dict]:
        record = json.loads(raw.decode("utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        return self._id_of(record), record

    def _id_of(self, record: dict) -> RecordId:
        if self.key not in record:
            raise ValueError(f"record has no {self.key!r} field")
        rid = record[self.key]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise ValueError(f"record {self.key!r} must be a str or int, got {type(rid).__name__} {rid!r}")
        return rid

    def _load(self) -> int:
        """Read the file into memory, repair a torn tail, return the file size."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        good_end = 0  # offset just past the last complete line
        offset = 0
        lineno = 0
        while offset < len(data):
            lineno += 1
            newline = data.find(b"\n", offset)
            terminated = newline != -1
            line_end = newline + 1 if terminated else len(data)
            raw = data[offset:line_end]
            if raw.strip():
                try:
                    rid, record = self._parse(raw)
                except ValueError as err:
                    if data[line_end:].strip():
                        raise ValueError(
                            f"{self.path}:{lineno}: corrupt record ({err}); fix or delete that line"
                        ) from None
                    return self._drop_tail(data, good_end, lineno)
                if rid in self._records:
                    raise ValueError(
                        f"{self.path}:{lineno}: duplicate {self.key} {rid!r}; delete one of the two lines"
                    )
                self._records[rid] = record
            if not terminated:
                # A complete JSON object missing only its newline: the record is whole (no proper
                # prefix of a JSON object parses), so keep it and finish the line.
                return (
                    self._finish_line(len(data)) if raw.strip() else self._drop_tail(data, good_end, lineno)
                )
            good_end = line_end
            offset = line_end
        return len(data)

    def _drop_tail(self, data: bytes, good_end: int, lineno: int) -> int:
        dropped = len(data) - good_end
        logger.warning(
            "%s: dropped 1 incomplete last line (line %d, %d bytes), left by an interrupted write",
            self.path,
            lineno,
            dropped,
        )
        with open(self.path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        return good_end

    def _finish_line(self, size: int) -> int:
        with open(self.path, "ab") as f:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        return size + 1

    # -- queries ------------------------------------------------------------------------------

    def __contains__(self, rid: object) -> bool:
        return rid in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict]:
        return iter(list(self._records.values()))

    def __repr__(self) -> str:
        return f"RecordStore({str(self.path)!r}, key={self.key!r}, records={len(self)})"

    def get(self, rid: RecordId, default: dict | None = None) -> dict | None:
        return self._records.get(rid, default)

    def ids(self) -> list[RecordId]:
        """Stored ids in file order."""
        return list(self._records)

    def pending(self, ids: Iterable[RecordId]) -> list[RecordId]:
        """The ids not yet stored, in the order given."""
        return [rid for rid in ids if rid not in self._records]

    def to_list(self) -> list[dict]:
        return list(self._records.values())

    # -- writing ------------------------------------------------------------------------------

    def append(self, record: dict) -> None:
        """Store one record durably (written and fsync'ed before returning)."""
        self.extend([record])

    def extend(self, records: Iterable[dict]) -> None:
        """Store many records with one write and one fsync; all are validated before any is written."""
        lines: list[str] = []
        batch: dict[RecordId, dict] = {}
        for record in records:
            if not isinstance(record, dict):
                raise ValueError(f"{self.path}: records must be dicts, got {type(record).__name__}")
            try:
                line = secrets.scrub_values(
                    _dumps_line(record)
                )  # an API key a server echoed never lands here
            except TypeError as err:
                raise ValueError(f"{self.path}: record {record.get(self.key)!r}: {err}") from None
            # Keep what a reopen would read back (numpy values already converted), so the
            # in-memory view never differs from the file.
            stored = json.loads(line)
            rid = self._id_of(stored)
            if rid in self._records or rid in batch:
                raise ValueError(
                    f"{self.path}: {self.key} {rid!r} is already stored; "
                    f"skip stored ids with store.pending(ids)"
                )
            batch[rid] = stored
            lines.append(line)
        if not lines:
            return
        data = "".join(lines).encode("utf-8")
        fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666
        )  # unbuffered: a refusal is seen here
        try:
            if os.fstat(fd).st_size != self._size:
                raise ValueError(
                    f"{self.path} changed on disk since it was opened (a second writer?); "
                    f"use one RecordStore per file and reopen it"
                )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as err:
                self._undo(fd, err, len(lines))
        finally:
            os.close(fd)
        self._size += len(data)
        self._records.update(batch)

    def _undo(self, fd: int, err: OSError, n: int) -> None:
        """A write the disk refused (full, over a quota, a size limit): cut the file back to its last complete
        record, so the store reads as before this write, and stop with one line."""
        kept = "the file is as it was before this write"
        try:
            os.ftruncate(fd, self._size)
            os.fsync(fd)
        except OSError:  # the next open drops the torn last line instead
            kept = "a torn last line is dropped when the store is next opened"
        raise RecordWriteError(
            f"{self.path}: could not write {n} record(s): {err.strerror or err} "
            f"({errno.errorcode.get(err.errno, err.errno)}); {kept}, nothing stored is lost; "
            "fix: free disk space (or raise the quota) and rerun, which resumes here"
        ) from None


def merge_record_files(paths: Iterable[str | os.PathLike], out: str | os.PathLike, key: str = "id") -> int:
    """Merge JSONL record files (e.g. the shards of one run) into ``out``; returns the records written.

    Records keep first-seen order; a record stored in several files is written once, and an id
    whose records differ between files raises ValueError. Inputs are opened as RecordStores, so a
    torn last line left by a kill is dropped there as any reopen would; ``out`` is written
    atomically and may be one of the inputs.
    """
    merged: dict[RecordId, dict] = {}
    origin: dict[RecordId, Path] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"{path}: no such record file; pass existing JSONL files to merge")
        store = RecordStore(path, key=key)
        for rid in store.ids():
            record = store.get(rid)
            if rid in merged and merged[rid] != record:
                raise ValueError(
                    f"{key} {rid!r} differs between {origin[rid]} and {path}; "
                    "keep one of the two records and merge again"
                )
            merged.setdefault(rid, record)
            origin.setdefault(rid, path)
    atomic_write_text(out, "".join(_dumps_line(record) for record in merged.values()))
    return len(merged)


# ---------------------------------------------------------------------------------------------
# manifest


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_info(path: str | os.PathLike | None = None) -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (default: this package); ``dirty``
    counts changes outside the figures a run writes there."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    status = _git(["status", "--porcelain", "--", ":(top)", f":(top,exclude){FIGURES}"], cwd)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(names: Iterable[str] = MANIFEST_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> str:
    """The machine in words, for the manifest: CPU model, usable cores, GPUs (``nvidia-smi -L``)."""
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = (_run(["nvidia-smi", "-L"]) or "").strip().splitlines()
    return f"{cpu or 'unknown CPU'}, {cores} cores, " + (
        f"{len(gpus)} × {gpus[0].split(':')[1].split('(')[0].strip()}" if gpus else "no GPU"
    )


def _run(args: list[str]) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _is_output(rel: PurePath) -> bool:
    if rel.as_posix() in (MANIFEST, ".lock") or rel.name.endswith(_SKIP_SUFFIXES):  # .lock: kit/run/lock.py
        return False
    return not any(part in _SKIP_DIRS for part in rel.parts[:-1])


def list_outputs(run_dir: str | os.PathLike) -> dict[str, dict]:
    """``{relative posix path: {"size", "sha256"}}`` for every output file under ``run_dir``."""
    run_dir = Path(run_dir)
    outputs: dict[str, dict] = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if path.is_file() and _is_output(rel):
            outputs[rel.as_posix()] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return dict(sorted(outputs.items()))


def write_manifest(
    run_dir: str | os.PathLike,
    params: dict,
    seeds: dict | None = None,
    extra: dict | None = None,
    notebooks: dict | None = None,
    git: dict | None = None,
) -> Path:
    """Write ``run_dir/manifest.json``: code version, environment, parameters and output hashes; with
    ``notebooks``, per notebook the params it actually ran with (an earlier run's, for one not run now);
    ``git``: the checkout as the run found it (default: as it is now)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git": git if git is not None else git_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": machine_info(),
        "executable": sys.executable,
        "packages": package_versions(),
        "params": secrets.redact(params),
        "seeds": seeds,
        "extra": extra,
        **({"notebooks": notebooks} if notebooks is not None else {}),
        "outputs": list_outputs(run_dir),
    }
    return atomic_write_json(run_dir / MANIFEST, manifest)
