"""A model behind an OpenAI-compatible server (``vllm serve``, SGLang, TGI, a hosted API), by base URL.

``model.base_url`` is one URL or a list; a batch's requests go out concurrently (``model.max_concurrency``
in flight), spread round-robin over the URLs, and a failed request is retried on the next URL with
exponential backoff and full jitter, honouring ``Retry-After`` (429, 408, 409, 5xx, timeouts and
unreadable replies are retried; any other status is not). A request that still fails raises
:class:`EndpointError` naming the URL, the status and the body's first line: a verb never substitutes
a default for a missing answer.

The verbs:

- ``generate``: ``/v1/chat/completions``, one request per ``ChatRequest`` with its own seed
  (``vllm_backend.request_seed``), so the k-th sample of a prompt is drawn as the in-process engines draw it.
- ``generate_sampled`` (``api: completions`` only): ``/v1/completions`` with the prompt as token ids, ``logprobs: 0``
  and ``return_tokens_as_token_ids``: the drawn ids and their log-probabilities, which are the sampling
  distribution's only where the server runs ``--logprobs-mode processed_logprobs`` (``python -m kit serve`` does).
  A chat endpoint renders the prompt itself and a hosted one names no token ids: no sampled log-probabilities.
- ``score``: ``/v1/completions`` with the prompt as token ids, ``echo`` and ``logprobs``: the prompt's own
  log-probabilities, the continuation's read off. Only ``api: completions`` (hosted chat APIs return no
  prompt log-probabilities; ``python -m kit check`` refuses a role that needs ``score`` there).
- ``choice_probs``: the first generated token's top log-probabilities (``model.top_logprobs``), from
  ``/v1/completions`` with token ids (``api: completions``, labels matched by id) or from the chat
  endpoint's ``top_logprobs`` (``api: chat``, labels matched by text, the prefix sent as a final assistant
  message to continue).

``api: completions`` renders and tokenises prompts here with the model's own tokenizer (``model.name``),
so the server sees exactly the tokens the in-process backends see. LoRA adapters are served by name:
one the server lists (``--lora-modules name=path``, matched by path) or one loaded at run time
(``POST /v1/load_lora_adapter``, which needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` on the server);
the adapter folder must be readable by the server at the same path.

The API key is read from the environment variable ``model.api_key_env`` names when the client is
built and lives only in the client's headers.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
from scipy.special import logsumexp

from kit.llm.base import (Backend, ChatRequest, ChoiceRequest, ChoiceResult, GenParams, Sampled, ScoreRequest,
                          refuse_stop_strings)
from kit.llm.chat import label_token_ids
from kit.llm.vllm_backend import choice_from_logprobs, encode_prompt, request_seed, score_prompt
from kit.run import cost

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
VERBS = {"completions": ("generate", "score", "choice_probs"), "chat": ("generate", "choice_probs")}


class EndpointError(RuntimeError):
    """A request the endpoint did not answer usably after its retries: one line, URL first."""


def first_line(text: str, most: int = 200) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "(empty body)")
    return line if len(line) <= most else line[:most] + "…"


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base · 2^attempt)]."""
    return rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class _Retry(Exception):
    def __init__(self, line: str, wait: float | None = None):
        super().__init__(line)
        self.line, self.wait = line, wait


