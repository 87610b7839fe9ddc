"""Saved comparisons, as the Compare panel shows them: <workspace>/comparisons/<name>/ holding the report.json,
examples.csv and report.html that `kdviz.report.write_report` wrote. Listing, reopening (read back from report.json,
never recomputed) and browsing one: its tables, charts, filtered examples and one example's attribution maps.

Plain typed functions of widget values; names go through `safe_child`, so nothing outside the workspace is read.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

from kdviz.compare import viz as vc
from kdviz.compare.report import PAIRWISE_COLUMNS, load_report
from kdviz.compare.run import Comparison
from kdviz.compare.viz import FILTERS, SUMMARY_COLUMNS
from kdviz.errors import InputError
from kdviz.rationales.curation import safe_child

COMPARISONS_FOLDER = "comparisons"
REPORT_FILES = ("report.html", "report.json", "examples.csv")
SUMMARY_HEADERS = SUMMARY_COLUMNS
PAIRWISE_HEADERS = PAIRWISE_COLUMNS
FILTER_CHOICES = [(label, key) for key, label in FILTERS.items()]
NO_EXAMPLE_HTML = "<div class='kdviz-example'><i>Click an example to see every model's attribution map.</i></div>"

# (status, summary rows, pairwise rows, accuracy, overlap and agreement figures, examples table, example HTML,
#  report files, CLI markdown, comparison name)
View = tuple[str, list, list, Any, Any, Any, dict, str, list[str], str, str]


def comparisons_root(workspace: str | Path) -> Path:
    """Returns <workspace>/comparisons, the folder of the panel's comparisons."""
    return Path(workspace) / COMPARISONS_FOLDER


def list_comparisons(workspace: str | Path) -> list[str]:
    """Returns the names of the comparisons in <workspace>/comparisons, newest first."""
    root = comparisons_root(workspace)
    reports = [d / "report.json" for d in root.iterdir() if (d / "report.json").is_file()] if root.is_dir() else []
    return [p.parent.name for p in sorted(reports, key=lambda p: (-p.stat().st_mtime, p.parent.name))]


@functools.lru_cache(maxsize=4)
def _read(path: str, stamp: int) -> Comparison:  # `stamp` (mtime): a rewritten report is read again
    return load_report(path)


def load_comparison_file(path: Path) -> Comparison:
    """Returns the comparison in a report.json (read once per version of the file).

    Raises:
        InputError: the file cannot be read as a comparison report.
    """
    try:
        return _read(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"{path} cannot be read as a comparison report ({type(exc).__name__}: {exc})") from exc


def load_comparison(workspace: str | Path, name: str) -> Comparison:
    """Returns the comparison saved as <workspace>/comparisons/<name>/report.json.

    Raises:
        InputError: a bad name, or no comparison by that name.
    """
    path = safe_child(comparisons_root(workspace), (name or "").strip()) / "report.json"
    if not path.is_file():
        raise InputError(f"no comparison named {name!r} in {comparisons_root(workspace)}")
    return load_comparison_file(path)


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
    s = comparison.settings
    students = [m.name for m in comparison.models[1:]]
    state = "cancelled" if comparison.cancelled else "completed"
    text = f"**{name}** · {state} · teacher `{s.get('teacher')}` and {len(students)} student(s) on "
    text += f"{len(comparison.examples)} examples{took}"
    if comparison.cancelled:
        text += "  \nCancelled: the models that finished are shown. Compare again under this name to resume."
    return text


def comparison_view(workspace: str | Path, name: str, filter_name: str = "all", took: str = "") -> View:
    """Returns everything the panel shows of a saved comparison (nothing is recomputed); `took`: its run time."""
    comparison = load_comparison(workspace, name)
    folder, command = comparisons_root(workspace) / name, comparison.settings.get("command")  # none from the CLI
    return (
        _status(name, comparison, took), vc.summary_rows(comparison), vc.pairwise_rows(comparison),
        vc.accuracy_figure(comparison), vc.overlap_histogram(comparison), vc.agreement_matrix(comparison),
        examples_table(workspace, name, filter_name), NO_EXAMPLE_HTML, [str(folder / f) for f in REPORT_FILES],
        command_markdown(workspace, command) if command else "", name,
    )  # fmt: skip


def command_markdown(workspace: str | Path, command: str) -> str:
    """Returns Markdown with a comparison's CLI command, to run in the workspace folder."""
    folder = shlex.quote(str(Path(workspace).resolve()))
    return f"**Same comparison from the command line**, in the workspace folder:\n```\ncd {folder}\n{command}\n```"


def empty_view(status: str, command: str = "", name: str = "") -> View:
    """Returns the panel's view without a result: a status (and the CLI command of what runs)."""
    return status, [], [], None, None, None, examples_table("", ""), NO_EXAMPLE_HTML, [], command, name
