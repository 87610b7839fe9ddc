"""Curate a rationale build: accept, reject, edit and filter records, saved to disk atomically after every change.

A build lives in its own folder of the workspace, <workspace>/builds/<name> (records.jsonl + build.json), so two
sessions curating different builds never touch the same file. Changes to one build, from threads or from several
processes (two app servers, the app and a script), are serialised by an exclusive `flock` on a lock file beside the
records, held while a change reads, modifies and rewrites them. A lock rather than an append-only log of changes:
records.jsonl stays the one file that holds the build (training, export and import read it as it is), and a change
is a few milliseconds of work. The kernel drops the lock when its holder dies, so a killed process never leaves a
build locked. `open_build` and `import_build` address builds by name in a `Workspace`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from kdviz.errors import InputError
from kdviz.files import write_atomic
from kdviz.rationale_records import STATUSES, RationaleRecord
from kdviz.records import load_jsonl, save_jsonl
from kdviz.workspace import (
    BUILD_INFO,
    BUILD_RECORDS,
    BuildInfo,
    Workspace,
    safe_child,  # noqa: F401  (re-exported for callers)
)

from .select import gold_overlap, rule_of, select_rationale
from .stats import RationaleStats, rationale_stats

LOCK_FILE = ".records.lock"  # beside records.jsonl; never replaced, so every process locks the same file


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on the build for the block: threads and processes wait for each other."""
    # records.jsonl itself cannot carry the lock: each save replaces it with a new file (atomic rename), so two
    # writers would lock two different files. Each call opens its own descriptor: flock locks belong to the open
    # file, so threads of one process exclude each other as processes do.
    with (folder / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


def rationale_share(rec: RationaleRecord) -> float:
    """Returns the share of the record's positive attribution (template words aside) that its rationale holds."""
    positive = [max(s, 0.0) if not t else 0.0 for s, t in zip(rec.word_scores, rec.word_is_template, strict=True)]
    total = sum(positive)
    return sum(positive[i] for i in rec.rationale) / total if total else 0.0


class CurationStore:
    """The records of one build in `folder`, with the build's description (`info`, from build.json)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / BUILD_RECORDS
        if not self.path.exists():
            raise InputError(f"no rationale build in {self.folder}")
        self.info = _read_info(self.folder)

    @classmethod
    def create(cls, folder: str | Path, records: Iterable[RationaleRecord], info: BuildInfo) -> CurationStore:
        """Writes a new build (refusing to overwrite one) and returns its store.

        Raises:
            InputError: the folder holds a build already, or two records share an id.
        """
        folder = Path(folder)
        if (folder / BUILD_RECORDS).exists():
            raise InputError(f"a build named {folder.name!r} exists already; choose another name")
        records = list(records)
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):  # every change finds its record by id
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"example id {duplicate!r} appears more than once; ids must be unique")
        save_jsonl(records, folder / BUILD_RECORDS)
        write_atomic(folder / BUILD_INFO, json.dumps(info.to_dict(), indent=2, ensure_ascii=False))
        return cls(folder)

    def records(self) -> list[RationaleRecord]:
        return load_jsonl(self.path, RationaleRecord)

    def get(self, record_id: str) -> RationaleRecord:
        for rec in self.records():
            if rec.id == record_id:
                return rec
        raise InputError(f"no record {record_id!r} in this build")

    def _update(self, ids: Iterable[str], change) -> list[RationaleRecord]:
        wanted = set(ids)
        with _build_lock(self.folder):  # read-modify-write as one step; the write itself is atomic
            records = self.records()
            missing = wanted - {r.id for r in records}
            if missing:
                raise InputError(f"no record {sorted(missing)[0]!r} in this build")
            records = [change(r) if r.id in wanted else r for r in records]
            save_jsonl(records, self.path)
        return [r for r in records if r.id in wanted]

    def set_status(self, ids: Iterable[str], status: str) -> list[RationaleRecord]:
        """Marks records accepted, rejected or pending."""
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}")
        return self._update(ids, lambda r: dataclasses.replace(r, status=status))

    def toggle_word(self, record_id: str, index: int) -> RationaleRecord:
        """Adds word `index` to the record's rationale, or removes it; the rationale text follows the words."""

        def change(r: RationaleRecord) -> RationaleRecord:
            if not 0 <= index < len(r.words):
                raise InputError(f"word {index} does not exist (the prompt has {len(r.words)} words)")
            chosen = sorted(set(r.rationale) ^ {index})
            return dataclasses.replace(r, rationale=tuple(chosen), rationale_text=" ".join(r.words[i] for i in chosen))

        return self._update([record_id], change)[0]

    def set_text(self, record_id: str, text: str) -> RationaleRecord:
        """Replaces the rationale text used for training (the highlighted words stay as they are)."""
        return self._update([record_id], lambda r: dataclasses.replace(r, rationale_text=" ".join(text.split())))[0]

    def reset(self, ids: Iterable[str]) -> list[RationaleRecord]:
        """Puts records back as built: the rule's selection, pending."""

        def change(r: RationaleRecord) -> RationaleRecord:
            rule = rule_of(r)
            chosen = select_rationale(r, rule)
            return dataclasses.replace(
                r, rationale=tuple(chosen), rationale_text=" ".join(r.words[i] for i in chosen), status="pending"
            )

        return self._update(ids, change)

    def counts(self) -> dict[str, int]:
        records = self.records()
        return {s: sum(r.status == s for r in records) for s in STATUSES} | {"total": len(records)}

    def stats(self, accepted_only: bool = False) -> RationaleStats:
        records = [r for r in self.records() if r.status == "accepted" or not accepted_only]
        return rationale_stats(records)


def filter_records(
    records: Iterable[RationaleRecord],
    correct: bool | None = None,
    overlaps_gold: bool | None = None,
    status: str | None = None,
    share_range: tuple[float, float] = (0.0, 1.0),
    text: str = "",
) -> list[RationaleRecord]:
    """Returns the records matching every given filter (None means any).

    `share_range` bounds `rationale_share`; `text` is a case-insensitive search in the question and rationale.
    """
    needle = text.strip().lower()
    out = []
    for r in records:
        if correct is not None and r.correct is not correct:
            continue
        if overlaps_gold is not None and (
            r.example.answer is None or gold_overlap(r.rationale_words, r.example.answer)[0] != overlaps_gold
        ):
            continue
        if status is not None and r.status != status:
            continue
        if not share_range[0] <= rationale_share(r) <= share_range[1]:
            continue
        if needle and needle not in r.example.question.lower() and needle not in r.rationale_text.lower():
            continue
        out.append(r)
    return out


def _read_info(folder: Path) -> BuildInfo:
    """Returns the build's build.json; a build without one (made by hand) is described by its folder name."""
    path = folder / BUILD_INFO
    if not path.exists():
        return BuildInfo(name=folder.name, source="n/a")
    try:
        return BuildInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:  # not a JSON object with BuildInfo's fields
        raise InputError(f"{folder.name}/{BUILD_INFO} is not a build description ({exc})") from exc


def _workspace(workspace: Workspace | str | Path | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def open_build(workspace: Workspace | str | Path | None, name: str) -> CurationStore:
    """Returns the curation store of build `name` of the workspace.

    Raises:
        InputError: no name, a name that is not a plain folder name, or a folder that holds no build.
    """
    if not (name or "").strip():
        raise InputError("no build is open: build rationales, or open or import a build first")
    return CurationStore(_workspace(workspace).build_dir(name))


def import_build(workspace: Workspace | str | Path | None, path: str | Path, name: str | None = None) -> BuildInfo:
    """Creates a build from a JSONL file of rationale records (`kdviz rationales --out`); returns its description.

    `name` defaults to "<file>-imported-<time>".

    Raises:
        InputError: not a file of rationale records, no record, ids that are not unique, a taken or unsafe name.
    """
    ws, path = _workspace(workspace), Path(path)
    try:
        records = load_jsonl(path, RationaleRecord)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path.name} is not a file of rationale records ({type(exc).__name__}: {exc})") from exc
    if not records:
        raise InputError(f"{path.name} holds no rationale records")
    if len({r.id for r in records}) != len(records):
        raise InputError(f"{path.name}: record ids must be unique")
    name = (name or "").strip() or ws.new_build_name(path.stem, "imported")
    info = BuildInfo(name=name, source=path.name, imported=True)
    CurationStore.create(ws.build_dir(name), records, info)
    return info
