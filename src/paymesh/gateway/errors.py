"""Refusals the gateway answers itself, before or instead of an upstream."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError, Unauthenticated


class GatewayError(PaymeshError):
    """Root of the gateway's own problem documents."""


class RouteNotFound(GatewayError):
    code = "not_found"
    status = 404
    title = "No service answers this path"


class MissingToken(Unauthenticated):
    code = "unauthenticated"
    status = 401
    title = "A bearer token is required"


class InsufficientScope(GatewayError):
    code = "insufficient_scope"
    status = 403
    title = "The token does not carry a scope or role this route requires"


class AddressRefused(GatewayError):
    code = "address_refused"
    status = 403
    title = "This route does not accept requests from the client's address"


class RateLimited(GatewayError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class UpstreamUnavailable(GatewayError):
    code = "upstream_unavailable"
    status = 503
    title = "The service behind this path is unavailable"


class UpstreamTimeout(GatewayError):
    code = "upstream_timeout"
    status = 504
    title = "The service behind this path did not answer in time"


class BadGateway(GatewayError):
    code = "bad_gateway"
    status = 502
    title = "The service behind this path gave no valid answer"
