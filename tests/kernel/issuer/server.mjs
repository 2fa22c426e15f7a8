// An independent OpenID provider for tests/kernel/test_trusted_issuers.py: oidc-provider
// with one confidential client allowed the client_credentials grant, issuing RS256 JWT
// access tokens (RFC 9068) for one resource, with roles where Keycloak puts them.
//
//   node server.mjs PORT CLIENT_ID CLIENT_SECRET
//
// Listens on 127.0.0.1 only and prints "listening" once it accepts connections; the
// issuer is http://127.0.0.1:PORT and its discovery document is at the usual place.
import { generateKeyPairSync } from "node:crypto";

import Provider from "oidc-provider";

const [port, clientId, clientSecret] = process.argv.slice(2);
if (!port || !clientId || !clientSecret) {
  console.error("usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET");
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const resource = "https://api.paymesh.example";
const scope = "ledger:read ledger:write";
// A fresh signing key per run: nothing is shared with the tests but the published JWKS.
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), alg: "RS256", use: "sig", kid: "issuer-1" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope,
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: scope.split(" "),
  // Roles as a flat claim and where Keycloak nests its realm roles.
  extraTokenClaims: () => ({ roles: ["auditor"], realm_access: { roles: ["finance", "auditor"] } }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope,
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
});

const server = provider.listen(Number(port), "127.0.0.1", () => console.log("listening"));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
