"""A model behind an OpenAI-compatible server (``vllm serve``, llama.cpp's ``llama-server``, SGLang, a hosted
API), by base URL.

``model.base_url`` is one URL or a list; a batch's requests go out concurrently (``model.max_concurrency``
in flight), spread round-robin over the URLs, and a failed request is retried on the next URL with
exponential backoff and full jitter, honouring ``Retry-After`` up to ``model.retry_after_max_s`` (429, 408,
409, 5xx, timeouts and unreadable replies are retried; any other status is not).

Every request is bounded: ``model.timeout_s`` is the whole of one attempt (connect, send and every read:
a server trickling bytes is cut off there), a body is read as a stream up to ``model.max_response_mb`` and
the request fails past it, a redirect (3xx) is an error (the kit follows none: a redirect could carry the
key elsewhere), and every reply is checked against the schema of what it answers (:mod:`kit.llm.replies`:
types, finite log-probabilities ≤ 0, token counts ≥ 0). A request that still fails is that request's
failure, one line naming the URL (without credentials), the status and the body's first line, passed
through :func:`kit.run.secrets.scrub`. The other requests of the batch run to their end: each answer is
handed to ``on_answer`` as it arrives (the cache stores it, :mod:`kit.llm.cached`), then
:class:`PartialFailure` names the failed ones, so a rerun sends only those. A verb never substitutes a
default for a missing answer.

The verbs:

- ``generate``: ``/v1/chat/completions``, one request per ``ChatRequest`` with its own seed
  (``vllm_backend.request_seed``), so the k-th sample of a prompt is drawn as the in-process engines draw it.
- ``generate_sampled`` (``api: completions`` only): ``/v1/completions`` with the prompt as token ids, ``logprobs: 0``
  and token ids returned: the drawn tokens and the log-probability each was sampled with (``kit serve`` starts
  vLLM with processed log-probabilities, so they are those of the distribution sampled from).
- ``score``: ``/v1/completions`` with the prompt as token ids, ``echo`` and ``logprobs``: the prompt's own
  log-probabilities, the continuation's read off. Only ``api: completions`` on a server that echoes prompt
  log-probabilities (vLLM; llama.cpp's server does not): :func:`probe` finds out, and ``python -m kit check``
  refuses a role that needs ``score`` where it is missing.
- ``choice_probs``: the first generated token's top log-probabilities (``model.top_logprobs``), from
  ``/v1/completions`` with token ids (``api: completions``, labels matched by id where the server gives ids,
  else by text) or from the chat endpoint's ``top_logprobs`` (``api: chat``, labels matched by text, the
  prefix sent as a final assistant message to continue). Both reply shapes are read (:mod:`kit.llm.replies`).

``api: completions`` renders and tokenises prompts here with the model's own tokenizer (``model.name``),
so the server sees exactly the tokens the in-process backends see.

LoRA adapters are served by content: the served name is ``<folder>-<content fingerprint>``
(:func:`served_adapter_name`), either listed by the server (``python -m kit serve --adapter PATH``, or
``--lora-modules NAME=PATH``) or loaded at run time (``POST /v1/load_lora_adapter``, which a server allows
only when started with ``python -m kit serve --runtime-lora``). Before an adapter is used the server's
``/v1/models`` must list that name from that path; an adapter the server lists from the path under
another name (older weights, or no fingerprint) is one clear error, never a silent reuse. The adapter
folder must be readable by the server at the same path. An adapter retrained in place has a new name
in the same process, so the new weights answer.

The API key is read from the environment variable ``model.api_key_env`` names when the client is built,
lives only in the client's headers, is scrubbed from every error and log line and from the text the
server returns, and is sent over plain ``http://`` only to this machine unless
``model.allow_key_over_plain_http`` says otherwise.
"""

from __future__ import annotations

import email.utils
import ipaddress
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from kit.llm import replies
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
from kit.llm.chat import label_token_ids
from kit.llm.errors import EndpointError, PartialFailure
from kit.llm.vllm_backend import choice_from_logprobs, encode_prompt, request_seed, score_prompt
from kit.run import cost, secrets

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
VERBS = {"completions": ("generate", "score", "choice_probs"), "chat": ("generate", "choice_probs")}
MiB = 1 << 20


