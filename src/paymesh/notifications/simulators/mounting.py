"""The SMS and push simulators as the platform serves them in the embedded shape (at
ORIGIN/_simulators/sms and /push, outside the gateway like the providers' own APIs), and
as `paymesh serve sms-simulator|push-simulator` runs them alone."""

from __future__ import annotations

from fastapi import FastAPI

from paymesh.kernel.config import Settings
from paymesh.notifications import settings as configured
from paymesh.notifications.simulators.push import PushSimulator
from paymesh.notifications.simulators.sms import SmsSimulator


def sms_simulator(settings: Settings) -> SmsSimulator:
    return SmsSimulator(
        account_sid=settings.notifications.twilio_account_sid,
        auth_token=configured.twilio_auth_token(settings),
    )


def push_simulator(settings: Settings) -> PushSimulator:
    return PushSimulator(
        project_id=settings.notifications.fcm_project_id,
        bearer_token=configured.push_simulator_token(settings),
    )


def mount_notification_simulators(app: FastAPI, settings: Settings) -> None:
    """Mount each simulator the settings point the channels at; none in production."""
    if not configured.simulated(settings):
        return
    section = settings.notifications
    if not section.twilio_url:
        sms = sms_simulator(settings)
        app.state.sms_simulator = sms
        app.mount(configured.SMS_SIMULATOR_PATH, sms.app())
    if not section.fcm_url:
        push = push_simulator(settings)
        app.state.push_simulator = push
        app.mount(configured.PUSH_SIMULATOR_PATH, push.app())
