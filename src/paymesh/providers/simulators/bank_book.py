"""The partner-bank simulator's books: the accounts it holds, the instructions it received,
and the outcome scripted for each creditor account.

Outcomes by the creditor account's last four characters, so demos and tests are
deterministic: `0001` rejected AC01 (incorrect account), `0002` rejected AC04 (closed
account), `0003` never answered (accepted, settlement in process, forever), `0004` settled
after the configured delay, `0005` rejected AM04 (insufficient funds), `0006` rejected RR04
(regulatory reason), `0009` unknown to the bank (its account lookup says no; an instruction
to it is rejected AC01), anything else settled at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from paymesh.kernel.config.banks import BankSimulatorAccount
from paymesh.providers.iso20022 import CreditTransfer


class Outcome(Enum):
    SETTLE = "settle"
    SETTLE_LATER = "settle_later"
    NEVER_ANSWER = "never_answer"
    REJECT_INCORRECT_ACCOUNT = "reject_incorrect_account"
    REJECT_CLOSED_ACCOUNT = "reject_closed_account"
    REJECT_INSUFFICIENT_FUNDS = "reject_insufficient_funds"
    REJECT_REGULATORY = "reject_regulatory"


UNKNOWN_ACCOUNT_SUFFIX = "0009"
REASONS: dict[Outcome, tuple[str, str]] = {
    Outcome.REJECT_INCORRECT_ACCOUNT: ("AC01", "Incorrect account number"),
    Outcome.REJECT_CLOSED_ACCOUNT: ("AC04", "Closed account number"),
    Outcome.REJECT_INSUFFICIENT_FUNDS: ("AM04", "Insufficient funds"),
    Outcome.REJECT_REGULATORY: ("RR04", "Regulatory reason"),
}
_BY_SUFFIX = {
    "0001": Outcome.REJECT_INCORRECT_ACCOUNT,
    "0002": Outcome.REJECT_CLOSED_ACCOUNT,
    "0003": Outcome.NEVER_ANSWER,
    "0004": Outcome.SETTLE_LATER,
    "0005": Outcome.REJECT_INSUFFICIENT_FUNDS,
    "0006": Outcome.REJECT_REGULATORY,
    UNKNOWN_ACCOUNT_SUFFIX: Outcome.REJECT_INCORRECT_ACCOUNT,
}


def normalised_account(account: str) -> str:
    """IBANs are written in groups of four for people; the bank files them compact."""
    return "".join(account.split()).upper()


def scripted_outcome(creditor_account: str) -> Outcome:
    return _BY_SUFFIX.get(normalised_account(creditor_account)[-4:], Outcome.SETTLE)


@dataclass
class SimulatedAccount:
    account: str
    name: str | None
    currency: str | None
    balance_minor: int = 0

    def view(self) -> dict[str, Any]:
        return {"exists": True, "name": self.name, "currency": self.currency}


@dataclass
class Instruction:
    """One pacs.008 the bank accepted (by end-to-end id), with its current status."""

    transfer: CreditTransfer
    outcome: Outcome
    received_at: datetime
    status: str = "ACSP"
    reason_code: str | None = None
    reason_text: str | None = None
    submissions: int = 1

    def view(self) -> dict[str, Any]:
        transfer = self.transfer
        return {
            "message_id": transfer.message_id,
            "end_to_end_id": transfer.end_to_end_id,
            "creditor_account": transfer.creditor_account,
            "creditor_name": transfer.creditor_name,
            "amount_minor": transfer.amount_minor,
            "currency": transfer.currency,
            "status": self.status,
            "reason_code": self.reason_code,
            "received_at": self.received_at.isoformat(),
            "submissions": self.submissions,
        }


class Book:
    """Accounts by normalised number, instructions by end-to-end id."""

    def __init__(self, accounts: list[BankSimulatorAccount]) -> None:
        self.accounts: dict[str, SimulatedAccount] = {
            normalised_account(entry.account): SimulatedAccount(
                normalised_account(entry.account), entry.name, entry.currency, entry.balance_minor
            )
            for entry in accounts
        }
        self.instructions: dict[str, Instruction] = {}

    def lookup(self, account: str) -> SimulatedAccount | None:
        """The account, if the bank holds it: a configured one, or any other whose number
        does not end in 0009 (the bank's customers are more than the demo's)."""
        number = normalised_account(account)
        known = self.accounts.get(number)
        if known is not None:
            return known
        if not number or number.endswith(UNKNOWN_ACCOUNT_SUFFIX):
            return None
        return SimulatedAccount(number, None, None)

    def credit(self, transfer: CreditTransfer) -> None:
        number = normalised_account(transfer.creditor_account)
        account = self.accounts.setdefault(
            number, SimulatedAccount(number, transfer.creditor_name, transfer.currency)
        )
        account.balance_minor += transfer.amount_minor
