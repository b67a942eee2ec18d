"""Channels, canned answers and knowledge-base articles of a tenant (teams: services/routing.py).

The UI and the API both change these only through here, so both leave the same
audit events (channels carry traffic and secrets, so every change to one is recorded).
"""

from __future__ import annotations

import datetime as dt
import secrets

from appliance.web.access import shared_down, shared_from_ancestors
from appliance.web.channels.config import installation_settings
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import CHANNEL_KINDS, Article, CannedAnswer, Channel, Team
from appliance.web.models.tenancy import Tenant
from appliance.web.services import Conflict, ServiceError, canned_text


def _text(value, name, limit, required=True):
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ServiceError(f"{name} is required and must be text.", 422)
    if len(value) > limit:
        raise ServiceError(f"{name} is limited to {limit} characters.", 422)
    return value.strip()


def create_channel(tenant: Tenant, *, kind, name, shared=False, team_id=None, actor_id=None) -> Channel:
    from appliance.web.services import licence

    if kind not in CHANNEL_KINDS:
        raise ServiceError(f"kind must be one of: {', '.join(CHANNEL_KINDS)}.", 422)
    licence.require_program_for_channel(tenant, kind)  # the licence decides which kinds may run
    _require_team(tenant, team_id)
    channel = Channel.create(tenant=tenant, kind=kind, name=_text(name, "name", 80),
                             shared=bool(shared), team=team_id)
    record("channel.create", actor_id=actor_id, tenant_id=tenant.id, target=f"channel:{channel.id}", kind=kind)
    return channel


# Kinds whose channel secret signs traffic: webhook deliveries both ways, and the identity
# tokens a customer's site gives its logged-in web-chat visitors (services/visitors.py).
SIGNED_KINDS = ("webhook", "webchat")


def signing_secret_hint(channel: Channel) -> str:
    """What the channels page shows of a secret after it was handed out: its last four characters."""
    return "…" + (channel.secret or "")[-4:]


def secret_grace() -> dt.timedelta:
    """How long a rotated-out signing secret still verifies (``channels.secret_grace_hours``)."""
    return dt.timedelta(hours=float(installation_settings()["secret_grace_hours"]))


def rotate_secret(channel: Channel, actor_id=None, keep_previous: bool = True) -> dict:
    """A new signing secret for ``channel``, returned once (the caller shows it, nothing else does).

    With ``keep_previous`` the secret it replaces still verifies for the grace period, so the
    sender can switch without losing deliveries; without (a leaked secret) it stops at once.
    Only the one secret it replaces is kept: rotating again within the grace drops the older.
    Returns ``{"signing_secret", "previous_valid_until"}`` (None: the old one stopped).
    """
    if channel.kind not in SIGNED_KINDS:
        raise ServiceError(f"A {channel.kind} channel has no signing secret of its own "
                           f"(only {', '.join(SIGNED_KINDS)} channels do).", 409)
    grace = secret_grace() if keep_previous else dt.timedelta(0)
    secret = secrets.token_urlsafe(24)
    until = utcnow() + grace if grace else None
    channel.previous_secret = channel.secret if until else None
    channel.previous_secret_until = until
    channel.previous_secret_used_at = None
    channel.secret = secret
    channel.save(only=[Channel.secret, Channel.previous_secret, Channel.previous_secret_until,
                       Channel.previous_secret_used_at])
    record("channel.rotate_secret", actor_id=actor_id, tenant_id=channel.tenant_id, target=f"channel:{channel.id}",
           previous_valid_until=_stamp(until))
    return {"signing_secret": secret, "previous_valid_until": _stamp(until)}


def _stamp(value):
    return value.isoformat(timespec="seconds") + "Z" if value else None


# A sender still signing with the rotated-out secret is audited at most this often per channel
# (each delivery would flood the trail); the channels page shows the latest use.
PREVIOUS_USE_STEP = dt.timedelta(hours=1)


def previous_secret_used(channel: Channel) -> None:
    """Note (and audit) a delivery or identity token signed with the rotated-out secret."""
    now = utcnow()
    last = channel.previous_secret_used_at
    if last is not None and now - last < PREVIOUS_USE_STEP:
        return
    # Conditional, so several app hosts receiving at once write one audit event between them.
    stale = Channel.previous_secret_used_at.is_null() | (Channel.previous_secret_used_at <= now - PREVIOUS_USE_STEP)
    if Channel.update(previous_secret_used_at=now).where(Channel.id == channel.id, stale).execute():
        channel.previous_secret_used_at = now
        record("channel.previous_secret_used", tenant_id=channel.tenant_id, target=f"channel:{channel.id}",
               valid_until=_stamp(channel.previous_secret_until))


def update_channel(channel: Channel, *, name=None, shared=None, is_active=None, team_id=..., actor_id=None):
    if name is not None:
        channel.name = _text(name, "name", 80)
    if shared is not None:
        channel.shared = bool(shared)
    if is_active is not None:
        channel.is_active = bool(is_active)
    if team_id is not ...:
        _require_team(Tenant.get_by_id(channel.tenant_id), team_id)
        channel.team = team_id
    channel.save()
    record("channel.update", actor_id=actor_id, tenant_id=channel.tenant_id, target=f"channel:{channel.id}")
    return channel


def _require_team(tenant: Tenant, team_id):
    if team_id is not None and not Team.select().where(Team.id == team_id, Team.tenant == tenant.id).exists():
        raise ServiceError("That team does not belong to this tenant.", 422)


