"""How the screenshot script and the browser tests start Debian's Chromium: headless, no
sandbox (it runs as root in CI), and none of the background calls a closed network refuses."""

from __future__ import annotations

import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")
