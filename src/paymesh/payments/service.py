"""The payment state machine's driver: create, then move a payment on until it waits (for a
code, a compliance officer) or ends.

Every step is recorded before it is attempted and each remote call is idempotent on retry:
risk evaluates with `Idempotency-Key: evaluate:<payment id>`, identity's code is bound to
the payment, forex's quote is consumed with the payment id as reference, and the ledger
batch's transfer ids derive from the payment id. So `advance` may run again from any state
(after a crash, by the recovery job, by two processes at once) and the money moves at most
once. A transition updates the row only from the state it expects.

A payout (to another bank) reserves its money on the ledger as a pending transfer, hands
the instruction to providers (idempotent on the payment id: the bank sees one instruction
however often it is sent) and waits `in_transit`. The bank's outcome arrives as a
`providers.payout.*` event, is recorded on the payment in the consumer's transaction
(`record_bank_outcome`) and acted on by `advance`: post the reservation on settlement, void
it on rejection or timeout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.forex.client import ForexClient
from paymesh.forex.schemas import Quote
from paymesh.identity.client import IdentityClient, OneTimeCodeCheck, OneTimeCodeCreate
from paymesh.kernel.auth import Caller
from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.errors import IdempotencyRequestInProgress, PaymeshError, RemoteServiceError
from paymesh.kernel.events import Outbox
from paymesh.kernel.faults import die_here
from paymesh.kernel.ids import new_id
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.metrics import PAYMENT_DURATION, PAYMENTS
from paymesh.kernel.money import get_currency
from paymesh.ledger.client import LedgerClient
from paymesh.payments import errors, states
from paymesh.payments.models import Payment, PaymentStep
from paymesh.payments.money import Booking, failure_code
from paymesh.payments.pricing import PricingTable, quote_fee
from paymesh.payments.schemas import ConfirmRequest, Destination, PaymentCreate
from paymesh.profiles.client import ProfilesClient
from paymesh.providers.client import (
    Beneficiary,
    BeneficiaryValidation,
    Debtor,
    PayoutCreate,
    Providers,
)
from paymesh.risk.client import RiskClient
from paymesh.risk.schemas import Counterparty, EvaluationCreate
from paymesh.wallets.client import WalletsClient

log = structlog.get_logger("paymesh.payments")

ACTING_FOR_USERS = frozenset({"service"})
ADVANCE_AFTER_COMMIT = "payments_to_advance"
"""session.info key: (payment id, actor) pairs to move on once the transaction commits."""
IN_PROGRESS = IdempotencyRequestInProgress.code
"""A service's answer when the same idempotent request is still running elsewhere (after
`ServiceClient` has waited a while for it to finish)."""
BANK_OUTCOMES = frozenset({"settled", "rejected", "timed_out"})
"""A payout's final answers from its bank (providers' `PayoutOutcome.status`)."""


@dataclass
class Remote:
    wallets: WalletsClient
    risk: RiskClient
    identity: IdentityClient
    forex: ForexClient
    profiles: ProfilesClient
    ledger: LedgerClient
    providers: Providers


def beneficiary_account(payment: Payment) -> str:
    """A payout's beneficiary account (IBAN, or bank code and account number)."""
    assert payment.payout is not None
    beneficiary = payment.payout["beneficiary"]
    return str(
        beneficiary.get("iban") or f"{beneficiary['bank_code']}/{beneficiary['account_number']}"
    )


def code_purpose(payment: Payment) -> str:
    """What a step-up code confirms: this payment with these terms. A code issued for one
    payment (or for this one before its terms changed) cannot confirm another."""
    destination = (
        beneficiary_account(payment) if payment.type == "payout" else payment.destination_wallet_id
    )
    terms = f"{payment.id}|{payment.amount}|{payment.currency}|{destination}"
    return "payment:" + hashlib.sha256(terms.encode()).hexdigest()[:48]


def _remote_failure(error: Exception) -> PaymeshError:
    if isinstance(error, RemoteServiceError) and error.remote_status < 500:
        return error
    return errors.DependencyUnavailable(detail=f"{type(error).__name__}")


