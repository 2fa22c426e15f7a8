"""Preferences: opt-outs honoured, security messages always sent, updates validated."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from paymesh.notifications.preferences import Preferences, PreferencesUpdate, allowed


class TestAllowed:
    preferences = Preferences(opted_out={"marketing": ["email", "sms", "push"], "money": ["sms"]})

    def test_opt_out_is_honoured(self) -> None:
        assert not allowed(self.preferences, "money", "sms")
        assert not allowed(self.preferences, "marketing", "push")

    def test_other_channels_and_categories_still_allowed(self) -> None:
        assert allowed(self.preferences, "money", "email")
        assert allowed(self.preferences, "kyc", "sms")

    def test_no_preferences_allows_everything(self) -> None:
        assert allowed(None, "marketing", "email")

    def test_security_is_always_allowed(self) -> None:
        assert allowed(self.preferences, "security", "sms")
        # Even if an opt-out were ever stored without validation.
        stored = Preferences.model_construct(opted_out={"security": ["sms"]})
        assert allowed(stored, "security", "sms")


class TestPreferencesUpdate:
    def test_security_cannot_be_opted_out_of(self) -> None:
        with pytest.raises(ValueError, match="security messages cannot be opted out of"):
            PreferencesUpdate.model_validate({"opted_out": {"security": ["email"]}})

    def test_security_with_no_channels_is_still_refused(self) -> None:
        with pytest.raises(ValidationError, match="security messages"):
            PreferencesUpdate.model_validate({"opted_out": {"security": []}})

    def test_normalizes_order_duplicates_and_empty_lists(self) -> None:
        update = PreferencesUpdate.model_validate_json(
            '{"opted_out": {"money": ["push", "sms", "push"], "kyc": []}}'
        )
        assert update.opted_out == {"money": ["sms", "push"]}

    @pytest.mark.parametrize(
        "body",
        [
            {"opted_out": {"promotions": ["email"]}},
            {"opted_out": {"money": ["fax"]}},
            {"opted_out": {"money": "sms"}},
            {"opted_out": ["money"]},
            {"opted_out": {}, "language": "fr"},
            {},
        ],
    )
    def test_invalid_bodies_are_refused(self, body: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            PreferencesUpdate.model_validate(body)

    def test_preferences_also_refuse_security(self) -> None:
        with pytest.raises(ValidationError, match="security messages"):
            Preferences(opted_out={"security": ["sms"]})
