"""Identity's periodic work: forget expired codes, refresh tokens, sessions and revoked
access-token ids."""

from __future__ import annotations

import datetime as dt
import time

from paymesh.identity import repository
from paymesh.kernel.db import utcnow
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime

PURGE_INTERVAL_SECONDS = 3600
GRACE = dt.timedelta(days=1)


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    async def purge() -> None:
        before = utcnow() - GRACE
        async with runtime.database.transaction() as session:
            await repository.purge_codes(session, before)
            await repository.purge_refresh_tokens(session, before)
            await repository.purge_login_sessions(session, before)
            await repository.purge_revoked_access_tokens(session, before)
            await repository.purge_revocations(session, time.time())

    return [PeriodicJob("identity_purge_expired", PURGE_INTERVAL_SECONDS, purge)]