class Client:
    """Concurrent JSON requests over a list of base URLs, with bounded retries.

    ``sleep`` is injectable so tests run the backoff without waiting."""

    def __init__(self, urls: Sequence[str], *, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 5, max_concurrency: int = 16, sleep: Callable[[float], None] = time.sleep,
                 seed: int = 0):
        if not urls:
            raise ValueError("an endpoint needs at least one base URL")
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EndpointError(f"model.api_key_env names {api_key_env}, which is not set in this environment; "
                                    f"export {api_key_env}=… before the run")
            headers["Authorization"] = f"Bearer {key}"
        self.urls = [u.rstrip("/") for u in urls]
        self.max_retries, self._sleep = max_retries, sleep
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s),
                                  limits=httpx.Limits(max_connections=max_concurrency * len(self.urls)))
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="endpoint")
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.retries = 0  # requests sent again, over the client's life

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()

    def _attempt(self, method: str, url: str, path: str, body: dict | None, text: bool = False) -> Any:
        where = f"{url}{path}"
        try:
            reply = self._http.request(method, where, json=body)
        except httpx.TimeoutException as exc:
            raise _Retry(f"{where}: timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            raise _Retry(f"{where}: {type(exc).__name__}: {first_line(str(exc))}")
        if reply.status_code in RETRY_STATUS:
            raise _Retry(f"{where}: HTTP {reply.status_code}: {first_line(reply.text)}",
                         retry_after_s(reply.headers.get("Retry-After")))
        if reply.status_code >= 400:
            raise EndpointError(f"{where}: HTTP {reply.status_code}: {first_line(reply.text)}")
        if text:
            return reply.text
        try:
            return reply.json()
        except ValueError:
            raise _Retry(f"{where}: HTTP {reply.status_code} with unreadable JSON: {first_line(reply.text)}")

    def request(self, method: str, path: str, body: Callable[[str], dict] | dict | None = None,
                start: int | None = None, text: bool = False) -> Any:
        """One request's JSON reply (its text with ``text``), first to ``urls[start]`` (the next in turn if None),
        each retry to the next URL. ``body`` may be a function of the URL (an adapter's served name is per server)."""
        if start is None:
            start = next(self._turn)
        for attempt in range(self.max_retries + 1):
            url = self.urls[(start + attempt) % len(self.urls)]
            try:
                return self._attempt(method, url, path, body(url) if callable(body) else body, text)
            except _Retry as failure:
                if attempt == self.max_retries:
                    raise EndpointError(f"{failure.line} (after {attempt + 1} attempts)") from None
                with self._lock:
                    self.retries += 1
                    wait = failure.wait if failure.wait is not None else backoff_s(attempt, self._rng)
                log.warning("%s; retrying in %.1f s", failure.line, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def post_many(self, path: str, bodies: Sequence[Callable[[str], dict] | dict]) -> list[Any]:
        """The replies to ``bodies``, in order, sent concurrently and spread over the URLs."""
        starts = [next(self._turn) for _ in bodies]
        return list(self._pool.map(lambda job: self.request("POST", path, job[0], job[1]), zip(bodies, starts)))


def served_base(models: dict, url: str, wanted: str | None) -> str:
    """The served model id to send: ``wanted`` if the server lists it, else the server's only base model."""
    entries = models.get("data") or []
    ids = [m.get("id") for m in entries]
    if wanted is not None:
        if wanted not in ids:
            serves = ", ".join(map(str, ids)) or "nothing"
            raise EndpointError(f"{url}/models: model {wanted!r} is not served (it serves {serves}); "
                                "fix model.served_model")
        return wanted
    bases = [m["id"] for m in entries if not m.get("parent")]
    if len(bases) != 1:
        raise EndpointError(f"{url}/models: serves {len(bases)} base models ({', '.join(bases) or 'none'}); "
                            "set model.served_model to one of them")
    return bases[0]


def served_adapter(models: dict, path: str, name: str) -> str | None:
    """The served name of the adapter at ``path``: the kit's content-named one, else one served from that path."""
    entries = models.get("data") or []
    for m in entries:
        if m.get("id") == name:
            return name
    for m in entries:
        if m.get("parent") and str(m.get("root", "")).rstrip("/") == path.rstrip("/"):
            return m["id"]
    return None


def token_id(token: str) -> int:
    """The id in a "token_id:N" token string (``return_tokens_as_token_ids``)."""
    if not isinstance(token, str) or not token.startswith("token_id:"):
        raise ValueError(f"token {token!r} is not a token id; the server ignored return_tokens_as_token_ids")
    return int(token.removeprefix("token_id:"))


def sampled_from_completion(choice: dict) -> Sampled:
    """A :class:`Sampled` from a ``/v1/completions`` choice asked with ``logprobs: 0`` and token ids (a null
    log-probability is kept as NaN, trl's "not known"; finish reason ``stop``: it stopped on its last token)."""
    logprobs = choice.get("logprobs") or {}
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if tokens is None or values is None or len(tokens) != len(values):
        raise ValueError("the reply has no per-token logprobs (tokens, token_logprobs) of equal length")
    return Sampled(choice.get("text") or "", [token_id(t) for t in tokens],
                   [math.nan if v is None else float(v) for v in values], choice.get("finish_reason") == "stop")


def top_logprobs_by_id(entry: dict) -> dict[int, float]:
    """A completions reply's first-token top log-probabilities keyed by token id ("token_id:N" keys)."""
    out: dict[int, float] = {}
    for key, value in entry.items():
        if not key.startswith("token_id:"):
            raise ValueError(f"top_logprobs key {key!r} is not a token id; the server ignored return_tokens_as_token_ids")
        out[int(key.removeprefix("token_id:"))] = float(value)
    return out


def choice_from_chat(top: Sequence[dict], labels: Sequence[str]) -> ChoiceResult:
    """Option probabilities from a chat reply's first-token ``top_logprobs`` (token texts): a label counts
    through its text with and without a leading space, as :func:`kit.llm.chat.label_token_ids` spells it."""
    by_text: dict[str, list[float]] = {}
    for item in top:
        by_text.setdefault(item["token"], []).append(float(item["logprob"]))
    merged = {text: float(logsumexp(v)) for text, v in by_text.items()}
    return choice_from_logprobs(merged, {label: [label, " " + label] for label in labels})


class OpenAIBackend(Backend):
    """The three verbs over an OpenAI-compatible HTTP API (see the module docstring)."""

    name = "openai"
    numerics = "served"

    def __init__(self, urls: Sequence[str], *, served_model: str | None = None, api: str = "completions",
                 tokenizer=None, identity: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 5, max_concurrency: int = 16, top_logprobs: int = 20,
                 seed: int = 0, sleep: Callable[[float], None] = time.sleep):
        if api not in VERBS:
            raise ValueError(f"api must be one of {', '.join(VERBS)}, got {api!r}")
        if api == "completions" and tokenizer is None:
            raise ValueError("api: completions sends token ids, so it needs the model's tokenizer (model.name)")
        self.client = Client(urls, api_key_env=api_key_env, timeout_s=timeout_s, max_retries=max_retries,
                             max_concurrency=max_concurrency, sleep=sleep, seed=seed)
        self.api, self.tokenizer, self.top_logprobs = api, tokenizer, top_logprobs
        self.sampling_logprobs = api == "completions"
        self._models = {url: self.client.request("GET", "/models", start=i) for i, url in enumerate(self.client.urls)}
        served = {url: served_base(m, url, served_model) for url, m in self._models.items()}
        if len(set(served.values())) != 1:
            raise EndpointError(f"the URLs serve different models ({', '.join(f'{u}: {s}' for u, s in served.items())}); "
                                "set model.served_model")
        self.served_model = next(iter(served.values()))
        self.identity = identity or identity_string(self.served_model, self.client.urls)
        self._adapters: dict[tuple[str, str], str] = {}
        self._adapter_lock = threading.Lock()
        # the in-process backends' counters, from the replies' usage; prefill_tokens_saved: the prompt tokens the
        # server's prefix cache served (vLLM reports them with --enable-prompt-tokens-details)
        self.stats = {"requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "prefill_tokens_saved": 0, "retries": 0}

    @classmethod
    def from_params(cls, model, seed: int = 0) -> "OpenAIBackend":
        return cls(model.base_url, served_model=model.served_model, api=model.api, tokenizer=local_tokenizer(model),
                   identity=cls.identity_for(model), api_key_env=model.api_key_env, timeout_s=model.timeout_s,
                   max_retries=model.max_retries, max_concurrency=model.max_concurrency,
                   top_logprobs=model.top_logprobs, seed=seed)

    @staticmethod
    def numerics_for(model) -> str:
        return "served"

    @staticmethod
    def identity_for(model) -> str:
        """``served-model@url,url``, known from params: the cache and fingerprints key on the server, not the name
        of the local tokenizer."""
        return identity_string(model.served_model or model.name, model.base_url)

    def close(self) -> None:
        self.client.close()

    # LoRA by served name ------------------------------------------------------------------------
    def _adapter_name(self, url: str, path: str) -> str:
        key = (url, path)
        with self._adapter_lock:
            if key in self._adapters:
                return self._adapters[key]
            name = f"{Path(path).name}-{self.adapter_identity(path)[:8]}"
            found = served_adapter(self._models[url], path, name)
            if found is None:
                start = self.client.urls.index(url)
                try:  # vLLM answers in plain text
                    self.client.request("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path},
                                        start=start, text=True)
                except EndpointError as exc:
                    if "already been loaded" in str(exc):  # loaded by an earlier run of the kit: same name, same bytes
                        self._adapters[key] = name
                        return name
                    raise EndpointError(f"{exc}; serve the adapter with `vllm serve … --enable-lora --lora-modules "
                                        f"{name}={path}` or start the server with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
                self._models[url] = self.client.request("GET", "/models", start=start)
                found = name
            self._adapters[key] = found
            return found

    def _model(self, url: str, adapter: str | None) -> str:
        return self.served_model if adapter is None else self._adapter_name(url, adapter)

    def _send(self, path: str, requests: Sequence[ChatRequest], bodies: list[dict]) -> list[dict]:
        jobs = [lambda url, r=r, b=b: {"model": self._model(url, r.adapter), **b} for r, b in zip(requests, bodies)]
        replies = self.client.post_many(path, jobs)
        usage = [r.get("usage") or {} for r in replies]
        self.stats["requests"] += len(replies)
        self.stats["prompt_tokens"] += sum(int(u.get("prompt_tokens") or 0) for u in usage)
        self.stats["generated_tokens"] += sum(int(u.get("completion_tokens") or 0) for u in usage)
        self.stats["prefill_tokens_saved"] += sum(int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
                                                  for u in usage)
        self.stats["retries"] = self.client.retries
        return replies

    def _count(self, replies: list[dict], field: str, counter: str) -> None:
        # with a local tokenizer the cache counts tokens as for every backend; without one, the endpoint's own
        # counts of the requests sent (this is the main thread: the cost stages are context variables)
        if self.tokenizer is None and cost.measuring():
            cost.count(**{counter: sum(int((r.get("usage") or {}).get(field) or 0) for r in replies)})

    @staticmethod
    def _choice(reply: dict, url_hint: str) -> dict:
        try:
            return reply["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{url_hint}: reply has no choices: {first_line(json.dumps(reply))}") from None

    # the verbs ----------------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        if not requests:
            return []
        if params.min_new_tokens > params.max_new_tokens:
            raise ValueError(f"min_new_tokens={params.min_new_tokens} exceeds max_new_tokens={params.max_new_tokens}")
        common: dict[str, Any] = {"max_tokens": params.max_new_tokens, "top_p": params.top_p,
                                  "temperature": 0.0 if params.greedy else params.temperature}
        if params.stop:
            common["stop"] = list(params.stop)
        if params.min_new_tokens:
            common["min_tokens"] = params.min_new_tokens  # a vLLM extension
        bodies = [{"messages": r.chat, **common,
                   **({"seed": request_seed(params.seed, r)} if params.seed is not None and not params.greedy else {})}
                  for r in requests]
        replies = self._send("/chat/completions", requests, bodies)
        self._count(replies, "completion_tokens", "generated_tokens")
        out = []
        for reply in replies:
            content = (self._choice(reply, "/chat/completions").get("message") or {}).get("content")
            if content is None:
                raise EndpointError(f"/chat/completions: reply has no message content: {first_line(json.dumps(reply))}")
            out.append(content)
        return out

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        refuse_stop_strings(params, self.name)
        if self.api != "completions":
            raise EndpointError(f"{self.identity}: api: chat renders prompts on the server and names no token ids, so "
                                "no sampled log-probabilities; serve the model behind /v1/completions (api: completions)")
        if not requests:
            return []
        common: dict[str, Any] = {"max_tokens": params.max_new_tokens, "top_p": params.top_p,
                                  "temperature": 0.0 if params.greedy else params.temperature, "logprobs": 0,
                                  "return_tokens_as_token_ids": True}
        if params.min_new_tokens:
            common["min_tokens"] = params.min_new_tokens
        bodies = [{"prompt": encode_prompt(self.tokenizer, r.chat), **common,
                   **({"seed": request_seed(params.seed, r)} if params.seed is not None and not params.greedy else {})}
                  for r in requests]
        replies = self._send("/completions", requests, bodies)
        self._count(replies, "completion_tokens", "generated_tokens")
        out = []
        for reply in replies:
            try:
                out.append(sampled_from_completion(self._choice(reply, "/completions")))
            except (TypeError, ValueError) as exc:
                raise EndpointError(f"/completions: generate_sampled: {exc}: {first_line(json.dumps(reply))}") from None
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        if not requests:
            return []
        if self.api != "completions":
            raise EndpointError(f"{self.identity}: api: chat gives no prompt log-probabilities, so no score; "
                                "serve the model behind /v1/completions (api: completions)")
        built = [score_prompt(self.tokenizer, r) for r in requests]
        bodies = [{"prompt": ids, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 0} for ids, _ in built]
        replies = self._send("/completions", requests, bodies)
        self._count(replies, "prompt_tokens", "scored_tokens")
        out = []
        for reply, (ids, n_context) in zip(replies, built):
            lp = (self._choice(reply, "/completions").get("logprobs") or {}).get("token_logprobs")
            if not lp or len(lp) < len(ids) or any(v is None for v in lp[n_context:len(ids)]):
                raise EndpointError(f"/completions: echo gave {len(lp or [])} prompt log-probabilities for a "
                                    f"{len(ids)}-token prompt; the server must support echo with logprobs")
            out.append([float(v) for v in lp[n_context:len(ids)]])
        return out

    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        if not requests:
            return []
        if self.api == "completions":
            bodies = [{"prompt": encode_prompt(self.tokenizer, r.chat, r.prefix), "max_tokens": 1, "temperature": 0.0,
                       "logprobs": self.top_logprobs, "return_tokens_as_token_ids": True} for r in requests]
            replies = self._send("/completions", requests, bodies)
        else:
            bodies = [{"messages": r.chat + ([{"role": "assistant", "content": r.prefix}] if r.prefix else []),
                       **({"continue_final_message": True, "add_generation_prompt": False} if r.prefix else {}),
                       "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs}
                      for r in requests]
            replies = self._send("/chat/completions", requests, bodies)
        self._count(replies, "prompt_tokens", "scored_tokens")
        out = []
        for req, reply in zip(requests, replies):
            logprobs = self._choice(reply, "choice_probs").get("logprobs")
            try:
                if self.api == "completions":
                    top = top_logprobs_by_id(logprobs["top_logprobs"][0])
                    out.append(choice_from_logprobs(top, label_token_ids(self.tokenizer, req.labels)))
                else:
                    out.append(choice_from_chat(logprobs["content"][0]["top_logprobs"], req.labels))
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise EndpointError(f"choice_probs: the reply has no first-token top_logprobs ({exc}): "
                                    f"{first_line(json.dumps(reply))}") from None
        return out


def identity_string(served: str, urls: Sequence[str] | str) -> str:
    urls = [urls] if isinstance(urls, str) else list(urls)
    return f"{served}@{','.join(u.rstrip('/') for u in urls)}"


def local_tokenizer(model):
    """The served model's tokenizer from ``model.name`` (a registered name, hub id or folder), or None for a
    chat-only endpoint whose name is not a local model."""
    from transformers import AutoTokenizer

    from kit.llm.models import REGISTERED, resolve_model

    if model.api == "chat" and model.name not in REGISTERED and not Path(model.name).expanduser().exists():
        return None
    resolved = resolve_model(model.name, model.revision)
    try:
        return AutoTokenizer.from_pretrained(resolved.path, revision=resolved.revision,
                                             trust_remote_code=model.trust_remote_code)
    except OSError:
        if model.api == "chat":  # only token counts need it there: the endpoint's own counts stand in
            return None
        raise
