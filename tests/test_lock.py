"""One writer per run folder: a second process gets one line naming the holder, a dead holder frees it."""

import os
import signal
import subprocess
import sys
import textwrap

from conftest import ROOT

HOLD = textwrap.dedent("""
    import sys, time
    from kit.run import lock
    lock.hold(sys.argv[1])
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), "--as", "notebook 04"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _params(tmp_path, goqa):
    path = tmp_path / "p.yaml"
    path.write_text(
        f"profile: t\nruns_dir: {tmp_path / 'runs'}\nmodel: {{name: tiny-random}}\n"
        f"data: {{goqa_path: {goqa}}}\n"
    )
    return path


def test_second_process_is_refused_until_the_holder_dies(tmp_path, shared_data):
    folder = tmp_path / "runs" / "t"
    proc = _holder(folder)
    try:
        params = _params(tmp_path, shared_data / "globalopinionqa" / "dev.json")
        env = {k: v for k, v in os.environ.items() if k != "AGORA_RUN_LOCK"}
        for command in (["run", str(params), "--only", "00"], ["report", str(params)]):
            out = subprocess.run(
                [sys.executable, "-m", "kit", *command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 1 and len(lines) == 1, out.stderr
            assert f"in use by PID {proc.pid} (-c {folder} --as notebook 04)" in lines[0]
        trained = subprocess.run(
            [sys.executable, "-m", "kit", "train", "dpo", "--params", str(params)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert trained.returncode == 1 and f"PID {proc.pid}" in trained.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # kill -9 leaves no lock behind: the next process takes it
    again = _holder(folder)
    again.kill()
    again.wait()


def test_children_inherit_the_lock_and_one_process_holds_it_once(tmp_path):
    from kit.run import lock

    folder = tmp_path / "run"
    lock.hold(folder)
    try:
        lock.hold(folder)  # the same process again: a no-op
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from kit.run import lock; lock.hold(sys.argv[1])",
                str(folder),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr  # a kernel started by the holder writes under its lock
        stranger = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from kit.run import lock; lock.hold(sys.argv[1])",
                str(folder),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != lock.ENV},
        )
        assert stranger.returncode != 0 and "RunFolderBusy" in stranger.stderr
    finally:
        lock.release(folder)
    assert lock.ENV not in os.environ or str(folder.resolve()) not in os.environ[lock.ENV]


FLOCKLESS = textwrap.dedent("""
    import errno, fcntl, sys, time
    def no_flock(*a, **k):
        raise OSError(errno.ENOLCK, "No locks available")
    fcntl.flock = no_flock  # a cluster file system without flock
    from kit.run import lock
    try:
        lock.hold(sys.argv[1])
    except lock.RunFolderBusy as e:
        print("busy:", e, flush=True)
        sys.exit(3)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _flockless(folder, seconds):
    return subprocess.Popen(
        [sys.executable, "-c", FLOCKLESS, str(folder), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_without_flock_an_exclusive_lock_file_names_its_holder_and_a_dead_one_is_taken_over(tmp_path):
    folder = tmp_path / "runs" / "t"
    first = _flockless(folder, 60)
    try:
        assert first.stdout.readline().strip() == "held"
        warning = first.stderr.readline()
        assert warning.startswith("warning:") and "without flock" in warning and ".lock.held" in warning
        second = _flockless(folder, 0)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3 and f"PID {first.pid} on " in out and ".lock.held" in out
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (
        folder / ".lock.held"
    ).exists()  # kill -9 leaves the file; the next holder on this host sees it dead
    third = _flockless(folder, 0)
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and out.strip() == "held"
    assert not (folder / ".lock.held").exists()  # removed when that process ended


def test_the_cache_works_with_dot_file_locks(tmp_path):
    """Where SQLite cannot lock (Lustre, NFS), the cache opens with the dot-file VFS and a rollback journal."""
    from kit.run.cache import DOTFILE_VFS, Cache

    cache = Cache(tmp_path / "c.sqlite")
    cache.close()
    dotted = Cache.__new__(Cache)
    dotted.path, dotted.hits, dotted.misses, dotted.corrupt = tmp_path / "d.sqlite", 0, 0, 0
    dotted._db = dotted._connect(DOTFILE_VFS)
    dotted.put_many({"k": b"v"})
    assert dotted.get_many(["k"]) == {"k": b"v"} and len(dotted) == 1
    assert dotted._db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_merge_takes_the_lock_of_the_run_folder_it_writes(tmp_path):
    """kit merge rewrites a store a live run may be appending to: it waits its turn like any writer."""
    from kit.run import lock

    run = tmp_path / "runs" / "full"
    store = run / "records" / "negotiations" / "fp.jsonl"
    store.parent.mkdir(parents=True)
    store.write_text('{"id": "a"}\n')
    shard = tmp_path / "shard.jsonl"
    shard.write_text('{"id": "b"}\n')
    assert lock.run_folder_of(store) == run.resolve()  # the folder holding records/, not records/ itself
    assert lock.run_folder_of(shard) == tmp_path.resolve()
    env = {k: v for k, v in os.environ.items() if k != lock.ENV}
    proc = _holder(run)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "kit", "merge", str(store), str(store), str(shard)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1 and f"in use by PID {proc.pid}" in lines[0], out.stderr
        assert store.read_text() == '{"id": "a"}\n'  # untouched
    finally:
        proc.kill()
        proc.wait()
    out = subprocess.run(
        [sys.executable, "-m", "kit", "merge", str(store), str(store), str(shard)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("2 records"), out.stderr
