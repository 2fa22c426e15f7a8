// An independent OpenID Connect relying party (openid-client, OpenID Certified) driving
// paymesh identity over real HTTP. It posts the login form like a browser would.
// Input: environment (ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, USERNAME, PASSWORD).
// Output: one JSON line with what it saw; any failed check throws (exit code 1).
import * as oidc from 'openid-client'

const env = process.env
const issuer = new URL(env.ISSUER)
const redirectUri = env.REDIRECT_URI
const results = {}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`)
}

function cookieHeader(response, jar) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';')
    const [name, ...rest] = pair.split('=')
    jar[name.trim()] = rest.join('=')
  }
  return Object.entries(jar).map(([k, v]) => `${k}=${v}`).join('; ')
}

function hiddenFields(html) {
  const fields = {}
  for (const match of html.matchAll(/<input type='hidden' name='([^']+)' value='([^']*)'>/g)) {
    fields[match[1]] = match[2].replaceAll('&amp;', '&').replaceAll('&#x27;', "'")
  }
  return fields
}

// The browser's part: open the authorization URL, post the login form, follow nothing.
async function browserLogin(authorizationUrl) {
  const jar = {}
  const page = await fetch(authorizationUrl, { redirect: 'manual' })
  check(page.status === 200, `login page status ${page.status}`)
  const cookies = cookieHeader(page, jar)
  const html = await page.text()
  check(html.includes("name='password'"), 'login form has a password field')
  const form = new URLSearchParams({ ...hiddenFields(html), username: env.USERNAME, password: env.PASSWORD })
  const posted = await fetch(new URL('/oauth2/authorize', issuer), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookies },
    body: form,
  })
  check(posted.status === 302, `login answer status ${posted.status}`)
  return new URL(posted.headers.get('location'))
}

const config = await oidc.discovery(
  issuer, env.CLIENT_ID, undefined, oidc.ClientSecretBasic(env.CLIENT_SECRET),
  { execute: [oidc.allowInsecureRequests] },
)
results.issuer = config.serverMetadata().issuer

const codeVerifier = oidc.randomPKCECodeVerifier()
const codeChallenge = await oidc.calculatePKCECodeChallenge(codeVerifier)
const state = oidc.randomState()
const nonce = oidc.randomNonce()
const authorizationUrl = oidc.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state,
  nonce,
})
const callback = await browserLogin(authorizationUrl)
// Validates state, the code exchange with PKCE, and the ID token (signature by JWKS,
// iss, aud, exp, iat, nonce) as the OpenID Connect spec requires.
const tokens = await oidc.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
})
const claims = tokens.claims()
results.id_token = { sub: claims.sub, nonce: claims.nonce, at_hash: claims.at_hash, aud: claims.aud }
check(claims.nonce === nonce, 'nonce echoed')

const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)
results.userinfo = userinfo

const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token)
check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated')
results.refreshed = { scope: refreshed.scope, rotated: true }

const active = await oidc.tokenIntrospection(config, refreshed.access_token)
results.introspection = active
await oidc.tokenRevocation(config, refreshed.access_token)
results.after_revocation = await oidc.tokenIntrospection(config, refreshed.access_token)
await oidc.tokenRevocation(config, refreshed.refresh_token)
let refreshAfterRevocation = 'accepted'
try {
  await oidc.refreshTokenGrant(config, refreshed.refresh_token)
} catch (error) {
  refreshAfterRevocation = error.error ?? error.code ?? String(error)
}
results.refresh_after_revocation = refreshAfterRevocation

const service = await oidc.clientCredentialsGrant(config, { scope: 'ledger:read' })
results.client_credentials = await oidc.tokenIntrospection(config, service.access_token)

console.log(JSON.stringify(results))
