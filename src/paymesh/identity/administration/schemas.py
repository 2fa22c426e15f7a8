"""Shapes of the admin API."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from paymesh.identity.schemas import RateLimitTier, Role

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for more.")


class ClientSecret(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; only its hash is stored.")


class ClientRateLimitTier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit_tier: RateLimitTier = Field(
        description="The client's new tier; the access tokens it gets from now on carry it."
    )


class UserRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[Role] = Field(description="The user's whole set of roles (replaces it).")
