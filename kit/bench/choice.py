"""Survey answers: option distributions from one forward pass vs generated and parsed answers."""

from __future__ import annotations

import re

from kit.bench.common import timed
from kit.config import Params
from kit.llm.base import ChatRequest, GenParams


def run(params: Params) -> dict:
    """Option distributions for (question, agent) pairs: one forward pass vs generate-and-parse.

    ``choice_vs_generate`` compares like with like — a distribution per pair — against
    ``generate_samples`` sampled answers per pair; ``choice_vs_single_answer`` is the floor, one
    greedy answer (one letter, no distribution), where both sides pay the same prompt prefill.
    """
    from kit.agents import prompted
    from kit.data import load_goqa, resolve_countries
    from kit.evals.survey import choice_request
    from kit.llm import load_backend

    items = load_goqa(params.data.goqa_path)
    agents = [prompted(c) for c in resolve_countries(params.agents.countries, params.data.goqa_path)]
    pool = [it for it in items if it.country in {a.culture for a in agents}]
    pairs = [(a, it) for it in pool for a in agents if a.culture == it.country][: params.bench.n_choice]
    requests = [choice_request(a, it) for a, it in pairs]
    backend = load_backend(params.model, cache_path=None, seed=params.seed)
    backend.choice_probs(requests[:2])  # warm-up

    _, t_choice = timed(lambda: backend.choice_probs(requests))
    # The alternative reads letters from generated answers. One greedy answer gives one letter; a
    # distribution needs `generate_samples` sampled answers per pair (measured on a subset).
    gen = [ChatRequest(r.chat, adapter=r.adapter) for r in requests]
    greedy, t_single = timed(
        lambda: backend.generate(gen, GenParams(max_new_tokens=params.bench.answer_tokens))
    )
    k = params.bench.generate_samples
    subset = gen[: max(1, len(gen) // k)]
    sampled, t_sampled = timed(
        lambda: backend.generate(
            [r for r in subset for _ in range(k)],
            GenParams(temperature=1.0, max_new_tokens=params.bench.answer_tokens, seed=params.seed),
        )
    )
    letter = re.compile(r"\b[A-Z]\b")
    choice_per_s = len(requests) / t_choice
    return {
        "model": params.model.name,
        "pairs": len(requests),
        "answer_tokens": params.bench.answer_tokens,
        "generate_samples": k,
        "choice_per_s": round(choice_per_s, 2),
        "generate_per_s": round(len(subset) / t_sampled, 3),
        "choice_vs_generate": round(choice_per_s / (len(subset) / t_sampled), 2),
        "single_answer_per_s": round(len(gen) / t_single, 2),
        "choice_vs_single_answer": round(choice_per_s / (len(gen) / t_single), 2),
        "letter_parsed_share": round(
            sum(bool(letter.search(t)) for t in greedy + sampled) / len(greedy + sampled), 3
        ),
    }
