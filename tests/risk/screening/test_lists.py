"""List loaders: the real UN XML (plain and packaged gzip) and a synthetic OFAC SDN CSV."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from pathlib import Path

import pytest

import paymesh.risk
from paymesh.risk.screening import (
    BirthDate,
    ListedEntry,
    ListFormatError,
    ScreeningIndex,
    load_ofac_csv,
    load_un_xml,
)

PACKAGED_UN = Path(next(iter(paymesh.risk.__path__))) / "data" / "un-consolidated-2020-11-24.xml.gz"
# The UN's own file (the test data's copy, ../shared/data/sanctions/), as the project ships it:
# gzipped, byte for byte (checked below), so the tests do not depend on where the checkout is.
UN_XML = gzip.decompress(PACKAGED_UN.read_bytes())
UN_XML_SHA256 = "4fe18fb5b972ca2cb51be86acefde0cecb3202ca9370aceac1f92a8d06c7a3ef"
OFAC = Path(__file__).parent / "data"


class TestLoadUnXml:
    def test_real_file_counts_and_fields(self) -> None:
        listed = load_un_xml(UN_XML)
        assert listed.published.startswith("2020-11-24")
        assert Counter(entry.type for entry in listed.entries) == {"individual": 713, "entity": 305}
        belmokhtar = next(e for e in listed.entries if e.entry_id == "111794")
        strengths = {name.text: name.strength for name in belmokhtar.names}
        assert strengths["MOKHTAR BELMOKHTAR"] == "primary"
        assert strengths["Mukhtar Belmukhtar"] == "strong"
        assert strengths["Belaoua"] == "weak"
        assert BirthDate(1972, 6, 1) in belmokhtar.birth_dates
        assert "DZ" in belmokhtar.countries

    def test_year_ranges_and_korean_nationality(self) -> None:
        entries = load_un_xml(UN_XML).entries
        assert any(d.year_to for e in entries for d in e.birth_dates)
        ri_won_ho = next(e for e in entries if e.entry_id == "6908555")
        assert ri_won_ho.countries == ("KP",)

    def test_packaged_gzip_copy_is_the_un_file_and_loads_the_same(self) -> None:
        assert hashlib.sha256(UN_XML).hexdigest() == UN_XML_SHA256
        assert load_un_xml(PACKAGED_UN).entries == load_un_xml(UN_XML).entries

    def test_entries_round_trip_through_json(self) -> None:
        for entry in load_un_xml(UN_XML).entries[:50]:
            assert ListedEntry.from_json(entry.to_json()) == entry

    @pytest.mark.parametrize(
        "content",
        [b"", b"not xml", b"<OTHER/>", b"<CONSOLIDATED_LIST><INDIVIDUALS>", b"\x1f\x8bbroken"],
    )
    def test_malformed_file_is_refused(self, content: bytes) -> None:
        with pytest.raises(ListFormatError):
            load_un_xml(content)

    def test_entity_expansion_bomb_is_refused(self) -> None:
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            b"<CONSOLIDATED_LIST><INDIVIDUALS/><ENTITIES>&c;</ENTITIES></CONSOLIDATED_LIST>"
        )
        with pytest.raises(ListFormatError):
            load_un_xml(bomb)


class TestLoadOfacCsv:
    def test_synthetic_files(self) -> None:
        listed = load_ofac_csv(
            OFAC / "sdn.csv", OFAC / "alt.csv", OFAC / "add.csv", published="2024-01-02"
        )
        assert listed.list_name == "OFAC-SDN" and listed.published == "2024-01-02"
        by_id = {entry.entry_id: entry for entry in listed.entries}
        boris = by_id["1001"]
        assert boris.type == "individual"
        assert [(n.text, n.strength) for n in boris.names] == [
            ("Boris Ilyich QUARTZEN", "primary"),
            ("Boris KVARTSEN", "strong"),
            ("BORYA", "weak"),
            ("THE GLAZIER", "weak"),
        ]
        assert boris.birth_dates == (BirthDate(1965, 3, 12), BirthDate(1966))
        assert boris.countries == ("IR",)
        assert boris.programs == ("SDGT", "IRAN")
        assert by_id["1002"].countries == ("AE",)
        assert by_id["1003"].type == "entity" and by_id["1003"].birth_dates == ()
        assert by_id["1004"].birth_dates == (BirthDate(1970, year_to=1972),)
        assert by_id["1004"].countries == ("NG",)

    def test_published_defaults_to_file_date(self) -> None:
        assert len(load_ofac_csv(OFAC / "sdn.csv").published) == 10

    def test_screening_finds_ofac_names_in_written_order(self) -> None:
        index = ScreeningIndex(load_ofac_csv(OFAC / "sdn.csv", OFAC / "alt.csv").entries)
        assert [m.entry_id for m in index.screen("Boris Quartzen")] == ["1001"]

    @pytest.mark.parametrize(
        "content", [b"", b"1,2,3\n", b"x,NAME,-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-\n"]
    )
    def test_malformed_file_is_refused(self, content: bytes) -> None:
        with pytest.raises(ListFormatError):
            load_ofac_csv(content)
