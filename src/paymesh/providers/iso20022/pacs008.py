"""pacs.008.001.08, FI-to-FI customer credit transfer: one `CreditTransfer` per message.

Built as CBPR+-style single transactions: settlement on the instructed agent's books
(`INDA`), charges shared (`SHAR`), the instructing and instructed agents named on the
transaction. A creditor agent known neither by BIC nor by clearing code is written
`NOTPROVIDED`, as the market practice for IBAN-only payments does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # building only: parsing goes through defusedxml

from paymesh.providers.iso20022.messages import (
    PACS008_NAMESPACE,
    CreditTransfer,
    Iso20022Invalid,
)
from paymesh.providers.iso20022.tree import (
    Tree,
    decimal_amount,
    minor_amount,
    parse_date,
    parse_timestamp,
    timestamp,
)
from paymesh.providers.iso20022.validation import parse_document, serialize

NOT_PROVIDED = "NOTPROVIDED"
SETTLEMENT_METHOD = "INDA"
CHARGE_BEARER = "SHAR"
MAX_ADDRESS_LINES = 7

_tree = Tree(PACS008_NAMESPACE)
_TRANSACTION = "FIToFICstmrCdtTrf/CdtTrfTxInf"


def build_pacs008(transfer: CreditTransfer) -> bytes:
    """The pacs.008 of `transfer`, validated against the schema (Iso20022Invalid if not:
    an invalid message is never returned, so never sent)."""
    _check(transfer)
    root = _tree.root()
    message = _tree.add(root, "FIToFICstmrCdtTrf")
    header = _tree.add(message, "GrpHdr")
    _tree.add(header, "MsgId", transfer.message_id)
    _tree.add(header, "CreDtTm", timestamp(transfer.created_at))
    _tree.add(header, "NbOfTxs", "1")
    _tree.add(header, "SttlmInf/SttlmMtd", SETTLEMENT_METHOD)
    _add_transaction(_tree.add(message, "CdtTrfTxInf"), transfer)
    return serialize(root, PACS008_NAMESPACE)


def _check(transfer: CreditTransfer) -> None:
    problems = []
    if transfer.amount_minor <= 0:
        problems.append("the amount must be positive")
    if bool(transfer.debtor_account_iban) == bool(transfer.debtor_account_other):
        problems.append("the debtor account is an IBAN or another identifier, exactly one")
    if bool(transfer.creditor_iban) == bool(transfer.creditor_account_number):
        problems.append("the creditor account is an IBAN or an account number, exactly one")
    if transfer.creditor_account_number and not (
        transfer.creditor_bank_code or transfer.creditor_agent_bic
    ):
        problems.append("an account number needs the bank's code or BIC")
    if len(transfer.creditor_address_lines) > MAX_ADDRESS_LINES:
        problems.append(f"at most {MAX_ADDRESS_LINES} address lines")
    if problems:
        raise Iso20022Invalid(problems)


def _add_transaction(transaction: ET.Element, transfer: CreditTransfer) -> None:
    identification = _tree.add(transaction, "PmtId")
    _tree.add(identification, "InstrId", transfer.instruction_id)
    _tree.add(identification, "EndToEndId", transfer.end_to_end_id)
    _tree.add(identification, "TxId", transfer.transaction_id)
    if transfer.uetr:
        _tree.add(identification, "UETR", transfer.uetr)
    amount = decimal_amount(transfer.amount_minor, transfer.currency)
    _tree.add(transaction, "IntrBkSttlmAmt", amount, Ccy=transfer.currency)
    _tree.add(transaction, "IntrBkSttlmDt", transfer.settlement_date.isoformat())
    _tree.add(transaction, "ChrgBr", CHARGE_BEARER)
    _tree.add(transaction, "InstgAgt/FinInstnId/BICFI", transfer.instructing_agent_bic)
    _tree.add(transaction, "InstdAgt/FinInstnId/BICFI", transfer.instructed_agent_bic)
    _tree.add(transaction, "Dbtr/Nm", transfer.debtor_name)
    _add_account(
        transaction, "DbtrAcct", transfer.debtor_account_iban, transfer.debtor_account_other
    )
    _tree.add(transaction, "DbtrAgt/FinInstnId/BICFI", transfer.debtor_agent_bic)
    _add_creditor_agent(_tree.add(transaction, "CdtrAgt/FinInstnId"), transfer)
    creditor = _tree.add(transaction, "Cdtr")
    _tree.add(creditor, "Nm", transfer.creditor_name)
    address = _tree.add(creditor, "PstlAdr")
    _tree.add(address, "Ctry", transfer.creditor_country)
    for line in transfer.creditor_address_lines:
        _tree.add(address, "AdrLine", line)
    _add_account(transaction, "CdtrAcct", transfer.creditor_iban, transfer.creditor_account_number)
    if transfer.purpose_code:
        _tree.add(transaction, "Purp/Cd", transfer.purpose_code)
    if transfer.remittance_info:
        _tree.add(transaction, "RmtInf/Ustrd", transfer.remittance_info)


def _add_account(parent: ET.Element, name: str, iban: str | None, other: str | None) -> None:
    if iban:
        _tree.add(parent, f"{name}/Id/IBAN", iban)
    else:
        _tree.add(parent, f"{name}/Id/Othr/Id", other)


def _add_creditor_agent(institution: ET.Element, transfer: CreditTransfer) -> None:
    if transfer.creditor_agent_bic:
        _tree.add(institution, "BICFI", transfer.creditor_agent_bic)
    if transfer.creditor_bank_code:
        _tree.add(institution, "ClrSysMmbId/MmbId", transfer.creditor_bank_code)
    if not (transfer.creditor_agent_bic or transfer.creditor_bank_code):
        _tree.add(institution, "Othr/Id", NOT_PROVIDED)


def parse_pacs008(xml: bytes) -> CreditTransfer:
    """The credit transfer in a pacs.008: parsed safely (no DTD, no entities), validated
    against the schema, one transaction, an amount with no more decimals than its currency
    has. Anything else raises Iso20022Invalid."""
    root = parse_document(xml, PACS008_NAMESPACE)
    transactions = _tree.find_all(root, _TRANSACTION)
    if len(transactions) != 1:
        raise Iso20022Invalid([f"one transaction per message, not {len(transactions)}"])
    transaction = transactions[0]
    amount = _tree.find(transaction, "IntrBkSttlmAmt")
    currency = amount.get("Ccy", "") if amount is not None else ""
    settlement_date = _tree.text(transaction, "IntrBkSttlmDt")
    if settlement_date is None:
        raise Iso20022Invalid(["IntrBkSttlmDt is missing"])
    text = _tree.text
    return CreditTransfer(
        message_id=_tree.required(root, "FIToFICstmrCdtTrf/GrpHdr/MsgId"),
        created_at=parse_timestamp(_tree.required(root, "FIToFICstmrCdtTrf/GrpHdr/CreDtTm")),
        end_to_end_id=_tree.required(transaction, "PmtId/EndToEndId"),
        instruction_id=text(transaction, "PmtId/InstrId") or "",
        transaction_id=text(transaction, "PmtId/TxId") or "",
        uetr=text(transaction, "PmtId/UETR"),
        settlement_date=parse_date(settlement_date),
        amount_minor=minor_amount(_tree.required(transaction, "IntrBkSttlmAmt"), currency),
        currency=currency,
        debtor_name=text(transaction, "Dbtr/Nm") or "",
        debtor_account_iban=text(transaction, "DbtrAcct/Id/IBAN"),
        debtor_account_other=text(transaction, "DbtrAcct/Id/Othr/Id"),
        debtor_agent_bic=text(transaction, "DbtrAgt/FinInstnId/BICFI") or "",
        creditor_name=text(transaction, "Cdtr/Nm") or "",
        creditor_iban=text(transaction, "CdtrAcct/Id/IBAN"),
        creditor_account_number=text(transaction, "CdtrAcct/Id/Othr/Id"),
        creditor_bank_code=text(transaction, "CdtrAgt/FinInstnId/ClrSysMmbId/MmbId"),
        creditor_agent_bic=text(transaction, "CdtrAgt/FinInstnId/BICFI"),
        creditor_country=text(transaction, "Cdtr/PstlAdr/Ctry") or "",
        creditor_address_lines=tuple(
            line.text or "" for line in _tree.find_all(transaction, "Cdtr/PstlAdr/AdrLine")
        ),
        purpose_code=text(transaction, "Purp/Cd"),
        remittance_info=text(transaction, "RmtInf/Ustrd"),
        instructing_agent_bic=text(transaction, "InstgAgt/FinInstnId/BICFI") or "",
        instructed_agent_bic=text(transaction, "InstdAgt/FinInstnId/BICFI") or "",
    )
