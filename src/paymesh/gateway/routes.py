"""The gateway's route table: which service answers a path, and the policy on the way.

The table is data, built from every service's `ServiceSpec` (its path prefixes and its
`edge_routes`), and printed by `paymesh gateway routes`. A request takes the most specific
route: the longest prefix, and among equal prefixes one naming its method or exact path.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from paymesh.kernel.config import EdgeRoute, Settings
from paymesh.kernel.runtime import ServiceSpec

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str
    policy: Literal["public", "authenticated"]
    timeout_seconds: float
    body_limit_bytes: int
    methods: frozenset[str] = frozenset()
    exact: bool = False
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    per_minute: int | None = None
    refusals: Literal["problem", "scim"] = "problem"
    allow: tuple[Network, ...] = ()
    """When set, only client addresses in these networks pass."""
    deny: tuple[Network, ...] = ()
    limit_key: str = field(default="", compare=False)

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.exact:
            return path == self.prefix
        return path == self.prefix or path.startswith(self.prefix + "/")

    def admits(self, address: Address | None) -> bool:
        """May a client at `address` use this route? (No address: only without lists.)"""
        if not self.allow and not self.deny:
            return True
        if address is None:
            return False
        if any(address in network for network in self.deny):
            return False
        return not self.allow or any(address in network for network in self.allow)

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (len(self.prefix), int(self.exact), int(bool(self.methods)))


class RouteTable:
    MATCHES_KEPT = 4096
    """(method, path) pairs whose route is remembered: a scan of every route per request
    costs more than the rest of the routing; ids in paths make the pairs unbounded, so
    the least recently used are forgotten."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(sorted(routes, key=lambda route: route.specificity, reverse=True))
        self.match = functools.lru_cache(maxsize=self.MATCHES_KEPT)(self._scan)

    def _scan(self, method: str, path: str) -> Route | None:
        """The most specific route for (`method`, `path`), None when there is none."""
        for route in self.routes:
            if route.matches(method, path):
                return route
        return None

    def services(self) -> list[str]:
        return sorted({route.service for route in self.routes})

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[ServiceSpec],
        settings: Settings,
        overrides: Sequence[EdgeRoute] = (),
        *,
        elsewhere: Sequence[str] = (),
    ) -> RouteTable:
        """Every prefix of every service (authenticated unless its spec says otherwise),
        then its spec's edge routes, then the operator's (`PAYMESH_GATEWAY_ROUTES`).
        `elsewhere`: prefixes of services other processes serve — one
        `PAYMESH_GATEWAY_ROUTES` is given to every process of the distributed shape, so an
        operator's route under one of them is not this process's to apply, nor an error."""
        gateway = settings.gateway
        routes: dict[tuple[str, frozenset[str], bool], Route] = {}
        for spec in specs:
            edge = [EdgeRoute(prefix) for prefix in spec.prefixes] + list(spec.edge_routes)
            for edge_route in edge:
                route = _route(spec, edge_route, settings)
                routes[(route.prefix, route.methods, route.exact)] = route
            # A path that takes a larger body (the ledger's batch) is a route of its own,
            # with the policy of the route it falls under.
            table = cls(routes.values())
            for (method, path), limit in spec.body_limits.items():
                parent = table.match(method, path)
                if parent is not None:
                    route = replace(
                        parent,
                        prefix=path,
                        methods=frozenset({method}),
                        exact=True,
                        body_limit_bytes=max(limit, settings.max_body_bytes),
                    )
                    routes[(route.prefix, route.methods, route.exact)] = route
        owners = sorted(
            ((prefix, spec) for spec in specs for prefix in spec.prefixes),
            key=lambda item: -len(item[0]),
        )
        for override in [*gateway.routes, *overrides]:
            owner = next(
                (
                    spec
                    for prefix, spec in owners
                    if override.prefix == prefix or override.prefix.startswith(prefix + "/")
                ),
                None,
            )
            if owner is None:
                if any(
                    override.prefix == known or override.prefix.startswith(known + "/")
                    for known in elsewhere
                ):
                    continue
                raise ValueError(f"gateway route {override.prefix!r} is under no service's prefix")
            route = _route(owner, override, settings)
            routes[(route.prefix, route.methods, route.exact)] = route
        return cls(routes.values())


def _route(spec: ServiceSpec, edge: EdgeRoute, settings: Settings) -> Route:
    gateway = settings.gateway
    return Route(
        prefix=edge.prefix.rstrip("/") or "/",
        service=spec.name,
        policy=edge.policy,
        timeout_seconds=edge.timeout_seconds or gateway.upstream_timeout_seconds,
        body_limit_bytes=settings.max_body_bytes,
        methods=frozenset(method.upper() for method in edge.methods),
        exact=edge.exact,
        scopes=frozenset(edge.scopes),
        roles=frozenset(edge.roles),
        per_minute=edge.per_minute,
        refusals=edge.refusals,
        allow=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in edge.allow),
        deny=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in edge.deny),
        limit_key=f"{','.join(sorted(edge.methods))}:{edge.prefix}",
    )


def describe(table: RouteTable) -> list[dict[str, str]]:
    """The table as rows of text (`paymesh gateway routes`)."""
    rows = []
    for route in sorted(table.routes, key=lambda route: (route.prefix, sorted(route.methods))):
        requirement: str = route.policy
        if route.scopes or route.roles:
            wanted = [*(f"scope:{s}" for s in sorted(route.scopes)), *sorted(route.roles)]
            requirement += f" ({' | '.join(wanted)})"
        addresses = []
        if route.allow:
            addresses.append("allow " + ", ".join(str(n) for n in route.allow))
        if route.deny:
            addresses.append("deny " + ", ".join(str(n) for n in route.deny))
        rows.append(
            {
                "path": route.prefix + ("" if route.exact else "/**"),
                "methods": ",".join(sorted(route.methods)) or "*",
                "service": route.service,
                "policy": requirement,
                "timeout": f"{route.timeout_seconds:g}s",
                "body limit": f"{route.body_limit_bytes // 1024} KiB",
                "limit": f"{route.per_minute}/min" if route.per_minute else "tier",
                "addresses": "; ".join(addresses) or "any",
            }
        )
    return rows
