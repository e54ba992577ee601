"""Browser tests: Debian's headless Chromium, driven by Selenium, against the real web process.

The server is the Procfile's `web` process (gunicorn with gunicorn.conf.py, the product's
static file storage on a collectstatic of this run: the session's `web` fixture), not
Django's live test server, which serves static files itself and so hid that nothing
served them under `make run`. Each page a test opens is checked to be styled (the admin's
stylesheet loaded and applied) and to have loaded nothing from another host (Chromium's
network events, from its performance log).

Selenium rather than Playwright: Playwright's sync API runs an event loop in the test's
thread, and Django's ORM then refuses to run in that thread (SynchronousOnlyOperation),
while these tests read rows between clicks. Chromium and chromedriver are Debian's
(`scripts/bootstrap.sh --with-browser`, run by `make test`): Selenium is pointed at both,
so Selenium Manager never tries to download a browser or a driver.

The web process and the worker subprocesses see committed rows only: the tests run with
`transactional_db` (`django_db(transaction=True)`), so the rows a test writes are committed,
and the tables are emptied after the test.

When a browser test fails, the page it was on is saved as var/browser-artifacts/<test>.png
(and .html), and the path is shown with the failure.

With WRITE_SCREENSHOTS=<folder> (e.g. docs/screenshots), the tests also save the report's
screenshots there; without it they write nothing outside var/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import ROOT, WorkerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "var" / "browser-artifacts"
WINDOW = (1280, 900)
REPORT_WIDTH = 1600
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"  # the admin's --header-bg (#417690), light theme

# Headless, and nothing that reaches out to Google's hosts (this network is closed, and a
# test should not depend on it anyway). --no-sandbox: the suite runs as root here.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
    "--password-store=basic", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


MISSING = f"{CHROMIUM} or {CHROMEDRIVER} missing: run scripts/bootstrap.sh --with-browser (make test does)"


def browser_installed() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def pytest_collection_modifyitems(config, items):
    """On a developer's machine without Chromium, skip (listed in the summary); in CI, fail."""
    if browser_installed() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=MISSING)
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser(django_db_setup):
    """One headless Chromium for the session, with a fresh profile of its own.

    It depends on the test database so that it quits (and the live server's threads let go
    of their connections) before the database is dropped.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not browser_installed():
        pytest.fail(MISSING)
    profile = tempfile.mkdtemp(prefix="fitness-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # network events: Page.requests()
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    log_dir = ROOT / "var" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, log_output=str(log_dir / "chromedriver.log")), options=options
    )
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, web, transactional_db):
    """The browser, signed out, on the session's web process (gunicorn), with `page.login(user)` and more."""
    browser.delete_all_cookies()
    page_ = Page(browser, web.url)
    page_.requests()  # forget the previous test's network events
    yield page_
    browser.delete_all_cookies()


