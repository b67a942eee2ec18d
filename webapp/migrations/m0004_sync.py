"""Issue 6: the sync outbox, its state rows and the daily request counter."""

from webapp.models.sync import SyncOutbox, SyncRequestDay, SyncState


def up(db, migrator):
    db.create_tables([SyncOutbox, SyncState, SyncRequestDay], safe=True)
    # The row app hosts lock (FOR UPDATE SKIP LOCKED) so that one of them sends at a time.
    SyncState.insert(key="sender_lock", value="").on_conflict_ignore().execute()
