"""The provider's sales path in a real browser (the Buttle flow): an account's admin applies for a
program, the provider's manager reviews and accepts, the contract assigns the program so the
account can run the channel, and the account's admin opens and downloads the invoice."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.core.licence.testing import TestSigner
from appliance.web.business import catalogue, invoicing
from appliance.web.business.models import Application, Contract, Invoice
from appliance.web.services import catalogue as channels
from appliance.web.services import licence as licence_service
from tests import test_browser as browser_support
from tests.helpers import START, build_world, make_instance, running_app, trust_test_signer

pytestmark = browser_support.pytestmark  # the same skips: chromium, chromedriver, selenium
browser = browser_support.browser  # the headless Chromium fixture
live_url = browser_support.live_url  # the app served over loopback


@pytest.fixture
def app(tmp_path, monkeypatch):
    signer = TestSigner()
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    with running_app(make_instance(tmp_path / "home", f"sqlite:///{tmp_path / 'app.db'}")) as app:
        with app.app_context():
            licence_service.service().install(signer.issue(now=START, max_tenants=20, max_seats=40,
                                                           programs=["webchat", "email", "api"]))
        yield app


@pytest.fixture
def world(app):
    with app.app_context():
        world = build_world()
        catalogue.publish("email", dt.date(2030, 1, 1), monthly_fee_minor=1500, setup_fee_minor=2500)
        return world


_login = browser_support.log_in


def test_application_review_contract_program_and_invoice(app, browser, live_url, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    a = world.tenants["A"]
    with app.app_context():
        assert "email" not in licence_service.tenant_programs(a)
        with pytest.raises(licence_service.LicenceLimitError):
            channels.create_channel(a, kind="email", name="Support mailbox")

    # The account's admin asks for e-mail with three seats.
    _login(browser, live_url, world.email("A", "admin"))
    wait.until(EC.url_contains(f"/t/{a.id}/"))
    browser.get(f"{live_url}/t/{a.id}/billing")
    browser.find_element(By.CSS_SELECTOR, "#request-form").find_element(By.XPATH, "..").click()  # open <details>
    browser.find_element(By.CSS_SELECTOR, "#request-form input[name=lines]").send_keys("email:3")
    browser.find_element(By.CSS_SELECTOR, "#request-form button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "sent to the provider"))

    # The provider's manager reviews: a comment, then accept.
    _login(browser, live_url, world.email("P", "admin"))
    browser.get(f"{live_url}/business/applications")
    browser.find_element(By.CSS_SELECTOR, "#applications a").click()
    wait.until(EC.presence_of_element_located((By.ID, "lines")))
    assert "email:3" in browser.find_element(By.ID, "lines").text
    assert "45.00 EUR a month, 25.00 EUR once" in browser.find_element(By.ID, "app-quote").text
    browser.find_element(By.NAME, "body").send_keys("Checked with sales: standard terms.")
    browser.find_element(By.CSS_SELECTOR, "button[value=comment]").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "comments"), "standard terms"))
    browser.find_element(By.ID, "accept").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "h1"), "accepted"))

    with app.app_context():
        application = Application.get()
        assert application.state == "accepted" and application.contract_id
        assert Contract.get_by_id(application.contract_id).status == "active"
        assert "email" in licence_service.tenant_programs(a)
        channel = channels.create_channel(a, kind="email", name="Support mailbox")  # the agents can use it now
        assert channel.id
        (invoice,) = [i for i in invoicing.run(dt.date(2030, 4, 1), dt.date(2030, 5, 1), currency="EUR",
                                              discounts={}) if i.account_id == a.id]
        number = invoicing.issue(invoice).number
        expected_total = Invoice.get_by_id(invoice.id).total_minor

    # The account's admin sees the invoice and downloads it.
    _login(browser, live_url, world.email("A", "admin"))
    browser.get(f"{live_url}/t/{a.id}/billing")
    browser.find_element(By.LINK_TEXT, "view").click()
    total = wait.until(EC.presence_of_element_located((By.ID, "invoice-total"))).text
    assert total == f"{expected_total / 100:.2f} EUR"
    csv_text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/t/{a.id}/billing/invoice.csv?number={number}').then(r => r.text()).then(done);")
    assert csv_text.startswith("invoice,kind,") and "email: setup" in csv_text
