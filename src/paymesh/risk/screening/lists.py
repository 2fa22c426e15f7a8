"""What a sanctions list holds once loaded, whatever its source format.

The loaders (`un_xml`, `ofac_csv`) turn a publisher's file into a `SanctionsList` of
`ListedEntry`; the matcher only ever sees these types. Entries serialise to plain JSON so the
service can store a list version and rebuild the index from storage.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

import pycountry

EntityType = Literal["individual", "entity"]
# How much a name identifies its holder: the listed name, an alias the publisher trusts
# (UN quality "Good", OFAC "strong a.k.a."), or a weak one (UN "Low", OFAC "weak a.k.a.").
NameStrength = Literal["primary", "strong", "weak"]


class ListFormatError(ValueError):
    """A list file is not in the format its loader reads (or is hostile, e.g. an XML bomb)."""


@dataclass(frozen=True)
class ListedName:
    text: str
    strength: NameStrength


@dataclass(frozen=True)
class BirthDate:
    """A date of birth as lists give it: exact, a year only, or a range of years.

    `year_to` is set for a range ("between 1965 and 1969"); month and day are then None.
    """

    year: int
    month: int | None = None
    day: int | None = None
    year_to: int | None = None

    @property
    def last_year(self) -> int:
        return self.year_to if self.year_to is not None else self.year


@dataclass(frozen=True)
class ListedEntry:
    list_name: str
    entry_id: str
    type: EntityType
    names: tuple[ListedName, ...]
    countries: tuple[str, ...]
    birth_dates: tuple[BirthDate, ...]
    programs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "list_name": self.list_name,
            "entry_id": self.entry_id,
            "type": self.type,
            "names": [{"text": name.text, "strength": name.strength} for name in self.names],
            "countries": list(self.countries),
            "birth_dates": [
                {"year": d.year, "month": d.month, "day": d.day, "year_to": d.year_to}
                for d in self.birth_dates
            ],
            "programs": list(self.programs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ListedEntry:
        return cls(
            list_name=data["list_name"],
            entry_id=data["entry_id"],
            type=data["type"],
            names=tuple(ListedName(n["text"], n["strength"]) for n in data["names"]),
            countries=tuple(data["countries"]),
            birth_dates=tuple(
                BirthDate(d["year"], d.get("month"), d.get("day"), d.get("year_to"))
                for d in data["birth_dates"]
            ),
            programs=tuple(data["programs"]),
        )


@dataclass(frozen=True)
class SanctionsList:
    list_name: str
    published: str  # the file's own date or version, e.g. the UN's dateGenerated
    entries: tuple[ListedEntry, ...]


# Names lists use that pycountry's fuzzy search gets wrong or does not know.
_COUNTRY_ALIASES = {
    "democratic peoples republic of korea": "KP",
    "north korea": "KP",
    "republic of korea": "KR",
    "south korea": "KR",
    "iran": "IR",
    "russia": "RU",
    "syria": "SY",
    "palestinian": "PS",
    "palestine": "PS",
    "state of palestine": "PS",
    "occupied palestinian territory": "PS",
    "congo": "CG",
    "democratic republic of the congo": "CD",
    "united kingdom": "GB",
    "united states": "US",
    "usa": "US",
    "ussr": "SU",
    "turkey": "TR",
    "kosovo": "XK",
    "guinea bissau": "GW",
    "palestinian territories": "PS",
}
_UNKNOWN = frozenset({"na", "n a", "unknown", "stateless"})
# Demonyms lists use for nationality ("Yemeni", "Saudi Arabian"): stripping these endings
# usually leaves the start of the country name.
_PARENTHESIS_OR_NOTE = re.compile(r"\(.*?\)|\bcitizenship\b.*|\bnationality\b.*|\bby birth\b")
_NOT_LETTER = re.compile(r"[^a-z ]+")


@functools.lru_cache(maxsize=2048)
def country_code(text: str) -> str | None:
    """ISO 3166 alpha-2 for a country name or demonym as lists write it, or None."""
    cleaned = _PARENTHESIS_OR_NOTE.sub(" ", text.strip().lower())
    cleaned = " ".join(_NOT_LETTER.sub("", cleaned.replace("-", " ")).split())
    cleaned = cleaned.removeprefix("possibly ").removeprefix("the ")
    if len(cleaned) < 2 or cleaned in _UNKNOWN:
        return None
    if cleaned in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[cleaned]
    if len(cleaned) == 2 and pycountry.countries.get(alpha_2=cleaned.upper()) is not None:
        return cleaned.upper()
    for candidate in (cleaned, cleaned.split(" ")[0]):
        country = pycountry.countries.get(name=candidate) or pycountry.countries.get(
            official_name=candidate
        )
        if country is not None:
            return str(country.alpha_2)
    return _country_by_prefix(cleaned)


def _country_by_prefix(cleaned: str) -> str | None:
    """Demonyms: "yemeni" -> Yemen, "afghan" -> Afghanistan, "saudi arabian" -> Saudi Arabia."""
    for country in pycountry.countries:
        name = str(country.name).lower()
        common = str(getattr(country, "common_name", name)).lower()
        for known in (name, common):
            stem = known[: max(4, len(known) - 2)]
            if cleaned.startswith(stem) or (len(cleaned) >= 5 and known.startswith(cleaned)):
                return str(country.alpha_2)
    return None
