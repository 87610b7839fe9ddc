"""Benchmark figures as files: a plotly Figure written as self-contained HTML, and as PNG through the Debian
chromium that the browser tests use (skipped, with the HTML kept, where playwright or chromium is missing)."""

from __future__ import annotations

import shutil
from pathlib import Path

from kdviz.files import write_atomic


def write_plotly(fig, stem: Path, width: int = 740, height: int = 400) -> list[Path]:
    """Writes `stem`.html and, when a browser is at hand, `stem`.png (the chart at `width` x `height` pixels);
    returns the paths written."""
    html = stem.with_suffix(".html")
    write_atomic(html, fig.to_html(include_plotlyjs=True, full_html=True))
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [html]
    if not Path(chromium).exists():
        return [html]
    png = stem.with_suffix(".png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(html.resolve().as_uri())
        page.wait_for_selector(".main-svg")
        page.locator(".plotly-graph-div").first.screenshot(path=str(png))
        browser.close()
    return [html, png]
