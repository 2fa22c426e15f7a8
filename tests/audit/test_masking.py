"""Masking before storage: a corpus of real-looking nested JSON with exact expected outputs,
each rule on its own, and properties over arbitrary JSON (never raises, idempotent, no card
number or IBAN left in any string)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from stdnum import iban as stdnum_iban
from stdnum import luhn

from paymesh.audit import masking
from paymesh.audit.masking import (
    DEFAULT_RULES,
    MaskingRules,
    mask,
    mask_card,
    mask_email,
    mask_iban,
    mask_phone,
)

CORPUS = json.loads((Path(__file__).parent / "data" / "masking_corpus.json").read_text())
REMOVED = "[REMOVED]"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


class TestMaskCorpus:
    def test_nested_document_is_masked_exactly(self) -> None:
        assert mask(CORPUS["input"]) == CORPUS["expected"]

    def test_input_is_not_mutated(self) -> None:
        document = copy.deepcopy(CORPUS["input"])
        mask(document)
        assert document == CORPUS["input"]

    def test_masked_document_is_a_fixed_point(self) -> None:
        assert mask(CORPUS["expected"]) == CORPUS["expected"]

    def test_masked_document_is_plain_json(self) -> None:
        masked = mask({"at": dt.date(2026, 12, 3), "amount": Decimal("10.50"), "pair": (1, 2)})
        assert json.loads(json.dumps(masked)) == {
            "at": "2026-12-03",
            "amount": "10.50",
            "pair": [1, 2],
        }


class TestMaskCard:
    @pytest.mark.parametrize(
        ("card", "masked"),
        [
            ("4111111111111111", "411111******1111"),
            ("4111 1111 1111 1111", "411111******1111"),
            ("5555-5555-5555-4444", "555555******4444"),
            ("378282246310005", "378282*****0005"),
            ("411111******1111", "411111******1111"),
            ("1234", "****"),
            ("12345678", "****5678"),
        ],
    )
    def test_keeps_first_six_and_last_four(self, card: str, masked: str) -> None:
        assert mask_card(card) == masked

    def test_card_number_sent_as_a_json_number(self) -> None:
        assert mask({"pan": 4111111111111111}) == {"pan": "411111******1111"}
        assert mask([5555555555554444]) == ["555555******4444"]

    def test_card_number_as_an_integral_float(self) -> None:
        assert mask([4111111111111111.0]) == ["411111******1111"]


class TestMaskIban:
    @pytest.mark.parametrize(
        ("number", "masked"),
        [
            ("GB82WEST12345698765432", "******************5432"),
            ("GB82 WEST 1234 5698 7654 32", "******************5432"),
            ("DE89370400440532013000", "******************3000"),
            ("FR1420041010050500013M02606", "***********************2606"),
        ],
    )
    def test_keeps_last_four(self, number: str, masked: str) -> None:
        assert mask_iban(number) == masked
        assert mask({"iban": number}) == {"iban": masked}


class TestMaskEmail:
    @pytest.mark.parametrize(
        ("address", "masked"),
        [
            ("jane.doe@example.com", "j***@example.com"),
            ("j@example.com", "j***@example.com"),
            ("j***@example.com", "j***@example.com"),
            ("Jane.Doe+billing@mail.example.co.uk", "J***@mail.example.co.uk"),
            ("not an address", "not an address"),
        ],
    )
    def test_keeps_first_character_and_domain(self, address: str, masked: str) -> None:
        assert mask_email(address) == masked

    def test_every_address_in_a_text(self) -> None:
        assert mask_email("from a.b@x.io to c@y.org.") == "from a***@x.io to c***@y.org."


class TestMaskPhone:
    @pytest.mark.parametrize(
        ("number", "masked"),
        [
            ("+44 20 7946 0958", "*********958"),
            ("+14155552671", "********671"),
            ("020 7946 0958", "********958"),
            ("(415) 555-2671", "*******671"),
            ("*********958", "*********958"),
            ("12", "**"),
            ("unknown", "unknown"),
        ],
    )
    def test_keeps_last_three_digits(self, number: str, masked: str) -> None:
        assert mask_phone(number) == masked


class TestRemoveKeys:
    @pytest.mark.parametrize(
        "key",
        [
            *("password", "Password", "PASSWORD", "newPassword", "new_password", "passwd"),
            *("secret", "client_secret", "clientSecret", "key_secret", "totp_secret"),
            *("token", "access_token", "refreshToken", "id_token", "authorization"),
            *("Authorization", "x-api-key", "X-API-Key", "api_key", "apiKey", "otp", "code"),
            *("verification_code", "cvv", "CVV2", "cvc", "pin", "card_pin", "Cookie"),
            *("private_key", "credentials", "track2"),
        ],
    )
    def test_value_is_removed_whatever_it_holds(self, key: str) -> None:
        for value in ("hunter2", 123456, {"nested": "x"}, ["a", "b"], None):
            assert mask({key: value}) == {key: REMOVED}

    def test_problem_code_is_kept_but_one_time_code_removed(self) -> None:
        problem = {"code": "insufficient_funds", "status": 422}
        assert mask(problem) == problem
        assert mask({"code": "492039"}) == {"code": REMOVED}
        assert mask({"code": "SplxlOBeZQQYbYS6WxSbIA"}) == {"code": REMOVED}

    @pytest.mark.parametrize(
        "key", ["currency_code", "country_code", "amount_minor", "idempotency_key", "key"]
    )
    def test_ordinary_keys_are_kept(self, key: str) -> None:
        assert mask({key: "GBP"}) == {key: "GBP"}

    def test_name_value_pairs_naming_a_secret(self) -> None:
        headers = [
            {"name": "X-API-Key", "value": "pk_live_51HxQ2e"},
            {"name": "Accept", "value": "application/json"},
        ]
        assert mask({"headers": headers}) == {
            "headers": [
                {"name": "X-API-Key", "value": REMOVED},
                {"name": "Accept", "value": "application/json"},
            ]
        }
        asgi = [(b"x-api-key", b"pk_live_51HxQ2e"), (b"accept", b"*/*")]
        assert mask(asgi) == [["x-api-key", REMOVED], ["accept", "*/*"]]

    def test_marker_is_configurable(self) -> None:
        rules = DEFAULT_RULES.model_copy(update={"removed_marker": "<secret>"})
        assert mask({"password": "x"}, rules) == {"password": "<secret>"}


class TestMaskKeys:
    def test_kind_applies_to_lists_and_objects_under_the_key(self) -> None:
        masked = mask({"phone_numbers": ["+14155552671", {"number": "+442079460958"}]})
        assert masked == {"phone_numbers": ["********671", {"number": "*********958"}]}

    def test_account_number_as_a_number(self) -> None:
        assert mask({"account_number": 31926819}) == {"account_number": "****6819"}

    def test_nothing_to_mask_keeps_the_type(self) -> None:
        assert mask({"phone": None, "email_verified": True, "phone_country": "GB"}) == {
            "phone": None,
            "email_verified": True,
            "phone_country": "GB",
        }

    def test_names_are_kept_by_default_and_masked_on_request(self) -> None:
        document = {"name": "Jane Doe", "card_holder_name": "JANE Q DOE", "merchant": "Acme"}
        assert mask(document) == document
        rules = DEFAULT_RULES.model_copy(update={"mask_names": True})
        assert mask(document, rules) == {
            "name": "J*** D***",
            "card_holder_name": "J*** Q*** D***",
            "merchant": "Acme",
        }

    def test_last4_kind(self) -> None:
        assert mask({"ssn": "078-05-1120"}) == {"ssn": "*****1120"}


class TestDetectValues:
    @pytest.mark.parametrize(
        ("text", "masked"),
        [
            ("pay 4111 1111 1111 1111 now", "pay 411111******1111 now"),
            ("pan=5555555555554444;", "pan=555555******4444;"),
            ("ref 12 4111 1111 1111 1111", "ref 12 411111******1111"),
            ("4111 1111 1111 1111 2028", "411111******1111 2028"),
            ("iban gb82 west 1234 5698 7654 32.", "iban ******************5432."),
            ("IBAN:DE89370400440532013000", "IBAN:******************3000"),
            ("mail jane@example.com now", "mail j***@example.com now"),
            (f"Authorization: Bearer {JWT}", f"Authorization: Bearer {REMOVED}"),
            (f"got {JWT} back", f"got {REMOVED} back"),
            (
                '{"password": "hunter2", "user": "jane"}',
                '{"password": "[REMOVED]", "user": "jane"}',
            ),
            ("?api_key=sk_test_4eC39HqLyjW&x=1", "?api_key=[REMOVED]&x=1"),
        ],
    )
    def test_sensitive_values_in_free_text(self, text: str, masked: str) -> None:
        assert mask({"note": text}) == {"note": masked}

    @pytest.mark.parametrize(
        "value",
        [
            1000000,
            4111111111111112,
            "4111111111111112",
            "1234567890123456",
            "acc_01J9ZQ4X7RFTB2K3M5N6P8Q0RS",
            "pay_01JEXAMPLE7Q2M4XYZ",
            "2026-12-03T17:00:00.123456Z",
            "2026-12-03",
            "GBP",
            "EUR",
            "GB00WEST12345698765432",
            "+44 20 7946 0958",
            "bearer of bad news",
            3.14,
            -4111111111111111,
            "Tokens: 5",
        ],
    )
    def test_ordinary_values_are_untouched(self, value: Any) -> None:
        assert mask({"value": value}) == {"value": value}

    def test_sensitive_keys_are_masked_too(self) -> None:
        masked = mask({"jane@example.com": 1, "j***@example.com": 2})
        assert masked == {"j***@example.com": 1, "j***@example.com#2": 2}

    def test_detection_can_be_turned_off(self) -> None:
        rules = DEFAULT_RULES.model_copy(update={"detect_values": False})
        document = {"note": "4111111111111111 jane@example.com", "email": "jane@example.com"}
        assert mask(document, rules) == {
            "note": "4111111111111111 jane@example.com",
            "email": "j***@example.com",
        }


class TestLimits:
    def test_containers_below_max_depth_are_truncated(self) -> None:
        deep: Any = "4111111111111111"
        for _ in range(40):
            deep = [deep]
        masked = mask(deep)
        for _ in range(32):
            masked = masked[0]
        assert masked == "[TRUNCATED]"

    def test_values_past_max_nodes_are_truncated(self) -> None:
        rules = DEFAULT_RULES.model_copy(update={"max_nodes": 3})
        assert mask([1, 2, 3, 4], rules) == [1, 2, "[TRUNCATED]", "[TRUNCATED]"]

    def test_strings_past_max_string_length_are_truncated(self) -> None:
        blob = "4111111111111111 " * 4000
        assert mask({"blob": blob, blob: 1}) == {"blob": "[TRUNCATED]", "[TRUNCATED]": 1}

    def test_huge_integer_does_not_raise(self) -> None:
        huge = 10**5000
        assert mask({"account_number": huge, "n": huge}) == {"account_number": huge, "n": huge}


class TestRules:
    def test_default_rules_round_trip_through_json(self) -> None:
        loaded = MaskingRules.model_validate_json(DEFAULT_RULES.model_dump_json())
        assert loaded == DEFAULT_RULES

    def test_rules_load_from_json(self) -> None:
        rules = MaskingRules.model_validate_json(
            '{"remove_keys": ["*salt*"], "mask_keys": {"msisdn": "phone"}}'
        )
        assert mask({"Salt": "x", "password": "y", "MSISDN": "447700900123"}, rules) == {
            "Salt": REMOVED,
            "password": "y",
            "MSISDN": "*********123",
        }

    def test_unknown_kind_is_rejected(self) -> None:
        with pytest.raises(ValidationError):
            MaskingRules(remove_keys=[], mask_keys={"x": "everything"})

    def test_bad_keep_value_regex_is_rejected(self) -> None:
        with pytest.raises(ValidationError):
            MaskingRules(remove_keys=[], mask_keys={}, keep_values={"code": "("})


# --- properties ------------------------------------------------------------------------

DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
PURE_RUN = re.compile(r"[0-9]+")
IBAN_LIKE = re.compile(r"[A-Za-z0-9]+(?:[ -][A-Za-z0-9]+)*")
IBAN_START = re.compile(r"(?=[A-Za-z]{2}[0-9]{2})")


def card_left(text: str) -> str | None:
    runs: list[str] = [match.group() for match in DIGIT_RUN.finditer(text)]
    runs += [match.group() for match in PURE_RUN.finditer(text)]
    for run in runs:
        digits = re.sub("[ -]", "", run)
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            return run
    return None


def iban_left(text: str) -> str | None:
    for start in IBAN_START.finditer(text):
        for end in range(start.start() + 15, min(len(text), start.start() + 68) + 1):
            candidate = text[start.start() : end]
            if IBAN_LIKE.fullmatch(candidate) and stdnum_iban.is_valid(candidate):
                return candidate
    return None


def strings_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in strings_of(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings_of(item)]
    return [value] if isinstance(value, str) else []


def formatted(number: str, separator: str) -> str:
    return separator.join(number[index : index + 4] for index in range(0, len(number), 4))


card_numbers = (
    st.integers(12, 18)
    .flatmap(lambda length: st.text("0123456789", min_size=length, max_size=length))
    .map(lambda body: body + luhn.calc_check_digit(body))
)
gb_ibans = st.tuples(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=4),
    st.text("0123456789", min_size=14, max_size=14),
).map(
    lambda parts: "GB" + stdnum_iban.calc_check_digits(f"GB00{parts[0]}{parts[1]}") + "".join(parts)
)
known_ibans = st.sampled_from(
    ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606"]
)
sensitive = st.one_of(
    st.tuples(card_numbers, st.sampled_from(["", " ", "-"])).map(lambda c: formatted(*c)),
    st.tuples(gb_ibans | known_ibans, st.sampled_from(["", " "])).map(lambda i: formatted(*i)),
    st.tuples(
        st.sampled_from(["jane.doe", "j", "x+y"]), st.sampled_from(["example.com", "a.io"])
    ).map(lambda e: f"{e[0]}@{e[1]}"),
    st.just(f"Bearer {JWT}"),
)
noise = st.text("0123456789 -*@.abGBxyz", max_size=12)
texts = st.one_of(
    st.text(max_size=40),
    noise,
    st.tuples(noise, sensitive, noise, sensitive, noise).map("".join),
)
keys = st.one_of(
    texts,
    st.sampled_from(["password", "code", "pan", "iban", "email", "phone", "name", "note", "id"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    card_numbers.map(int),
    st.floats(allow_nan=False),
    texts,
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class TestMaskProperties:
    @PROPERTY_SETTINGS
    @given(documents)
    # A kept category code under a card-number key: once masked as a card number, the
    # second pass removed it.
    @example({"PAN": {"CODE": 0}})
    def test_is_idempotent(self, document: Any) -> None:
        once = mask(document)
        assert mask(once) == once

    @PROPERTY_SETTINGS
    @given(documents)
    def test_leaves_no_card_number_or_iban_in_any_string(self, document: Any) -> None:
        for text in strings_of(mask(document)):
            assert card_left(text) is None, text
            assert iban_left(text) is None, text

    @PROPERTY_SETTINGS
    @given(documents, st.booleans())
    def test_never_raises_and_never_mutates(self, document: Any, mask_names: bool) -> None:
        before = copy.deepcopy(document)
        mask(document, DEFAULT_RULES.model_copy(update={"mask_names": mask_names}))
        assert document == before

    @settings(max_examples=100, deadline=None)
    @given(
        st.recursive(
            st.none() | st.floats() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        )
    )
    def test_never_raises_on_any_json(self, document: Any) -> None:
        mask(document)

    @PROPERTY_SETTINGS
    @given(sensitive, texts, texts)
    def test_sensitive_value_never_survives_in_text(
        self, value: str, before: str, after: str
    ) -> None:
        assume(value not in before and value not in after)
        masked = mask(before + " " + value + " " + after)
        if value.startswith("Bearer"):
            assert JWT not in masked
        else:
            assert value not in masked


class TestCategoryCodes:
    def test_a_small_integer_code_is_a_category_and_kept(self) -> None:
        # The ledger's account and transfer `code` (16-bit categories) stay readable.
        assert mask({"transfer": {"code": 7, "amount": 100}}) == {
            "transfer": {"code": 7, "amount": 100}
        }

    def test_a_one_time_code_is_removed(self) -> None:
        assert mask({"code": "048213"}) == {"code": "[REMOVED]"}
        assert mask({"code": 48_213_001}) == {"code": "[REMOVED]"}


secret_texts = st.one_of(
    texts,
    st.tuples(
        noise,
        st.sampled_from(["password=hunter2", "API-KEY: k3y", "Token: abc", "bearer ", JWT]),
        noise,
    ).map("".join),
    st.tuples(noise, card_numbers, noise).map("".join),  # a card number without separators
)


def _every_pattern_once(text: str, marker: str = "[REMOVED]") -> str:
    """One masking pass as it ran before the shortcuts: every pattern, on every string."""
    text = masking._BEARER.sub(lambda match: match.group(1) + marker, text)
    text = masking._JWT.sub(marker, text)
    text = masking._SECRET_PAIR.sub(lambda match: match.group(1) + marker, text)
    text = masking.mask_email(text)
    text = masking._mask_ibans(text)
    return masking._DIGIT_RUN.sub(masking._mask_digit_run, text)


class TestShortcuts:
    """The cheap tests that skip a pattern (`_SECRET_HINT`, `_CARD_HINT`) and the cache of
    short strings change no result."""

    @PROPERTY_SETTINGS
    @given(secret_texts)
    def test_one_pass_is_what_every_pattern_gives(self, text: str) -> None:
        assert masking._mask_text_once(text, "[REMOVED]", True) == _every_pattern_once(text)

    @PROPERTY_SETTINGS
    @given(secret_texts, st.sampled_from([None, "card", "iban", "email", "phone", "last4"]))
    def test_a_remembered_string_masks_as_a_fresh_one(self, text: str, kind: Any) -> None:
        first = masking._mask_string(text, kind, DEFAULT_RULES)
        assert masking._mask_string(text, kind, DEFAULT_RULES) == first
        assert first == masking._mask_to_fixed_point(text, kind, "[REMOVED]", True)
        other = DEFAULT_RULES.model_copy(update={"removed_marker": "<gone>"})
        assert masking._mask_string(text, kind, other) == masking._mask_to_fixed_point(
            text, kind, "<gone>", True
        )
