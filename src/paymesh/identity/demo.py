"""Demo data for `make run` (never in production): an admin, customers alice and bob, and
the clients the README's identity tour uses. Seeding twice changes nothing.

`/demo/login` and `/demo/callback` are the demo web app (`demo-web`): two small pages that
run the authorization code flow with PKCE in the browser, so a newcomer sees it end to end
(sign in as alice, get tokens). They answer only where the demo data was seeded, never in
production."""

from __future__ import annotations

import base64
import hashlib

from fastapi import Request
from starlette.responses import HTMLResponse

from paymesh.identity import repository, service
from paymesh.identity.provider.pages import SECURITY_HEADERS, STYLE
from paymesh.identity.schemas import ClientCreate, UserCreate
from paymesh.kernel.app import service_router
from paymesh.kernel.errors import NotFound
from paymesh.kernel.routing import SessionDep
from paymesh.kernel.runtime import ServiceRuntime

DEMO_PASSWORD = "paymesh-demo-password"  # noqa: S105 - documented demo credential

USERS = [
    UserCreate(
        username="admin",
        password=DEMO_PASSWORD,
        email="admin@paymesh.example",
        given_name="Ada",
        family_name="Admin",
        roles=["admin"],
    ),
    UserCreate(
        username="alice",
        password=DEMO_PASSWORD,
        email="alice@paymesh.example",
        given_name="Alice",
        family_name="Liddell",
        phone="+15555550101",
        roles=["customer"],
    ),
    UserCreate(
        username="bob",
        password=DEMO_PASSWORD,
        email="bob@paymesh.example",
        given_name="Bob",
        family_name="Builder",
        roles=["customer"],
    ),
]

WEB_APP_ID = "demo-web"
CALLBACK = "/demo/callback"


def web_app(origin: str) -> ClientCreate:
    """The demo web app: its pages are on the platform's origin (`/demo/callback`); on
    loopback a public client's redirect URI matches on any port (RFC 8252 7.3), so the
    pages keep working when the platform later runs on another port."""
    return ClientCreate(
        client_id=WEB_APP_ID,
        name="Paymesh demo web app",
        public=True,
        first_party=True,
        redirect_uris=[f"{origin}{CALLBACK}", "http://localhost:3000/callback"],
        post_logout_redirect_uris=[f"{origin}/demo/login", "http://localhost:3000/"],
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "email", "phone", "offline_access"],
    )


LEGACY_APP = ClientCreate(
    client_id="demo-legacy",
    name="Paymesh legacy mobile app",
    public=False,
    first_party=True,
    grant_types=["password", "refresh_token"],
    password_grant_allowed=True,
    # identity:admin: the README's admin token (the admin user's roles grant it).
    scopes=["openid", "profile", "email", "identity:admin"],
)
REPORTING = ClientCreate(
    client_id="demo-reporting",
    name="Reporting job (service account)",
    public=False,
    grant_types=["client_credentials"],
    scopes=["ledger:read"],
    roles=["auditor"],
)

DEMO_CLIENT_SECRETS = {
    "demo-legacy": "demo-legacy-secret",
    "demo-reporting": "demo-reporting-secret",
}
"""Fixed demo secrets, so the README can show copy-paste requests."""


async def seed_demo(runtime: ServiceRuntime) -> None:
    async with runtime.database.transaction() as session:
        for user in USERS:
            if await repository.get_user_by_username(session, user.username) is None:
                await service.create_user(session, user)
        for client in (web_app(runtime.settings.origin), LEGACY_APP, REPORTING):
            assert client.client_id is not None
            if await repository.get_client(session, client.client_id) is None:
                secret = DEMO_CLIENT_SECRETS.get(client.client_id)
                await service.create_client(session, client, secret=secret)


# --- the demo web app's pages ---------------------------------------------------------------

