"""Sync to the vendor: the outbox, its state rows and the daily request counter."""

from appliance.web.models.sync import SyncOutbox, SyncRequestDay, SyncState


def up(db, migrator):
    db.create_tables([SyncOutbox, SyncState, SyncRequestDay], safe=True)
    # The row app hosts lock (FOR UPDATE SKIP LOCKED) so that one of them sends at a time.
    SyncState.insert(key="sender_lock", value="").on_conflict_ignore().execute()
