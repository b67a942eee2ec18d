"""Renewal reminders: a notice at each configured offset before a contract ends, once each.

The notice goes to the account (its admins see it in the app, and by e-mail where the
installation has a relay: business/notices.py) and to the provider's managers. Each
reminder's key (contract, offset, recipient) is unique, so a second worker or a re-run
never repeats one, and a worker that was down on the day sends it late.
"""

from __future__ import annotations

import datetime as dt

from appliance.core.calendar import today, zone
from appliance.web.business.models import Contract, Notification
from appliance.web.business.notices import mail_notices
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import PROVIDER, Tenant


def due_reminders(on: dt.date, offsets: list[int]):
    """(contract, offset) pairs whose reminder date has come; the nearest offset only, for a late worker."""
    horizon = on + dt.timedelta(days=max(offsets, default=0))
    for contract in Contract.select().where(Contract.status == "active", Contract.ends_on > on,
                                            Contract.ends_on <= horizon):
        days_left = (contract.ends_on - on).days
        reached = [o for o in offsets if days_left <= o]
        if reached:
            yield contract, min(reached)


def send_reminders(on: dt.date, offsets: list[int]) -> int:
    provider = Tenant.get_or_none(Tenant.level == PROVIDER)
    made = 0
    for contract, offset in due_reminders(on, offsets):
        account = contract.account
        text = (f"The contract of {account.name} ends on {contract.ends_on} "
                f"({'renews automatically' if contract.renewal == 'auto' else 'renew it by hand'}).")
        for recipient in filter(None, (account, provider)):
            key = f"renewal:{contract.id}:{offset}:{recipient.id}"
            if Notification.select().where(Notification.key == key).exists():
                continue
            Notification.insert(tenant=recipient.id, key=key, text=text[:300], created_at=utcnow()) \
                .on_conflict_ignore().execute()  # the unique key settles a race with another host
            made += 1
    return made


def renewal_reminders_job(app) -> None:
    """Make the day's notices, then mail the pending ones where a relay is configured."""
    instance = app.extensions["appliance_instance"]
    send_reminders(today(zone(instance.settings)), list(instance.settings["business"]["renewal_reminder_days"]))
    mail_notices(instance.settings)
