"""The provider's home: the installation at a glance, for the page and the API alike.

Every figure comes from a small, indexed read: tenants and seats are the licence's own
counts, conversations per day are the report rows the worker keeps (``reports.py``: a
range of day rows, never a scan of conversations), channel problems are the channels'
last errors and the replies that failed for good in the last day, and the worker and
sync lines are the System page's checks.
"""

from __future__ import annotations

import datetime as dt

from flask import current_app
from peewee import fn

from appliance.core.calendar import today, zone
from appliance.web.export import stacked_bars_svg
from appliance.web.models.base import utcnow
from appliance.web.models.channels import FAILED, ChannelConfig, OutboxMessage
from appliance.web.models.contact_center import Channel
from appliance.web.models.tenancy import ACCOUNT, PROVIDER, SUBACCOUNT, Tenant
from appliance.web.services import licence, reports
from appliance.web.system_status import worker_and_sync

DAYS = 14  # the chart's days, today included
FAILED_WINDOW = dt.timedelta(hours=24)
ERRORS_SHOWN = 20


def _tenants() -> dict:
    counts = {level: {True: 0, False: 0} for level in (ACCOUNT, SUBACCOUNT)}
    for level, active, n in (Tenant.select(Tenant.level, Tenant.is_active, fn.COUNT(Tenant.id))
                             .where(Tenant.level != PROVIDER).group_by(Tenant.level, Tenant.is_active).tuples()):
        counts.setdefault(level, {True: 0, False: 0})[bool(active)] += n
    return {"accounts": counts[ACCOUNT][True], "subaccounts": counts[SUBACCOUNT][True],
            "inactive": sum(c[False] for c in counts.values())}


def _licence() -> dict:
    state = licence.current_state()
    use = licence.usage()
    return {"status": state.status, "title": state.title, "days_left": state.days_left,
            "tenants_used": use["tenants"], "tenants_allowed": state.limits.max_tenants,
            "seats_used": use["seats"], "seats_allowed": state.limits.max_seats}


def _conversations(provider: Tenant, tz) -> dict:
    last = today(tz)
    report = reports.build(provider, last - dt.timedelta(days=DAYS - 1), last + dt.timedelta(days=1))
    series = [{"day": row["period"], "opened": row["opened"], "resolved": row["resolved"]}
              for row in report["series"]]
    now = series[-1] if series else {"opened": 0, "resolved": 0}
    return {"today_opened": now["opened"], "today_resolved": now["resolved"], "series": series}


def _channels() -> dict:
    failing = (ChannelConfig.select(ChannelConfig, Channel, Tenant)
               .join(Channel).join(Tenant)
               .where(ChannelConfig.last_error.is_null(False))
               .order_by(ChannelConfig.last_error_at.desc()))
    failed = dict(OutboxMessage.select(OutboxMessage.channel, fn.COUNT(OutboxMessage.id))
                  .where(OutboxMessage.state == FAILED, OutboxMessage.created_at >= utcnow() - FAILED_WINDOW)
                  .group_by(OutboxMessage.channel).tuples())
    rows, seen = [], set()
    for config in failing.limit(ERRORS_SHOWN):
        channel = config.channel
        seen.add(channel.id)
        rows.append({"channel_id": channel.id, "channel": channel.name, "kind": channel.kind,
                     "tenant_id": channel.tenant_id, "tenant": channel.tenant.name, "error": config.last_error,
                     "error_at": config.last_error_at.isoformat() + "Z" if config.last_error_at else None,
                     "failed_replies": failed.get(channel.id, 0)})
    extra = [i for i in failed if i not in seen][:max(0, ERRORS_SHOWN - len(rows))]
    for channel in Channel.select(Channel, Tenant).join(Tenant).where(Channel.id.in_(extra)) if extra else []:
        rows.append({"channel_id": channel.id, "channel": channel.name, "kind": channel.kind,
                     "tenant_id": channel.tenant_id, "tenant": channel.tenant.name, "error": None, "error_at": None,
                     "failed_replies": failed[channel.id]})
    return {"total": Channel.select().where(Channel.is_active == True).count(),
            "failing": rows, "failed_replies_24h": sum(failed.values())}


def _checks(instance) -> dict:
    return {key: {"level": check.level, "detail": check.detail} for key, check in worker_and_sync(instance).items()}


def figures(provider: Tenant, instance, tz) -> dict:
    return {"tenants": _tenants(), "licence": _licence(), "conversations": _conversations(provider, tz),
            "channels": _channels(), **_checks(instance)}


def of_app(provider: Tenant) -> dict:
    """``figures`` with this app's instance and time zone."""
    instance = current_app.extensions["appliance_instance"]
    return figures(provider, instance, zone(instance.settings))


def chart_svg(series: list[dict]) -> str:
    return stacked_bars_svg([(dt.date.fromisoformat(r["day"]), r["opened"], r["resolved"]) for r in series],
                            title=f"Conversations opened and resolved, last {DAYS} days",
                            names=("opened", "resolved"), label_every=2, width=560, height=160)
