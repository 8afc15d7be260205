"""Keys/values kept across calls: the store's bookkeeping by hand, and the backend's outputs unchanged by it."""

import numpy as np
import pytest
import torch

from kit.llm.base import ChatRequest, GenParams
from kit.llm.prefix_store import PrefixStore, common_length


def _layers(tokens, layers=2, heads=1, dim=2):
    """Fake per-layer keys/values whose entries encode (layer, token), so a slice can be checked by eye."""
    t = torch.tensor(tokens, dtype=torch.float32)
    return [
        (
            t[None, :, None].expand(heads, len(tokens), dim) + 100 * layer,
            -t[None, :, None].expand(heads, len(tokens), dim),
        )
        for layer in range(layers)
    ]


def _bytes(n_tokens, layers=2, heads=1, dim=2):
    return 2 * layers * heads * n_tokens * dim * 4


def test_common_length_by_hand():
    assert common_length(np.array([1, 2, 3]), np.array([1, 2, 4, 5])) == 2
    assert common_length(np.array([1, 2]), np.array([1, 2, 3])) == 2
    assert common_length(np.array([7]), np.array([1])) == 0


def test_longest_prefix_per_adapter_and_limit():
    store = PrefixStore(10**6)
    store.put(None, [1, 2, 3, 4, 5], _layers([1, 2, 3, 4, 5]))
    store.put(None, [1, 2, 9], _layers([1, 2, 9]))
    store.put("lora", [1, 2, 3, 4, 5, 6], _layers([1, 2, 3, 4, 5, 6]))
    layers, n = store.longest(None, [1, 2, 3, 4, 8, 8], limit=10)
    assert n == 4 and layers[1][0][0, :, 0].tolist() == [101, 102, 103, 104]  # layer 1's keys, tokens 1..4
    assert store.longest(None, [1, 2, 3, 4, 5, 6], limit=3)[1] == 3  # never past the limit
    assert store.longest(None, [1, 2, 9, 9], limit=10)[1] == 3
    assert store.longest(None, [5, 5], limit=10) == (None, 0)
    assert (
        store.longest("lora", [1, 2, 3, 4, 5, 6, 7], limit=10)[1] == 6
    )  # another adapter's entries are apart
    assert store.longest("other", [1, 2, 3], limit=10) == (None, 0)


def test_an_extended_sequence_replaces_its_prefix_and_a_known_one_adds_nothing():
    store = PrefixStore(10**6)
    store.put(None, [1, 2, 3], _layers([1, 2, 3]))
    store.put(None, [1, 2, 3, 4, 5], _layers([1, 2, 3, 4, 5]))  # a dialogue's next turn
    assert len(store) == 1 and store.bytes == _bytes(5)
    store.put(None, [1, 2], _layers([1, 2]))  # already served by the longer entry
    assert len(store) == 1 and store.bytes == _bytes(5)


def test_least_recently_used_entries_go_first_past_the_budget():
    store = PrefixStore(_bytes(10))
    store.put(None, [1, 1, 1, 1], _layers([1, 1, 1, 1]))
    store.put(None, [2, 2, 2, 2], _layers([2, 2, 2, 2]))
    store.longest(None, [1, 1, 1, 1], limit=4)  # touch the first: the second is now the oldest
    store.put(None, [3, 3, 3, 3], _layers([3, 3, 3, 3]))  # 12 tokens > 10: evict one
    assert store.bytes == _bytes(8)
    assert store.longest(None, [2, 2], limit=2) == (None, 0)
    assert store.longest(None, [1, 1], limit=2)[1] == 2 and store.longest(None, [3, 3], limit=2)[1] == 2
    store.put(None, list(range(20)), _layers(list(range(20))))  # larger than the whole budget: not kept
    assert store.bytes == _bytes(8)
    store.clear()
    assert len(store) == 0 and store.bytes == 0


def test_matches_shorter_than_min_length_do_not_count_and_entries_are_capped():
    store = PrefixStore(10**6, min_length=3, max_entries=2)
    store.put(None, [1, 2, 3, 4], _layers([1, 2, 3, 4]))
    assert store.longest(None, [1, 2, 9, 9], limit=4) == (None, 0)  # two shared tokens < 3
    assert store.longest(None, [1, 2, 3, 9], limit=2) == (None, 0)  # a limit below min_length
    assert store.longest(None, [1, 2, 3, 9], limit=4)[1] == 3
    store.put(None, [5, 6, 7], _layers([5, 6, 7]))
    store.put(None, [8, 9, 10], _layers([8, 9, 10]))  # a third entry: the oldest goes
    assert len(store) == 2 and store.longest(None, [1, 2, 3, 4], limit=4) == (None, 0)
    store.put(None, [1, 2], _layers([1, 2]))  # shorter than min_length: never kept
    assert len(store) == 2 and store.bytes == 2 * _bytes(3)


