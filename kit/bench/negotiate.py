"""Negotiation: concurrent NCN negotiations through the engine vs one at a time vs raw batched generation."""

from __future__ import annotations

from kit.bench.common import Recorder, timed
from kit.config import Params


def run(params: Params) -> dict:
    """Concurrent NCN negotiations through the engine vs one at a time vs raw batched generation.

    Tokens/s are generated tokens over wall time. The one-at-a-time loop runs a subset
    (``bench.sequential_negotiations``) of the same jobs, since its rate is what is compared. Raw
    batched generation is the engine run's own generate calls, timed inside the backend, so
    ``overhead_vs_raw`` is what the engine adds around them (scheduling, parsing, embedding, the
    meta-game). ``prefill_tokens_saved`` is the share of the engine run's prompt tokens whose
    prefill a shared or stored prefix spared; ``engine_processed_tok_s`` counts prompt and
    generated tokens served per second. Each phase starts with the backend's prefix cache empty.
    ``engine_start_s`` is the backend's load (weights, and for vLLM its engine's KV cache and warm-up).
    """
    import torch

    from kit.agents import prompted
    from kit.data.topics import negotiation_topics
    from kit.embed import Embedder
    from kit.engine import run_jobs
    from kit.llm import load_backend
    from kit.negotiation.run import plan_jobs, resolve_pairs, start_job

    b = params.bench
    # The profile's own NCN settings; a vanishing ε keeps every negotiation going for exactly the
    # benchmark's rounds.
    neg = params.negotiation.model_copy(
        update={
            "methods": ["ncn"],
            "max_rounds": b.negotiation_rounds,
            "epsilon": 1e-12,
            "turn_tokens": b.negotiation_turn_tokens or params.negotiation.turn_tokens,
        }
    )
    pairs = resolve_pairs(params)
    agents = {c: prompted(c) for pair in pairs for c in pair}
    n_topics = -(-b.negotiations // len(pairs))
    topic_list = negotiation_topics(params.data, neg.topics.model_copy(update={"n": n_topics}), params.seed)
    specs = plan_jobs(agents, topic_list, neg, pairs)[: b.negotiations]
    # every row of a step in one batch: two agents per negotiation
    model = params.model.model_copy(update={"batch_size": max(params.model.batch_size, 2 * len(specs))})
    backend, t_start = timed(lambda: load_backend(model, None, seed=params.seed))
    embedder = Embedder(params.embedder.name, params.embedder.batch_size)
    embedder.encode(["warm-up"])
    recorder = Recorder(backend)

    def tokens_and_time(fn):
        backend.reset_prefix_cache()  # each phase starts cold, as a fresh run would
        before = backend.stats["generated_tokens"]
        _, seconds = timed(fn)
        return backend.stats["generated_tokens"] - before, seconds

    prompt_before, saved_before = backend.stats["prompt_tokens"], backend.stats["prefill_tokens_saved"]
    engine_tokens, t_engine = tokens_and_time(
        lambda: run_jobs([start_job(s, neg, params.seed) for s in specs], recorder, embedder)
    )
    prompt_tokens = backend.stats["prompt_tokens"] - prompt_before
    saved = backend.stats["prefill_tokens_saved"] - saved_before
    seq_tokens, t_seq = tokens_and_time(
        lambda: [
            run_jobs([start_job(s, neg, params.seed)], backend, embedder)
            for s in specs[: b.sequential_negotiations]
        ]
    )
    engine_tok_s, raw_tok_s, seq_tok_s = (
        engine_tokens / t_engine,
        engine_tokens / recorder.seconds,
        seq_tokens / t_seq,
    )
    return {
        "model": params.model.name,
        "backend": backend.name,
        "numerics": backend.numerics,
        "engine_start_s": round(t_start, 1),
        "negotiations": len(specs),
        "rounds": b.negotiation_rounds,
        "turn_tokens": neg.turn_tokens,
        "generate_calls": len(recorder.calls),
        "engine_tok_s": round(engine_tok_s, 2),
        "sequential_tok_s": round(seq_tok_s, 2),
        "raw_tok_s": round(raw_tok_s, 2),
        "engine_vs_sequential": round(engine_tok_s / seq_tok_s, 2),
        "overhead_vs_raw": round(t_engine / recorder.seconds - 1, 3),
        "prefill_tokens_saved": round(saved / prompt_tokens, 3) if prompt_tokens else 0.0,
        "engine_processed_tok_s": round((prompt_tokens + engine_tokens) / t_engine, 1),
        "threads": torch.get_num_threads(),
        "seconds": round(t_engine + t_seq, 1),
    }
