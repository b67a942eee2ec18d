"""The knowledge base and canned answers: Markdown rendered inert, search and categories,
canned answers shared down read-only, their variables filled safely (UI and API)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Article, CannedAnswer
from appliance.web.services import canned_text, markdown
from tests.helpers import csrf_token, login

XSS = [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    "![x](javascript:alert(1))",
    '![x](https://img.example/a.png "t\\" onerror=\\"alert(1)")',
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">raw</a>',
    "<iframe src=https://evil.example></iframe>",
    "<svg onload=alert(1)>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<style>body{display:none}</style>",
]


class _Tags(HTMLParser):
    """Every element and attribute as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "svg", "style", "object", "embed", "form", "input"):
            self.found.append(tag)
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc"):
                self.found.append(f"{tag} {name}")
            if name in ("href", "src") and not (value or "").startswith(("http://", "https://", "mailto:")):
                self.found.append(f"{tag} {name}={value}")


def _dangerous(html: str) -> list[str]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.found


@pytest.mark.parametrize("payload", XSS)
def test_markdown_payloads_render_inert(payload):
    html = markdown.render(payload)
    assert not _dangerous(html), (payload, html)


def test_markdown_renders_the_useful_parts():
    html = markdown.render("# Returns\n\n**Keep** the *receipt*.\n\n- one\n- two\n\n"
                           "| a | b |\n|---|---|\n| 1 | 2 |\n\n[Policy](https://bank.example/p)")
    assert "<h1>Returns</h1>" in html and "<strong>Keep</strong>" in html and "<li>one</li>" in html
    assert "<td>1</td>" in html
    assert '<a href="https://bank.example/p" rel="noopener noreferrer nofollow">Policy</a>' in html


def test_variables_are_a_fixed_table_not_a_template_engine():
    class Contact:
        name = "Ann {{agent.email}} {% raw %}"
        email = "ann@example.com"
        phone = None

    class Agent:
        name = "Bob Agent"
        email = "bob@bank.example"

    values = canned_text.values_for(contact=Contact, agent=Agent)
    text = canned_text.fill("Hi {{contact.first_name}} ({{ contact.name }}), {{agent.name}} here. "
                            "{{config.SECRET_KEY}} {{ 7*7 }} {{contact.phone}}.", values)
    # The contact's own braces are inserted as typed, never substituted again.
    assert text == ("Hi Ann (Ann {{agent.email}} {% raw %}), Bob Agent here. "
                    "{{config.SECRET_KEY}} {{ 7*7 }} .")
    assert canned_text.unknown_names("{{contact.name}} {{contact.nmae}} {{ x.y }}") == ["contact.nmae", "x.y"]


