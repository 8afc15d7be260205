"""The cache in front of a backend: repeats never reach the model, corruption is never returned."""

import sqlite3

import pytest

from kit.llm.base import Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, Sampled, ScoreRequest
from kit.llm.cached import CachedBackend
from kit.run.cache import Cache


class CountingBackend(Backend):
    """Deterministic fake model that counts what reaches it."""

    name, identity = "fake", "fake:v1"

    def __init__(self):
        self.calls = {"generate": 0, "score": 0, "choice": 0, "sampled": 0}
        self.seen = 0

    sampling_logprobs = True

    def generate_sampled(self, requests, params):
        self.calls["sampled"] += 1
        return [Sampled(t, [7, 8], [-0.25, float("nan")], True) for t in self.generate(requests, params)]

    def generate(self, requests, params):
        self.calls["generate"] += 1
        self.seen += len(requests)
        return [
            f"reply to {r.chat[-1]['content']} at T={params.temperature} seed={params.seed}" for r in requests
        ]

    def score(self, requests):
        self.calls["score"] += 1
        return [[-0.5] * len(r.continuation.split()) for r in requests]

    def choice_probs(self, requests):
        self.calls["choice"] += 1
        return [ChoiceResult({lab: 1 / len(r.labels) for lab in r.labels}, 0.3) for r in requests]


def _req(text):
    return ChatRequest([{"role": "user", "content": text}])


@pytest.fixture
def cached(tmp_path):
    inner = CountingBackend()
    return inner, CachedBackend(inner, Cache(tmp_path / "c.sqlite"))


def test_second_identical_call_does_not_reach_model(cached):
    inner, backend = cached
    reqs = [_req("a"), _req("b")]
    first = backend.generate(reqs, GenParams())
    assert inner.calls["generate"] == 1
    assert backend.generate(reqs, GenParams()) == first
    assert inner.calls["generate"] == 1
    # only the new request of a partly cached batch is sent, in one call
    out = backend.generate([_req("a"), _req("c"), _req("b")], GenParams())
    assert inner.calls["generate"] == 2 and inner.seen == 3
    assert out[0] == first[0] and out[2] == first[1]


def test_key_covers_params_and_adapter(cached, tmp_path):
    inner, backend = cached
    backend.generate([_req("a")], GenParams(max_new_tokens=5))
    backend.generate([_req("a")], GenParams(max_new_tokens=6))
    assert inner.calls["generate"] == 2


def test_key_covers_how_the_weights_run(tmp_path):
    # The same weights in another dtype (or another backend) give other outputs: never a stale hit.
    inner = CountingBackend()
    CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    inner.numerics = "bfloat16@cpu"
    CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    inner.name = "other"
    CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    inner.numerics = ""
    inner.name = "fake"
    CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    assert inner.calls["generate"] == 3


def test_unseeded_sampling_is_never_cached(cached):
    inner, backend = cached
    backend.generate([_req("a")], GenParams(temperature=0.8))
    backend.generate([_req("a")], GenParams(temperature=0.8))
    assert inner.calls["generate"] == 2
    backend.generate([_req("a")], GenParams(temperature=0.8, seed=3))
    backend.generate([_req("a")], GenParams(temperature=0.8, seed=3))
    assert inner.calls["generate"] == 3


def test_sampled_generations_are_cached_apart_with_their_ids_and_log_probabilities(cached):
    import math

    inner, backend = cached
    assert backend.sampling_logprobs
    seeded = GenParams(temperature=0.8, seed=3)
    first = backend.generate_sampled([_req("a")], seeded)
    (again,) = backend.generate_sampled([_req("a")], seeded)
    assert inner.calls["sampled"] == 1 and again == first[0] and again.token_ids == (7, 8) and again.stopped
    assert again.logprobs[0] == -0.25 and math.isnan(again.logprobs[1])  # NaN (not known) survives the cache
    backend.generate([_req("a")], seeded)  # a text-only entry is another verb: it holds no ids to give
    assert inner.calls["generate"] == 2
    backend.generate_sampled([_req("a")], GenParams(temperature=0.8))
    backend.generate_sampled([_req("a")], GenParams(temperature=0.8))
    assert inner.calls["sampled"] == 3  # unseeded sampling is never cached


def test_score_and_choice_are_cached(cached):
    inner, backend = cached
    s = [ScoreRequest([{"role": "user", "content": "x"}], "one two three")]
    c = [ChoiceRequest([{"role": "user", "content": "q"}], ["A", "B"])]
    assert backend.score(s) == backend.score(s) == [[-0.5, -0.5, -0.5]]
    first = backend.choice_probs(c)
    assert backend.choice_probs(c) == first
    assert inner.calls["score"] == 1 and inner.calls["choice"] == 1


def test_persistent_across_instances(tmp_path):
    inner = CountingBackend()
    CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    again = CachedBackend(inner, Cache(tmp_path / "c.sqlite")).generate([_req("a")], GenParams())
    assert inner.calls["generate"] == 1 and again[0].startswith("reply to a")


def test_corrupted_entry_is_regenerated(tmp_path):
    inner = CountingBackend()
    path = tmp_path / "c.sqlite"
    backend = CachedBackend(inner, Cache(path))
    good = backend.generate([_req("a"), _req("b")], GenParams())
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET value = substr(value, 1, 5)")  # truncate every stored value
    db.commit()
    db.close()
    cache = Cache(path)
    again = CachedBackend(inner, cache).generate([_req("a"), _req("b")], GenParams())
    assert again == good
    assert inner.calls["generate"] == 2 and cache.corrupt == 2


def test_unreadable_cache_file_is_set_aside(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = Cache(path)
    assert len(cache) == 0
    assert list(tmp_path.glob("c.corrupt-*"))


def test_a_cache_that_cannot_be_opened_is_an_error_not_corruption(tmp_path):
    """Only a damaged file is set aside; one SQLite cannot open (here a folder in its place, as a lock
    or a read-only disk would) stays where it is, and the error says what to fix in one line."""
    from kit.run.cache import CacheUnavailable

    path = tmp_path / "c.sqlite"
    path.mkdir()
    with pytest.raises(CacheUnavailable, match="left as it is") as err:
        Cache(path)
    assert "\n" not in str(err.value) and path.is_dir() and not list(tmp_path.glob("c.corrupt-*"))


def test_a_full_database_is_one_line_and_keeps_what_was_stored(tmp_path):
    """SQLite's own SQLITE_FULL (the database may grow no further): one line, the transaction rolled back,
    every earlier entry readable, and writes go on once there is room."""
    from kit.run.cache import CacheUnavailable

    cache = Cache(tmp_path / "c.sqlite")
    cache.put_many({"a": b'"kept"'})
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(CacheUnavailable) as err:
        cache.put_many({f"k{i}": b"x" * 5000 for i in range(20)})
    assert str(err.value) == (
        f"cache {tmp_path / 'c.sqlite'}: could not store 20 entries (database or disk is full); "
        "the entries stored before are kept and readable. Fix: free disk space, make its folder "
        "writable, or wait for the process holding it, and rerun"
    )
    assert cache.get_many(["a", "k0"]) == {"a": b'"kept"'} and len(cache) == 1
    cache._db.execute(f"PRAGMA max_page_count = {pages * 100}")
    cache.put_many({"b": b'"later"'})
    assert len(cache) == 2
