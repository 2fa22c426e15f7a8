"""ISO 20022 pacs.008.001.08 and pacs.002.001.10: round trips, schema validity, refusals."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from paymesh.providers.iso20022 import (
    PACS002_XSD,
    PACS008_XSD,
    CreditTransfer,
    Iso20022Invalid,
    StatusReport,
    build_pacs002,
    build_pacs008,
    parse_pacs002,
    parse_pacs008,
)

CREATED_AT = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)


def credit_transfer(**changes: object) -> CreditTransfer:
    transfer = CreditTransfer(
        message_id="MSG-pay_01JEXAMPLE",
        end_to_end_id="E2E-pay_01JEXAMPLE",
        instruction_id="INS-pay_01JEXAMPLE",
        transaction_id="TX-pay_01JEXAMPLE",
        uetr="3f2c8a8e-5b1d-4c7e-9a0b-1c2d3e4f5a6b",
        created_at=CREATED_AT,
        settlement_date=date(2026, 12, 4),
        amount_minor=123_456,
        currency="EUR",
        debtor_name="Paymesh Payouts",
        debtor_account_other="payouts_clearing_eur",
        debtor_agent_bic="PMSHGB2L",
        creditor_name="Lena Fischer",
        creditor_iban="DE89370400440532013000",
        creditor_agent_bic="COBADEFFXXX",
        creditor_country="DE",
        creditor_address_lines=("Hauptstrasse 1", "10115 Berlin"),
        purpose_code="SALA",
        remittance_info="Invoice 2026-118",
        instructing_agent_bic="PMSHGB2L",
        instructed_agent_bic="PMSHGB2LXXX",
    )
    return dataclasses.replace(transfer, **changes)  # type: ignore[arg-type]


def status_report(**changes: object) -> StatusReport:
    report = StatusReport(
        message_id="bst_01JEXAMPLE",
        original_message_id="MSG-pay_01JEXAMPLE",
        original_end_to_end_id="E2E-pay_01JEXAMPLE",
        status="RJCT",
        reason_code="AC04",
        reason_text="Closed account number",
        created_at=CREATED_AT,
    )
    return dataclasses.replace(report, **changes)  # type: ignore[arg-type]


@functools.cache
def official_pacs008_schema() -> xmlschema.XMLSchema10:
    """ISO's schema, compiled from the file apart from the code under test."""
    return xmlschema.XMLSchema10(str(PACS008_XSD))


class TestBuildPacs008:
    @pytest.mark.parametrize(
        "changes",
        [
            {},
            {"uetr": None, "purpose_code": None, "remittance_info": None},
            {"creditor_address_lines": ()},
            # An account number with the bank's clearing code, in a currency without decimals.
            {
                "creditor_iban": None,
                "creditor_account_number": "000123456789",
                "creditor_bank_code": "021000021",
                "creditor_agent_bic": None,
                "currency": "JPY",
                "amount_minor": 5000,
            },
            # IBAN only: the creditor agent is NOTPROVIDED.
            {
                "creditor_agent_bic": None,
                "debtor_account_other": None,
                "debtor_account_iban": "GB29NWBK60161331926819",
            },
            {"created_at": datetime(2026, 12, 4, 10, 0, tzinfo=timezone(timedelta(hours=2)))},
            {"currency": "KWD", "amount_minor": 1_234_567},
        ],
    )
    def test_round_trip_and_valid_against_the_official_schema(
        self, changes: dict[str, object]
    ) -> None:
        transfer = credit_transfer(**changes)
        xml = build_pacs008(transfer)
        assert official_pacs008_schema().is_valid(xml)
        assert parse_pacs008(xml) == transfer

    def test_amount_is_written_with_the_currency_exponent(self) -> None:
        assert b'<IntrBkSttlmAmt Ccy="EUR">1234.56</IntrBkSttlmAmt>' in build_pacs008(
            credit_transfer()
        )
        assert b'<IntrBkSttlmAmt Ccy="JPY">5000</IntrBkSttlmAmt>' in build_pacs008(
            credit_transfer(currency="JPY", amount_minor=5000)
        )

    def test_the_message_namespace_is_the_default_one(self) -> None:
        xml = build_pacs008(credit_transfer())
        assert b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">' in xml

    @pytest.mark.parametrize(
        "changes",
        [
            {"message_id": "M" * 36},  # Max35Text
            {"creditor_agent_bic": "NOT A BIC"},
            {"creditor_iban": "de89 3704 0044 0532 0130 00"},  # IBAN2007Identifier pattern
            {"uetr": "not-a-uuid"},
            {"creditor_country": "Germany"},
            {"amount_minor": 0},
            {"creditor_iban": None},  # no creditor account at all
            {"currency": "XYZ"},
            {"created_at": datetime(2026, 12, 4, 9, 30)},  # naive
        ],
    )
    def test_an_invalid_transfer_is_never_built(self, changes: dict[str, object]) -> None:
        with pytest.raises(Iso20022Invalid) as refused:
            build_pacs008(credit_transfer(**changes))
        assert refused.value.errors


