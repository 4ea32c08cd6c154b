"""The AFE pages in a real browser: headless Chromium against a live server and a real scheduler.

One scenario, driven as a person would (labels, button and link texts):
log in; create a job from the form; watch its job page change from Queued to
Running to Completed while the page is never reloaded (its entries table
refreshes itself via afe/static/afe/poll.js); create a second job that is held
running, follow its debug log as lines are written to it, abort it from its
job page and see it end Aborted.

The scheduler is stepped from the test thread while the browser waits (see
``Lab.wait``): its ticks never race a background thread's teardown, on SQLite
or MariaDB, and a failing tick fails the test right where it happened. The
stand-in autoserv (tests/bin/fake_autoserv) writes no debug log, so the test
appends to ``debug/autoserv.DEBUG`` itself, as autoserv would.

Screenshots of every page go to the test's tmp_path; the jobs list and the
finished job's page are copied to docs/screenshots/ for the README when
UPDATE_SCREENSHOTS=1.
Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's ``chromium`` and
``chromium-driver``): skipped without them, failed without them when CI=true.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from afe.models import HostQueueEntry, Job

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CONTROL = "job.run_test('sleeptest')\n"
PASSWORD = "correct horse battery staple"

Status = HostQueueEntry.Status


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser():
    """A headless Chromium driven through Debian's chromedriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -r requirements.txt)")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            _missing(f"{binary} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


