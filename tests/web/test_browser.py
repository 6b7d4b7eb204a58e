"""The pages in a real browser: Debian's headless Chromium, driven by Selenium through its
chromedriver, against Django's test server. Each page is also saved as a screenshot, into
``$OPSKIT_TEST_SCREENSHOTS`` when set (``OPSKIT_TEST_SCREENSHOTS=docs/img`` refreshes the
README's images), else into a temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from support.project import run_opskit
from support.services import unavailable

from opskit import maintenance
from opskit.web import project

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium(profile: str) -> Any:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        unavailable("chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def screenshots() -> Path:
    folder = Path(os.environ.get("OPSKIT_TEST_SCREENSHOTS") or tempfile.mkdtemp("-screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class BrowserTests(StaticLiveServerTestCase):
    browser: Any
    shots: Path

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.profile = tempfile.mkdtemp(prefix="chromium-")
        try:
            cls.browser = chromium(cls.profile)
        except BaseException:
            super().tearDownClass()
            raise
        cls.shots = screenshots()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.browser.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)
        super().tearDownClass()

    def setUp(self) -> None:
        from django.contrib.auth.models import User

        User.objects.create_superuser("admin", password="correct horse")
        self.site = project.config().project_dir
        self.addCleanup(maintenance.turn_off, project.config().state_dir, force=True)

    def login(self) -> None:
        from selenium.webdriver.common.by import By

        self.browser.get(f"{self.live_server_url}/admin/login/?next=/admin/")
        self.browser.find_element(By.NAME, "username").send_keys("admin")
        self.browser.find_element(By.NAME, "password").send_keys("correct horse")
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.browser.find_element(By.ID, "user-tools")  # logged in

    def shoot(self, name: str) -> Path:
        height = self.browser.execute_script("return document.documentElement.scrollHeight")
        self.browser.set_window_size(1280, max(600, min(int(height), 4000)))
        path = self.shots / name
        assert self.browser.save_screenshot(str(path)), path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        self.browser.set_window_size(1280, 900)
        return path

    def test_the_backups_page_shows_the_archives_the_chart_and_the_runs(self) -> None:
        from selenium.webdriver.common.by import By

        self.login()
        self.browser.find_element(By.LINK_TEXT, "Backups").click()
        assert self.browser.title.startswith("Backups")
        folder = self.site / "db_backups" / "shop"
        archives = sorted(p.name for p in folder.glob("[0-6]-*.sqlite3.zst") if not p.is_symlink())
        rows = self.browser.find_elements(By.CSS_SELECTOR, "#database-shop tr.archive")
        assert sorted(r.get_attribute("data-archive") for r in rows) == archives
        for row in rows:
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            assert cells[6] == "verified"
            assert cells[3].endswith(("KB", "MB"))
        chart = self.browser.find_element(By.CSS_SELECTOR, "#database-shop svg.opskit-chart")
        assert chart.is_displayed()
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 8
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.drop")) == 1
        assert "much smaller" in self.browser.find_element(By.ID, "drop-warning").text
        backups = self.browser.find_elements(
            By.CSS_SELECTOR, "table.runs[data-job=backup] tbody tr"
        )
        assert len(backups) == 8
        self.shoot("backups-page.png")

    def test_while_maintenance_is_on_visitors_get_the_503_page(self) -> None:
        from selenium.webdriver.common.by import By

        url = f"{self.live_server_url}/"
        self.browser.get(url)
        assert self.browser.find_element(By.TAG_NAME, "h1").text == "Shop"
        # Turned on by another process, as an operator or a restore would.
        message = "The shop is being restored from last night's backup."
        done = run_opskit("maintenance", "on", "--for", "20m", cwd=self.site)
        assert done.returncode == 0, done.stderr
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url, timeout=10)
        assert caught.value.code == 503
        assert 1190 <= int(caught.value.headers["Retry-After"]) <= 1200
        self.browser.get(url)
        assert self.browser.find_element(By.TAG_NAME, "h1").text == "Back soon"
        assert self.browser.find_element(By.CSS_SELECTOR, "p.message").text == message
        self.shoot("maintenance-page.png")

        # The admin stays reachable (MAINTENANCE_ALLOW_PATHS), and says maintenance is on.
        self.login()
        self.browser.get(f"{self.live_server_url}/admin/opskit/backups/")
        banner = self.browser.find_element(By.ID, "maintenance")
        assert banner.text.startswith("Maintenance is on for the whole site")
        self.shoot("backups-page-maintenance.png")

        assert run_opskit("maintenance", "off", cwd=self.site).returncode == 0
        self.browser.get(url)
        assert self.browser.find_element(By.TAG_NAME, "h1").text == "Shop"
