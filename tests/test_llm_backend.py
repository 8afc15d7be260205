"""The transformers backend against independent computations on the same tiny model."""

from pathlib import Path

import pytest
import torch

from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
from kit.llm.chat import label_token_ids, render_chat


def _msgs(text, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


SCORE_REQS = [
    ScoreRequest(_msgs("What matters in a family?"), "Respect for elders and care for children."),
    ScoreRequest(_msgs("Hi", system="You are from Japan."), "Harmony."),
    ScoreRequest(
        _msgs("Is tradition important? " * 6),
        "Yes, tradition keeps a community together over many generations.",
    ),
    ScoreRequest(_msgs("Why?"), "Because."),
]


def _manual_logprobs(backend, req):
    tok = backend.tokenizer
    ctx = tok.encode(render_chat(tok, req.chat), add_special_tokens=False)
    cont = tok.encode(req.continuation, add_special_tokens=False)
    with torch.no_grad():
        logits = backend.model(torch.tensor([ctx + cont])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return [logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)]


def test_score_matches_manual_log_softmax(tiny_backend):
    assert tiny_backend.numerics == "float32@cpu"  # part of every cache key
    got = tiny_backend.score(SCORE_REQS)
    for req, lp in zip(SCORE_REQS, got):
        expected = _manual_logprobs(tiny_backend, req)
        assert len(lp) == len(expected) > 0
        assert lp == pytest.approx(expected, abs=1e-4)


def test_score_independent_of_batch_and_padding(tiny_backend):
    batched = tiny_backend.score(SCORE_REQS + SCORE_REQS[:2])
    for i, req in enumerate(SCORE_REQS):
        alone = tiny_backend.score([req])[0]
        assert batched[i] == pytest.approx(alone, abs=1e-5)
    assert batched[4] == pytest.approx(batched[0], abs=1e-5)


def test_choice_probs_sum_to_one_and_match_manual_softmax(tiny_backend):
    tok = tiny_backend.tokenizer
    reqs = [
        ChoiceRequest(
            _msgs("Question: Is it good? Options: A. yes B. no C. maybe"), ["A", "B", "C"], prefix="Answer:"
        ),
        ChoiceRequest(_msgs("Pick one " * 9), ["A", "B"]),
        ChoiceRequest(_msgs("Short"), ["A", "B", "C", "D"], prefix="Answer:"),
    ]
    results = tiny_backend.choice_probs(reqs)
    for req, res in zip(reqs, results):
        assert sum(res.probs.values()) == pytest.approx(1.0, abs=1e-9)
        ids = tok.encode(render_chat(tok, req.chat, req.prefix), add_special_tokens=False)
        with torch.no_grad():
            probs = torch.softmax(tiny_backend.model(torch.tensor([ids])).logits[0, -1].double(), -1)
        mass = {lab: sum(probs[t].item() for t in ts) for lab, ts in label_token_ids(tok, req.labels).items()}
        total = sum(mass.values())
        assert res.label_mass == pytest.approx(total, rel=1e-4)
        for lab in req.labels:
            assert res.probs[lab] == pytest.approx(mass[lab] / total, abs=1e-5)
    # the same request alone gives the same distribution
    alone = tiny_backend.choice_probs([reqs[2]])[0]
    assert alone.probs == pytest.approx(results[2].probs, abs=1e-6)


def test_labels_with_and_without_leading_space(tiny_backend):
    tok = tiny_backend.tokenizer
    ids = label_token_ids(tok, ["A", "B"])
    bare, spaced = tok.encode("A", add_special_tokens=False), tok.encode(" A", add_special_tokens=False)
    assert bare[0] in ids["A"]
    if len(spaced) == 1:  # the tiny BPE learnt " A" as one token: both spellings count
        assert spaced[0] in ids["A"] and len(ids["A"]) == 2
    with pytest.raises(ValueError, match="single token"):
        label_token_ids(tok, ["Zebra-crossing-option"])


def test_generate_greedy_is_batch_invariant_and_stops(tiny_backend):
    reqs = [ChatRequest(_msgs("Tell me about family values " * k)) for k in (1, 3, 5)]
    params = GenParams(max_new_tokens=6)
    batched = tiny_backend.generate(reqs, params)
    assert batched == [tiny_backend.generate([r], params)[0] for r in reqs]
    first = batched[0]
    if len(first) > 2:
        stop = first[1:3]
        cut = tiny_backend.generate(reqs[:1], GenParams(max_new_tokens=6, stop=(stop,)))[0]
        assert stop not in cut and first.startswith(cut)


@pytest.mark.parametrize(
    "params",
    [
        GenParams(temperature=0.8, max_new_tokens=10, seed=4),
        GenParams(temperature=1.3, top_p=0.7, max_new_tokens=10, seed=4),
        GenParams(max_new_tokens=10),
    ],
)
def test_sampled_ids_and_log_probabilities_against_a_forward_pass(tiny_backend, params):
    """generate_sampled: generate's texts; the drawn ids (through the end-of-turn token if it stopped on it); each
    one's log-probability = the forward pass's log-softmax at the temperature, less the log of the nucleus's mass
    (found here by sorting the whole row, as transformers' top-p warper does), in a batch of prompts of unequal
    length (left padding, shared prefixes)."""
    reqs = [ChatRequest(_msgs("Tell me about family values " * k), sample=k) for k in (1, 3, 5)]
    out = tiny_backend.generate_sampled(reqs, params)
    assert [o.text for o in out] == tiny_backend.generate(reqs, params)
    tok = tiny_backend.tokenizer
    eos = tiny_backend.model.generation_config.eos_token_id
    for req, o in zip(reqs, out):
        assert o.text == tok.decode(o.token_ids, skip_special_tokens=True)
        assert o.stopped == (o.token_ids[-1] == eos) and (
            o.stopped or len(o.token_ids) == params.max_new_tokens
        )
        assert eos not in o.token_ids[:-1]
        prompt = tok.encode(render_chat(tok, req.chat), add_special_tokens=False)
        with torch.no_grad():
            logits = tiny_backend.model(torch.tensor([prompt + list(o.token_ids)])).logits[
                0, len(prompt) - 1 : -1
            ]
        want = []
        for row, token in zip(logits.double(), o.token_ids):
            logp = torch.log_softmax(row / (params.temperature or 1.0), -1)
            if params.top_p < 1:  # the smallest set of most likely tokens whose mass reaches top_p
                probs = logp.exp().sort(descending=True).values
                kept = probs[(probs.cumsum(0) - probs) < params.top_p]
                assert logp[token].exp() >= kept[-1] - 1e-9  # the drawn token is in the nucleus
                want.append(logp[token].item() - kept.sum().log().item())
            else:
                want.append(logp[token].item())
        assert max(abs(a - b) for a, b in zip(o.logprobs, want)) < 1e-5
    with pytest.raises(ValueError, match="no stop strings"):
        tiny_backend.generate_sampled(reqs, GenParams(max_new_tokens=4, stop=("x",)))


def test_adapters_switch_per_request(tmp_path, tiny_backend):
    """Two LoRA adapters and the bare model served from one base model in one call."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.llm.hf_backend import HFBackend

    paths = []
    for seed in (1, 2):
        base = AutoModelForCausalLM.from_pretrained(tiny_backend.resolved.path)
        torch.manual_seed(seed)
        peft_model = get_peft_model(
            base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        out = tmp_path / f"adapter{seed}"
        peft_model.save_pretrained(out)
        paths.append(str(out))
    backend = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=2)
    req = SCORE_REQS[0]
    mixed = backend.score([ScoreRequest(req.chat, req.continuation, adapter=p) for p in paths] + [req])
    assert mixed[2] == pytest.approx(tiny_backend.score([req])[0], abs=1e-5)
    assert mixed[0] != pytest.approx(mixed[1], abs=1e-4)
    assert mixed[0] != pytest.approx(mixed[2], abs=1e-4)
    assert backend.score([ScoreRequest(req.chat, req.continuation, adapter=paths[1])])[0] == pytest.approx(
        mixed[1], abs=1e-5
    )

    # adapter 1 retrained in place (adapter 2's weights written to its folder): served anew, not from memory
    import shutil

    shutil.copy(Path(paths[1]) / "adapter_model.safetensors", Path(paths[0]) / "adapter_model.safetensors")
    again = backend.score([ScoreRequest(req.chat, req.continuation, adapter=paths[0])])[0]
    assert again == pytest.approx(mixed[1], abs=1e-5) and again != pytest.approx(mixed[0], abs=1e-4)


def test_prefix_groups_by_hand():
    from kit.llm.hf_backend import prefix_groups

    seqs = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6, 7], [1, 2, 9], [8, 8, 8, 8]]  # in token order
    assert prefix_groups(seqs, min_shared=3) == [([0, 1], 4), ([2], 2), ([3], 3)]
    assert prefix_groups(seqs, min_shared=5) == [([0], 4), ([1], 5), ([2], 2), ([3], 3)]
    # a prefix leaves every row one token of its own, even when one prompt is the other's start
    assert prefix_groups([[1, 2, 3], [1, 2, 3, 4]], min_shared=2) == [([0, 1], 2)]


@pytest.mark.filterwarnings("error::FutureWarning")  # the cache goes by the name this transformers takes
def test_shared_prefixes_change_no_greedy_output_and_are_counted(tiny_backend):
    from kit.llm.hf_backend import MIN_SHARED_PREFIX, HFBackend

    system = "You are a careful negotiator who weighs every guideline. " * 6
    reqs = [
        ChatRequest(
            [{"role": "system", "content": system}, {"role": "user", "content": f"Proposal {k}: {tail}"}]
        )
        for k, tail in enumerate(["counter", "gap in the middle", "innovative and bold", "counter again"])
    ]
    reqs.append(ChatRequest(_msgs("Something else entirely")))
    params = GenParams(max_new_tokens=6)
    plain = HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=8, prefix_sharing=False)
    expected = plain.generate(reqs, params)
    before = dict(tiny_backend.stats)
    shared = tiny_backend.generate(reqs, params)
    assert shared == expected  # float32: the same tokens with and without the shared prefill
    assert shared == [tiny_backend.generate([r], params)[0] for r in reqs]  # and alone
    saved = tiny_backend.stats["prefill_tokens_saved"] - before["prefill_tokens_saved"]
    prompt_tokens = tiny_backend.stats["prompt_tokens"] - before["prompt_tokens"]
    assert saved >= 3 * MIN_SHARED_PREFIX and 0 < saved / prompt_tokens < 1
    # seeded sampling stays reproducible through the shared path
    sampled = GenParams(max_new_tokens=6, temperature=1.0, seed=11)
    assert tiny_backend.generate(reqs, sampled) == tiny_backend.generate(reqs, sampled)


def test_threads_leave_cores_busy_elsewhere_free(monkeypatch):
    from kit.llm import hf_backend

    assert 0 <= hf_backend.cores_busy_elsewhere(0.05) <= hf_backend.available_cores() + 1  # read from /proc
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(hf_backend, "available_cores", lambda: 4)
        monkeypatch.setattr(hf_backend, "cores_busy_elsewhere", lambda window=0.25: 1.2)
        assert hf_backend.use_threads(None) == 3 == torch.get_num_threads()
        monkeypatch.setattr(hf_backend, "cores_busy_elsewhere", lambda window=0.25: 7.0)
        assert hf_backend.use_threads(None) == 1  # never fewer than one
        assert hf_backend.use_threads(2) == 2  # model.threads decides when set
    finally:
        torch.set_num_threads(before)


def _random_adapter(base_path: str, folder: Path, seed: int) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_path),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(folder)
    return str(folder)


def test_an_adapter_retrained_in_place_answers_anew_through_the_cache(tmp_path, tiny_backend):
    """Retrain in place (a lab cell run twice), call again in the same process: the cache keys on the adapter's
    content as it is now, so the new weights answer — never the old weights' answers stored under the new hash."""
    import shutil

    from kit.llm.cached import CachedBackend
    from kit.llm.hf_backend import HFBackend
    from kit.run.cache import Cache

    adapter = _random_adapter(tiny_backend.resolved.path, tmp_path / "agent", 1)
    other = _random_adapter(tiny_backend.resolved.path, tmp_path / "other", 2)
    cached = CachedBackend(
        HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=2),
        Cache(tmp_path / "cache.sqlite"),
    )
    req = SCORE_REQS[0]
    first = cached.score([ScoreRequest(req.chat, req.continuation, adapter=adapter)])[0]
    assert (
        cached.score([ScoreRequest(req.chat, req.continuation, adapter=adapter)])[0] == first
    )  # a cache hit
    shutil.copy(
        Path(other) / "adapter_model.safetensors", Path(adapter) / "adapter_model.safetensors"
    )  # retrained
    again = cached.score([ScoreRequest(req.chat, req.continuation, adapter=adapter)])[0]
    fresh = HFBackend("tiny-random", dtype="float32", device="cpu").score(
        [ScoreRequest(req.chat, req.continuation, adapter=other)]
    )[0]
    assert again == pytest.approx(fresh, abs=1e-5) and again != pytest.approx(first, abs=1e-4)
    assert len(cached.cache) == 2  # one entry per content
