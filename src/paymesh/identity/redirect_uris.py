"""Which redirect URIs a client may register, and when a requested one matches.

OAuth 2.0 for Native Apps (RFC 8252) gives a native app three ways back from the browser:
a private-use URI scheme named after a domain it owns in reverse order
(`com.example.app:/cb`, 7.1), a claimed `https` URI (7.2), and the loopback interface on
whatever port it could open (`http://127.0.0.1:{port}/cb`, 7.3). Native apps are public
clients, and every client here must use PKCE, so an intercepted code is useless without
the verifier. A confidential client is a server: it gets `https` (and `http` on loopback,
for development) only. Every other scheme (`javascript:`, `data:`, `file:`, `myapp:`)
is refused: no fragment (RFC 6749 3.1.2), nothing relative.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})
PRIVATE_USE_SCHEME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")
"""A reverse domain name: at least one dot, DNS labels (RFC 8252 7.1, RFC 3986 3.1)."""


def problem(uri: str, *, public: bool) -> str | None:
    """Why a client may not register `uri`, or None when it may."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return f"redirect URI {uri!r} is not a valid URI"
    if parts.fragment or "#" in uri:
        return f"redirect URI {uri!r} may not have a fragment"
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return None
    if scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None
    if scheme == "http" and parts.hostname:
        return f"redirect URI {uri!r} must use https (http only on loopback)"
    if PRIVATE_USE_SCHEME.match(scheme):
        if not public:
            return (
                f"redirect URI {uri!r}: private-use schemes are for native apps, which are "
                f"public clients (PKCE); a confidential client uses https"
            )
        if not (parts.path or parts.netloc):
            return f"redirect URI {uri!r} needs a path after the scheme"
        return None
    return (
        f"redirect URI {uri!r} must be absolute https, http on loopback, or for a native "
        f"app a private-use scheme named after a domain it owns (com.example.app:/callback)"
    )


def matches(registered: list[str], requested: str, *, public: bool) -> bool:
    """Exact match; for public clients, a loopback IP redirect URI matches on any port
    (RFC 8252 7.3: a native app listens on whatever port the OS gives it)."""
    if requested in registered:
        return True
    if not public:
        return False
    try:
        asked = urlsplit(requested)
        asked_port = asked.port
    except ValueError:
        return False
    if asked.scheme != "http" or asked.hostname not in LOOPBACK_ADDRESSES or asked_port is None:
        return False
    for uri in registered:
        known = urlsplit(uri)
        if (
            known.scheme == "http"
            and known.hostname == asked.hostname
            and (known.path, known.query) == (asked.path, asked.query)
            and not known.username
            and not asked.username
        ):
            return True
    return False
