"""Demo data for `paymesh up --demo` (never in production): profiles for identity's demo
customers. alice is verified at level `full` (as if the vendor had decided; the KYC flow
itself is the README's walk-through), bob has a profile and no KYC yet.

Identity's demo users are made without events, so profiles asks identity's admin API who
they are, with a development admin token: demo data exists only where development tokens
are accepted (never in production)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from paymesh.identity.schemas import User
from paymesh.kernel.db import utcnow
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.profiles.models import KycSubmission
from paymesh.profiles.service import Profiles

log = structlog.get_logger("paymesh.profiles.demo")

DEMO_PROFILES: dict[str, dict[str, Any]] = {
    "alice": {
        "date_of_birth": dt.date(1990, 5, 4),
        "address_line1": "2 Rabbit Hole Lane",
        "city": "Oxford",
        "postal_code": "OX1 1AA",
        "country": "GB",
    },
    "bob": {
        "date_of_birth": dt.date(1985, 11, 9),
        "address_line1": "17 Scaffold Street",
        "city": "Bristol",
        "postal_code": "BS1 4DJ",
        "country": "GB",
    },
}
VERIFIED = {"alice"}


async def _identity_users(runtime: ServiceRuntime) -> list[User]:
    token = runtime.directory.tokens.issue(
        "service-profiles-demo", roles=["admin"], scopes=["identity:admin"]
    )
    users: list[User] = []
    cursor: str | None = None
    async with runtime.directory.http("identity") as http:
        while True:
            params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            response = await http.get(
                "/v1/identity/users", params=params, headers={"authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            page = response.json()
            users += [User.model_validate(item) for item in page["data"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return users


async def seed_demo(runtime: ServiceRuntime) -> None:
    if not runtime.settings.development_tokens_allowed:
        log.warning("profiles_demo_skipped", reason="development tokens are not accepted here")
        return
    try:
        users = await _identity_users(runtime)
    except Exception as error:
        log.warning("profiles_demo_skipped", reason=type(error).__name__)
        return
    profiles: Profiles = runtime.state["profiles"]
    async with runtime.database.transaction() as session:
        for user in users:
            extra = DEMO_PROFILES.get(user.username)
            if extra is None or "customer" not in user.roles:
                continue
            row = await profiles.ensure(session, user.id)
            if row.identity_synced_at is not None:
                continue  # seeded before
            profiles.copy_from_identity(row, user)
            for name, value in extra.items():
                setattr(row, name, value)
            if user.username in VERIFIED and row.kyc_level == "none":
                _verified(session, row, user.id)


def _verified(session: Any, row: Any, user_id: str) -> None:
    now = utcnow()
    submission = KycSubmission(
        id=f"kys_demo_{user_id}"[:64],
        user_id=user_id,
        status="verified",
        given_name=row.given_name or "Demo",
        family_name=row.family_name or "Customer",
        date_of_birth=row.date_of_birth,
        country=row.country,
        document_type="passport",
        document_number="DEMO12345678",
        document_country=row.country,
        level_granted="full",
        reasons=[],
        created_at=now,
        decided_at=now,
    )
    session.add(submission)
    row.kyc_status, row.kyc_level, row.kyc_submission_id = "verified", "full", submission.id