@pytest.fixture()
def fresh():
    from kit.llm.hf_backend import HFBackend

    return HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8)


SYSTEM = "You are a careful negotiator who weighs every guideline of both sides before you answer. " * 4


def _chat(user, system=SYSTEM):
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def test_later_calls_reuse_earlier_prefixes_with_the_same_tokens(fresh):
    from kit.llm.hf_backend import MIN_SHARED_PREFIX, HFBackend

    plain = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8, prefix_sharing=False)
    params = GenParams(max_new_tokens=6)
    calls = [
        [ChatRequest(_chat("Topic: housework. Propose a counter-proposal."))],  # one call per temperature
        [
            ChatRequest(_chat("Topic: housework. Propose a gap-filler.")),
            ChatRequest(_chat("Something else", system="Another system prompt entirely.")),
        ],
    ]
    for call in calls:
        before = dict(fresh.stats)
        assert fresh.generate(call, params) == plain.generate(call, params)  # float32: same tokens
    saved = fresh.stats["prefill_tokens_saved"] - before["prefill_tokens_saved"]
    assert saved >= MIN_SHARED_PREFIX  # the second call's shared system prompt and topic came from the store

    # a dialogue's next turn: the previous prompt and the reply are served from the store
    first = _chat("Make your opening offer.")
    reply = fresh.generate([ChatRequest(first)], params)[0]
    turn = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Why?"}]
    before = dict(fresh.stats)
    assert fresh.generate([ChatRequest(turn)], params) == plain.generate([ChatRequest(turn)], params)
    opening = len(
        fresh._encode(fresh.tokenizer.apply_chat_template(first, tokenize=False, add_generation_prompt=True))
    )
    assert fresh.stats["prefill_tokens_saved"] - before["prefill_tokens_saved"] >= opening


def test_seeded_sampling_reproduces_from_a_cold_start(fresh):
    calls = [
        [ChatRequest(_chat(f"Proposal {k}: {tail}")) for k, tail in enumerate(["counter", "gap", "bold"])]
        for _ in range(2)
    ]
    sampled = GenParams(max_new_tokens=6, temperature=1.0, seed=5)

    def run():
        fresh.reset_prefix_cache()
        return [fresh.generate(call, sampled) for call in calls]

    assert run() == run()
    assert len(fresh.store) > 0


def test_no_store_when_switched_off():
    from kit.llm.hf_backend import HFBackend

    backend = HFBackend("tiny-random", dtype="float32", device="cpu", prefix_cache_mb=0)
    backend.generate([ChatRequest(_chat("Hello"))], GenParams(max_new_tokens=2))
    assert backend.store is None


def test_growing_layer_holds_what_transformers_dynamic_layer_holds():
    from transformers.cache_utils import DynamicLayer

    from kit.llm.kv_cache import SPARE, GrowingLayer

    torch.manual_seed(0)
    grown, plain = GrowingLayer(), DynamicLayer()
    for length in (5, 1, 1, SPARE + 3, 1):  # a prefill, decode steps, a block past the spare room
        k, v = torch.randn(2, 3, length, 4), torch.randn(2, 3, length, 4)
        got, want = grown.update(k, v), plain.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert grown.get_seq_length() == plain.get_seq_length() == 5 + 1 + 1 + SPARE + 3 + 1
    for layer in (grown, plain):
        layer.reorder_cache(torch.tensor([1, 0]))
        layer.crop(7 - layer.get_seq_length())  # a negative count: tokens to drop
    k, v = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
    got, want = grown.update(k, v), plain.update(k, v)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[0].shape[-2] == 8


def test_the_on_disk_cache_wrapper_passes_the_reset_on(fresh, tmp_path):
    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache

    wrapped = CachedBackend(fresh, Cache(tmp_path / "cache.sqlite"))
    wrapped.generate([ChatRequest(_chat("Hello there"))], GenParams(max_new_tokens=2))
    assert len(fresh.store) > 0
    wrapped.reset_prefix_cache()
    assert len(fresh.store) == 0
