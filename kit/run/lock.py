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

Cluster file systems (Lustre, some NFS mounts) may not implement ``flock`` (``ENOSYS``, ``ENOLCK``,
``EOPNOTSUPP``). There the lock is an exclusive lock file, ``<run_dir>/.lock.held``, created with
``O_EXCL`` and naming its host and PID, said once in a ``warning:`` line. A holder that died on this
host is detected (its PID is gone) and its file taken over; one on another host cannot be checked, so
the message names it and the file to remove once that run is known to be dead.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

ENV = "AGORA_RUN_LOCK"  # run folders whose lock this process or an ancestor holds (os.pathsep-separated)
LOCK_FILE = ".lock"
HELD_FILE = ".lock.held"  # the exclusive lock file where flock is not supported
NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)  # the file system has no flock
_held: dict[Path, int] = {}  # folder -> open file descriptor of its lock, for the life of the process
_files: set[Path] = set()  # lock files this process created (flock unsupported), removed when it ends


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
    except OSError as e:
        os.close(fd)
        if e.errno in NO_FLOCK:
            _hold_file(folder, e)
            return
        who = holder(folder)
        raise RunFolderBusy(
            f"{folder} is in use by PID {who.get('pid', '?')} ({who.get('command', 'unknown command')}); "
            "fix: wait for it to end, or write elsewhere (another profile or runs_dir)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_me()).encode(), 0)
    _held[folder] = fd
    os.environ[ENV] = os.pathsep.join(sorted(_inherited() | {str(folder)}))


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": _command()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hold_file(folder: Path, cause: OSError) -> None:
    """The lock as an exclusive file, where the file system refuses flock (see the module docstring)."""
    path = folder / HELD_FILE
    if not _files and not getattr(_hold_file, "warned", False):
        print(
            f"warning: {folder} is on a file system without flock ({os.strerror(cause.errno)}); the run lock is "
            f"the file {path} instead",
            file=sys.stderr,
        )
        _hold_file.warned = True
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            who = holder_file(folder)
            if (
                who.get("host") == socket.gethostname()
                and isinstance(who.get("pid"), int)
                and not _alive(who["pid"])
            ):
                path.unlink(missing_ok=True)  # its holder died on this host: take it over
                continue
            raise RunFolderBusy(
                f"{folder} is in use by PID {who.get('pid', '?')} on {who.get('host', '?')} "
                f"({who.get('command', 'unknown command')}); fix: wait for it to end, or remove {path} "
                "once that run is known to be dead"
            ) from None
        os.write(fd, json.dumps(_me()).encode())
        os.close(fd)
        _files.add(folder)
        os.environ[ENV] = os.pathsep.join(sorted(_inherited() | {str(folder)}))
        return
    raise RunFolderBusy(f"{folder}: could not take {path}; fix: remove it once no run uses the folder")


def holder_file(run_dir: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(run_dir) / HELD_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@atexit.register
def _remove_files() -> None:
    for folder in list(_files):
        release(folder)


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
    if folder in _files:
        _files.discard(folder)
        if holder_file(folder).get("pid") == os.getpid():
            (folder / HELD_FILE).unlink(missing_ok=True)
        os.environ[ENV] = os.pathsep.join(sorted(_inherited() - {str(folder)}))
