"""A real browser on a served dashboard: Debian's chromium and chromedriver driven by
selenium, headless, and the dashboard served by waitress on 127.0.0.1 and a free port.

Used by the browser tests and by ``python -m tests.browser.screenshots``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from waitress.server import create_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing_browser() -> str | None:
    """Why no browser test can run here (None: they can)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return (
            f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver"
            " (apt-get install chromium chromium-driver; .ci/run does when apt is there)"
        )
    return None


@contextmanager
def chrome(width: int = 1360, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in a temporary directory."""
    profile = tempfile.mkdtemp(prefix="pgq-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def served(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve the WSGI ``app`` with waitress on 127.0.0.1 and a free port; yield its URL."""
    sockets: dict[int, Any] = {}  # the server's socket map: its loop runs while it has any
    server: Any = create_server(app, map=sockets, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Close every channel (the listening socket included): the loop ends when its map
        # is empty. Then the task threads.
        while sockets:
            for channel in list(sockets.values()):
                channel.close()
        server.task_dispatcher.shutdown()
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"
