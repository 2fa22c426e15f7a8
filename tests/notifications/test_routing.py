"""Routing rules: which rules match an event, and who the recipient is."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from paymesh.notifications.routing import (
    DEFAULT_ROUTES,
    SECURITY_CATEGORIES,
    Route,
    recipient_of,
    routes_for,
)
from paymesh.notifications.templating import DEFAULT_TEMPLATES, SAMPLE_DATA


def route(event_type: str, recipient: str = "user_id", category: str = "account") -> Route:
    return Route.model_validate(
        {
            "event_type": event_type,
            "category": category,
            "channels": ["email"],
            "recipient": recipient,
        }
    )


class TestRoutesFor:
    routes = [
        route("identity.user.*"),
        route("wallets.*.completed", category="money"),
        route("identity.user.password_changed", category="security"),
        route("payments.payment.succeeded", category="money"),
    ]

    def test_patterns_match_in_rule_order(self) -> None:
        matched = routes_for("identity.user.password_changed", self.routes)
        assert [r.event_type for r in matched] == [
            "identity.user.*",
            "identity.user.password_changed",
        ]

    def test_wildcard_in_the_middle(self) -> None:
        assert routes_for("wallets.deposit.completed", self.routes) == [self.routes[1]]
        assert routes_for("wallets.deposit.failed", self.routes) == []

    def test_no_match(self) -> None:
        assert routes_for("ledger.transfer.posted", self.routes) == []

    def test_matching_is_case_sensitive(self) -> None:
        assert routes_for("Payments.Payment.Succeeded", self.routes) == []


class TestRecipientOf:
    @pytest.mark.parametrize(
        ("recipient", "data", "expected"),
        [
            ("user_id", {"user_id": "usr_01JD"}, "usr_01JD"),
            ("/user_id", {"user_id": "usr_01JD"}, "usr_01JD"),
            ("/owner/id", {"owner": {"id": "usr_01JD"}}, "usr_01JD"),
        ],
    )
    def test_finds_the_id(self, recipient: str, data: dict[str, Any], expected: str) -> None:
        assert recipient_of(route("a.b", recipient), data) == expected

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"owner_id": "usr_01JD"},
            {"user_id": None},
            {"user_id": 42},
            {"user_id": ""},
            {"user_id": "usr 01JD"},
            {"user_id": "usr_01JD\n"},
            {"user_id": "x" * 129},
            {"user_id": ["usr_01JD"]},
        ],
    )
    def test_missing_or_invalid_id_is_none(self, data: dict[str, Any]) -> None:
        assert recipient_of(route("a.b"), data) is None

    def test_path_through_a_non_mapping_is_none(self) -> None:
        assert recipient_of(route("a.b", "/owner/id"), {"owner": "usr_01JD"}) is None


class TestRouteModel:
    @pytest.mark.parametrize(
        "changes",
        [
            {"category": "promotions"},
            {"channels": []},
            {"channels": ["email", "email"]},
            {"channels": ["fax"]},
            {"recipient": "../etc"},
            {"recipient": ""},
            {"event_type": "identity user"},
            {"extra": True},
        ],
    )
    def test_invalid_rules_are_refused(self, changes: dict[str, Any]) -> None:
        body = {
            "event_type": "a.*",
            "category": "money",
            "channels": ["sms"],
            "recipient": "user_id",
        }
        with pytest.raises(ValidationError):
            Route.model_validate(body | changes)


class TestDefaultRoutes:
    def test_security_messages_are_security(self) -> None:
        for event_type in (
            "identity.user.password_changed",
            "identity.user.totp_enabled",
            "identity.otp.issued",
        ):
            categories = {r.category for r in routes_for(event_type, DEFAULT_ROUTES)}
            assert categories == {"security"}
            assert categories <= SECURITY_CATEGORIES

    def test_every_route_has_a_template_per_channel_and_finds_its_recipient(self) -> None:
        templates = {(key.event_type, key.channel) for key in DEFAULT_TEMPLATES}
        for default in DEFAULT_ROUTES:
            for channel in default.channels:
                assert (default.event_type, channel) in templates
            assert recipient_of(default, SAMPLE_DATA[default.event_type]) is not None
