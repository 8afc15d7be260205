"""The transformers backend: CPU or GPU, batched, many LoRA adapters on one base model.

Batching rules, the reason this backend is fast:
- requests are grouped by adapter, sorted by prompt length and cut into batches, so padding
  stays small; results come back in request order;
- generation pads on the left (new tokens line up at the end);
- **no prefix is prefilled twice**: every row's keys and values (prompt and generated tokens) go
  to a store (``prefix_store.PrefixStore``, an LRU of ``prefix_cache_mb``), and a later prompt is
  prefilled only past its longest stored prefix (an NCN agent's three candidate prompts, one per
  temperature and call; a dialogue's next turn). Prefixes that rows of one batch share (a batch
  is ordered by prompt tokens, so they are adjacent) are run once first and stored too. In
  float32 the outputs are the same tokens as without sharing (tested); ``stats`` counts the
  prompt tokens and those not recomputed (``prefill_tokens_saved``). The cache grows in place
  (``kv_cache.GrowingLayer``);
- sampled calls draw in ``sampling.NucleusSampler`` (a partial sort, one uniform per row) rather
  than transformers' warpers, which sort every row's whole vocabulary each step;
- ``score`` and ``choice_probs`` are single forward passes, also left-padded with position ids
  taken from the attention mask, so in float32 a request scores the same alone or in any batch
  (bfloat16 rounding depends on the batch's shape); only the
  last few positions go through the LM head (``logits_to_keep``), which keeps a batch's
  logits small even with a 150k-token vocabulary.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import LogitsProcessorList

from kit.llm import kv_cache
from kit.llm.base import (
    Backend,
    ChatRequest,
    ChoiceRequest,
    ChoiceResult,
    GenParams,
    Sampled,
    ScoreRequest,
    refuse_stop_strings,
)
from kit.llm.chat import label_token_ids, render_chat
from kit.llm.kv_cache import new_cache, row_layers
from kit.llm.models import ResolvedModel, resolve_model
from kit.llm.prefix_store import Layers, PrefixStore, common_length
from kit.llm.sampling import ChosenLogprob, NucleusSampler

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MIN_SHARED_PREFIX = 32  # tokens; a shorter common prefix is not worth its own forward pass


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (the probe is private to torch: assume yes if it moved)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if probe is None else bool(probe())


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _busy_jiffies() -> tuple[int, int]:
    """(busy CPU jiffies of the whole machine, CPU jiffies of this process) from /proc."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    with open("/proc/self/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return user + nice + system + irq + softirq + steal, int(fields[11]) + int(fields[12])


def cores_busy_elsewhere(window: float = 0.25) -> float:
    """How many cores other processes keep busy, measured over ``window`` seconds (0 where /proc is missing)."""
    import time

    try:
        busy0, self0 = _busy_jiffies()
        time.sleep(window)
        busy1, self1 = _busy_jiffies()
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, ((busy1 - busy0) - (self1 - self0)) / (os.sysconf("SC_CLK_TCK") * window))


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op threads once for the process; returns the count.

    ``None`` picks the cores this process may use minus those other processes keep busy right now
    (at least 1): on two cores with one taken by another job, two spinning OpenMP threads fight over the
    free core and generation slows several times over; one thread loses little (docs/performance.md).
    """
    n = threads or max(1, available_cores() - round(cores_busy_elsewhere()))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def cache_kwarg(model) -> str:
    """The keyword ``forward`` and ``generate`` take a KV cache by: transformers 5.24 renamed
    ``past_key_values`` to ``cache`` (the old name warns), the GPU stack's 5.17 knows only the old one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AMX or
    AVX-512 BF16 (without them a bfloat16 matmul is emulated, over an order of magnitude slower than float32)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and _cpu_has_bf16()


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """The dtype a params ``model.dtype`` means on ``device`` ("auto": bfloat16 where it is native, else float32)."""
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return _DTYPES[dtype]


def numerics(dtype: str = "auto", device: str = "auto") -> str:
    """How the weights run, e.g. ``"bfloat16@cpu"`` — known from params, before any model loads."""
    device = pick_device(device)
    return f"{str(resolve_dtype(dtype, device)).removeprefix('torch.')}@{device}"


