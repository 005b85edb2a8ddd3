"""Browser tests: headless Chromium (Debian's `chromium`, installed by `make test` when missing) driven by
Playwright against the whole platform the `platform` fixture starts (the same launcher as `make run`), console
included, every page reached through the gateway as a user's browser would.

Each test saves a screenshot of every page it visits under test-artifacts/browser/<test>/ (ignored by git), and
`Pages.check_accessibility` runs axe-core (vendored in ./vendor, MPL-2.0) in the page: no serious or critical
violation may remain.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from opendrec_devstack.smtp_sink import read_mails

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SERIOUS = ("serious", "critical")


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("No Chromium found: `make test` installs Debian's chromium package (apt-get install chromium)")


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread while it is open,
# which the asyncio tests of other modules in the same run could not start theirs beside.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
    yield browser
    browser.close()


@dataclass
class Pages:
    """One user's browser (its own cookies), with screenshots of what it visits and axe-core checks."""

    page: Page
    folder: Path
    base_url: str
    shots: list[Path] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> Page:
        self.page.goto(self.base_url + path)
        return self.page

    def shot(self, name: str) -> Path:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def check_accessibility(self) -> None:
        """axe-core's WCAG 2 A/AA rules in the page as it is: no serious or critical violation."""
        # evaluated through the DevTools protocol: the page's CSP (no inline script) does not apply
        self.page.evaluate(AXE.read_text())
        result = self.page.evaluate(
            "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in SERIOUS
        ]
        assert not bad, f"{self.page.url}:\n" + "\n".join(bad)


@pytest.fixture
def console(platform, browser: Browser, request) -> Iterator[callable]:
    """Factory: `console("developer")` opens a new browser context (a person) on the platform's console."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    contexts = []

    def open_as(who: str, *, phone: bool = False) -> Pages:
        viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        context.set_default_timeout(20_000)
        contexts.append(context)
        pages = Pages(context.new_page(), folder / who, platform.gateway_url)
        pages.folder.mkdir()
        pages.page.on("console", lambda m: pages.console_errors.append(m.text) if m.type == "error" else None)
        return pages

    yield open_as
    for context in contexts:
        context.close()


def mailed_token(mail_dir: Path, to: str, subject: str, timeout: float = 30.0) -> str:
    """The one-time token of the latest mail with that subject to that address (waits for it to arrive)."""
    deadline = time.monotonic() + timeout
    while not (mails := [m for m in read_mails(mail_dir, to) if m["Subject"] == subject]):
        assert time.monotonic() < deadline, f"no mail '{subject}' to {to} after {timeout}s"
        time.sleep(0.1)
    text = mails[-1].get_body(("plain",)).get_content()
    found = re.search(r"Token: (\S+)", text)
    assert found, text
    return found.group(1)
