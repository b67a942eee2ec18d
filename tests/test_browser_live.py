"""Live updates in a real browser: pages that were opened once show what arrives through a
channel without a reload, and the widget shows the agent's reply from its event stream.

The app runs under waitress on loopback (tests/test_browser.py's setup); messages arrive
over real HTTP through the signed webhook and the widget's own endpoint.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from appliance.web.channels.webhook import signed_headers
from tests.helpers import PASSWORD, served_over_loopback
from tests.test_browser import CHROMEDRIVER, CHROMIUM, HAVE_SELENIUM, _errors, browser  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="headless Chromium not installed: apt-get install chromium chromium-driver"),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium not installed: pip install selenium"),
]
LIMIT = 2.0  # seconds from the channel's POST to the text on screen


@pytest.fixture
def live_url(app, world):
    # Streams are short here so that the ones of pages already left free their threads soon.
    settings = app.extensions["appliance_instance"].settings
    settings["live_stream_seconds"] = 5
    settings["live_streams_per_process"] = 8  # one waitress process serves every page here
    with served_over_loopback(app, threads=16) as url:
        yield url


def _hook(base, channel, payload: dict) -> int:
    raw = json.dumps(payload).encode()
    req = urllib.request.Request(f"{base}/hooks/{channel.public_key}", data=raw, method="POST",
                                 headers={"Content-Type": "application/json", **signed_headers(channel.secret, raw)})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
        return json.load(resp)["conversation_id"]


def _until(driver, predicate, timeout=LIMIT):
    """Seconds until predicate(driver) held; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate(driver):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not on the page within {timeout} s")


def _stream_open(driver, selector):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        f"var el = document.querySelector('{selector}'); return el && el.dataset.liveState === 'open';"))


def test_channel_messages_appear_in_open_pages_and_replies_in_the_widget(app, browser, live_url, world):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from appliance.web.models.contact_center import Conversation
    from appliance.web.services import conversations

    a = world.tenants["A"]
    hook = world.objects["A"]["shared_channel"]  # the webhook channel of tenant A
    browser.get(live_url + "/login")
    browser.find_element(By.NAME, "email").send_keys(world.email("A", "agent"))
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_contains(f"/t/{a.id}/inbox"))
    _stream_open(browser, "[data-live-stream]")

    # 1. The open inbox shows a new conversation from the webhook, without a reload.
    browser.execute_script("window.__sameDocument = true;")
    started = time.monotonic()
    conv_id = _hook(live_url, hook, {"name": "Lina Live", "email": "lina@example.org", "body": "first"})
    _until(browser, lambda d: "Lina Live" in d.find_element(By.CSS_SELECTOR, "[data-live=list]").text,
           LIMIT - (time.monotonic() - started))
    assert browser.execute_script("return window.__sameDocument === true;"), "the page was reloaded"

    # 2. The open conversation shows the contact's next message, and a status change.
    browser.get(f"{live_url}/t/{a.id}/conversations/{conv_id}")
    _stream_open(browser, "[data-live-stream]")
    browser.execute_script("window.__sameDocument = true;")
    browser.find_element(By.ID, "reply-body").send_keys("draft the agent is typing")
    started = time.monotonic()
    assert _hook(live_url, hook, {"email": "lina@example.org", "body": "second, via the gateway"}) == conv_id
    _until(browser, lambda d: "second, via the gateway" in d.find_element(By.CSS_SELECTOR, "ol.messages").text,
           LIMIT - (time.monotonic() - started))
    with app.app_context():
        conversations.set_status(Conversation.get_by_id(conv_id), "pending")
    _until(browser, lambda d: "pending" in d.find_element(By.CSS_SELECTOR, "[data-live=head]").text)
    assert browser.execute_script("return window.__sameDocument === true;"), "the page was reloaded"
    assert browser.find_element(By.ID, "reply-body").get_attribute("value") == "draft the agent is typing"

    # 3. The widget shows the agent's reply from its stream (its fallback poll is 15 s away).
    channel = world.objects["A"]["channel"]
    browser.get(f"{live_url}/widget/{channel.public_key}")
    browser.find_element(By.NAME, "name").send_keys("Wanda Widget")
    browser.find_element(By.NAME, "body").send_keys("is anyone there?")
    browser.find_element(By.CSS_SELECTOR, "#widget-form button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.text_to_be_present_in_element((By.ID, "messages"), "is anyone there?"))
    _stream_open(browser, "#chat")
    with app.app_context():
        visitor = (Conversation.select().where(Conversation.channel == channel.id)
                   .order_by(Conversation.id.desc()).get())
        started = time.monotonic()
        conversations.add_message(visitor, "out", "Yes, Wanda: how can I help?", author=world.users[("A", "agent")].id)
    _until(browser, lambda d: "how can I help?" in d.find_element(By.ID, "messages").text,
           LIMIT - (time.monotonic() - started))
    assert _errors(browser) == []