class HFBackend(Backend):
    name = "transformers"
    sampling_logprobs = True

    def __init__(
        self,
        model: str | ResolvedModel,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 8,
        trust_remote_code: bool = False,
        prefix_sharing: bool = True,
        prefix_cache_mb: int = 1024,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        resolved = model if isinstance(model, ResolvedModel) else resolve_model(model, revision)
        self.resolved = resolved
        self.identity = resolved.identity
        self.device = pick_device(device)
        self.batch_size = batch_size
        torch_dtype = resolve_dtype(dtype, self.device)
        self.numerics = numerics(dtype, device)
        if self.device == "cpu" and torch_dtype == torch.bfloat16 and not _cpu_has_bf16():
            log.warning(
                "this CPU has no native bfloat16 (AMX or AVX-512 BF16): it is emulated and slow; "
                "set model.dtype: float32"
            )
        kw = dict(revision=resolved.revision, trust_remote_code=trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(resolved.path, **kw)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=torch_dtype, use_safetensors=True, **kw
        )
        self.model.to(self.device).eval()
        self._adapters: dict[str, tuple[str, str]] = {}  # adapter path -> (content fingerprint, peft name)
        self._loads = 0
        self._share(prefix_sharing, prefix_cache_mb)

    @classmethod
    def around(
        cls, model, tokenizer, batch_size: int = 8, identity: str = "in-memory", prefix_cache_mb: int = 1024
    ) -> HFBackend:
        """A backend over a model already in memory, e.g. a policy while it trains (it is not copied,
        loaded or put in eval mode here; requests must not name adapters)."""
        self = cls.__new__(cls)
        param = next(model.parameters())
        self.resolved, self.identity, self.model, self.tokenizer = None, identity, model, tokenizer
        self.device, self.batch_size = str(param.device), batch_size
        self.numerics = f"{str(param.dtype).removeprefix('torch.')}@{param.device.type}"
        self._adapters, self._loads = {}, 0
        # the weights must not change while this backend serves: stored keys/values would go stale
        self._share(True, prefix_cache_mb)
        return self

    def _share(self, prefix_sharing: bool, prefix_cache_mb: int) -> None:
        """Set up prefix sharing and the store, where the model's cache allows it (``kv_cache.supports``)."""
        self.in_place = kv_cache.supports(self.model.config)
        self.cache_kw = cache_kwarg(self.model)
        self.prefix_sharing = prefix_sharing and self.in_place
        self.store = (
            PrefixStore(prefix_cache_mb * 2**20, MIN_SHARED_PREFIX)
            if self.prefix_sharing and prefix_cache_mb
            else None
        )
        self.stats = _fresh_stats()

    @classmethod
    def from_params(cls, model, seed: int = 0) -> HFBackend:
        """The backend a ``ModelParams`` section describes (sampling seeds come per call); sets torch's threads."""
        use_threads(model.threads)
        device = (
            f"cuda:{model.devices[0]}" if model.devices and model.device in ("auto", "cuda") else model.device
        )
        return cls(
            model.name,
            revision=model.revision,
            dtype=model.dtype,
            device=device,
            batch_size=model.batch_size,
            trust_remote_code=model.trust_remote_code,
            prefix_sharing=model.prefix_sharing,
            prefix_cache_mb=model.prefix_cache_mb,
        )

    @staticmethod
    def numerics_for(model) -> str:
        return numerics(model.dtype, model.device)

    # --- adapters -------------------------------------------------------------------------
    def _adapter_name(self, path: str) -> str:
        """The peft name of the adapter at ``path``, loaded on first use and again when its content
        changed (an adapter retrained in place is never served from the old weights)."""
        content = self.adapter_identity(path)
        loaded = self._adapters.get(path)
        if loaded is None or loaded[0] != content:
            from peft import PeftModel

            name = f"a{self._loads}"
            self._loads += 1
            if not self._adapters:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
            else:
                self.model.load_adapter(path, adapter_name=name)
            if loaded is not None:
                self.model.delete_adapter(loaded[1])
                self.reset_prefix_cache()  # keys/values the old weights computed
            self._adapters[path] = (content, name)
        return self._adapters[path][1]

    @contextmanager
    def _using(self, adapter: str | None) -> Iterator[None]:
        """Route forward passes through one adapter, or through the bare base model."""
        if adapter is None:
            if self._adapters:
                with self.model.disable_adapter():
                    yield
            else:
                yield
            return
        name = self._adapter_name(adapter)  # may wrap self.model in a PeftModel: resolve first
        self.model.set_adapter(name)
        yield

    def _batches(
        self, requests: Sequence[ChatRequest], order: Sequence
    ) -> Iterator[tuple[str | None, list[int]]]:
        """Indices grouped by adapter, then sorted by ``order`` (lengths, or token lists) and cut into batches."""
        by_adapter: dict[str | None, list[int]] = {}
        for i, r in enumerate(requests):
            by_adapter.setdefault(r.adapter, []).append(i)
        for adapter, idx in by_adapter.items():
            idx.sort(key=lambda i: order[i])
            for s in range(0, len(idx), self.batch_size):
                yield adapter, idx[s : s + self.batch_size]

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _pad(self, seqs: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask) padded to the longest sequence; an empty sequence is a fully masked row."""
        width = max(map(len, seqs))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            sl = slice(width - len(s), width) if left else slice(0, len(s))
            ids[row, sl] = torch.tensor(s, dtype=torch.long)
            mask[row, sl] = 1
        return ids.to(self.device), mask.to(self.device)

    def reset_prefix_cache(self) -> None:
        if self.store is not None:
            self.store.clear()

    # --- verbs ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        return [text for text, _, _ in self._generate_rows(requests, params, keep_logprobs=False)]

    @torch.inference_mode()
    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        refuse_stop_strings(params, self.name)
        ends = set(_as_list(self.model.generation_config.eos_token_id))
        return [
            Sampled(text, ids, logprobs, bool(ids) and ids[-1] in ends)
            for text, ids, logprobs in self._generate_rows(requests, params, True)
        ]

    def _generate_rows(
        self, requests: Sequence[ChatRequest], params: GenParams, keep_logprobs: bool
    ) -> list[tuple[str, list[int], list[float]]]:
        """(text, drawn ids through the first end-of-sequence token, their sampling log-probabilities) per request;
        the ids and log-probabilities stay empty unless ``keep_logprobs``."""
        prompts = [self._encode(render_chat(self.tokenizer, r.chat)) for r in requests]
        out: list[tuple[str, list[int], list[float]]] = [("", [], [])] * len(requests)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        ends = set(_as_list(self.model.generation_config.eos_token_id))  # what stops generate
        # token order puts prompts with a common prefix next to each other, so they share a batch
        order = prompts if self.prefix_sharing else [len(p) for p in prompts]
        for adapter, idx in self._batches(requests, order):
            seqs = [prompts[i] for i in idx]
            with self._using(adapter):
                ids, new, logprobs = self._generate_batch(seqs, adapter, params, keep_logprobs)
            self.stats["prompt_tokens"] += sum(map(len, seqs))
            self.stats["generate_calls"] += 1
            self.stats["generated_tokens"] += int((new != self.tokenizer.pad_token_id).sum())
            for row, i in enumerate(idx):
                text = _cut_at_stop(self.tokenizer.decode(new[row], skip_special_tokens=True), params.stop)
                drawn: list[int] = []
                if keep_logprobs:  # a finished row is padded after its end-of-sequence token
                    produced = new[row].tolist()
                    drawn = produced[
                        : next((j + 1 for j, t in enumerate(produced) if t in ends), len(produced))
                    ]
                out[i] = (text, drawn, logprobs[row, : len(drawn)].tolist() if keep_logprobs else [])
        self.stats["requests"] += len(requests)
        return out

    def _generate_batch(
        self, seqs: list[list[int]], adapter: str | None, params: GenParams, keep_logprobs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(the batch's input ids, its new tokens, each new token's sampling log-probability or None). Prefixes
        shared in the batch are prefilled once and those run in earlier calls not at all; every row's keys and
        values are stored for later calls."""
        kwargs = self.generate_kwargs(params, keep_logprobs)
        # without a store across calls, one for this call alone still serves the batch's shared prefixes
        store = (
            (self.store if self.store is not None else PrefixStore(2**62, MIN_SHARED_PREFIX))
            if self.prefix_sharing
            else None
        )
        computed = self._prefill_shared(seqs, adapter, store) if store else 0
        hits = [store.longest(adapter, s, len(s) - 1) for s in seqs] if store else [(None, 0)] * len(seqs)
        held = max(n for _, n in hits)
        stored_ids, stored_mask = self._pad([s[:n] for s, (_, n) in zip(seqs, hits)], left=True)
        rest_ids, rest_mask = self._pad([s[n:] for s, (_, n) in zip(seqs, hits)], left=True)
        ids, mask = torch.cat([stored_ids, rest_ids], dim=1), torch.cat([stored_mask, rest_mask], dim=1)
        cache = new_cache(self._stacked(hits, held) if held else None) if self.in_place else None
        gen = self.model.generate(input_ids=ids, attention_mask=mask, **{self.cache_kw: cache}, **kwargs)
        computed += sum(len(s) - n for s, (_, n) in zip(seqs, hits))
        self.stats["prefill_tokens_saved"] += sum(map(len, seqs)) - computed
        new = gen[:, ids.shape[1] :]
        if self.store is not None:
            self._keep(adapter, ids, mask, new, cache)
        logprobs = None
        if keep_logprobs:  # the last processor kept one (rows,) tensor per generation step
            kept = kwargs["logits_processor"][-1].logprobs
            logprobs = torch.stack(kept, dim=1) if kept else torch.zeros((new.shape[0], 0))
            if logprobs.shape[1] != new.shape[1]:
                raise RuntimeError(
                    f"kept {logprobs.shape[1]} sampling log-probabilities for {new.shape[1]} new tokens"
                )
        return ids, new, logprobs

    def _prefill_shared(self, seqs: list[list[int]], adapter: str | None, store: PrefixStore) -> int:
        """Run the prefixes that rows of this batch share (``prefix_groups``) and ``store`` doesn't hold
        yet in one forward pass, starting from what it does hold, and store them; returns tokens run.

        Layout: each group's held part left-padded to the longest one, then the rest, left-padded;
        positions follow the mask, so every real token sits where it would without padding.
        """
        prefixes = [
            seqs[rows[0]][:length] for rows, length in prefix_groups(seqs, MIN_SHARED_PREFIX) if len(rows) > 1
        ]
        hits = [store.longest(adapter, p, len(p)) for p in prefixes]
        todo = [(p, hit) for p, hit in zip(prefixes, hits) if len(p) - hit[1] >= MIN_SHARED_PREFIX]
        if not todo:
            return 0
        prefixes, hits = [p for p, _ in todo], [hit for _, hit in todo]
        held_ids, held_mask = self._pad([p[:n] for p, (_, n) in todo], left=True)
        rest_ids, rest_mask = self._pad([p[n:] for p, (_, n) in todo], left=True)
        held = held_ids.shape[1]
        cache = new_cache(self._stacked(hits, held) if held else None)
        mask = torch.cat([held_mask, rest_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, held:]
        self.model(
            input_ids=rest_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_kw: cache},
        )
        self.stats["forward_calls"] += 1
        for g, prefix in enumerate(prefixes):
            store.put(adapter, prefix, row_layers(cache, g, mask[g].nonzero()[:, 0]))
        return sum(len(p) - n for p, (_, n) in todo)

    @staticmethod
    def _stacked(hits: list[tuple[Layers | None, int]], width: int) -> Layers:
        """Stored per-row keys/values, left-padded with zeros (masked out) into batch tensors of ``width``."""
        some = next(layers for layers, _ in hits if layers)
        out = []
        for layer, (k0, v0) in enumerate(some):
            keys = k0.new_zeros((len(hits), k0.shape[0], width, k0.shape[2]))
            values = v0.new_zeros((len(hits), v0.shape[0], width, v0.shape[2]))
            for g, (layers, n) in enumerate(hits):
                if n:
                    keys[g, :, width - n :], values[g, :, width - n :] = layers[layer]
            out.append((keys, values))
        return out

    def _keep(
        self, adapter: str | None, ids: torch.Tensor, mask: torch.Tensor, new: torch.Tensor, cache
    ) -> None:
        """Store each row's keys and values: its prompt's real tokens, then those it generated before stopping."""
        width, cached = ids.shape[1], cache.get_seq_length()
        ends = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.pad_token_id}
        for row in range(ids.shape[0]):
            produced = new[row].tolist()
            k = next((j for j, t in enumerate(produced) if t in ends), len(produced))
            at = torch.cat(
                [
                    mask[row].nonzero()[:, 0],
                    torch.arange(width, width + min(k, cached - width), device=ids.device),
                ]
            )
            self.store.put(adapter, torch.cat([ids[row], new[row]])[at].tolist(), row_layers(cache, row, at))

    def generate_kwargs(self, params: GenParams, keep_logprobs: bool = False) -> dict:
        """transformers ``generate`` arguments for backend-neutral sampling params; with ``keep_logprobs`` the last
        logits processor keeps each drawn token's sampling log-probability (``kit.llm.sampling``)."""
        # greedy decoding either way: a sampled call draws in NucleusSampler, which leaves one token
        # per row; None overrides the sampling defaults a model's generation_config may carry
        kw = dict(
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.min_new_tokens or None,
            pad_token_id=self.tokenizer.pad_token_id,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        if not params.greedy:
            kw.update(
                logits_processor=LogitsProcessorList(
                    [NucleusSampler(params.temperature, params.top_p, keep_logprobs)]
                )
            )
        elif keep_logprobs:
            kw.update(logits_processor=LogitsProcessorList([ChosenLogprob()]))
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kw

    @torch.inference_mode()
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        contexts = [self._encode(render_chat(self.tokenizer, r.chat)) for r in requests]
        conts = [self._encode(r.continuation) for r in requests]
        for r, c in zip(requests, conts):
            if not c:
                raise ValueError(f"empty continuation to score after {r.chat[-1:]}")
        seqs = [a + b for a, b in zip(contexts, conts)]
        out: list[list[float]] = [[] for _ in requests]

        def read(idx: list[int], logprobs: torch.Tensor) -> None:
            keep = logprobs.shape[1]
            for row, i in enumerate(idx):
                n = len(conts[i])
                targets = torch.tensor(conts[i], device=logprobs.device)
                # Position t predicts token t+1, so the n continuation tokens at the end of the row
                # are read from the n positions before the last one.
                out[i] = logprobs[row, keep - n - 1 : keep - 1].gather(-1, targets[:, None])[:, 0].tolist()

        self._forward(requests, seqs, read, keep=lambda idx: 1 + max(len(conts[i]) for i in idx))
        return out

    @torch.inference_mode()
    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        seqs = [self._encode(render_chat(self.tokenizer, r.chat, r.prefix)) for r in requests]
        label_ids = [label_token_ids(self.tokenizer, r.labels) for r in requests]
        out: list[ChoiceResult] = [None] * len(requests)  # type: ignore[list-item]

        def read(idx: list[int], logprobs: torch.Tensor) -> None:
            for row, i in enumerate(idx):
                probs = logprobs[row, -1].exp()
                out[i] = choice_result({lab: float(probs[ids].sum()) for lab, ids in label_ids[i].items()})

        self._forward(requests, seqs, read, keep=lambda idx: 1)
        return out

    def _forward(
        self,
        requests: Sequence[ChatRequest],
        seqs: list[list[int]],
        read: Callable[[list[int], torch.Tensor], None],
        keep: Callable[[list[int]], int],
    ) -> None:
        """Left-padded forward passes; ``read`` gets log-probs of the last ``keep(idx)`` positions."""
        for adapter, idx in self._batches(requests, [len(s) for s in seqs]):
            ids, mask = self._pad([seqs[i] for i in idx], left=True)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with self._using(adapter):
                logits = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep(idx)
                ).logits
            self.stats["forward_calls"] += 1
            read(idx, torch.log_softmax(logits.float(), dim=-1))
        self.stats["requests"] += len(requests)


