"""The payout pieces that need no running bank: derived ISO ids, the callback signature,
the beneficiary checks, the status order, and the connector's retries and circuit breaker
(against a scripted transport standing in for the bank's network)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import httpx
import pytest
from purgatory import AsyncCircuitBreakerFactory

from paymesh.kernel.config import Settings
from paymesh.kernel.config.banks import PartnerBankSettings
from paymesh.providers.connectors.bank import PartnerBank, PartnerBanks, verify_signature
from paymesh.providers.iso20022 import StatusReport, build_pacs002
from paymesh.providers.payouts import errors
from paymesh.providers.payouts.beneficiaries import normalised
from paymesh.providers.payouts.schemas import Beneficiary
from paymesh.providers.payouts.service import derived_id
from paymesh.providers.payouts.statuses import outcome_of

SECRET = b"unit-test-secret"
BODY = b"<Document/>"
NOW = 1_800_000_000


def header(timestamp: int, body: bytes = BODY, secret: bytes = SECRET) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class TestDerivedIds:
    def test_the_same_payment_always_gives_the_same_ids(self) -> None:
        assert derived_id("E", "pay_01JD0000000000000000000000") == derived_id(
            "E", "pay_01JD0000000000000000000000"
        )
        assert derived_id("E", "pay_01JD0000000000000000000000") == (
            "E-pay_01JD0000000000000000000000"
        )

    def test_a_long_or_unusual_payment_id_becomes_a_digest_of_35_characters(self) -> None:
        long_id = "payment:" + "x" * 100
        derived = derived_id("M", long_id)
        assert len(derived) == 35
        assert derived.startswith("M-")
        assert derived == derived_id("M", long_id)
        assert derived != derived_id("M", long_id + "y")


class TestCallbackSignature:
    def test_an_authentic_fresh_signature_passes(self) -> None:
        verify_signature(SECRET, BODY, header(NOW), now=NOW + 10)

    def test_a_rotating_bank_may_send_two_signatures(self) -> None:
        other = header(NOW, secret=b"old").split(",")[1]
        verify_signature(SECRET, BODY, f"{other},{header(NOW)}", now=NOW)

    @pytest.mark.parametrize(
        "signature",
        [
            "",
            "t=abc,v1=00",
            f"v1={header(NOW).split('v1=')[1]}",
            header(NOW, secret=b"wrong"),
            header(NOW, body=b"<Document>other</Document>"),
        ],
    )
    def test_a_missing_or_wrong_signature_is_refused(self, signature: str) -> None:
        with pytest.raises(errors.InvalidBankSignature):
            verify_signature(SECRET, BODY, signature, now=NOW)

    @pytest.mark.parametrize("age", [301, -301, 86_400])
    def test_a_signature_outside_300_seconds_is_refused(self, age: int) -> None:
        with pytest.raises(errors.BankSignatureExpired):
            verify_signature(SECRET, BODY, header(NOW), now=NOW + age)


def beneficiary(**fields: object) -> Beneficiary:
    values: dict[str, object] = {
        "name": "Erika Mustermann",
        "iban": "de89 3704 0044 0532 0130 00",
        "country": "DE",
    }
    values.update(fields)
    return Beneficiary.model_validate(values)


class TestBeneficiaryChecks:
    def test_iban_and_bic_are_made_compact_and_upper_case(self) -> None:
        result = normalised(beneficiary(bic="deut de ff 500", name="  Erika  "))
        assert (result.iban, result.bic, result.name) == (
            "DE89370400440532013000",
            "DEUTDEFF500",
            "Erika",
        )

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"name": None}, errors.BeneficiaryNameRequired),
            ({"name": "   "}, errors.BeneficiaryNameRequired),
            ({"iban": "DE89370400440532013001"}, errors.InvalidIban),
            ({"iban": "DE8937040044053201300"}, errors.InvalidIban),
            ({"iban": "XX89370400440532013000"}, errors.InvalidIban),
            ({"country": "FR"}, errors.IbanCountryMismatch),
            ({"bic": "DEUT1EFF"}, errors.InvalidBic),
            ({"bic": "DEUTXXFF"}, errors.InvalidBic),
        ],
    )
    def test_each_fault_has_its_own_code(
        self, fields: dict[str, object], error: type[errors.ProvidersError]
    ) -> None:
        with pytest.raises(error):
            normalised(beneficiary(**fields))

    def test_an_account_needs_an_iban_or_a_number_with_its_bank_code(self) -> None:
        with pytest.raises(ValueError, match="iban"):
            beneficiary(iban=None)
        with pytest.raises(ValueError, match="go together"):
            beneficiary(iban=None, account_number="31926819")
        assert beneficiary(iban=None, account_number="31926819", bank_code="601613").account == (
            "31926819"
        )


class TestStatusOrder:
    @pytest.mark.parametrize(
        ("bank_status", "outcome"),
        [
            ("ACSC", "settled"),
            ("ACCC", "settled"),
            ("RJCT", "rejected"),
            ("ACSP", "pending"),
            ("PDNG", "pending"),
            ("XXXX", None),
        ],
    )
    def test_iso_statuses_map_to_outcomes(self, bank_status: str, outcome: str | None) -> None:
        assert outcome_of(bank_status) == outcome


def answer_for(end_to_end_id: str) -> bytes:
    return build_pacs002(
        StatusReport(
            message_id="BANK-1",
            original_message_id="M-pay_1",
            original_end_to_end_id=end_to_end_id,
            status="ACSP",
            created_at=dt.datetime.now(dt.UTC),
        )
    )


def bank_answering(*answers: int | type[Exception]) -> tuple[PartnerBank, list[str]]:
    """A `PartnerBank` whose bank answers each call with the next status (or raises the
    next transport error; the last answer repeats); the paths it was called on."""
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        answer = answers[min(len(calls), len(answers)) - 1]
        if not isinstance(answer, int):
            raise answer("refused", request=request)
        return httpx.Response(answer, content=answer_for("E-pay_1") if answer == 200 else b"")

    bank = PartnerBank(
        PartnerBankSettings(name="unit-bank"),
        "http://bank.test",
        AsyncCircuitBreakerFactory(default_threshold=2, default_ttl=60),
        transport=httpx.MockTransport(handle),
        retry_wait_seconds=0,
    )
    return bank, calls


class TestBankTransport:
    async def test_5xx_and_connection_errors_are_retried(self) -> None:
        bank, calls = bank_answering(503, httpx.ConnectError, 200)

        report = await bank.submit(b"<Document/>", "E-pay_1")

        assert report.status == "ACSP"
        assert calls == ["/pacs008"] * 3

    async def test_a_4xx_is_not_retried(self) -> None:
        bank, calls = bank_answering(400)

        with pytest.raises(errors.BankUnavailable):
            await bank.submit(b"<Document/>", "E-pay_1")

        assert calls == ["/pacs008"]

    async def test_an_answer_about_another_instruction_is_not_taken(self) -> None:
        bank, _ = bank_answering(200)

        with pytest.raises(errors.BankUnavailable):
            await bank.submit(b"<Document/>", "E-pay_2")

    async def test_a_failing_bank_opens_its_breaker_and_is_not_called(self) -> None:
        bank, calls = bank_answering(httpx.ConnectError)
        for _ in range(2):
            with pytest.raises(errors.BankUnavailable):
                await bank.status("E-pay_1")
        called = len(calls)

        with pytest.raises(errors.BankUnavailable, match="refused until it recovers"):
            await bank.status("E-pay_1")

        assert called == 2 * 3
        assert len(calls) == called


class TestSeveralBanks:
    """Banks route by currency and country in the configured order, each with its own
    credentials."""

    @staticmethod
    def banks() -> PartnerBanks:
        settings = Settings(
            _env_file=None,
            env="test",
            providers={
                "banks": [
                    {
                        "name": "bank-de",
                        "base_url": "https://bank-de.example",
                        "currencies": ["EUR"],
                        "countries": ["DE", "AT"],
                        "callback_secret": "secret-of-bank-de",
                    },
                    {
                        "name": "bank-west",
                        "base_url": "https://bank-west.example",
                        "currencies": ["EUR", "GBP"],
                        "countries": ["DE", "FR", "GB"],
                        "callback_secret": "secret-of-bank-west",
                    },
                ]
            },
        )
        return PartnerBanks.from_settings(settings)

    @pytest.mark.parametrize(
        ("currency", "country", "bank"),
        [
            ("EUR", "DE", "bank-de"),
            ("EUR", "AT", "bank-de"),
            ("EUR", "FR", "bank-west"),
            ("GBP", "GB", "bank-west"),
            ("GBP", "DE", "bank-west"),
        ],
    )
    def test_the_first_bank_that_takes_currency_and_country_carries_it(
        self, currency: str, country: str, bank: str
    ) -> None:
        assert self.banks().route(currency, country).name == bank

    def test_what_no_bank_takes_is_refused_with_its_reason(self) -> None:
        banks = self.banks()
        with pytest.raises(errors.UnsupportedCurrency):
            banks.route("JPY", "DE")
        with pytest.raises(errors.UnsupportedCountry):
            banks.route("GBP", "AT")

    def test_each_bank_s_callbacks_take_only_its_own_secret(self) -> None:
        banks = self.banks()
        now = int(dt.datetime.now(dt.UTC).timestamp())
        body = build_pacs002(
            StatusReport(
                message_id="M1",
                original_message_id="M0",
                original_end_to_end_id="E0",
                status="ACSC",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
        signed_by_west = {"x-bank-signature": header(now, body, b"secret-of-bank-west")}

        assert banks.get("bank-west").verify_callback(body, signed_by_west).status == "ACSC"
        with pytest.raises(errors.InvalidBankSignature):
            banks.get("bank-de").verify_callback(body, signed_by_west)
