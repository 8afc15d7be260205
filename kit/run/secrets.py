"""Credentials never reach a file the kit writes.

A params key named like a credential (``hub_token``, ``api_key``, ``*_secret``, ``password``) is
refused at check time: params are copied into the manifest, every training folder's stamps and
every executed notebook's parameters cell. Tokens come from the environment instead (``HF_TOKEN``,
which huggingface_hub reads). :func:`redact` is the second line, applied by every writer of params,
for dicts that reach those writers without a check (the Python API).
"""

from __future__ import annotations

import re
from typing import Any

# a whole word at the end of the key: "hub_token" and "api_key" are credentials, "max_new_tokens" is not
_SECRET_KEY = re.compile(r"(?:^|[_-])(?:token|key|secret|password|credentials?)$", re.IGNORECASE)
# tokenizer special tokens (trl's SFTConfig has pad_token and eos_token) are text, not credentials
_SPECIAL_TOKEN = re.compile(r"(?:^|_)(?:pad|eos|bos|unk|sep|cls|mask|chat)_token$", re.IGNORECASE)
REDACTED = "<redacted>"


def is_secret(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key)) and not _SPECIAL_TOKEN.search(key)


def find(value: Any, where: str = "") -> str | None:
    """The dotted path of the first credential-named key with a value, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if is_secret(key) and item not in (None, ""):
                return path
            if (found := find(item, path)) is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if (found := find(item, f"{where}[{i}]")) is not None:
                return found
    return None


def redact(value: Any) -> Any:
    """A copy with every credential-named key's value replaced by ``<redacted>``."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value
