"""Replies of real OpenAI-compatible servers, recorded once and replayed on 127.0.0.1 in the fast tier.

``tests/fixtures/servers/<name>.json`` holds one server's exchanges (method, path, request body, status,
reply) for what the kit asks of it: ``/v1/models``, :func:`kit.llm.openai_backend.probe`'s requests, and a
``generate``, a ``choice_probs`` and (``api: completions``) a ``score`` through :class:`OpenAIBackend`.
:class:`Replay` answers those requests as the server did; ``tests/test_served_compat.py`` reads the
compatibility table of ``docs/backends.md`` off the replays.

Recording goes through :class:`Record`, a proxy on 127.0.0.1 in front of the real server (a loopback server
started for the purpose: ``make test-llamacpp`` for llama.cpp, ``python -m kit serve`` for vLLM)::

    python tests/recorded.py vllm http://127.0.0.1:8000/v1 --api completions --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "servers"
SERVERS = {  # fixture name -> what the table calls it
    "vllm": "vLLM (`vllm serve`, `python -m kit serve`)",
    "llamacpp": "llama.cpp's `llama-server` (under Ollama and LM Studio)",
    "hosted-chat": "a hosted chat API (OpenAI's chat completions)",
}
# what the kit asks in the recordings: the same requests in every server's file
PROMPT = [{"role": "user", "content": "Is the sky blue on a clear day? Answer A for yes or B for no."}]


def _key(method: str, path: str, body) -> str:
    return json.dumps([method, path.split("?")[0], body], sort_keys=True)


def _serve(handler_cls) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


class Replay:
    """A loopback server answering each recorded request as the real server did (the k-th of several equal
    requests as the k-th was answered, the last one again after that); anything else gets a 404."""

    def __init__(self, name: str):
        self.fixture = json.loads((FIXTURES / f"{name}.json").read_text())
        self.answers: dict[str, list] = {}
        for ex in self.fixture["exchanges"]:
            self.answers.setdefault(_key(ex["method"], ex["path"], ex["body"]), []).append(ex)
        self.served: dict[str, int] = {}
        self.lock = threading.Lock()

    def _answer(self, method: str, path: str, body):
        key = _key(method, path, body)
        with self.lock:
            found = self.answers.get(key)
            if not found:
                return 404, "text/plain", b"not recorded"
            n = self.served.get(key, 0)
            self.served[key] = n + 1
            ex = found[min(n, len(found) - 1)]
        reply = ex["reply"]
        raw = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
        return ex["status"], "text/plain" if isinstance(reply, str) else "application/json", raw

    def __enter__(self) -> str:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _go(self, body):
                status, kind, raw = replay._answer(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._go(None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._go(json.loads(self.rfile.read(n)) if n else None)

        self._httpd, url = _serve(Handler)
        return url

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Record:
    """A loopback proxy in front of a real server: every exchange passes through and is kept."""

    def __init__(self, upstream: str):
        import httpx

        self.upstream, self.exchanges = upstream.rstrip("/"), []
        self._http = httpx.Client(timeout=600.0)

    def __enter__(self) -> str:
        record = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _go(self, body):
                path = self.path.removeprefix("/v1")
                reply = record._http.request(self.command, record.upstream + path, json=body)
                try:
                    kept = reply.json()
                except ValueError:
                    kept = reply.text
                record.exchanges.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "status": reply.status_code,
                        "reply": kept,
                    }
                )
                raw = reply.content
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._go(None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._go(json.loads(self.rfile.read(n)) if n else None)

        self._httpd, url = _serve(Handler)
        return url

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def ask_everything(url: str, api: str, model: str | None, served: str | None = None) -> dict:
    """What the kit asks of a server, through its own client: the probe, then each verb the api has (a verb the
    server cannot answer is recorded as its failure)."""
    from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
    from kit.llm.errors import EndpointError
    from kit.llm.openai_backend import OpenAIBackend, probe

    tokenizer = None
    if model is not None:
        from transformers import AutoTokenizer

        from kit.llm.models import resolve_model

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(model).path)
    backend = OpenAIBackend([url], served_model=served, api=api, tokenizer=tokenizer, max_retries=0)
    offers = probe(backend.client, 0, backend.served_model, api)
    out = {"offers": offers.__dict__, "served": backend.served_model}
    calls = {
        "generate": lambda: backend.generate([ChatRequest(PROMPT)], GenParams(max_new_tokens=8)),
        "choice_probs": lambda: backend.choice_probs([ChoiceRequest(PROMPT, ["A", "B"], prefix="Answer:")]),
    }
    if api == "completions":
        calls["score"] = lambda: backend.score([ScoreRequest(PROMPT, "A")])
    for verb, call in calls.items():
        try:
            result = call()[0]
            out[verb] = (
                result if not hasattr(result, "probs") else {"probs": result.probs, "mass": result.label_mass}
            )
        except EndpointError as exc:
            out[verb] = f"error: {exc}"
    backend.close()
    return out


TABLE_HEAD = [
    "| server | `api` | echo with prompt logprobs (`score`) | first-token top logprobs (`choice_probs`) "
    "| seeds | verbs the kit takes | top-logprob shape |",
    "|---|---|---|---|---|---|---|",
]


def shape(fixture: dict) -> str:
    """How the server's replies carry the first token's alternatives (from its recorded replies)."""
    for ex in fixture["exchanges"]:
        reply = ex["reply"]
        if not isinstance(reply, dict) or not reply.get("choices"):
            continue
        lp = (reply["choices"][0] or {}).get("logprobs") or {}
        content = lp.get("content")
        if isinstance(content, list) and content and content[0].get("top_logprobs"):
            ids = "id" in content[0]["top_logprobs"][0]
            return "chat-style `content[].top_logprobs`" + (" with token ids" if ids else " (token texts)")
        tops = lp.get("top_logprobs")
        if isinstance(tops, list) and tops and tops[0]:
            keyed = all(k.startswith("token_id:") for k in tops[0])
            return "completions `top_logprobs` list" + (" by token id" if keyed else " (token texts)")
    return "none"


def offers(name: str):
    """What :func:`kit.llm.openai_backend.probe` finds the recorded server to offer, asked of its replay."""
    from kit.llm import replies
    from kit.llm.openai_backend import Client, probe, served_base

    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    with Replay(name) as url:
        client = Client([url], max_retries=0)
        served = served_base({"data": client.request("GET", "/models", parse=replies.models)}, url, None)
        found = probe(client, 0, served, fixture["api"])
        client.close()
    return fixture, found


def table() -> list[str]:
    """The compatibility table of docs/backends.md, read off the recorded servers."""
    yes = {True: "yes", False: "no", None: "not told"}
    rows = list(TABLE_HEAD)
    for name, label in SERVERS.items():
        if not (FIXTURES / f"{name}.json").is_file():
            continue
        fixture, found = offers(name)
        rows.append(
            f"| {label} | `{fixture['api']}` | {yes[found.echo] if fixture['api'] == 'completions' else 'no (chat)'} "
            f"| {yes[found.top_logprobs]} | {yes[found.seeds]} | {', '.join(found.verbs())} | {shape(fixture)} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="fixture name, e.g. vllm, llamacpp")
    p.add_argument("url", help="the real server's /v1 URL (on 127.0.0.1)")
    p.add_argument("--api", choices=("completions", "chat"), default="completions")
    p.add_argument("--model", help="the local model whose tokenizer the kit uses (api: completions)")
    p.add_argument("--served", help="the server's model id (default: its only base model)")
    p.add_argument("--note", default="", help="how the server was started, kept in the fixture")
    args = p.parse_args(argv)
    record = Record(args.url)
    with record as proxy_url:
        seen = ask_everything(proxy_url, args.api, args.model, args.served)
    exchanges = record.exchanges
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{args.name}.json"
    path.write_text(
        json.dumps(
            {
                "server": args.name,
                "api": args.api,
                "model": args.model,
                "note": args.note,
                "seen": seen,
                "exchanges": exchanges,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"{path}: {len(exchanges)} exchanges; offers {seen['offers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
