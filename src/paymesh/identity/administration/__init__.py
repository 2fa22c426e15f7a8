"""Administration of OAuth2 clients and users (`/v1/identity/clients`,
`/v1/identity/users/{id}`), for the `admin` role. Every change writes an `identity.*`
outbox event naming the acting admin, for the audit service."""
