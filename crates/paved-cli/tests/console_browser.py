"""Drives paved's web console in a real headless Chromium (Debian's chromium +
chromium-driver, through Selenium's WebDriver client).

Usage: console_browser.py BASE_URL ADMIN_TOKEN VIEWER_TOKEN SCREENSHOT_DIR

Run by crates/paved-cli/tests/server_e2e.rs against a server with real
applied state; prints one line per step and `ok` at the end, or fails with
an assertion naming what the page did not show.
"""

import os
import sys

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

base, admin, viewer, shots = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)


def browser(javascript=True):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("PAVED_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    service = Service(executable_path=os.environ.get("PAVED_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def shot(d, name):
    path = os.path.join(shots, name + ".png")
    d.save_screenshot(path)
    print("screenshot", path)


def text(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text


def wait_for(d, css, check, seconds=10):
    """Waits until the element's text passes `check` (pages load after clicks;
    while one is replaced, Chromium reports missing, stale or foreign nodes)."""
    def ready(d):
        try:
            return check(text(d, css))
        except WebDriverException:
            return False
    try:
        WebDriverWait(d, seconds).until(ready)
    except TimeoutException:
        raise AssertionError(f"{css} never passed the check on {d.current_url}:\n{d.page_source[:3000]}")


def sign_in(d, token):
    d.get(base + "/console")
    assert "/console/login" in d.current_url, d.current_url
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(d, "h1", lambda t: t == "What runs where")


def sign_out(d):
    d.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(d, 10).until(lambda d: "/console/login" in d.current_url)


d = browser()
try:
    # Sign-in page; a wrong token is refused with a message.
    d.get(base + "/console")
    assert d.find_element(By.CSS_SELECTOR, "label[for=token]").text == "API token"
    d.find_element(By.ID, "token").send_keys("pvd_" + "0" * 64)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(d, "[role=alert]", lambda t: "unknown API token" in t)
    shot(d, "01-login-refused")

    # The matrix after a real apply: every demo service healthy in dev.
    sign_in(d, viewer)
    rows = {r.find_element(By.CSS_SELECTOR, "th").text.split()[0]: r for r in d.find_elements(By.CSS_SELECTOR, "#matrix tbody tr")}
    assert set(rows) >= {"api", "web", "worker"}, rows.keys()
    for name, row in rows.items():
        if name not in ("api", "web", "worker"):
            continue
        cell = row.find_element(By.CSS_SELECTOR, "td[data-environment=dev]")
        assert cell.get_attribute("data-health") == "healthy", (name, cell.text)
        assert "by e2e" in cell.text, cell.text  # `paved up` ran as PAVED_ACTOR=e2e
    assert "signed in as serviceaccount:e2e-viewer" in text(d, "header")
    shot(d, "02-matrix")
    print("matrix: api, web, worker healthy in dev")

    # Follow links: a service, then its environment.
    d.find_element(By.LINK_TEXT, "api").click()
    wait_for(d, "h1", lambda t: t == "Service api")
    assert "registry.example.com/payments/api" in d.page_source
    shot(d, "03-service")
    d.find_element(By.CSS_SELECTOR, "#service-environments a[href$='/dev']").click()
    wait_for(d, "h1", lambda t: t == "Environment dev")
    statuses = [td.text for td in d.find_elements(By.CSS_SELECTOR, "#resources tbody td.status")]
    assert statuses and all(s == "in sync" for s in statuses), statuses
    assert text(d, "#drift").startswith("in sync")
    # Secrets by name and version, the database password paved generated among them; never a value.
    secrets = text(d, "#secrets")
    assert "API_KEY" in secrets and "password" in secrets and "generated for" in secrets, secrets
    assert "console-canary-7d1" not in d.page_source
    shot(d, "04-environment")

    # A viewer may not apply: the page says so and why.
    d.find_element(By.CSS_SELECTOR, "form[action$='/apply'] button").click()
    wait_for(d, "h1", lambda t: t == "Not allowed")
    assert "needs the developer role" in text(d, "#error-message"), text(d, "#error-message")
    shot(d, "05-denied")
    print("viewer denied apply with the reason")
    d.get(base + "/console")
    sign_out(d)

    # An admin compares dev with production, then applies dev and watches it live.
    sign_in(d, admin)
    d.get(base + "/console/environments/dev")
    Select(d.find_element(By.ID, "parity")).select_by_value("production")
    d.find_element(By.CSS_SELECTOR, "form[method=get] button").click()
    wait_for(d, "#parity-result", lambda t: "replicas" in t)
    parity = text(d, "#parity-result")
    assert "replicas" in parity and "production" in parity, parity
    assert "no undeclared differences" in parity and "parameter" in parity, parity
    shot(d, "06-parity")
    d.find_element(By.CSS_SELECTOR, "form[action$='/apply'] button").click()
    WebDriverWait(d, 10).until(lambda d: "/console/operations/" in d.current_url)
    try:
        wait_for(d, "#op-status", lambda t: t in ("succeeded", "failed", "cancelled"), seconds=90)
    except AssertionError:
        shot(d, "07-progress-timeout")
        raise
    assert text(d, "#op-status") == "succeeded", d.page_source
    done, total = text(d, "#op-done"), text(d, "#op-total")
    assert done == total and int(total) > 0, (done, total)
    assert "local.workload/api" in text(d, "#op-nodes")
    shot(d, "07-progress")
    print("apply followed live to", text(d, "#op-status"), done, "of", total)

    # The audit log shows the viewer's denied attempt, filtered.
    d.get(base + "/console/audit")
    d.find_element(By.NAME, "actor").send_keys("serviceaccount:e2e-viewer")
    d.find_element(By.CSS_SELECTOR, "form[aria-label='Filter events'] button").click()
    wait_for(d, "#audit tbody", lambda t: "denied" in t)
    audit = text(d, "#audit tbody")
    assert "environment.apply" in audit and "denied" in audit, audit
    shot(d, "08-audit")
finally:
    d.quit()

# Reading works without JavaScript.
d = browser(javascript=False)
try:
    sign_in(d, viewer)
    assert d.find_elements(By.CSS_SELECTOR, "#matrix tbody tr"), d.page_source
    d.get(base + "/console/environments/dev")
    assert d.find_elements(By.CSS_SELECTOR, "#resources tbody tr")
    shot(d, "09-no-javascript")
finally:
    d.quit()
print("ok")
