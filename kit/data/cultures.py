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


# Every other GlobalOpinionQA country on the same five continents (UN geoscheme; the Americas as one, the
# Middle East and the Caucasus in Asia, Cyprus and Turkey as the geoscheme has them), for per-continent boards.
_CONTINENT_OF: Mapping[str, str] = MappingProxyType(
    {
        **{
            c: "Africa"
            for c in (
                "Angola",
                "Burkina Faso",
                "Egypt",
                "Ghana",
                "Ivory Coast",
                "Libya",
                "Mali",
                "Morocco",
                "S. Africa",
                "Senegal",
                "Tanzania",
                "Tunisia",
                "Uganda",
            )
        },
        **{
            c: "America"
            for c in (
                "Argentina",
                "Chile",
                "Colombia",
                "Ecuador",
                "El Salvador",
                "Guatemala",
                "Honduras",
                "Mexico",
                "Nicaragua",
                "Peru",
                "Puerto Rico",
                "Uruguay",
                "Venezuela",
            )
        },
        **{
            c: "Asia"
            for c in (
                "Armenia",
                "Azerbaijan",
                "Bangladesh",
                "Cyprus",
                "Georgia",
                "Hong Kong SAR",
                "Indonesia",
                "Iran",
                "Iraq",
                "Israel",
                "Japan",
                "Jordan",
                "Kazakhstan",
                "Kuwait",
                "Kyrgyzstan",
                "Lebanon",
                "Macau SAR",
                "Malaysia",
                "Maldives",
                "Mongolia",
                "Myanmar",
                "Pakistan",
                "Palest. ter.",
                "Philippines",
                "S. Korea",
                "Singapore",
                "Taiwan",
                "Tajikistan",
                "Turkey",
                "Uzbekistan",
                "Vietnam",
            )
        },
        **{
            c: "Europe"
            for c in (
                "Albania",
                "Andorra",
                "Austria",
                "Belarus",
                "Belgium",
                "Bosnia Herzegovina",
                "Bulgaria",
                "Croatia",
                "Czech Rep.",
                "Denmark",
                "Estonia",
                "Finland",
                "France",
                "Greece",
                "Hungary",
                "Iceland",
                "Italy",
                "Latvia",
                "Lithuania",
                "Montenegro",
                "North Macedonia",
                "Northern Ireland",
                "Norway",
                "Poland",
                "Portugal",
                "Romania",
                "Serbia",
                "Slovakia",
                "Slovenia",
                "Spain",
                "Sweden",
                "Switzerland",
            )
        },
        **{c: continent for continent, members in PALETTE_CONTINENTS.items() for c in members},
    }
)
OTHER_CONTINENT = "other"


def continent_of(country: str) -> str:
    """The Cultural Palette continent of one of its 18 countries (any spelling or sample variant)."""
    base = base_country(country)
    for continent, members in PALETTE_CONTINENTS.items():
        if base in members:
            return continent
    raise ValueError(
        f"{country!r} is not a Cultural Palette country; choose one of {', '.join(PALETTE_COUNTRIES)}"
    )


def region_of(country: str) -> str:
    """The continent of any GlobalOpinionQA country (Cultural Palette's for its 18), else ``"other"``."""
    return _CONTINENT_OF.get(base_country(country), OTHER_CONTINENT)
