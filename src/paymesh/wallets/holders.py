"""Who holds a wallet, for account validation: the legal name from the profiles service,
masked. Profiles is optional: when it is not part of the platform, does not answer, or has
no name, validation answers with `holder_name: null` rather than failing or waiting."""

from __future__ import annotations

from typing import Protocol

import structlog

from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.http import ServiceClient

log = structlog.get_logger("paymesh.wallets")


class HolderNames(Protocol):
    async def legal_name(self, user_id: str) -> str | None: ...


class NoHolderNames:
    """Used when the profiles service is not reachable from this deployment."""

    async def legal_name(self, user_id: str) -> str | None:
        return None


class ProfilesHolderNames:
    """`GET /v1/profiles/{user_id}` -> `legal_name` (string or null)."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    async def legal_name(self, user_id: str) -> str | None:
        try:
            response = await self.http.request("GET", f"/v1/profiles/{user_id}")
            document = response.json()
        except (PaymeshError, ValueError) as error:
            log.info("holder_name_unavailable", error=error.__class__.__name__)
            return None
        name = document.get("legal_name") if isinstance(document, dict) else None
        return name if isinstance(name, str) and name.strip() else None


def mask_name(name: str | None) -> str | None:
    """`Jane Doe` -> `J*** D***`: the first letter of each part of the name."""
    if name is None:
        return None
    parts = [part for part in name.split() if part]
    return " ".join(f"{part[0]}***" for part in parts) or None
