"""Credentials never reach a file the kit writes, an error line or a log line.

A params key named like a credential (``hub_token``, ``api_key``, ``*_secret``, ``password``) is
refused at check time: params are copied into the manifest, every training folder's stamps and
every executed notebook's parameters cell. Tokens come from the environment instead (``HF_TOKEN``,
which huggingface_hub reads). :func:`redact` is the second line, applied by every writer of params,
for dicts that reach those writers without a check (the Python API).

In text: a ``base_url`` with userinfo or a credential-named query parameter is refused at check time
(:func:`credential_in_url`) and identities use :func:`public_url`; :func:`scrub` removes from a line the
API key this process read (:func:`register_value`), ``Bearer`` tokens and URL credentials, and every
endpoint error and log line passes through it; stored model text passes through :func:`scrub_values`.
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
        return {
            k: (REDACTED if is_secret(k) and v not in (None, "") else redact(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


# --- secrets in text: URLs, error lines, stored replies ------------------------------------------------------
# a query parameter named like a credential: ?api_key=…, &token=…, ?sig=… (signed URLs), ?access_token=…
_SECRET_QUERY = re.compile(
    r"(?:^|[_-])(?:token|key|secret|password|passwd|pwd|credentials?|auth|authorization|"
    r"signature|sig|session)$|^(?:code|apikey|x-api-key)$",
    re.IGNORECASE,
)
_URL = re.compile(r"\b(https?://)([^\s/?#@]*@)?([^\s/?#]*)([^\s?#]*)(\?[^\s#]*)?(#\S*)?", re.IGNORECASE)
# what a server echoing a request's headers puts in a body: "Bearer sk-…", "Authorization: …", "api_key=…"
_PATTERNS = (
    re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE),
    re.compile(
        r"(\b(?:authorization|x-api-key|api[_-]?key|access[_-]?token)[\"']?\s*[:=]\s*[\"']?)(?!Bearer\b)[^\s\"',;&]+",
        re.IGNORECASE,
    ),
)
_values: set[str] = set()  # secret values this process holds (an API key read from the environment)


def register_value(value: str | None) -> None:
    """Remember a secret this process read (an API key), so :func:`scrub` removes it wherever it appears."""
    if value and len(value) >= 4:  # a one-letter "key" would redact every text
        _values.add(value)


def credential_in_url(url: str) -> str | None:
    """What in ``url`` is a credential: ``"userinfo"`` (``user:pass@host``), ``"query parameter NAME"``; None if nothing."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "userinfo (user:password@)"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_QUERY.search(name):
            return f"query parameter {name!r}"
    return None


def public_url(url: str) -> str:
    """``url`` without userinfo, query and fragment: what identities, logs and errors may carry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def _url_clean(match: re.Match) -> str:
    scheme, userinfo, host, path, query, fragment = match.groups()
    return (
        scheme
        + (REDACTED + "@" if userinfo else "")
        + host
        + path
        + (f"?{REDACTED}" if query else "")
        + (fragment or "")
    )


def scrub(text: str) -> str:
    """``text`` with every secret this process knows (:func:`register_value`), every ``Bearer`` token and
    ``api_key=…``-like pair, and every URL's userinfo and query replaced by ``<redacted>``: error lines,
    log lines and stored replies pass through it."""
    if not isinstance(text, str) or not text:
        return text
    for value in sorted(_values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return _URL.sub(_url_clean, text)


def scrub_values(text: str) -> str:
    """``text`` with only the known secret values removed (cheap; for stored model text, which may hold
    words like "Bearer" or URLs of its own)."""
    if not _values or not isinstance(text, str):
        return text
    for value in sorted(_values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
