"""Drawing the next token from the temperature / nucleus (top-p) distribution without sorting the vocabulary.

transformers' top-p warper sorts every row's whole vocabulary at every step, and its sampler
draws one exponential variate per vocabulary entry: with 32 rows of a 49k-token vocabulary that
was half of a sampled ``generate`` call on a 2-core CPU. :class:`NucleusSampler` finds the
nucleus by a partial sort (``topk``, widened until it holds ``top_p`` of every row's mass) and
draws by inverse CDF, one uniform number per row. The distribution is the same: softmax of
logits / temperature, restricted to the smallest set of most likely tokens whose mass reaches
``top_p``, renormalised.

It runs as the last logits processor and returns logits that are −inf except at the drawn
token, so ``generate`` runs it under greedy decoding; processors before it (e.g. the one that
holds back end-of-sequence until ``min_new_tokens``) still shape the distribution it draws from.
Draws use torch's global generator, which the backend seeds per call.

With ``keep_logprobs`` each call also keeps, per row, the log-probability the drawn token had in the
distribution it was drawn from (log-softmax at the temperature, less the log of the nucleus's mass):
the sampling log-probabilities trl's importance-sampling correction reads (``Backend.generate_sampled``).
:class:`ChosenLogprob` keeps the same for greedy decoding (the untempered log-softmax of the chosen token).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

FIRST_WIDTH = 64  # tokens the partial sort starts with; widened 4× for rows whose nucleus is wider


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's nucleus: (weights, token ids), the weights zero outside it.

    For ``top_p < 1``, both are ``(rows, k)`` with the most likely tokens first, ``k`` the smallest
    tried width whose top tokens hold ``top_p`` of every row's mass; a token is in the nucleus when
    the tokens more likely than it hold less than ``top_p``. For ``top_p >= 1`` the weights are
    ``probs`` itself and the ids ``None`` (column = token id).
    """
    if top_p >= 1:
        return probs, None
    vocab, width = probs.shape[-1], FIRST_WIDTH
    while True:
        width = min(width, vocab)
        top, ids = probs.topk(width, dim=-1)
        if width == vocab or bool((top.sum(-1) >= top_p).all()):
            break
        width *= 4
    before = top.cumsum(-1) - top
    return top.masked_fill(before >= top_p, 0.0), ids


def draw(weights: torch.Tensor) -> torch.Tensor:
    """One column per row, with probability proportional to its weight (inverse CDF)."""
    cdf = weights.cumsum(-1)
    u = torch.rand((weights.shape[0], 1), device=weights.device) * cdf[:, -1:]
    # right=True skips zero-weight columns: the first column whose cumulative weight exceeds u;
    # u rounded up to the total would land past the last one that has weight
    last = (weights > 0).int().cumsum(-1).argmax(-1)
    return torch.minimum(torch.searchsorted(cdf, u, right=True)[:, 0], last)


class NucleusSampler(LogitsProcessor):
    """Draws each row's next token from softmax(logits / temperature) within its top-p nucleus."""

    def __init__(self, temperature: float, top_p: float = 1.0, keep_logprobs: bool = False):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(
                f"NucleusSampler needs temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
            )
        self.temperature, self.top_p, self.keep_logprobs = temperature, top_p, keep_logprobs
        self.logprobs: list[torch.Tensor] = []  # one (rows,) tensor per call, with keep_logprobs

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        tempered = scores.float() / self.temperature
        probs = torch.softmax(tempered, dim=-1)
        weights, ids = nucleus(probs, self.top_p)
        column = draw(weights)
        token = column if ids is None else ids.gather(-1, column[:, None])[:, 0]
        if self.keep_logprobs:
            chosen = torch.log_softmax(tempered, dim=-1).gather(-1, token[:, None])[:, 0]
            self.logprobs.append(chosen - torch.log(weights.sum(-1)) if ids is not None else chosen)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, token[:, None], 0.0)


class ChosenLogprob(LogitsProcessor):
    """Keeps each row's log-softmax at its greedy (argmax) token; changes no logits (the last processor)."""

    def __init__(self):
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.logprobs.append(torch.log_softmax(scores.float(), dim=-1).max(-1).values)
        return scores
