"""Headless Chromium for local mode: Debian's ``chromium`` (``make browser`` installs it with
``chromium-driver``), with the flags that keep it offline and quick on a machine without a network beyond
127.0.0.1. The browser test drives it through selenium and chromedriver; `make demo` takes a screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 1500)  # the screenshots' size: the same picture on every run
# Without the background-networking ones it waits on refused connections; a fresh profile every run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--font-render-hinting=none",
)


class BrowserMissingError(RuntimeError):
    def __init__(self) -> None:
        super().__init__(f"no {CHROMIUM}: `make browser` installs Debian's chromium and chromium-driver")


def chromium() -> str:
    if not Path(CHROMIUM).exists():
        raise BrowserMissingError()
    return CHROMIUM


def screenshot(url: str, path: Path, *, window: tuple[int, int] = WINDOW, timeout: float = 60) -> Path:
    """Open ``url`` in headless Chromium and save what it shows as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="tollgate-chromium-")
    try:
        subprocess.run(  # noqa: S603 - a fixed binary, our own URL
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return path
