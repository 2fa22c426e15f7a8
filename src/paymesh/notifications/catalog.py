"""Templates as data: versions per (event type, channel, locale), the newest one current.

Every process reads the current versions from the database (an update applies to the next
message everywhere) and keeps compiled templates by (id, version), which never change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.db import Database, utcnow
from paymesh.kernel.ids import new_id
from paymesh.notifications import errors
from paymesh.notifications.models import Template
from paymesh.notifications.templating import (
    DEFAULT_TEMPLATES,
    SAMPLE_DATA,
    CompiledTemplate,
    TemplateContent,
    TemplateError,
    TemplateKey,
    compile_template,
)

COMPILED_KEPT = 512


def content_of(row: Template) -> TemplateContent:
    return TemplateContent(subject=row.subject, text=row.text, html=row.html)


def key_of(row: Template) -> TemplateKey:
    return TemplateKey(event_type=row.event_type, channel=row.channel, locale=row.locale)


def checked(content: TemplateContent, event_type: str | None = None) -> CompiledTemplate:
    """Compile, and render with the event type's sample data where there is one, or answer
    422 invalid_template with the template's own error: what would fail at send time is
    refused when written."""
    try:
        compiled = compile_template(content)
        if event_type in SAMPLE_DATA:
            compiled.render(SAMPLE_DATA[event_type])
    except TemplateError as error:
        raise errors.InvalidTemplate(str(error)) from None
    return compiled


class Catalog:
    def __init__(self) -> None:
        self._compiled: OrderedDict[tuple[str, int], CompiledTemplate] = OrderedDict()

    def compiled(self, row: Template) -> CompiledTemplate:
        key = (row.id, row.version)
        template = self._compiled.get(key)
        if template is None:
            template = compile_template(content_of(row))
            self._compiled[key] = template
            if len(self._compiled) > COMPILED_KEPT:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return template

    async def install_defaults(self, database: Database) -> int:
        """Version 1 of every built-in template whose key has no template yet."""
        async with database.transaction() as session:
            existing = {
                (row.event_type, row.channel, row.locale)
                for row in (
                    await session.execute(
                        select(Template.event_type, Template.channel, Template.locale)
                    )
                ).all()
            }
            added = 0
            for key, content in DEFAULT_TEMPLATES.items():
                if (key.event_type, key.channel, key.locale) in existing:
                    continue
                session.add(_row(new_id("ntt"), 1, key, content, "paymesh"))
                added += 1
            return added

    async def current_for(self, session: AsyncSession, event_type: str) -> list[Template]:
        """The newest version of every template of an event type (all channels, locales)."""
        newest = (
            select(Template.id, func.max(Template.version).label("version"))
            .where(Template.event_type == event_type)
            .group_by(Template.id)
            .subquery()
        )
        rows = await session.execute(
            select(Template).join(
                newest, (Template.id == newest.c.id) & (Template.version == newest.c.version)
            )
        )
        return list(rows.scalars())

    async def current(
        self,
        session: AsyncSession,
        *,
        event_type: str | None = None,
        channel: str | None = None,
        locale: str | None = None,
    ) -> list[Template]:
        newest = (
            select(Template.id, func.max(Template.version).label("version"))
            .group_by(Template.id)
            .subquery()
        )
        query = select(Template).join(
            newest, (Template.id == newest.c.id) & (Template.version == newest.c.version)
        )
        if event_type is not None:
            query = query.where(Template.event_type == event_type)
        if channel is not None:
            query = query.where(Template.channel == channel)
        if locale is not None:
            query = query.where(Template.locale == locale)
        rows = await session.execute(
            query.order_by(Template.event_type, Template.channel, Template.locale)
        )
        return list(rows.scalars())

    async def versions(self, session: AsyncSession, template_id: str) -> Sequence[Template]:
        rows = await session.execute(
            select(Template).where(Template.id == template_id).order_by(Template.version.desc())
        )
        found = list(rows.scalars())
        if not found:
            raise errors.TemplateNotFound()
        return found

    async def create(
        self, session: AsyncSession, key: TemplateKey, content: TemplateContent, author: str
    ) -> Template:
        checked(content, key.event_type)
        taken = await session.scalar(
            select(Template.id)
            .where(
                Template.event_type == key.event_type,
                Template.channel == key.channel,
                Template.locale == key.locale,
            )
            .limit(1)
        )
        if taken is not None:
            raise errors.TemplateExists(template_id=taken)
        row = _row(new_id("ntt"), 1, key, content, author)
        session.add(row)
        await session.flush()
        return row

    async def update(
        self, session: AsyncSession, template_id: str, content: TemplateContent, author: str
    ) -> Template:
        """Add the next version. Two concurrent updates cannot both take the same number:
        the (event type, channel, locale, version) key refuses the second insert."""
        latest = (await self.versions(session, template_id))[0]
        checked(content, latest.event_type)
        row = _row(template_id, latest.version + 1, key_of(latest), content, author)
        session.add(row)
        await session.flush()
        return row


def _row(
    template_id: str, version: int, key: TemplateKey, content: TemplateContent, author: str
) -> Template:
    return Template(
        id=template_id,
        version=version,
        event_type=key.event_type,
        channel=key.channel,
        locale=key.locale,
        subject=content.subject,
        text=content.text,
        html=content.html,
        created_at=utcnow(),
        created_by=author,
    )
