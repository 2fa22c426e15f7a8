"""Masking before anything is stored: rules kept as data, applied to nested JSON.

`mask(value, rules)` returns a masked deep copy of a JSON-like value and never mutates its
input. Three things happen, in this order of precedence:

1. A key matching `remove_keys` (passwords, secrets, tokens, one-time codes, API keys, CVV,
   PIN...) keeps its name but its whole value becomes `removed_marker`, so an auditor sees
   that a secret *was* sent without seeing it.
2. A key matching `mask_keys` has its value masked by kind (card, IBAN, account, email,
   phone, name, last4); lists and objects under such a key inherit the kind.
3. Every string (keys included), and every integer, is scanned for values that *look*
   sensitive whatever the key: bearer tokens, JWTs and `password=...` pairs are removed;
   card numbers (13-19 digits passing Luhn, spaces or dashes allowed), IBANs
   (`stdnum.iban.is_valid`) and email addresses are masked where they stand.

Key patterns are shell-style (`fnmatch`: `*`, `?`, `[abc]`), matched against the whole key
after both sides are case-folded and stripped of `_`, `-`, `.` and spaces, so `*password*`
matches `Password`, `newPassword` and `new_password`, and `*apikey*` matches `x-api-key`.
A (name, value) pair naming a removed key (`["x-api-key", "..."]`, `{"name": "Cookie",
"value": "..."}`) loses its value too.

Masking is idempotent (`mask(mask(x)) == mask(x)`): each string is masked to a fixed point,
and masked forms (`411111******1111`, `j***@example.com`, `*********958`) are fixed points.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from stdnum import iban as stdnum_iban

MaskKind = Literal["card", "iban", "account", "email", "phone", "name", "last4"]


class MaskingRules(BaseModel):
    """What to remove and what to mask; load from JSON with `model_validate_json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_keys: list[str] = Field(
        description="Key patterns (fnmatch, case- and separator-insensitive) whose values are "
        "replaced by `removed_marker`, whatever they hold."
    )
    mask_keys: dict[str, MaskKind] = Field(
        description="Key pattern -> mask kind, first match wins; `remove_keys` wins over it."
    )
    keep_values: dict[str, str] = Field(
        default_factory=dict,
        description="Key pattern -> regular expression (full match): a string value of a "
        "removed key that matches is kept, and so is a JSON integer under such a key. The "
        "default keeps snake_case problem codes and integer categories under `code` while "
        "one-time codes and OAuth authorization codes (strings) are removed.",
    )
    detect_values: bool = True
    mask_names: bool = False
    removed_marker: str = Field("[REMOVED]", min_length=1)
    truncated_marker: str = Field("[TRUNCATED]", min_length=1)
    max_depth: int = Field(32, ge=1, le=256, description="Deeper containers are truncated.")
    max_nodes: int = Field(100_000, ge=1, description="Values past this count are truncated.")
    pair_name_keys: list[str] = Field(
        default_factory=lambda: ["name", "key", "header", "field"],
        description="An object whose entry under one of these keys names a removed key "
        '(`{"name": "x-api-key", "value": "..."}`) has its `value` removed.',
    )
    max_string_length: int = Field(
        65_536, ge=1, description="Longer strings (blobs, not events) are truncated whole."
    )

    @field_validator("keep_values")
    @classmethod
    def _regexes_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for expression in value.values():
            try:
                re.compile(expression)
            except re.error as error:
                raise ValueError(f"not a regular expression: {expression!r} ({error})") from None
        return value


DEFAULT_RULES = MaskingRules(
    remove_keys=[
        *("*password*", "*passwd*", "*passphrase*", "pwd", "*pwd", "*secret*", "*token*"),
        *("authorization", "proxyauthorization", "*cookie*", "sessionid", "*credential*"),
        *("*apikey*", "*privatekey*", "*signingkey*", "*encryptionkey*", "*assertion*"),
        *("code", "otp", "otp*", "*otp", "totp*", "hotp*", "*onetimecode*", "*otpcode"),
        *("mfacode", "smscode", "*verificationcode", "authcode", "authorizationcode"),
        *("recoverycode*", "backupcode*", "cvv*", "cvc*", "cvn", "csc", "securitycode"),
        *("cardsecuritycode", "cardverification*", "pin", "*pin", "pinblock"),
        *("track1", "track2", "trackdata", "*magstripe*"),
    ],
    mask_keys={
        **dict.fromkeys(("pan", "*cardnumber", "primaryaccountnumber", "cardno"), "card"),
        **dict.fromkeys(("iban", "*iban"), "iban"),
        **dict.fromkeys(("*accountnumber", "accountno", "bankaccount", "bban"), "account"),
        **dict.fromkeys(("*email*",), "email"),
        **dict.fromkeys(
            ("*phone", "*phones", "*phonenumber*", "mobile", "msisdn", "telephone", "tel"),
            "phone",
        ),
        **dict.fromkeys(
            (
                *("name", "fullname", "firstname", "lastname", "givenname", "familyname"),
                *("middlename", "surname", "*holdername", "cardholder", "accountholder"),
                *("beneficiaryname", "payername", "payeename", "debtorname", "creditorname"),
                "customername",
            ),
            "name",
        ),
        **dict.fromkeys(
            ("ssn", "socialsecuritynumber", "taxid", "nationalid*", "passportnumber"), "last4"
        ),
    },
    keep_values={"code": r"[a-z]+(?:_[a-z0-9]+)*"},
)

# --- the mask of each kind ---------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s-]")
_MASKED_PAN = re.compile(r"[0-9]{6}\*{3,9}[0-9]{4}")


def _is_ascii_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _masked_pan(digits: str) -> str:
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _keep_last(text: str, count: int) -> str:
    """Letters and digits (and earlier stars) become stars but the last `count`; separators
    go. At most `count` characters: all stars, since the tail would be the whole value."""
    kept = [char for char in text if char.isalnum() or char == "*"]
    if len(kept) <= count:
        return "*" * len(kept)
    return "*" * (len(kept) - count) + "".join(kept[-count:])


def mask_card(text: str) -> str:
    """First 6 and last 4 digits of a 13-19 digit card number, separators dropped:
    "4111 1111 1111 1111" -> "411111******1111". Anything else keeps only its last 4."""
    compact = _SEPARATORS.sub("", text)
    if _MASKED_PAN.fullmatch(compact):
        return compact
    if 13 <= len(compact) <= 19 and all(_is_ascii_digit(char) for char in compact):
        return _masked_pan(compact)
    return _keep_last(text, 4)


def mask_iban(text: str) -> str:
    """Only the last 4 characters, length kept: "GB82WEST12345698765432" ->
    "******************5432" (the country code is not kept: it narrows the bank)."""
    return _keep_last(text, 4)


def mask_account(text: str) -> str:
    """Only the last 4 characters: "31926819" -> "****6819"."""
    return _keep_last(text, 4)


def mask_phone(text: str) -> str:
    """Only the last 3 digits, one star per other digit: "+44 20 7946 0958" ->
    "*********958". Text without digits is not a phone number and is kept."""
    kept = [char for char in text if _is_ascii_digit(char) or char == "*"]
    if not kept:
        return text
    if len(kept) <= 3:
        return "*" * len(kept)
    return "*" * (len(kept) - 3) + "".join(kept[-3:])


def mask_name(text: str) -> str:
    """Each word's initial: "Jane Doe" -> "J*** D***"."""
    return " ".join(word[0] + "***" for word in text.split())


_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def mask_email(text: str) -> str:
    """Every address in the text keeps the first character of its local part and its
    domain: "jane.doe@example.com" -> "j***@example.com". Scans from each `@` outwards, so
    a long text without addresses costs one pass."""
    if "@" not in text:
        return text
    parts: list[str] = []
    done = 0
    for at in (index for index, char in enumerate(text) if char == "@"):
        start = at
        while start > done and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start == at or domain is None:
            continue
        parts += [text[done:start], text[start], "***@", domain.group()]
        done = domain.end()
    parts.append(text[done:])
    return "".join(parts)


def mask_last4(text: str) -> str:
    """Only the last 4 characters: national ids, tax ids, passport numbers."""
    return _keep_last(text, 4)


_KIND_MASKS: dict[MaskKind, Callable[[str], str]] = {
    "card": mask_card,
    "iban": mask_iban,
    "account": mask_account,
    "email": mask_email,
    "phone": mask_phone,
    "name": mask_name,
    "last4": mask_last4,
}

# --- detection in free text --------------------------------------------------------------

_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{12,}=*")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)+")
_SECRET_PAIR = re.compile(
    r"(?i)([\w-]{0,40}(?:password|passwd|secret|token|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)"
    r"[^\s\"'&,;]+"
)
_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_GROUP_SEPARATOR = re.compile(r"[ -]")
_IBAN_START = re.compile(r"(?=[A-Za-z]{2}[0-9]{2})")


# Cheap tests that rule a pattern out before it runs (most strings are ids, codes, times):
# each matches wherever its pattern could, so skipping on no match changes nothing.
_SECRET_HINT = re.compile(r"(?i)bearer|eyJ|password|passwd|secret|token|api[_-]?key")
_CARD_HINT = re.compile(r"[0-9](?:[ -]?[0-9]){12}")  # a digit run of 13 digits or more


def _remove_secrets(text: str, marker: str) -> str:
    if _SECRET_HINT.search(text) is None:
        return text
    text = _BEARER.sub(lambda match: match.group(1) + marker, text)
    text = _JWT.sub(marker, text)
    return _SECRET_PAIR.sub(lambda match: match.group(1) + marker, text)


def _mask_digit_run(match: re.Match[str]) -> str:
    """A run of digit groups: the whole run if it is a card number; else every window of
    whole groups that is one ("ref 12 4111 1111 1111 1111"). Windows that share a group
    are masked as one span (its first 6 and last 4 digits kept): masking only one of two
    overlapping windows would leave the other card's middle digits in the clear."""
    run = match.group()
    groups = _GROUP_SEPARATOR.split(run)
    separators = [*_GROUP_SEPARATOR.findall(run), ""]
    digits = "".join(groups)
    if 13 <= len(digits) <= 19 and _luhn_valid(digits):
        return _masked_pan(digits)
    if len(digits) < 13:
        return run
    spans: list[list[int]] = []  # [first, last] group of each merged span
    for first in range(len(groups)):
        window = ""
        for last in range(first, len(groups)):
            window += groups[last]
            if len(window) > 19:
                break
            if len(window) >= 13 and _luhn_valid(window):
                if spans and first <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], last)
                else:
                    spans.append([first, last])
    pieces: list[str] = []
    index = 0
    for first, last in spans:
        pieces += [group + separators[at] for at, group in enumerate(groups[index:first], index)]
        pieces.append(_masked_pan("".join(groups[first : last + 1])) + separators[last])
        index = last + 1
    pieces += [group + separators[at] for at, group in enumerate(groups[index:], index)]
    return "".join(pieces)


def _iban_end(text: str, start: int) -> int | None:
    """End of the longest valid IBAN starting at `start` (single spaces or dashes between
    characters allowed, as IBANs are printed in groups of four), if any."""
    characters: list[str] = []
    ends: list[int] = []
    index = start
    while index < len(text) and len(characters) < 34:
        char = text[index]
        if char.isascii() and char.isalnum():
            characters.append(char.upper())
            ends.append(index + 1)
        elif not (
            char in " -"
            and index + 1 < len(text)
            and text[index + 1].isascii()
            and text[index + 1].isalnum()
        ):
            break
        index += 1
    for length in reversed(_mod97_lengths(characters)):
        if stdnum_iban.is_valid("".join(characters[:length])):
            return ends[length - 1]
    return None


def _mod97_lengths(characters: list[str]) -> list[int]:
    """Lengths (15 and up) whose ISO 7064 MOD 97-10 check passes, computed in one pass: a
    cheap filter so that stdnum (country and format checks) runs on ~1 in 97 candidates."""
    head = "".join(str(int(char, 36)) for char in characters[:4])
    head_value, head_shift = int(head), pow(10, len(head), 97)
    remainder = 0
    lengths: list[int] = []
    for length, char in enumerate(characters[4:], start=5):
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
        if length >= 15 and (remainder * head_shift + head_value) % 97 == 1:
            lengths.append(length)
    return lengths


def _mask_ibans(text: str) -> str:
    parts: list[str] = []
    done = 0
    for candidate in _IBAN_START.finditer(text):
        start = candidate.start()
        end = _iban_end(text, start) if start >= done else None
        if end is not None:
            parts += [text[done:start], mask_iban(text[start:end])]
            done = end
    parts.append(text[done:])
    return "".join(parts)


def _mask_text_once(text: str, marker: str, detect: bool) -> str:
    text = _remove_secrets(text, marker)
    if detect:
        text = mask_email(text)
        text = _mask_ibans(text)
        if _CARD_HINT.search(text) is not None:
            text = _DIGIT_RUN.sub(_mask_digit_run, text)
    return text


_MAX_PASSES = 8


_CACHED_LENGTH = 256
"""Strings up to this long are remembered masked (keys, currencies, types, statuses recur
in every event): 4,096 of them, at most ~1 MB."""


def _mask_string(text: str, kind: MaskKind | None, rules: MaskingRules) -> str:
    """Kind mask then detection, repeated until nothing changes: masking one match can join
    its neighbours into a new one, and the fixed point is what makes `mask` idempotent."""
    if len(text) <= _CACHED_LENGTH:
        return _mask_short(text, kind, rules.removed_marker, rules.detect_values)
    return _mask_to_fixed_point(text, kind, rules.removed_marker, rules.detect_values)


def _mask_to_fixed_point(text: str, kind: MaskKind | None, marker: str, detect: bool) -> str:
    for _ in range(_MAX_PASSES):
        masked = _mask_text_once(_KIND_MASKS[kind](text) if kind else text, marker, detect)
        if masked == text:
            break
        text = masked
    return text


# Exactly what the masking of a string depends on is its key: the text, the kind, the
# removed marker and whether values are detected.
_mask_short = lru_cache(maxsize=4096)(_mask_to_fixed_point)


# --- key patterns ------------------------------------------------------------------------

_KEY_SEPARATORS = re.compile(r"[\s_.-]")


@lru_cache(maxsize=8192)
def _normalize_key(key: str) -> str:
    return _KEY_SEPARATORS.sub("", key).casefold()


def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(_normalize_key(item)) for item in patterns))


MAX_CATEGORY_CODE = 65_535


def _kept(value: Any, kept: re.Pattern[str]) -> bool:
    """A removed key's value that is kept: text matching the rule, or a small JSON integer
    (0-65535: a 16-bit category such as the ledger's account and transfer `code`). Paymesh's
    one-time codes are strings (a number would lose leading zeros) of six digits."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= MAX_CATEGORY_CODE
    return isinstance(value, str) and kept.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class _KeyRules:
    remove: re.Pattern[str] | None
    keep: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...]
    kinds: tuple[tuple[re.Pattern[str], MaskKind], ...]

    def removes(self, key: str, value: Any) -> bool:
        return self.verdict(key, value) == "remove"

    def verdict(self, key: str, value: Any) -> Literal["remove", "keep"] | None:
        """For a secret-named key: "remove", or "keep" when its value is one `keep_values`
        lets through (kept verbatim: a problem code or a category, nothing to mask); None
        for any other key."""
        normalized = _normalize_key(key)
        if self.remove is None or not _matches(self.remove, normalized):
            return None
        if any(pattern.match(normalized) and _kept(value, kept) for pattern, kept in self.keep):
            return "keep"
        return "remove"

    def kind(self, key: str) -> MaskKind | None:
        return _kind_of(self.kinds, _normalize_key(key))


@lru_cache(maxsize=8192)
def _matches(pattern: re.Pattern[str], normalized_key: str) -> bool:
    return pattern.match(normalized_key) is not None


@lru_cache(maxsize=8192)
def _kind_of(
    kinds: tuple[tuple[re.Pattern[str], MaskKind], ...], normalized_key: str
) -> MaskKind | None:
    return next((kind for pattern, kind in kinds if pattern.match(normalized_key)), None)


@lru_cache(maxsize=64)
def _key_rules(
    remove: tuple[str, ...],
    keep: tuple[tuple[str, str], ...],
    kinds: tuple[tuple[str, MaskKind], ...],
    mask_names: bool,
) -> _KeyRules:
    return _KeyRules(
        remove=_pattern(remove),
        keep=tuple(
            (re.compile(fnmatch.translate(_normalize_key(k))), re.compile(v)) for k, v in keep
        ),
        kinds=tuple(
            (re.compile(fnmatch.translate(_normalize_key(pattern))), kind)
            for pattern, kind in kinds
            if mask_names or kind != "name"
        ),
    )


# --- the walk ----------------------------------------------------------------------------


def _name_of(value: Any) -> str:
    """A pair's name: text or bytes only ("" never matches a key pattern worth having)."""
    return _text_of(value) if isinstance(value, str | bytes | bytearray) else ""


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


@dataclass(slots=True)
class _Walk:
    rules: MaskingRules
    keys: _KeyRules
    nodes: int = 0

    def value(self, value: Any, kind: MaskKind | None, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.rules.max_nodes:
            return self.rules.truncated_marker
        if isinstance(value, Mapping):
            if depth >= self.rules.max_depth:
                return self.rules.truncated_marker
            return self.mapping(value, kind, depth + 1)
        if isinstance(value, list | tuple | set | frozenset):
            if depth >= self.rules.max_depth:
                return self.rules.truncated_marker
            items = list(value)
            if len(items) == 2 and self.keys.removes(_name_of(items[0]), items[1]):
                # A (name, value) pair such as an ASGI header: ("x-api-key", "...").
                self.nodes += 1
                return [self.value(items[0], kind, depth + 1), self.rules.removed_marker]
            return [self.value(item, kind, depth + 1) for item in items]
        return self.scalar(value, kind)

    def mapping(self, value: Mapping[Any, Any], kind: MaskKind | None, depth: int) -> Any:
        masked: dict[str, Any] = {}
        # {"name": "Authorization", "value": "..."}: the value is the named field's.
        secret_pair = any(
            self.keys.removes(_name_of(value.get(pair_key)), value.get("value"))
            for pair_key in self.rules.pair_name_keys
        )
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            if len(name) > self.rules.max_string_length:
                name = self.rules.truncated_marker
            new_key = self.unique(masked, _mask_string(name, None, self.rules))
            verdict = self.keys.verdict(name, item)
            if verdict == "remove" or (secret_pair and name == "value"):
                self.nodes += 1
                masked[new_key] = self.rules.removed_marker
            elif verdict == "keep":
                # Verbatim, not masked as its parent's kind (a second pass would remove
                # that); an over-long one is removed rather than cut.
                self.nodes += 1
                too_long = isinstance(item, str) and len(item) > self.rules.max_string_length
                masked[new_key] = self.rules.removed_marker if too_long else item
            else:
                masked[new_key] = self.value(item, self.keys.kind(name) or kind, depth)
        return masked

    @staticmethod
    def unique(masked: dict[str, Any], key: str) -> str:
        """Two keys that mask alike (two addresses) both stay, the second suffixed."""
        candidate, suffix = key, 2
        while candidate in masked:
            candidate, suffix = f"{key}#{suffix}", suffix + 1
        return candidate

    def scalar(self, value: Any, kind: MaskKind | None) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return self.number(value, kind)
        # Decimals, dates, UUIDs...: stored as their text, masked as text.
        text = _text_of(value)
        if text in (self.rules.removed_marker, self.rules.truncated_marker):
            return text
        if len(text) > self.rules.max_string_length:
            return self.rules.truncated_marker
        return _mask_string(text, kind, self.rules)

    def number(self, value: float, kind: MaskKind | None) -> Any:
        """A card number or account number sent as a JSON number is masked too (as a
        string); numbers with nothing to mask keep their type."""
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return value
        whole = int(value)
        if whole < 0 or whole.bit_length() > 256:
            return value
        digits = str(whole)
        if kind is not None:
            masked = _mask_string(digits, kind, self.rules)
            return value if masked == digits else masked
        if self.rules.detect_values and 13 <= len(digits) <= 19 and _luhn_valid(digits):
            return _masked_pan(digits)
        return value


def mask(value: Any, rules: MaskingRules = DEFAULT_RULES) -> Any:
    """A masked deep copy of `value` (dicts, lists, str, int, float, bool, None; tuples and
    sets become lists, other objects their masked text). Never mutates, never raises on
    JSON-like input; containers deeper than `max_depth` or past `max_nodes` values become
    `truncated_marker`."""
    keys = _key_rules(
        tuple(rules.remove_keys),
        tuple(rules.keep_values.items()),
        tuple(rules.mask_keys.items()),
        rules.mask_names,
    )
    return _Walk(rules, keys).value(value, None, 0)
