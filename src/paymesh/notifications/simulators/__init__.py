"""Local stand-ins for the notification providers, speaking their real protocols.

- `SmsSimulator`: Twilio's Messages resource over HTTP (basic auth, E.164 check with
  Twilio's error 21211, status callbacks `sent` then `delivered` signed with
  `X-Twilio-Signature`). A number ending in `0000` fails in the callback (error 30003).
- `PushSimulator`: FCM HTTP v1 `messages:send` (bearer token; a device token starting
  with `bad` is `UNREGISTERED`).
- `MailCatcher`: an aiosmtpd SMTP server on the running event loop that keeps what it
  receives; a recipient whose local part starts with `reject` is refused with 550, `busy`
  with 451. `.app()` shows the catch (mounted at `/dev/mail`, never in production).

Each keeps what it received in memory (`.messages`, and `GET /_simulator/messages`), and
`fail_next(status)` makes the next requests fail with a server error, for retry tests.
"""

from paymesh.notifications.channels import twilio_signature, verify_twilio_signature
from paymesh.notifications.simulators.mail import CaughtMail, MailCatcher
from paymesh.notifications.simulators.push import PushSimulator
from paymesh.notifications.simulators.sms import CallbackAttempt, SmsSimulator

__all__ = [
    "CallbackAttempt",
    "CaughtMail",
    "MailCatcher",
    "PushSimulator",
    "SmsSimulator",
    "twilio_signature",
    "verify_twilio_signature",
]
