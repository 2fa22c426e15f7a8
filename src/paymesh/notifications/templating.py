"""Notification templates as data, rendered in Jinja2's immutable sandbox.

Templates are written by operators through the API, so they are treated as untrusted code:
the sandbox refuses private attributes and every method call except a few string and
mapping readers, undefined variables are errors (a message that says "Hello ," is worse
than no message), and a render has budgets — loop iterations, the size of any string or
list it builds, wall-clock time, output size — so `{% for i in range(10**9) %}` or
`{% set s = s ~ s %}` repeated forty times fails fast instead of taking the worker down.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from jinja2 import StrictUndefined, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from pydantic import BaseModel, ConfigDict, Field

from paymesh.kernel.money import UnknownCurrency, get_currency

Channel = Literal["email", "sms", "push"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push")
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
DEFAULT_LOCALE = "en"

MAX_OUTPUT_BYTES = 64 * 1024  # per rendered part (subject, text, html)
MAX_VALUE_LENGTH = 64 * 1024  # any string or list a template builds
MAX_RANGE = 10_000  # one range() call
MAX_LOOP_ITERATIONS = 100_000  # all loops of one render together
MAX_RENDER_SECONDS = 1.0
MAX_SUBJECT_LENGTH = 200

# Read-only methods a template may call; everything else callable is refused.
SAFE_STRING_METHODS = frozenset(
    {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip"}
    | {"startswith", "endswith", "isdigit", "isalpha"}
)
SAFE_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
SAFE_FILTERS = frozenset(
    {"abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int"}
    | {"last", "length", "lower", "list", "max", "min", "round", "safe", "sort", "string"}
    | {"sum", "title", "trim", "truncate", "upper", "urlencode", "dictsort", "unique"}
)


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered: syntax error, forbidden construct,
    undefined variable, a budget exceeded. The message is safe to show to operators."""


class TemplateContent(BaseModel):
    """One template's source: what operators write through the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str | None = Field(
        default=None, max_length=200, description="Email subject or push title."
    )
    text: str = Field(max_length=10_000, description="Plain text body (SMS, push, email).")
    html: str | None = Field(
        default=None, max_length=50_000, description="HTML body of an email; autoescaped."
    )


class TemplateKey(BaseModel):
    """Which template: per event type, channel and locale (BCP 47 short, e.g. `pt-BR`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=200)
    channel: Channel
    locale: str = Field(default=DEFAULT_LOCALE, pattern=LOCALE_PATTERN, max_length=35)


class RenderedMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str | None
    text: str
    html: str | None


# -- budgets -------------------------------------------------------------------------------


@dataclass
class _Budget:
    deadline: float
    iterations: int = field(default=0)

    def spend(self, iterations: int = 1) -> None:
        self.iterations += iterations
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise SecurityError(f"the template loops more than {MAX_LOOP_ITERATIONS} times")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the template took longer than {MAX_RENDER_SECONDS}s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "paymesh_template_budget", default=None
)


def _current_budget() -> _Budget:
    budget = _budget.get()
    if budget is None:  # only CompiledTemplate.render sets one up
        raise SecurityError("templates render only through CompiledTemplate.render")
    return budget


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_LENGTH:
        raise SecurityError(f"the template built a value longer than {MAX_VALUE_LENGTH}")
    return value