def _canned_body(body):
    body = _text(body, "body", 5000)
    unknown = canned_text.unknown_names(body)
    if unknown:
        raise ServiceError(f"body: unknown variable {', '.join('{{' + n + '}}' for n in unknown)}; known: "
                           f"{', '.join('{{' + n + '}}' for n in canned_text.NAMES)}.", 422)
    return body


def create_canned(tenant: Tenant, *, shortcut, title, body, shared=False, actor_id=None) -> CannedAnswer:
    shortcut = _text(shortcut, "shortcut", 40)
    if CannedAnswer.select().where(CannedAnswer.tenant == tenant.id, CannedAnswer.shortcut == shortcut).exists():
        raise Conflict("A canned answer with that shortcut exists already.")
    canned = CannedAnswer.create(tenant=tenant, shortcut=shortcut, title=_text(title, "title", 120),
                                 body=_canned_body(body), shared=bool(shared))
    record("canned.create", actor_id=actor_id, tenant_id=tenant.id, target=f"canned:{canned.id}")
    return canned


def update_canned(canned: CannedAnswer, *, shortcut=None, title=None, body=None, shared=None,
                  actor_id=None) -> CannedAnswer:
    if shortcut is not None:
        shortcut = _text(shortcut, "shortcut", 40)
        taken = CannedAnswer.select().where(CannedAnswer.tenant == canned.tenant_id, CannedAnswer.shortcut == shortcut,
                                            CannedAnswer.id != canned.id).exists()
        if taken:
            raise Conflict("A canned answer with that shortcut exists already.")
        canned.shortcut = shortcut
    if title is not None:
        canned.title = _text(title, "title", 120)
    if body is not None:
        canned.body = _canned_body(body)
    if shared is not None:
        canned.shared = bool(shared)
    canned.save()
    record("canned.update", actor_id=actor_id, tenant_id=canned.tenant_id, target=f"canned:{canned.id}")
    return canned


def delete_canned(canned: CannedAnswer, actor_id=None) -> None:
    canned.delete_instance()
    record("canned.delete", actor_id=actor_id, tenant_id=canned.tenant_id, target=f"canned:{canned.id}")


def usable_canned(tenant: Tenant) -> list[CannedAnswer]:
    """The tenant's own canned answers, then those its ancestors share down (an own shortcut
    hides an inherited one of the same name)."""
    own = list(CannedAnswer.select().where(CannedAnswer.tenant == tenant.id).order_by(CannedAnswer.shortcut))
    taken = {c.shortcut for c in own}
    inherited = [c for c in shared_from_ancestors(CannedAnswer, tenant).order_by(CannedAnswer.shortcut)
                 if c.shortcut not in taken]
    return own + inherited


def _category(value):
    return _text(value or "", "category", 60, required=False) or ""


def create_article(tenant: Tenant, *, title, body, shared=False, published=True, category="",
                   actor_id=None) -> Article:
    article = Article.create(tenant=tenant, title=_text(title, "title", 200), body=_text(body, "body", 50_000),
                             shared=bool(shared), published=bool(published), category=_category(category))
    record("article.create", actor_id=actor_id, tenant_id=tenant.id, target=f"article:{article.id}")
    return article


def update_article(article: Article, *, title=None, body=None, shared=None, published=None, category=None,
                   actor_id=None) -> Article:
    if title is not None:
        article.title = _text(title, "title", 200)
    if body is not None:
        article.body = _text(body, "body", 50_000)
    if shared is not None:
        article.shared = bool(shared)
    if published is not None:
        article.published = bool(published)
    if category is not None:
        article.category = _category(category)
    article.updated_at = utcnow()
    article.save()
    record("article.update", actor_id=actor_id, tenant_id=article.tenant_id, target=f"article:{article.id}")
    return article


def delete_article(article: Article, actor_id=None) -> None:
    article.delete_instance()
    record("article.delete", actor_id=actor_id, tenant_id=article.tenant_id, target=f"article:{article.id}")


# Articles are plain text at rest (not personal data), so search is SQL over title and
# body; the LIKE narrows, the casefolded comparison decides (LIKE's wildcards and case
# rules differ between the engines).
SEARCH_LIMIT = 200


def visible_articles(tenant: Tenant, *, drafts: bool, query: str | None = None, category: str | None = None):
    """Articles readers in ``tenant`` see: its own (drafts too when ``drafts``) and the
    published ones its ancestors share down; optionally matching ``query`` and ``category``."""
    own = Article.tenant == tenant.id
    if not drafts:
        own &= Article.published == True
    condition = own | (shared_down(Article, tenant) & (Article.published == True))
    if category is not None:
        condition &= Article.category == category
    needle = (query or "").strip()
    if needle:
        if len(needle) > 200:
            raise ServiceError("q (the search text) is limited to 200 characters.", 422)
        condition &= Article.title.contains(needle) | Article.body.contains(needle)
    rows = Article.select(Article, Tenant).join(Tenant).where(condition).order_by(Article.category, Article.title)
    if not needle:
        return list(rows.limit(SEARCH_LIMIT * 5))
    folded = needle.casefold()
    return [a for a in rows.limit(SEARCH_LIMIT * 5)
            if folded in a.title.casefold() or folded in a.body.casefold()][:SEARCH_LIMIT]


def categories(tenant: Tenant) -> list[str]:
    rows = Article.select(Article.category).where(
        (Article.tenant == tenant.id) | shared_down(Article, tenant), Article.category != "").distinct()
    return sorted({r.category for r in rows})
