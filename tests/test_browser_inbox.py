"""The inbox an agent works in, in a real browser: search for a contact, open the row from
the keyboard, put a label on the conversation, snooze it, find it again by its label, and
resolve another one with the keyboard. Every click or key that loads a page waits for
that page (the old document gone stale, then the new one's element) before looking.

The app runs under waitress on loopback (tests/test_browser.py's setup), with the test's
own clock and the installation's time zone set to Europe/Berlin.
"""

from __future__ import annotations

import pytest

from tests import test_browser as browser_support
from tests.helpers import PASSWORD, served_over_loopback

pytestmark = browser_support.pytestmark  # the same skips: chromium, chromedriver, selenium
browser = browser_support.browser  # the headless Chromium fixture
_errors = browser_support._errors


@pytest.fixture
def live_url(app, world):
    settings = app.extensions["appliance_instance"].settings
    settings["live_stream_seconds"] = 3
    settings["timezone"] = "Europe/Berlin"
    with served_over_loopback(app, threads=8) as url:
        yield url


class _Pages:
    """Actions that load a page, each waiting for the page it brings."""

    def __init__(self, driver):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, 15)

    def loads(self, action, *, url_part: str, ready: str):
        """Do ``action``; wait until the old document is gone, the URL has ``url_part`` and ``ready`` (CSS) is there."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        old = self.driver.find_element(By.TAG_NAME, "html")
        action()
        self.wait.until(EC.staleness_of(old))
        self.wait.until(EC.url_contains(url_part))
        return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ready)))


def test_agent_searches_labels_and_snoozes(app, browser, live_url, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select

    from appliance.web.models.contact_center import Conversation
    from appliance.web.services import contacts, conversations, labels

    a = world.tenants["A"]
    with app.app_context():
        vip = labels.create_label(world.tenants["P"], name="VIP", color="#aa3300", shared=True)
        other = conversations.start_conversation(world.objects["A"]["channel"], a,
                                                 contacts.create_contact(a, name="Olga Other"), "another question")
    target = world.objects["A"]["conversation"]  # Contact A, "hello from A"
    pages = _Pages(browser)

    browser.get(live_url + "/login")
    browser.find_element(By.NAME, "email").send_keys(world.email("A", "agent"))
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    pages.loads(browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click,
                url_part=f"/t/{a.id}/inbox", ready="table.inbox")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.inbox tr[data-row]")) == 2
    assert browser.find_elements(By.CSS_SELECTOR, "tr.ibx-unread"), "new conversations start unread"

    # Search: "/" jumps to the box; a whole name, typed in another case, finds the contact.
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    box = browser.switch_to.active_element
    assert box.get_attribute("id") == "inbox-search"
    box.send_keys("contact A")
    pages.loads(lambda: box.send_keys(Keys.ENTER), url_part="q=contact", ready="table.inbox")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.inbox tr[data-row]")
    assert len(rows) == 1 and "Contact A" in rows[0].text
    assert "hello from A" in rows[0].text  # the preview line

    # The keyboard opens the row: j selects it, Enter follows its link.
    browser.find_element(By.TAG_NAME, "body").send_keys("j")
    assert browser.switch_to.active_element.get_attribute("data-open") is not None
    pages.loads(lambda: browser.switch_to.active_element.send_keys(Keys.ENTER),
                url_part=f"/conversations/{target.id}", ready="#labels-card")

    # "r" puts the cursor in the reply box; letters typed there stay text, Esc gives the keys back.
    browser.find_element(By.TAG_NAME, "body").send_keys("r")
    reply = browser.switch_to.active_element
    assert reply.get_attribute("id") == "reply-body"
    reply.send_keys("nej")  # n, e and j are shortcuts outside the box
    assert reply.get_attribute("value") == "nej"
    assert f"/conversations/{target.id}" in browser.current_url
    reply.send_keys(Keys.ESCAPE)
    assert browser.switch_to.active_element.get_attribute("id") != "reply-body"

    # Label it with the provider's shared label.
    Select(browser.find_element(By.ID, "add-label")).select_by_visible_text("VIP")
    pages.loads(browser.find_element(By.CSS_SELECTOR, "#labels-card button[type=submit]:not(.small)").click,
                url_part=f"/conversations/{target.id}", ready=".flash")
    assert "Label VIP added." in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert "VIP" in browser.find_element(By.CSS_SELECTOR, "#labels-card .ibx-labels").text

    # Snooze until tomorrow 09:00 (Berlin): back to the inbox, the conversation gone from "open".
    Select(browser.find_element(By.ID, "snooze-until")).select_by_visible_text("Tomorrow 09:00")
    pages.loads(browser.find_element(By.CSS_SELECTOR, "#snooze-card form button[type=submit]").click,
                url_part=f"/t/{a.id}/inbox", ready=".flash")
    assert "Snoozed until tomorrow 09:00" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    with app.app_context():
        assert Conversation.get_by_id(target.id).status == "pending"

    # Find it again by its label, under "pending", marked snoozed.
    pages.loads(lambda: browser.find_element(By.PARTIAL_LINK_TEXT, "Pending").click(),
                url_part="status=pending", ready="form.filters")
    pages.loads(lambda: Select(browser.find_element(By.NAME, "label")).select_by_visible_text("VIP (shared)"),
                url_part=f"label={vip.id}", ready="table.inbox")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.inbox tr[data-row]")
    assert len(rows) == 1
    assert "Contact A" in rows[0].text and "VIP" in rows[0].text
    assert "snoozed until tomorrow 09:00" in rows[0].text

    # The other conversation, resolved with "e".
    browser.get(f"{live_url}/t/{a.id}/conversations/{other.id}")
    pages.wait.until(EC.presence_of_element_located((By.ID, "resolve-form")))
    pages.loads(lambda: browser.find_element(By.TAG_NAME, "body").send_keys("e"),
                url_part=f"/conversations/{other.id}", ready=".flash")
    assert "Status set to resolved." in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert _errors(browser) == []
