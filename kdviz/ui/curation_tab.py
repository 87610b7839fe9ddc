"""The Rationales panel's statistics, curation and export sections. Components and wiring only (the events are
in `curation_events`).

Every change goes to disk through `CurationStore` at once, so a restarted app shows the same state; which build a
browser session curates is that session's `gr.State`, so sessions on different builds never meet.
"""

from __future__ import annotations

import gradio as gr

from kdviz.viz.rationales import STATS_COLUMNS, STATS_NOTE

from . import curation_events as ce
from . import curation_filters as cf
from . import curation_handlers as ch
from . import curation_views as cv
from . import export_handlers as eh
from .errors import ui_errors

# Clicking a word of the record view fires a select event with the word's position (gradio 6 custom HTML events).
CLICK_JS = """element.addEventListener('click', (event) => {
  const word = event.target.closest('.kdviz-word');
  if (word) trigger('select', {index: Number(word.dataset.index), value: word.textContent});
});"""


def render(ws: gr.State, build: gr.State) -> None:
    """Adds the statistics, curation and export sections for the session's open build (`build`)."""
    counts = gr.Markdown("No build open.", elem_id="kdviz-counts")
    with gr.Accordion("Statistics", open=True):
        with gr.Row():
            with gr.Column(scale=1):
                stats = gr.Dataframe(
                    headers=STATS_COLUMNS, interactive=False, label="Rationale statistics", column_widths=["28%"]
                )
                gr.Markdown(STATS_NOTE)
            figure = gr.Plot(label="Overlap", scale=1)
    with gr.Row():
        correct = gr.Radio(list(cv.YES_NO_ANY), value="any", label="Teacher correct", min_width=160)
        overlaps = gr.Radio(list(cv.YES_NO_ANY), value="any", label="Overlaps gold", min_width=160)
        status = gr.Dropdown(list(cv.STATUS_FILTERS), value="any", label="Status", min_width=120)
        share_min = gr.Number(0.0, label=cf.SHARE_LABELS["share_min"], step=0.05, min_width=90)  # 0 to 1: the
        share_max = gr.Number(1.0, label=cf.SHARE_LABELS["share_max"], step=0.05, min_width=90)  # handler checks
        search = gr.Textbox("", label="Search", placeholder="question or rationale text", min_width=160)
    filters = dict(correct=correct, overlaps_gold=overlaps, status=status, share_min=share_min, share_max=share_max,
                   search=search)  # fmt: skip
    records = gr.Dataframe(
        headers=cv.RECORD_COLUMNS, interactive=False, wrap=True, max_height=320, label="Records (click a row)",
        column_widths=["9%", "8%", "8%", "8%", "6%", "37%", "24%"], elem_id="kdviz-records",
    )  # fmt: skip
    with gr.Row():
        with gr.Column(scale=3):
            record = gr.Dropdown([], value=None, label="Record", allow_custom_value=True)
            words = gr.HTML(cv.NO_RECORD_HTML, js_on_load=CLICK_JS, elem_id="kdviz-record-words", padding=True)
            summary = gr.Markdown()
        with gr.Column(scale=2):
            text = gr.Textbox(label="Rationale text (used for training)", lines=2)
            save = gr.Button("Save text", size="sm")
            with gr.Row():
                accept = gr.Button("Accept", size="sm", variant="primary")
                reject = gr.Button("Reject", size="sm", variant="stop")
                reset = gr.Button("Reset", size="sm")
            with gr.Row():
                bulk = [gr.Button(f"{n} filtered", size="sm") for n in ("Accept", "Reject", "Reset")]
    with gr.Accordion("Export", open=False):
        with gr.Row():
            export_name = gr.Textbox("export", label="Export name", info="a folder in <build>/exports")
            formats = gr.CheckboxGroup(list(eh.EXPORT_FORMATS), value=list(eh.EXPORT_FORMATS), label="Formats")
            accepted_only = gr.Checkbox(True, label="Accepted records only (else all, with a status column)")
            run_export = gr.Button("Export", variant="primary")
        written = gr.Markdown()
        downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
        with gr.Row():
            repo = gr.Textbox(label="Hub dataset (owner/name)", info="needs `hf auth login`; pushed private")
            run_push = gr.Button("Push to Hub")
        pushed = gr.Markdown()

    view = [counts, stats, figure, records, record]
    shown = [words, text, summary]
    state = [ws, build, record]
    build.change(ce.show_opened, [ws, build], view, api_name="show_build", inputs_kwargs=filters)
    gr.on([f.change for f in filters.values()], ce.show, state, view, api_name="filter", inputs_kwargs=filters)
    record.change(ui_errors(cv.record_view), state, shown, api_name="show_record")
    records.select(ce.pick_row, None, record, api_name="pick_row")
    words.select(ce.toggle, state, shown + view, api_name="toggle_word", inputs_kwargs=filters)
    save.click(ce.save_text, [*state, text], shown + view, api_name="save_text", inputs_kwargs=filters)
    for button, action in zip((accept, reject, reset), ch.ACTIONS, strict=True):
        button.click(ce.record_action(action), state, shown + view, api_name=action, inputs_kwargs=filters)
    for button, action in zip(bulk, ch.ACTIONS, strict=True):
        button.click(ce.bulk_action(action), state, shown + view, api_name=f"{action}_filtered", inputs_kwargs=filters)
    run_export.click(
        ce.export, [ws, build, export_name, formats, accepted_only], [written, downloads], api_name="export"
    )
    run_push.click(ui_errors(eh.push), [ws, build, export_name, repo], pushed, api_name="push_to_hub")
