"""vLLM backend without vLLM: request translation, and batching through a fake ``vllm`` module."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import kit.llm.vllm_backend as vb
from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
from kit.llm.chat import label_token_ids, render_chat

TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant {% endif %}"
)
CORPUS = ["user system assistant hello world the cat sat on a mat", "Answer: A B C yes no it is fine"]


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, chat_template=TEMPLATE, bos_token="<s>", unk_token="[UNK]"
    )


@dataclass
class Logprob:
    logprob: float


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "it is fine"}, {"role": "user", "content": text}]


# --- pure translation -------------------------------------------------------------------------


def test_module_import_does_not_import_vllm():
    import subprocess

    # in a fresh interpreter: where vLLM is installed, other libraries (trl) import it in this one
    code = "import sys, kit.llm.vllm_backend; assert 'vllm' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_missing_vllm_raises_one_line_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where installed
    with pytest.raises(ImportError) as err:
        vb.VLLMBackend("some/model")
    message = str(err.value)
    assert message == vb.VLLM_MISSING and "\n" not in message
    assert "pip install -e .[gpu]" in message and "model.backend: transformers" in message


def test_sampling_kwargs_greedy_and_sampled():
    greedy = vb.sampling_kwargs(GenParams(max_new_tokens=32))
    assert greedy == {
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 32,
        "min_tokens": 0,
        "seed": None,
        "stop": [],
    }
    sampled = vb.sampling_kwargs(
        GenParams(
            temperature=0.7, top_p=0.9, max_new_tokens=64, seed=11, stop=("\n\n", "User:"), min_new_tokens=5
        )
    )
    assert sampled == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,
        "min_tokens": 5,
        "seed": 11,
        "stop": ["\n\n", "User:"],
    }


def test_sampling_kwargs_rejects_min_above_max():
    with pytest.raises(ValueError, match="min_new_tokens"):
        vb.sampling_kwargs(GenParams(max_new_tokens=4, min_new_tokens=8))


def test_score_prompt_concatenates_separately_encoded_parts(tokenizer):
    req = ScoreRequest(chat("hello world"), "the cat sat")
    ids, n_context = vb.score_prompt(tokenizer, req)
    context = tokenizer.encode(render_chat(tokenizer, req.chat), add_special_tokens=False)
    assert ids[:n_context] == context and n_context == len(context)
    assert ids[n_context:] == tokenizer.encode("the cat sat", add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids


def test_continuation_logprobs_reads_prompt_tokens(tokenizer):
    ids, n_context = vb.score_prompt(tokenizer, ScoreRequest(chat("hello"), "a cat sat on a mat"))
    # Each position holds the prompt token plus a decoy top-1 token, as vLLM returns them.
    prompt_logprobs = [None] + [
        {t: Logprob(-0.25 * pos), t + 1000: Logprob(-0.01)} for pos, t in enumerate(ids) if pos > 0
    ]
    got = vb.continuation_logprobs(prompt_logprobs, ids, n_context)
    assert got == [-0.25 * pos for pos in range(n_context, len(ids))]
    assert len(got) == 6


def test_continuation_logprobs_rejects_misaligned_structure():
    with pytest.raises(ValueError, match="positions"):
        vb.continuation_logprobs([None, {5: Logprob(-1.0)}], [4, 5, 6], 1)
    with pytest.raises(ValueError, match="lacks the prompt token"):
        vb.continuation_logprobs([None, {9: Logprob(-1.0)}], [4, 5], 1)


def test_choice_from_logprobs_hand_computed():
    # "A" is spelled by tokens 10 and 11, "B" by 20; token 30 is off-label.
    lp = {
        10: Logprob(math.log(0.2)),
        11: Logprob(math.log(0.1)),
        20: Logprob(math.log(0.45)),
        30: Logprob(math.log(0.25)),
    }
    result = vb.choice_from_logprobs(lp, {"A": [10, 11], "B": [20]})
    assert result.label_mass == pytest.approx(0.75)
    assert result.probs == pytest.approx({"A": 0.3 / 0.75, "B": 0.45 / 0.75})
    assert list(result.probs) == ["A", "B"]


def test_choice_from_logprobs_tiny_masses_and_missing_tokens():
    # Masses far below float range still renormalise by their ratio (e^-800 : 3e^-800).
    result = vb.choice_from_logprobs({1: -800.0, 2: -800.0 + math.log(3)}, {"x": [1], "y": [2]})
    assert result.probs == pytest.approx({"x": 0.25, "y": 0.75})
    assert result.label_mass == 0.0
    none = vb.choice_from_logprobs({7: Logprob(0.0)}, {"x": [1], "y": [2], "z": [3]})
    assert none.label_mass == 0.0 and none.probs == pytest.approx({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3})


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


def test_lora_ids_are_stable_per_path():
    registry: dict[str, int] = {}
    first = [vb.lora_request_for(p, registry, FakeLoRARequest) for p in ["/ad/a", None, "/ad/b", "/ad/a"]]
    assert first[1] is None
    assert first[0] == first[3] == FakeLoRARequest("adapter-1", 1, "/ad/a")
    assert first[2] == FakeLoRARequest("adapter-2", 2, "/ad/b")
    assert vb.lora_request_for("/ad/b", registry, FakeLoRARequest).lora_int_id == 2
    assert registry == {"/ad/a": 1, "/ad/b": 2}


def test_an_adapter_retrained_in_place_gets_a_new_lora_id():
    registry: dict[str, int] = {}
    old = vb.lora_request_for("/ad/a", registry, FakeLoRARequest, content="1111")
    assert vb.lora_request_for("/ad/a", registry, FakeLoRARequest, content="1111") == old
    new = vb.lora_request_for("/ad/a", registry, FakeLoRARequest, content="2222")
    assert new.lora_int_id == 2 and new.lora_path == "/ad/a"  # vLLM loads the new weights under the new id


# --- the backend through a fake vllm ----------------------------------------------------------

VOCAB = 40


def next_token_logprobs(prompt_ids: list[int]) -> np.ndarray:
    """A prompt-dependent full-vocabulary log-softmax for the fake engine."""
    logits = np.cos(np.arange(VOCAB) * (len(prompt_ids) + 1) * 0.37)
    return logits - np.log(np.exp(logits).sum())


class FakeLLM:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[dict] = []
        self.resets = 0
        mode = kwargs.get("logprobs_mode", "raw_logprobs")  # where vLLM keeps it: llm.llm_engine.model_config
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(logprobs_mode=mode))

    def reset_prefix_cache(self):
        self.resets += 1

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True):
        per_request = isinstance(sampling_params, list)  # one SamplingParams per prompt
        self.calls.append(
            {
                "prompts": prompts,
                "params": [sp.kwargs for sp in sampling_params] if per_request else sampling_params.kwargs,
                "lora": lora_request,
                "use_tqdm": use_tqdm,
            }
        )
        kw = sampling_params[0].kwargs if per_request else sampling_params.kwargs
        outs = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            completion = types.SimpleNamespace(
                text=" ".join(map(str, ids)), logprobs=None, token_ids=ids[:2], finish_reason="length"
            )
            prompt_logprobs = None
            if kw.get("prompt_logprobs"):
                prompt_logprobs = [None] + [{t: Logprob(-0.1 * pos)} for pos, t in enumerate(ids) if pos]
            if kw.get("logprobs") == -1:
                completion.logprobs = [{t: Logprob(v) for t, v in enumerate(next_token_logprobs(ids))}]
            elif kw.get("logprobs") == 0:  # the drawn token's, as processed_logprobs: one entry per step
                completion.logprobs = [
                    {t: Logprob(-0.5 * (i + 1))} for i, t in enumerate(completion.token_ids)
                ]
            outs.append(
                types.SimpleNamespace(
                    outputs=[completion], prompt_logprobs=prompt_logprobs, num_cached_tokens=len(ids) // 2
                )
            )
        return outs


@pytest.fixture
def backend(monkeypatch, tokenizer):
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(kwargs=kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda **kw: dict(kw)
    lora, lora_request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = FakeLoRARequest
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False)  # a GPU node
    for name, mod in [
        ("vllm", vllm),
        ("vllm.inputs", inputs),
        ("vllm.lora", lora),
        ("vllm.lora.request", lora_request),
        ("vllm.platforms", platforms),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(FakeLLM, "tokenizer", tokenizer, raising=False)
    # the adapter paths here hold no files: one content fingerprint per path
    monkeypatch.setattr(vb.VLLMBackend, "adapter_identity", lambda self, a: f"content-of-{a}")
    return vb.VLLMBackend("org/tiny", revision="abc123", seed=3, max_loras=4)


def test_backend_builds_engine_with_lora_and_full_logprobs(backend):
    kw = backend.llm.kwargs
    assert kw["model"] == "org/tiny" and kw["revision"] == kw["tokenizer_revision"] == "abc123"
    assert kw["enable_lora"] is True and kw["max_loras"] == 4 and kw["max_lora_rank"] == 64
    assert kw["max_logprobs"] == -1 and kw["seed"] == 3 and kw["enable_prefix_caching"] is True
    assert kw["logprobs_mode"] == "processed_logprobs" and backend.sampling_logprobs
    assert backend.identity == "org/tiny@abc123" and backend.name == "vllm"
    # a GPU node: vLLM's own KV-cache share, compiled graphs, chunked prefill
    assert not {"kv_cache_memory_bytes", "enforce_eager", "max_num_batched_tokens"} & set(kw)
    assert backend.start_seconds >= 0


def test_cpu_engine_settings():
    assert vb.platform_settings(True, None, None, None) == {
        "kv_cache_memory_bytes": 2 * 2**30,
        "enforce_eager": True,
        "max_num_batched_tokens": 32768,
    }
    assert vb.platform_settings(True, 0.5, False, 65536) == {
        "kv_cache_memory_bytes": 2**29,
        "max_num_batched_tokens": 65536,
    }
    assert vb.platform_settings(False, None, None, None) == {}
    assert vb.platform_settings(False, 8, True, None) == {
        "kv_cache_memory_bytes": 8 * 2**30,
        "enforce_eager": True,
    }


def test_lora_goes_on_every_linear_layer_but_the_head():
    from kit.llm.models import SMOLLM2, module_names

    assert vb.lora_targets(module_names(SMOLLM2)) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]
    assert vb.lora_targets(None) is None and vb.lora_targets({"lm_head": "Linear"}) is None


def test_default_identity(backend):
    assert vb.VLLMBackend("org/tiny").identity == "org/tiny@main"
    assert vb.VLLMBackend("org/tiny", identity="custom").identity == "custom"
    assert vb.VLLMBackend("org/tiny", dtype="bfloat16").numerics == "bfloat16@tp1"


ADAPTERS = [None, "/runs/ad/east", "/runs/ad/west", "/runs/ad/east"]


def expected_loras():
    east, west = FakeLoRARequest("adapter-1", 1, ADAPTERS[1]), FakeLoRARequest("adapter-2", 2, ADAPTERS[2])
    return [None, east, west, east]


def test_generate_is_one_batched_call_in_order(backend, tokenizer):
    texts = ["hello", "the cat", "sat on a mat", "world"]
    reqs = [ChatRequest(chat(t), adapter=a) for t, a in zip(texts, ADAPTERS)]
    params = GenParams(temperature=0.5, max_new_tokens=8, seed=1, stop=("\n",))
    out = backend.generate(reqs, params)
    assert len(backend.llm.calls) == 1
    call = backend.llm.calls[0]
    assert call["use_tqdm"] is False and call["lora"] == expected_loras()
    assert call["params"] == [{**vb.sampling_kwargs(params), "seed": vb.request_seed(1, r)} for r in reqs]
    prompts = [tokenizer.encode(render_chat(tokenizer, r.chat), add_special_tokens=False) for r in reqs]
    assert [p["prompt_token_ids"] for p in call["prompts"]] == prompts
    assert out == [" ".join(map(str, p)) for p in prompts]
    assert backend.generate([], params) == [] and len(backend.llm.calls) == 1


def test_score_is_one_batched_call_in_order(backend, tokenizer):
    conts = ["yes", "the cat sat", "no it is", "a mat"]
    reqs = [ScoreRequest(chat("hello"), c, adapter=a) for c, a in zip(conts, ADAPTERS)]
    out = backend.score(reqs)
    assert len(backend.llm.calls) == 1
    call = backend.llm.calls[0]
    assert call["lora"] == expected_loras()
    assert call["params"]["prompt_logprobs"] == 1 and call["params"]["max_tokens"] == 1
    n_context = len(tokenizer.encode(render_chat(tokenizer, reqs[0].chat), add_special_tokens=False))
    for cont, got in zip(conts, out):
        n_cont = len(tokenizer.encode(cont, add_special_tokens=False))
        assert got == pytest.approx([-0.1 * pos for pos in range(n_context, n_context + n_cont)])


def test_choice_probs_is_one_batched_call_in_order(backend, tokenizer):
    questions = ["hello", "the cat sat on a mat", "world", "a cat"]
    reqs = [
        ChoiceRequest(chat(q), ["A", "B", "C"], adapter=a, prefix="Answer:")
        for q, a in zip(questions, ADAPTERS)
    ]
    out = backend.choice_probs(reqs)
    assert len(backend.llm.calls) == 1
    call = backend.llm.calls[0]
    assert call["lora"] == expected_loras() and call["params"]["logprobs"] == -1
    ids = label_token_ids(tokenizer, ["A", "B", "C"])
    for req, prompt, got in zip(reqs, call["prompts"], out):
        assert prompt["prompt_token_ids"] == tokenizer.encode(
            render_chat(tokenizer, req.chat, "Answer:"), add_special_tokens=False
        )
        p = np.exp(next_token_logprobs(prompt["prompt_token_ids"]))
        mass = {label: sum(p[t] for t in toks) for label, toks in ids.items()}
        total = sum(mass.values())
        assert got.label_mass == pytest.approx(total)
        assert got.probs == pytest.approx({label: m / total for label, m in mass.items()})
    assert len({round(r.label_mass, 12) for r in out}) > 1  # prompts differ, so results do


def test_choice_probs_chunks_large_batches_in_order(backend, monkeypatch):
    monkeypatch.setattr(vb, "CHOICE_CHUNK", 3)
    reqs = [ChoiceRequest(chat(" ".join(["cat"] * (i + 1))), ["yes", "no"]) for i in range(7)]
    out = backend.choice_probs(reqs)
    assert [len(c["prompts"]) for c in backend.llm.calls] == [3, 3, 1]
    monkeypatch.setattr(vb, "CHOICE_CHUNK", 64)
    assert backend.choice_probs(reqs) == out and len(backend.llm.calls) == 4


def test_every_request_draws_its_own_stream_whatever_its_neighbours(backend):
    params = GenParams(temperature=1.0, max_new_tokens=8, seed=5)
    reqs = [ChatRequest(chat("same"), sample=k) for k in range(3)] + [
        ChatRequest(chat("other")),
        ChatRequest(chat("same"), adapter="/a"),
    ]
    backend.generate(reqs, params)
    seeds = [p["seed"] for p in backend.llm.calls[-1]["params"]]
    assert len(set(seeds)) == len(reqs)  # samples, prompts and adapters each get their own
    assert seeds == [vb.seeds.derive(5, "request", vb.cache_key(r.key()), r.sample) for r in reqs]
    backend.generate(reqs[::-1][:2], params)  # another batch, another order: the same draws
    assert [p["seed"] for p in backend.llm.calls[-1]["params"]] == seeds[::-1][:2]
    backend.generate([reqs[3]], GenParams(temperature=1.0, max_new_tokens=8, seed=6))
    assert backend.llm.calls[-1]["params"][0]["seed"] != seeds[3]  # the call's seed still moves every draw
    backend.generate([ChatRequest(chat("plain"))], GenParams(max_new_tokens=8, seed=5))
    assert backend.llm.calls[-1]["params"]["seed"] == 5  # greedy: one SamplingParams for the call
    prompt = sum(len(p["prompt_token_ids"]) for call in backend.llm.calls for p in call["prompts"])
    assert backend.stats["prompt_tokens"] == prompt and backend.stats["generated_tokens"] == 2 * 9
    assert backend.stats["generate_calls"] == 4 and 0 < backend.stats["prefill_tokens_saved"] < prompt
    backend.reset_prefix_cache()  # benchmarks start each phase cold
    assert backend.llm.resets == 1


def test_generate_sampled_asks_for_the_drawn_tokens_log_probabilities(backend):
    reqs = [
        ChatRequest(chat(t), adapter=a)
        for t, a in zip(["hello", "the cat", "sat on a mat", "world"], ADAPTERS)
    ]
    params = GenParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=1)
    out = backend.generate_sampled(reqs, params)
    call = backend.llm.calls[-1]
    assert len(backend.llm.calls) == 1 and call["lora"] == expected_loras()
    assert call["params"] == [
        {**vb.sampling_kwargs(params), "seed": vb.request_seed(1, r), "logprobs": 0} for r in reqs
    ]
    for prompt, o in zip(call["prompts"], out):
        assert (
            o.token_ids == tuple(prompt["prompt_token_ids"][:2])
            and o.logprobs == (-0.5, -1.0)
            and not o.stopped
        )
        assert o.text == " ".join(map(str, prompt["prompt_token_ids"]))  # generate's text
    with pytest.raises(ValueError, match="no stop strings"):
        backend.generate_sampled(reqs, GenParams(max_new_tokens=4, stop=("\n",)))


def test_sampled_from_reads_the_drawn_token_and_refuses_a_misaligned_output():
    out = types.SimpleNamespace(
        text="ab",
        token_ids=[5, 9],
        logprobs=[{5: Logprob(-0.1), 2: Logprob(-3.0)}, {9: Logprob(None)}],
        finish_reason="stop",
    )
    sampled = vb.sampled_from(out)
    assert sampled.token_ids == (5, 9) and sampled.logprobs[0] == -0.1 and math.isnan(sampled.logprobs[1])
    assert (
        sampled.stopped
        and not vb.sampled_from(types.SimpleNamespace(**{**vars(out), "finish_reason": "length"})).stopped
    )
    with pytest.raises(ValueError, match="lack the drawn token 9"):
        vb.sampled_from(
            types.SimpleNamespace(
                text="ab",
                token_ids=[5, 9],
                logprobs=[{5: Logprob(-0.1)}, {2: Logprob(-1)}],
                finish_reason="stop",
            )
        )
    with pytest.raises(ValueError, match="ask with logprobs=0"):
        vb.sampled_from(
            types.SimpleNamespace(text="ab", token_ids=[5, 9], logprobs=None, finish_reason="stop")
        )


def test_an_engine_in_raw_logprobs_mode_gives_no_sampled_log_probabilities(backend):
    raw = vb.VLLMBackend.around(
        FakeLLM(logprobs_mode="raw_logprobs")
    )  # e.g. one built elsewhere, in vLLM's default
    assert not raw.sampling_logprobs
    with pytest.raises(ValueError, match="logprobs_mode='processed_logprobs'"):
        raw.generate_sampled([ChatRequest(chat("hello"))], GenParams(temperature=1.0, seed=1))
    assert vb.VLLMBackend.around(FakeLLM(logprobs_mode="processed_logprobs")).sampling_logprobs
