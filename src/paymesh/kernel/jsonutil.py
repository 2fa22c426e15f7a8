"""JSON used across the platform.

`dumps`/`loads` (orjson: fast, exact for ints and decimals-as-str) serve the platform's own
data. `strict_loads` parses what clients send, as every service must accept it: UTF-8 text,
no duplicate object keys, no NaN or Infinity, and no NUL or lone surrogates in any string.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def column_dumps(value: Any) -> str:
    """A JSON column's text (the engines' `json_serializer`): orjson, which costs a fraction
    of the standard library's encoder; for what orjson refuses (an integer beyond 64 bits,
    a lone surrogate) the standard library's text, as before. Columns are still read with
    the standard library: orjson reads an integer just beyond 64 bits as a float."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def recordset_dumps(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array for PostgreSQL's `json_to_recordset` (a batch's rows in one
    parameter): datetimes in RFC 3339 with their offset, nested values as JSON. What orjson
    refuses goes through the standard library, as in `column_dumps`."""
    try:
        return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_isoformat)


def _isoformat(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class UnacceptableJson(ValueError):
    """Client JSON the platform refuses; subclasses say why."""


class MalformedJsonText(UnacceptableJson):
    """Not JSON: bad syntax, NaN/Infinity, a number out of range, or nested too deeply."""


class InvalidText(UnacceptableJson):
    """Not UTF-8, or a string holds NUL (U+0000) or a lone surrogate (U+D800..U+DFFF)."""


class DuplicateKey(UnacceptableJson):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears more than once in one object")
        self.key = key


_UNSAFE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def has_unsafe_characters(text: str) -> bool:
    """True if `text` holds NUL or a lone surrogate: neither survives PostgreSQL nor UTF-8."""
    return _UNSAFE_CHARACTERS.search(text) is not None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return value


def _refuse_constant(name: str) -> Any:
    raise MalformedJsonText(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise MalformedJsonText(f"the number {literal[:40]} is out of range")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_refuse_constant, parse_float=_finite_float
)


MAX_DEPTH = 64
"""How deep client JSON may nest. Far beyond any Paymesh document (a batch with metadata is
about a dozen levels), and well inside what every later consumer survives: orjson encodes
255 levels, pydantic's parser 200, Python's recursion limit about 1,000."""


_KEY_COLON = re.compile(rb'"\s*:')


def check_json(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Refuse client JSON that `strict_loads` would refuse, cheaply: for a body a service
    parses again with its own parser (the request-decoding layer's check).

    The common case costs one orjson parse and one walk over the containers: orjson itself
    refuses invalid UTF-8, lone surrogates, NaN, Infinity and out-of-range floats. It keeps
    the last of duplicate keys silently, so the walk counts the keys it kept. Every key in
    the text adds one to the count of colons and one to the count of `"` + spaces + `:`;
    when either count equals the keys kept, no key was dropped. Otherwise (a duplicate, or
    a `":` inside a string) `strict_loads` sees every key."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Mostly a refusal, which strict_loads names; but orjson also refuses some JSON
        # that strict_loads accepts (an integer beyond a double), and strict_loads decides.
        strict_loads(data, max_depth)
        return
    keys = _count_keys(value, max_depth)
    # Only a \u escape can put NUL or a lone surrogate into a string of valid UTF-8.
    if b"\\u" in data:
        _refuse_unsafe_strings(value)
    if data.count(b":") != keys and len(_KEY_COLON.findall(data)) != keys:
        strict_loads(data, max_depth)


def strict_loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse client JSON exactly (integers of any size stay integers), or raise an
    `UnacceptableJson` naming what is wrong."""
    try:
        text = data.decode("utf-8")  # refuses invalid UTF-8, including encoded surrogates
    except UnicodeDecodeError:
        raise InvalidText("the body is not valid UTF-8 text") from None
    try:
        value = _DECODER.decode(text)
    except UnacceptableJson:
        raise
    except RecursionError:
        raise MalformedJsonText("the JSON is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, or an integer of too many digits
        raise MalformedJsonText(str(error)) from None
    _count_keys(value, max_depth)
    if "\\u" in text:
        _refuse_unsafe_strings(value)
    return value


def _count_keys(value: Any, max_depth: int) -> int:
    """The keys of every object in `value`, level by level; refuses deeper nesting."""
    keys = 0
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise MalformedJsonText(f"the JSON nests deeper than {max_depth} levels")
        keys += sum(len(item) for item in level if type(item) is dict)
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
    return keys


def _refuse_unsafe_strings(value: Any) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_unsafe_characters(item):
                raise InvalidText("a string holds NUL (U+0000) or a lone surrogate")
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
