"""Generation: one batch vs one request at a time vs the engine's own batched call, and the cache on a rerun.

The raw call is ``model.generate`` on a tokenizer-padded batch for transformers and ``LLM.generate`` on
the rendered prompts for vLLM; the keys are the same for every backend, so two runs with
``--set model.backend=…`` compare engines on the same prompts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.bench.common import chat_requests, timed
from kit.config import Params
from kit.llm.base import ChatRequest, GenParams


def run(params: Params) -> dict:
    """Batched vs one-at-a-time vs the engine's raw batched call on the same prompts, and the cache."""
    from kit.llm import load_backend
    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache

    n, new = params.bench.n_requests, params.bench.max_new_tokens
    model = params.model.model_copy(update={"batch_size": max(n, params.model.batch_size)})
    backend, t_start = timed(lambda: load_backend(model, cache_path=None, seed=params.seed))
    requests = chat_requests(n)
    # Greedy with min_new_tokens == max_new_tokens: every request yields exactly `new` tokens.
    gp = GenParams(temperature=0.0, max_new_tokens=new, min_new_tokens=new)
    tokens = n * new
    backend.generate(requests[:2], GenParams(max_new_tokens=4))  # warm-up: allocator, kernels

    _, t_seq = timed(lambda: [backend.generate([r], gp) for r in requests])
    t_batch = min(timed(lambda: backend.generate(requests, gp))[1] for _ in range(2))
    t_raw = min(_raw_generate(backend, requests, gp) for _ in range(2))

    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedBackend(backend, Cache(Path(tmp) / "bench.sqlite"))
        first, t_cold = timed(lambda: cached.generate(requests, gp))
        again, t_warm = timed(lambda: cached.generate(requests, gp))
        assert first == again
    return {
        "model": params.model.name,
        "backend": backend.name,
        "numerics": backend.numerics,
        "engine_start_s": round(t_start, 1),
        "requests": n,
        "new_tokens_each": new,
        "batched_tok_s": round(tokens / t_batch, 2),
        "sequential_tok_s": round(tokens / t_seq, 2),
        "raw_tok_s": round(tokens / t_raw, 2),
        "batched_vs_sequential": round(t_seq / t_batch, 2),
        "overhead_vs_raw": round(t_batch / t_raw - 1, 3),
        "cached_rerun_speedup": round(t_cold / t_warm, 1),
    }


def _raw_generate(backend, requests: list[ChatRequest], gp: GenParams) -> float:
    """The engine alone: plain transformers (the tokenizer's own left padding, one ``model.generate``) or
    one ``vllm.LLM.generate`` on the prompts as text."""
    import torch

    if backend.name == "vllm":
        from vllm import SamplingParams

        texts = [
            backend.tokenizer.apply_chat_template(r.chat, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        sampling = SamplingParams(temperature=0.0, max_tokens=gp.max_new_tokens, min_tokens=gp.min_new_tokens)
        backend.reset_prefix_cache()  # as cold as the batched call's first prefill
        return timed(lambda: backend.llm.generate(texts, sampling, use_tqdm=False))[1]

    tok = backend.tokenizer
    texts = [tok.apply_chat_template(r.chat, tokenize=False, add_generation_prompt=True) for r in requests]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(backend.device)
    with torch.inference_mode():
        _, seconds = timed(lambda: backend.model.generate(**enc, **backend.generate_kwargs(gp)))
    return seconds