def _guarded_iteration(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _current_budget()
    for item in iterable:
        budget.spend()
        yield item


def _guarded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return numbers


# -- filters -------------------------------------------------------------------------------


def money(amount_minor: Any, currency: Any) -> str:
    """`{{ amount | money(currency) }}`: integer minor units -> `USD 12.34`, `JPY 1500`."""
    if type(amount_minor) is not int:
        raise SecurityError("money expects an integer amount in minor units")
    try:
        exponent = get_currency(str(currency)).exponent
    except UnknownCurrency:
        raise SecurityError(f"money: {currency!r} is not an ISO 4217 currency") from None
    major = Decimal(amount_minor).scaleb(-exponent)
    return f"{currency} {major:.{exponent}f}"


def last4(value: Any) -> str:
    """`{{ iban | last4 }}` -> `****6789`; a value of four characters or fewer is all mask."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise SecurityError("last4 expects a string or an integer")
    compact = "".join(str(value).split())
    return "****" + compact[-4:] if len(compact) > 4 else "****"


def _join(value: Iterable[Any], separator: str = "") -> str:
    return str(_check_size(separator.join(str(_check_size(item)) for item in value)))


def _replace(value: str, old: str, new: str, count: int | None = None) -> str:
    occurrences = value.count(old) if old else len(value) + 1
    if count is not None:
        occurrences = min(occurrences, count)
    if len(value) + occurrences * len(new) > MAX_VALUE_LENGTH:
        raise SecurityError(f"replace would build a value longer than {MAX_VALUE_LENGTH}")
    return value.replace(old, new, -1 if count is None else count)


# -- the environment -----------------------------------------------------------------------

_FORBIDDEN_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Macro,
    nodes.CallBlock,
)


class _Guard(NodeTransformer):
    """Routes every loop through the iteration budget and every concatenation (`~`)
    through the size check, and refuses constructs notification templates do not need."""

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        if isinstance(node, _FORBIDDEN_NODES):
            raise TemplateError(f"{type(node).__name__.lower()} is not allowed in templates")
        return super().generic_visit(node, *args, **kwargs)

    # The visitor dispatches on Jinja's node class names.
    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        if node.recursive:
            raise TemplateError("recursive loops are not allowed in templates")
        self.generic_visit(node)  # transforms the children in place
        node.iter = _call_guard("paymesh_loop_guard", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return _call_guard("paymesh_size_guard", node)


def _call_guard(name: str, argument: nodes.Node) -> nodes.Call:
    return nodes.Call(
        nodes.EnvironmentAttribute(name, lineno=argument.lineno),
        [argument],
        [],
        None,
        None,
        lineno=argument.lineno,
    )


class _SandboxedEnvironment(ImmutableSandboxedEnvironment):
    # Intercepted so the sandbox checks them (and never constant-folds `'a' * 10**9` while
    # compiling): `*` and `+` can build huge strings and lists, `**` huge integers, and
    # `%` on a string is printf formatting with an unbounded width.
    intercepted_binops = frozenset({"*", "+", "**", "%"})
    paymesh_loop_guard = staticmethod(_guarded_iteration)
    paymesh_size_guard = staticmethod(_check_size)

    def __init__(self, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, auto_reload=False)
        self.globals = {"range": _guarded_range}
        self.filters = {name: FILTERS[name] for name in SAFE_FILTERS}
        self.filters.update(money=money, last4=last4, join=_join, replace=_replace)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        return _Guard().visit(tree)  # type: ignore[no-any-return]

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value):
            return True
        if isinstance(obj, str):
            return attr in SAFE_STRING_METHODS
        return isinstance(obj, Mapping) and attr in SAFE_MAPPING_METHODS

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("printf-style formatting is not allowed; use filters")
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("the power is too large")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_VALUE_LENGTH
                ):
                    raise SecurityError(f"the product is longer than {MAX_VALUE_LENGTH}")
        return _check_size(super().call_binop(context, operator, left, right))


def _too_big_power(base: Any, exponent: Any) -> bool:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        return abs(base) > 1 and abs(base).bit_length() * exponent > 4096
    return False


_PLAIN = _SandboxedEnvironment(autoescape=False)
_HTML = _SandboxedEnvironment(autoescape=True)


# -- compile and render --------------------------------------------------------------------

_Renderer = Callable[[Mapping[str, Any]], Iterator[str]]


def _compile_part(environment: _SandboxedEnvironment, source: str, part: str) -> Any:
    try:
        return environment.from_string(source)
    except TemplateError as error:
        raise TemplateError(f"{part}: {error}") from None
    except JinjaTemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateError(f"{part}{where}: {error.message or type(error).__name__}") from None


@dataclass(frozen=True)
class CompiledTemplate:
    """A template ready to render many times; compile once per template version."""

    content: TemplateContent
    _parts: dict[str, Any]
    variables: frozenset[str]  # the names the template reads: for previews and checks

    def render(self, variables: Mapping[str, Any]) -> RenderedMessage:
        """Render with the event's data; raises TemplateError, never anything else."""
        token = _budget.set(_Budget(deadline=time.monotonic() + MAX_RENDER_SECONDS))
        try:
            rendered = {
                part: _render_part(template, variables, part)
                for part, template in self._parts.items()
            }
        finally:
            _budget.reset(token)
        subject = rendered.get("subject")
        if subject is not None:
            # A header must be one line; a push title too.
            subject = " ".join(subject.split())[:MAX_SUBJECT_LENGTH]
        return RenderedMessage(subject=subject, text=rendered["text"], html=rendered.get("html"))


def _render_part(template: Any, variables: Mapping[str, Any], part: str) -> str:
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(dict(variables)):
            size += len(chunk.encode())
            if size > MAX_OUTPUT_BYTES:
                raise SecurityError(f"the output is larger than {MAX_OUTPUT_BYTES} bytes")
            chunks.append(chunk)
    except RecursionError:
        raise TemplateError(f"{part}: the template recurses too deeply") from None
    except JinjaTemplateError as error:
        raise TemplateError(f"{part}: {error.message or type(error).__name__}") from None
    except Exception as error:  # any failure inside a template is the template's fault
        raise TemplateError(f"{part}: {type(error).__name__}: {error}") from None
    return "".join(chunks)


def compile_template(content: TemplateContent) -> CompiledTemplate:
    """Compile all parts of a template; raises TemplateError for syntax errors and
    forbidden constructs (include, import, extends, macros, recursive loops)."""
    sources = {"subject": content.subject, "text": content.text, "html": content.html}
    parts: dict[str, Any] = {}
    names: set[str] = set()
    for part, source in sources.items():
        if source is None:
            continue
        environment = _HTML if part == "html" else _PLAIN
        parts[part] = _compile_part(environment, source, part)
        names |= find_undeclared_variables(environment.parse(source))
    return CompiledTemplate(content, parts, frozenset(names - set(_PLAIN.globals)))


# -- choosing a template -------------------------------------------------------------------


def choose(
    event_type: str, channel: str, preferred_locale: str | None, available: Collection[TemplateKey]
) -> TemplateKey | None:
    """The template for the recipient's locale, else its language (`pt-BR` -> `pt`), else
    English; None when the event has no template for the channel at all."""
    candidates = {
        key.locale.lower(): key
        for key in available
        if key.event_type == event_type and key.channel == channel
    }
    wanted = (preferred_locale or DEFAULT_LOCALE).lower()
    for locale in (wanted, wanted.split("-", 1)[0], DEFAULT_LOCALE):
        if locale in candidates:
            return candidates[locale]
    return None


# -- defaults ------------------------------------------------------------------------------
# Variable names follow the events' data as emitted today where it exists (see SAMPLE_DATA);
# names marked "assumed" in SAMPLE_DATA are guesses for events not written yet, and the
# templates test them with `is defined` so a missing one does not stop the message.

_SIGNATURE = "\n\n— Paymesh"
_SECURITY_FOOTER = "If this was not you, contact support immediately."


def _email(subject: str, text: str) -> TemplateContent:
    paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n\n"))
    return TemplateContent(subject=subject, text=text + _SIGNATURE, html=paragraphs)


def _push(title: str, text: str) -> TemplateContent:
    return TemplateContent(subject=title, text=text)


def _sms(text: str) -> TemplateContent:
    return TemplateContent(text=text)


_MONEY = "{{ amount | money(currency) }}"
_PAID = "{% if merchant_name is defined %} to {{ merchant_name }}{% endif %}"
_OTP_EXPIRY = (
    "{% if expires_in_minutes is defined %} It expires in {{ expires_in_minutes }} minutes."
    "{% endif %}"
)
_SIGNED_OUT = "{% if refresh_tokens_revoked %} We signed you out of your other sessions.{% endif %}"
_KYC_REASONS = "{% if reasons %} Reasons: {{ reasons | join(', ') }}.{% endif %}"

_DEFAULT_SOURCES: dict[tuple[str, Channel], TemplateContent] = {
    ("identity.user.registered", "email"): _email(
        "Welcome to Paymesh",
        "Welcome to Paymesh! Your account is ready.\n\nVerify your identity to raise your limits.",
    ),
    ("identity.user.password_changed", "email"): _email(
        "Your password was changed",
        f"Your Paymesh password was just changed.{_SIGNED_OUT}\n\n{_SECURITY_FOOTER}",
    ),
    ("identity.user.password_changed", "sms"): _sms(
        f"Paymesh: your password was changed. {_SECURITY_FOOTER}"
    ),
    ("identity.user.totp_enabled", "email"): _email(
        "Two-step verification is on",
        "Two-step verification with an authenticator app is now on for your account.\n\n"
        + _SECURITY_FOOTER,
    ),
    ("identity.otp.issued", "sms"): _sms(
        f"Your Paymesh code is {{{{ code }}}}.{_OTP_EXPIRY} Never share it with anyone."
    ),
    ("identity.otp.issued", "email"): _email(
        "Your Paymesh code: {{ code }}",
        f"Your one-time code is {{{{ code }}}}.{_OTP_EXPIRY}\n\n"
        "Paymesh will never ask you for this code. Never share it with anyone.",
    ),
    ("profiles.kyc.verified", "email"): _email(
        "Your identity is verified",
        "Your identity is verified"
        "{% if level is defined %} (level: {{ level }}){% endif %}. Your new limits apply now.",
    ),
    ("profiles.kyc.rejected", "email"): _email(
        "We could not verify your identity",
        f"We could not verify your identity.{_KYC_REASONS}\n\n"
        "You can submit your documents again from the app.",
    ),
    ("wallets.deposit.completed", "email"): _email(
        f"{_MONEY} deposited", f"{_MONEY} was deposited into your wallet {{{{ wallet_id }}}}."
    ),
    ("wallets.deposit.completed", "push"): _push("Deposit received", f"{_MONEY} deposited."),
    ("wallets.withdrawal.completed", "email"): _email(
        f"{_MONEY} withdrawn", f"{_MONEY} was withdrawn from your wallet {{{{ wallet_id }}}}."
    ),
    ("wallets.withdrawal.completed", "push"): _push("Withdrawal sent", f"{_MONEY} withdrawn."),
    ("wallets.hold.created", "push"): _push(
        "Funds on hold",
        f"{_MONEY} is on hold in your wallet{{% if expires_at %}} until {{{{ expires_at }}}}"
        "{% endif %}.",
    ),
    ("payments.payment.succeeded", "email"): _email(
        "Payment confirmed", f"Your payment of {_MONEY}{_PAID} went through."
    ),
    ("payments.payment.succeeded", "push"): _push("Payment confirmed", f"{_MONEY}{_PAID} paid."),
    ("payments.payment.received", "email"): _email(
        "Money received",
        "{{ destination_amount | money(destination_currency) }} arrived in your wallet.",
    ),
    ("payments.payment.received", "push"): _push(
        "Money received", "{{ destination_amount | money(destination_currency) }} arrived."
    ),
    ("payments.payment.failed", "email"): _email(
        "Payment not made",
        f"Your payment of {_MONEY} did not go through"
        "{% if failure_code %} ({{ failure_code | replace('_', ' ') }}){% endif %}. "
        "Nothing was taken from your wallet.",
    ),
}

DEFAULT_TEMPLATES: dict[TemplateKey, TemplateContent] = {
    TemplateKey(event_type=event_type, channel=channel, locale=DEFAULT_LOCALE): content
    for (event_type, channel), content in _DEFAULT_SOURCES.items()
}

# Sample event data per event type: what the preview endpoint renders by default, and what
# the tests render every default template with. Keys marked "assumed" do not exist in any
# event yet.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "identity.user.registered": {"user_id": "usr_01JD0000000000000000000000", "roles": []},
    "identity.user.password_changed": {
        "user_id": "usr_01JD0000000000000000000000",
        "refresh_tokens_revoked": 2,
    },
    "identity.user.totp_enabled": {"user_id": "usr_01JD0000000000000000000000"},
    "identity.otp.issued": {  # the whole event is assumed
        "user_id": "usr_01JD0000000000000000000000",
        "code": "482913",
        "expires_in_minutes": 10,
    },
    "profiles.kyc.verified": {
        "user_id": "usr_01JD0000000000000000000000",
        "submission_id": "kys_01JD0000000000000000000000",
        "level": "standard",
    },
    "profiles.kyc.rejected": {
        "user_id": "usr_01JD0000000000000000000000",
        "submission_id": "kys_01JD0000000000000000000000",
        "reasons": ["document_expired"],
    },
    "wallets.deposit.completed": {
        "id": "txf_01JD0000000000000000000000",
        "wallet_id": "wal_01JD0000000000000000000000",
        "owner_id": "usr_01JD0000000000000000000000",  # assumed: not in the event today
        "kind": "deposit",
        "amount": 1234,
        "currency": "USD",
        "status": "completed",
    },
    "wallets.withdrawal.completed": {
        "id": "txf_01JD0000000000000000000000",
        "wallet_id": "wal_01JD0000000000000000000000",
        "owner_id": "usr_01JD0000000000000000000000",  # assumed: not in the event today
        "kind": "withdrawal",
        "amount": 1500,
        "currency": "JPY",
        "status": "completed",
    },
    "wallets.hold.created": {
        "id": "txf_01JD0000000000000000000000",
        "wallet_id": "wal_01JD0000000000000000000000",
        "owner_id": "usr_01JD0000000000000000000000",  # assumed: not in the event today
        "amount": 1250,
        "currency": "KWD",
        "captured_amount": 0,
        "status": "active",
        "expires_at": "2026-01-31T12:00:00Z",
    },
    "payments.payment.succeeded": {
        "payment_id": "pay_01JD0000000000000000000000",
        "customer_id": "usr_01JD0000000000000000000000",
        "payee_id": "usr_01JD0000000000000000000001",
        "amount": 4200,
        "currency": "EUR",
        "destination_amount": 4200,
        "destination_currency": "EUR",
        "merchant_name": "Corner Café",  # assumed: merchant checkout is not written yet
    },
    "payments.payment.received": {
        "payment_id": "pay_01JD0000000000000000000000",
        "customer_id": "usr_01JD0000000000000000000000",
        "payee_id": "usr_01JD0000000000000000000001",
        "amount": 10000,
        "currency": "USD",
        "destination_amount": 8906,
        "destination_currency": "EUR",
    },
    "payments.payment.failed": {
        "payment_id": "pay_01JD0000000000000000000000",
        "customer_id": "usr_01JD0000000000000000000000",
        "amount": 4200,
        "currency": "EUR",
        "failure_code": "insufficient_funds",
    },
}
