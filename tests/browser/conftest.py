"""Browser tests: Debian's headless Chromium, driven by Selenium, against pytest-django's live server.

Selenium rather than Playwright: Playwright's sync API runs an event loop in the test's
thread, and Django's ORM then refuses to run in that thread (SynchronousOnlyOperation),
while these tests read rows between clicks. Chromium and chromedriver are Debian's
(`scripts/bootstrap.sh --with-browser`, run by `make test`): Selenium is pointed at both,
so Selenium Manager never tries to download a browser or a driver.

`live_server` is pytest-django's: a threaded server in this process, on this run's private
PostgreSQL database. A test that uses it runs with `transactional_db` (pytest-django adds
it), so the rows a test writes are committed and visible to the server's thread and to the
worker subprocesses, and the tables are emptied after the test.

When a browser test fails, the page it was on is saved as var/browser-artifacts/<test>.png
(and .html), and the path is shown with the failure.

With WRITE_SCREENSHOTS=<folder> (e.g. docs/screenshots), the tests also save the report's
screenshots there; without it they write nothing outside var/.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support import ROOT, WorkerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "var" / "browser-artifacts"
WINDOW = (1280, 900)
REPORT_WIDTH = 1600

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
        _wait_for_live_server_requests()


def _wait_for_live_server_requests(timeout: float = 10.0) -> None:
    """Let the live server's request threads see the browser's sockets close.

    Each keep-alive connection from the browser has a thread of its own in the live
    server, holding a database connection until its socket closes; unjoined, they would
    still be connected when pytest-django drops the test database.
    """
    for thread in threading.enumerate():
        if "process_request_thread" in thread.name:
            thread.join(timeout)


@pytest.fixture
def page(browser, live_server):
    """The browser, signed out, with `page.url(path)` and `page.login(user)` for this test's server."""
    browser.delete_all_cookies()
    yield Page(browser, live_server.url)
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
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        element.click()
        WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(element))

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
    ).start()
    yield worker
    worker.stop()


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
