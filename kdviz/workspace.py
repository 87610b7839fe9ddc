"""The workspace: one folder holding everything the app and the CLI make, laid out so either can open the other's.

    <workspace>/
      builds/<name>/records.jsonl, build.json      a rationale build (kdviz.rationales.curation edits it)
      builds/<name>/exports/<export>/               its exports (rationales.jsonl, .parquet, hf_dataset, README.md)
      runs/<name>/config.yaml, metrics.jsonl, ...   a training run (kdviz.distill.runs)
      comparisons/<name>/report.json, ...           a comparison (kdviz.compare.report)
      uploads/<file>                                data files uploaded in the app (a run's config points at them)

An export stays inside its build because it is derived from that build alone (its dataset card names it).
Every name a user types goes through `safe_child`, so nothing is read or written outside the workspace; an app served
to other machines also confines the paths typed in it (`confined_to`, `check_readable`). This module
knows the layout and file names only; it imports no stage, so every stage, the CLI and the UI can use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdviz.errors import InputError
from kdviz.records import Record

WORKSPACE_ENV = "KDVIZ_WORKSPACE"
DEFAULT_WORKSPACE = "kdviz_workspace"  # relative to the folder the app or command is started in
BUILDS, RUNS, COMPARISONS, UPLOADS, EXPORTS = "builds", "runs", "comparisons", "uploads", "exports"
BUILD_RECORDS, BUILD_INFO = "records.jsonl", "build.json"
RUN_CONFIG = "config.yaml"
REPORT_JSON = "report.json"
EXPORT_FILES = ("rationales.jsonl", "rationales.parquet", "hf_dataset")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def safe_child(root: str | Path, name: str) -> Path:
    """Returns root/name for a plain folder or file name; anything that could leave `root` (/, .., ~) is refused.

    Raises:
        InputError: not a plain name (letters, digits, '-', '_', '.'), or one that would leave `root`.
    """
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise InputError(f"{name!r} is not a valid name: use letters, digits, '-', '_' and '.' (no slashes)")
    root = Path(root).resolve()
    child = (root / name).resolve()
    if child.parent != root:
        raise InputError(f"{name!r} would leave the folder {root}")
    return child


# The folders paths may be read in, when an app serving other machines confines its handlers (`confined_to`); None:
# anywhere, as on the command line and in an app served on this machine only. A context variable, not a global, so
# one app's confinement never leaks into another app, a test or a command in the same process.
_READABLE: contextvars.ContextVar[tuple[Path, ...] | None] = contextvars.ContextVar("kdviz_readable", default=None)


@contextlib.contextmanager
def confined_to(folders: Iterable[str | Path]) -> Iterator[None]:
    """Within the block, `check_readable` refuses any path outside `folders` (symbolic links followed)."""
    token = _READABLE.set(tuple(Path(f).expanduser().resolve() for f in folders))
    try:
        yield
    finally:
        _READABLE.reset(token)


def check_readable(path: str | Path, what: str = "the path") -> Path:
    """Returns `path` resolved; inside `confined_to`, refuses one outside its folders. The library's readers of
    user-given paths (data files, model folders) call it, so a path typed in an app served to other machines cannot
    read the server's other files.

    Raises:
        InputError: `path` is outside the folders (the message lists them).
    """
    resolved = Path(path).expanduser().resolve()
    folders = _READABLE.get()
    if folders is not None and not any(resolved.is_relative_to(f) for f in folders):
        raise InputError(
            f"{what} {str(path)!r} is outside the folders this app may read ({', '.join(map(str, folders))})"
        )
    return resolved


def slug(text: str, width: int = 40, fallback: str = "data") -> str:
    """Returns `text` made a plain name: runs of other characters become '-', leading ones are dropped."""
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]+", "-", text))
    return cleaned[:width] or fallback


@dataclass(frozen=True)
class BuildInfo(Record):
    """What build.json says about a rationale build: where its examples came from and how they were attributed."""

    name: str
    source: str  # the data file's name, or hf:NAME[:SPLIT]
    teacher: str | None = None
    method: str | None = None
    target_mode: str | None = None
    rule: str | None = None  # the selection rule, described
    columns: dict[str, str] | None = None  # kdviz field -> the file's column
    examples: int | None = None  # examples asked for (fewer records when cancelled)
    cancelled: bool = False
    imported: bool = False  # made from a records file, not built here
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    command: str | None = None  # the `kdviz rationales` command that rebuilds it


class Workspace:
    """The folder layout above, rooted at `root` (default: $KDVIZ_WORKSPACE, else ./kdviz_workspace)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser().resolve()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def builds(self) -> Path:
        return self.root / BUILDS

    @property
    def runs(self) -> Path:
        return self.root / RUNS

    @property
    def comparisons(self) -> Path:
        return self.root / COMPARISONS

    @property
    def uploads(self) -> Path:
        return self.root / UPLOADS

    def build_dir(self, name: str) -> Path:
        return safe_child(self.builds, (name or "").strip())

    def export_dir(self, build: str, name: str) -> Path:
        return safe_child(self.build_dir(build) / EXPORTS, (name or "").strip())

    def run_dir(self, name: str) -> Path:
        return safe_child(self.runs, (name or "").strip())

    def comparison_dir(self, name: str) -> Path:
        return safe_child(self.comparisons, (name or "").strip())

    # -- listings, newest first ------------------------------------------------------------------------------

    def list_builds(self) -> list[str]:
        """Returns the names of the builds, newest first (by build.json, else records.jsonl)."""
        found = _children_with(self.builds, BUILD_RECORDS)
        stamp = {
            d: (d / BUILD_INFO if (d / BUILD_INFO).exists() else d / BUILD_RECORDS).stat().st_mtime for d in found
        }
        return [d.name for d in sorted(found, key=lambda d: (-stamp[d], d.name))]

    def list_exports(self, build: str) -> list[Path]:
        """Returns the finished export folders of a build, newest first."""
        root = self.build_dir(build) / EXPORTS
        done = [d for d in root.iterdir() if any((d / f).exists() for f in EXPORT_FILES)] if root.is_dir() else []
        return sorted(done, key=lambda d: (-d.stat().st_mtime, d.name))

    def list_run_dirs(self) -> list[Path]:
        """Returns the run folders (those with a config.yaml), newest first."""
        found = _children_with(self.runs, RUN_CONFIG)
        return sorted(found, key=lambda d: (-(d / RUN_CONFIG).stat().st_mtime, d.name))

    def list_comparisons(self) -> list[str]:
        """Returns the names of the saved comparisons (those with a report.json), newest first."""
        found = _children_with(self.comparisons, REPORT_JSON)
        return [d.name for d in sorted(found, key=lambda d: (-(d / REPORT_JSON).stat().st_mtime, d.name))]

    def list_datasets(self) -> list[tuple[str, str]]:
        """Returns (label, path) of the training data in the workspace: each build's exports (newest first) and its
        curated records (rejected ones are skipped in training), then the uploaded files."""
        found = []
        for build in self.list_builds():
            found += [(f"{build}/{e.name} (export)", str(e)) for e in self.list_exports(build)]
            found.append((f"{build} (curated records)", str(self.build_dir(build) / BUILD_RECORDS)))
        if self.uploads.is_dir():
            found += [(f"{p.name} (uploaded)", str(p)) for p in sorted(self.uploads.iterdir()) if p.is_file()]
        return found

    # -- new names -------------------------------------------------------------------------------------------

    def new_build_name(self, dataset: str, method: str) -> str:
        """Returns a free build name made of the dataset's name, the method and the time."""
        stem = slug(Path(str(dataset).removeprefix("hf:")).stem)
        return _free(self.builds, f"{stem}-{method}-{time.strftime('%Y%m%d-%H%M%S')}", first_plain=True)

    def new_run_name(self, method: str, student: str) -> str:
        """Returns a free run name "<method>-<student>-<n>" (the student's last path part, made a plain name)."""
        last = Path(str(student or "student").strip().rstrip("/")).name.removesuffix(".gguf")
        return _free(self.runs, f"{method}-{slug(last, 50, 'student')}")

    def new_comparison_name(self) -> str:
        """Returns a free comparison name "comparison-<n>"."""
        return _free(self.comparisons, "comparison")

    # -- files from outside ----------------------------------------------------------------------------------

    def add_upload(self, file: str | Path) -> Path:
        """Copies a data file into uploads/ under a free name (the same content keeps its copy); returns the copy.

        Raises:
            InputError: not a JSONL, JSON, CSV or Parquet file.
        """
        src = Path(file)
        suffix = src.suffix.lower()
        if suffix not in DATA_SUFFIXES:
            raise InputError(f"{src.name}: upload a {', '.join(DATA_SUFFIXES)} file (a rationale export or a dataset)")
        stem, n = slug(src.stem, 60), 1
        dest = safe_child(self.uploads, stem + suffix)
        while dest.exists() and dest.read_bytes() != src.read_bytes():
            n += 1
            dest = safe_child(self.uploads, f"{stem}-{n}{suffix}")
        self.uploads.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def resolve_spec(self, spec: str) -> tuple[str, str]:
        """Returns (the spec to load, the name to show) of a model spec typed in the app or the CLI.

        A path inside the workspace ("runs/<name>") loads from there and keeps its short name; any other existing
        local path becomes absolute; anything else (a hub id, "tiny") is kept as typed.
        """
        spec = spec.strip()
        inside = self.root / spec
        if not Path(spec).is_absolute() and inside.exists():
            return str(inside.resolve()), spec.rstrip("/")
        local = Path(spec).expanduser()
        if local.exists():
            return str(local.resolve()), str(local.resolve())
        return spec, spec


def _children_with(root: Path, marker: str) -> list[Path]:
    return [d for d in root.iterdir() if (d / marker).is_file()] if root.is_dir() else []


def _free(root: Path, base: str, first_plain: bool = False) -> str:
    """Returns `base` (when `first_plain`) or `base-1`, `base-2`, ...: the first name not taken under `root`."""
    n = 1
    name = base if first_plain else f"{base}-1"
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def command_line(program: Sequence[str], options: Iterable[tuple[str, object]]) -> str:
    """Returns a shell-quoted command: `program` then each (flag, value); True is a bare flag, None/False skip.

    The equivalent-command builders of the stages (`kdviz train`, `kdviz compare`, `kdviz rationales`) use it, so
    every panel shows a command that does what the panel did.
    """
    parts = list(program)
    for flag, value in options:
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
