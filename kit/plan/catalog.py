"""What a model is made of, known before its weights are at hand: its config and parameter count.

The memory plan needs each model's architecture (parameters, layers, hidden size, key/value heads,
vocabulary) on a machine that may never have downloaded it. A model's config is taken from, in order:

1. a local model folder (a merged model, a converted GGUF, a tiny random model of ``kit.llm.models``);
2. the Hugging Face hub cache (``config.json`` only; nothing is downloaded);
3. ``ARCHITECTURES`` below: the published configs of the hub models the shipped profiles and docs name,
   the numbers that matter to memory copied from each model's ``config.json`` on the hub;
4. ``model.params_b`` in params: parameters only (weights are sized, activations and KV are not).

Parameter counts come from transformers itself: the model is built on the meta device (no memory,
no weights) and its parameters counted, so every architecture transformers knows is counted exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# hub id -> (transformers model_type, the config keys that size it, gated on the hub)
ARCHITECTURES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "Qwen/Qwen2.5-7B-Instruct": (
        "qwen2",
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "tie_word_embeddings": False,
            "max_position_embeddings": 32768,
        },
        False,
    ),
    "Qwen/Qwen2.5-14B-Instruct": (
        "qwen2",
        {
            "hidden_size": 5120,
            "intermediate_size": 13824,
            "num_hidden_layers": 48,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "vocab_size": 152064,
            "tie_word_embeddings": False,
            "max_position_embeddings": 32768,
        },
        False,
    ),
    "Qwen/Qwen2.5-0.5B-Instruct": (
        "qwen2",
        {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "tie_word_embeddings": True,
            "max_position_embeddings": 32768,
        },
        False,
    ),
    "meta-llama/Llama-3.1-8B-Instruct": (
        "llama",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "tie_word_embeddings": False,
            "max_position_embeddings": 131072,
        },
        True,
    ),
    "sentence-transformers/all-mpnet-base-v2": (
        "mpnet",
        {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "vocab_size": 30527,
            "max_position_embeddings": 514,
        },
        False,
    ),
    "sileod/deberta-v3-large-tasksource-nli": (
        "deberta-v2",
        {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "vocab_size": 128100,
            "position_buckets": 256,
            "relative_attention": True,
            "max_relative_positions": -1,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "type_vocab_size": 0,
            "num_labels": 3,
        },
        False,
    ),
}


@dataclass(frozen=True)
class Shape:
    """The numbers of a model that size its memory."""

    name: str
    source: str  # where they came from: "folder", "hub cache", "catalog", "params_b"
    model_type: str | None
    params: int  # every parameter (an MoE counts every expert)
    layers: int | None = None
    hidden: int | None = None
    intermediate: int | None = None
    kv_dim: int | None = None  # key/value heads x head size: the width of one layer's K (or V) per token
    vocab: int | None = None
    linear_io: int | None = (
        None  # sum over one decoder layer's linear layers of (in + out): LoRA's size per rank
    )

    @property
    def kv_bytes_per_token(self) -> int | None:
        """Bytes of KV cache one token takes in bfloat16 (K and V, every layer)."""
        return None if self.layers is None or self.kv_dim is None else 2 * self.layers * self.kv_dim * 2


def gated(name: str) -> bool:
    """Whether the hub asks for an accepted licence (and ``HF_TOKEN``) before it serves the weights."""
    return ARCHITECTURES.get(name, ("", {}, False))[2]


def _config(name: str, revision: str | None):
    """(config, source) or (None, None)."""
    from transformers import AutoConfig

    from kit.llm.models import TINY_MODELS, resolve_model

    if name in TINY_MODELS or name.startswith("smollm2"):
        return AutoConfig.from_pretrained(resolve_model(name).path), "folder"
    folder = Path(name).expanduser()
    if folder.exists():
        st = folder / "0_Transformer" if (folder / "0_Transformer" / "config.json").exists() else folder
        return AutoConfig.from_pretrained(st), "folder"
    try:
        return AutoConfig.from_pretrained(name, revision=revision, local_files_only=True), "hub cache"
    except (OSError, ValueError):
        pass
    if name in ARCHITECTURES:
        model_type, keys, _ = ARCHITECTURES[name]
        return AutoConfig.for_model(model_type, **keys), "catalog"
    return None, None


ENCODERS = ("bert", "mpnet", "deberta-v2", "deberta", "roberta", "xlm-roberta", "distilbert", "electra")


def _meta_model(config):
    """The model of ``config`` on the meta device: its own architecture where the config names one, an encoder
    (with its classification head when it has labels) for encoder families, a causal LM otherwise."""
    import torch
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    named = [getattr(transformers, a, None) for a in (config.architectures or [])]
    if named and named[0] is not None:
        build = named[0]._from_config
    elif config.model_type in ENCODERS:
        labelled = len(getattr(config, "id2label", {}) or {}) > 2
        build = (AutoModelForSequenceClassification if labelled else AutoModel).from_config
    else:
        build = AutoModelForCausalLM.from_config
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            return build(config)
    except ValueError as e:
        raise ValueError(f"transformers builds no model from a {config.model_type!r} config: {e}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


@lru_cache(maxsize=64)
def shape(name: str, revision: str | None = None, params_b: float | None = None) -> Shape:
    """The shape of model ``name``; raises ValueError naming the fix when nothing is known of it."""
    config, source = _config(name, revision)
    if config is None:
        if params_b is None:
            raise ValueError(
                f"{name}: no config in a folder, the hub cache or kit.plan.catalog; fix: download its "
                "config.json (huggingface-cli download NAME config.json) or set model.params_b"
            )
        return Shape(name, "params_b", None, int(params_b * 1e9))
    model = _meta_model(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", None)
    hidden = getattr(text, "hidden_size", None)
    head_dim = getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None)
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    import torch

    linears = [
        m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers.0." in f".{n}."
    ]
    return Shape(
        name=name,
        source=source,
        model_type=config.model_type,
        params=sum(p.numel() for p in model.parameters()),
        layers=getattr(text, "num_hidden_layers", None),
        hidden=hidden,
        intermediate=getattr(text, "intermediate_size", None),
        kv_dim=kv_heads * head_dim if kv_heads and head_dim else None,
        vocab=getattr(text, "vocab_size", None),
        linear_io=sum(m.in_features + m.out_features for m in linears) or None,
    )


def moe_shape(base: Shape, experts: int, shared_expert: bool) -> Shape:
    """The MoE mergekit builds from ``experts`` copies of ``base``'s MLP (plus one shared expert): attention,
    norms and embeddings once, every expert's MLP, and a router per layer."""
    if base.layers is None or base.hidden is None or base.intermediate is None:
        raise ValueError(f"{base.name}: the MoE's size needs the base's layers and widths (its config)")
    mlp = 3 * base.hidden * base.intermediate
    copies = experts + int(shared_expert)
    params = base.params + base.layers * (
        (copies - 1) * mlp + experts * base.hidden + int(shared_expert) * base.hidden
    )
    return Shape(
        f"{base.name} MoE x{experts}",
        base.source,
        f"{base.model_type}-moe",
        params,
        base.layers,
        base.hidden,
        base.intermediate,
        base.kv_dim,
        base.vocab,
        base.linear_io,
    )