class Payments:
    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        remote: Remote,
        booking: Booking,
        pricing: PricingTable,
        *,
        otp_channel: str,
        crash_at: str | None = None,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.remote = remote
        self.booking = booking
        self.pricing = pricing
        self.otp_channel = otp_channel
        self.crash_at = crash_at

    def checkpoint(self, step: str) -> None:
        """A fault-injection point (settings refuse it outside PAYMESH_ENV=test): the
        process dies here as if killed, to prove every step is resumed after a crash."""
        if self.crash_at == step:
            die_here("payments_crash_injected", step=step)

    # -- creation ------------------------------------------------------------------------

    async def create(self, caller: Caller, key: str, body: PaymentCreate) -> Payment:
        request_key = f"{caller.idempotency_scope}|{key}"
        request_hash = hashlib.sha256(dumps(body.model_dump(mode="json"))).hexdigest()
        existing = await self._by_request(request_key)
        if existing is not None:
            if existing.request_hash != request_hash:
                raise errors.IdempotencyKeyReused()
            return existing
        payment = await self._prepare(caller, body, request_key, request_hash)
        async with self.database.transaction() as session:
            session.add(payment)
            await session.flush()
            await self.record_step(session, payment.id, "created", "ok", caller.subject, {})
            await self.record_event(session, payment, "created")
        PAYMENTS.labels(payment.type, "created").inc()
        self.checkpoint("created")
        return await self.advance(payment.id, caller.subject)

    async def _by_request(self, request_key: str) -> Payment | None:
        # One statement reads committed rows on its own (no BEGIN and COMMIT on PostgreSQL,
        # SQLite's concurrent reader): `create`'s unique request key is the real guard.
        async with self.database.transaction(read_only=True) as session:
            return (
                await session.execute(select(Payment).where(Payment.request_key == request_key))
            ).scalar_one_or_none()

    async def _prepare(
        self, caller: Caller, body: PaymentCreate, request_key: str, request_hash: str
    ) -> Payment:
        try:
            source = await self.remote.wallets.account(body.source_wallet_id)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                raise errors.SourceWalletNotFound() from None
            raise _remote_failure(error) from None
        acting = bool(caller.roles & ACTING_FOR_USERS)
        if source.owner_id != caller.subject and not acting:
            raise errors.SourceWalletNotFound()  # someone else's is as good as none
        if source.status != "active":
            raise errors.SourceWalletInactive(status=source.status)
        if source.currency != body.currency:
            raise errors.CurrencyMismatch(detail=f"the source wallet holds {source.currency}")
        if body.type == "payout":
            return await self._prepare_payout(body, source, request_key, request_hash)
        destination = await self._destination(body, source.currency)
        if destination.wallet_id == source.wallet_id:
            raise errors.SelfPayment()
        same = destination.currency == body.currency
        if body.type == "p2p" and not same:
            raise errors.CurrencyMismatch(detail="p2p pays a wallet in the same currency")
        if body.type == "cross_currency" and same:
            raise errors.CurrencyMismatch(detail="cross_currency pays a wallet in another currency")
        quote = await self._quote(body, source.owner_id, destination.currency)
        # The KYC level matters only to a free tier: no call to profiles without one.
        free_tiers = any(rule.free_for_levels for rule in self.pricing.rules)
        level = await self._kyc_level(source.owner_id) if free_tiers else "none"
        fee = quote_fee(
            self.pricing,
            type=body.type,
            currency=body.currency,
            amount=body.amount,
            kyc_level=level,
        )
        now = utcnow()
        return Payment(
            id=new_id("pay"),
            request_key=request_key,
            request_hash=request_hash,
            type=body.type,
            status="created",
            payer_id=source.owner_id,
            source_wallet_id=source.wallet_id,
            source_account_id=source.ledger_account_id,
            payee_id=destination.owner_id,
            destination_wallet_id=destination.wallet_id,
            destination_account_id=destination.ledger_account_id,
            amount=body.amount,
            currency=body.currency,
            destination_amount=quote.to_amount if quote else body.amount,
            destination_currency=destination.currency,
            fee=fee.fee,
            fee_rule=fee.rule.model_dump(mode="json"),
            quote=quote.model_dump(mode="json", by_alias=False) if quote else None,
            description=body.description,
            metadata_=dict(body.metadata),
            reversed_amount=0,
            fee_refunded=0,
            created_at=now,
            updated_at=now,
        )

    async def _prepare_payout(
        self, body: PaymentCreate, source: Any, request_key: str, request_hash: str
    ) -> Payment:
        """A payout's beneficiary is validated by providers before anything is stored: the
        IBAN's checksum, the BIC, a partner bank for the currency and country, the bank's
        own lookup of the account. Each refusal is a 422 with its precise code."""
        assert body.beneficiary is not None
        check = BeneficiaryValidation(currency=body.currency, beneficiary=body.beneficiary)
        try:
            validated = await self.remote.providers.validate_beneficiary(check)
        except RemoteServiceError as error:
            refusal = errors.BENEFICIARY_ERRORS.get(error.remote_code)
            if refusal is not None:
                raise refusal(detail=error.detail) from None
            raise _remote_failure(error) from None
        free_tiers = any(rule.free_for_levels for rule in self.pricing.rules)
        level = await self._kyc_level(source.owner_id) if free_tiers else "none"
        fee = quote_fee(
            self.pricing, type="payout", currency=body.currency, amount=body.amount, kyc_level=level
        )
        now = utcnow()
        return Payment(
            id=new_id("pay"),
            request_key=request_key,
            request_hash=request_hash,
            type="payout",
            status="created",
            payer_id=source.owner_id,
            source_wallet_id=source.wallet_id,
            source_account_id=source.ledger_account_id,
            payee_id="",  # someone at another bank: no user, no wallet here
            destination_wallet_id="",
            destination_account_id=self.booking.payout_clearing_account(body.currency),
            amount=body.amount,
            currency=body.currency,
            destination_amount=body.amount,
            destination_currency=body.currency,
            fee=fee.fee,
            fee_rule=fee.rule.model_dump(mode="json"),
            quote=None,
            payout={
                "beneficiary": validated.beneficiary.model_dump(mode="json", exclude_none=True),
                "bank": validated.bank,
                "account_name": validated.account_name,
                "purpose": body.purpose,
                "remittance_info": body.remittance_info,
                "instruction": None,
            },
            description=body.description,
            metadata_=dict(body.metadata),
            reversed_amount=0,
            fee_refunded=0,
            created_at=now,
            updated_at=now,
        )

    async def _destination(self, body: PaymentCreate, currency: str) -> Any:
        target = body.destination
        assert target is not None
        try:
            if target.wallet_id is not None:
                found = await self.remote.wallets.account(target.wallet_id)
            else:
                user_id = target.user_id
                if user_id is None:
                    assert target.username is not None
                    user_id = (
                        await self.remote.identity.contact_by_username(target.username)
                    ).user_id
                found = await self.remote.wallets.owned_by(user_id, target.currency or currency)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                raise errors.DestinationInvalid(detail="no such wallet") from None
            raise _remote_failure(error) from None
        if found.status not in ("active", "frozen"):  # frozen wallets still take credits
            raise errors.DestinationInvalid(detail=f"the wallet is {found.status}")
        return found

    async def _quote(self, body: PaymentCreate, payer: str, to_currency: str) -> Quote | None:
        if body.type != "cross_currency":
            if body.quote_id is not None:
                raise errors.QuoteRequired(detail="a p2p payment takes no quote")
            return None
        if body.quote_id is None:
            # No quote of the payer's: payments asks forex for one now (the payer sees the
            # rate and the amount received in the answer; a quote is the way to see them
            # before paying).
            try:
                return await self.remote.forex.create_quote(body.currency, to_currency, body.amount)
            except RemoteServiceError as error:
                if error.remote_status < 500:
                    raise errors.QuoteRequired(detail=f"forex: {error.detail}") from None
                raise _remote_failure(error) from None
        try:
            quote = await self.remote.forex.get_quote(body.quote_id)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                raise errors.QuoteRequired(detail="no such quote") from None
            raise _remote_failure(error) from None
        if quote.owner != payer:
            raise errors.QuoteRequired(detail="no such quote")
        if quote.status == "consumed":
            raise errors.QuoteUsed()
        if quote.status == "expired" or quote.expires_at <= utcnow():
            raise errors.QuoteExpired()
        if (quote.from_currency, quote.to_currency, quote.from_amount) != (
            body.currency,
            to_currency,
            body.amount,
        ):
            raise errors.QuoteRequired(
                detail=f"the quote sells {quote.from_amount} {quote.from_currency} for "
                f"{quote.to_currency}; the payment sends {body.amount} {body.currency} to "
                f"{to_currency}"
            )
        return quote

    async def _kyc_level(self, user_id: str) -> str:
        try:
            return str((await self.remote.profiles.get_profile(user_id)).kyc.level)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                return "none"
            raise _remote_failure(error) from None

    async def confirm(self, caller: Caller, body: ConfirmRequest) -> Payment:
        """The seed-3 adapter: one key per `transaction_id`; the call with `otp` confirms
        the payment the first call left waiting for it."""
        if body.customer_id != caller.subject and not caller.roles & ACTING_FOR_USERS:
            raise errors.SourceWalletNotFound()
        key = f"confirm:{body.transaction_id}"
        existing = await self._by_request(f"{caller.idempotency_scope}|{key}")
        if existing is not None and body.otp is not None and existing.status == "requires_otp":
            return await self.confirm_code(caller, existing.id, body.otp)
        try:
            source = await self.remote.wallets.account(body.from_account)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                raise errors.SourceWalletNotFound() from None
            raise _remote_failure(error) from None
        if source.owner_id != body.customer_id:
            raise errors.SourceWalletNotFound()
        exponent = get_currency(source.currency).exponent
        minor = body.amount.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise errors.CurrencyMismatch(detail=f"{source.currency} has {exponent} decimal places")
        payment = PaymentCreate(
            type="p2p",
            source_wallet_id=body.from_account,
            destination=Destination(wallet_id=body.to_account),
            amount=int(minor),
            currency=source.currency,
            metadata={"transaction_id": body.transaction_id},
        )
        return await self.create(caller, key, payment)

    # -- moving on -----------------------------------------------------------------------

    async def get(self, payment_id: str) -> Payment:
        """The payment as last committed (a read on its own; every transition re-checks the
        state it expects in its own write)."""
        async with self.database.transaction(read_only=True) as session:
            payment = await session.get(Payment, payment_id)
        if payment is None:
            raise errors.PaymentNotFound()
        return payment

    async def advance(self, payment_id: str, actor: str | None = None) -> Payment:
        """Move the payment on from wherever it is until it waits or ends. When another
        worker is in the middle of the same step (a remote call answers that the same
        idempotent request is in progress), that worker moves it on: this one stops."""
        try:
            return await self._advance(payment_id, actor)
        except RemoteServiceError as error:
            if error.remote_code != IN_PROGRESS:
                raise
            log.info("payment_step_in_progress_elsewhere", payment_id=payment_id)
            return await self.get(payment_id)

    async def _advance(self, payment_id: str, actor: str | None) -> Payment:
        # A step whose last write was its transition hands back the row as that wrote it
        # (`_move`'s RETURNING): no read of it again. Otherwise, or when another worker
        # moved it first (None), the row is read afresh.
        moved: Payment | None = None
        for _ in range(4):
            payment = moved if moved is not None else await self.get(payment_id)
            moved = None
            if payment.status == "created":
                moved = await self._evaluate(payment, actor)
            elif payment.status == "processing" and payment.type == "payout":
                if not await self._reserve_and_send(payment, actor):
                    return payment
            elif payment.status == "processing":
                moved = await self._book(payment, actor)
            elif payment.status == "in_transit" and payment.bank_outcome in BANK_OUTCOMES:
                await self._finish_payout(payment, actor)
            else:
                return payment
        return moved if moved is not None else await self.get(payment_id)

    async def _evaluate(self, payment: Payment, actor: str | None) -> Payment | None:
        evaluation = EvaluationCreate(
            transaction_id=payment.id,
            customer_id=payment.payer_id,
            type=payment.type,
            amount=payment.amount,
            currency=payment.currency,
            counterparty=(
                self._beneficiary_counterparty(payment)
                if payment.type == "payout"
                else await self._counterparty(payment.payee_id)
            ),
            channel="api",
        )
        try:
            decision = await self.remote.risk.evaluate(evaluation)
        except RemoteServiceError as error:
            if error.remote_code == IN_PROGRESS:
                # Another advance of this payment (the recovery job, a client's retry) is
                # being decided under the same key right now: not a refusal. The payment
                # stays as it is; that advance, or the next recovery, moves it on.
                raise errors.DependencyUnavailable(
                    detail="risk is still deciding this payment"
                ) from None
            if error.remote_status < 500:
                return await self._move(
                    payment,
                    "failed",
                    actor,
                    "risk",
                    "error",
                    {"code": error.remote_code, "detail": error.detail},
                    failure_code=error.remote_code,
                    failure_reason=error.detail,
                )
            raise _remote_failure(error) from None
        except PaymeshError:
            raise
        except Exception as error:
            raise _remote_failure(error) from None
        self.checkpoint("risk_decided")
        risk = {
            "decision": decision.decision,
            "level": decision.level,
            "score": decision.score,
            "reasons": [reason.model_dump(mode="json") for reason in decision.reasons],
            "decision_id": decision.decision_id,
        }
        detail = {
            "decision": decision.decision,
            "score": decision.score,
            "reasons": [reason.rule for reason in decision.reasons],
        }
        if decision.decision == "block":
            reasons = "; ".join(reason.detail for reason in decision.reasons)[:500]
            return await self._move(
                payment,
                "failed",
                actor,
                "risk",
                "block",
                detail,
                risk=risk,
                failure_code="risk_blocked",
                failure_reason=reasons or None,
            )
        elif decision.decision == "review":
            return await self._move(
                payment, "under_review", actor, "risk", "review", detail, risk=risk
            )
        elif decision.decision == "step_up":
            await self._record_risk(payment, risk, detail, actor)
            return await self._send_code(payment, actor)
        return await self._move(payment, "processing", actor, "risk", "allow", detail, risk=risk)

    async def _counterparty(self, payee_id: str) -> Counterparty | None:
        """The payee as risk screens them: their legal name and country, when known."""
        try:
            profile = await self.remote.profiles.get_profile(payee_id)
        except RemoteServiceError as error:
            if error.remote_status == 404:
                return None
            raise _remote_failure(error) from None
        if not profile.legal_name:
            return None
        try:
            return Counterparty(name=profile.legal_name, country=profile.country, type="individual")
        except ValidationError:  # a name risk cannot take: screened as the customer anyway
            log.warning("payee_name_not_screenable", payee_id=payee_id)
            return None

    @staticmethod
    def _beneficiary_counterparty(payment: Payment) -> Counterparty:
        """A payout's beneficiary as risk screens them (sanctions: name and country)."""
        assert payment.payout is not None
        beneficiary = payment.payout["beneficiary"]
        account = beneficiary.get("iban") or beneficiary.get("account_number")
        return Counterparty(
            name=beneficiary["name"],
            country=beneficiary["country"],
            account=account,
            type="individual",
        )

    async def _record_risk(
        self, payment: Payment, risk: dict[str, Any], detail: dict[str, Any], actor: str | None
    ) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == payment.id)
                .values(risk=risk, updated_at=utcnow())
            )
            await self.record_step(session, payment.id, "risk", "step_up", actor, detail)

    async def _send_code(self, payment: Payment, actor: str | None) -> Payment | None:
        request = OneTimeCodeCreate(
            user_id=payment.payer_id, purpose=code_purpose(payment), channel=self.otp_channel
        )
        try:
            code = await self.remote.identity.issue_code(request)
        except RemoteServiceError as error:
            if error.remote_code == "channel_unavailable" and self.otp_channel == "sms":
                code = await self.remote.identity.issue_code(
                    request.model_copy(update={"channel": "email"})
                )
            elif error.remote_status < 500:  # no phone or email, too many codes lately
                return await self._move(
                    payment,
                    "failed",
                    actor,
                    "otp",
                    "not_sent",
                    {"code": error.remote_code},
                    failure_code="otp_unavailable",
                    failure_reason=error.detail,
                )
            else:
                raise _remote_failure(error) from None
        expires = code.expires_at
        return await self._move(
            payment,
            "requires_otp",
            actor,
            "otp",
            "sent",
            {"otp_id": code.id, "channel": code.channel, "expires_at": expires.isoformat()},
            otp_id=code.id,
            otp_expires_at=expires,
        )

    async def _book(self, payment: Payment, actor: str | None) -> Payment | None:
        quote: Quote | None = None
        if payment.type == "cross_currency":
            assert payment.quote is not None
            try:
                quote = await self.remote.forex.consume_quote(payment.quote["id"], payment.id)
            except RemoteServiceError as error:
                if error.remote_status < 500:
                    return await self._move(
                        payment,
                        "failed",
                        actor,
                        "quote",
                        "refused",
                        {"code": error.remote_code},
                        failure_code=error.remote_code,
                        failure_reason=error.detail,
                    )
                raise _remote_failure(error) from None
        async with self.database.transaction() as session:
            await self.record_step(session, payment.id, "ledger", "attempted", actor, {})
        batch = await self.booking.payment_batch(payment, quote)
        self.checkpoint("ledger_attempted")
        try:
            result = await self.remote.ledger.create_batch(batch)
        except RemoteServiceError as error:
            raise _remote_failure(error) from None
        self.checkpoint("ledger_posted")
        code = failure_code(result.results)
        transfers = [transfer.id for transfer in batch.transfers]
        if code is None:
            return await self._move(
                payment, "succeeded", actor, "ledger", "posted", {"transfer_ids": transfers}
            )
        reason = "insufficient funds" if code == "exceeds_credits" else f"ledger: {code}"
        return await self._move(
            payment,
            "failed",
            actor,
            "ledger",
            "refused",
            {"code": code, "transfer_ids": transfers},
            failure_code="insufficient_funds" if code == "exceeds_credits" else code,
            failure_reason=reason,
        )

    # -- payouts: reserve, send, wait for the bank, post or void --------------------------

    async def _reserve_and_send(self, payment: Payment, actor: str | None) -> bool:
        """Reserve amount + fee on the ledger, then hand the instruction to providers; the
        payment waits `in_transit`. Both steps are idempotent (the reservation's transfer id
        and the instruction derive from the payment id): a crash between them, or after,
        is resumed by running this again. False when another worker is sending it."""
        batch = await self.booking.payout_reservation(payment)
        try:
            result = await self.remote.ledger.create_batch(batch)
        except RemoteServiceError as error:
            raise _remote_failure(error) from None
        code = failure_code(result.results)
        transfer_ids = [transfer.id for transfer in batch.transfers]
        if code is not None:
            insufficient = code == "exceeds_credits"
            await self._move(
                payment,
                "failed",
                actor,
                "ledger",
                "refused",
                {"code": code, "transfer_ids": transfer_ids},
                failure_code="insufficient_funds" if insufficient else code,
                failure_reason="insufficient funds" if insufficient else f"ledger: {code}",
            )
            return True
        if result.results[0].status == "created":
            async with self.database.transaction() as session:
                await self.record_step(
                    session, payment.id, "ledger", "reserved", actor, {"transfer_ids": transfer_ids}
                )
        self.checkpoint("payout_reserved")
        assert payment.payout is not None
        instruction = PayoutCreate(
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            debtor=Debtor(
                name=self.booking.settings.payout_debtor_name,
                account=self.booking.settings.payout_debtor_account,
            ),
            beneficiary=Beneficiary.model_validate(payment.payout["beneficiary"]),
            purpose=payment.payout.get("purpose"),
            remittance_info=payment.payout.get("remittance_info"),
        )
        try:
            sent = await self.remote.providers.submit_payout(instruction)
        except RemoteServiceError as error:
            if error.remote_code == IN_PROGRESS:
                return False  # another worker is sending it right now: its answer moves it
            if error.remote_status >= 500 or error.remote_status in (408, 409, 429):
                # The recovery job sends it again (the same instruction to the bank).
                raise errors.DependencyUnavailable(detail=f"providers: {error.detail}") from None
            # Refused for good (the beneficiary no longer passes, no bank takes it): the
            # reservation is given back.
            await self.booking.release_payout(payment)
            await self._move(
                payment,
                "failed",
                actor,
                "bank",
                "refused",
                {"code": error.remote_code, "detail": error.detail},
                failure_code=error.remote_code,
                failure_reason=error.detail[:500],
            )
            return True
        self.checkpoint("payout_submitted")
        record = {
            "id": sent.id,
            "message_id": sent.message_id,
            "end_to_end_id": sent.end_to_end_id,
        }
        await self._move(
            payment,
            "in_transit",
            actor,
            "bank",
            "submitted",
            {"bank": sent.bank, **record},
            payout={**payment.payout, "instruction": record},
        )
        if sent.status in BANK_OUTCOMES:  # the bank answered at once
            async with self.database.transaction() as session:
                await self.record_bank_outcome(
                    session,
                    payment.id,
                    sent.status,
                    sent.reason_code,
                    sent.reason_text,
                    "answer",
                )
        return True

    async def record_bank_outcome(
        self,
        session: AsyncSession,
        payment_id: str,
        status: str,
        reason_code: str | None,
        reason_text: str | None,
        source: str,
    ) -> bool:
        """The bank's final answer about a payout, recorded once on the payment (in the
        caller's transaction); True when the payment should now be moved on. Duplicates and
        answers about payments already ended change nothing."""
        if status not in BANK_OUTCOMES:
            return False
        payment = await session.get(Payment, payment_id, with_for_update=True)
        if (
            payment is None
            or payment.type != "payout"
            or payment.bank_outcome is not None
            or payment.status not in ("processing", "in_transit")
        ):
            return False
        reason = " ".join(part for part in (reason_code, reason_text) if part) or None
        payment.bank_outcome = status
        payment.bank_reason = reason[:300] if reason else None
        payment.updated_at = utcnow()
        detail = {"reason_code": reason_code, "reason": reason, "source": source}
        await self.record_step(session, payment_id, "bank", status, None, detail)
        return True

    async def _finish_payout(self, payment: Payment, actor: str | None) -> None:
        """Post the reservation (settled) or void it (rejected, timed out)."""
        transfer_id = f"{payment.id}_reserve"
        if payment.bank_outcome == "settled":
            if await self.booking.settle_payout(payment):
                fee_ids = [f"{payment.id}_fee"] if payment.fee else []
                await self._move(
                    payment,
                    "succeeded",
                    actor,
                    "ledger",
                    "posted",
                    {"transfer_ids": [transfer_id, *fee_ids]},
                )
                return
            # The reservation ended (expired) before the bank settled: the payer has the
            # money back and the bank paid it out. Not for a machine to guess: an operator
            # settles it (the reservation timeout must outlast every bank's, checked at start).
            log.error("payout_settled_after_reservation_ended", payment_id=payment.id)
            async with self.database.transaction() as session:
                changed = await session.execute(
                    update(Payment)
                    .where(Payment.id == payment.id, Payment.bank_outcome == "settled")
                    .values(bank_outcome="unbooked", updated_at=utcnow())
                )
                if changed.rowcount:  # type: ignore[attr-defined]
                    await self.record_step(
                        session, payment.id, "ledger", "reservation_ended", actor, {}
                    )
            return
        if not await self.booking.release_payout(payment):
            log.error("payout_rejected_after_posting", payment_id=payment.id)
        rejected = payment.bank_outcome == "rejected"
        await self._move(
            payment,
            "failed",
            actor,
            "ledger",
            "voided",
            {"transfer_ids": [transfer_id]},
            failure_code="bank_rejected" if rejected else "payout_timed_out",
            failure_reason=payment.bank_reason
            or ("rejected by the bank" if rejected else "no answer from the bank in time"),
        )

    # -- the customer's code, the officer's decision -------------------------------------

    async def confirm_code(self, caller: Caller, payment_id: str, code: str) -> Payment:
        payment = await self.visible(caller, payment_id)
        if payment.status != "requires_otp" or payment.otp_id is None:
            raise errors.IllegalTransition(detail=f"the payment is {payment.status}")
        check = OneTimeCodeCheck(code=code, purpose=code_purpose(payment))
        try:
            await self.remote.identity.verify_code(payment.otp_id, check)
        except RemoteServiceError as error:
            name = error.remote_code
            if name in ("invalid_code", "purpose_mismatch"):
                async with self.database.transaction() as session:
                    await self.record_step(
                        session,
                        payment.id,
                        "otp",
                        "wrong",
                        caller.subject,
                        {"attempts_left": error.extensions.get("attempts_left")},
                    )
                raise errors.InvalidCode(
                    attempts_left=error.extensions.get("attempts_left")
                ) from None
            if name == "code_locked":
                await self._move(
                    payment,
                    "failed",
                    caller.subject,
                    "otp",
                    "locked",
                    {},
                    failure_code="otp_locked",
                    failure_reason="too many wrong codes",
                )
                return await self.get(payment_id)
            if name in ("code_expired", "code_voided"):
                await self._move(
                    payment,
                    "canceled",
                    caller.subject,
                    "otp",
                    "expired",
                    {},
                    failure_code="otp_expired",
                    failure_reason="the code expired",
                )
                return await self.get(payment_id)
            raise _remote_failure(error) from None
        await self._move(payment, "processing", caller.subject, "otp", "verified", {})
        return await self.advance(payment_id, caller.subject)

    async def resend_code(self, caller: Caller, payment_id: str) -> Payment:
        payment = await self.visible(caller, payment_id)
        if payment.status != "requires_otp":
            raise errors.IllegalTransition(detail=f"the payment is {payment.status}")
        request = OneTimeCodeCreate(
            user_id=payment.payer_id, purpose=code_purpose(payment), channel=self.otp_channel
        )
        try:
            code = await self.remote.identity.issue_code(request)
        except RemoteServiceError as error:
            if error.remote_status < 500:
                raise error from None
            raise _remote_failure(error) from None
        async with self.database.transaction() as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status == "requires_otp")
                .values(otp_id=code.id, otp_expires_at=code.expires_at, updated_at=utcnow())
            )
            await self.record_step(
                session,
                payment.id,
                "otp",
                "resent",
                caller.subject,
                {"otp_id": code.id, "channel": code.channel},
            )
        return await self.get(payment_id)

    async def case_resolved(
        self, session: AsyncSession, payment_id: str, approved: bool, actor: str | None
    ) -> bool:
        """A compliance officer's answer (risk's case events): in the consumer's transaction;
        True when the payment should now be moved on."""
        payment = await session.get(Payment, payment_id, with_for_update=True)
        if payment is None or payment.status != "under_review":
            return False
        # The row is locked (FOR UPDATE): change it in place, no second UPDATE or read.
        payment.status = "processing" if approved else "failed"
        payment.updated_at = utcnow()
        if not approved:
            payment.failure_code = "review_declined"
            payment.failure_reason = "declined by compliance"
        await self.record_step(
            session, payment_id, "review", "approved" if approved else "declined", actor, {}
        )
        if not approved:
            await self.record_event(session, payment, "failed")
        return approved

    async def expire_codes(self) -> int:
        """Payments whose code expired unanswered are canceled (nothing moved)."""
        now = utcnow()
        async with self.database.transaction() as session:
            ids = list(
                (
                    await session.execute(
                        select(Payment.id)
                        .where(Payment.status == "requires_otp", Payment.otp_expires_at < now)
                        .limit(200)
                    )
                ).scalars()
            )
        for payment_id in ids:
            payment = await self.get(payment_id)
            await self._move(
                payment,
                "canceled",
                None,
                "otp",
                "expired",
                {},
                failure_code="otp_expired",
                failure_reason="no code before it expired",
            )
        return len(ids)

    async def resume_stuck(self, older_than_seconds: float) -> int:
        """Payments left in a working state (a crash, a dependency down) are moved on."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
        async with self.database.transaction() as session:
            ids = list(
                (
                    await session.execute(
                        select(Payment.id)
                        .where(
                            or_(
                                Payment.status.in_(states.WORKING),
                                # a payout whose bank answered, the answer not yet acted on
                                and_(
                                    Payment.bank_outcome.in_(BANK_OUTCOMES),
                                    Payment.status == "in_transit",
                                ),
                            ),
                            Payment.updated_at < cutoff,
                        )
                        .order_by(Payment.updated_at)
                        .limit(100)
                    )
                ).scalars()
            )
        resumed = 0
        for payment_id in ids:
            try:
                await self.advance(payment_id, "recovery")
                resumed += 1
            except PaymeshError as error:
                log.warning("payment_resume_failed", payment_id=payment_id, code=error.code)
        return resumed

    async def visible(self, caller: Caller, payment_id: str) -> Payment:
        payment = await self.get(payment_id)
        if payment.payer_id != caller.subject and not caller.roles & {
            "ops",
            "finance",
            "admin",
            "service",
        }:
            raise errors.PaymentNotFound()
        return payment

    # -- recording -----------------------------------------------------------------------

    async def _move(
        self,
        payment: Payment,
        target: str,
        actor: str | None,
        step: str,
        outcome: str,
        detail: dict[str, Any],
        **values: Any,
    ) -> Payment | None:
        """One transition with its timeline line and event, from the state last read: the
        row as the transition wrote it, or None when someone else moved it first."""
        states.check(payment.status, target)
        async with self.database.transaction() as session:
            fresh = (
                await session.scalars(
                    update(Payment)
                    .where(Payment.id == payment.id, Payment.status == payment.status)
                    .values(status=target, updated_at=utcnow(), **values)
                    .returning(Payment)  # the row as just updated, in the same statement
                )
            ).first()
            if fresh is None:
                return None  # someone else moved it first
            await self.record_step(session, payment.id, step, outcome, actor, detail)
            await self.record_event(session, fresh, target)
        PAYMENTS.labels(payment.type, target).inc()
        if target in ("succeeded", "failed", "canceled"):  # where a payment's run ends
            elapsed = (utcnow() - payment.created_at).total_seconds()
            PAYMENT_DURATION.labels(payment.type, target).observe(max(0.0, elapsed))
        return fresh

    async def record_step(
        self,
        session: AsyncSession,
        payment_id: str,
        step: str,
        outcome: str,
        actor: str | None,
        detail: dict[str, Any],
    ) -> None:
        session.add(
            PaymentStep(
                payment_id=payment_id,
                step=step,
                outcome=outcome,
                actor=actor,
                detail=detail,
                at=utcnow(),
            )
        )
        await session.flush()

    async def record_event(self, session: AsyncSession, payment: Payment, name: str) -> None:
        if name == "processing":
            return
        data = event_data(payment)
        await self.outbox.add(session, f"payments.payment.{name}", data, payment.id)
        if name == "succeeded" and payment.type != "payout":  # a payout's payee is elsewhere
            await self.outbox.add(session, "payments.payment.received", data, payment.id)


def event_data(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.id,
        "type": payment.type,
        "status": payment.status,
        "customer_id": payment.payer_id,
        "payee_id": payment.payee_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "fee": payment.fee,
        "destination_amount": payment.destination_amount,
        "destination_currency": payment.destination_currency,
        "source_wallet_id": payment.source_wallet_id,
        "destination_wallet_id": payment.destination_wallet_id,
        "failure_code": payment.failure_code,
    } | (_payout_event_data(payment) if payment.payout else {})


def _payout_event_data(payment: Payment) -> dict[str, Any]:
    """A payout's bank and beneficiary in its events: the account masked (its last four
    characters), no name or address."""
    assert payment.payout is not None
    account = beneficiary_account(payment)
    return {
        "bank": payment.payout["bank"],
        "beneficiary": {
            "account": "****" + account[-4:],
            "country": payment.payout["beneficiary"]["country"],
        },
        "bank_reason": payment.bank_reason,
    }
