"""The cache in front of every backend: a rerun sends only what it has not seen to the model."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from kit.llm.base import Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, Sampled, ScoreRequest
from kit.llm.chat import render_chat
from kit.llm.errors import PartialFailure
from kit.run import cost
from kit.run.cache import Cache, cache_key

R = TypeVar("R", bound=ChatRequest)


class CachedBackend(Backend):
    """Wraps a backend; same verbs, same results, misses sent to it in one batch per call.

    Every request is counted for the cost stages open (``kit.run.cost``), answered from the cache or
    not, so a result's recorded cost does not depend on what an earlier run left in the cache.
    """

    def __init__(self, inner: Backend, cache: Cache):
        self.inner, self.cache = inner, cache
        self.name, self.identity, self.numerics = inner.name, inner.identity, inner.numerics
        self.sampling_logprobs = inner.sampling_logprobs

    def reset_prefix_cache(self) -> None:
        self.inner.reset_prefix_cache()

    def __getattr__(self, attr):  # tokenizer, stats, device… of the wrapped backend
        return getattr(self.inner, attr)

    def _key(
        self, verb: str, request: ChatRequest, extra: dict | None = None, adapters: dict | None = None
    ) -> str:
        adapter = request.adapter
        content = None
        if adapter is not None:  # by content, read for every call: an adapter retrained in place is a new key
            if adapters is None or adapter not in adapters:
                content = self.inner.adapter_identity(adapter)
                if adapters is not None:
                    adapters[adapter] = content
            else:
                content = adapters[adapter]
        return cache_key(
            {
                "verb": verb,
                "model": self.identity,
                "backend": self.name,
                "numerics": self.numerics,
                "adapter": content,
                "request": {**request.key(), "adapter": None},
                **(extra or {}),
            }
        )

    def _through(
        self,
        verb: str,
        requests: Sequence[R],
        compute: Callable[[list[R]], list],
        encode: Callable,
        decode: Callable,
        extra: dict | None = None,
    ) -> list:
        adapters: dict[str, str] = {}  # each adapter's content, read once per call
        keys = [self._key(verb, r, extra, adapters) for r in requests]
        stored = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = list(dict.fromkeys(k for k in keys if k not in stored))  # duplicates computed once
        if todo:
            first = {k: requests[keys.index(k)] for k in todo}

            def arrived(i: int, value) -> None:  # a server's answer, stored as it comes (before any failure)
                fresh = {todo[i]: json.dumps(encode(value)).encode()}
                self.cache.put_many(fresh)
                stored.update(fresh)

            self.inner.on_answer = arrived
            try:
                results = compute([first[k] for k in todo])
            except PartialFailure as failed:
                stored.update(
                    {
                        todo[i]: json.dumps(encode(v)).encode()
                        for i, v in failed.answers.items()
                        if todo[i] not in stored
                    }
                )
                raise self._failed(failed, todo, keys, stored, decode) from None
            finally:
                self.inner.on_answer = None
            fresh = {k: json.dumps(encode(v)).encode() for k, v in zip(todo, results) if k not in stored}
            if fresh:
                self.cache.put_many(fresh)
                stored.update(fresh)
        return [decode(json.loads(stored[k])) for k in keys]

    @staticmethod
    def _failed(
        failed: PartialFailure, todo: list[str], keys: list[str], stored: dict, decode
    ) -> PartialFailure:
        """The inner backend's partial failure in the caller's indices: answers (cached and fresh) by index,
        and every request whose key failed."""
        bad = {todo[i]: line for i, line in failed.failures.items()}
        answers = {j: decode(json.loads(stored[k])) for j, k in enumerate(keys) if k in stored}
        failures = {j: bad[k] for j, k in enumerate(keys) if k in bad}
        return PartialFailure(
            answers, failures, len(keys), note=" and cached, so a rerun sends only the failed ones"
        )

    def _tokens(self, texts: list[str]) -> int:
        tokenizer = getattr(self.inner, "tokenizer", None)  # a backend without one counts no tokens
        if tokenizer is None or not texts:
            return 0
        return sum(map(len, tokenizer(texts, add_special_tokens=False)["input_ids"]))

    def _read(self, requests: Sequence[ChatRequest], prefix=lambda r: "", tail=lambda r: "") -> int:
        """Tokens a forward pass over ``requests`` reads: rendered prompt, prefix and continuation."""
        tokenizer = getattr(self.inner, "tokenizer", None)
        return (
            self._tokens([render_chat(tokenizer, r.chat, prefix(r)) + tail(r) for r in requests])
            if tokenizer
            else 0
        )

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        if not params.deterministic:  # unseeded sampling must stay random across reruns
            out = self.inner.generate(requests, params)
        else:
            out = self._through(
                "generate",
                requests,
                lambda rs: self.inner.generate(rs, params),
                lambda t: t,
                lambda t: t,
                {"params": params.key()},
            )
        if cost.measuring():
            cost.count(calls=len(requests), generated_tokens=self._tokens(list(out)), model=self.identity)
        return out

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        """The inner backend's, cached as ``generate`` is (seeded or greedy only) under a verb of its own: an entry
        holds the drawn ids and log-probabilities beside the text, and a text-only entry has none to give."""
        if not params.deterministic:
            out = self.inner.generate_sampled(requests, params)
        else:
            out = self._through(
                "generate_sampled",
                requests,
                lambda rs: self.inner.generate_sampled(rs, params),
                Sampled.as_dict,
                lambda d: Sampled(**d),
                {"params": params.key()},
            )
        if cost.measuring():
            cost.count(
                calls=len(requests), generated_tokens=self._tokens([s.text for s in out]), model=self.identity
            )
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        out = self._through("score", requests, self.inner.score, lambda v: v, lambda v: v)
        if cost.measuring():
            cost.count(
                calls=len(requests),
                scored_tokens=self._read(requests, tail=lambda r: r.continuation),
                model=self.identity,
            )
        return out

    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        out = self._through(
            "choice",
            requests,
            self.inner.choice_probs,
            lambda c: {"probs": c.probs, "label_mass": c.label_mass},
            lambda d: ChoiceResult(d["probs"], d["label_mass"]),
        )
        if cost.measuring():
            cost.count(
                calls=len(requests),
                scored_tokens=self._read(requests, prefix=lambda r: r.prefix),
                model=self.identity,
            )
        return out
