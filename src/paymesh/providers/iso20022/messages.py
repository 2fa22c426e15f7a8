"""The two ISO 20022 messages Paymesh exchanges with partner banks, as plain values.

`CreditTransfer` is what a pacs.008 carries for one payout, `StatusReport` what a pacs.002
says about it. Amounts are integer minor units here; the XML carries a decimal with the
currency's exponent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from paymesh.providers.errors import ProvidersError

PACS008_NAMESPACE: Final = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"
PACS002_NAMESPACE: Final = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"
PACS008_MESSAGE_NAME: Final = "pacs.008.001.08"

SETTLED: Final = frozenset({"ACSC", "ACCC"})
"""Settlement completed (on the debtor agent's, or on the creditor's account)."""
PENDING: Final = frozenset({"ACSP", "PDNG", "ACTC", "ACCP"})
"""Accepted or pending: a final status is still to come."""
REJECTED: Final = frozenset({"RJCT"})


class Iso20022Invalid(ProvidersError):
    """A message that is not valid against its schema (or not even safe, well-formed XML).
    Never sent; when received, refused."""

    code = "iso20022_invalid"
    status = 502
    title = "An ISO 20022 message is not valid against its schema"

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors) or ("invalid message",)
        super().__init__(detail="; ".join(self.errors[:3]), errors=list(self.errors[:20]))


@dataclass(frozen=True, kw_only=True)
class CreditTransfer:
    """One FI-to-FI customer credit transfer (one pacs.008 with one transaction).

    `message_id` and `end_to_end_id` identify the instruction at the bank: sent again with
    the same two, it is the same instruction. The debtor's account is an IBAN or another
    identifier; the creditor's an IBAN, or an account number with the bank's clearing code.
    """

    message_id: str
    end_to_end_id: str
    instruction_id: str
    transaction_id: str
    uetr: str | None = None
    created_at: datetime
    settlement_date: date
    amount_minor: int
    currency: str
    debtor_name: str
    debtor_account_iban: str | None = None
    debtor_account_other: str | None = None
    debtor_agent_bic: str
    creditor_name: str
    creditor_iban: str | None = None
    creditor_account_number: str | None = None
    creditor_bank_code: str | None = None
    creditor_agent_bic: str | None = None
    creditor_country: str
    creditor_address_lines: tuple[str, ...] = ()
    purpose_code: str | None = None
    remittance_info: str | None = None
    instructing_agent_bic: str
    instructed_agent_bic: str

    @property
    def creditor_account(self) -> str:
        """The creditor's account as the bank knows it: the IBAN, else the number."""
        return self.creditor_iban or self.creditor_account_number or ""


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """What a bank says about one instruction (one pacs.002 with one transaction status)."""

    message_id: str
    original_message_id: str
    original_end_to_end_id: str
    status: str
    reason_code: str | None = None
    reason_text: str | None = None
    created_at: datetime

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    @property
    def rejected(self) -> bool:
        return self.status in REJECTED

    @property
    def final(self) -> bool:
        return self.settled or self.rejected
