"""The openai backend against a real ``vllm serve`` of the embedded model on 127.0.0.1 (started by
``kit.llm.serve.Server`` with the kit's engine settings), beside the transformers backend on the same
requests, as ``tests/test_vllm_engine.py`` compares the in-process engine: ``make test-vllm`` runs it.

Tolerances are the engine test's, but for ``choice_probs``: a server returns the first token's top
``model.top_logprobs`` (20) alternatives, not the whole vocabulary, so a label spelling outside them
carries no mass; probabilities are compared within ``SERVED_PROB_ATOL``.
"""

from __future__ import annotations

import pytest
from conftest import require_vllm  # noqa: E402

require_vllm()

from kit.config import ModelParams  # noqa: E402
from kit.llm.base import ChatRequest, ChoiceRequest, GenParams, ScoreRequest  # noqa: E402
from kit.llm.models import SMOLLM2  # noqa: E402
from tests.test_vllm_engine import (  # noqa: E402,F401
    NEAR_TIE,
    SCORE_ATOL,
    TOKENS,
    adapters,
    check_sampled,
    first_divergence,
    model,
    questions,
    reference,
    top_two_gap,
)

pytestmark = pytest.mark.vllm
SERVED_PROB_ATOL = 5e-3


@pytest.fixture(scope="module")
def served(adapters, tmp_path_factory):
    """The embedded model served with adapter 1 named on the command line by its content (as ``kit serve --adapter``
    does); adapter 2 is loaded at run time, which the server allows only when asked (``--runtime-lora``)."""
    from kit.llm.openai_backend import OpenAIBackend, served_adapter_name
    from kit.llm.serve import Server, free_port, serve_args

    port = free_port()
    args = serve_args(
        model("vllm"),
        port,
        served_name="smollm2",
        lora_modules={served_adapter_name(adapters[0]): adapters[0]},
        cpu=True,
    )
    log = tmp_path_factory.mktemp("serve") / "vllm-serve.log"
    with Server(args, log, port, runtime_lora=True) as server:
        print(f"vllm serve answered after {server.start_seconds:.1f} s")
        backend = OpenAIBackend.from_params(
            ModelParams(name=SMOLLM2, backend="openai", base_url=server.url, served_model="smollm2")
        )
        yield backend
        backend.close()


def test_served_greedy_text_matches_transformers_or_diverges_only_at_a_near_tie(served, reference):
    reqs = questions()
    gp = GenParams(max_new_tokens=TOKENS)
    got, want = served.generate(reqs, gp), reference.generate(reqs, gp)
    tok = reference.tokenizer
    diverged = []
    for req, a, b in zip(reqs, got, want):
        at = first_divergence(tok, a, b)
        if at is None:
            continue
        gap = top_two_gap(reference, req, tok.encode(b, add_special_tokens=False)[:at])
        diverged.append((at, round(gap, 4)))
        assert gap < NEAR_TIE, (
            f"the server left the transformers text at token {at}, where its top two differ by {gap:.3f}"
        )
    print(f"served greedy: {len(reqs) - len(diverged)}/{len(reqs)} rows identical; divergences: {diverged}")
    assert len(diverged) <= len(reqs) // 4


def test_served_score_matches_transformers_for_the_base_and_both_adapters(served, reference, adapters):
    reqs = [
        ScoreRequest(r.chat, text, adapter=adapter)
        for r, text in zip(
            questions(3), ["Family comes first.", "I think so, yes.", "It depends on the village."]
        )
        for adapter in (None, *adapters)
    ]
    for got, want in zip(served.score(reqs), reference.score(reqs)):
        assert len(got) == len(want)
        assert max(abs(x - y) for x, y in zip(got, want)) < SCORE_ATOL
    from kit.llm.openai_backend import served_adapter_name

    names = set(served._adapters.values())
    # adapter 1 by its --lora-modules content name, adapter 2 loaded at run time under its content name
    assert names == {served_adapter_name(adapters[0]), served_adapter_name(adapters[1])}


def test_served_choice_probs_match_transformers(served, reference, adapters):
    reqs = [
        ChoiceRequest(
            r.chat + [{"role": "user", "content": "Answer A, B, C or D."}],
            ["A", "B", "C", "D"],
            adapter=adapter,
            prefix="Answer:",
        )
        for r in questions(4)
        for adapter in (None, adapters[1])
    ]
    for got, want in zip(served.choice_probs(reqs), reference.choice_probs(reqs)):
        assert max(abs(got.probs[k] - want.probs[k]) for k in got.probs) < SERVED_PROB_ATOL
        assert (
            got.label_mass <= want.label_mass + SERVED_PROB_ATOL
        )  # top-20 only: never more than the whole vocabulary
        assert got.label_mass == pytest.approx(want.label_mass, abs=SERVED_PROB_ATOL)


def test_served_seeded_sampling_reproduces_itself_and_samples_differ(served):
    chat = questions(1)[0].chat
    reqs = [ChatRequest(chat, sample=k) for k in range(4)]
    gp = GenParams(temperature=1.0, top_p=0.95, max_new_tokens=TOKENS, seed=7)
    first, again = served.generate(reqs, gp), served.generate(reqs, gp)
    assert first == again
    assert len(set(first)) == len(first)


def test_served_sampled_tokens_and_log_probabilities_are_the_samplers(served, reference):
    """/v1/completions with logprobs 0 and token ids, the server run with --logprobs-mode processed_logprobs
    (kit.llm.serve): what the in-process engine gives (tests/test_vllm_engine.py::check_sampled)."""
    print(
        f"served vLLM: sampling log-probabilities within {check_sampled(served, reference):.2e} of transformers'"
    )
