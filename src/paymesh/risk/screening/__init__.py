"""Sanctions screening: list loaders (UN XML, OFAC SDN CSV) and an in-memory name index."""

from paymesh.risk.screening.lists import (
    BirthDate,
    EntityType,
    ListedEntry,
    ListedName,
    ListFormatError,
    NameStrength,
    SanctionsList,
)
from paymesh.risk.screening.matcher import DEFAULT_THRESHOLD, ScreeningIndex, ScreeningMatch
from paymesh.risk.screening.normalise import normalise_name
from paymesh.risk.screening.ofac_csv import load_ofac_csv
from paymesh.risk.screening.un_xml import load_un_xml

__all__ = [
    "DEFAULT_THRESHOLD",
    "BirthDate",
    "EntityType",
    "ListFormatError",
    "ListedEntry",
    "ListedName",
    "NameStrength",
    "SanctionsList",
    "ScreeningIndex",
    "ScreeningMatch",
    "load_ofac_csv",
    "load_un_xml",
    "normalise_name",
]
