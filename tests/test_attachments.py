"""Attachments both ways: the widget and the webhook in, the reply box and the API out; files
encrypted at rest; downloads only as downloads, only within their tenant."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets

import pytest

from appliance.web.channels.webhook import signed_headers
from appliance.web.models.contact_center import Attachment, Conversation, Message
from tests.helpers import login, make_instance, raw_database, running_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + secrets.token_bytes(64)


def _sign(channel, raw: bytes) -> dict:
    return signed_headers(channel.secret, raw)


def _agent_client(app, world, key="A", role="agent"):
    client = app.test_client()
    assert login(client, world.email(key, role)).status_code == 302
    return client


def _assert_download(resp, data: bytes, ctype: str, filename: str):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.data == data
    assert resp.headers["Content-Type"] == ctype
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert filename in resp.headers["Content-Disposition"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in resp.headers["Content-Security-Policy"]


def test_webchat_round_trip(app, client, world):
    channel = world.objects["A"]["channel"]
    tenant = world.tenants["A"]
    # The visitor starts with a file (multipart), then the agent sees and downloads it.
    resp = client.post(f"/widget/{channel.public_key}/files", content_type="multipart/form-data",
                       data={"name": "Vera Visitor", "body": "my statement",
                             "file": (io.BytesIO(PNG), "statement.png", "image/png")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    token, conv_id = resp.get_json()["token"], resp.get_json()["conversation_id"]
    with app.app_context():
        att = Attachment.select().join(Message).where(Message.conversation == conv_id).get()
        assert (att.filename, att.content_type, att.size) == ("statement.png", "image/png", len(PNG))
    agent = _agent_client(app, world)
    page = agent.get(f"/t/{tenant.id}/conversations/{conv_id}").get_data(as_text=True)
    link = f"/t/{tenant.id}/attachments/{att.id}"
    assert link in page and "statement.png" in page
    _assert_download(agent.get(link), PNG, "image/png", "statement.png")

    # The agent replies with a file from the reply box; the widget lists it and serves it.
    reply_pdf = b"%PDF-1.4\n" + secrets.token_bytes(200)
    page = agent.get(f"/t/{tenant.id}/conversations/{conv_id}")
    token_csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True)).group(1)
    resp = agent.post(f"/t/{tenant.id}/conversations/{conv_id}/reply", content_type="multipart/form-data",
                      data={"csrf_token": token_csrf, "kind": "out", "body": "",
                            "files": (io.BytesIO(reply_pdf), "Antwort für Sie.pdf", "application/pdf")})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    polled = client.get(f"/widget/{channel.public_key}/messages?token={token}").get_json()
    out = [m for m in polled["items"] if m["direction"] == "out"][-1]
    assert out["body"] == "Attachment: Antwort für Sie.pdf"
    assert [f["filename"] for f in out["files"]] == ["Antwort für Sie.pdf"]
    got = client.get(out["files"][0]["url"] + f"?token={token}")
    _assert_download(got, reply_pdf, "application/pdf", "Antwort%20f%C3%BCr%20Sie.pdf")

    # Another visitor's token does not open this conversation's files.
    other = client.post(f"/widget/{channel.public_key}/messages", json={"body": "hi"}).get_json()["token"]
    assert client.get(out["files"][0]["url"] + f"?token={other}").status_code == 404
    # Files attached to internal notes never reach the visitor.
    with app.app_context():
        from appliance.web.services import attachments

        conv = Conversation.get_by_id(conv_id)
        note = attachments.add_message_with_files(
            conv, "note", "internal", [attachments.Upload("fraud.txt", "text/plain", b"flagged")],
            author=world.users[("A", "agent")].id)
        note_att = Attachment.get(Attachment.message == note.id)
    assert client.get(f"/widget/{channel.public_key}/files/{note_att.uid}?token={token}").status_code == 404
    polled = client.get(f"/widget/{channel.public_key}/messages?token={token}").get_json()
    assert all(m["direction"] != "note" for m in polled["items"])


def test_webhook_round_trip_and_api_both_ways(app, client, world):
    channel = world.objects["A"]["shared_channel"]  # a webhook channel
    data = secrets.token_bytes(300)
    raw = json.dumps({"name": "Hook Hanna", "phone": "+49 30 999", "body": "see attached",
                      "files": [{"filename": "../../etc/scan.bin", "content_type": "application/octet-stream",
                                 "data": base64.b64encode(data).decode()}]}).encode()
    resp = client.post(f"/hooks/{channel.public_key}", data=raw, content_type="application/json",
                       headers=_sign(channel, raw))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    conv_id = resp.get_json()["conversation_id"]
    headers = world.headers("A", "agent")
    messages = client.get(f"/api/v1/conversations/{conv_id}/messages", headers=headers).get_json()["items"]
    listed = client.get(f"/api/v1/messages/{messages[-1]['id']}/attachments", headers=headers).get_json()["items"]
    assert [(a["filename"], a["size"]) for a in listed] == [("scan.bin", 300)]  # no path survives
    _assert_download(client.get(f"/api/v1/attachments/{listed[0]['id']}/content", headers=headers),
                     data, "application/octet-stream", "scan.bin")

    # Out through the API: a reply carrying a file, read back through the API.
    text = b"Kontoauszug;Betrag\n1;2\n"
    resp = client.post(f"/api/v1/conversations/{conv_id}/attachments", headers=headers,
                       json={"filename": "auszug.csv", "data": base64.b64encode(text).decode(), "body": "here"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    sent = resp.get_json()
    assert sent["direction"] == "out" and sent["body"] == "here"
    assert [(a["filename"], a["content_type"]) for a in sent["attachments"]] == [("auszug.csv", "text/csv")]
    got = client.get(f"/api/v1/attachments/{sent['attachments'][0]['id']}", headers=headers).get_json()
    assert got["size"] == len(text)
    _assert_download(client.get(f"/api/v1/attachments/{got['id']}/content", headers=headers),
                     text, "text/csv", "auszug.csv")
    doc = client.get("/api/v1/openapi.json").get_json()
    assert {"/conversations/{conversation_id}/attachments", "/messages/{message_id}/attachments",
            "/attachments/{attachment_id}", "/attachments/{attachment_id}/content"} <= set(doc["paths"])


def test_limits_and_refusals_say_which_setting(app, client, world):
    conv = world.objects["A"]["conversation"]
    headers = world.headers("A", "agent")

    def upload(**body):
        return client.post(f"/api/v1/conversations/{conv.id}/attachments", headers=headers, json=body)

    big = base64.b64encode(b"x" * (app.extensions["appliance_instance"]["attachment_max_bytes"] + 1)).decode()
    with app.app_context():
        from appliance.web.services import attachments

        with pytest.raises(attachments.ServiceError, match="attachment_max_bytes") as exc:
            attachments.check_file(attachments.Upload("big.bin", "", b"x" * (5 * 1024 * 1024 + 1)))
        assert exc.value.status == 413
    assert len(big) > app.config["MAX_CONTENT_LENGTH"]  # the API's JSON limit stops it first
    assert upload(filename="big.bin", data=big).status_code == 413
    resp = upload(filename="page.html", content_type="text/html", data=base64.b64encode(b"<script>").decode())
    assert resp.status_code == 415 and "attachment_types" in resp.get_json()["message"]
    resp = upload(filename="x.png", data="not base64!")
    assert resp.status_code == 422 and "base64" in resp.get_json()["message"]
    assert upload(filename="empty.txt", data="").status_code == 422
    channel = world.objects["A"]["channel"]
    resp = client.post(f"/widget/{channel.public_key}/files", content_type="multipart/form-data",
                       data={"body": "no file"})
    assert resp.status_code == 422 and "file" in resp.get_json()["message"]
    with app.app_context():
        # Only the seeded file: nothing refused was stored, no message was left without its file.
        assert Attachment.select().join(Message).where(Message.conversation == conv.id).count() == 1
        assert Message.select().where(Message.conversation == conv.id).count() == 1


def test_active_content_is_only_ever_a_download(tmp_path):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    instance.settings["attachment_types"] = ["text/html", "image/svg+xml", "image/*"]
    with running_app(instance) as app:
        from tests.helpers import build_world

        with app.app_context():
            world = build_world()
        client = app.test_client()
        conv = world.objects["A"]["conversation"]
        headers = world.headers("A", "agent")
        for name, ctype, data in (("x.html", "text/html", b"<script>alert(1)</script>"),
                                  ("x.svg", "image/svg+xml", b"<svg onload='alert(1)'/>")):
            sent = client.post(f"/api/v1/conversations/{conv.id}/attachments", headers=headers,
                               json={"filename": name, "content_type": ctype,
                                     "data": base64.b64encode(data).decode()}).get_json()
            att = sent["attachments"][0]
            assert att["content_type"] == ctype  # what the sender said is kept...
            got = client.get(f"/api/v1/attachments/{att['id']}/content", headers=headers)
            _assert_download(got, data, "application/octet-stream", name)  # ...never served as such
            agent = _agent_client(app, world)
            _assert_download(agent.get(f"/t/{world.tenants['A'].id}/attachments/{att['id']}"), data,
                             "application/octet-stream", name)


def test_another_tenants_attachment_is_404(app, client, world):
    att_a = world.objects["A"]["attachment"]
    b = world.tenants["B"]
    agent_b = _agent_client(app, world, "B")
    assert agent_b.get(f"/t/{world.tenants['A'].id}/attachments/{att_a.id}").status_code == 404
    assert agent_b.get(f"/t/{b.id}/attachments/{att_a.id}").status_code == 404  # own tenant in the URL
    # A sub-account's agent does not reach its parent's files either; the parent's staff reach down.
    agent_a1 = _agent_client(app, world, "A1")
    assert agent_a1.get(f"/t/{world.tenants['A1'].id}/attachments/{att_a.id}").status_code == 404
    for path in (f"/api/v1/attachments/{att_a.id}", f"/api/v1/attachments/{att_a.id}/content",
                 f"/api/v1/messages/{world.objects['A']['message'].id}/attachments"):
        assert client.get(path, headers=world.headers("B", "admin")).status_code == 404, path
        assert client.get(path, headers=world.headers("A", "agent")).status_code == 200, path
    upload = {"filename": "x.txt", "data": base64.b64encode(b"x").decode()}
    conv_a = world.objects["A"]["conversation"]
    resp = client.post(f"/api/v1/conversations/{conv_a.id}/attachments", headers=world.headers("B", "admin"),
                       json=upload)
    assert resp.status_code == 404


def test_stored_bytes_are_not_in_the_raw_database(request, app, client, world, instance):
    marker = b"ATTACHMENT-PLAINTEXT-" + secrets.token_hex(16).encode()
    filename = "Kreditvertrag-" + secrets.token_hex(6) + ".txt"
    with raw_database(request, instance) as read:
        channel = world.objects["A"]["channel"]
        resp = client.post(f"/widget/{channel.public_key}/files", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(marker * 3), filename, "text/plain")})
        assert resp.status_code == 201
        conv = world.objects["A"]["conversation"]
        sent = client.post(f"/api/v1/conversations/{conv.id}/attachments", headers=world.headers("A", "agent"),
                           json={"filename": filename, "data": base64.b64encode(marker).decode()}).get_json()
        got = client.get(f"/api/v1/attachments/{sent['attachments'][0]['id']}/content",
                         headers=world.headers("A", "agent"))
        assert got.data == marker  # decrypts fine
        blob = read()
    assert b"Tenant A" in blob  # the scan sees plaintext that is really there
    assert marker not in blob
    assert base64.b64encode(marker) not in blob
    assert filename.encode() not in blob


def test_webhook_files_that_are_wrong_store_nothing(app, client, world):
    channel = world.objects["A"]["shared_channel"]
    with app.app_context():
        before = Message.select().count()
    bad = [
        ({"body": "x", "files": "scan.pdf"}, "files must be a list"),
        ({"body": "x", "files": [{"filename": 1, "data": ""}]}, "Each of files"),
        ({"body": "x", "files": [{"filename": "a.pdf", "data": "%%%"}]}, "base64"),
        ({"body": "x", "files": [{"filename": "a.exe", "content_type": "application/x-msdownload",
                                  "data": base64.b64encode(b"MZ").decode()}]}, "attachment_types"),
        ({"body": "x", "files": [{"filename": f"{n}.txt", "data": "eA=="} for n in range(6)]}, "at most 5"),
    ]
    for payload, says in bad:
        raw = json.dumps(payload).encode()
        resp = client.post(f"/hooks/{channel.public_key}", data=raw, content_type="application/json",
                           headers=_sign(channel, raw))
        assert 400 <= resp.status_code < 500 and says in resp.get_json()["message"], (payload, resp.get_json())
    with app.app_context():
        assert Message.select().count() == before


def test_one_attachment_limit_for_every_channel_and_the_old_email_key_refused(app, world, tmp_path):
    from appliance.core.config import DEFAULTS, ConfigError, Instance, write_config
    from appliance.web.channels.base import Inbound, InboundFile
    from appliance.web.channels.ingest import store_inbound
    from appliance.web.models.contact_center import Channel

    assert "max_attachment_bytes" not in DEFAULTS["email"]  # one setting: attachment_max_bytes
    write_config(tmp_path, {"email": {"max_attachment_bytes": 20_000_000}})
    with pytest.raises(ConfigError) as refused:
        Instance.load(tmp_path)
    message = str(refused.value)
    assert str(tmp_path / "config.yml") in message and "attachment_max_bytes" in message
    assert "email.max_attachment_bytes" in message and "20000000" in message

    # An inbound file over the limit (any kind: e-mail parts, messenger files) is left out and named;
    # the message and the files within the limit are kept, and the item is not refused or re-fetched.
    app.extensions["appliance_instance"].settings["attachment_max_bytes"] = 1000
    with app.app_context():
        channel = Channel.create(tenant=world.tenants["A"], kind="webhook", name="limits")
        [made] = store_inbound(channel, [Inbound(external_id="m1", sender_id="", text="Two files", files=[
            InboundFile("small.pdf", "application/pdf", b"%PDF" + b"s" * 100),
            InboundFile("scan.pdf", "application/pdf", b"%PDF" + b"x" * 2000)])])
        assert made.body.startswith("Two files\n\n[not stored: scan.pdf: 2004 bytes is over the limit of 1000")
        assert [a.filename for a in Attachment.select().where(Attachment.message == made.id)] == ["small.pdf"]


def test_an_agents_file_reaches_the_webhook_callback_signed_with_the_reply(app, client, world):
    from appliance.web.channels import config as channel_config
    from appliance.web.channels.webhook import signature
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import attachments, conversations
    from tests.channel_doubles import CallbackDouble
    from tests.channel_support import drain

    data = secrets.token_bytes(500)
    with CallbackDouble() as callback:
        channel = Channel.create(tenant=world.tenants["A"], kind="webhook", name="CRM with callback")
        channel_config.update_settings(channel, {"callback_url": callback.url + "/replies"})
        conv = conversations.start_conversation(channel, world.tenants["A"], world.objects["A"]["contact"], "hi")
        attachments.add_message_with_files(conv, "out", "your statement", [
            attachments.Upload("statement.pdf", "application/pdf", data)], world.users[("A", "agent")])
        drain(app)
        assert len(callback.sent) == 1  # one call: the body and its files together
        got = callback.sent[0]
    body = json.loads(got["raw"])
    assert body["body"] == "your statement"
    assert [(f["filename"], f["content_type"], base64.b64decode(f["data"])) for f in body["files"]] == [
        ("statement.pdf", "application/pdf", data)]
    assert got["headers"]["X-Signature"] == signature(channel.secret, got["headers"]["X-Timestamp"], got["raw"])
