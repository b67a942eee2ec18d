"""E-mail channel throughput against real servers on loopback, as ratios to a baseline
measured in the same run.

    python bench/bench_email.py [--mails 200]

* ingest: mails put into Dovecot's mailbox, then read by the channel's poll (IMAP fetch by
  UID, parse, thread lookup, contact, conversation, message, thread reference, mailbox
  position) — against the baseline of ``conversations.ingest_inbound`` storing the same
  number of messages directly (the web chat's path: no IMAP, no parsing, no threading);
* send: agent replies sent by the channel outbox (the e-mail adapter: threading headers,
  one submission each) through aiosmtpd with STARTTLS and AUTH —
  against the baseline of plain ``smtplib`` sending the same number of mails over one
  STARTTLS+AUTH session each (what any client pays for a fresh submission).

Needs dovecot-imapd and aiosmtpd (tests/setup.sh). SQLite, as on the embedded profile.
"""

from __future__ import annotations

import argparse
import smtplib
import ssl
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def mail(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Customer {i} <c{i}@customer.example>"
    msg["To"] = "support@bank.example"
    msg["Subject"] = f"Question {i}"
    msg["Message-ID"] = f"<bench-{i}@customer.example>"
    msg.set_content(f"Question number {i}.\n\nOn Mon, someone wrote:\n> old text\n")
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=200)
    args = parser.parse_args()
    n = args.mails

    from appliance.web.channels import config as channel_config
    from appliance.web.channels.email import service
    from appliance.web.models.contact_center import Channel, Conversation
    from appliance.web.services import conversations, outbox, tenants
    from tests.helpers import make_instance, running_app
    from tests.mail_support import SMTP_PASSWORD, SMTP_USER, Dovecot, SmtpSink

    work = Path(tempfile.mkdtemp(prefix="bench-email-"))
    dovecot, sink = Dovecot().start(), SmtpSink(work).start()
    try:
        instance = make_instance(work / "home", "sqlite:///appliance.db")
        with running_app(instance) as app, app.app_context():
            provider = tenants.create_provider("Provider")
            tenant = tenants.create_child(provider, "Bank", "customer")
            chat = Channel.create(tenant=tenant, kind="webchat", name="chat")
            channel = Channel.create(tenant=tenant, kind="email", name="mail")
            service.save_settings(channel, {"from_address": "support@bank.example", **dovecot.settings(),
                                            **sink.settings()})
            limits = {"poll_batch": n}
            # The per-channel send rate limit would otherwise be what this measures.
            row = channel_config.config_row(channel)
            row.settings = {**row.settings, "rate_per_minute": str(10 * n)}
            row.save()

            start = time.perf_counter()
            for i in range(n):
                conversations.ingest_inbound(chat, body=f"Question number {i}.", email=f"w{i}@chat.example")
            baseline_in = time.perf_counter() - start

            for i in range(n):
                dovecot.deliver(mail(i))
            start = time.perf_counter()
            totals = service.run(limits)
            email_in = time.perf_counter() - start
            assert totals["ingested"] == n, totals

            for conv in Conversation.select().where(Conversation.channel == channel.id):
                conversations.add_message(conv, "out", "Thank you, we are on it.")
            start = time.perf_counter()
            counts = outbox.drain(limit=n)
            email_out = time.perf_counter() - start
            assert counts["sent"] == n, counts

            context = ssl.create_default_context(cafile=str(sink.cert))
            start = time.perf_counter()
            for i in range(n):
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "support@bank.example", f"c{i}@customer.example", "Re"
                msg.set_content("Thank you, we are on it.")
                with smtplib.SMTP("127.0.0.1", sink.port) as conn:
                    conn.starttls(context=context)
                    conn.login(SMTP_USER, SMTP_PASSWORD)
                    conn.send_message(msg)
            baseline_out = time.perf_counter() - start
    finally:
        dovecot.stop()
        sink.stop()

    print(f"{n} mails")
    print(f"ingest: e-mail {n / email_in:8.1f} msg/s   ingest_inbound {n / baseline_in:8.1f} msg/s   "
          f"ratio {baseline_in / email_in:.2f}")
    print(f"send:   e-mail {n / email_out:8.1f} msg/s   plain smtplib  {n / baseline_out:8.1f} msg/s   "
          f"ratio {baseline_out / email_out:.2f}")


if __name__ == "__main__":
    main()
