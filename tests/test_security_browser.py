"""TOTP enrolment in a real browser: an admin who must enrol lands on the enrolment page,
sees the QR code (inline SVG made by the appliance, under the CSP), enrols with a code, gets
recovery codes and then reaches the app; the browser logs no errors."""

from __future__ import annotations

import pyotp

from tests.helpers import PASSWORD
from tests.test_browser import _errors, browser, live_url, pytestmark  # noqa: F401  (fixtures and skips)


def test_required_admin_enrols_totp_in_a_browser(app, browser, live_url, world, clock):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)  # each click submits a form: wait for the page it brings
    app.extensions["appliance_instance"].settings["admin_totp_required"] = True
    browser.get(live_url + "/login")
    browser.find_element(By.NAME, "email").send_keys(world.email("A", "admin"))
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: "/login" not in d.current_url)
    browser.get(f"{live_url}/t/{world.tenants['A'].id}/inbox")
    assert browser.current_url.endswith("/account/totp")
    browser.find_element(By.CSS_SELECTOR, "main form button.primary").click()
    qr = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".qr svg")))
    assert qr.size["width"] >= 100 and qr.size["height"] >= 100
    secret = browser.find_element(By.CSS_SELECTOR, "p.muted code").text
    browser.find_element(By.NAME, "code").send_keys(pyotp.TOTP(secret).at(clock()))
    browser.find_element(By.CSS_SELECTOR, "main form button.primary").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "ul.codes code")))
    codes = browser.find_elements(By.CSS_SELECTOR, "ul.codes code")
    assert len(codes) == 10
    browser.get(f"{live_url}/t/{world.tenants['A'].id}/inbox")
    assert browser.find_element(By.CSS_SELECTOR, ".tenant-name").text == "Tenant A"
    assert _errors(browser) == []
