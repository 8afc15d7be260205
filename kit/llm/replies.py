"""The shapes an OpenAI-compatible server's replies must have, checked before the kit reads a value.

A server is outside the kit's control: a proxy can answer with a JSON list, a server with ``usage: "lots"``,
``content: 12345``, a ``NaN`` log-probability or ``logprob: 5.0``. Each reader here takes a decoded reply and
returns plain Python values or raises :class:`ReplyError`, one line naming the field (``choices[0].logprobs…``)
and what it holds, which the client makes that request's failure. Log-probabilities must be finite and ≤ 0
(``LOGPROB_SLACK`` allows float rounding, and the value is clipped to 0), and a token's top alternatives
may not hold more than all of the probability; token counts are whole numbers ≥ 0.

Two shapes of first-token alternatives are read (:func:`first_token_top`): the legacy completions list
``logprobs.top_logprobs[0] = {token: logprob}`` (vLLM; ``token_id:N`` keys with
``return_tokens_as_token_ids``) and the chat-style ``logprobs.content[0].top_logprobs = [{token, logprob,
id?}]`` (chat endpoints; llama.cpp's ``llama-server`` on ``/v1/completions`` too, with token ``id``).
"""

from __future__ import annotations

import math
from typing import Any

from scipy.special import logsumexp

LOGPROB_SLACK = 1e-6  # float rounding above 0 (log of a probability computed as 1.0000001)
MASS_SLACK = 1e-3  # the top alternatives' probabilities may sum to 1 + this