def test_search_categories_and_sharing_in_the_ui(client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    login(client, world.email("A", "supervisor"))
    token = csrf_token(client, f"/t/{a.id}/kb/new")
    made = client.post(f"/t/{a.id}/kb/new", data={
        "title": "Card blocked", "body": "Call **the hotline**.\n\n<script>alert(1)</script>\n\n"
        "[x](javascript:alert(1)) <img src=x onerror=alert(1)>", "category": "Cards",
        "shared": "1", "published": "1", "csrf_token": token})
    assert made.status_code == 302
    article = Article.get(Article.title == "Card blocked")
    assert article.category == "Cards"
    page = client.get(f"/t/{a.id}/kb/{article.id}").get_data(as_text=True)
    assert "<strong>the hotline</strong>" in page
    body = page.split('class="card markdown">', 1)[1].split("</article>", 1)[0]
    assert not _dangerous(body) and "&lt;script&gt;" in body
    Article.create(tenant=a, title="Loans", body="Interest rates for the HOTLINE team", category="Loans")

    listing = client.get(f"/t/{a.id}/kb?q=hotline").get_data(as_text=True)
    assert "Card blocked" in listing and "Loans" in listing and "private A" not in listing
    only_cards = client.get(f"/t/{a.id}/kb?q=hotline&category=Cards").get_data(as_text=True)
    assert "Card blocked" in only_cards and ">Loans</a>" not in only_cards
    assert "100%" not in client.get(f"/t/{a.id}/kb?q=100%25").get_data(as_text=True).split("<h2>")[-1]

    # The sub-account's agent finds the shared article by search, and reads it rendered.
    client.get("/logout")
    login(client, world.email("A1", "supervisor"))
    found = client.get(f"/t/{a1.id}/kb?q=HOTLINE").get_data(as_text=True)
    assert "Card blocked" in found and "shared by Tenant A" in found and "Loans" not in found  # Loans: not shared
    assert client.get(f"/t/{a1.id}/kb/{article.id}").status_code == 200
    token = csrf_token(client, f"/t/{a1.id}/kb")
    assert client.post(f"/t/{a1.id}/kb/{article.id}/edit", data={"title": "x", "body": "y",
                                                                  "csrf_token": token}).status_code == 404
    assert client.post(f"/t/{a1.id}/kb/{article.id}/delete", data={"csrf_token": token}).status_code == 404
    assert Article.get_by_id(article.id).title == "Card blocked"


def test_canned_answers_shared_down_edited_and_filled(client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    login(client, world.email("A", "supervisor"))
    token = csrf_token(client, f"/t/{a.id}/canned")
    bad = client.post(f"/t/{a.id}/canned", data={"shortcut": "greet", "title": "Greeting",
                                                  "body": "Hi {{contact.nmae}}", "csrf_token": token})
    assert bad.status_code == 422 and "contact.nmae" in bad.get_data(as_text=True)
    assert client.post(f"/t/{a.id}/canned", data={
        "shortcut": "greet", "title": "Greeting", "body": "Hello {{contact.name}}, {{agent.name}} here.",
        "shared": "1", "csrf_token": token}).status_code == 302
    greet = CannedAnswer.get(CannedAnswer.tenant == a.id, CannedAnswer.shortcut == "greet")
    assert greet.shared
    edit = client.post(f"/t/{a.id}/canned/{greet.id}/edit", data={
        "shortcut": "greet", "title": "Greeting", "body": "Dear {{contact.name}}, {{agent.first_name}} here.",
        "shared": "1", "csrf_token": token})
    assert edit.status_code == 302 and CannedAnswer.get_by_id(greet.id).body.startswith("Dear")
    events = {e.action for e in AuditEvent.select().where(AuditEvent.target == f"canned:{greet.id}")}
    assert {"canned.create", "canned.update"} <= events

    # Below: listed as shared, offered filled in the reply box, not writable.
    client.get("/logout")
    login(client, world.email("A1", "supervisor"))
    page = client.get(f"/t/{a1.id}/canned").get_data(as_text=True)
    assert "Shared with you" in page and "/greet" in page
    conv = world.objects["A1"]["conversation"]
    reply_box = client.get(f"/t/{a1.id}/conversations/{conv.id}").get_data(as_text=True)
    assert 'value="Dear Contact A1, supervisor here."' in reply_box
    token = csrf_token(client, f"/t/{a1.id}/canned")
    for path in (f"/t/{a1.id}/canned/{greet.id}/edit", f"/t/{a1.id}/canned/{greet.id}/delete"):
        assert client.post(path, data={"shortcut": "x", "title": "x", "body": "x",
                                       "csrf_token": token}).status_code == 404
    assert CannedAnswer.get_by_id(greet.id).title == "Greeting"

    # A sibling's account does not see it.
    client.get("/logout")
    login(client, world.email("B1", "supervisor"))
    assert "/greet" not in client.get(f"/t/{world.tenants['B1'].id}/canned").get_data(as_text=True)


def test_canned_and_articles_in_the_api(client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    h_a, h_a1 = world.headers("A", "supervisor"), world.headers("A1", "admin")
    made = client.post(f"/api/v1/tenants/{a.id}/canned-answers", headers=h_a, json={
        "shortcut": "bye", "title": "Bye", "body": "Bye {{contact.first_name}}!", "shared": True})
    assert made.status_code == 201, made.json
    canned_id = made.json["id"]
    assert client.patch(f"/api/v1/canned-answers/{canned_id}", headers=h_a,
                        json={"body": "{{ agent.name }} says bye, {{contact.first_name}}."}).status_code == 200
    # Below it is listed and filled, but not writable.
    shortcuts = {c["shortcut"] for c in client.get(f"/api/v1/tenants/{a1.id}/canned-answers",
                                                    headers=h_a1).json["items"]}
    assert {"bye", "hi"} <= shortcuts
    conv = world.objects["A1"]["conversation"]
    filled = client.get(f"/api/v1/conversations/{conv.id}/canned-answers", headers=h_a1).json["items"]
    assert {c["shortcut"]: c["text"] for c in filled}["bye"] == "admin A1 says bye, Contact."
    assert client.patch(f"/api/v1/canned-answers/{canned_id}", headers=h_a1, json={"title": "x"}).status_code == 404
    assert client.delete(f"/api/v1/canned-answers/{canned_id}", headers=h_a1).status_code == 404

    art = client.post(f"/api/v1/tenants/{a.id}/articles", headers=h_a, json={
        "title": "Fees", "body": "See <script>x</script> [fees](javascript:alert(1))", "category": "Billing",
        "shared": True})
    assert art.status_code == 201 and art.json["category"] == "Billing"
    html = client.get(f"/api/v1/articles/{art.json['id']}/html", headers=h_a1).json["html"]
    assert not _dangerous(html) and "&lt;script&gt;" in html
    found = client.get(f"/api/v1/tenants/{a1.id}/articles?q=fees&category=Billing", headers=h_a1).json["items"]
    assert [x["title"] for x in found] == ["Fees"]
    assert client.get(f"/api/v1/tenants/{a1.id}/articles?q=nothing-like-this", headers=h_a1).json["items"] == []
    assert client.patch(f"/api/v1/articles/{art.json['id']}", headers=h_a1, json={"title": "x"}).status_code == 404
