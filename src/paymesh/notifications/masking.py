"""Addresses as the API shows them: enough to recognise, not enough to harvest."""

from __future__ import annotations


def mask_email(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_phone(number: str) -> str:
    return "*" * max(0, len(number) - 3) + number[-3:]


def mask_recipient(channel: str, recipient: str | None) -> str | None:
    if recipient is None:
        return None
    if channel == "email":
        return mask_email(recipient)
    if channel == "sms":
        return mask_phone(recipient)
    return recipient  # push: already `device …last8`
