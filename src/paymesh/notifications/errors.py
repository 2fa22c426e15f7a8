"""Notifications errors, named after the condition."""

from __future__ import annotations

from paymesh.kernel.errors import PaymeshError


class NotificationsError(PaymeshError):
    """Root of the notifications service's errors."""


class NotificationNotFound(NotificationsError):
    code = "notification_not_found"
    status = 404
    title = "No such notification"


class TemplateNotFound(NotificationsError):
    code = "template_not_found"
    status = 404
    title = "No such template"


class TemplateExists(NotificationsError):
    code = "template_exists"
    status = 409
    title = "A template for this event type, channel and locale exists: PUT a new version"


class InvalidTemplate(NotificationsError):
    code = "invalid_template"
    status = 422
    title = "The template does not compile or does not render"


class DeviceNotFound(NotificationsError):
    code = "device_not_found"
    status = 404
    title = "No such device"


class DeviceTaken(NotificationsError):
    code = "device_registered_elsewhere"
    status = 409
    title = "This device token is registered to another user"


class NotReplayable(NotificationsError):
    code = "notification_not_replayable"
    status = 409
    title = "Only a failed notification can be replayed"


class ContentErased(NotificationsError):
    code = "notification_content_erased"
    status = 409
    title = "A security message's content is erased once it is sent or has failed: issue a new one"


class NoRoute(NotificationsError):
    code = "no_route"
    status = 422
    title = "No routing rule sends this event type"


class InvalidSignature(NotificationsError):
    code = "invalid_signature"
    status = 403
    title = "The status callback's signature does not match"


class MailCatcherOff(NotificationsError):
    code = "mail_catcher_off"
    status = 404
    title = "No mail catcher runs here (SMTP is configured, or this is production)"
