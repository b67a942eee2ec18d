"""Turning raw mail into what an agent sees: threading keys, trimmed text, safe HTML, files."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from appliance.web.channels.email.parse import MailParseError, html_to_text, parse_mail, trim_quoted


def mail(body="Hello, my card is blocked.", **headers) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Anna Customer <anna@customer.example>")
    msg["To"] = headers.pop("To", "support@example.test")
    msg["Subject"] = headers.pop("Subject", "Card blocked")
    msg["Message-ID"] = headers.pop("Message_ID", "<m1@customer.example>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_plain_mail_gives_sender_subject_text_and_its_id():
    parsed = parse_mail(mail())
    assert parsed.sender_email == "anna@customer.example"
    assert parsed.sender_name == "Anna Customer"
    assert parsed.subject == "Card blocked"
    assert parsed.text == "Hello, my card is blocked."
    assert parsed.message_id == "<m1@customer.example>"
    assert parsed.references == [] and parsed.tokens == []


def test_threading_keys_in_reply_to_first_then_references_newest_first_and_the_reply_token():
    parsed = parse_mail(mail(In_Reply_To="<r2@desk>", References="<r0@desk> <r1@desk> <r2@desk>",
                             To="Support <support+AbCdEfGhIjKlMnOpQrSt@example.test>"))
    assert parsed.references == ["<r2@desk>", "<r1@desk>", "<r0@desk>"]
    assert parsed.tokens == ["AbCdEfGhIjKlMnOpQrSt"]


def test_quoted_history_is_trimmed():
    body = ("Thanks, that worked.\n\nOn Tue, 1 Dec 2026 at 10:00, Support <support@example.test> wrote:\n"
            "> Please restart the app.\n> Regards")
    assert parse_mail(mail(body)).text == "Thanks, that worked."
    outlook = "Still broken.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nPlease restart."
    assert trim_quoted(outlook) == "Still broken."
    # a line that merely starts with "From:" in the new text stays
    assert trim_quoted("From: the branch office, I mean.\nThanks") == "From: the branch office, I mean.\nThanks"


def test_html_mail_is_shown_as_text_with_no_script_style_or_remote_content():
    html = ('<html><head><style>p{color:red}</style><title>x</title></head><body>'
            '<p>Hello <b>team</b>,</p><p>see&nbsp;below &amp; fix</p>'
            '<img src="https://tracker.example/pixel.gif"><script>alert(1)</script>'
            '<blockquote>old quoted text</blockquote></body></html>')
    msg = EmailMessage()
    msg["From"] = "anna@customer.example"
    msg["Message-ID"] = "<h1@customer.example>"
    msg.set_content(html, subtype="html")
    text = parse_mail(msg.as_bytes()).text
    assert "Hello team," in text and "see below & fix" in text
    for gone in ("<", "alert", "color:red", "tracker.example", "old quoted text"):
        assert gone not in text
    assert html_to_text("<p>a</p><p>b</p>").split() == ["a", "b"]


def test_plain_part_is_preferred_and_attachments_come_out_as_files():
    msg = EmailMessage()
    msg["From"] = "anna@customer.example"
    msg["Message-ID"] = "<a1@customer.example>"
    msg.set_content("See the statement attached.")
    msg.add_alternative("<p>See the <i>statement</i> attached.</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="../../statement.pdf")
    parsed = parse_mail(msg.as_bytes())
    assert parsed.text == "See the statement attached."
    assert [(f.filename, f.content_type, f.data) for f in parsed.files] == [
        ("statement.pdf", "application/pdf", b"%PDF-1.4 fake")]


def test_a_mail_without_message_id_gets_a_stable_one():
    raw = b"From: anna@customer.example\r\nSubject: hi\r\n\r\nhello\r\n"
    assert parse_mail(raw).message_id == parse_mail(raw).message_id
    assert parse_mail(raw).message_id != parse_mail(raw.replace(b"hello", b"hallo")).message_id


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty"),
    (b"Subject: no sender\r\n\r\nhello\r\n", "no sender address"),
    (b"From: not an address\r\n\r\nhello\r\n", "no sender address"),
    (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\nno parts at all\r\n",
     "MIME structure is broken"),
    (b"From: a@b.example\r\nContent-Type: text/plain\r\n\r\n   \r\n", "neither a readable text body"),
])
def test_unreadable_mail_raises_a_reason_an_admin_can_act_on(raw, reason):
    with pytest.raises(MailParseError, match=reason):
        parse_mail(raw)
