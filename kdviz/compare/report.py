"""Write a comparison's report: report.json (everything), examples.csv (one row per example) and report.html
(self-contained: tables, charts with plotly.js inlined once, a sample of examples with attribution maps); read one
back; the rule for writing into a workspace's comparison folder; and the `kdviz compare` command of a comparison.

A finished comparison is never overwritten; a cancelled one is replaced when the same comparison is started again
under its name, which resumes it from the attribution cache, so Cancel then Compare completes the same report
instead of scattering partial ones. The app and `kdviz compare --workspace W --name N` both follow this rule.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from kdviz.errors import InputError
from kdviz.files import write_atomic
from kdviz.workspace import REPORT_JSON, command_line

from .records import Comparison
from .viz import (
    SUMMARY_COLUMNS,
    accuracy_figure,
    agreement_matrix,
    example_html,
    overlap_histogram,
    pairwise_rows,
    summary_rows,
)

PAIRWISE_COLUMNS = ["model A", "model B", "A right, B wrong", "B right, A wrong", "McNemar p", "answer agreement"]


def examples_csv(comparison: Comparison) -> str:
    """Returns the per-example results as CSV: the example, then each model's answer, correctness and rationale."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["id", "question", "gold"]
    for m in comparison.models:
        header += [f"{m.name} answer", f"{m.name} correct", f"{m.name} rationale"]
        header += [f"{m.name} answer without rationale"] if m.predicted_no_rationale else []
    writer.writerow(header)
    for i, ex in enumerate(comparison.examples):
        row = [ex.id, ex.question, ex.answer or ""]
        for m in comparison.models:
            rec = m.records[i]
            row += [m.predicted[i], "" if rec.correct is None else int(rec.correct), rec.rationale_text]
            row += [m.predicted_no_rationale[i]] if m.predicted_no_rationale else []
        writer.writerow(row)
    return out.getvalue()


def _table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(comparison: Comparison, sample: int = 20) -> str:
    """Returns the self-contained HTML report (opens offline: plotly.js is inlined once)."""
    figures = [accuracy_figure(comparison), overlap_histogram(comparison), agreement_matrix(comparison)]
    charts = "".join(
        f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, f in enumerate(figures)
    )
    s = comparison.settings
    examples = "".join(example_html(comparison, i) + "<hr>" for i in range(min(sample, len(comparison.examples))))
    note = "<p><b>Cancelled</b>: only the models that finished are shown.</p>" if comparison.cancelled else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>kdviz comparison</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ddd;padding:4px 8px;font-size:14px}}
th{{background:#f3f4f6}}</style></head><body>
<h1>kdviz comparison</h1>{note}
<p>Teacher <code>{html.escape(s.teacher)}</code>; {s.n} examples; attribution
<code>{html.escape(s.method)}</code>, top-{s.top_k} words as each model's rationale; choices predicted by
<code>{html.escape(s.predict or "each model's default")}</code>.
Accuracy intervals: 95% percentile bootstrap. Pairs: McNemar's exact test on the examples one model gets right and
the other wrong. Gold overlap: share of examples where a rationale word occurs in the gold answer (distractor
overlap: the same against the wrong choices, the chance baseline). Comprehensiveness and sufficiency (ERASER):
the drop in the answer's probability without the model's own rationale words, and with only them; in brackets, the
same for as many random words.</p>
<h2>Summary</h2>{_table(SUMMARY_COLUMNS, summary_rows(comparison))}
<h2>Paired tests</h2>{_table(PAIRWISE_COLUMNS, pairwise_rows(comparison))}
<h2>Charts</h2>{charts}
<h2>Examples (first {min(sample, len(comparison.examples))})</h2>{examples}
</body></html>"""


REPORT_FILES = ("report.html", REPORT_JSON, "examples.csv")


def write_report(comparison: Comparison, out_dir: str | Path, sample: int = 20) -> dict[str, Path]:
    """Writes report.json, examples.csv and report.html into `out_dir` (atomically); returns their paths."""
    out = Path(out_dir)
    data = comparison.to_dict()
    ordered = {"summary": data.pop("summary"), "pairwise": data.pop("pairwise"), "settings": data.pop("settings"),
               **data}  # fmt: skip
    return {
        "json": write_atomic(out / REPORT_JSON, json.dumps(ordered, ensure_ascii=False, indent=1)),
        "csv": write_atomic(out / "examples.csv", examples_csv(comparison)),
        "html": write_atomic(out / "report.html", report_html(comparison, sample)),
    }


def report_files(folder: str | Path) -> list[Path]:
    """Returns the report files of a comparison folder: report.html, report.json, examples.csv."""
    return [Path(folder) / name for name in REPORT_FILES]


def load_report(path: str | Path) -> Comparison:
    """Reads a comparison back from its report.json (or the folder holding it).

    Raises:
        InputError: no such file, or one that cannot be read as a comparison report.
    """
    path = Path(path)
    path = path / REPORT_JSON if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no comparison report at {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as a comparison report ({type(exc).__name__}: {exc})") from exc
    try:  # a report of another version or a hand-edited one: say which file, not a KeyError from deep inside
        return Comparison.from_dict(data)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as a comparison report ({type(exc).__name__}: {exc})") from exc


def may_write(folder: str | Path) -> bool:
    """Returns whether a comparison may be written into `folder`: it holds no report, or a cancelled one (which
    the new comparison resumes). A finished report, or one that cannot be read, is kept."""
    report = Path(folder) / REPORT_JSON
    try:
        return not report.exists() or load_report(report).cancelled
    except InputError:  # an unreadable report is kept for a person to look at
        return False


def check_may_write(folder: str | Path) -> Path:
    """Returns `folder` when a comparison may be written into it (see `may_write`).

    Raises:
        InputError: the folder holds a finished comparison, or a report that cannot be read.
    """
    if not may_write(folder):
        raise InputError(f"a comparison named {Path(folder).name!r} exists already; choose another name (only a "
                         "cancelled one is resumed under its name)")  # fmt: skip
    return Path(folder)


def compare_command(
    teacher: str,
    students: Sequence[str],
    data: str,
    *,
    limit: int | None = None,
    method: str,
    top_k: int,
    batch_size: int,
    workspace: str | Path | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    predict: str | None = None,
    target_mode: str | None = None,
) -> str:
    """Returns the `kdviz compare ...` command that writes this comparison: into `out`, or as comparison `name` of
    `workspace` (where model specs such as runs/<name> are read relative to the workspace); `predict`: the
    prediction mode, None for each model's default (no --predict); `target_mode`: None for the data's default."""
    return command_line(
        ["kdviz", "compare"],
        [
            ("--teacher", teacher), ("--student", list(students)), ("--data", data), ("--limit", limit),
            ("--workspace", workspace), ("--name", name), ("--out", out), ("--method", method), ("--top-k", top_k),
            ("--predict", predict), ("--target-mode", target_mode), ("--batch-size", batch_size),
        ],
    )  # fmt: skip
