"""Benchmarks that print ratios (``python -m kit bench WHAT --params …``).

Each returns a dict the CLI prints as its last line. Timings are wall-clock on whatever machine
runs them; the ratios are what the issues' speed targets are stated in.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kit.config import Params
from kit.llm.base import ChatRequest, GenParams

_TOPICS = [
    "Should elderly parents live with their adult children?",
    "Is it acceptable to question the decisions of your religious leaders?",
    "What role should the state play in caring for the poor?",
    "How important is it for children to learn obedience?",
    "Should people be free to marry someone their family disapproves of?",
    "Is hard work or luck more important for success in life?",
    "How should a community treat people who break its traditions?",
    "Should women and men share housework equally?",
    "Is it more important to protect the environment or to grow the economy?",
    "What do you owe to strangers in your own country?",
]
_CULTURES = ["Japan", "Nigeria", "Brazil", "Germany", "India", "Mexico", "Egypt", "Sweden"]


def chat_requests(n: int) -> list[ChatRequest]:
    """Cultural-advisor prompts of varied length, like the ones the protocols send."""
    return [
        ChatRequest([{"role": "system", "content": f"You are a thoughtful person from {_CULTURES[i % len(_CULTURES)]}."
                      + " Answer from your culture's values." * (1 + i % 3)},
                     {"role": "user", "content": _TOPICS[i % len(_TOPICS)]}])
        for i in range(n)
    ]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def generate(params: Params) -> dict:
    """Batched vs one-at-a-time vs raw ``model.generate`` on the same padded batch, and the cache."""
    from kit.cache import Cache
    from kit.llm import load_backend
    from kit.llm.cached import CachedBackend

    n, new = params.bench.n_requests, params.bench.max_new_tokens
    model = params.model.model_copy(update={"batch_size": max(n, params.model.batch_size)})
    backend = load_backend(model, cache_path=None, seed=params.seed)
    requests = chat_requests(n)
    # Greedy with min_new_tokens == max_new_tokens: every request yields exactly `new` tokens.
    gp = GenParams(temperature=0.0, max_new_tokens=new, min_new_tokens=new)
    tokens = n * new
    backend.generate(requests[:2], GenParams(max_new_tokens=4))  # warm-up: allocator, kernels

    _, t_seq = _timed(lambda: [backend.generate([r], gp) for r in requests])
    t_batch = min(_timed(lambda: backend.generate(requests, gp))[1] for _ in range(2))
    t_raw = min(_raw_generate(backend, requests, gp) for _ in range(2))

    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedBackend(backend, Cache(Path(tmp) / "bench.sqlite"))
        first, t_cold = _timed(lambda: cached.generate(requests, gp))
        again, t_warm = _timed(lambda: cached.generate(requests, gp))
        assert first == again
    return {
        "model": params.model.name, "requests": n, "new_tokens_each": new,
        "batched_tok_s": round(tokens / t_batch, 2),
        "sequential_tok_s": round(tokens / t_seq, 2),
        "raw_tok_s": round(tokens / t_raw, 2),
        "batched_vs_sequential": round(t_seq / t_batch, 2),
        "overhead_vs_raw": round(t_batch / t_raw - 1, 3),
        "cached_rerun_speedup": round(t_cold / t_warm, 1),
    }


def _raw_generate(backend, requests: list[ChatRequest], gp: GenParams) -> float:
    """Plain transformers: the tokenizer's own left padding and one ``model.generate`` call."""
    import torch

    tok = backend.tokenizer
    texts = [tok.apply_chat_template(r.chat, tokenize=False, add_generation_prompt=True) for r in requests]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(backend.device)
    with torch.inference_mode():
        _, seconds = _timed(lambda: backend.model.generate(**enc, **backend.generate_kwargs(gp)))
    return seconds


