"""Out-of-band one-time codes: identity issues and verifies them, notifications sends them."""
