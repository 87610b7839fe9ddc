"""Saved comparisons, as the Compare panel shows them: the workspace's comparisons, each the report files that
`kdviz.compare.report.write_report` wrote. Listing, reopening (read back from report.json, never recomputed) and
browsing one: its tables, charts, filtered examples and one example's attribution maps.

Plain typed functions of widget values; names go through the workspace, so nothing outside it is read.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

from kdviz.compare import viz as vc
from kdviz.compare.records import Comparison
from kdviz.compare.report import PAIRWISE_COLUMNS, load_report, report_files
from kdviz.compare.viz import FILTERS, SUMMARY_COLUMNS
from kdviz.errors import InputError
from kdviz.workspace import REPORT_JSON, Workspace

SUMMARY_HEADERS = SUMMARY_COLUMNS
PAIRWISE_HEADERS = PAIRWISE_COLUMNS
FILTER_CHOICES = [(label, key) for key, label in FILTERS.items()]
NO_EXAMPLE_HTML = "<div class='kdviz-example'><i>Click an example to see every model's attribution map.</i></div>"


class View(NamedTuple):
    """Everything the panel shows of a comparison, in the order of the tab's output components."""

    status: str  # Markdown
    summary: list  # rows under SUMMARY_HEADERS
    pairwise: list  # rows under PAIRWISE_HEADERS
    accuracy: Any  # plotly figures (None without a result)
    overlap: Any
    agreement: Any
    examples: dict  # {"headers", "data"}
    example: str  # one example's HTML
    files: list[str]  # the report files
    command: str  # Markdown: the equivalent `kdviz compare` command
    name: str  # the comparison shown


def list_comparisons(workspace: str | Path) -> list[str]:
    """Returns the names of the workspace's comparisons, newest first."""
    return Workspace(workspace).list_comparisons()


@functools.lru_cache(maxsize=4)
def _read(path: str, stamp: int) -> Comparison:  # `stamp` (mtime): a rewritten report is read again
    return load_report(path)


def load_comparison(workspace: str | Path, name: str) -> Comparison:
    """Returns the workspace's comparison `name` (read once per version of its report).

    Raises:
        InputError: a bad name, no comparison by that name, or a report that cannot be read.
    """
    ws = Workspace(workspace)
    path = ws.comparison_dir(name) / REPORT_JSON
    if not path.is_file():
        raise InputError(f"no comparison named {name!r} in {ws.comparisons}")
    return _read(str(path), path.stat().st_mtime_ns)


def examples_table(workspace: str | Path, name: str, filter_name: str = "all") -> dict:
    """Returns {"headers", "data"}: the examples a filter (a key of FILTERS) keeps, with each model's answer."""
    if not name:
        return {"headers": ["id", "question", "gold"], "data": []}
    comparison = load_comparison(workspace, name)
    if filter_name not in FILTERS:
        raise InputError(f"unknown filter {filter_name!r}; choose from {', '.join(FILTERS)}")
    rows = vc.example_rows(comparison, vc.filter_examples(comparison, filter_name))
    return {"headers": ["id", "question", "gold", *(m.name for m in comparison.models)], "data": rows}


def show_example(workspace: str | Path, name: str, example_id: str) -> str:
    """Returns one example's answers and attribution maps, teacher first, then each student."""
    if not name or not (example_id or "").strip():
        return NO_EXAMPLE_HTML
    comparison = load_comparison(workspace, name)
    ids = [ex.id for ex in comparison.examples]
    if example_id.strip() not in ids:
        raise InputError(f"comparison {name!r} has no example {example_id!r}")
    return vc.example_html(comparison, ids.index(example_id.strip()))


def _status(name: str, comparison: Comparison, took: str = "") -> str:
    students = [m.name for m in comparison.models[1:]]
    state = "cancelled" if comparison.cancelled else "completed"
    text = f"**{name}** · {state} · teacher `{comparison.settings.teacher}` and {len(students)} student(s) on "
    text += f"{len(comparison.examples)} examples{took}"
    if comparison.cancelled:
        text += "  \nCancelled: the models that finished are shown. Compare again under this name to resume."
    return text


def comparison_view(workspace: str | Path, name: str, filter_name: str = "all", took: str = "") -> View:
    """Returns everything the panel shows of a saved comparison (nothing is recomputed); `took`: its run time."""
    comparison = load_comparison(workspace, name)
    command = comparison.settings.command  # None in reports written before commands were recorded
    return View(
        status=_status(name, comparison, took),
        summary=vc.summary_rows(comparison),
        pairwise=vc.pairwise_rows(comparison),
        accuracy=vc.accuracy_figure(comparison),
        overlap=vc.overlap_histogram(comparison),
        agreement=vc.agreement_matrix(comparison),
        examples=examples_table(workspace, name, filter_name),
        example=NO_EXAMPLE_HTML,
        files=[str(p) for p in report_files(Workspace(workspace).comparison_dir(name))],
        command=command_markdown(command) if command else "",
        name=name,
    )


def command_markdown(command: str) -> str:
    """Returns Markdown with a comparison's `kdviz compare` command."""
    return f"**Same comparison from the command line:**\n```\n{command}\n```"


def empty_view(status: str, command: str = "", name: str = "") -> View:
    """Returns the panel's view without a result: a status (and the CLI command of what runs)."""
    return View(status, [], [], None, None, None, examples_table("", ""), NO_EXAMPLE_HTML, [], command, name)
