"""Regenerate the screenshots in this folder: the main pages at desktop and phone size.

    .venv/bin/pip install -e '.[docs]'       # selenium and Pillow
    .venv/bin/python docs/screenshots/make.py

Needs headless Chromium and its driver (apt-get install chromium chromium-driver, as the
browser tests do). It builds a throwaway instance with the data of ``appliance demo``
(the same seed), spreads its conversations over the last two weeks so that the charts
have days to show, serves it on 127.0.0.1 and photographs each page as the role that
uses it. The PNGs are reduced to a 128-colour palette: small enough to commit.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent

DESKTOP = {"width": 1280, "height": 820, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True}
DAYS = 14


def build_instance(home: Path):
    from appliance.core.config import Instance
    from appliance.web import create_app
    from appliance.web import provisioning as setup

    setup.ensure_config(home)
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    return create_app(instance=instance)


def seed(app) -> dict:
    """The demo's data, its conversations moved back 0 to 13 days, and the report rows for them."""
    from appliance.core.calendar import today, zone
    from appliance.web.channels.config import record_error
    from appliance.web.demo import seed as demo_seed
    from appliance.web.models.contact_center import Article, Channel, Conversation, Message
    from appliance.web.models.reports import ConversationTiming
    from appliance.web.models.tenancy import Tenant
    from appliance.web.services import reports

    rng = random.Random(16)
    with app.app_context():
        demo_seed(count=240, rng=random.Random(7))
        for conv in Conversation.select():
            back = dt.timedelta(days=min(rng.randrange(DAYS), rng.randrange(DAYS)), minutes=rng.randrange(600))
            Conversation.update(created_at=conv.created_at - back, last_message_at=conv.last_message_at - back
                                ).where(Conversation.id == conv.id).execute()
            for message in Message.select(Message.id, Message.created_at).where(Message.conversation == conv.id):
                Message.update(created_at=message.created_at - back).where(Message.id == message.id).execute()
            timing = ConversationTiming.get_or_none(ConversationTiming.conversation == conv.id)
            if timing is not None:
                ConversationTiming.update(
                    first_response_at=timing.first_response_at and timing.first_response_at - back,
                    resolved_at=timing.resolved_at and timing.resolved_at - back,
                ).where(ConversationTiming.conversation == conv.id).execute()
        tz = zone(app.extensions["appliance_instance"].settings)
        for n in range(DAYS):
            reports.record_day(today(tz) - dt.timedelta(days=n), tz)
        bank = Tenant.get(Tenant.name == "Horizon Bank")
        record_error(Channel.get(Channel.name == "Nordtel messenger"), "401 from the service: the access token "
                                                                       "was revoked; paste a new one")
        conv = (Conversation.select().where(Conversation.tenant == bank.id, Conversation.status == "open")
                .order_by(Conversation.message_count.desc(), Conversation.id).first())
        article = Article.get(Article.title == "Blocked cards: what to check")
        return {"bank": bank.id, "conversation": conv.id, "article": article.id}


def serve(app):
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=8, ident="screenshots")
    threading.Thread(target=server.run, daemon=True).start()
    return server, f"http://127.0.0.1:{server.effective_port}"


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--no-first-run", "--force-color-profile=srgb", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver), options=options)


def login(driver, base, email):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from appliance.web.demo import DEMO_PASSWORD

    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: "/login" not in d.current_url)


def shoot(driver, base, path, name, sizes):
    from selenium.webdriver.support.ui import WebDriverWait

    for size_name, metrics in sizes:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.get(base + path)
        WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
        target = HERE / f"{name}-{size_name}.png"
        driver.save_screenshot(str(target))
        shrink(target)
        print(f"{target.relative_to(HERE.parents[1])}: {target.stat().st_size // 1024} KiB")


def shrink(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main() -> None:
    both = [("desktop", DESKTOP), ("phone", PHONE)]
    desktop = [("desktop", DESKTOP)]
    with tempfile.TemporaryDirectory(prefix="appliance-shots-") as tmp:
        app = build_instance(Path(tmp) / "home")
        app.extensions["appliance_instance"].settings["live_stream_seconds"] = 2
        ids = seed(app)
        server, base = serve(app)
        driver = browser(Path(tmp) / "chromium")
        bank, conv = ids["bank"], ids["conversation"]
        try:
            shoot(driver, base, "/login", "login", both)
            login(driver, base, "provider.admin@demo.test")
            shoot(driver, base, "/dashboard", "dashboard", both)
            shoot(driver, base, "/licence", "licence", desktop)
            shoot(driver, base, "/admin/sync/", "sync", desktop)
            login(driver, base, "bank.agent@demo.test")
            shoot(driver, base, f"/t/{bank}/inbox?sub=1", "inbox", both)
            shoot(driver, base, f"/t/{bank}/conversations/{conv}", "conversation", both)
            shoot(driver, base, f"/t/{bank}/kb/{ids['article']}", "knowledge-base", desktop)
            login(driver, base, "bank.supervisor@demo.test")
            shoot(driver, base, f"/t/{bank}/supervisor", "supervisor", desktop)
            login(driver, base, "bank.admin@demo.test")
            shoot(driver, base, f"/t/{bank}/reports", "reports", both)
            shoot(driver, base, f"/t/{bank}/admin/users", "users", desktop)
        finally:
            driver.quit()
            server.close()


if __name__ == "__main__":
    main()
