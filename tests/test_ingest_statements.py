"""How many SQL statements one inbound webhook message costs, on both databases.

Every statement peewee sends (SAVEPOINTs included; the connection's own BEGIN and
COMMIT are not sent through it) is counted for one signed delivery through HTTP: a
message from a new sender (a new contact and conversation) and a second one from the
same sender (continuing the conversation). A statement count is deterministic, so it
is asserted: each is a round trip to PostgreSQL under load (bench/bench_ingest.py).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager

from appliance.web.channels.webhook import signed_headers
from appliance.web.models.contact_center import Conversation, Message

# The goals: 9 and 6. A continuing message: the channel with its tenant and settings, the
# sender's identity with their open conversation, then in one transaction the message,
# the conversation's counter and time, the live event and the ledger row. A new contact
# adds the contact, its channel identity and the round-robin UPDATE ... RETURNING, and
# saves the counter update (the conversation is inserted counted). The webhook throttle
# costs none here: a process counts its rates itself and writes them once a second
# (services/throttle.LocalRates; the warm-up delivery made this second's count).
NEW_CONTACT_MAX = 9
CONTINUING_MAX = 6


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        if isinstance(record.msg, tuple):  # (sql, params); the pool logs its check-outs as plain text
            self.statements.append(str(record.msg[0]))


@contextmanager
def counting():
    logger = logging.getLogger("peewee")
    counter, level, propagate = _Counter(), logger.level, logger.propagate
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the statements hold parameters: keep them out of the test's log capture
    try:
        yield counter.statements
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
        logger.propagate = propagate


def _deliver(client, channel, n, sender):
    raw = json.dumps({"id": f"delivery-{n}", "sender_id": sender, "name": "Customer", "body": "x" * 200}).encode()
    with counting() as statements:
        answer = client.post(f"/hooks/{channel.public_key}", data=raw,
                             headers={"Content-Type": "application/json"} | signed_headers(channel.secret, raw))
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.get_json()["conversation_id"], statements


def test_statements_per_inbound_message(client, world):
    channel = world.objects["A"]["shared_channel"]
    _deliver(client, channel, 0, "warm-up sender")  # the channel's first inbound creates its status row
    # As in production: the kept licence state is not rechecked on every request (see
    # services/licence.current_state), which TESTING does for tests that edit licence rows.
    client.application.config["TESTING"] = False
    started, new_contact = _deliver(client, channel, 1, "sender 1")
    continued, continuing = _deliver(client, channel, 2, "sender 1")
    assert continued == started
    with client.application.app_context():
        assert Message.select().where(Message.conversation == started).count() == 2
        assert Conversation.get_by_id(started).message_count == 2
    assert len(new_contact) <= NEW_CONTACT_MAX, "\n".join(new_contact)
    assert len(continuing) <= CONTINUING_MAX, "\n".join(continuing)
    assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in new_contact + continuing), "one transaction"