def choice(params: Params) -> dict:
    """Option distributions for (question, agent) pairs: one forward pass vs generate-and-parse.

    ``choice_vs_generate`` compares like with like — a distribution per pair — against
    ``generate_samples`` sampled answers per pair; ``choice_vs_single_answer`` is the floor, one
    greedy answer (one letter, no distribution), where both sides pay the same prompt prefill.
    """
    import re

    from kit.agents import prompted
    from kit.data import load_goqa, resolve_country
    from kit.llm import load_backend
    from kit.survey import choice_request

    items = load_goqa(params.data.goqa_path)
    known = {it.country for it in items}
    agents = [prompted(resolve_country(c, known)) for c in params.agents.countries]
    pool = [it for it in items if it.country in {a.culture for a in agents}]
    pairs = [(a, it) for it in pool for a in agents if a.culture == it.country][: params.bench.n_choice]
    requests = [choice_request(a, it) for a, it in pairs]
    backend = load_backend(params.model, cache_path=None, seed=params.seed)
    backend.choice_probs(requests[:2])  # warm-up

    _, t_choice = _timed(lambda: backend.choice_probs(requests))
    # The alternative reads letters from generated answers. One greedy answer gives one letter; a
    # distribution needs `generate_samples` sampled answers per pair (measured on a subset).
    gen = [ChatRequest(r.chat, adapter=r.adapter) for r in requests]
    greedy, t_single = _timed(lambda: backend.generate(gen, GenParams(max_new_tokens=params.bench.answer_tokens)))
    k = params.bench.generate_samples
    subset = gen[: max(1, len(gen) // k)]
    sampled, t_sampled = _timed(lambda: backend.generate(
        [r for r in subset for _ in range(k)],
        GenParams(temperature=1.0, max_new_tokens=params.bench.answer_tokens, seed=params.seed)))
    letter = re.compile(r"\b[A-Z]\b")
    choice_per_s = len(requests) / t_choice
    return {
        "model": params.model.name, "pairs": len(requests), "answer_tokens": params.bench.answer_tokens,
        "generate_samples": k,
        "choice_per_s": round(choice_per_s, 2),
        "generate_per_s": round(len(subset) / t_sampled, 3),
        "choice_vs_generate": round(choice_per_s / (len(subset) / t_sampled), 2),
        "single_answer_per_s": round(len(gen) / t_single, 2),
        "choice_vs_single_answer": round(choice_per_s / (len(gen) / t_single), 2),
        "letter_parsed_share": round(sum(bool(letter.search(t)) for t in greedy + sampled) / len(greedy + sampled), 3),
    }


def train(params: Params) -> dict:
    """DPO with LoRA on the profile's model: training tokens/s and peak resident memory."""
    from kit.train.speed import measure_train_speed

    return measure_train_speed(params)


class _Recorder:
    """Passes generate calls through and keeps each batch, so raw generation can replay them."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def __getattr__(self, attr):
        return getattr(self.backend, attr)

    def generate(self, requests, params):
        self.calls.append((list(requests), params))
        return self.backend.generate(requests, params)


def negotiate(params: Params) -> dict:
    """Concurrent NCN negotiations through the engine vs one at a time vs raw batched generation.

    Tokens/s are generated tokens over wall time. The one-at-a-time loop runs a subset
    (``bench.sequential_negotiations``) of the same jobs, since its rate is what is compared.
    """
    from kit.agents import prompted
    from kit.data import load_goqa, resolve_country
    from kit.embed import Embedder
    from kit.llm import load_backend
    from kit.negotiation.engine import plan_jobs, run_jobs, start_job
    from kit.negotiation.pipeline import topics as load_topics_of

    b = params.bench
    # The profile's own NCN settings; a vanishing ε keeps every negotiation going for exactly the
    # benchmark's rounds.
    neg = params.negotiation.model_copy(update={"methods": ["ncn"], "max_rounds": b.negotiation_rounds, "epsilon": 1e-12})
    known = {it.country for it in load_goqa(params.data.goqa_path)}
    countries = list(dict.fromkeys(resolve_country(c, known) for pair in neg.pairs for c in pair))
    agents = {c: prompted(c) for c in countries}
    n_topics = -(-b.negotiations // len(neg.pairs))
    topic_list = load_topics_of(params.model_copy(update={"negotiation": neg.model_copy(
        update={"topics": neg.topics.model_copy(update={"n": n_topics})})}))
    specs = plan_jobs(agents, topic_list, neg)[: b.negotiations]
    backend = load_backend(params.model.model_copy(update={"batch_size": max(params.model.batch_size, 16)}), None,
                           seed=params.seed)
    embedder = Embedder(params.embedder.name, params.embedder.batch_size)
    embedder.encode(["warm-up"])
    recorder = _Recorder(backend)

    def tokens_and_time(fn):
        before = backend.stats["generated_tokens"]
        _, seconds = _timed(fn)
        return backend.stats["generated_tokens"] - before, seconds

    engine_tokens, t_engine = tokens_and_time(
        lambda: run_jobs([start_job(s, neg, params.seed) for s in specs], recorder, embedder))
    seq_tokens, t_seq = tokens_and_time(
        lambda: [run_jobs([start_job(s, neg, params.seed)], backend, embedder) for s in specs[: b.sequential_negotiations]])
    raw_tokens, t_raw = tokens_and_time(lambda: [backend.generate(r, p) for r, p in recorder.calls])
    engine_tok_s, raw_tok_s = engine_tokens / t_engine, raw_tokens / t_raw
    return {
        "model": params.model.name, "negotiations": len(specs), "rounds": b.negotiation_rounds,
        "generate_calls": len(recorder.calls),
        "engine_tok_s": round(engine_tok_s, 2),
        "sequential_tok_s": round(seq_tokens / t_seq, 2),
        "raw_tok_s": round(raw_tok_s, 2),
        "engine_vs_sequential": round(engine_tok_s / (seq_tokens / t_seq), 2),
        "overhead_vs_raw": round(raw_tok_s / engine_tok_s - 1, 3),
    }
