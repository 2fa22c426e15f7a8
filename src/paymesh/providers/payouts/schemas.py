"""Payout shapes: a beneficiary to validate, a payout instruction to send, the instruction
with its bank statuses, and the `providers.payout.*` events' data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from paymesh.kernel.ids import ID_PATTERN
from paymesh.kernel.money import AmountMinor, CurrencyCode
from paymesh.providers.schemas import CountryCode, plain_text

PayoutStatus = Literal["submitting", "submitted", "settled", "rejected", "timed_out"]
StatusSource = Literal["answer", "callback", "poll"]
BankText = Annotated[str, Field(min_length=1, max_length=140), AfterValidator(plain_text)]
AddressLine = Annotated[str, Field(min_length=1, max_length=70), AfterValidator(plain_text)]


class Beneficiary(BaseModel):
    """Who receives the payout and where: an IBAN, or an account number with its bank's
    code where IBANs are not used (GB sort codes, US routing numbers)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, AfterValidator(plain_text)] | None = Field(
        default=None,
        max_length=140,
        description="The account holder's name; required (`beneficiary_name_required`).",
    )
    iban: str | None = Field(
        default=None, max_length=50, description="Spaces allowed; answered compact, upper case."
    )
    account_number: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,34}$")
    bank_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,35}$")
    bic: str | None = Field(default=None, max_length=14, description="8 or 11 characters.")
    country: CountryCode
    address: list[AddressLine] | None = Field(
        default=None, max_length=7, description="Postal address lines (ISO 20022 AdrLine)."
    )

    @model_validator(mode="after")
    def _one_account(self) -> Self:
        by_number = self.account_number is not None or self.bank_code is not None
        if (self.iban is None) == (not by_number):
            raise ValueError("give either `iban` or `account_number` with `bank_code`")
        if by_number and (self.account_number is None or self.bank_code is None):
            raise ValueError("`account_number` and `bank_code` go together")
        return self

    @property
    def account(self) -> str:
        """The account as the bank looks it up: the IBAN, else the account number."""
        return self.iban or self.account_number or ""


class BeneficiaryValidation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: CurrencyCode
    beneficiary: Beneficiary


class ValidatedBeneficiary(BaseModel):
    bank: str = Field(description="The partner bank the payout would go through.")
    beneficiary: Beneficiary = Field(description="Normalised: IBAN and BIC compact, upper case.")
    account_name: str | None = Field(
        default=None, description="The holder's name as the bank knows it, when it says."
    )


class Debtor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: BankText = Field(description="Who pays: the platform's payout account holder.")
    account: str = Field(
        min_length=1, max_length=34, description="Its account at the bank (IBAN or other id)."
    )


class PayoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: str = Field(
        pattern=ID_PATTERN,
        max_length=128,
        description="The payment this pays out; the same payment id again returns the "
        "same instruction (and resends it if it was never answered).",
    )
    amount: AmountMinor = Field(description="Minor units the beneficiary receives.")
    currency: CurrencyCode
    debtor: Debtor
    beneficiary: Beneficiary
    purpose: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{4}$", description="ISO 20022 purpose code (`SALA`)."
    )
    remittance_info: BankText | None = Field(
        default=None, description="Unstructured remittance information the beneficiary sees."
    )


class PayoutStatusEntry(BaseModel):
    bank_status: str = Field(description="ISO 20022 status (`ACSP`, `ACSC`, `RJCT`, ...).")
    reason_code: str | None
    reason_text: str | None
    source: StatusSource
    late: bool = Field(description="Arrived after the instruction timed out; changed nothing.")
    recorded_at: dt.datetime


class Payout(BaseModel):
    id: str
    payment_id: str
    bank: str
    message_id: str = Field(description="pacs.008 MsgId, derived from the payment id.")
    end_to_end_id: str = Field(description="pacs.008 EndToEndId, derived from the payment id.")
    amount: int = Field(description="Minor units the beneficiary receives.")
    currency: str
    status: PayoutStatus
    reason_code: str | None = Field(description="ISO reason of a rejection (`AC01`, `AC04`).")
    reason_text: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    finished_at: dt.datetime | None
    history: list[PayoutStatusEntry] = Field(description="The bank's statuses, oldest first.")


class PayoutOutcome(BaseModel):
    """`data` of `providers.payout.settled`, `.rejected` and `.timed_out`."""

    payment_id: str
    instruction_id: str = Field(description="The payout instruction sent to the bank.")
    bank: str = Field(description="The partner bank's name.")
    status: Literal["settled", "rejected", "timed_out"]
    reason_code: str | None = Field(
        description="The bank's ISO 20022 reason code, for a rejection that gave one."
    )
    reason_text: str | None = Field(
        description="The bank's reason text for a rejection, or why the payout timed out."
    )


class BankStatusAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    payment_id: str
    payout_status: PayoutStatus
