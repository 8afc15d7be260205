"""Memory each resident part needs, from a model's shape and the params that run it (GiB).

Every estimate is a sum of named terms, so the plan can print why a stage needs what it needs:

- an **engine** (vLLM): weights / tensor-parallel size, the LoRA slots vLLM preallocates
  (``max_loras x max_lora_rank x`` the adapted layers' in+out widths), the KV cache (``kv_cache_gb``,
  or the share ``gpu_memory_utilization`` claims of the card), the logits of one prompt chunk that
  ``score`` asks log-probabilities for (``max_num_batched_tokens x vocab``, float32, twice: logits and
  log-softmax), and a fixed overhead for CUDA graphs and the allocator. The transformers backend on a
  GPU: weights plus the logits of one batch's last positions and a KV cache for its prompts;
- a **trainer** (trl + peft LoRA): base weights in the recipe's precision, the LoRA weights with their
  gradients and AdamW moments in float32, the activations of one micro-batch (every layer's input
  when gradient checkpointing is on, one layer recomputed; every layer's activations when it is off,
  about 34 bytes per token per hidden unit in 16-bit, as Korthikanti et al. count them with fused
  attention), and the logits (16-bit, their float32 copy for the loss, and its gradient);
- **embedders and cross-encoders** (sentence-transformers): float32 weights plus a batch of activations;
- a **merge** (mergekit on the GPU, tensor by tensor): the largest tensor of every input model, in
  float32; the MoE's router needs the base model's hidden states, so its build holds the base model;
- **router shares** of the built MoE: the MoE's weights in its own dtype, placed by ``device_map``.

These are estimates, checked against measured peaks on CPU (``tests/test_plan.py``); the headroom the
plan keeps on every GPU (``HEADROOM``) covers the allocator's fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.plan.catalog import Shape

GiB = 2**30
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ENGINE_OVERHEAD_GIB = 1.5  # CUDA graphs, sampler buffers and the allocator's reserve of one vLLM engine
PROCESS_CONTEXT_GIB = 0.6  # the CUDA context of one process on one GPU (counted once per GPU)
ACTIVATION_BYTES = 34  # per token per hidden unit per layer, 16-bit, fused attention (Korthikanti et al.)
VLLM_BATCHED_TOKENS = 8192  # vLLM's chunk of prompt tokens when params leave max_num_batched_tokens unset
HEADROOM = 0.06  # the share of every GPU kept free for fragmentation
# float32 tensors the size of the logits each method's loss holds at its peak: SFT's cross-entropy (a float32
# copy, the log-softmax, their gradients) and trl's entropy and accuracy; ORPO's and SimPO's full log-softmax and
# its gradient; DPO and GRPO gather the chosen tokens' log-probabilities row by row (trl's selective_log_softmax).
# SFT's count is measured on the CPU (tests/test_plan.py: peak RSS of SmolLM2 SFT steps).
LOSS_COPIES = {"sft": 5, "orpo": 3, "simpo": 3, "dpo": 1, "grpo": 1}


@dataclass
class Need:
    """A part's memory, term by term (GiB), on one GPU; ``host`` is host RAM it holds while resident."""

    what: str
    terms: dict[str, float] = field(default_factory=dict)
    host: float = 0.0

    @property
    def gib(self) -> float:
        return sum(self.terms.values())

    def why(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.terms.items() if v >= 0.05)


def _bytes(dtype: str, on_gpu: bool = True) -> int:
    if dtype == "auto":
        return 2 if on_gpu else 4
    return BYTES[dtype]


def weights_gib(shape: Shape, dtype: str, shards: int = 1) -> float:
    return shape.params * _bytes(dtype) / shards / GiB


def engine(shape: Shape, model, gpu_gib: float) -> Need:
    """One vLLM engine (``model`` a ``ModelParams``) on ``model.tensor_parallel_size`` GPUs, per GPU."""
    tp = model.tensor_parallel_size
    b = _bytes(model.dtype)
    weights = shape.params * (1 if model.quantization == "fp8" else b) / tp / GiB
    lora = model.max_loras * model.max_lora_rank * (shape.linear_io or 0) * (shape.layers or 0) * b / tp / GiB
    chunk = model.max_num_batched_tokens or VLLM_BATCHED_TOKENS
    if model.max_model_len:
        chunk = min(chunk, model.max_model_len)
    logits = chunk * (shape.vocab or 0) * 4 * 2 / GiB
    if model.kv_cache_gb is not None:
        kv = model.kv_cache_gb / tp
    else:  # vLLM claims its share of the card and gives the KV cache what weights and activations leave
        kv = max(0.0, model.gpu_memory_utilization * gpu_gib - weights - lora - logits - ENGINE_OVERHEAD_GIB)
    # a sleeping engine (vLLM sleep mode, level 1) keeps its weights in pinned host memory
    return Need(
        f"engine {shape.name}",
        {
            "weights": weights,
            "LoRA slots": lora,
            "KV cache": kv,
            "prompt logits": logits,
            "overhead": ENGINE_OVERHEAD_GIB,
        },
        host=weights * tp,
    )


