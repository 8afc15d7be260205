"""The backend protocol: three batched verbs every model server implements.

Requests are plain frozen dataclasses so they hash, compare and serialise the same way in
every backend and in the cache. Messages follow the Hugging Face chat format
(``{"role": ..., "content": ...}``); the backend applies the model's own chat template.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

Message = dict[str, str]


def _freeze(messages: Sequence[Message]) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(tuple(sorted(m.items())) for m in messages)


@dataclass(frozen=True)
class ChatRequest:
    """A conversation to continue, optionally through a LoRA adapter (a PEFT folder path).

    ``sample`` tells apart the k-th of several samples of the same conversation: equal requests
    are one request to the scheduler and the cache, so n sampled rollouts of one prompt (a GRPO
    group) are n requests with ``sample`` 0 … n−1, batched in one call.
    """

    messages: tuple
    adapter: str | None = None
    sample: int = 0

    def __init__(self, messages: Sequence[Message], adapter: str | None = None, sample: int = 0):
        object.__setattr__(self, "messages", _freeze(messages))
        object.__setattr__(self, "adapter", None if adapter is None else str(adapter))
        object.__setattr__(self, "sample", int(sample))

    @property
    def chat(self) -> list[Message]:
        return [dict(m) for m in self.messages]

    def key(self) -> dict:
        # sample 0 adds nothing, so cache entries written before the field existed stay valid
        return {
            "messages": self.chat,
            "adapter": self.adapter,
            **({"sample": self.sample} if self.sample else {}),
        }


@dataclass(frozen=True)
class ScoreRequest(ChatRequest):
    """Teacher-forced scoring of ``continuation`` as the assistant's reply to ``messages``."""

    continuation: str = ""

    def __init__(self, messages: Sequence[Message], continuation: str, adapter: str | None = None):
        super().__init__(messages, adapter)
        object.__setattr__(self, "continuation", continuation)

    def key(self) -> dict:
        return {**super().key(), "continuation": self.continuation}


@dataclass(frozen=True)
class ChoiceRequest(ChatRequest):
    """Next-token distribution over option labels after the assistant turn opens.

    ``prefix`` is text the assistant turn starts with (e.g. ``"Answer:"``), so base and chat
    models can be asked the same way; labels are matched with and without a leading space.
    """

    labels: tuple[str, ...] = ()
    prefix: str = ""

    def __init__(
        self, messages: Sequence[Message], labels: Sequence[str], adapter: str | None = None, prefix: str = ""
    ):
        super().__init__(messages, adapter)
        if len(set(labels)) != len(labels) or not labels:
            raise ValueError(f"labels must be distinct and non-empty, got {list(labels)}")
        object.__setattr__(self, "labels", tuple(labels))
        object.__setattr__(self, "prefix", prefix)

    def key(self) -> dict:
        return {**super().key(), "labels": list(self.labels), "prefix": self.prefix}


@dataclass(frozen=True)
class GenParams:
    """Backend-neutral sampling parameters. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    min_new_tokens: int = 0

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(f"invalid sampling parameters: {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def deterministic(self) -> bool:
        """Whether a rerun reproduces the output, i.e. whether the output may be cached."""
        return self.greedy or self.seed is not None

    def key(self) -> dict:
        return asdict(self) | {"stop": list(self.stop)}


@dataclass(frozen=True)
class Sampled:
    """A sampled completion with the tokens the engine drew and the log-probability of each.

    ``token_ids`` are the drawn ids in order; ``stopped`` says the engine stopped on the last of them, an
    end-of-sequence token (else it ran out of ``max_new_tokens``); ``text`` is what ``generate`` returns for
    the same call (special tokens skipped). ``logprobs[i]`` is the natural log of the
    probability ``token_ids[i]`` had in the distribution it was drawn from: softmax(logits /
    temperature) within the top-p nucleus, renormalised — vLLM's ``processed_logprobs``, what trl's
    importance-sampling correction compares with the trainer's own. Greedy decoding: the untempered
    log-softmax of the chosen token, as vLLM gives it.
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    stopped: bool

    def __post_init__(self):
        object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        object.__setattr__(self, "logprobs", tuple(float(v) for v in self.logprobs))
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(
                f"{len(self.token_ids)} sampled tokens but {len(self.logprobs)} log-probabilities"
            )
        if self.stopped and not self.token_ids:
            raise ValueError("a sampled completion that stopped on a token holds that token")

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "logprobs": list(self.logprobs),
            "stopped": self.stopped,
        }


def refuse_stop_strings(params: GenParams, backend: str) -> None:
    """Sampled generation returns the drawn ids: a stop string would cut the text but not the ids."""
    if params.stop:
        raise ValueError(
            f"{backend}: generate_sampled takes no stop strings (got {list(params.stop)}): they cut the "
            "text but not the drawn token ids; use generate, or stop on the end-of-turn token"
        )


@dataclass(frozen=True)
class ChoiceResult:
    """Renormalised option probabilities and the raw probability mass that fell on the labels."""

    probs: dict[str, float]
    label_mass: float


class Backend(abc.ABC):
    """A model server. ``identity`` names the weights exactly; ``numerics`` says how they are run
    (dtype, device), since the same weights in bfloat16 and float32 give different outputs. The
    cache keys on both, and on the backend's ``name``."""

    name: str
    identity: str
    numerics: str = ""
    # whether generate_sampled gives the drawn tokens and their sampling log-probabilities
    sampling_logprobs: bool = False
    # a backend that answers a batch request by request (a server) calls this with (index in the batch, result)
    # as each answer arrives, in the caller's thread, so the cache keeps what came back before a failure; a
    # backend that computes a batch at once leaves it alone
    on_answer = None

    @abc.abstractmethod
    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        """Chat completions, one text per request, in request order."""

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        """``generate`` with the drawn token ids and each one's sampling log-probability (:class:`Sampled`), in
        request order; the texts are ``generate``'s. Stop strings are refused: they cut the text, not the ids.
        Backends that cannot tell them say so with ``sampling_logprobs = False`` and raise here."""
        raise NotImplementedError(
            f"the {self.name} backend gives no sampling log-probabilities (sampling_logprobs "
            "is False); ask for texts with generate"
        )

    @abc.abstractmethod
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Log-probability of each continuation token (natural log), in request order."""

    @abc.abstractmethod
    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        """Option-label probabilities from one forward pass per request."""

    def reset_prefix_cache(self) -> None:  # noqa: B027 (optional: most backends keep no prefix cache)
        """Forget the keys/values kept for prompt prefixes, so the next calls prefill from scratch
        (benchmarks compare runs from the same cold start); a backend that keeps none does nothing."""

    def adapter_identity(self, adapter: str | None) -> str | None:
        """A content hash of an adapter folder, so a retrained adapter never hits stale cache."""
        from kit.llm.models import adapter_fingerprint

        return None if adapter is None else adapter_fingerprint(adapter)


def backend_parts(backend: Backend) -> dict[str, str]:
    """What a loaded backend runs, for artifact fingerprints: the same dict ``kit.run.artifacts.model_parts``
    computes from params before any weights load."""
    return {"identity": backend.identity, "backend": backend.name, "numerics": backend.numerics}
