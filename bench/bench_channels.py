"""Inbound ingest through each channel adapter, and the outbox's send rate to a local double.

    python bench/bench_channels.py [--messages 300]

One SQLite instance (the embedded default, encryption on), the app driven through its
WSGI stack (routing, verification over the raw body, parsing, the inbound ledger,
contact and conversation lookup, encrypted writes). Figures are messages per second of
the process's CPU time (the doubles run in-process, so their share is counted on both
sides; wall time on a shared VM swings with other jobs), and ratios against baselines
measured in the same run, so the machine's speed cancels:

* ingest: each kind's ``POST /hooks/<key>`` against the web-chat widget's
  ``POST /widget/<key>/messages`` (today's path, no signature, no ledger);
  every message comes from a new sender, the costliest case (a new contact each time);
* outbox: replies drained by the worker's job to the Telegram double on loopback,
  against bare ``requests.post`` calls to the same double (the HTTP floor): one reply
  per conversation, then 20 per conversation (kept in order: each waits for the one before).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from tests.channel_doubles import TelegramDouble
from tests.helpers import make_instance


def _rate(n, seconds):
    return n / seconds if seconds else float("inf")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="messages per adapter and replies sent")
    args = parser.parse_args()
    n = args.messages

    from appliance.web import create_app
    from appliance.web.channels import config as channel_config
    from appliance.web.channels import viber as viber_channel
    from appliance.web.channels.webhook import signed_headers
    from appliance.web.channels.whatsapp import signature
    from appliance.web.models.contact_center import Channel, Conversation
    from appliance.web.services import conversations, outbox, tenants

    home = Path(tempfile.mkdtemp(prefix="bench-channels-")) / "home"
    app = create_app(instance=make_instance(home, "sqlite:///appliance.db"))
    client = app.test_client()
    # Every post comes from one address here: lift the per-address limits a real site keeps.
    app.extensions["appliance_instance"]["throttle"].update(
        widget_conversations_per_address=10 ** 9, widget_conversations_per_channel=10 ** 9,
        webhook_requests_per_address=10 ** 9)
    with TelegramDouble() as double, app.app_context():
        provider = tenants.create_provider("Bench provider")
        tenant = tenants.create_child(provider, "Bench bank", "enterprise")
        made = {}
        for kind, settings in (("webchat", {}), ("webhook", {}),
                               ("telegram", {"bot_token": double.token, "api_base_url": double.url}),
                               ("whatsapp", {"phone_number_id": "1", "access_token": "t", "app_secret": "s"}),
                               ("vk", {"group_id": "1", "access_token": "t"}),
                               ("viber", {"auth_token": "v", "sender_name": "Bench"})):
            channel = Channel.create(tenant=tenant, kind=kind, name=kind)
            made[kind] = (channel, channel_config.update_settings(channel, settings)["generated"])

        def widget(i):
            ch, _ = made["webchat"]
            return client.post(f"/widget/{ch.public_key}/messages", json={"name": f"V{i}", "body": f"hello {i}"})

        def webhook(i):
            ch, _ = made["webhook"]
            raw = json.dumps({"phone": f"+4930{i:08d}", "body": f"hello {i}"}).encode()
            return client.post(f"/hooks/{ch.public_key}", data=raw, headers=signed_headers(ch.secret, raw))

        def telegram(i):
            ch, gen = made["telegram"]
            body = {"update_id": i, "message": {"message_id": i, "from": {"id": 10_000 + i, "first_name": "I"},
                                                "chat": {"id": 10_000 + i, "type": "private"}, "date": 1,
                                                "text": f"hello {i}"}}
            return client.post(f"/hooks/{ch.public_key}", json=body,
                               headers={"X-Telegram-Bot-Api-Secret-Token": gen["secret_token"]})

        def whatsapp(i):
            ch, _ = made["whatsapp"]
            raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
                "contacts": [{"profile": {"name": "W"}, "wa_id": f"1650{i:07d}"}],
                "messages": [{"from": f"1650{i:07d}", "id": f"wamid.{i}", "type": "text",
                              "text": {"body": f"hello {i}"}}]}}]}]}).encode()
            return client.post(f"/hooks/{ch.public_key}", data=raw,
                               headers={"X-Hub-Signature-256": signature("s", raw)})

        def vk(i):
            ch, gen = made["vk"]
            body = {"type": "message_new", "group_id": 1, "secret": gen["secret"], "event_id": f"e{i}",
                    "object": {"message": {"id": i, "peer_id": 20_000 + i, "text": f"hello {i}"}}}
            return client.post(f"/hooks/{ch.public_key}", json=body)

        def viber(i):
            ch, _ = made["viber"]
            raw = json.dumps({"event": "message", "timestamp": 1457764197627, "message_token": 10 ** 15 + i,
                              "sender": {"id": f"v{i:010d}=", "name": "V"},
                              "message": {"type": "text", "text": f"hello {i}"}}).encode()
            return client.post(f"/hooks/{ch.public_key}", data=raw,
                               headers={"X-Viber-Content-Signature": viber_channel.signature("v", raw)})

        results = {}
        for label, post in (("webchat widget (baseline)", widget), ("webhook", webhook), ("telegram", telegram),
                            ("whatsapp", whatsapp), ("vk", vk), ("viber", viber)):
            post(-1)  # warm up
            started = time.process_time()
            for i in range(n):
                answer = post(i)
                assert answer.status_code in (200, 201, 202), (label, answer.status_code, answer.get_data()[:200])
            results[label] = _rate(n, time.process_time() - started)

        # Outbox: n replies into Telegram conversations, drained by the worker job.
        convs = list(Conversation.select().where(Conversation.channel == made["telegram"][0].id).limit(n))
        app.extensions["appliance_instance"]["channels"]["rate_per_minute"] = 10 ** 9
        for i in range(n):
            conversations.add_message(convs[i % len(convs)], "out", f"reply {i}")
        started = time.process_time()
        while len(double.sent) < n:
            outbox.drain(limit=n)
        send_rate = _rate(n, time.process_time() - started)
        # The same number of replies, 20 per conversation: each waits behind the one before it.
        threads = convs[:max(1, n // 20)]
        for i in range(n):
            conversations.add_message(threads[i % len(threads)], "out", f"threaded {i}")
        started = time.process_time()
        while len(double.sent) < 2 * n:
            outbox.drain(limit=n)
        threaded_rate = _rate(n, time.process_time() - started)
        session = requests.Session()
        started = time.process_time()
        for i in range(n):
            session.post(f"{double.url}/bot{double.token}/sendMessage", json={"chat_id": 1, "text": f"raw {i}"})
        floor = _rate(n, time.process_time() - started)

    base = results["webchat widget (baseline)"]
    print(f"\nChannel ingest on SQLite with encryption, {n} messages each (new sender every message)")
    print(f"{'path':28} {'msg/s':>8} {'vs widget':>10}")
    for label, rate in results.items():
        print(f"{label:28} {rate:8.0f} {rate / base:10.2f}")
    print(f"\nOutbox to the Telegram double, {n} replies")
    print(f"{'bare requests.post (floor)':28} {floor:8.0f} {1.0:10.2f}")
    print(f"{'outbox drain':28} {send_rate:8.0f} {send_rate / floor:10.2f}")
    print(f"{'outbox drain, 20 per conv.':28} {threaded_rate:8.0f} {threaded_rate / floor:10.2f}")


if __name__ == "__main__":
    main()