class ReplyError(ValueError):
    """A reply that breaks the schema: one line, the field's path first."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ReplyError(f"{where} is a {type(value).__name__} ({_shown(value)}), not a JSON object")
    return value


def seq(value: Any, where: str, non_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise ReplyError(f"{where} is a {type(value).__name__} ({_shown(value)}), not a list")
    if non_empty and not value:
        raise ReplyError(f"{where} is an empty list")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReplyError(f"{where} is a {type(value).__name__} ({_shown(value)}), not a string")
    return value


def count(value: Any, where: str) -> int:
    """A token count: a whole number ≥ 0 (``None``: 0, the server did not count)."""
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or value < 0
    ):
        raise ReplyError(f"{where} is {_shown(value)}; a token count is a whole number ≥ 0")
    return int(value)


def logprob(value: Any, where: str) -> float:
    """A log-probability: finite and ≤ 0 (rounding above 0 within ``LOGPROB_SLACK`` is clipped to 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReplyError(
            f"{where} is a {type(value).__name__} ({_shown(value)}); a log-probability is a number"
        )
    if not math.isfinite(value) or value > LOGPROB_SLACK:
        raise ReplyError(f"{where} is {value!r}; a log-probability is finite and ≤ 0")
    return min(float(value), 0.0)


def first_choice(reply: Any) -> dict:
    reply = obj(reply, "the reply")
    choices = seq(reply.get("choices"), "choices", non_empty=True)
    return obj(choices[0], "choices[0]")


def usage(reply: dict) -> dict[str, int]:
    """``prompt_tokens``, ``completion_tokens`` and ``cached_tokens`` (the prefix cache's), all ≥ 0."""
    found = reply.get("usage")
    if found is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    found = obj(found, "usage")
    details = found.get("prompt_tokens_details")
    details = {} if details is None else obj(details, "usage.prompt_tokens_details")
    return {
        "prompt_tokens": count(found.get("prompt_tokens"), "usage.prompt_tokens"),
        "completion_tokens": count(found.get("completion_tokens"), "usage.completion_tokens"),
        "cached_tokens": count(details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens"),
    }


def models(reply: Any) -> list[dict]:
    """``/v1/models``: entries with an ``id`` (and, for adapters, ``root`` and ``parent``)."""
    entries = seq(obj(reply, "the /models reply").get("data"), "data")
    out = []
    for i, entry in enumerate(entries):
        entry = obj(entry, f"data[{i}]")
        text(entry.get("id"), f"data[{i}].id")
        for key in ("root", "parent"):
            if entry.get(key) is not None:
                text(entry[key], f"data[{i}].{key}")
        out.append(entry)
    return out


def chat_text(reply: Any) -> str:
    """The assistant message's text of a chat completion."""
    choice = first_choice(reply)
    message = obj(choice.get("message"), "choices[0].message")
    if message.get("content") is None:
        raise ReplyError("choices[0].message.content is missing (null)")
    return text(message["content"], "choices[0].message.content")


def completion_text(reply: Any) -> str:
    return text(first_choice(reply).get("text"), "choices[0].text")


def echo_logprobs(reply: Any) -> list[float | None]:
    """A completions reply's ``token_logprobs`` (``echo``: the prompt's first, which is null, then the rest)."""
    lp = obj(first_choice(reply).get("logprobs"), "choices[0].logprobs")
    values = seq(lp.get("token_logprobs"), "choices[0].logprobs.token_logprobs")
    return [
        None if v is None else logprob(v, f"choices[0].logprobs.token_logprobs[{i}]")
        for i, v in enumerate(values)
    ]


def _token_id(key: str) -> int | None:
    if key.startswith("token_id:"):
        try:
            return int(key.removeprefix("token_id:"))
        except ValueError:
            return None
    return None


def first_token_top(reply: Any) -> tuple[dict[int, float] | None, dict[str, float]]:
    """The first generated token's top alternatives, read from either shape (module docstring):
    (log-probabilities by token id, or None where the server gave no ids; by token text, a text under
    several ids summed). Raises when neither shape is there, a value is not a log-probability, or the
    alternatives hold more than all of the probability."""
    where = "choices[0].logprobs"
    lp = obj(first_choice(reply).get("logprobs"), where)
    by_id: dict[int, float] | None = {}
    by_text: dict[str, list[float]] = {}
    if isinstance(lp.get("content"), list):  # chat-style: content[0].top_logprobs = [{token, logprob, id?}]
        content = seq(lp["content"], f"{where}.content", non_empty=True)
        first = obj(content[0], f"{where}.content[0]")
        tops = seq(first.get("top_logprobs"), f"{where}.content[0].top_logprobs", non_empty=True)
        for j, item in enumerate(tops):
            at = f"{where}.content[0].top_logprobs[{j}]"
            item = obj(item, at)
            value = logprob(item.get("logprob"), f"{at}.logprob")
            token = text(item.get("token"), f"{at}.token")
            tid = item.get("id")
            if by_id is not None and isinstance(tid, int) and not isinstance(tid, bool) and tid >= 0:
                by_id[tid] = value
            elif by_id is not None and _token_id(token) is not None:
                by_id[_token_id(token)] = value
            else:
                by_id = None
            by_text.setdefault(token, []).append(value)
    elif lp.get("top_logprobs") is not None:  # legacy completions: top_logprobs[0] = {token: logprob}
        tops = seq(lp["top_logprobs"], f"{where}.top_logprobs", non_empty=True)
        first = obj(tops[0], f"{where}.top_logprobs[0]")
        if not first:
            raise ReplyError(f"{where}.top_logprobs[0] is empty")
        for token, raw in first.items():
            value = logprob(raw, f"{where}.top_logprobs[0][{token!r}]")
            tid = _token_id(token)
            if by_id is not None and tid is not None:
                by_id[tid] = value
            else:
                by_id = None
            by_text.setdefault(token, []).append(value)
    else:
        raise ReplyError(
            f"{where} has neither content[0].top_logprobs nor top_logprobs (the server gave no "
            "first-token alternatives)"
        )
    merged = {t: float(logsumexp(v)) for t, v in by_text.items()}
    # distinct tokens' probabilities add up to at most 1 (a token text under several ids is still several tokens)
    total = float(logsumexp([x for v in by_text.values() for x in v]))
    if total > math.log1p(MASS_SLACK):
        raise ReplyError(
            f"{where}: the first token's top alternatives hold probability {math.exp(total):.4g}, "
            "more than 1; they are not log-probabilities of one distribution"
        )
    return (by_id or None), merged


def sampled(reply: Any) -> tuple[str, list[int], list[float | None], bool]:
    """A ``/v1/completions`` reply asked with ``logprobs: 0`` and ``return_tokens_as_token_ids``: its text, the drawn
    token ids, each one's log-probability (None where the server gives none) and whether it stopped on its last
    token (finish reason ``stop``)."""
    choice = first_choice(reply)
    lp = obj(choice.get("logprobs"), "choices[0].logprobs")
    tokens = seq(lp.get("tokens"), "choices[0].logprobs.tokens")
    values = seq(lp.get("token_logprobs"), "choices[0].logprobs.token_logprobs")
    if len(tokens) != len(values):
        raise ReplyError(f"choices[0].logprobs: {len(tokens)} tokens but {len(values)} token_logprobs")
    ids = []
    for k, t in enumerate(tokens):
        found = _token_id(t) if isinstance(t, str) else None
        if found is None:
            raise ReplyError(
                f"choices[0].logprobs.tokens[{k}] is {_shown(t)}, not a token id; the server ignored "
                "return_tokens_as_token_ids"
            )
        ids.append(found)
    out = [
        None if v is None else logprob(v, f"choices[0].logprobs.token_logprobs[{k}]")
        for k, v in enumerate(values)
    ]
    return completion_text(reply), ids, out, choice.get("finish_reason") == "stop"
