"""The value rewriter and the two trained baselines it is compared with.

- **Rewriter prompt**: the original text and the translator's instruction for the target; the base
  model with this prompt and no training is the *prompting* baseline.
- **GRPO rewriter** (the method): a LoRA adapter trained with trl's ``GRPOTrainer`` on the
  registered rewards (``kit.visa.rewards``), weighted as ``visa.rewards`` says. Records carry
  ``source_text`` and ``target_vector`` for the rewards.
- **SFT rewriter**: for each train item, ``best_of`` seeded samples of the prompting rewriter are
  scored by the same weighted reward; the best one is the SFT target (rejection sampling, then SFT).
- **Direct finetuning**: the answering model itself is trained toward the target values — DPO on
  its own answers to the question plus the instruction, the answer that matches the target best
  chosen and the worst rejected. This is what the shielded pipeline avoids: it changes the base
  weights, and its capability is measured after.

All sampling is one batched ``generate`` per sample index through the engine; every random draw is
seeded from (seed, purpose, index).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.engine import ask, run
from kit.llm.base import Backend, ChatRequest, GenParams
from kit.run import seeds
from kit.visa.corpus import ANSWER_SYSTEM, Item
from kit.visa.rewards import RewardContext, score_all
from kit.visa.targets import sample_target
from kit.visa.translator import instruction

REWRITER_SYSTEM = (
    "You rewrite texts so that they express different values, keeping what they say and roughly "
    "their length. You reply with the rewritten text only."
)


def rewrite_messages(text: str, target: Sequence[float]) -> list[dict]:
    """The rewriter's chat: the instruction of the target, then the original text."""
    return [
        {"role": "system", "content": REWRITER_SYSTEM},
        {"role": "user", "content": f"{instruction(target)} Keep the meaning.\n\nText:\n{text.strip()}"},
    ]


def direct_messages(question: str, target: Sequence[float]) -> list[dict]:
    """What a directly finetuned answering model is asked: the question with the instruction."""
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {"role": "user", "content": f"{question}\n({instruction(target)})"},
    ]


def targets_of(items: Sequence[Item], seed: int, n_targeted: int) -> dict[str, np.ndarray]:
    return {it.id: sample_target(seed, it.id, n_targeted) for it in items}


def grpo_records(items: Sequence[Item], targets: dict[str, np.ndarray]) -> list[dict]:
    """GRPO records: the rewriter's prompt and the columns the rewards read."""
    return [
        {
            "id": it.id,
            "prompt": rewrite_messages(it.answer, targets[it.id]),
            "source_text": it.answer,
            "target_vector": [float(v) for v in targets[it.id]],
        }
        for it in items
    ]


def sample(
    backend: Backend,
    chats: Sequence[list[dict]],
    n: int,
    tokens: int,
    temperature: float,
    seed: int,
    purpose: str,
    adapter: str | None = None,
) -> list[list[str]]:
    """``n`` seeded samples per chat: one batched step per sample index."""

    def program():
        out = []
        for k in range(n):
            params = GenParams(
                temperature=temperature, max_new_tokens=tokens, seed=seeds.derive(seed, purpose, k)
            )
            out.append((yield from ask([(ChatRequest(c, adapter=adapter), params) for c in chats])))
        return out

    by_index = run(program(), backend)
    return [[by_index[k][i] for k in range(n)] for i in range(len(chats))]


def best_of_records(
    backend: Backend,
    items: Sequence[Item],
    targets: dict[str, np.ndarray],
    context: RewardContext,
    weights: dict[str, float],
    n: int,
    tokens: int,
    temperature: float,
    seed: int,
) -> tuple[list[dict], list[float]]:
    """SFT records (best of ``n`` prompting samples by the weighted reward) and the chosen samples' rewards."""
    chats = [rewrite_messages(it.answer, targets[it.id]) for it in items]
    samples = sample(backend, chats, n, tokens, temperature, seed, "visa-best-of")
    flat = [s for group in samples for s in group]
    total, _ = score_all(
        weights,
        context,
        flat,
        [it.answer for it in items for _ in range(n)],
        [targets[it.id] for it in items for _ in range(n)],
    )
    records, best = [], []
    for i, (it, chat) in enumerate(zip(items, chats)):
        k = int(np.argmax(total[i * n : (i + 1) * n]))
        records.append({"id": it.id, "messages": chat + [{"role": "assistant", "content": samples[i][k]}]})
        best.append(float(total[i * n + k]))
    return records, best


def direct_records(
    backend: Backend,
    items: Sequence[Item],
    targets: dict[str, np.ndarray],
    context: RewardContext,
    weights: dict[str, float],
    n: int,
    tokens: int,
    temperature: float,
    seed: int,
) -> tuple[list[dict], int]:
    """DPO records for direct finetuning: per train item, of ``n`` sampled answers the one whose values
    match the target best is chosen and the worst rejected (value match first, the weighted reward
    breaks ties); items whose samples tie on both are skipped and counted."""
    chats = [direct_messages(it.question, targets[it.id]) for it in items]
    samples = sample(backend, chats, n, tokens, temperature, seed, "visa-direct")
    flat = [s for group in samples for s in group]
    total, parts = score_all(
        weights,
        context,
        flat,
        [it.answer for it in items for _ in range(n)],
        [targets[it.id] for it in items for _ in range(n)],
    )
    match = (
        parts["value_match"]
        if "value_match" in parts
        else score_all(
            {"value_match": 1.0},
            context,
            flat,
            [it.answer for it in items for _ in range(n)],
            [targets[it.id] for it in items for _ in range(n)],
        )[0]
    )
    records, ties = [], 0
    for i, (it, chat) in enumerate(zip(items, chats)):
        group = slice(i * n, (i + 1) * n)
        order = np.lexsort((total[group], match[group]))  # ascending by match, then by total
        best, worst = int(order[-1]), int(order[0])
        if (match[group][best], total[group][best]) == (match[group][worst], total[group][worst]):
            ties += 1
            continue
        records.append(
            {
                "id": it.id,
                "prompt": chat,
                "chosen": [{"role": "assistant", "content": samples[i][best]}],
                "rejected": [{"role": "assistant", "content": samples[i][worst]}],
            }
        )
    return records, ties
