"""Safe XML in, schema-valid XML out.

Received XML is parsed by defusedxml with DTDs forbidden (so no entity expansion, no external
entity, no billion laughs), then validated by xmlschema against the schema of its message.
Built XML is validated the same way before anyone may send it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # building only: parsing goes through defusedxml
from functools import lru_cache
from pathlib import Path
from typing import Final

import xmlschema
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]  # no stubs
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

from paymesh.providers.iso20022.messages import (
    PACS002_NAMESPACE,
    PACS008_NAMESPACE,
    Iso20022Invalid,
)

SCHEMAS_DIR: Final = Path(__file__).parent / "schemas"
PACS008_XSD: Final = SCHEMAS_DIR / "pacs.008.001.08.xsd"
PACS002_XSD: Final = SCHEMAS_DIR / "pacs.002.001.10.xsd"
MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_REPORTED_ERRORS: Final = 10

_NAMESPACE: Final = re.compile(r"\{[^}]*\}")
_SCHEMA_FILES: Final = {PACS008_NAMESPACE: PACS008_XSD, PACS002_NAMESPACE: PACS002_XSD}


@lru_cache(maxsize=len(_SCHEMA_FILES))
def schema_for(namespace: str) -> xmlschema.XMLSchema10:
    """The compiled schema of a message namespace (compiled once per process)."""
    return xmlschema.XMLSchema10(str(_SCHEMA_FILES[namespace]))


def parse_document(xml: bytes, namespace: str) -> ET.Element:
    """`xml` parsed safely and validated against the schema of `namespace`; its root.

    Raises Iso20022Invalid for anything else: too large, not well-formed, a DTD or an
    entity, another message, or a message the schema refuses."""
    if len(xml) > MAX_MESSAGE_BYTES:
        raise Iso20022Invalid([f"the message is larger than {MAX_MESSAGE_BYTES} bytes"])
    try:
        root: ET.Element = fromstring(xml, forbid_dtd=True, forbid_entities=True)
    except DefusedXmlException as error:
        raise Iso20022Invalid([f"refused XML: {type(error).__name__}"]) from None
    except ET.ParseError as error:
        raise Iso20022Invalid([f"not well-formed XML: {error}"]) from None
    expected = f"{{{namespace}}}Document"
    if root.tag != expected:
        raise Iso20022Invalid([f"the root element is {root.tag}, not {expected}"])
    validate(root, namespace)
    return root


def validate(root: ET.Element, namespace: str) -> None:
    """Raise Iso20022Invalid with the schema's reasons when `root` is not valid."""
    errors = [
        _describe(error)
        for _, error in zip(
            range(MAX_REPORTED_ERRORS), schema_for(namespace).iter_errors(root), strict=False
        )
    ]
    if errors:
        raise Iso20022Invalid(errors)


def serialize(root: ET.Element, namespace: str) -> bytes:
    """`root` as UTF-8 XML, after validating it: an invalid message never leaves."""
    validate(root, namespace)
    # Written with the message namespace as the default one (`<Document xmlns="...">`), as
    # banks expect, rather than ElementTree's `ns0:` prefixes.
    plain = _local_names(root)
    plain.set("xmlns", namespace)
    body: bytes = ET.tostring(plain, encoding="utf-8", xml_declaration=True)
    return body


def _local_names(element: ET.Element) -> ET.Element:
    copy = ET.Element(element.tag.rpartition("}")[2], element.attrib)
    copy.text = element.text
    copy.extend(_local_names(child) for child in element)
    return copy


def _describe(error: xmlschema.XMLSchemaValidationError) -> str:
    where = error.path or "/"
    return _NAMESPACE.sub("", f"{where}: {error.reason or error.message}")
