"""Records survive kills (nothing lost, nothing twice); manifests hash the run's outputs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kit.run.records import RecordStore, atomic_write_json, atomic_write_text, write_manifest

REPO = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "records.jsonl"
    store = RecordStore(path)
    store.append({"id": "a", "x": 1, "text": "héllo"})
    store.extend([{"id": 2, "x": [1, 2]}, {"id": "c", "x": None}])

    assert path.exists() and len(store) == 3
    assert "a" in store and 2 in store and "b" not in store
    assert store.ids() == ["a", 2, "c"]
    assert [r["id"] for r in store] == ["a", 2, "c"]
    assert store.get(2) == {"id": 2, "x": [1, 2]}
    assert store.get("zzz") is None
    # one sorted-key line per record, UTF-8 kept as is
    assert _lines(path)[0] == '{"id": "a", "text": "héllo", "x": 1}'
    assert RecordStore(path).to_list() == store.to_list()


def test_custom_key(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl", key="item")
    store.append({"item": "q1", "answer": 3})
    assert "q1" in RecordStore(tmp_path / "r.jsonl", key="item")
    with pytest.raises(ValueError, match="'item'"):
        store.append({"id": "q2"})


def test_resume_pending(tmp_path):
    path = tmp_path / "r.jsonl"
    first = RecordStore(path)
    for i in [3, 0, 5]:
        first.append({"id": i})
    reopened = RecordStore(path)
    assert reopened.pending(range(7)) == [1, 2, 4, 6]
    assert reopened.pending([6, 5, 4]) == [6, 4]
    reopened.append({"id": 1})
    assert RecordStore(path).ids() == [3, 0, 5, 1]


def test_duplicate_append_raises(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    store.append({"id": "a"})
    with pytest.raises(ValueError, match="already stored"):
        store.append({"id": "a", "x": 2})
    # a duplicate inside one batch: nothing of the batch is written
    with pytest.raises(ValueError, match="already stored"):
        store.extend([{"id": "b"}, {"id": "b"}])
    assert store.ids() == ["a"] and len(_lines(store.path)) == 1


def test_bad_records_rejected(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match="no 'id'"):
        store.append({"x": 1})
    with pytest.raises(ValueError, match="str or int"):
        store.append({"id": 1.5})
    with pytest.raises(ValueError, match="record 1: set is not JSON-serialisable"):
        store.append({"id": 1, "x": {1, 2}})
    assert len(store) == 0 and not store.path.exists()


def test_truncated_last_line_dropped_and_repaired(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.extend([{"id": i, "text": "x" * 20} for i in range(3)])
    good = path.read_bytes()
    with open(path, "ab") as f:  # a kill halfway through the fourth write
        f.write(b'{"id": 3, "text": "xxx')

    with caplog.at_level(logging.WARNING, logger="kit.run.records"):
        reopened = RecordStore(path)
    assert reopened.ids() == [0, 1, 2]
    assert path.read_bytes() == good
    assert "dropped 1" in caplog.text
    reopened.append({"id": 3, "text": "y"})
    assert RecordStore(path).ids() == [0, 1, 2, 3]


def test_complete_last_record_without_newline_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2}')
    store = RecordStore(path)
    assert store.ids() == [1, 2]
    assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    store.append({"id": 3})
    assert RecordStore(path).ids() == [1, 2, 3]


def test_corrupt_middle_line_raises_with_line_number(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, oops\n{"id": 4}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.jsonl:3: corrupt"):
        RecordStore(path)
    # nothing was repaired or lost
    assert len(_lines(path)) == 4


def test_duplicate_in_file_raises(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.jsonl:3: duplicate id 1"):
        RecordStore(path)


def test_second_writer_detected(tmp_path):
    path = tmp_path / "r.jsonl"
    a, b = RecordStore(path), RecordStore(path)
    a.append({"id": 1})
    with pytest.raises(ValueError, match="changed on disk"):
        b.append({"id": 2})


def test_numpy_values_serialise(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append(
        {
            "id": np.int64(7),
            "p": np.float32(0.5),
            "dist": np.array([0.25, 0.75]),
            "ok": np.bool_(True),
            "where": tmp_path / "a",
        }
    )
    rec = json.loads(_lines(path)[0])
    assert rec == {"id": 7, "p": 0.5, "dist": [0.25, 0.75], "ok": True, "where": (tmp_path / "a").as_posix()}
    assert type(rec["id"]) is int
    # the in-memory view is what a reopen reads back
    assert store.get(7) == rec == RecordStore(path).get(np.int64(7))
    assert store.pending([np.int64(7), 8]) == [8]


def test_atomic_writes(tmp_path):
    target = tmp_path / "d" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    atomic_write_json(tmp_path / "d" / "f.json", {"a": np.arange(3)})
    assert json.loads((tmp_path / "d" / "f.json").read_text()) == {"a": [0, 1, 2]}
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.json", "f.txt"]  # no tmp left


def test_manifest_outputs_and_exclusions(tmp_path):
    run = tmp_path / "run"
    files = {
        "records.jsonl": b'{"id": 1}\n',
        "figures/fig.png": os.urandom(3000),
        "adapters/a/adapter_model.safetensors": os.urandom(5000),
        "cache/llm.json": b"{}",
        "sub/cache/x.bin": b"x",
        "llm.sqlite": b"db",
        "llm.sqlite-wal": b"w",
        "llm.sqlite-shm": b"s",
    }
    for rel, data in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)

    path = write_manifest(run, params={"profile": "tiny", "n": np.int64(4)}, seeds={"torch": 0})
    assert path == run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))

    expected = ["adapters/a/adapter_model.safetensors", "figures/fig.png", "records.jsonl"]
    assert list(manifest["outputs"]) == expected
    for rel in expected:
        data = (run / rel).read_bytes()
        assert manifest["outputs"][rel] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["params"] == {"profile": "tiny", "n": 4}
    assert manifest["seeds"] == {"torch": 0} and manifest["extra"] is None
    assert manifest["python"] == ".".join(map(str, sys.version_info[:3]))
    assert manifest["created"].endswith("+00:00")
    assert manifest["packages"]["agora-kit"] is not None
    assert "vllm" in manifest["packages"]

    # rewriting lists the previous manifest nowhere
    assert "manifest.json" not in json.loads(write_manifest(run, {}).read_text())["outputs"]


def test_manifest_git_info(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    git = json.loads(write_manifest(tmp_path, {}).read_text())["git"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert git["commit"] == head.stdout.strip()
    assert isinstance(git["dirty"], bool)


def test_a_checkout_is_dirty_for_code_not_for_the_figures_a_run_writes(tmp_path):
    from kit.run.records import git_info

    repo = tmp_path / "repo"
    (repo / "kit").mkdir(parents=True)
    (repo / "figures" / "smoke").mkdir(parents=True)
    (repo / "kit" / "a.py").write_text("x = 1\n")
    (repo / "figures" / "smoke" / "f.png").write_bytes(b"one")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    assert git_info(repo / "kit")["dirty"] is False
    (repo / "figures" / "smoke" / "f.png").write_bytes(b"two")  # what a run rewrites
    (repo / "figures" / "smoke" / "new.png").write_bytes(b"new")
    assert (
        git_info(repo / "kit")["dirty"] is False
    )  # asked from a subfolder, it still sees the whole checkout
    (repo / "kit" / "a.py").write_text("x = 2\n")
    assert git_info(repo / "kit")["dirty"] is True
    (repo / "kit" / "a.py").write_text("x = 1\n")
    (repo / "notes.txt").write_text("untracked")
    assert git_info(repo)["dirty"] is True


def test_the_manifest_keeps_the_checkout_the_run_found(tmp_path):
    found = {"commit": "0" * 40, "dirty": False}
    assert json.loads(write_manifest(tmp_path, {}, git=found).read_text())["git"] == found


# The script a notebook would run: resume by skipping stored ids. It prints how many ids were
# pending so the test can tell that the second run resumed rather than started over.
WORKER = textwrap.dedent(
    """
    import sys, time
    from kit.run.records import RecordStore

    store = RecordStore(sys.argv[1])
    todo = store.pending(range(200))
    print(len(todo), flush=True)
    for i in todo:
        store.append({"id": i, "square": i * i, "text": f"item-{i}-" + "z" * 2000})
        time.sleep(0.005)
    """
)


def _worker(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )


def test_killed_run_resumes_with_nothing_lost_or_doubled(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    proc = _worker(path)
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_bytes().count(b"\n") >= 20):
        assert proc.poll() is None, "worker finished before it could be killed"
        assert time.monotonic() < deadline, "worker wrote nothing"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert int(proc.stdout.read().strip()) == 200
    data = path.read_bytes()
    written = data.count(b"\n")
    assert 20 <= written < 200
    if data.endswith(b"\n"):
        # SIGKILL rarely lands inside write(); add the torn line such a kill would leave.
        with open(path, "ab") as f:
            f.write(b'{"id": %d, "square": ' % written)

    proc = _worker(path)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    # resumed: only what was not committed is redone (a whole last record missing only its
    # newline is kept, hence the one-off)
    assert int(out.strip()) in (200 - written, 199 - written)

    records = [json.loads(line) for line in _lines(path)]
    ids = [r["id"] for r in records]
    assert len(records) == 200 and sorted(ids) == list(range(200))
    for r in records:
        assert r == {"id": r["id"], "square": r["id"] ** 2, "text": f"item-{r['id']}-" + "z" * 2000}
    assert RecordStore(path).ids() == ids


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from kit.run.cache import Cache, CacheUnavailable
    from kit.run.records import RecordStore, RecordWriteError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel refuses the write (EFBIG) instead of killing us
    folder = sys.argv[1]
    store = RecordStore(folder + "/records.jsonl")
    store.append({"id": "a", "text": "x" * 100})
    cache = Cache(folder + "/cache.sqlite")
    cache.put_many({"k0": b'"kept"'})
    from pathlib import Path

    def largest(suffix):
        return max(p.stat().st_size for p in Path(folder).iterdir() if p.name.startswith(suffix))

    for name, first, write in (("records", "records", lambda: store.append({"id": "b", "text": "y" * 4000})),
                               ("cache", "cache", lambda: cache.put_many({f"k{i}": b'"' + b"z" * 4000 + b'"'
                                                                          for i in range(1, 40)}))):
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest(first) + 60, resource.RLIM_INFINITY))
        try:
            write()
            print(name, "WROTE")
        except (RecordWriteError, CacheUnavailable) as e:
            print(name, "ERROR", e)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    store.append({"id": "c", "text": "after"})  # the disk has room again: the store goes on where it was
    print("records", sorted(store.ids()), "cache", sorted(cache.get_many(["k0", "k1"])))
""")