class Page:
    """Small helpers over the Selenium driver, named after what a person does."""

    def __init__(self, driver, base_url: str):
        self.driver = driver
        self.base_url = base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    def open(self, path: str) -> None:
        self.driver.get(self.url(path))

    def requests(self) -> list[str]:
        """The URLs the browser requested since the last call (Chromium's Network.requestWillBeSent).

        Without the ones the browser blocked before sending them (a Content-Security-Policy's
        work: Network.loadingFailed with a blockedReason) and the browser's own pages (chrome:).
        """
        requested, blocked = {}, set()
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                requested.setdefault(params["requestId"], []).append(params["request"]["url"])
            elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
                blocked.add(params["requestId"])
        return [url for request_id, urls in requested.items() if request_id not in blocked for url in urls
                if urlsplit(url).scheme not in ("chrome", "chrome-extension", "devtools")]

    def assert_nothing_from_another_host(self) -> list[str]:
        """Every request since the last check went to this test's server; returns them."""
        server = urlsplit(self.base_url).netloc
        urls = self.requests()
        elsewhere = [url for url in urls if urlsplit(url).scheme not in ("data", "blob", "about")
                     and urlsplit(url).netloc != server]
        assert not elsewhere, f"requests to another host than {server}: {elsewhere}"
        return urls

    def assert_styled(self) -> None:
        """The admin's stylesheet loaded and applies: its header is not what an unstyled page shows."""
        loaded = self.driver.execute_script(
            # a sheet that did not load (a 404) has no rules to read: reading them throws
            "const rules = s => { try { return s.cssRules.length } catch (error) { return 0 } };"
            "return [...document.styleSheets].filter(s => s.href && rules(s)).map(s => s.href)"
        )
        assert any("/static/admin/css/base." in href for href in loaded), f"admin's base.css not applied: {loaded}"
        styled, unstyled = self.driver.execute_script(
            "const header = document.getElementById('header');"
            "const colour = () => getComputedStyle(header).backgroundColor;"
            "const styled = colour();"
            "for (const sheet of document.styleSheets) sheet.disabled = true;"
            "const unstyled = colour();"
            "for (const sheet of document.styleSheets) sheet.disabled = false;"
            "return [styled, unstyled];"
        )
        assert styled != unstyled, f"the header looks unstyled ({styled})"
        assert styled == ADMIN_HEADER_BACKGROUND, styled

    @property
    def path(self) -> str:
        current = self.driver.current_url
        return current[len(self.base_url):] if current.startswith(self.base_url) else current

    @property
    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click_and_wait(self, element) -> None:
        """Click something that loads a new page, and wait until the old one is gone."""
        from selenium.webdriver.support.wait import WebDriverWait

        element.click()
        WebDriverWait(self.driver, 20).until(lambda driver: is_stale(element))

    def login(self, user, password: str | None = None, *, next_path: str = "/admin/") -> None:
        """Sign in through the admin's login form, as a person would (factories' password by default)."""
        self.driver.delete_all_cookies()
        self.open(f"/admin/login/?next={next_path}")
        self.find("#id_username").send_keys(user.get_username())
        self.find("#id_password").send_keys(password or f"{user.get_username()}-pass")
        self.click_and_wait(self.find("#login-form [type=submit]"))
        assert not self.find_all("#login-form"), f"login of {user} failed:\n{self.text}"

    def wait_until(self, condition, timeout: float = 20.0):
        """Wait for something the page does by itself (an image loading); returns the condition's value."""
        from selenium.webdriver.support.wait import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(lambda _driver: condition())

    def fetch_status(self, path: str) -> int:
        """The HTTP status of a GET from this page, with the signed-in user's cookies (no redirects followed)."""
        return self.driver.execute_script(
            "return fetch(arguments[0], {credentials: 'same-origin', redirect: 'manual', cache: 'no-store'})"
            ".then(response => response.type === 'opaqueredirect' ? 302 : response.status)",
            self.url(path),
        )

    def report_screenshot(self, name: str, *, full_page: bool = False) -> Path | None:
        """Save the window (or the whole page) as <WRITE_SCREENSHOTS>/<name>.png when that variable is set."""
        folder = os.environ.get("WRITE_SCREENSHOTS")
        if not folder:
            return None
        target = (ROOT / folder / f"{name}.png").resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        # Wider than the tests' window and without the admin's navigation sidebar (on this page
        # only), so that a list shows all its columns
        self.driver.set_window_size(REPORT_WIDTH, WINDOW[1])
        self.driver.execute_script(
            "document.getElementById('main')?.classList.remove('shifted');"
            "for (const id of ['nav-sidebar', 'toggle-nav-sidebar']) {"
            "  const element = document.getElementById(id); if (element) element.style.display = 'none'; }"
        )
        if full_page:
            height, inner = self.driver.execute_script(
                "return [document.documentElement.scrollHeight, window.innerHeight]"
            )
            chrome = self.driver.get_window_size()["height"] - inner  # the window's own bars, even headless
            self.driver.set_window_size(REPORT_WIDTH, max(WINDOW[1], height + chrome))
        try:
            self.driver.save_screenshot(str(target))
        finally:
            self.driver.set_window_size(*WINDOW)
        return target


@pytest.fixture(scope="module")
def mlops_worker(django_db_setup, django_db_blocker, broker_vhost, log_dir):
    """A real worker of the worker-mlops pool (`task.confirmed` and `mlops`).

    Module-scoped, so it has stopped before tests/ml/ starts its own: two workers on one
    vhost would take each other's messages.
    """
    worker = WorkerProcess(
        ["task.confirmed", "mlops"], name="browser-mlops", concurrency=1, log_dir=log_dir, TORCH_NUM_THREADS="1"
    )
    try:
        yield worker.start(timeout=120)
    finally:
        worker.stop()  # also when it never got ready


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test leaves a screenshot and the page source in var/browser-artifacts/."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when == "teardown":
        return
    driver = item.funcargs.get("browser")
    page_ = item.funcargs.get("page")
    driver = driver or getattr(page_, "driver", None)
    if driver is None:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / re.sub(r"[^\w.-]+", "_", item.name)
    try:
        driver.save_screenshot(f"{stem}.png")
        Path(f"{stem}.html").write_text(driver.page_source, encoding="utf-8")
        saved = f"screenshot {stem}.png\npage source {stem}.html\nat {driver.current_url}"
    except Exception as exc:  # the browser itself may be what failed
        saved = f"could not save the page: {exc!r}"
    report.sections.append(("browser artifacts", saved))
    print(f"\nbrowser artifacts of {item.nodeid}:\n{saved}")


# ChromeDriver 156 sometimes answers a question about an element of the page being left with this
# error instead of a stale element reference (a clean-clone CI run: a login's submit button, while
# the admin's index loaded); both mean the old page is gone.
_LEFT_DOCUMENT = "does not belong to the document"


def is_stale(element) -> bool:
    """Whether `element`'s page has been replaced (selenium's staleness_of, and the error above)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if _LEFT_DOCUMENT in str(exc):
            return True
        raise
    return False