def _fresh_stats() -> dict[str, int]:
    return {
        "generate_calls": 0,
        "forward_calls": 0,
        "generated_tokens": 0,
        "requests": 0,
        "prompt_tokens": 0,
        "prefill_tokens_saved": 0,
    }


def _as_list(ids) -> list[int]:
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)


def prefix_groups(seqs: Sequence[Sequence[int]], min_shared: int) -> list[tuple[list[int], int]]:
    """Runs of consecutive rows sharing at least ``min_shared`` leading tokens: (rows, prefix length).

    ``seqs`` come in token order, so rows with a common prefix are adjacent. A prefix always leaves
    each row at least one token of its own (the first generation step needs an input); a row
    sharing with no other forms its own group whose prefix is all but its last token.
    """
    groups: list[tuple[list[int], int]] = []
    for r, s in enumerate(seqs):
        if groups:
            rows, length = groups[-1]
            shared = min(common_length(seqs[rows[0]], s), length, len(s) - 1)
            if shared >= min_shared:
                groups[-1] = (rows + [r], shared)
                continue
        groups.append(([r], len(s) - 1))
    return groups


def choice_result(mass: dict[str, float]) -> ChoiceResult:
    """Renormalise label probabilities; uniform when no mass fell on any label."""
    total = sum(mass.values())
    if total <= 0:
        return ChoiceResult({k: 1 / len(mass) for k in mass}, 0.0)
    return ChoiceResult({k: v / total for k, v in mass.items()}, total)


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """transformers keeps the stop string in the output; the protocol returns text before it."""
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text if cut < 0 else text[:cut]