def test_a_full_disk_mid_write_is_one_line_and_leaves_the_stores_readable(tmp_path):
    """The kernel refuses a write part-way (a file size limit, as a full disk does): the record store cuts
    the torn line back and says so in one line (not "changed on disk … a second writer?"), the cache rolls its
    transaction back (not a raw sqlite3.OperationalError); both read as before, and both go on afterwards."""
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    records, cache = lines[0], lines[1]
    assert records.startswith(
        f"records ERROR {tmp_path}/records.jsonl: could not write 1 record(s): File too large "
        "(EFBIG); the file is as it was before this write, nothing stored is lost; fix: free "
        "disk space"
    ), records
    # SQLite names the refusal a disk I/O error here (a full disk: "database or disk is full", test_cache.py)
    assert cache.startswith(
        f"cache ERROR cache {tmp_path}/cache.sqlite: could not store 39 entries (disk I/O error); "
        "the entries stored before are kept and readable"
    ), cache
    assert lines[2] == "records ['a', 'c'] cache ['k0']"
    reopened = RecordStore(tmp_path / "records.jsonl")  # a fresh reader: whole lines only
    assert reopened.ids() == ["a", "c"] and all(
        line.endswith("}") for line in _lines(tmp_path / "records.jsonl")
    )
    from kit.run.cache import Cache

    assert Cache(tmp_path / "cache.sqlite").get_many(["k0"]) == {"k0": b'"kept"'}
