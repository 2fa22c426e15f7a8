"""Loader for the UN Security Council Consolidated List XML (sc-sanctions.xsd).

The file is outside input: it is parsed with defusedxml, which refuses entity expansion
(billion laughs), external entities and DTD tricks, and any refusal becomes ListFormatError.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from xml.etree import ElementTree

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]  # no stubs
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

from paymesh.risk.screening.lists import (
    BirthDate,
    EntityType,
    ListedEntry,
    ListedName,
    ListFormatError,
    NameStrength,
    SanctionsList,
    country_code,
)

UN_LIST_NAME = "UN"
_GZIP_MAGIC = b"\x1f\x8b"
# The UN marks alias quality "Good" or "Low"; "a.k.a." / "f.k.a." / empty come from older
# entries never graded, which compliance teams treat like low-quality aliases.
_ALIAS_STRENGTH: dict[str, NameStrength] = {"good": "strong"}


def load_un_xml(source: bytes | Path) -> SanctionsList:
    """Parse a UN consolidated list (plain or gzipped XML) into a SanctionsList."""
    raw = source.read_bytes() if isinstance(source, Path) else source
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ListFormatError(f"UN list: bad gzip data ({error})") from error
    try:
        root = fromstring(raw, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise ListFormatError(f"UN list: not parseable XML ({error})") from error
    if root.tag != "CONSOLIDATED_LIST":
        raise ListFormatError(f"UN list: root element is {root.tag!r}, not CONSOLIDATED_LIST")
    individuals = root.find("INDIVIDUALS")
    entities = root.find("ENTITIES")
    if individuals is None and entities is None:
        raise ListFormatError("UN list: neither INDIVIDUALS nor ENTITIES present")
    entries = [_entry(element, "individual") for element in _children(individuals)]
    entries += [_entry(element, "entity") for element in _children(entities)]
    return SanctionsList(
        list_name=UN_LIST_NAME,
        published=root.get("dateGenerated", ""),
        entries=tuple(entries),
    )


def _children(parent: ElementTree.Element | None) -> list[ElementTree.Element]:
    return [] if parent is None else list(parent)


def _text(element: ElementTree.Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def _entry(element: ElementTree.Element, entity_type: EntityType) -> ListedEntry:
    entry_id = _text(element.find("DATAID")) or _text(element.find("REFERENCE_NUMBER"))
    if not entry_id:
        raise ListFormatError(f"UN list: an {entity_type} has no DATAID")
    return ListedEntry(
        list_name=UN_LIST_NAME,
        entry_id=entry_id,
        type=entity_type,
        names=_names(element),
        countries=_countries(element),
        birth_dates=_birth_dates(element),
        programs=tuple(filter(None, [_text(element.find("UN_LIST_TYPE"))])),
    )


def _names(element: ElementTree.Element) -> tuple[ListedName, ...]:
    parts = (
        _text(element.find(tag))
        for tag in ("FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME")
    )
    names = [ListedName(" ".join(filter(None, parts)), "primary")]
    original_script = _text(element.find("NAME_ORIGINAL_SCRIPT"))
    if original_script:
        # The same name in its own script: a query typed in Arabic or Cyrillic meets it.
        names.append(ListedName(original_script, "primary"))
    for alias in element.iter():
        if alias.tag not in ("INDIVIDUAL_ALIAS", "ENTITY_ALIAS"):
            continue
        alias_name = _text(alias.find("ALIAS_NAME"))
        if alias_name:
            quality = _text(alias.find("QUALITY")).lower()
            names.append(ListedName(alias_name, _ALIAS_STRENGTH.get(quality, "weak")))
    unique = {(name.text.casefold(), name.strength): name for name in names if name.text}
    return tuple(unique.values())


def _countries(element: ElementTree.Element) -> tuple[str, ...]:
    texts = [_text(value) for value in element.iterfind("NATIONALITY/VALUE")]
    for tag in ("INDIVIDUAL_ADDRESS", "ENTITY_ADDRESS", "INDIVIDUAL_PLACE_OF_BIRTH"):
        texts += [_text(place.find("COUNTRY")) for place in element.iterfind(tag)]
    codes = (country_code(text) for text in texts if text)
    return tuple(dict.fromkeys(code for code in codes if code is not None))


def _birth_dates(element: ElementTree.Element) -> tuple[BirthDate, ...]:
    dates: list[BirthDate] = []
    for birth in element.iterfind("INDIVIDUAL_DATE_OF_BIRTH"):
        date = _birth_date(birth)
        if date is not None:
            dates.append(date)
    return tuple(dict.fromkeys(dates))


def _birth_date(birth: ElementTree.Element) -> BirthDate | None:
    full = _text(birth.find("DATE"))
    year = _text(birth.find("YEAR"))
    from_year, to_year = _text(birth.find("FROM_YEAR")), _text(birth.find("TO_YEAR"))
    try:
        if full:
            year_part, month_part, day_part = full[:10].split("-")
            return BirthDate(int(year_part), int(month_part), int(day_part))
        if year:
            return BirthDate(int(year))
        if from_year and to_year:
            return BirthDate(int(from_year), year_to=int(to_year))
    except ValueError as error:
        raise ListFormatError(f"UN list: unreadable date of birth {full or year!r}") from error
    return None