def hf_inference(shape: Shape, model, on_gpu: bool) -> Need:
    """The transformers backend: weights, the last positions' logits and a KV cache for one batch."""
    b = _bytes(model.dtype, on_gpu)
    weights = shape.params * b / GiB
    tokens = model.batch_size * (model.max_model_len or 2048)
    kv = tokens * (shape.kv_bytes_per_token or 0) / 2 * b / GiB
    logits = model.batch_size * 8 * (shape.vocab or 0) * 4 / GiB
    return Need(f"transformers {shape.name}", {"weights": weights, "KV cache": kv, "logits": logits})


def encoder(shape: Shape, batch_size: int, tokens: int = 256) -> Need:
    """A sentence-transformers embedder or cross-encoder, float32: weights and one layer's activations of a batch
    (inference keeps no layer's activations for a backward pass): the MLP's widest tensor and the attention scores."""
    weights = shape.params * 4 / GiB
    heads = max(1, (shape.hidden or 0) // 64)
    acts = batch_size * tokens * ((shape.intermediate or 0) + heads * tokens) * 4 * 2 / GiB
    return Need(f"encoder {shape.name}", {"weights": weights, "activations": acts})


@dataclass(frozen=True)
class Recipe:
    """The settings of one trl recipe that size its memory (``kit.plan.stages`` reads them from params)."""

    method: str
    bf16: bool
    checkpointing: bool
    batch: int  # per_device_train_batch_size
    tokens: int  # the longest sequence of one example: max_length, or prompt + completion
    lora_r: int
    lora_linear_io: int | None = None  # in+out widths of the targeted layers of one decoder layer (None: all)
    sequences_per_example: int = 1  # preference methods run chosen and rejected together


def trainer(shape: Shape, recipe: Recipe, on_gpu: bool = True) -> Need:
    """A LoRA trainer of ``recipe`` on ``shape``'s model."""
    b = 2 if recipe.bf16 else 4
    weights = shape.params * b / GiB
    io = recipe.lora_linear_io if recipe.lora_linear_io is not None else (shape.linear_io or 0)
    lora_params = recipe.lora_r * io * (shape.layers or 0)
    lora = lora_params * 16 / GiB  # float32 weight, gradient and two AdamW moments
    rows = recipe.batch * recipe.sequences_per_example
    tokens = rows * recipe.tokens
    layers, hidden, act_b = shape.layers or 0, shape.hidden or 0, 2 if recipe.bf16 else 4
    kept = (
        1 if recipe.checkpointing else layers
    )  # layers whose activations are held for the backward pass at once
    if recipe.checkpointing:  # each layer's input kept, one layer's activations recomputed at a time
        acts = (layers * tokens * hidden * act_b + ACTIVATION_BYTES * tokens * hidden * act_b / 2) / GiB
    else:
        acts = layers * ACTIVATION_BYTES * tokens * hidden * act_b / 2 / GiB
    # LoRA's dropout keeps a copy of every adapted layer's input for the backward pass
    dropout = kept * tokens * io / 2 * act_b / GiB
    # the logits (and their gradient) in the compute dtype, and the float32 tensors of their size the method's loss
    # makes (``LOSS_COPIES``: the cross-entropy's copy, log-softmax and gradients; trl's token metrics for SFT)
    copies = max(LOSS_COPIES.get(m, 6) for m in recipe.method.split("/"))
    logits = tokens * (shape.vocab or 0) * (2 * act_b + 4 * copies) / GiB
    terms = {"weights": weights, "LoRA + AdamW": lora, "activations": acts + dropout, "logits": logits}
    if not on_gpu:  # loading holds the checkpoint's tensors beside the model's for a moment
        terms["load copy"] = weights
    return Need(f"trainer {recipe.method} on {shape.name}", terms, host=0.0 if on_gpu else weights)


def merge(shapes: list[Shape], base: Shape, hidden_states: bool = False) -> Need:
    """mergekit on the GPU: the largest tensor of every input in float32 (the embeddings); with
    ``hidden_states`` (an MoE's ``gate_mode: hidden``) the base model too, for the router's prompts."""
    largest = max((s.vocab or 0) * (s.hidden or 0) for s in shapes) if shapes else 0
    terms = {"tensors": (len(shapes) + 1) * largest * 4 / GiB}
    if hidden_states:
        terms["base model"] = weights_gib(base, "bfloat16")
    return Need("mergekit", terms, host=weights_gib(base, "float32"))


def router(shape: Shape, dtype: str) -> Need:
    """The built MoE loaded to read its router (weights in its dtype, a prompt's activations)."""
    return Need(f"router read of {shape.name}", {"weights": weights_gib(shape, dtype), "activations": 0.5})


def fits(needs: list[Need], gpu_gib: float) -> bool:
    return sum(n.gib for n in needs) + PROCESS_CONTEXT_GIB <= gpu_gib * (1 - HEADROOM)
