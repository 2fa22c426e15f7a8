"""The customer facts risk asks profiles for (KYC status and level, legal name, date of
birth, country), kept in the platform's cache until profiles says they changed.

Asking profiles on every evaluation was the largest part of a decision's cost (an
in-process HTTP request through profiles' whole route path: 30 % of the server's CPU per
evaluation). A customer's profile changes rarely and always with an event — `profiles.
profile.created|updated` and `profiles.kyc.*`, each with the user as subject — so an
answer is kept (`PAYMESH_RISK_PROFILE_CACHE_SECONDS`, at most) and forgotten when risk
consumes such an event for that customer.

The cache is the platform's (`runtime.cache`): in memory in the embedded shape, Redis in
the distributed one, so the replica that consumes the event forgets the answer for every
replica. Each change gives the customer a new generation token; an answer is kept with the
token that was current when it was asked for, and used only while that token is still
current. So an answer that left profiles before a change but arrived after it — or was
stored before the event came — is never used once the event has been consumed.
"""

from __future__ import annotations

import secrets
from typing import Any

from paymesh.kernel.cache import Cache
from paymesh.profiles.client import ProfilesClient
from paymesh.profiles.schemas import Limits, Profile

CHANGES = ("profiles.profile.*", "profiles.kyc.*")
"""The events after which profiles answers differently for their subject."""

SLOWEST_ANSWER_SECONDS = 120.0
"""Longer than any request to profiles takes, retries included: a generation token
outlives every answer asked for under it."""


class CachedProfiles:
    """`ProfilesClient` whose profile answers are kept until profiles reports a change."""

    def __init__(self, profiles: ProfilesClient, cache: Cache, ttl_seconds: float) -> None:
        self._profiles = profiles
        self._cache = cache
        self.ttl_seconds = ttl_seconds

    async def get_profile(self, user_id: str) -> Profile:
        if self.ttl_seconds <= 0:
            return await self._profiles.get_profile(user_id)
        generation = await self._cache.get(_generation_key(user_id))
        kept: Any = await self._cache.get(_answer_key(user_id))
        if isinstance(kept, dict) and kept.get("generation") == generation:
            return Profile.model_validate(kept["profile"])
        profile = await self._profiles.get_profile(user_id)
        if await self._cache.get(_generation_key(user_id)) == generation:
            await self._cache.set(
                _answer_key(user_id),
                {"generation": generation, "profile": profile.model_dump(mode="json")},
                self.ttl_seconds,
            )
        return profile

    async def get_limits(self, user_id: str) -> Limits:
        return await self._profiles.get_limits(user_id)


async def forget(cache: Cache, user_id: str, ttl_seconds: float) -> None:
    """Profiles changed what it says of `user_id`: no answer kept before counts (in every
    replica that shares `cache`). Needs nothing but the cache, so risk's consumer can act
    on a change before the service has finished starting."""
    await cache.set(
        _generation_key(user_id), secrets.token_hex(8), ttl_seconds + SLOWEST_ANSWER_SECONDS
    )
    await cache.delete(_answer_key(user_id))


def _answer_key(user_id: str) -> str:
    return f"risk:profile:{user_id}"


def _generation_key(user_id: str) -> str:
    return f"risk:profile-generation:{user_id}"