def first_line(text: str, most: int = 200) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "(empty body)")
    return line if len(line) <= most else line[:most] + "…"


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); None if absent or
    unreadable. Not capped here: the client cuts it to ``retry_after_max_s``."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base · 2^attempt)]."""
    return rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt, 32)))


def loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_remote(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to another machine (a key sent there crosses the network readable)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not loopback(parts.hostname)


class _Retry(Exception):
    def __init__(self, line: str, wait: float | None = None):
        super().__init__(line)
        self.line, self.wait = line, wait


class Client:
    """Concurrent JSON requests over a list of base URLs, with bounded retries and bounded replies.

    ``sleep`` is injectable so tests run the backoff without waiting."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        max_concurrency: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
        retry_after_max_s: float = 60.0,
        max_response_mb: float = 32.0,
        allow_key_over_plain_http: bool = False,
    ):
        if not urls:
            raise ValueError("an endpoint needs at least one base URL")
        for url in urls:
            if (what := secrets.credential_in_url(url)) is not None:
                raise EndpointError(
                    f"{secrets.public_url(url)}: the URL carries a credential ({what}); fix: remove "
                    "it and name an environment variable holding the key with model.api_key_env"
                )
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EndpointError(
                    f"model.api_key_env names {api_key_env}, which is not set in this environment; "
                    f"export {api_key_env}=… before the run"
                )
            secrets.register_value(key)
            remote = [u for u in urls if plain_http_remote(u)]
            if remote and not allow_key_over_plain_http:
                raise EndpointError(
                    f"{secrets.public_url(remote[0])} is plain http to another machine, so the API key "
                    "would cross the network readable; fix: use https, or set "
                    "model.allow_key_over_plain_http: true on a network you trust"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.urls = [u.rstrip("/") for u in urls]
        self.shown = [secrets.public_url(u) for u in self.urls]  # what lines and identities carry
        self.max_retries, self._sleep = max_retries, sleep
        self.timeout_s, self.retry_after_max_s = float(timeout_s), float(retry_after_max_s)
        self.max_bytes = int(max_response_mb * MiB)
        self._http = httpx.Client(
            headers=headers,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_concurrency * len(self.urls)),
        )
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="endpoint")
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.retries = 0  # requests sent again, over the client's life

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()

    # one attempt ---------------------------------------------------------------------------------
    def _read(self, reply: httpx.Response, where: str, deadline: float) -> bytes:
        """The body, streamed: at most ``max_bytes`` (decoded), and by the deadline — a watchdog shuts the
        socket at the deadline, so a server that stalls mid-body cannot hold the read past it."""
        declared = reply.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise EndpointError(
                f"{where}: HTTP {reply.status_code}: a reply of {int(declared)} bytes, over "
                f"model.max_response_mb ({self.max_bytes / MiB:g} MiB); fix: ask for less "
                "(max_new_tokens, top_logprobs) or raise model.max_response_mb"
            )
        stream = reply.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        watchdog, fired = None, threading.Event()
        if sock is not None:

            def cut():
                fired.set()
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
            watchdog.daemon = True
            watchdog.start()
        chunks, size = [], 0
        try:
            for chunk in reply.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise EndpointError(
                        f"{where}: HTTP {reply.status_code}: the reply passed model.max_response_mb "
                        f"({self.max_bytes / MiB:g} MiB) and was cut off; fix: ask for less "
                        "(max_new_tokens, top_logprobs) or raise model.max_response_mb"
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the reply took longer than model.timeout_s")
                chunks.append(chunk)
        except httpx.TransportError:
            if fired.is_set() or time.monotonic() >= deadline:
                raise httpx.ReadTimeout("the reply took longer than model.timeout_s") from None
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if fired.is_set():  # a body ended by the watchdog's cut, not by the server
            raise httpx.ReadTimeout("the reply took longer than model.timeout_s")
        return b"".join(chunks)

    def _attempt(
        self,
        method: str,
        i: int,
        path: str,
        body: dict | None,
        parse: Callable[[Any], Any] | None,
        text: bool,
    ) -> Any:
        where = f"{self.shown[i]}{path}"
        deadline = time.monotonic() + self.timeout_s

        def trace(event: str, info: dict) -> None:
            # waiting for the headers may use what connecting and sending left of the deadline, no more
            if event.endswith("receive_response_headers.started"):
                timeouts = info["request"].extensions.get("timeout")
                if isinstance(timeouts, dict):
                    timeouts["read"] = max(0.001, deadline - time.monotonic())

        try:
            with self._http.stream(
                method,
                f"{self.urls[i]}{path}",
                json=body,
                timeout=httpx.Timeout(self.timeout_s),
                extensions={"trace": trace},
            ) as reply:
                raw = self._read(reply, where, deadline)
                status, headers = reply.status_code, reply.headers
        except httpx.TimeoutException:
            raise _Retry(
                f"{where}: timed out (the whole request is bounded by model.timeout_s = {self.timeout_s:g} s)"
            ) from None
        except httpx.TransportError as exc:
            raise _Retry(f"{where}: {type(exc).__name__}: {first_line(str(exc))}") from exc
        body_text = raw.decode("utf-8", errors="replace")
        if 300 <= status < 400:
            goes = headers.get("Location")
            raise EndpointError(
                f"{where}: HTTP {status}: a redirect{f' to {secrets.public_url(goes)}' if goes else ''}, "
                "which the kit does not follow; fix: set base_url to the server's own URL"
            )
        if status in RETRY_STATUS:
            raise _Retry(
                f"{where}: HTTP {status}: {first_line(body_text)}", retry_after_s(headers.get("Retry-After"))
            )
        if status >= 400:
            raise EndpointError(f"{where}: HTTP {status}: {first_line(body_text)}")
        if status != 200:
            raise EndpointError(
                f"{where}: HTTP {status}: expected 200 with a JSON reply: {first_line(body_text)}"
            )
        if text:
            return body_text
        try:
            decoded = json.loads(body_text)
        except ValueError:
            raise _Retry(f"{where}: HTTP {status} with unreadable JSON: {first_line(body_text)}") from None
        except RecursionError:
            raise EndpointError(
                f"{where}: HTTP {status}: the JSON reply is nested too deep to read"
            ) from None
        if parse is None:
            return decoded
        try:
            return parse(decoded)
        except replies.ReplyError as exc:
            raise EndpointError(f"{where}: the reply breaks the schema: {exc}") from None

    def request(
        self,
        method: str,
        path: str,
        body: Callable[[str], dict] | dict | None = None,
        start: int | None = None,
        text: bool = False,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """One request's reply — ``parse(json)`` when given (it raises :class:`kit.llm.replies.ReplyError` on a
        reply of the wrong shape), else the decoded JSON (its text with ``text``) — first to ``urls[start]``
        (the next in turn if None), each retry to the next URL. ``body`` may be a function of the URL (an
        adapter's served name is per server)."""
        if start is None:
            start = next(self._turn)
        for attempt in range(self.max_retries + 1):
            i = (start + attempt) % len(self.urls)
            try:
                return self._attempt(
                    method, i, path, body(self.urls[i]) if callable(body) else body, parse, text
                )
            except _Retry as failure:
                if attempt == self.max_retries:
                    raise EndpointError(f"{failure.line} (after {attempt + 1} attempts)") from None
                with self._lock:
                    self.retries += 1
                    wait = failure.wait if failure.wait is not None else backoff_s(attempt, self._rng)
                if wait > self.retry_after_max_s:
                    log.warning(
                        "%s",
                        secrets.scrub(
                            f"{failure.line}; Retry-After asks {wait:g} s, waiting "
                            f"model.retry_after_max_s = {self.retry_after_max_s:g} s"
                        ),
                    )
                    wait = self.retry_after_max_s
                log.warning("%s", secrets.scrub(f"{failure.line}; retrying in {wait:.1f} s"))
                self._sleep(wait)
        raise AssertionError("unreachable")

    def post_many(
        self,
        path: str,
        bodies: Sequence[Callable[[str], dict] | dict],
        parse: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | None = None,
        on_answer: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """The replies to ``bodies``, in order, sent concurrently and spread over the URLs (``parse``: one for
        all, or one per body). Each answer is handed to ``on_answer(index, answer)`` in this thread as it
        arrives; when some requests fail, the others still run to their end and :class:`PartialFailure` is
        raised with both."""
        parsers = list(parse) if isinstance(parse, (list, tuple)) else [parse] * len(bodies)
        starts = [next(self._turn) for _ in bodies]
        futures = {
            self._pool.submit(self.request, "POST", path, body, start, False, parser): i
            for i, (body, start, parser) in enumerate(zip(bodies, starts, parsers))
        }
        answers: dict[int, Any] = {}
        failures: dict[int, str] = {}
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    answers[i] = future.result()
                except EndpointError as exc:
                    failures[i] = str(exc)
                    continue
                if on_answer is not None:
                    on_answer(i, answers[i])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        if failures:
            raise PartialFailure(answers, failures, len(bodies))
        return [answers[i] for i in range(len(bodies))]


# what a server offers ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Offers:
    """What :func:`probe` found a server to answer: prompt log-probabilities by ``echo`` (``score``), the first
    token's top alternatives (``choice_probs``), and whether a seed fixes a sampled draw (None: the draws
    never varied, so it could not tell)."""

    api: str
    echo: bool
    top_logprobs: bool
    seeds: bool | None

    def verbs(self) -> tuple[str, ...]:
        return (
            ("generate",)
            + (("score",) if self.api == "completions" and self.echo else ())
            + (("choice_probs",) if self.top_logprobs else ())
        )

    def line(self) -> str:
        seeds = {
            True: "yes",
            False: "no (sampled draws are not reproducible)",
            None: "not told (draws never varied)",
        }
        return (
            f"echo with prompt logprobs: {'yes' if self.echo else 'no'}, top logprobs: "
            f"{'yes' if self.top_logprobs else 'no'}, seeds: {seeds[self.seeds]}"
        )


def probe(client: Client, index: int, served: str, api: str) -> Offers:
    """Ask the server at ``client.urls[index]`` once per feature (a few requests of one or eight tokens)."""

    def ask(path: str, body: dict, parse) -> Any:
        try:
            return client.request("POST", path, {"model": served, **body}, start=index, parse=parse)
        except EndpointError:
            return None

    def gives(parse):
        def read(reply):
            parse(reply)
            return True

        return read

    if api == "completions":
        path, base = "/completions", {"prompt": "The capital of France is"}
        text_of = replies.completion_text

        def echoed(reply) -> bool:
            lp = replies.echo_logprobs(reply)
            return len(lp) >= 3 and all(v is not None for v in lp[1:])

        echo = bool(
            ask(path, {**base, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}, echoed)
        )
        top = bool(
            ask(
                path,
                {
                    **base,
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": 5,
                    "return_tokens_as_token_ids": True,
                },
                gives(replies.first_token_top),
            )
        )
    else:
        path, base = "/chat/completions", {"messages": [{"role": "user", "content": "Name a colour."}]}
        text_of, echo = replies.chat_text, False
        top = bool(
            ask(
                path,
                {**base, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 5},
                gives(replies.first_token_top),
            )
        )
    draws = [
        ask(path, {**base, "max_tokens": 8, "temperature": 1.0, "seed": seed}, text_of)
        for seed in (11, 11, 12)
    ]
    if any(d is None for d in draws):
        seeds = False
    elif draws[0] != draws[1]:
        seeds = False
    else:
        seeds = True if draws[2] != draws[0] else None
    return Offers(api, echo, top, seeds)


# adapters by content ----------------------------------------------------------------------------------------
_KIT_NAME = re.compile(r"-[0-9a-f]{16}$")


def served_adapter_name(path: str) -> str:
    """The name the kit serves the adapter at ``path`` under: its folder name and content fingerprint."""
    from kit.llm.models import adapter_fingerprint

    return f"{Path(path).name}-{adapter_fingerprint(path)}"


def served_adapter(entries: Sequence[dict], path: str, name: str, url: str) -> str | None:
    """``name`` when the server lists it from ``path``; None when it lists neither; one clear error when it lists
    the name from another path, or the path under a name that does not carry the content ``name`` does."""
    path = path.rstrip("/")
    for m in entries:
        if m.get("id") == name:
            root = str(m.get("root") or "").rstrip("/")
            if root and root != path:
                raise EndpointError(
                    f"{url}/models: serves adapter {name} from {root}, not {path}; fix: restart the "
                    "server without it, or serve the adapter from this path"
                )
            return name
    for m in entries:
        if (
            m.get("parent")
            and str(m.get("root", "")).rstrip("/") == path
            and not _KIT_NAME.search(str(m["id"]))
        ):
            raise EndpointError(
                f"{url}/models: serves {path} as {m['id']!r}, a name without the content fingerprint "
                f"of the adapter there now ({name}), so it may hold other weights; fix: serve it as "
                f"{name} (python -m kit serve --adapter {path}, or --lora-modules {name}={path})"
            )
    return None


def stale_adapters(entries: Sequence[dict], path: str, name: str) -> list[str]:
    """Names the kit loaded from ``path`` for an earlier content of the adapter (retrained in place since)."""
    path = path.rstrip("/")
    return [
        str(m["id"])
        for m in entries
        if m.get("parent")
        and str(m.get("root", "")).rstrip("/") == path
        and m["id"] != name
        and _KIT_NAME.search(str(m["id"]))
    ]


class OpenAIBackend(Backend):
    """The three verbs over an OpenAI-compatible HTTP API (see the module docstring)."""

    name = "openai"
    numerics = "served"

    def __init__(
        self,
        urls: Sequence[str],
        *,
        served_model: str | None = None,
        api: str = "completions",
        tokenizer=None,
        identity: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        max_concurrency: int = 16,
        top_logprobs: int = 20,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        retry_after_max_s: float = 60.0,
        max_response_mb: float = 32.0,
        allow_key_over_plain_http: bool = False,
    ):
        if api not in VERBS:
            raise ValueError(f"api must be one of {', '.join(VERBS)}, got {api!r}")
        if api == "completions" and tokenizer is None:
            raise ValueError(
                "api: completions sends token ids, so it needs the model's tokenizer (model.name)"
            )
        self.client = Client(
            urls,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            sleep=sleep,
            seed=seed,
            retry_after_max_s=retry_after_max_s,
            max_response_mb=max_response_mb,
            allow_key_over_plain_http=allow_key_over_plain_http,
        )
        self.api, self.tokenizer, self.top_logprobs = api, tokenizer, top_logprobs
        # generate_sampled needs token ids in and out: /v1/completions (api: completions) gives them
        self.sampling_logprobs = api == "completions"
        self._models = {url: self._list(i) for i, url in enumerate(self.client.urls)}
        served = {
            url: served_base(m, shown, served_model)
            for (url, m), shown in zip(self._models.items(), self.client.shown)
        }
        if len(set(served.values())) != 1:
            raise EndpointError(
                f"the URLs serve different models ({', '.join(f'{u}: {s}' for u, s in zip(self.client.shown, served.values()))}); "
                "set model.served_model"
            )
        self.served_model = next(iter(served.values()))
        self.identity = identity or identity_string(self.served_model, self.client.shown)
        self._adapters: dict[tuple[str, str, str], str] = {}  # (url, path, content) -> served name
        self._adapter_lock = threading.Lock()
        self.on_answer: Callable[[int, Any], None] | None = (
            None  # set by the cache while it waits (base.Backend)
        )
        # the in-process backends' counters, from the replies' usage; prefill_tokens_saved: the prompt tokens the
        # server's prefix cache served (vLLM reports them with --enable-prompt-tokens-details)
        self.stats = {
            "requests": 0,
            "prompt_tokens": 0,
            "generated_tokens": 0,
            "prefill_tokens_saved": 0,
            "retries": 0,
        }
        self._usage_lock = threading.Lock()

    def _list(self, i: int) -> dict:
        return {"data": self.client.request("GET", "/models", start=i, parse=replies.models)}

    @classmethod
    def from_params(cls, model, seed: int = 0) -> OpenAIBackend:
        return cls(
            model.base_url,
            served_model=model.served_model,
            api=model.api,
            tokenizer=local_tokenizer(model),
            identity=cls.identity_for(model),
            api_key_env=model.api_key_env,
            timeout_s=model.timeout_s,
            max_retries=model.max_retries,
            max_concurrency=model.max_concurrency,
            top_logprobs=model.top_logprobs,
            seed=seed,
            retry_after_max_s=model.retry_after_max_s,
            max_response_mb=model.max_response_mb,
            allow_key_over_plain_http=model.allow_key_over_plain_http,
        )

    @staticmethod
    def numerics_for(model) -> str:
        return "served"

    @staticmethod
    def identity_for(model) -> str:
        """``served-model@url,url``, known from params (URLs without userinfo or query): the cache and
        fingerprints key on the server, not the name of the local tokenizer."""
        return identity_string(model.served_model or model.name, model.base_url)

    def close(self) -> None:
        self.client.close()

    # LoRA by content ----------------------------------------------------------------------------
    def _adapter_name(self, url: str, path: str) -> str:
        content = self.adapter_identity(path)  # stat-keyed: a retrained adapter has a new one
        key = (url, path, content)
        with self._adapter_lock:
            if key in self._adapters:
                return self._adapters[key]
            i = self.client.urls.index(url)
            shown = self.client.shown[i]
            name = f"{Path(path).name}-{content}"
            entries = self._list(i)["data"]
            found = served_adapter(entries, path, name, shown)
            if found is None:
                for old in stale_adapters(
                    entries, path, name
                ):  # the adapter's earlier weights: never used again
                    try:
                        self.client.request(
                            "POST", "/unload_lora_adapter", {"lora_name": old}, start=i, text=True
                        )
                    except EndpointError as exc:
                        log.warning("%s", f"could not unload {old} (an earlier content of {path}): {exc}")
                try:  # vLLM answers in plain text
                    self.client.request(
                        "POST",
                        "/load_lora_adapter",
                        {"lora_name": name, "lora_path": path},
                        start=i,
                        text=True,
                    )
                except EndpointError as exc:
                    if "already been loaded" not in str(exc):
                        raise EndpointError(
                            f"{exc}; fix: serve the adapter with `python -m kit serve … --adapter "
                            f"{path}`, or start the server with `python -m kit serve … --runtime-lora`"
                        ) from exc
                entries = self._list(i)["data"]
                found = served_adapter(entries, path, name, shown)
                if found is None:  # loaded, so the server must list it from this path now
                    raise EndpointError(
                        f"{shown}/models: does not list adapter {name} from {path} after loading it"
                    )
            self._models[url] = {"data": entries}
            self._adapters[key] = found
            return found

    def _model(self, url: str, adapter: str | None) -> str:
        return self.served_model if adapter is None else self._adapter_name(url, adapter)

    def _send(
        self,
        path: str,
        requests: Sequence[ChatRequest],
        bodies: list[dict],
        read: Callable[[Any, int], Any],
        counted: tuple[str, str],
    ) -> list[Any]:
        """The requests' results, each reply checked and read by ``read(reply, index)`` in its worker (a reply of
        the wrong shape is that request's failure); usage counted from the replies that came back, and
        ``counted`` = (usage field, cost counter) reported for a backend without a local tokenizer."""
        jobs = [
            lambda url, r=r, b=b: {"model": self._model(url, r.adapter), **b}
            for r, b in zip(requests, bodies)
        ]
        used: list[dict] = []

        def parse_for(i: int):
            def parse(reply):
                value = read(reply, i)
                counts = replies.usage(reply)
                with self._usage_lock:
                    used.append(counts)
                    self.stats["requests"] += 1
                    self.stats["prompt_tokens"] += counts["prompt_tokens"]
                    self.stats["generated_tokens"] += counts["completion_tokens"]
                    self.stats["prefill_tokens_saved"] += counts["cached_tokens"]
                return value

            return parse

        try:
            return self.client.post_many(
                path, jobs, [parse_for(i) for i in range(len(requests))], self.on_answer
            )
        finally:
            self.stats["retries"] = self.client.retries
            # with a local tokenizer the cache counts tokens as for every backend; without one, the endpoint's
            # own counts of the requests answered (this is the main thread: the cost stages are context variables)
            if self.tokenizer is None and cost.measuring():
                cost.count(**{counted[1]: sum(u[counted[0]] for u in used)})

    # the verbs ----------------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[str]:
        if not requests:
            return []
        if params.min_new_tokens > params.max_new_tokens:
            raise ValueError(
                f"min_new_tokens={params.min_new_tokens} exceeds max_new_tokens={params.max_new_tokens}"
            )
        common: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "top_p": params.top_p,
            "temperature": 0.0 if params.greedy else params.temperature,
        }
        if params.stop:
            common["stop"] = list(params.stop)
        if params.min_new_tokens:
            common["min_tokens"] = params.min_new_tokens  # a vLLM extension
        bodies = [
            {
                "messages": r.chat,
                **common,
                **(
                    {"seed": request_seed(params.seed, r)}
                    if params.seed is not None and not params.greedy
                    else {}
                ),
            }
            for r in requests
        ]
        # an API key the server echoes into its text never reaches the cache or the records
        return self._send(
            "/chat/completions",
            requests,
            bodies,
            lambda reply, i: secrets.scrub_values(replies.chat_text(reply)),
            ("completion_tokens", "generated_tokens"),
        )

    def generate_sampled(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Sampled]:
        refuse_stop_strings(params, self.name)
        if self.api != "completions":
            raise EndpointError(
                f"{self.identity}: api: chat renders prompts on the server and names no token ids, so "
                "no sampled log-probabilities; serve the model behind /v1/completions (api: completions)"
            )
        if not requests:
            return []
        common: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "top_p": params.top_p,
            "temperature": 0.0 if params.greedy else params.temperature,
            "logprobs": 0,
            "return_tokens_as_token_ids": True,
        }
        if params.min_new_tokens:
            common["min_tokens"] = params.min_new_tokens
        bodies = [
            {
                "prompt": encode_prompt(self.tokenizer, r.chat),
                **common,
                **(
                    {"seed": request_seed(params.seed, r)}
                    if params.seed is not None and not params.greedy
                    else {}
                ),
            }
            for r in requests
        ]

        def read(reply, i: int) -> Sampled:
            text, ids, values, stopped = replies.sampled(reply)
            # a log-probability the server does not give is NaN: trl's "not known"
            return Sampled(
                secrets.scrub_values(text), ids, [math.nan if v is None else v for v in values], stopped
            )

        return self._send("/completions", requests, bodies, read, ("completion_tokens", "generated_tokens"))

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        if not requests:
            return []
        if self.api != "completions":
            raise EndpointError(
                f"{self.identity}: api: chat gives no prompt log-probabilities, so no score; "
                "serve the model behind /v1/completions (api: completions)"
            )
        built = [score_prompt(self.tokenizer, r) for r in requests]
        bodies = [
            {"prompt": ids, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 0}
            for ids, _ in built
        ]

        def read(reply, i: int) -> list[float]:
            ids, n_context = built[i]
            # a server that ignores echo (llama.cpp) gives no log-probabilities at all for logprobs 0
            lp = (
                replies.echo_logprobs(reply)
                if replies.first_choice(reply).get("logprobs") is not None
                else []
            )
            if len(lp) < len(ids) or any(v is None for v in lp[n_context : len(ids)]):
                raise replies.ReplyError(
                    f"echo gave {len(lp)} prompt log-probabilities for a {len(ids)}-token prompt; "
                    "the server must support echo with logprobs"
                )
            return [float(v) for v in lp[n_context : len(ids)]]

        return self._send("/completions", requests, bodies, read, ("prompt_tokens", "scored_tokens"))

    def choice_probs(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        if not requests:
            return []
        if self.api == "completions":
            bodies = [
                {
                    "prompt": encode_prompt(self.tokenizer, r.chat, r.prefix),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": self.top_logprobs,
                    "return_tokens_as_token_ids": True,
                }
                for r in requests
            ]
            path = "/completions"
        else:
            bodies = [
                {
                    "messages": r.chat + ([{"role": "assistant", "content": r.prefix}] if r.prefix else []),
                    **({"continue_final_message": True, "add_generation_prompt": False} if r.prefix else {}),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": True,
                    "top_logprobs": self.top_logprobs,
                }
                for r in requests
            ]
            path = "/chat/completions"

        def read(reply, i: int) -> ChoiceResult:
            labels = requests[i].labels
            by_id, by_text = replies.first_token_top(reply)
            if self.api == "completions" and by_id is not None:
                return choice_from_logprobs(by_id, label_token_ids(self.tokenizer, labels))
            return choice_from_logprobs(by_text, {label: [label, " " + label] for label in labels})

        return self._send(path, requests, bodies, read, ("prompt_tokens", "scored_tokens"))


def served_base(models: dict, url: str, wanted: str | None) -> str:
    """The served model id to send: ``wanted`` if the server lists it, else the server's only base model."""
    entries = models.get("data") or []
    ids = [m.get("id") for m in entries]
    if wanted is not None:
        if wanted not in ids:
            serves = ", ".join(map(str, ids)) or "nothing"
            raise EndpointError(
                f"{url}/models: model {wanted!r} is not served (it serves {serves}); fix model.served_model"
            )
        return wanted
    bases = [m["id"] for m in entries if not m.get("parent")]
    if len(bases) != 1:
        raise EndpointError(
            f"{url}/models: serves {len(bases)} base models ({', '.join(bases) or 'none'}); "
            "set model.served_model to one of them"
        )
    return bases[0]


def top_logprobs_by_id(entry: dict) -> dict[int, float]:
    """A completions reply's first-token top log-probabilities keyed by token id ("token_id:N" keys)."""
    by_id, _ = replies.first_token_top({"choices": [{"logprobs": {"top_logprobs": [entry]}}]})
    if by_id is None:
        raise ValueError(
            f"top_logprobs keys {list(entry)[:3]} are not token ids; the server ignored "
            "return_tokens_as_token_ids"
        )
    return by_id


def choice_from_chat(top: Sequence[dict], labels: Sequence[str]) -> ChoiceResult:
    """Option probabilities from a chat reply's first-token ``top_logprobs`` (token texts): a label counts
    through its text with and without a leading space, as :func:`kit.llm.chat.label_token_ids` spells it."""
    _, by_text = replies.first_token_top(
        {"choices": [{"logprobs": {"content": [{"top_logprobs": list(top)}]}}]}
    )
    return choice_from_logprobs(by_text, {label: [label, " " + label] for label in labels})


def identity_string(served: str, urls: Sequence[str] | str) -> str:
    """``served@url,url`` with each URL's userinfo, query and fragment left out."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    return f"{served}@{','.join(secrets.public_url(u) for u in urls)}"


def local_tokenizer(model):
    """The served model's tokenizer from ``model.name`` (a registered name, hub id or folder), or None for a
    chat-only endpoint whose name is not a local model."""
    from transformers import AutoTokenizer

    from kit.llm.models import REGISTERED, resolve_model

    if model.api == "chat" and model.name not in REGISTERED and not Path(model.name).expanduser().exists():
        return None
    resolved = resolve_model(model.name, model.revision)
    try:
        return AutoTokenizer.from_pretrained(
            resolved.path, revision=resolved.revision, trust_remote_code=model.trust_remote_code
        )
    except OSError:
        if model.api == "chat":  # only token counts need it there: the endpoint's own counts stand in
            return None
        raise
