"""The one browser test: the Teacher panel's main path in Debian's Chromium, driven by Playwright (STYLE.md 7.6)."""

import shutil

import pytest

import kdviz
from kdviz.data import demo_path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
TIMEOUT_MS = 60_000  # a first attribution on a busy 2-core machine can take several seconds


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"needs Debian's Chromium at {CHROMIUM}")
def test_teacher_panel_in_a_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from kdviz.ui import build_app

    example = kdviz.load_examples(demo_path())[1]
    example_words = kdviz.render(example).text.split()  # the mcqa format's own words are highlighted too
    demo = build_app(teacher="tiny")
    try:
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                words = page.locator(".kdviz-attribution span.kdviz-word")

                page.get_by_label("Prompt").fill("the cat sat on the mat")
                page.get_by_role("button", name="Attribute").click()
                sync_api.expect(words).to_have_count(6, timeout=TIMEOUT_MS)
                assert words.all_inner_texts() == ["the", "cat", "sat", "on", "the", "mat"]

                page.get_by_label("Example").click()
                page.get_by_role("option", name=f"{example.id}: {example.question}").click()
                sync_api.expect(page.get_by_label("Prompt")).to_have_value(example.question)
                sync_api.expect(page.get_by_label("Gold answer")).to_have_value(example.answer)
                page.get_by_role("button", name="Attribute").click()
                sync_api.expect(words).to_have_count(len(example_words), timeout=TIMEOUT_MS)
                assert words.all_inner_texts() == example_words
                sync_api.expect(page.get_by_text("Prediction")).to_be_visible()
                sync_api.expect(page.locator(".js-plotly-plot")).to_be_visible()
                page.screenshot(path=str(tmp_path / "teacher_panel.png"), full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
