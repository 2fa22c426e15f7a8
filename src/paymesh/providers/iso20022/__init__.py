"""ISO 20022 messages with partner banks: pacs.008.001.08 out, pacs.002.001.10 back.

Every message is validated against its XML schema (shipped in `schemas/`, see its README
for where each comes from) before it is returned by a builder, and after it is parsed;
parsing refuses DTDs and entities.
"""

from paymesh.providers.iso20022.messages import (
    PACS002_NAMESPACE,
    PACS008_NAMESPACE,
    PENDING,
    REJECTED,
    SETTLED,
    CreditTransfer,
    Iso20022Invalid,
    StatusReport,
)
from paymesh.providers.iso20022.pacs002 import build_pacs002, parse_pacs002
from paymesh.providers.iso20022.pacs008 import build_pacs008, parse_pacs008
from paymesh.providers.iso20022.validation import PACS002_XSD, PACS008_XSD

__all__ = [
    "PACS002_NAMESPACE",
    "PACS002_XSD",
    "PACS008_NAMESPACE",
    "PACS008_XSD",
    "PENDING",
    "REJECTED",
    "SETTLED",
    "CreditTransfer",
    "Iso20022Invalid",
    "StatusReport",
    "build_pacs002",
    "build_pacs008",
    "parse_pacs002",
    "parse_pacs008",
]
