"""One writer per run folder: an advisory lock on ``runs/<profile>/``.

``kit run``, ``kit train``, ``kit report``, ``kit merge`` (the folder of its output, :func:`run_folder_of`)
and every notebook session (headless or in the lab) take
the lock of the folder they write before they write. Two processes appending to one JSONL store,
rotating one training folder's checkpoints or rewriting one merge would corrupt each other's files;
the second one stops instead, with one line naming the holder. The lock is ``flock`` on
``<run_dir>/.lock``: the kernel releases it when the holder exits, ``kill -9`` included, so a dead
run never leaves the folder locked.

The processes a holder starts (papermill's kernels under ``kit run``) inherit its lock through
``AGORA_RUN_LOCK``. Under ``accelerate launch`` the main rank (``RANK`` 0) holds it for all ranks.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

ENV = "AGORA_RUN_LOCK"  # run folders whose lock this process or an ancestor holds (os.pathsep-separated)
LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # folder -> open file descriptor of its lock, for the life of the process


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


def _inherited() -> set[str]:
    return {p for p in os.environ.get(ENV, "").split(os.pathsep) if p}


def holder(run_dir: str | os.PathLike) -> dict:
    """What the lock file says of its holder (``pid``, ``command``); ``{}`` when it says nothing."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _command() -> str:
    """This process's command line as a user would type it."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py" and program.parent.name == "kit":
        return " ".join(["python -m kit", *sys.argv[1:]])
    if "ipykernel" in program.name:
        return "a notebook kernel (JupyterLab or papermill)"
    return " ".join([program.name, *sys.argv[1:]])


def hold(run_dir: str | os.PathLike) -> None:
    """Take ``run_dir``'s lock until this process ends; raise :class:`RunFolderBusy` when another holds it.

    A no-op when this process, an ancestor that started it, or (under ``accelerate launch``) the
    main rank holds it already.
    """
    folder = Path(run_dir).resolve()
    if folder in _held or str(folder) in _inherited() or os.environ.get("RANK", "0") != "0":
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        who = holder(folder)
        raise RunFolderBusy(f"{folder} is in use by PID {who.get('pid', '?')} ({who.get('command', 'unknown command')}); "
                            "fix: wait for it to end, or write elsewhere (another profile or runs_dir)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": _command()}).encode(), 0)
    _held[folder] = fd
    os.environ[ENV] = os.pathsep.join(sorted(_inherited() | {str(folder)}))


def run_folder_of(path: str | os.PathLike) -> Path:
    """The run folder a file belongs to: the folder holding the nearest ``records/`` above it
    (``runs/<profile>/`` for ``runs/<profile>/records/…/x.jsonl``); else the file's own folder."""
    start = Path(path).resolve().parent
    for folder in [start, *start.parents]:
        if folder.name == "records":
            return folder.parent
    return start


def release(run_dir: str | os.PathLike) -> None:
    """Give the lock back before the process ends (tests; a holder need not call it)."""
    folder = Path(run_dir).resolve()
    fd = _held.pop(folder, None)
    if fd is not None:
        os.close(fd)
        os.environ[ENV] = os.pathsep.join(sorted(_inherited() - {str(folder)}))
