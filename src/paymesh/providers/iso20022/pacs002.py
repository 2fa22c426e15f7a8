"""pacs.002.001.10, FI-to-FI payment status report: one `StatusReport` per message.

The report names the original message (`OrgnlGrpInf`) and the original end-to-end id, the
transaction status (`TxSts`), and for a rejection its ISO reason code (`StsRsnInf/Rsn/Cd`)
with free text split over `AddtlInf` lines of at most 105 characters.
"""

from __future__ import annotations

from paymesh.providers.iso20022.messages import (
    PACS002_NAMESPACE,
    PACS008_MESSAGE_NAME,
    Iso20022Invalid,
    StatusReport,
)
from paymesh.providers.iso20022.tree import Tree, parse_timestamp, timestamp
from paymesh.providers.iso20022.validation import parse_document, serialize

ADDITIONAL_INFORMATION_CHARACTERS = 105

_tree = Tree(PACS002_NAMESPACE)
_TRANSACTION = "FIToFIPmtStsRpt/TxInfAndSts"


def build_pacs002(report: StatusReport) -> bytes:
    """The pacs.002 of `report`, validated against the schema (Iso20022Invalid if not)."""
    root = _tree.root()
    message = _tree.add(root, "FIToFIPmtStsRpt")
    header = _tree.add(message, "GrpHdr")
    _tree.add(header, "MsgId", report.message_id)
    _tree.add(header, "CreDtTm", timestamp(report.created_at))
    transaction = _tree.add(message, "TxInfAndSts")
    original = _tree.add(transaction, "OrgnlGrpInf")
    _tree.add(original, "OrgnlMsgId", report.original_message_id)
    _tree.add(original, "OrgnlMsgNmId", PACS008_MESSAGE_NAME)
    _tree.add(transaction, "OrgnlEndToEndId", report.original_end_to_end_id)
    _tree.add(transaction, "TxSts", report.status)
    if report.reason_code or report.reason_text:
        reason = _tree.add(transaction, "StsRsnInf")
        if report.reason_code:
            _tree.add(reason, "Rsn/Cd", report.reason_code)
        for line in _lines(report.reason_text or ""):
            _tree.add(reason, "AddtlInf", line)
    return serialize(root, PACS002_NAMESPACE)


def parse_pacs002(xml: bytes) -> StatusReport:
    """The status report in a pacs.002: parsed safely (no DTD, no entities), validated
    against the schema, exactly one transaction status. Anything else raises
    Iso20022Invalid."""
    root = parse_document(xml, PACS002_NAMESPACE)
    transactions = _tree.find_all(root, _TRANSACTION)
    if len(transactions) != 1:
        raise Iso20022Invalid([f"one transaction status per report, not {len(transactions)}"])
    transaction = transactions[0]
    reason_lines = [line.text or "" for line in _tree.find_all(transaction, "StsRsnInf/AddtlInf")]
    return StatusReport(
        message_id=_tree.required(root, "FIToFIPmtStsRpt/GrpHdr/MsgId"),
        created_at=parse_timestamp(_tree.required(root, "FIToFIPmtStsRpt/GrpHdr/CreDtTm")),
        original_message_id=_tree.required(transaction, "OrgnlGrpInf/OrgnlMsgId"),
        original_end_to_end_id=_tree.required(transaction, "OrgnlEndToEndId"),
        status=_tree.required(transaction, "TxSts"),
        reason_code=_tree.text(transaction, "StsRsnInf/Rsn/Cd"),
        reason_text="".join(reason_lines) or None,
    )


def _lines(text: str) -> list[str]:
    size = ADDITIONAL_INFORMATION_CHARACTERS
    return [text[start : start + size] for start in range(0, len(text), size)]