LOGIN_SCRIPT = """
const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const random = (n) => b64(crypto.getRandomValues(new Uint8Array(n)));
async function start() {
  const verifier = random(32);
  const state = random(16);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem("paymesh-demo", JSON.stringify({verifier, state}));
  location.assign("/oauth2/authorize?" + new URLSearchParams({
    response_type: "code",
    client_id: "demo-web",
    redirect_uri: location.origin + "/demo/callback",
    scope: "openid profile email offline_access",
    state,
    code_challenge: b64(digest),
    code_challenge_method: "S256",
  }));
}
document.getElementById("start").addEventListener("click", start);
"""

CALLBACK_SCRIPT = """
const out = document.getElementById("out");
const show = (title, value) => {
  document.getElementById("title").textContent = title;
  out.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
};
async function finish() {
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem("paymesh-demo") || "null");
  sessionStorage.removeItem("paymesh-demo");
  history.replaceState(null, "", location.pathname);  // the code is single-use anyway
  if (params.get("error")) return show("The provider refused", Object.fromEntries(params));
  if (!saved || !params.get("code") || saved.state !== params.get("state")) {
    return show("No sign-in in progress here", "Start again at /demo/login.");
  }
  const response = await fetch("/oauth2/token", {
    method: "POST",
    headers: {"content-type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: location.origin + "/demo/callback",
      client_id: "demo-web",
      code_verifier: saved.verifier,
    }),
  });
  const body = await response.json();
  if (!response.ok) return show("The token request failed (" + response.status + ")", body);
  const part = body.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  body.access_token_claims = JSON.parse(atob(part));
  show("Signed in: the token response", body);
}
finish();
"""


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def _page(title: str, body: str, script: str) -> HTMLResponse:
    """A page whose only script is `script` (allowed by its hash), which may call this
    origin only."""
    policy = (
        f"default-src 'none'; script-src {_script_hash(script)}; connect-src 'self'; "
        f"style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}pre{{white-space:pre-wrap;"
        f"word-break:break-all}}body{{max-width:48rem}}</style></head>"
        f"<body>{body}<script>{script}</script></body></html>"
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS | {"content-security-policy": policy})


demo_pages = service_router(prefix="/demo", tags=["identity: demo"], include_in_schema=False)


async def _demo_seeded(request: Request, session: SessionDep) -> None:
    """The pages exist only where `paymesh up --demo` seeded the demo web app."""
    runtime: ServiceRuntime = request.app.state.runtime
    if runtime.settings.env == "production" or (
        await repository.get_client(session, WEB_APP_ID) is None
    ):
        raise NotFound(detail=f"No route or resource at {request.url.path}")


@demo_pages.get("/login")
async def demo_login(request: Request, session: SessionDep) -> HTMLResponse:
    """Starts the code flow: a PKCE verifier and a state in sessionStorage, then identity's
    authorization endpoint."""
    await _demo_seeded(request, session)
    body = (
        "<h1>Paymesh demo web app</h1><p>The authorization code flow with PKCE, as a browser "
        "app runs it. Sign in as <code>alice</code> (password "
        f"<code>{DEMO_PASSWORD}</code>); you come back to <code>{CALLBACK}</code>, which "
        "exchanges the code for tokens and shows them.</p>"
        "<button id='start' type='button'>Sign in with Paymesh</button>"
    )
    return _page("Paymesh demo web app", body, LOGIN_SCRIPT)


@demo_pages.get("/callback")
async def demo_callback(request: Request, session: SessionDep) -> HTMLResponse:
    """The redirect URI: exchanges `code` (with the verifier kept by `/demo/login`) at
    `/oauth2/token` and shows the token response."""
    await _demo_seeded(request, session)
    body = (
        "<h1 id='title'>Finishing sign-in…</h1><pre id='out'></pre>"
        "<p><a href='/demo/login'>Start again</a></p>"
    )
    return _page("Paymesh demo web app", body, CALLBACK_SCRIPT)
