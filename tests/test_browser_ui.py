"""The operator UI for each role in a real browser: accessibility checked by axe-core on
the main pages, the supervisor's and the account admin's walks, and a phone-sized screen.

axe-core is the npm package pinned in tests/js/package-lock.json (tests/setup.sh runs
``npm ci --prefix tests/js``); its script is injected into each page through WebDriver,
which the pages' Content-Security-Policy does not govern. A page passes when axe finds no
violation of impact "serious" or "critical" (WCAG 2.1 A/AA rules and best practices).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from tests import test_browser as browser_support
from tests.helpers import served_over_loopback

AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = (375, 740)

pytestmark = browser_support.pytestmark  # the same skips: chromium, chromedriver, selenium
browser = browser_support.browser  # the headless Chromium fixture
_errors = browser_support._errors
login = browser_support.log_in


@pytest.fixture
def live_url(app, world):
    settings = app.extensions["appliance_instance"].settings
    settings["live_stream_seconds"] = 3  # the inbox's and conversation's streams end soon after each page
    settings["live_streams_per_process"] = 8
    with served_over_loopback(app, threads=16) as url:
        yield url


def open_page(browser, url, heading=None):
    """``url``, once its document has loaded (and shows ``heading`` in its h1 when given)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    if heading:
        wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), heading))


