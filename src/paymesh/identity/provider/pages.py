"""The provider's HTML pages: login, consent, errors, logout. Plain HTML, every value
escaped, no scripts; framing forbidden; never cached."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}"
    "button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _hidden(name: str, value: str) -> str:
    return f"<input type='hidden' name='{escape(name)}' value='{escape(value)}'>"


def login_page(
    *,
    action: str,
    request_query: str,
    csrf: str,
    client_name: str,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> HTMLResponse:
    message = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
    body = (
        f"<p>Sign in to continue to <strong>{escape(client_name)}</strong>.</p>{message}"
        f"<form method='post' action='{escape(action)}'>"
        f"{_hidden('csrf_token', csrf)}{_hidden('authorization_request', request_query)}"
        f"{_hidden('action', 'login')}"
        f"<label for='username'>Username</label>"
        f"<input id='username' name='username' autocomplete='username' required "
        f"value='{escape(username)}'>"
        f"<label for='password'>Password</label>"
        f"<input id='password' name='password' type='password' "
        f"autocomplete='current-password' required>"
        f"<label for='totp'>One-time code (if you enrolled an authenticator app)</label>"
        f"<input id='totp' name='totp' inputmode='numeric' autocomplete='one-time-code'>"
        f"<button type='submit'>Sign in</button></form>"
    )
    return _page("Sign in", body, status)


def consent_page(
    *, action: str, request_query: str, csrf: str, client_name: str, scopes: list[str]
) -> HTMLResponse:
    items = "".join(f"<li>{escape(scope)}</li>" for scope in scopes) or "<li>basic access</li>"
    body = (
        f"<p><strong>{escape(client_name)}</strong> asks for access to your account:</p>"
        f"<ul>{items}</ul><form method='post' action='{escape(action)}'>"
        f"{_hidden('csrf_token', csrf)}{_hidden('authorization_request', request_query)}"
        f"<button type='submit' name='action' value='approve'>Allow</button> "
        f"<button type='submit' name='action' value='deny'>Deny</button></form>"
    )
    return _page("Allow access?", body)


def error_page(title: str, detail: str, status: int = 400) -> HTMLResponse:
    return _page(title, f"<p class='error'>{escape(detail)}</p>", status)


def logout_confirm_page(*, action: str, csrf: str) -> HTMLResponse:
    body = (
        f"<p>Sign out of Paymesh?</p><form method='post' action='{escape(action)}'>"
        f"{_hidden('csrf_token', csrf)}<button type='submit'>Sign out</button></form>"
    )
    return _page("Sign out", body)


def logged_out_page() -> HTMLResponse:
    return _page("Signed out", "<p>You are signed out.</p>")
