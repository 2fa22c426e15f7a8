"""Templates: rendering, the sandbox's refusals and budgets, the defaults, locale choice."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from paymesh.notifications.templating import (
    DEFAULT_TEMPLATES,
    SAMPLE_DATA,
    CompiledTemplate,
    TemplateContent,
    TemplateError,
    TemplateKey,
    choose,
    compile_template,
)


def compiled(text: str, subject: str | None = None, html: str | None = None) -> CompiledTemplate:
    return compile_template(TemplateContent(subject=subject, text=text, html=html))


def render_text(text: str, **variables: Any) -> str:
    return compiled(text).render(variables).text


class TestRender:
    def test_renders_sample_data(self) -> None:
        message = compiled(
            "Hi {{ name }}, {{ items | length }} items",
            subject="Order {{ order_id }}",
            html="<p>{{ name }}</p>",
        ).render({"name": "Ada", "items": [1, 2], "order_id": "ord_1"})
        assert message.subject == "Order ord_1"
        assert message.text == "Hi Ada, 2 items"
        assert message.html == "<p>Ada</p>"

    def test_html_is_autoescaped_but_text_and_subject_are_not(self) -> None:
        message = compiled("{{ name }}", subject="{{ name }}", html="<b>{{ name }}</b>").render(
            {"name": "<script>&"}
        )
        assert message.text == "<script>&"
        assert message.subject == "<script>&"
        assert message.html == "<b>&lt;script&gt;&amp;</b>"

    def test_subject_is_one_line(self) -> None:
        message = compiled("x", subject="Hello {{ name }}").render({"name": "a\r\nBcc: evil"})
        assert message.subject == "Hello a Bcc: evil"

    def test_undefined_variable_is_an_error(self) -> None:
        with pytest.raises(TemplateError, match="'name' is undefined"):
            render_text("Hi {{ name }}")

    def test_undefined_variable_tested_with_is_defined_is_fine(self) -> None:
        assert render_text("a{% if name is defined %}{{ name }}{% endif %}") == "a"

    def test_variables_lists_what_the_template_reads(self) -> None:
        template = compiled("{{ a }} {% for x in b %}{{ x }}{% endfor %}", subject="{{ c }}")
        assert template.variables == {"a", "b", "c"}


class TestMoneyFilter:
    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (1234, "JPY", "JPY 1234"),
            (1234, "USD", "USD 12.34"),
            (5, "USD", "USD 0.05"),
            (-1234, "USD", "USD -12.34"),
            (1234, "KWD", "KWD 1.234"),
            (0, "KWD", "KWD 0.000"),
        ],
    )
    def test_formats_per_currency_exponent(self, amount: int, currency: str, expected: str) -> None:
        assert render_text("{{ a | money(c) }}", a=amount, c=currency) == expected

    @pytest.mark.parametrize("amount", [12.34, "1234", True, None])
    def test_refuses_non_integer_amounts(self, amount: object) -> None:
        with pytest.raises(TemplateError, match="integer amount"):
            render_text("{{ a | money('USD') }}", a=amount)

    def test_refuses_unknown_currency(self) -> None:
        with pytest.raises(TemplateError, match="ISO 4217"):
            render_text("{{ 100 | money('XYZ') }}")


class TestLast4Filter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("GB33 BUKB 2020 1555 5555 81", "****5581"),
            (4111111111111111, "****1111"),
            ("1234", "****"),
            ("", "****"),
        ],
    )
    def test_masks_all_but_the_last_four(self, value: object, expected: str) -> None:
        assert render_text("{{ v | last4 }}", v=value) == expected


class TestSandbox:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__ }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ cycler.__init__.__globals__ }}",
            "{{ self.__init__.__globals__ }}",
            "{{ lipsum.__globals__ }}",
            "{{ {}.update(a=1) }}",
            "{{ 'a'.ljust(100000000) }}",
            "{{ '{:100000000}'.format(1) }}",
            "{{ '%100000000d' % 1 }}",
        ],
    )
    def test_escapes_are_refused(self, source: str) -> None:
        with pytest.raises(TemplateError):
            render_text(source)

    def test_private_attributes_are_never_called(self) -> None:
        called: list[bool] = []

        class Secret:
            def _run(self) -> str:
                called.append(True)
                return "ran"

        with pytest.raises(TemplateError, match="unsafe"):
            render_text("{{ obj._run() }}", obj=Secret())
        assert called == []

    def test_safe_reading_methods_are_allowed(self) -> None:
        text = "{{ s.upper() }} {{ d.get('k') }} "
        text += "{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %}"
        assert render_text(text, s="hi", d={"k": 1}) == "HI 1 k=1"

    @pytest.mark.parametrize(
        "source",
        [
            "{% include 'other' %}",
            "{% extends 'base' %}",
            "{% import 'macros' as m %}",
            "{% macro f() %}{{ f() }}{% endmacro %}",
            "{% for x in [1] recursive %}{{ loop(x) }}{% endfor %}",
        ],
    )
    def test_forbidden_constructs_fail_to_compile(self, source: str) -> None:
        with pytest.raises(TemplateError, match="not allowed"):
            compiled(source)

    def test_syntax_error_fails_to_compile_with_the_part_and_line(self) -> None:
        with pytest.raises(TemplateError, match=r"html \(line 2\)"):
            compiled("ok", html="<p>\n{% if %}</p>")


class TestBudgets:
    def test_huge_range_is_refused(self) -> None:
        with pytest.raises(TemplateError, match=r"range\(\) is limited"):
            render_text("{% for i in range(10**9) %}x{% endfor %}")

    def test_nested_loops_are_bounded_in_total(self) -> None:
        with pytest.raises(TemplateError, match="loops more than"):
            render_text(
                "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
            )

    def test_output_size_is_capped(self) -> None:
        with pytest.raises(TemplateError, match="output is larger"):
            render_text("{% for i in range(9000) %}{{ 'abcdefghij' }}{% endfor %}")

    def test_string_multiplication_is_capped_before_it_allocates(self) -> None:
        with pytest.raises(TemplateError, match="product is longer"):
            render_text("{{ 'a' * 10**9 }}")

    def test_repeated_concatenation_is_capped(self) -> None:
        doubling = "{% set s = s ~ s %}" * 40
        with pytest.raises(TemplateError, match="value longer"):
            render_text("{% set s = 'ab' %}" + doubling + "{{ s | length }}")

    def test_list_doubling_is_capped(self) -> None:
        doubling = "{% set l = l + l %}" * 40
        with pytest.raises(TemplateError, match="value longer"):
            render_text("{% set l = [1, 2] %}" + doubling + "{{ l | length }}")

    def test_huge_power_is_refused(self) -> None:
        with pytest.raises(TemplateError, match="power is too large"):
            render_text("{{ 10 ** 100000000 }}")

    def test_join_and_replace_are_capped(self) -> None:
        with pytest.raises(TemplateError):
            render_text("{{ range(10000) | join(s) }}", s="x" * 1000)
        with pytest.raises(TemplateError):
            render_text("{{ s | replace('', s) }}", s="x" * 1000)

    def test_self_recursion_is_an_error_not_a_crash(self) -> None:
        with pytest.raises(TemplateError, match="recurses too deeply"):
            render_text("{% block a %}x{{ self.a() }}{% endblock %}")

    def test_a_fresh_budget_per_render(self) -> None:
        template = compiled("{% for i in range(9000) %}{% endfor %}done")
        for _ in range(20):  # 180,000 iterations in all, 9,000 per render
            assert template.render({}).text == "done"


class TestDefaultTemplates:
    @pytest.mark.parametrize("key", list(DEFAULT_TEMPLATES), ids=str)
    def test_compiles_and_renders_with_sample_data(self, key: TemplateKey) -> None:
        content = DEFAULT_TEMPLATES[key]
        message = compile_template(content).render(SAMPLE_DATA[key.event_type])
        assert message.text.strip()
        assert (message.html is not None) == (key.channel == "email")
        assert (message.subject is not None) == (key.channel in ("email", "push"))
        assert "{" not in message.text

    def test_renders_amounts_with_the_currency_exponent(self) -> None:
        key = TemplateKey(event_type="wallets.hold.created", channel="push")
        message = compile_template(DEFAULT_TEMPLATES[key]).render(SAMPLE_DATA[key.event_type])
        assert "KWD 1.250" in message.text

    def test_one_time_code_reaches_the_text(self) -> None:
        for channel in ("sms", "email"):
            key = TemplateKey(event_type="identity.otp.issued", channel=channel)
            message = compile_template(DEFAULT_TEMPLATES[key]).render({"code": "123456"})
            assert "123456" in message.text

    def test_every_sample_has_a_template(self) -> None:
        assert {key.event_type for key in DEFAULT_TEMPLATES} == set(SAMPLE_DATA)


class TestTemplateModels:
    def test_content_limits(self) -> None:
        with pytest.raises(ValidationError):
            TemplateContent(text="x" * 10_001)
        with pytest.raises(ValidationError):
            TemplateContent(text="x", subject="s" * 201)
        with pytest.raises(ValidationError):
            TemplateContent.model_validate({"text": "x", "footer": "y"})

    @pytest.mark.parametrize(
        ("event_type", "channel", "locale"),
        [
            ("identity", "email", "en"),
            ("a.b", "fax", "en"),
            ("a.b", "sms", "EN"),
            ("a.b", "sms", "english!"),
        ],
    )
    def test_key_is_validated(self, event_type: str, channel: str, locale: str) -> None:
        with pytest.raises(ValidationError):
            TemplateKey.model_validate(
                {"event_type": event_type, "channel": channel, "locale": locale}
            )


def key(locale: str, channel: str = "email", event_type: str = "a.b") -> TemplateKey:
    return TemplateKey.model_validate(
        {"event_type": event_type, "channel": channel, "locale": locale}
    )


class TestChoose:
    available = [key("en"), key("fr"), key("pt-BR"), key("bn", channel="sms")]

    def test_exact_locale(self) -> None:
        assert choose("a.b", "email", "pt-BR", self.available) == key("pt-BR")

    def test_exact_locale_ignores_case(self) -> None:
        assert choose("a.b", "email", "pt-br", self.available) == key("pt-BR")

    def test_falls_back_to_language(self) -> None:
        assert choose("a.b", "email", "fr-CA", self.available) == key("fr")

    def test_falls_back_to_english(self) -> None:
        assert choose("a.b", "email", "bn", self.available) == key("en")
        assert choose("a.b", "email", None, self.available) == key("en")

    def test_only_the_channel_asked_for(self) -> None:
        assert choose("a.b", "sms", "bn-BD", self.available) == key("bn", channel="sms")
        assert choose("a.b", "push", "en", self.available) is None

    def test_none_for_other_events(self) -> None:
        assert choose("c.d", "email", "en", self.available) is None
