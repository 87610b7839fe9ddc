"""The one browser test: the Teacher, Rationales, Train and Compare panels' main paths in Debian's Chromium, driven
by Playwright (STYLE.md 7.6)."""

import re
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
def test_teacher_rationales_train_and_compare_panels_in_a_browser(tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    from kdviz.ui import build_app

    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))  # the rationale build's attribution cache
    example = kdviz.load_examples(demo_path())[1]
    compared = kdviz.load_examples(demo_path())[:4]  # the Compare panel's first 4 examples
    example_words = kdviz.render(example).text.split()  # the mcqa format's own words are highlighted too
    demo = build_app(teacher="tiny", workspace=tmp_path / "workspace")
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
                sync_api.expect(page.get_by_text("Prediction", exact=True)).to_be_visible()
                sync_api.expect(page.locator(".js-plotly-plot").locator("visible=true").first).to_be_visible(
                    timeout=TIMEOUT_MS
                )  # the heatmap
                page.screenshot(path=str(tmp_path / "teacher_panel.png"), full_page=True)

                # Rationales: build over 3 demo examples, open one, toggle a word by clicking it, accept it.
                page.get_by_role("tab", name="Rationales").click()
                page.get_by_label("Examples (first N)").fill("3")
                page.get_by_role("button", name="Build", exact=True).click()
                counts = page.locator("#kdviz-counts")
                sync_api.expect(counts).to_contain_text("3 records: 3 pending", timeout=TIMEOUT_MS)
                command = page.locator("#kdviz-build-command")  # the equivalent `kdviz rationales` command
                sync_api.expect(command).to_contain_text("kdviz rationales --teacher tiny --data")
                sync_api.expect(command).to_contain_text("--limit 3")
                # a row of the records table (gradio keeps a hidden copy of the table to measure its columns)
                page.locator("#kdviz-records").get_by_text(example.id, exact=True).locator("visible=true").click()
                sync_api.expect(page.get_by_label("Record", exact=True)).to_have_value(example.id)
                record_words = page.locator("#kdviz-record-words span.kdviz-word")
                sync_api.expect(record_words).to_have_count(len(example_words))
                rationale = page.get_by_label("Rationale text (used for training)")
                built = rationale.input_value()
                record_words.nth(example_words.index("carpenter")).click()  # in or out of the rationale
                sync_api.expect(rationale).not_to_have_value(built)
                page.get_by_role("button", name="Accept", exact=True).click()
                sync_api.expect(counts).to_contain_text("2 pending · 1 accepted · 0 rejected")
                sync_api.expect(page.locator("#kdviz-records")).to_contain_text("accepted")
                page.screenshot(path=str(tmp_path / "rationales_panel.png"), full_page=True)

                # Train: the tiny student on the build's curated records, long enough to be cancelled mid-run.
                page.get_by_role("tab", name="Train").click()
                sync_api.expect(page.get_by_label("Training data")).to_have_value(re.compile(r"curated records"))
                page.get_by_label("Student").click()
                page.get_by_role("option", name="tiny-student", exact=True).click()
                sync_api.expect(page.get_by_label("Run name")).to_have_value("standard-tiny-student-1")
                page.get_by_label("Max steps").fill("2000")
                page.get_by_label("Batch size").locator("visible=true").fill("2")
                page.get_by_label("Eval every (0: at the end)").fill("0")
                page.get_by_role("button", name="Start training").click()
                status = page.locator("#kdviz-train-status")
                sync_api.expect(status).to_contain_text(
                    re.compile(r"running · step [1-9]\d*/2000"), timeout=TIMEOUT_MS
                )
                sync_api.expect(page.locator("#kdviz-train-curves .js-plotly-plot")).to_be_visible()
                page.get_by_role("button", name="Cancel").locator("visible=true").click()
                sync_api.expect(status).to_contain_text(re.compile(r"cancelled · step \d+/2000"), timeout=TIMEOUT_MS)
                runs = page.locator("#kdviz-runs")
                sync_api.expect(runs).to_contain_text("standard-tiny-student-1")
                sync_api.expect(runs).to_contain_text("cancelled")
                page.screenshot(path=str(tmp_path / "train_panel.png"), full_page=True)

                # Compare: the teacher against the run just cancelled (it kept its checkpoint) on 4 examples.
                page.get_by_role("tab", name="Compare").click()
                run = "runs/standard-tiny-student-1"
                page.get_by_label("Students", exact=True).click()
                page.get_by_role("option", name=f"{run} (standard, cancelled)").click()
                page.keyboard.press("Escape")
                page.get_by_label("Examples (first N)").locator("visible=true").fill("4")
                page.get_by_role("button", name="Compare", exact=True).click()
                sync_api.expect(page.locator("#kdviz-compare-status")).to_contain_text(
                    "completed · teacher tiny and 1 student(s) on 4 examples", timeout=TIMEOUT_MS
                )
                summary = page.locator("#kdviz-summary")
                sync_api.expect(summary).to_contain_text(run)
                sync_api.expect(page.locator("#kdviz-compare-accuracy .js-plotly-plot")).to_be_visible()
                table = page.locator("#kdviz-compare-examples")
                table.get_by_text(compared[2].id, exact=True).locator("visible=true").click()
                models = page.locator("#kdviz-compare-example .kdviz-model")
                sync_api.expect(models).to_have_count(2)  # stacked: the teacher's map above the student's
                sync_api.expect(models.nth(0)).to_contain_text("tiny (teacher)")
                sync_api.expect(models.nth(1)).to_contain_text(f"{run} (student, standard)")
                sync_api.expect(page.locator("#kdviz-compare-example")).to_contain_text(compared[2].question)
                assert page.locator("#kdviz-compare-example span.kdviz-word").count() > 10
                page.screenshot(path=str(tmp_path / "compare_panel.png"), full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