def axe_violations(browser) -> list[str]:
    """Serious and critical axe-core findings on the current page, one line each."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run 'npm ci --prefix tests/js' (tests/setup.sh does)")
    browser.execute_script(AXE.read_text())
    browser.set_script_timeout(60)
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
        " 'best-practice']}, resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify({error: String(e)})));")
    found = json.loads(result)
    assert isinstance(found, list), found
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
            for v in found if v["impact"] in ("serious", "critical")]


def pages_by_role(world) -> dict[tuple[str, str], list[tuple[str, str]]]:
    a, conv = world.tenants["A"].id, world.objects["A"]["conversation"].id
    article = world.objects["A"]["article"].id
    return {
        ("A", "agent"): [(f"/t/{a}/inbox", "Inbox"), (f"/t/{a}/conversations/{conv}", ""),
                         (f"/t/{a}/contacts", "Contacts"), (f"/t/{a}/kb", "Knowledge"),
                         (f"/t/{a}/kb/{article}", ""), (f"/t/{a}/canned", "Canned"), ("/account", "")],
        ("A", "supervisor"): [(f"/t/{a}/reports", "Reports"), (f"/t/{a}/supervisor", "")],
        ("A", "admin"): [(f"/t/{a}/admin/users", ""), (f"/t/{a}/admin/subaccounts", ""),
                         (f"/t/{a}/admin/channels", ""), (f"/t/{a}/admin/tokens", ""),
                         (f"/t/{a}/admin/branding", ""), (f"/t/{a}/audit", ""), (f"/t/{a}/licence", "")],
        ("P", "admin"): [("/dashboard", "Dashboard"), ("/licence", "Licence"), ("/admin/sync/", "Sync"),
                         ("/admin/system/", "System")],
    }


def test_axe_finds_nothing_serious_on_the_main_pages_for_each_role(browser, live_url, world):
    found = {}
    open_page(browser, live_url + "/login")
    found["/login"] = axe_violations(browser)
    for (key, role), pages in pages_by_role(world).items():
        login(browser, live_url, world.email(key, role))
        for path, heading in pages:
            open_page(browser, live_url + path, heading)
            assert "/login" not in browser.current_url, path
            found[f"{role}@{key} {path}"] = axe_violations(browser)
    bad = {page: v for page, v in found.items() if v}
    assert not bad, "\n".join(f"{page}: {line}" for page, lines in bad.items() for line in lines)
    assert _errors(browser) == []


def test_supervisor_sees_the_queue_and_reassigns(browser, live_url, world, app):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from appliance.web.models.contact_center import Conversation

    a, conv = world.tenants["A"], world.objects["A"]["conversation"]
    agent = world.users[("A", "agent")]
    with app.app_context():
        Conversation.update(assignee=None).where(Conversation.id == conv.id).execute()
    login(browser, live_url, world.email("A", "supervisor"))
    open_page(browser, f"{live_url}/t/{a.id}/supervisor", "Supervisor")
    queue = browser.find_element(By.ID, "queues-channels").text
    assert "chat A " in queue + " "  # A's own channel has a queue ...
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#queues-channels tr") if "chat A" in r.text
               and "chat A1" not in r.text)
    assert [c.text for c in row.find_elements(By.TAG_NAME, "td")][1:3] == ["1", "1"]  # waiting, unassigned

    Select(browser.find_element(By.ID, f"assignee-{conv.id}")).select_by_value(str(agent.id))
    browser.find_element(By.ID, f"assignee-{conv.id}").find_element(By.XPATH, "./ancestor::form//button").click()
    WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"),
                                                                     f"Conversation #{conv.id} reassigned"))
    with app.app_context():
        assert Conversation.get_by_id(conv.id).assignee_id == agent.id
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#queues-channels tr") if "chat A" in r.text
               and "chat A1" not in r.text)
    assert [c.text for c in row.find_elements(By.TAG_NAME, "td")][1:3] == ["1", "0"]  # still waiting, now assigned
    assert _errors(browser) == []


def test_account_admin_filters_reports_by_subaccount_and_downloads_the_csv(browser, live_url, world, app, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from appliance.core.calendar import today, zone
    from appliance.web.services import reports

    with app.app_context():  # the worker's report rows for the world's day (one conversation per tenant)
        tz = zone(app.extensions["appliance_instance"].settings)
        reports.record_day(today(tz), tz)
    a, a1 = world.tenants["A"], world.tenants["A1"]
    wait = WebDriverWait(browser, 15)
    login(browser, live_url, world.email("A", "admin"))
    open_page(browser, f"{live_url}/t/{a.id}/reports", "Reports")
    totals = browser.find_element(By.ID, "totals")
    assert "Opened\n3" in totals.text  # A, A1 and A2

    Select(browser.find_element(By.ID, "subaccount")).select_by_value(str(a1.id))
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait.until(EC.url_contains(f"subaccount={a1.id}"))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert "Opened\n1" in browser.find_element(By.ID, "totals").text
    assert "chat A1" in browser.find_element(By.ID, "report-channels").text
    assert "chat A2" not in browser.find_element(By.ID, "report-channels").text

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.find_element(By.CSS_SELECTOR, "#report-channels-title a").click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not [p for p in downloads.glob("*.csv")]:
        time.sleep(0.1)
    files = list(downloads.glob("*.csv"))
    assert len(files) == 1, list(downloads.iterdir())
    assert files[0].name.startswith(f"report-{a.slug}-channels-")
    rows = list(csv.DictReader(io.StringIO(files[0].read_text(encoding="utf-8-sig"))))
    assert [(r[next(iter(r))], r["opened"]) for r in rows] == [("chat A1", "1")], rows
    assert _errors(browser) == []


def test_a_phone_shows_the_inbox_as_a_list_and_the_conversation_full_width(browser, live_url, world):
    from selenium.webdriver.common.by import By

    a, conv = world.tenants["A"], world.objects["A"]["conversation"]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
    login(browser, live_url, world.email("A", "admin"))
    for path, heading in ((f"/t/{a.id}/inbox", "Inbox"), (f"/t/{a.id}/conversations/{conv.id}", ""),
                          (f"/t/{a.id}/reports", "Reports"), (f"/t/{a.id}/admin/users", "")):
        open_page(browser, live_url + path, heading)
        width, scroll = browser.execute_script(
            "return [window.innerWidth, document.documentElement.scrollWidth]")
        assert width == PHONE[0] and scroll <= width, (path, scroll)
        assert axe_violations(browser) == [], path
        if path.endswith("/inbox"):
            row = browser.find_element(By.CSS_SELECTOR, "table.inbox tbody tr")
            assert row.value_of_css_property("display") == "flex"  # a card, not a table row
            assert "Contact A" in row.text and row.size["width"] <= width
        elif "/conversations/" in path:
            thread, main = (browser.find_element(By.CSS_SELECTOR, s) for s in (".split > :first-child", "main"))
            sidebar = browser.find_element(By.CSS_SELECTOR, ".split > .sidebar")
            inner = main.size["width"] - 2 * 12  # main's side padding on a phone
            assert thread.size["width"] >= inner - 2 and sidebar.location["y"] > thread.location["y"]
    assert _errors(browser) == []
