"""The culture maps of the reproduced methods, as data.

Country names are canonical labels (``normalize_country``) as GlobalOpinionQA spells them, so
they can be passed to ``resolve_country`` against the labels of a loaded data set. "India"
has no plain label in the data; ``resolve_country`` maps it to "India (Current national sample)".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .countries import base_country

# Nash Consensus Negotiation: 8 cultural zones (Inglehart–Welzel map), one country each.
NCN_ZONES: Mapping[str, str] = MappingProxyType(
    {
        "Confucian": "China",
        "English-speaking": "United States",
        "Protestant Europe": "Denmark",
        "Catholic Europe": "Spain",
        "West & South Asia": "Thailand",
        "Orthodox Europe": "Russia",
        "Latin America": "Mexico",
        "African-Islamic": "Iraq",
    }
)

# Cultural Palette: five continents and the 18 GlobalOpinionQA evaluation countries.
PALETTE_CONTINENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Africa": ("Kenya", "Nigeria", "Ethiopia", "Zimbabwe"),
        "America": ("United States", "Canada", "Bolivia", "Brazil"),
        "Asia": ("China", "Russia", "India", "Thailand"),
        "Europe": ("Britain", "Netherlands", "Germany", "Ukraine"),
        "Oceania": ("Australia", "New Zealand"),
    }
)

PALETTE_COUNTRIES: tuple[str, ...] = tuple(c for countries in PALETTE_CONTINENTS.values() for c in countries)


def continent_of(country: str) -> str:
    """The Cultural Palette continent of one of its 18 countries (any spelling or sample variant)."""
    base = base_country(country)
    for continent, members in PALETTE_CONTINENTS.items():
        if base in members:
            return continent
    raise ValueError(
        f"{country!r} is not a Cultural Palette country; choose one of {', '.join(PALETTE_COUNTRIES)}"
    )
