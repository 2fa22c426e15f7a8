"""Self-service accounts: registration, the signed-in user's profile and password, and
TOTP enrolment (`/v1/identity/users`, `/v1/identity/users/me...`)."""