class Lab:
    """The test's hands: the browser, the scheduler it steps, and the screenshots it keeps."""

    def __init__(self, driver: Any, scheduler: Any, base_url: str, shots: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.scheduler, self.base_url, self.shots = driver, scheduler, base_url, shots
        self.By = By
        shots.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ finding things as a person would

    def label(self, text: str):
        """The form control whose <label> reads ``text``."""
        label = self.driver.find_element(self.By.XPATH, f"//label[normalize-space()={_xpath_str(text)}]")
        return self.driver.find_element(self.By.ID, label.get_attribute("for"))

    def button(self, text: str):
        return self.driver.find_element(self.By.XPATH, f"//button[normalize-space()={_xpath_str(text)}]")

    def link(self, text: str):
        return self.driver.find_element(self.By.LINK_TEXT, text)

    def go(self, element, then: Callable[[], None] | None = None) -> None:
        """Click ``element`` (then do ``then``, e.g. accept a confirm) and wait for the next page to load."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # A mark on the old page's window: a new page has a fresh window object without it.
        # (Waiting for the old <html> to go stale races Chromium's "node does not belong to
        # the document" error while the old page is being torn down.)
        self.driver.execute_script("window.__leaving = true;")
        element.click()
        if then:
            then()
        # Between pages the script itself can fail: keep waiting.
        WebDriverWait(self.driver, 15, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script("return !window.__leaving && document.readyState === 'complete';"))

    def text(self) -> str:
        return self.driver.find_element(self.By.TAG_NAME, "body").text

    def entry_status(self, hostname: str) -> str:
        """The Status cell of ``hostname``'s row in the job page's Hosts table ('' if none yet)."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(5):  # the poller may swap the table between finding the cell and reading it
            try:
                cells = self.driver.find_elements(
                    self.By.XPATH, f"//tr[td/a[normalize-space()={_xpath_str(hostname)}]]/td[3]")
                return cells[0].text.strip() if cells else ""
            except StaleElementReferenceException:
                time.sleep(0.05)
        return ""

    def job_status(self) -> str:
        """The job page's own Status field (above the Hosts table), e.g. "1 Running"."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(5):
            try:
                return self.driver.find_element(
                    self.By.XPATH, "//dl/dt[normalize-space()='Status']/following-sibling::dd[1]").text.strip()
            except StaleElementReferenceException:
                time.sleep(0.05)
        return ""

    # ------------------------------------------------------------ time and pictures

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        """Step the scheduler until ``condition()`` (which may look at the browser) is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            self.scheduler.tick()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.shoot("timeout")
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; page says:\n{self.text()}")
            time.sleep(0.1)

    def shoot(self, name: str) -> Path:
        """A PNG of the whole page (the window grows to the page's height for the picture)."""
        driver = self.driver
        width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
        page = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        driver.set_window_size(width, min(max(int(page) + 120, height), 4000))
        path = self.shots / f"{name}.png"
        try:
            assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        finally:
            driver.set_window_size(width, height)
        return path

    def create_job(self, name: str, hostname: str) -> int:
        """Fill the create form (name, control file, one host) and submit; the new job's id."""
        from selenium.webdriver.support.ui import Select

        self.go(self.link("Create job"))
        assert self.driver.find_element(self.By.TAG_NAME, "h1").text == "Create job"
        self.label("Name").send_keys(name)
        control = self.label("Control file")
        control.clear()
        control.send_keys(CONTROL)
        Select(self.label("Hosts")).select_by_visible_text(hostname)
        self.shoot(f"create-{name}")
        self.go(self.button("Submit job"))
        heading = self.driver.find_element(self.By.TAG_NAME, "h1").text
        assert heading.startswith("Job ") and heading.endswith(f": {name}"), self.text()
        return int(heading.split()[1].rstrip(":"))


def _xpath_str(text: str) -> str:
    return f'"{text}"' if '"' not in text else "concat('" + "', '\"', '".join(text.split('"')) + "')"


def test_a_person_runs_follows_and_aborts_jobs_in_a_browser(
        browser, live_server, scheduler, autoserv, make_host, tmp_path, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_user("alice", password=PASSWORD)
    make_host("host1", ["board:x"])
    make_host("host2", ["board:x"])
    autoserv.set("job", "hold")  # every job runs until the test releases (or aborts) it
    lab = Lab(browser, scheduler, live_server.url, tmp_path / "screenshots")
    started = time.monotonic()
    try:
        _scenario(lab, autoserv)
    finally:
        autoserv.release("job", 1)  # whatever is still held ends now, so no process outlives the test
        try:
            scheduler.run_until_idle(timeout=20)
        finally:
            print(f"browser scenario took {time.monotonic() - started:.1f}s; screenshots in {lab.shots}")


def _scenario(lab: Lab, autoserv) -> None:
    driver, By = lab.driver, lab.By

    # Log in: the jobs list is behind the login form.
    driver.get(lab.base_url + "/afe/jobs/")
    assert "/afe/login/" in driver.current_url
    lab.label("Username").send_keys("alice")
    lab.label("Password").send_keys(PASSWORD)
    lab.shoot("login")
    lab.go(lab.button("Log in"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Jobs"
    assert "alice" in driver.find_element(By.CSS_SELECTOR, "nav.bar").text

    # A job from the form lands on its page, Queued.
    first = lab.create_job("browser-first", "host1")
    assert f"Created job {first} (browser-first)." in lab.text()
    assert lab.entry_status("host1") == "Queued" and lab.job_status() == "1 Queued"
    marker = uuid.uuid4().hex
    driver.execute_script("window.__afeMarker = arguments[0];", marker)
    origin = driver.execute_script("return performance.timeOrigin;")

    # The page follows the job without a reload: Running (held), then Completed once released.
    lab.wait(lambda: lab.entry_status("host1") == "Running", "job 1 to show Running")
    assert lab.job_status() == "1 Running"  # the job's Status field follows its Hosts table
    assert lab.link("follow").is_displayed()
    lab.shoot("job-running")
    autoserv.release("job:host1", 0)
    lab.wait(lambda: lab.entry_status("host1") == "Completed", "job 1 to show Completed")
    assert "1 Completed" in driver.find_element(By.CSS_SELECTOR, "[data-poll] .summary").text
    assert lab.job_status() == "1 Completed"
    assert not driver.find_elements(By.LINK_TEXT, "follow")  # nothing left to follow
    assert driver.execute_script("return window.__afeMarker;") == marker, "the job page was reloaded"
    assert driver.execute_script("return performance.timeOrigin;") == origin, "the job page was reloaded"
    assert Job.objects.get(pk=first).hostqueueentry_set.get().status == Status.COMPLETED
    job_shot = lab.shoot("job")

    # A second job, held running: follow its debug log as lines are written to it.
    second = lab.create_job("browser-second", "host2")
    lab.wait(lambda: lab.entry_status("host2") == "Running"
             and driver.find_elements(By.LINK_TEXT, "follow"), "job 2 to show Running with a follow link")
    entry = Job.objects.get(pk=second).hostqueueentry_set.get()
    log = Path(django_settings.RESULTS_DIR) / entry.job.tag() / entry.execution_subdir / "debug" / "autoserv.DEBUG"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write("10:00:00 INFO | autoserv starting on host2\n")
    lab.go(lab.link("follow"))
    assert driver.current_url.endswith(f"/afe/follow/{entry.job.tag()}/{entry.execution_subdir}/debug/autoserv.DEBUG")
    pre = driver.find_element(By.CSS_SELECTOR, "pre.log")
    lab.wait(lambda: "autoserv starting on host2" in pre.text, "the log's first line on the follow page")
    with log.open("a") as out:
        out.write("10:00:01 INFO | running sleeptest\n10:00:02 DEBUG | still running\n")
    lab.wait(lambda: "still running" in pre.text, "the appended lines on the follow page")
    assert pre.text.splitlines() == ["10:00:00 INFO | autoserv starting on host2",
                                     "10:00:01 INFO | running sleeptest",
                                     "10:00:02 DEBUG | still running"], pre.text
    lab.shoot("follow")

    # Back to it through the jobs list, and abort it from its page.
    lab.go(lab.link("Jobs"))
    lab.wait(lambda: "browser-second" in lab.text(), "the jobs list")
    lab.shoot("jobs-running")
    lab.go(lab.link("browser-second"))
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Job {second}: browser-second"
    def confirm() -> None:
        alert = driver.switch_to.alert
        assert alert.text == f"Abort job {second} and its child jobs?"
        alert.accept()

    lab.go(lab.button("Abort job"), then=confirm)
    lab.wait(lambda: "Abort requested for 1 entry." in lab.text(), "the abort to be confirmed")
    lab.wait(lambda: lab.entry_status("host2") == "Aborted", "job 2 to show Aborted", timeout=25)
    assert lab.job_status() == "1 Aborted"
    assert Job.objects.get(pk=second).hostqueueentry_set.get().status == Status.ABORTED
    lab.shoot("job-aborted")

    # The jobs list shows how each ended.
    lab.go(lab.link("Jobs"))
    rows = {row.find_element(By.XPATH, "td[4]").text: row.find_element(By.XPATH, "td[8]").text
            for row in driver.find_elements(By.CSS_SELECTOR, "tbody[data-poll] tr")}
    assert rows == {"browser-first": "1 Completed", "browser-second": "1 Aborted"}, rows
    jobs_shot = lab.shoot("jobs")

    # On a phone: no page scrolls sideways; wide tables scroll inside their own box.
    driver.set_window_size(390, 844)
    for page, link in (("jobs-phone", None), ("job-phone", "browser-first"), ("hosts-phone", "Hosts")):
        if link:
            lab.go(lab.link(link))
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{page}: the page is {overflow}px wider than a phone's screen"
        lab.shoot(page)

    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # the README's pictures, refreshed on request only
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jobs_shot, DOCS_SCREENSHOTS / "jobs.png")
        shutil.copyfile(job_shot, DOCS_SCREENSHOTS / "job.png")
