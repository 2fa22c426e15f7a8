"""Field types every service's schemas reuse.

`Metadata` is the client's own annotations on a resource: a JSON object any service stores
(JSON/JSONB column), echoes back and puts in events. Whatever a client sends must survive
both databases and orjson, so it is bounded and JSON-safe: string keys, integers within
int64 (no floats: send decimals as strings), strings without NUL or lone surrogates.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from paymesh.kernel.jsonutil import dumps, has_unsafe_characters

MAX_METADATA_BYTES = 8192
MAX_METADATA_DEPTH = 8
MAX_METADATA_KEYS = 256
MAX_METADATA_KEY_LENGTH = 128
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH:
        raise ValueError(f"metadata keys are strings of 1 to {MAX_METADATA_KEY_LENGTH} characters")
    if has_unsafe_characters(key):
        raise ValueError("metadata keys may not hold NUL or lone surrogates")


def _check_scalar(value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("metadata integers must fit in 64 bits; send larger ones as strings")
    elif isinstance(value, str):
        if has_unsafe_characters(value):
            raise ValueError("metadata strings may not hold NUL or lone surrogates")
    elif isinstance(value, float):
        raise ValueError("metadata numbers must be integers; send decimals as strings")
    else:
        raise ValueError(f"metadata cannot hold {type(value).__name__}")


def _check_tree(root: dict[str, Any]) -> None:
    """Walk without recursion, so no nesting can exhaust the stack before it is refused."""
    keys = 0
    pending: list[tuple[object, int]] = [(root, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata may nest at most {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):
            keys += len(value)
            if keys > MAX_METADATA_KEYS:
                raise ValueError(f"metadata may hold at most {MAX_METADATA_KEYS} keys")
            for key, item in value.items():
                _check_key(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        else:
            _check_scalar(value)


def metadata_checker(max_bytes: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        _check_tree(value)
        if len(dumps(value)) > max_bytes:
            raise ValueError(f"metadata must encode to at most {max_bytes} bytes of JSON")
        return value

    return AfterValidator(check)


def metadata_description(max_bytes: int) -> str:
    return (
        f"Your own annotations: a JSON object of at most {max_bytes} bytes, "
        f"{MAX_METADATA_KEYS} keys and {MAX_METADATA_DEPTH} levels; integers within 64 bits, "
        "no floats (send decimals as strings)."
    )


Metadata = Annotated[
    dict[str, Any],
    metadata_checker(MAX_METADATA_BYTES),
    Field(
        description=metadata_description(MAX_METADATA_BYTES),
        json_schema_extra={"maxProperties": MAX_METADATA_KEYS},
    ),
]
"""Metadata of at most 8 KiB; a service with another size builds its own from
`metadata_checker` (see the ledger's schemas)."""
