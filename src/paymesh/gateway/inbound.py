"""What the gateway reads of a client's request before it passes it on: a header, the
client's address (behind trusted proxies too), the body's declared length against the
route's limit (or the body itself, read here, when it has none), and the scope the upstream
sees (`X-Forwarded-*`, our request id and trace context)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from starlette.types import Message, Receive, Scope

from paymesh.gateway.hop import strip_hop_by_hop
from paymesh.gateway.routes import Address, Network
from paymesh.kernel.decoding import InvalidContentLength, PayloadTooLarge

FORWARDED_REPLACED = frozenset(
    {b"x-request-id", b"traceparent", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


@functools.lru_cache(maxsize=4096)
def _parsed_address(text: str) -> Address | None:
    """`text` as an address, None when it is not one; the same few peers connect again
    and again, and parsing one costs more than a look-up."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _peer_address(scope: Scope) -> Address | None:
    client = scope.get("client")
    if not client:
        return None
    return _parsed_address(client[0])


def from_trusted_proxy(scope: Scope, trusted_proxies: Sequence[Network]) -> bool:
    """Whether the TCP peer is one of our own proxies."""
    address = _peer_address(scope)
    return address is not None and any(address in network for network in trusted_proxies)


def client_address(scope: Scope, trusted_proxies: Sequence[Network]) -> Address | None:
    """The client's address: the TCP peer, unless the peer is one of our own proxies (a
    load balancer in front of the gateway); then the `X-Forwarded-For` chain is read from
    the right, past every trusted proxy, to the first address we did not put there. A
    client can prepend anything to the chain; it cannot forge the part our proxies add."""
    address = _peer_address(scope)
    if address is None or not any(address in network for network in trusted_proxies):
        return address
    chain = header(scope["headers"], b"x-forwarded-for")
    for hop in reversed([part.strip() for part in chain.split(",") if part.strip()]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return address  # garbage in the chain: stop at the last address we trust
        if not any(address in network for network in trusted_proxies):
            return address
    return address


CLIENT_CERTIFICATE_HEADER = b"x-forwarded-client-cert"
"""The client certificate a TLS-terminating proxy verified (Envoy's XFCC format): passed on
only from a trusted proxy (`forwarded(..., from_trusted_proxy=True)`); from anyone else it is
dropped, so no client can claim a certificate it did not present."""


def forwarded(
    scope: Scope, request_id: str, traceparent: str, *, from_trusted_proxy: bool = False
) -> Scope:
    """The scope the upstream sees: our request id and trace context, `X-Forwarded-*`."""
    headers = strip_hop_by_hop(scope["headers"])
    if not from_trusted_proxy:
        headers = [(name, value) for name, value in headers if name != CLIENT_CERTIFICATE_HEADER]
    client = scope.get("client")
    forwarded_for = header(headers, b"x-forwarded-for")
    peer = client[0] if client else "unknown"
    host = header(headers, b"host")
    # A client's own X-Forwarded-For is kept as the start of the chain (RFC 7239 style);
    # the address we saw is appended, so an upstream trusts only the last hop it knows.
    chain = f"{forwarded_for}, {peer}" if forwarded_for else peer
    rewritten = [(name, value) for name, value in headers if name not in FORWARDED_REPLACED]
    rewritten += [
        (b"x-request-id", request_id.encode()),
        (b"traceparent", traceparent.encode()),
        (b"x-forwarded-for", chain.encode("latin-1")),
        (b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()),
    ]
    if host:
        rewritten.append((b"x-forwarded-host", host.encode("latin-1")))
    return {**scope, "headers": rewritten}


def declared_within(scope: Scope, limit_bytes: int) -> bool:
    """True when the body's length is declared and within the limit; False when it has
    to be read to be known (chunked, or no body header at all)."""
    declared = header(scope["headers"], b"content-length")
    if not declared:
        return False
    if not declared.strip().isdigit():
        raise InvalidContentLength()
    if int(declared) > limit_bytes:
        raise PayloadTooLarge(
            f"the body may not exceed {limit_bytes} bytes here", limit_bytes=limit_bytes
        )
    return True


def chunked(scope: Scope) -> bool:
    """A body without a declared length follows (HTTP/1.1: with neither Content-Length nor
    Transfer-Encoding a request has no body)."""
    return bool(header(scope["headers"], b"transfer-encoding"))


def with_length(scope: Scope, length: int) -> Scope:
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


async def buffered(receive: Receive, limit_bytes: int) -> tuple[Receive, int]:
    """A body without Content-Length (chunked, or none at all) read here first, so one
    over the limit is refused with 413 before any of it reaches an upstream."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit_bytes:
            raise PayloadTooLarge(
                f"the body may not exceed {limit_bytes} bytes here", limit_bytes=limit_bytes
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # after the body: the client's disconnect
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay, received
