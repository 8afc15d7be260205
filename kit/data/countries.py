"""Country labels in one place.

GlobalOpinionQA keeps the spelling of each source survey, so one country can appear under two
labels ("Britain" / "Great Britain", "S. Korea" / "South Korea", "Czech Rep." / "Czechia").
The canonical label is the spelling the data uses most, so most labels pass through unchanged.
Sample variants such as "Nigeria (Non-national sample)" stay distinct — their answer shares
differ from the national sample's — and ``base_country`` maps them back to the country.
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
from collections.abc import Iterable

log = logging.getLogger(__name__)

_SAMPLE = re.compile(
    r"^(?P<base>.*?)\s*\((?P<kind>non-national|current national|old national) sample\)$", re.I
)
_SAMPLE_LABELS = {
    "non-national": "(Non-national sample)",
    "current national": "(Current national sample)",
    "old national": "(Old national sample)",
}
_CURRENT_NATIONAL = _SAMPLE_LABELS["current national"]

# canonical label -> other spellings; keys are compared after _key() folding.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "Britain": ("Great Britain", "United Kingdom", "UK", "U.K.", "GB"),
    "United States": ("USA", "US", "U.S.", "U.S.A.", "United States of America"),
    "S. Korea": ("South Korea", "Korea", "Republic of Korea", "Korea, Republic of", "Korea (South)"),
    "Czech Rep.": ("Czechia", "Czech Republic"),
    "Taiwan": ("Taiwan ROC",),
    "S. Africa": ("South Africa",),
    "Palest. ter.": ("Palestine", "Palestinian territories", "State of Palestine"),
    "Hong Kong SAR": ("Hong Kong",),
    "Macau SAR": ("Macau", "Macao", "Macao SAR"),
    "Russia": ("Russian Federation",),
    "Ivory Coast": ("Côte d'Ivoire", "Cote d'Ivoire"),
    "Bosnia Herzegovina": ("Bosnia and Herzegovina", "Bosnia & Herzegovina", "Bosnia"),
    "North Macedonia": ("Macedonia",),
    "Vietnam": ("Viet Nam",),
    "Turkey": ("Türkiye", "Turkiye"),
    "Netherlands": ("Holland",),
    "Kyrgyzstan": ("Kyrgyz Republic",),
    "Slovakia": ("Slovak Republic",),
    "Myanmar": ("Burma",),
    "Iran": ("Islamic Republic of Iran", "Iran, Islamic Republic of"),
}


def _key(name: str) -> str:
    """Fold case, accents, punctuation and a leading "the" so spellings compare equal."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    folded = re.sub(r"[^a-z0-9]+", " ", ascii_name.casefold()).strip()
    return folded.removeprefix("the ")


_CANONICAL: dict[str, str] = {
    _key(alias): canon for canon, aliases in _SYNONYMS.items() for alias in (canon, *aliases)
}


def _split_sample(name: str) -> tuple[str, str | None]:
    """("Nigeria (Non-national sample)") -> ("Nigeria", "(Non-national sample)")."""
    match = _SAMPLE.match(name)
    if match is None:
        return name, None
    return match["base"], _SAMPLE_LABELS[match["kind"].casefold()]


def normalize_country(name: str) -> str:
    """The canonical label of ``name``; unknown names come back with whitespace tidied only."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"country name must be a non-empty string, got {name!r}")
    base, sample = _split_sample(" ".join(name.split()))
    base = _CANONICAL.get(_key(base), base)
    return base if sample is None else f"{base} {sample}"


def base_country(name: str) -> str:
    """The canonical country without a sample qualifier ("India (Current national sample)" -> "India")."""
    return _split_sample(normalize_country(name))[0]


def resolve_country(name: str, known: Iterable[str]) -> str:
    """The label in ``known`` that means ``name``, e.g. "UK" -> "Britain".

    A bare country with no plain label in ``known`` resolves to its current national sample
    (the data has "India" only as sample variants); non-national samples are never picked
    silently. Raises ValueError listing the closest known labels otherwise.
    """
    labels = list(dict.fromkeys(known))
    by_canon: dict[str, str] = {}
    for label in labels:
        # prefer a label that is already canonical when two spellings are present
        canon = normalize_country(label)
        if canon not in by_canon or label == canon:
            by_canon[canon] = label
    canon = normalize_country(name)
    if canon in by_canon:
        return by_canon[canon]
    national = f"{canon} {_CURRENT_NATIONAL}"
    if national in by_canon:
        log.info("country %r resolved to %r (no plain label in the data)", name, by_canon[national])
        return by_canon[national]
    variants = [label for label in labels if base_country(label) == base_country(canon)]
    close = difflib.get_close_matches(canon, labels, n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(variants + close)) or sorted(labels)[:10]
    raise ValueError(
        f"unknown country {name!r}; closest known labels: {', '.join(map(repr, suggestions))} — use one of them"
    )