class TestParsePacs008:
    def test_wrong_namespace(self) -> None:
        xml = build_pacs008(credit_transfer()).replace(b"pacs.008.001.08", b"pacs.008.001.09")
        with pytest.raises(Iso20022Invalid, match="root element"):
            parse_pacs008(xml)

    def test_missing_mandatory_element(self) -> None:
        xml = build_pacs008(credit_transfer()).replace(b"<ChrgBr>SHAR</ChrgBr>", b"")
        assert not official_pacs008_schema().is_valid(xml)
        with pytest.raises(Iso20022Invalid, match="ChrgBr"):
            parse_pacs008(xml)

    def test_more_decimals_than_the_currency_has(self) -> None:
        xml = build_pacs008(credit_transfer()).replace(b">1234.56<", b">1234.567<")
        assert official_pacs008_schema().is_valid(xml)  # the schema allows 5 decimals
        with pytest.raises(Iso20022Invalid, match="more than 2 decimals"):
            parse_pacs008(xml)

    def test_more_decimals_than_the_schema_allows(self) -> None:
        xml = build_pacs008(credit_transfer()).replace(b">1234.56<", b">1234.5600001<")
        with pytest.raises(Iso20022Invalid):
            parse_pacs008(xml)

    def test_entity_bomb_is_refused_before_expansion(self) -> None:
        bomb = (
            b'<?xml version="1.0"?>\n<!DOCTYPE Document [\n<!ENTITY a "aaaaaaaaaa">\n'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\n]>\n'
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&c;</Document>'
        )
        with pytest.raises(Iso20022Invalid, match="DTDForbidden"):
            parse_pacs008(bomb)

    def test_external_entity_is_refused(self) -> None:
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&x;</Document>'
        )
        with pytest.raises(Iso20022Invalid, match="refused XML"):
            parse_pacs008(xxe)

    def test_not_xml(self) -> None:
        with pytest.raises(Iso20022Invalid, match="not well-formed"):
            parse_pacs008(b"{}")

    def test_two_transactions_are_refused(self) -> None:
        xml = build_pacs008(credit_transfer())
        start, end = xml.index(b"<CdtTrfTxInf>"), xml.index(b"</CdtTrfTxInf>") + 14
        doubled = xml[:end] + xml[start:end] + xml[end:]
        with pytest.raises(Iso20022Invalid, match="one transaction"):
            parse_pacs008(doubled)


class TestPacs002:
    @pytest.mark.parametrize(
        "changes",
        [
            {},
            {"status": "ACSC", "reason_code": None, "reason_text": None},
            {"status": "ACSP", "reason_code": None, "reason_text": None},
            {"reason_text": "x" * 300},  # split over several AddtlInf lines
            {"reason_code": None},
        ],
    )
    def test_round_trip_and_valid(self, changes: dict[str, object]) -> None:
        report = status_report(**changes)
        xml = build_pacs002(report)
        assert xmlschema.XMLSchema10(str(PACS002_XSD)).is_valid(xml)
        assert parse_pacs002(xml) == report

    def test_reason_code_and_status(self) -> None:
        xml = build_pacs002(status_report())
        assert b"<TxSts>RJCT</TxSts>" in xml
        assert b"<Rsn><Cd>AC04</Cd></Rsn>" in xml
        assert b"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId>" in xml

    @pytest.mark.parametrize(
        "changes", [{"status": "TOOLONG"}, {"original_end_to_end_id": "E" * 36}]
    )
    def test_an_invalid_report_is_never_built(self, changes: dict[str, object]) -> None:
        with pytest.raises(Iso20022Invalid):
            build_pacs002(status_report(**changes))

    def test_a_pacs008_is_not_a_status_report(self) -> None:
        with pytest.raises(Iso20022Invalid, match="root element"):
            parse_pacs002(build_pacs008(credit_transfer()))

    def test_missing_status_is_refused(self) -> None:
        xml = build_pacs002(status_report()).replace(b"<TxSts>RJCT</TxSts>", b"")
        with pytest.raises(Iso20022Invalid, match="TxSts"):
            parse_pacs002(xml)

    def test_dtd_is_refused(self) -> None:
        xml = build_pacs002(status_report()).replace(
            b"?>", b'?><!DOCTYPE Document [<!ENTITY e "RJCT">]>', 1
        )
        with pytest.raises(Iso20022Invalid, match="DTDForbidden"):
            parse_pacs002(xml)


class TestAmounts:
    @settings(max_examples=60, deadline=None)
    @given(
        amount_minor=st.integers(min_value=1, max_value=10**15),
        currency=st.sampled_from(["EUR", "GBP", "USD", "JPY", "KWD", "CLF"]),
    )
    def test_any_amount_round_trips_exactly(self, amount_minor: int, currency: str) -> None:
        transfer = credit_transfer(amount_minor=amount_minor, currency=currency)
        assert parse_pacs008(build_pacs008(transfer)).amount_minor == amount_minor
