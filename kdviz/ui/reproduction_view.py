"""Compare panel, "Reproduction results": opens a results folder of `bench/reproduce.py` (<root>/<dataset>, with
its results.json) and shows the same table and chart the script wrote, so "does it work?" is one click away."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from kdviz.compare.results import ResultsTable, datasets_markdown, read_results, results_markdown, setup_line
from kdviz.compare.viz import datasets_accuracy_figure, method_accuracy_figure
from kdviz.errors import InputError
from kdviz.workspace import check_readable, safe_child

from .errors import ui_errors

DEFAULT_ROOT = Path("bench") / "results" / "reproduce"  # bench/reproduce.py's default --out, from the repo root
ALL = "all datasets"  # the entry that shows every dataset side by side (listed when there are two or more)


def list_results(root: str) -> list[str]:
    """Returns the dataset folders under `root` that hold a finished results.json, sorted, then ALL when there are
    two or more."""
    folder = check_readable(root or ".", "the results folder")
    if not folder.is_dir():
        return []
    found = sorted(p.name for p in folder.iterdir() if (p / "results.json").is_file())
    return [*found, ALL] if len(found) > 1 else found


def load_results(root: str, dataset: str) -> tuple[dict, ResultsTable]:
    """Returns (setup, results table) of <root>/<dataset>/results.json.

    Raises:
        InputError: no dataset picked, no such results, or a results.json the driver did not write.
    """
    if not dataset:
        raise InputError("pick a dataset's results to open")
    path = safe_child(check_readable(root or ".", "the results folder"), dataset) / "results.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist: run bench/reproduce.py --out {root} first")
    return read_results(path)


def results_view(root: str, dataset: str) -> tuple[str, object]:
    """Returns (Markdown: the setup line and the results table, the accuracy-by-method figure) of one dataset, or
    (the datasets side by side, accuracy by method and dataset) for ALL."""
    if dataset == ALL:
        tables = {name: load_results(root, name)[1] for name in list_results(root) if name != ALL}
        return f"### {ALL}\n\n" + datasets_markdown(tables), datasets_accuracy_figure(tables)
    setup, table = load_results(root, dataset)
    facts = setup_line(setup)
    header = f"### {setup.get('dataset', dataset)}\n\n{facts}\n\n" if facts else f"### {dataset}\n\n"
    return header + results_markdown(table), method_accuracy_figure(table)


def _refresh(root: str) -> gr.Dropdown:
    choices = list_results(root)
    return gr.Dropdown(choices=choices, value=choices[0] if choices else None)


def render() -> None:
    """Adds the accordion (a results root, its datasets, the table and the chart) to the enclosing Blocks."""
    start = str(DEFAULT_ROOT) if DEFAULT_ROOT.is_dir() else ""
    with gr.Accordion("Reproduction results (bench/reproduce.py)", open=False):
        with gr.Row():
            root = gr.Textbox(start, label="Results folder", info="bench/reproduce.py --out", scale=4)
            reload = gr.Button("↻", scale=1, min_width=40)
            dataset = gr.Dropdown(list_results(start) if start else [], label="Dataset", scale=3)
            show = gr.Button("Open", scale=1)
        table = gr.Markdown(elem_id="kdviz-reproduction-table")
        plot = gr.Plot(label="Test accuracy by method", elem_id="kdviz-reproduction-plot")
    gr.on([reload.click, root.submit], ui_errors(_refresh), root, dataset, api_name="list_reproductions")
    show.click(ui_errors(results_view), [root, dataset], [table, plot], api_name="open_reproduction")
