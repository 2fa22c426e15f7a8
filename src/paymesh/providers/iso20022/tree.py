"""Small helpers to write and read namespaced ISO 20022 element trees, and their values
(amounts in minor units, timestamps)."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # building only: parsing goes through defusedxml
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.money import get_currency
from paymesh.providers.iso20022.messages import Iso20022Invalid


class Tree:
    """Elements of one message namespace: `add` writes, `text` / `find` read a path of
    local names such as `GrpHdr/MsgId`."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def qualified(self, path: str) -> str:
        return "/".join(f"{{{self.namespace}}}{step}" for step in path.split("/"))

    def root(self) -> ET.Element:
        return ET.Element(self.qualified("Document"))

    def add(
        self,
        parent: ET.Element,
        path: str,
        text: str | None = None,
        **attributes: str,
    ) -> ET.Element:
        """Append `path` (creating each step) under `parent`; its last element gets `text`."""
        element = parent
        for step in path.split("/"):
            element = ET.SubElement(element, self.qualified(step))
        if text is not None:
            element.text = text
        element.attrib.update(attributes)
        return element

    def find(self, parent: ET.Element, path: str) -> ET.Element | None:
        return parent.find(self.qualified(path))

    def find_all(self, parent: ET.Element, path: str) -> list[ET.Element]:
        return parent.findall(self.qualified(path))

    def text(self, parent: ET.Element, path: str) -> str | None:
        element = self.find(parent, path)
        return element.text if element is not None and element.text is not None else None

    def required(self, parent: ET.Element, path: str) -> str:
        value = self.text(parent, path)
        if value is None:
            raise Iso20022Invalid([f"{path} is missing"])
        return value


def decimal_amount(amount_minor: int, currency: str) -> str:
    """`amount_minor` written with the currency's exponent: 1234 EUR → "12.34", JPY → "1234"."""
    exponent = _exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-exponent):.{exponent}f}"


def minor_amount(text: str, currency: str) -> int:
    """The minor units of a decimal amount; more decimals than the currency has is invalid
    (12.345 EUR is no amount a bank can move)."""
    exponent = _exponent(currency)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Iso20022Invalid([f"{text!r} is not an amount"]) from None
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise Iso20022Invalid([f"{text} {currency} has more than {exponent} decimals"])
    return int(scaled)


def timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise Iso20022Invalid(["timestamps must carry their UTC offset"])
    return moment.isoformat()


def parse_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Iso20022Invalid([f"{text!r} is not a date and time"]) from None
    # xs:dateTime may omit the offset; a bank's local time without one is taken as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Iso20022Invalid([f"{text!r} is not a date"]) from None


def _exponent(currency: str) -> int:
    try:
        return get_currency(currency).exponent
    except PaymeshError:
        raise Iso20022Invalid([f"{currency!r} is not an ISO 4217 currency"]) from None
