"""The UI in a real browser: headless Chromium driven by Selenium over a local chromedriver.

The app is served by waitress on 127.0.0.1 (a free port) in a thread, as in production
minus nginx. This proves what the test client cannot: the pages load their CSS and
JavaScript under the Content-Security-Policy, the vanilla JS (canned answers, the
organisation switcher, the chat widget) really runs, and the browser logs no errors.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``pip install selenium``
(no browser download: Selenium uses /usr/bin/chromedriver). Skipped with the reason
when they are missing. Screenshots go to ``UI_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.helpers import PASSWORD, served_over_loopback

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
)
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="headless Chromium not installed: apt-get install chromium chromium-driver"),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium not installed: pip install selenium"),
]


@pytest.fixture
def live_url(app, world):
    # Short streams: the server waits for open ones to end before the test does.
    app.extensions["appliance_instance"].settings["live_stream_seconds"] = 3
    with served_over_loopback(app) as url:
        yield url


@pytest.fixture
def customer_site(live_url, world):
    """Another origin embedding the chat widget in an iframe, as a customer's site would."""
    from waitress import create_server

    widget = f"{live_url}/widget/{world.objects['A']['channel'].public_key}"
    page = (f'<!doctype html><title>Customer</title><link rel="icon" href="data:,">'
            f'<p>Customer site</p><iframe id="chat" src="{widget}" width="360" height="520"></iframe>').encode()

    def host_page(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(page)))])
        return [page]

    server = create_server(host_page, host="127.0.0.1", port=0, threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}/"
    server.close()
    thread.join(timeout=5)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _shot(driver, tmp_path, name) -> Path:
    target_dir = Path(os.environ.get("UI_SCREENSHOT_DIR") or tmp_path)
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 5_000  # a real rendering, not a blank page
    return path


def log_in(driver, live_url, email, password=PASSWORD) -> None:
    """Sign in through the login form, with no session of an earlier user left."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(live_url + "/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # Signed in before the caller navigates: a page asked for earlier would meet the login form.
    WebDriverWait(driver, 15).until(lambda d: "/login" not in d.current_url)


def _errors(driver) -> list[str]:
    """Console errors, which include CSP violations and failed script/style loads."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_login_inbox_reply_switcher_and_widget(browser, live_url, world, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from appliance.web.services import conversations

    wait = WebDriverWait(browser, 10)
    a, a1 = world.tenants["A"], world.tenants["A1"]
    conv = world.objects["A"]["conversation"]

    browser.get(live_url + "/login")
    browser.find_element(By.NAME, "email").send_keys(world.email("A", "admin"))
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(EC.url_contains(f"/t/{a.id}/inbox"))
    assert browser.find_element(By.CSS_SELECTOR, ".tenant-name").text == "Tenant A"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.inbox tbody tr")
    assert any("Contact A" in row.text for row in rows)
    # The stylesheet applied (white top bar, flex layout) and the JS ran.
    assert browser.find_element(By.CSS_SELECTOR, ".topbar").value_of_css_property("display") == "flex"
    assert "js" in browser.find_element(By.TAG_NAME, "html").get_attribute("class")
    _shot(browser, tmp_path, "inbox")

    # Reply with a canned answer inserted by the page's script.
    browser.get(f"{live_url}/t/{a.id}/conversations/{conv.id}")
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-fill]")).select_by_index(1)
    box = browser.find_element(By.ID, "reply-body")
    assert box.get_attribute("value") == "Hi there"
    box.send_keys(", welcome!")
    browser.find_element(By.CSS_SELECTOR, "form.reply button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "ol.messages"), "Hi there, welcome!"))
    assert "Reply sent." in browser.find_element(By.CSS_SELECTOR, ".flash").text
    _shot(browser, tmp_path, "conversation")

    # The organisation switcher submits on change.
    Select(browser.find_element(By.ID, "switch-tenant")).select_by_value(str(a1.id))
    wait.until(EC.url_contains(f"/t/{a1.id}/inbox"))
    assert browser.find_element(By.CSS_SELECTOR, ".tenant-name").text == "Tenant A1"
    assert _errors(browser) == []

    # The chat widget: send, get the token, see the agent's reply but not the note.
    channel = world.objects["A"]["channel"]
    browser.get(f"{live_url}/widget/{channel.public_key}")
    browser.find_element(By.NAME, "name").send_keys("Wanda Widget")
    browser.find_element(By.NAME, "body").send_keys("Hi, my card is blocked")
    browser.find_element(By.CSS_SELECTOR, "#widget-form button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "messages"), "Hi, my card is blocked"))
    token = browser.execute_script(f"return localStorage.getItem('appliance-widget-{channel.public_key}')")
    assert token
    from appliance.web.models.contact_center import Conversation

    visitor_conv = (Conversation.select().where(Conversation.channel == channel.id)
                    .order_by(Conversation.id.desc()).get())
    agent_id = world.users[("A", "agent")].id
    conversations.add_message(visitor_conv, "note", "internal: check fraud flag", author=agent_id)
    conversations.add_message(visitor_conv, "out", "Unblocked, try again", author=agent_id)
    wait.until(EC.text_to_be_present_in_element((By.ID, "messages"), "Unblocked, try again"))
    assert "fraud flag" not in browser.find_element(By.ID, "messages").text
    assert not browser.find_element(By.ID, "who").is_displayed()  # name and e-mail asked once only
    _shot(browser, tmp_path, "widget")
    assert _errors(browser) == []


def test_widget_can_be_framed_by_another_origin(browser, customer_site, tmp_path):
    """The app answers X-Frame-Options: DENY everywhere; the widget's CSP frame-ancestors
    must override it in a real browser, or the widget could not be embedded at all."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(customer_site)
    WebDriverWait(browser, 10).until(EC.frame_to_be_available_and_switch_to_it((By.ID, "chat")))
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "widget-form")))
    assert "Tenant A" in browser.find_element(By.CSS_SELECTOR, ".widget-head").text
    browser.switch_to.default_content()
    _shot(browser, tmp_path, "widget-framed")
    assert _errors(browser) == []
