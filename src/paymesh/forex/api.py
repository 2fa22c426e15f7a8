"""Forex HTTP API under /v1/forex.

Rates are public (a bank's published rates; the gateway route policy says so). Converting
and quoting need a caller; consuming a quote is for services (role `service`): payments
uses a quote once, atomically, when it books the conversion."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from paymesh.forex import errors
from paymesh.forex.schemas import (
    Conversion,
    ConversionCreate,
    Quote,
    QuoteConsume,
    QuoteCreate,
    Rate,
    RateList,
)
from paymesh.forex.service import ForexService
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, current_caller, require
from paymesh.kernel.errors import problem_responses
from paymesh.kernel.money import CurrencyCode
from paymesh.kernel.routing import SessionDep

router = service_router(prefix="/v1/forex", tags=["forex"])

PRICING_ROLES = frozenset({"customer", "merchant", "ops", "finance", "admin", "service"})
CONSUMER_ROLES = frozenset({"service"})

Pricer = Annotated[Caller, Depends(require(roles=PRICING_ROLES))]
Consumer = Annotated[Caller, Depends(require(roles=CONSUMER_ROLES))]
AnyCaller = Annotated[Caller, Depends(current_caller)]
Pair = Annotated[
    str, Path(min_length=6, max_length=6, description="Base then quote, e.g. `EURUSD`.")
]
QuoteId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
OnDate = Annotated[
    dt.date | None,
    Query(
        alias="date",
        description="A past day (YYYY-MM-DD): that day's rate, or the last business day's "
        "before it; the answer's `date` says which.",
    ),
]


async def forex(request: Request) -> ForexService:
    service: ForexService = request.app.state.runtime.state["forex"]
    return service


Forex = Annotated[ForexService, Depends(forex)]


@router.get(
    "/rates/{pair}",
    response_model=Rate,
    responses=problem_responses(*errors.RATE_ERRORS),
)
async def get_rate(pair: Pair, service: Forex, on: OnDate = None) -> Rate:
    """The rate of a pair: units of the quote currency per one unit of the base. Without
    `date`, the latest rates held; cross rates (neither side EUR) are derived through the
    EUR reference rates and cut down to 12 significant digits. Public."""
    return await service.rate(pair, on)


@router.get(
    "/rates",
    response_model=RateList,
    responses=problem_responses(*errors.RATE_ERRORS),
)
async def list_rates(
    service: Forex,
    base: Annotated[CurrencyCode, Query(description="The base currency.")] = "EUR",
    on: OnDate = None,
) -> RateList:
    """Every rate against `base` (default EUR) on one day. Public."""
    return await service.rates_for(base, on)


@router.post(
    "/convert",
    response_model=Conversion,
    response_model_by_alias=True,
    responses=problem_responses(*errors.PRICING_ERRORS),
)
async def convert(body: ConversionCreate, service: Forex, _caller: Pricer) -> Conversion:
    """Convert `amount` minor units of `from` into `to` at the mid rate, rounded down to
    `to`'s minor unit (toward the platform). Informational: nothing is locked or stored.
    503 `rates_stale` when the rates have not been refreshed recently enough."""
    return await service.convert(body)


@router.post(
    "/quotes",
    status_code=201,
    response_model=Quote,
    response_model_by_alias=True,
    responses=problem_responses(*errors.PRICING_ERRORS),
)
async def create_quote(
    body: QuoteCreate, session: SessionDep, service: Forex, caller: Pricer
) -> Quote:
    """Lock a price for `quote_ttl_seconds` (default 30 s). `side: sell`: the customer pays
    `amount` of `from` and receives `to_amount`, rounded down; `side: buy`: the customer
    receives exactly `amount` of `to` and pays `from_amount`, rounded up. The customer rate
    is the mid rate less `markup_bps`. Writes `forex.quote.created`."""
    return await service.create_quote(session, body, caller, service.now())


@router.get(
    "/quotes/{quote_id}",
    response_model=Quote,
    response_model_by_alias=True,
    responses=problem_responses(errors.QuoteNotFound),
)
async def get_quote(
    quote_id: QuoteId, session: SessionDep, service: Forex, caller: AnyCaller
) -> Quote:
    """A quote, to its owner and to operators and services; anyone else gets 404."""
    return await service.get_quote(session, quote_id, caller, service.now())


@router.post(
    "/quotes/{quote_id}/consume",
    response_model=Quote,
    response_model_by_alias=True,
    responses=problem_responses(
        errors.QuoteNotFound, errors.QuoteExpired, errors.QuoteAlreadyConsumed
    ),
)
async def consume_quote(
    quote_id: QuoteId,
    session: SessionDep,
    service: Forex,
    caller: Consumer,
    body: QuoteConsume | None = None,
) -> Quote:
    """Use the quote, once: of concurrent calls exactly one succeeds. An expired quote is
    409 `quote_expired`, a used one 409 `quote_already_consumed` (unless `reference` is the
    one that used it: then the quote is returned again). Services only. Writes
    `forex.quote.consumed`."""
    reference = body.reference if body is not None else None
    return await service.consume_quote(session, quote_id, reference, caller, service.now())
