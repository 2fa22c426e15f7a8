"""The password policy every password a user chooses must meet."""

from __future__ import annotations

from paymesh.identity.accounts.errors import PasswordTooWeak

MINIMUM_LENGTH = 12

# A short list of the passwords (at 12+ characters) most often found in breach corpora;
# a real deployment would check a breached-password service as well.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678910",
        "password1234",
        "password12345",
        "passwordpassword",
        "qwertyuiopasdf",
        "qwerty123456",
        "1q2w3e4r5t6y",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "administrator",
        "changeme1234",
        "abcdefghijkl",
        "aaaaaaaaaaaa",
        "111111111111",
        "000000000000",
        "correcthorsebatterystaple",
    }
)


def check_password(password: str, *, username: str, email: str | None) -> None:
    """Raise `PasswordTooWeak` unless `password` meets the policy."""
    if len(password) < MINIMUM_LENGTH:
        raise PasswordTooWeak(detail=f"the password needs at least {MINIMUM_LENGTH} characters")
    folded = password.casefold()
    if folded == username.casefold() or (email and folded == email.casefold()):
        raise PasswordTooWeak(detail="the password may not be the username or the email")
    if folded in COMMON_PASSWORDS or folded.replace(" ", "") in COMMON_PASSWORDS:
        raise PasswordTooWeak(detail="the password is too common")
