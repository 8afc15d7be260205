"""The nucleus sampler against transformers' own warpers and an exact chi-square test."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from kit.llm.base import ChatRequest, GenParams
from kit.llm.sampling import NucleusSampler, draw, nucleus


def _kept_by_transformers(logits: torch.Tensor, temperature: float, top_p: float) -> list[set[int]]:
    warped = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
    return [set(torch.nonzero(row > float("-inf"))[:, 0].tolist()) for row in warped]


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.99])
def test_nucleus_is_the_set_transformers_keeps(top_p):
    gen = torch.Generator().manual_seed(0)
    # a peaked row, a flat row (its nucleus is wider than the first partial sort) and ordinary ones
    logits = torch.randn(6, 5000, generator=gen) * torch.tensor([[8.0], [0.05], [1.0], [2.0], [3.0], [0.5]])
    weights, ids = nucleus(torch.softmax(logits / 0.7, dim=-1), top_p)
    ours = [set(ids[r][weights[r] > 0].tolist()) for r in range(len(logits))]
    assert ours == _kept_by_transformers(logits, 0.7, top_p)
    assert ids.shape[1] > 64  # the flat row made the partial sort widen


def test_draws_follow_the_nucleus_distribution_exactly():
    """200k draws from one row: chi-square against the renormalised nucleus, nothing outside it."""
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -3.0, -6.0]])
    temperature, top_p, n = 0.8, 0.9, 200_000
    probs = torch.softmax(logits / temperature, dim=-1)[0].double()
    order = probs.argsort(descending=True)
    before = probs[order].cumsum(0) - probs[order]
    expected = torch.zeros_like(probs)
    expected[order[before < top_p]] = probs[order[before < top_p]]
    expected /= expected.sum()

    torch.manual_seed(3)
    sampler = NucleusSampler(temperature, top_p)
    tokens = torch.cat([sampler(None, logits.expand(10_000, -1)).argmax(-1) for _ in range(n // 10_000)])
    counts = np.bincount(tokens.numpy(), minlength=len(probs))
    inside = expected.numpy() > 0
    assert counts[~inside].sum() == 0
    assert chisquare(counts[inside], expected.numpy()[inside] * n).pvalue > 1e-3


def test_draw_never_picks_a_zero_weight_column():
    weights = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    torch.manual_seed(0)
    picks = torch.stack([draw(weights) for _ in range(2000)])
    assert set(picks[:, 0].tolist()) == {1} and set(picks[:, 1].tolist()) == {0, 1}


def test_top_p_one_samples_the_whole_vocabulary_and_earlier_processors_count():
    logits = torch.zeros(4000, 5)
    ids = torch.zeros(4000, 3, dtype=torch.long)
    # end-of-sequence (token 4) is held back until 5 new tokens: the sampler must never draw it
    processors = LogitsProcessorList(
        [MinNewTokensLengthLogitsProcessor(3, 5, eos_token_id=4), NucleusSampler(1.0, 1.0)]
    )
    torch.manual_seed(0)
    tokens = processors(ids, logits.clone()).argmax(-1)
    counts = np.bincount(tokens.numpy(), minlength=5)
    assert counts[4] == 0 and chisquare(counts[:4]).pvalue > 1e-3


def test_sampler_rejects_greedy_settings():
    with pytest.raises(ValueError, match="temperature > 0"):
        NucleusSampler(0.0, 0.9)


def test_sampled_generation_is_seeded_and_respects_min_new_tokens(tiny_backend):
    reqs = [
        ChatRequest([{"role": "user", "content": f"Tell me about {w}."}]) for w in ("rain", "salt", "maps")
    ]
    sampled = GenParams(max_new_tokens=8, min_new_tokens=8, temperature=0.9, top_p=0.8, seed=4)
    before = tiny_backend.stats["generated_tokens"]
    first = tiny_backend.generate(reqs, sampled)
    assert tiny_backend.stats["generated_tokens"] - before == 3 * 8  # no row stopped early
    assert first == tiny_backend.generate(reqs, sampled)
    assert first != tiny_backend.generate(
        reqs, GenParams(max_new_tokens=8, min_new_tokens=8, temperature=0.9, top_p=0.8, seed=5)
    )
