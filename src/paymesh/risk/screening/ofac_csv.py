"""Loader for OFAC's SDN list in its legacy CSV layout (sdn.csv, alt.csv, add.csv).

The files have no header, "-0-" marks an empty field, and an individual's name is written
"LAST, First Middle". Dates of birth, nationalities and weak aliases live in free-text Remarks
("DOB 12 Mar 1965; nationality Iran; a.k.a. 'ABU X'"), which is parsed leniently.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from pathlib import Path

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

OFAC_LIST_NAME = "OFAC-SDN"
_EMPTY = "-0-"
_SDN_COLUMNS = 12
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip
_DATE_OF_BIRTH = re.compile(
    r"\bDOB\s+(?:circa\s+)?(?:(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+)?(?:([A-Za-z]{3})[a-z]*\s+)?"
    r"(\d{4})(?:\s+to\s+(\d{4}))?",
    re.IGNORECASE,
)
_NATIONALITY = re.compile(r"\b(?:nationality|citizen)\s+([^;.]+)", re.IGNORECASE)
_WEAK_ALIAS = re.compile(r"a\.k\.a\.\s+'([^']+)'", re.IGNORECASE)


def load_ofac_csv(
    sdn: bytes | Path,
    alt: bytes | Path | None = None,
    add: bytes | Path | None = None,
    *,
    published: str | None = None,
) -> SanctionsList:
    """Parse sdn.csv (+ alt.csv aliases, + add.csv addresses) into a SanctionsList.

    `published` defaults to the modification date of the sdn.csv file (or "" for bytes).
    """
    aliases = _aliases(_rows(alt, "alt.csv", 5)) if alt is not None else {}
    countries = _address_countries(_rows(add, "add.csv", 6)) if add is not None else {}
    entries = []
    for row in _rows(sdn, "sdn.csv", _SDN_COLUMNS):
        entry_id, name, sdn_type, program, remarks = row[0], row[1], row[2], row[3], row[11]
        if not entry_id.isdigit() or not name:
            raise ListFormatError(f"sdn.csv: bad entry number or name in {row[:2]!r}")
        entity_type: EntityType = "individual" if sdn_type.lower() == "individual" else "entity"
        names = [ListedName(_display_name(name, entity_type), "primary")]
        names += aliases.get(entry_id, [])
        names += [ListedName(weak, "weak") for weak in _WEAK_ALIAS.findall(remarks)]
        nationalities = (country_code(text) for text in _NATIONALITY.findall(remarks))
        entry_countries = [*nationalities, *countries.get(entry_id, [])]
        entries.append(
            ListedEntry(
                list_name=OFAC_LIST_NAME,
                entry_id=entry_id,
                type=entity_type,
                names=tuple(names),
                countries=tuple(dict.fromkeys(c for c in entry_countries if c is not None)),
                birth_dates=_birth_dates(remarks) if entity_type == "individual" else (),
                programs=tuple(p.strip() for p in program.strip("[]").split("] [") if p.strip()),
            )
        )
    if not entries:
        raise ListFormatError("sdn.csv: no entries")
    return SanctionsList(OFAC_LIST_NAME, published or _modified_date(sdn), tuple(entries))


def _rows(source: bytes | Path, file_name: str, columns: int) -> list[list[str]]:
    raw = source.read_bytes() if isinstance(source, Path) else source
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # OFAC's older files are Windows-1252
    rows = []
    try:
        for row in csv.reader(io.StringIO(text.replace("\x1a", ""))):
            if not row or not "".join(row).strip():
                continue
            if len(row) != columns:
                raise ListFormatError(f"{file_name}: {len(row)} columns, expected {columns}")
            rows.append(
                [" ".join(field.split()) if field.strip() != _EMPTY else "" for field in row]
            )
    except csv.Error as error:
        raise ListFormatError(f"{file_name}: not CSV ({error})") from error
    return rows


def _display_name(name: str, entity_type: EntityType) -> str:
    """OFAC writes individuals "LAST, First Middle"; screening wants written order."""
    if entity_type == "individual" and name.count(",") == 1:
        last, first = name.split(",")
        return f"{first.strip()} {last.strip()}"
    return name


def _aliases(rows: list[list[str]]) -> dict[str, list[ListedName]]:
    aliases: dict[str, list[ListedName]] = {}
    for entry_id, _, alias_type, alias_name, alias_remarks in rows:
        if not alias_name:
            continue
        marker = f"{alias_type} {alias_remarks}".lower()
        strength: NameStrength = "weak" if "weak" in marker else "strong"
        # Aliases of individuals are written like primary names: "LAST, First".
        text = _display_name(alias_name, "individual")
        aliases.setdefault(entry_id, []).append(ListedName(text, strength))
    return aliases


def _address_countries(rows: list[list[str]]) -> dict[str, list[str]]:
    countries: dict[str, list[str]] = {}
    for row in rows:
        code = country_code(row[4]) if row[4] else None
        if code is not None:
            countries.setdefault(row[0], []).append(code)
    return countries


def _birth_dates(remarks: str) -> tuple[BirthDate, ...]:
    dates = []
    for day, month_with_day, month_only, year, year_to in _DATE_OF_BIRTH.findall(remarks):
        month = _MONTHS.get((month_with_day or month_only).lower()[:3])
        dates.append(
            BirthDate(
                int(year),
                month,
                int(day) if day and month else None,
                int(year_to) if year_to else None,
            )
        )
    return tuple(dict.fromkeys(dates))


def _modified_date(source: bytes | Path) -> str:
    if isinstance(source, Path):
        modified = datetime.datetime.fromtimestamp(source.stat().st_mtime, tz=datetime.UTC)
        return modified.date().isoformat()
    return ""
