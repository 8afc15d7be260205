"""Chat-template rendering and option-label tokens, shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence

from kit.llm.base import Message


def render_chat(tokenizer, messages: Sequence[Message], prefix: str = "") -> str:
    """The model's own chat template with the assistant turn opened, plus ``prefix``."""
    if not getattr(tokenizer, "chat_template", None):
        # Base models without a template: plain role-tagged transcript.
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return text + (" " + prefix if prefix else "")
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return text + prefix


def label_token_ids(tokenizer, labels: Sequence[str]) -> dict[str, list[int]]:
    """Token ids that spell each option label as the next token, with or without a space.

    A label counts through every single-token spelling of ``label`` and ``" " + label``; a
    spelling that needs several tokens is skipped. Raises if a label has no single-token
    spelling or two labels share a token.
    """
    ids: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for label in labels:
        variants = []
        for text in (label, " " + label):
            toks = tokenizer.encode(text, add_special_tokens=False)
            if len(toks) == 1 and toks[0] not in variants:
                variants.append(toks[0])
        if not variants:
            raise ValueError(f"option label {label!r} is not a single token for this tokenizer")
        for t in variants:
            if t in seen:
                raise ValueError(f"option labels {seen[t]!r} and {label!r} share token {t}")
            seen[t] = label
        ids[label] = variants
    return ids
