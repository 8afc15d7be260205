"""Self-play: rollouts through the engine vs one dialogue at a time, and self-play GRPO's memory.

``python -m kit bench selfplay --params …`` plays ``bench.selfplay_dialogues`` dialogues of the
profile's ``selfplay`` settings (MoralChoice dilemmas, sampled at the policy's temperature, every
dialogue running all ``max_turns`` turns) all at once through the engine — one generate call per
turn — and ``bench.sequential_dialogues`` of the same dialogues one at a time; rates are generated
tokens per second (a dialogue resolved early simply generates less, on both paths). Then two steps of self-play GRPO with the profile's ``selfplay.policy`` recipe
(judge: the profile's model) report seconds per step and the process's peak RSS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.bench.common import timed
from kit.config import Params
from kit.run import seeds
from kit.run.cost import peak_rss_gb


def run(params: Params) -> dict:
    from kit.embed import Embedder
    from kit.llm import load_backend
    from kit.llm.base import ChatRequest, GenParams
    from kit.selfplay.dialogue import play
    from kit.selfplay.dilemmas import from_moralchoice
    from kit.selfplay.rewards import JudgeContext
    from kit.selfplay.rollout import rollout_func
    from kit.selfplay.training import selfplay_records
    from kit.train.rewards import bind
    from kit.train.trainers import train

    b, sp = params.bench, params.selfplay
    dilemmas = from_moralchoice(params.data.moralchoice_path, b.selfplay_dialogues, params.seed)
    backend = load_backend(
        params.model.model_copy(update={"batch_size": max(params.model.batch_size, 16)}),
        None,
        seed=params.seed,
    )
    sampling = GenParams(
        temperature=1.0, max_new_tokens=sp.turn_tokens, seed=seeds.derive(params.seed, "bench")
    )
    games = [(d, 0, None) for d in dilemmas]
    embedder = Embedder(params.embedder.name, params.embedder.batch_size)  # reads the stated solutions

    def tokens_and_time(fn):
        before = backend.stats["generated_tokens"]
        _, seconds = timed(fn)
        return backend.stats["generated_tokens"] - before, seconds

    backend.generate([ChatRequest([{"role": "user", "content": "warm-up"}])], GenParams(max_new_tokens=2))
    engine_tokens, t_engine = tokens_and_time(
        lambda: play(
            backend, games, sp.max_turns, lambda turn: sampling, sp.turn_words, embedder, sp.agree_cosine
        )
    )
    seq_tokens, t_seq = tokens_and_time(
        lambda: [
            play(backend, [g], sp.max_turns, lambda turn: sampling, sp.turn_words, embedder, sp.agree_cosine)
            for g in games[: b.sequential_dialogues]
        ]
    )

    train_dilemmas = dilemmas[:2]  # two GRPO steps of one group each
    records, lookup = selfplay_records(train_dilemmas, params.seed, sp.turn_words)
    trl = {
        **sp.policy.trl,
        "num_train_epochs": 1.0,
        "warmup_steps": 0.0,
        "reward_weights": list(sp.rewards.values()),
    }
    recipe = sp.policy.model_copy(update={"trl": trl})
    context = JudgeContext(backend, {d.id: d for d in train_dilemmas})
    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            "grpo",
            records,
            None,
            params.model.name,
            Path(tmp) / "selfplay",
            recipe,
            params.seed,
            reward_funcs=bind(list(sp.rewards), context),
            rewards={"bench": True},
            rollout_func=rollout_func(
                lookup,
                sp.max_turns,
                sp.turn_tokens,
                sp.turn_words,
                params.seed,
                params.model.batch_size,
                embedder,
                sp.agree_cosine,
            ),
        )
    steps = result.step_seconds
    engine_tok_s, seq_tok_s = engine_tokens / t_engine, seq_tokens / t_seq
    return {
        "model": params.model.name,
        "dialogues": len(games),
        "turns": sp.max_turns,
        "turn_tokens": sp.turn_tokens,
        "engine_tok_s": round(engine_tok_s, 2),
        "sequential_tok_s": round(seq_tok_s, 2),
        "engine_vs_sequential": round(engine_tok_s / seq_tok_s, 2),
        "grpo_steps": len(steps),
        "grpo_seconds_per_step": round(sum(steps) / max(len(steps), 1), 3),
        "peak_rss_gb": round(peak_rss_gb(), 3),
    }
