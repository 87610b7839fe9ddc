"""Build rationale datasets: run the teacher over examples in batches, cache every finished attribution on disk,
select rationale words, and return records ready to curate; `build_into_workspace` saves them as a build of a
`kdviz.workspace.Workspace` (the app's Rationales panel and `kdviz rationales --workspace` both call it).

A rerun, or a run after a crash or a cancel, recomputes nothing that was finished: attributions are appended to a
JSONL cache keyed by (teacher, method, settings, example) as each batch completes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from kdviz.attribution.methods import AttributionRequest, attribute_requests, check_method
from kdviz.attribution.targets import build_requests, predict_mode
from kdviz.config import ModelSpec
from kdviz.data import format_columns, load_examples
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.embedded import cache_root
from kdviz.lm.models import LoadedModel, load_model
from kdviz.lm.prompts import check_predict_mode
from kdviz.records import Example, RationaleRecord, Record, TokenAttribution
from kdviz.workspace import BUILD_RECORDS, BuildInfo, Workspace, command_line

from .curation import CurationStore
from .faithfulness import measure_faithfulness
from .select import SelectionRule, select_rationale
from .stats import RationaleStats, rationale_stats

Progress = Callable[[int, int], None]


def example_key(example: Example) -> str:
    """Returns a stable hash of an example's content (id included): the cache key within one cache file."""
    return hashlib.sha1(json.dumps(example.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


class AttributionCache:
    """An append-only JSONL file of attributions for one (teacher, method, settings) combination."""

    def __init__(self, root: str | Path, teacher: str, method: str, settings: dict):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher)[-60:]
        digest = hashlib.sha1(json.dumps([teacher, method, settings], sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(root) / f"{slug}__{method}__{digest}.jsonl"

    def load(self) -> dict[str, TokenAttribution]:
        """Returns the cached attributions by example key (a torn last line, from a crash, is skipped)."""
        found: dict[str, TokenAttribution] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    found[entry["key"]] = TokenAttribution.from_dict(entry["attribution"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return found

    def add(self, keys: Sequence[str], attrs: Sequence[TokenAttribution]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, attr in zip(keys, attrs, strict=True):
                handle.write(json.dumps({"key": key, "attribution": attr.to_dict()}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass(frozen=True)
class BuildResult(Record):
    """The records built (in example order), their statistics, and how the run went."""

    records: tuple[RationaleRecord, ...]
    stats: RationaleStats
    cancelled: bool  # should_stop ended the build early: `records` holds the examples finished before
    from_cache: int  # examples whose attribution came from the cache

    def __post_init__(self) -> None:
        records = tuple(r if isinstance(r, RationaleRecord) else RationaleRecord.from_dict(r) for r in self.records)
        object.__setattr__(self, "records", records)
        if isinstance(self.stats, dict):
            object.__setattr__(self, "stats", RationaleStats.from_dict(self.stats))


def to_record(attr: TokenAttribution, example: Example, rule: SelectionRule, provenance: dict) -> RationaleRecord:
    """Returns the rationale record for one example's attribution, with the rule's words selected."""
    chosen = select_rationale(attr, rule)
    return RationaleRecord(
        example=example,
        prompt=attr.prompt,
        target=attr.target,
        target_mode=attr.target_mode,
        predicted=attr.predicted,
        correct=attr.prediction.correct if attr.prediction else None,
        words=attr.words,
        word_offsets=attr.word_offsets,
        word_scores=attr.word_scores,
        word_is_template=attr.word_is_template,
        rationale=tuple(chosen),
        rationale_text=" ".join(attr.words[i] for i in chosen),
        provenance=provenance,
    )


def attribute_cached(
    loaded: LoadedModel,
    examples: Sequence[Example],
    make_requests: Callable[[list[Example]], list[AttributionRequest]],
    cache: AttributionCache,
    method: str,
    *,
    steps: int = 20,
    batch_size: int = 4,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, TokenAttribution], bool, int]:
    """Attributes the examples not yet in `cache`, a batch at a time, adding each finished batch to it.

    Returns (attributions by `example_key`, whether `should_stop` cancelled the run, how many came from the cache).
    """
    done = cache.load()
    keys = [example_key(ex) for ex in examples]
    todo = [i for i, key in enumerate(keys) if key not in done]
    from_cache, cancelled = len(examples) - len(todo), False
    if on_progress:
        on_progress(from_cache, len(examples))
    for start in range(0, len(todo), batch_size):
        if should_stop and should_stop():
            cancelled = True
            break
        chunk = todo[start : start + batch_size]
        requests = make_requests([examples[i] for i in chunk])
        attrs = attribute_requests(loaded, requests, method, steps=steps, batch_size=batch_size, per_token=False)
        cache.add([keys[i] for i in chunk], attrs)
        done.update(zip((keys[i] for i in chunk), attrs, strict=True))
        if on_progress:
            on_progress(from_cache + start + len(chunk), len(examples))
    return done, cancelled, from_cache


def build_rationales(
    teacher: LoadedModel | ModelSpec | str,
    examples: Sequence[Example],
    method: str = "input_x_gradient",
    rule: SelectionRule | None = None,
    *,
    target_mode: str | None = "choice",
    steps: int = 20,
    batch_size: int = 4,
    cache_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    faithfulness: bool = True,
    on_faithfulness: Progress | None = None,
    predict: str | None = None,
) -> BuildResult:
    """Returns rationale records for the examples, attributing `batch_size` at a time, then (unless `faithfulness`
    is False) measuring each rationale's comprehensiveness and sufficiency on the teacher
    (`kdviz.rationales.faithfulness`: five more scored prompts per record, cached like the attributions).

    Args:
        target_mode: what is attributed: "choice" (the teacher's predicted choice, as in Ballout et al.),
            "gold" or "generate"; None picks "choice" for examples with choices.
        predict: how the teacher predicts ("letter", "cloze", "choice-text"; None: its default, see
            `kdviz.lm.prompts.default_predict_mode`); records keep the prompt and target that mode scored.
        cache_dir: where finished attributions are kept (default: kdviz's cache folder, "attributions"; the
            faithfulness measurements go to its "faithfulness" subfolder, by default kdviz's cache's).
        on_progress: called with (done, total) after each batch, cached examples counted as done.
        should_stop: polled between batches; when it returns True the build stops and returns what is done,
            with `cancelled=True` (the finished batches stay cached, so a rerun resumes). Stopped while
            faithfulness is measured, every record is returned, those not measured without faithfulness.
        on_faithfulness: as `on_progress`, for the faithfulness measurement that follows the attribution.
    """
    check_method(method)
    rule = rule or SelectionRule()
    loaded = teacher if isinstance(teacher, LoadedModel) else load_model(teacher)
    mode = predict_mode(loaded, predict)
    steps_used = steps if method == "integrated_gradients" else None
    settings = {"target_mode": target_mode, "steps": steps_used, "predict": mode}
    cache = AttributionCache(cache_dir or cache_root() / "attributions", loaded.name, method, settings)
    done, cancelled, from_cache = attribute_cached(
        loaded,
        examples,
        lambda chunk: build_requests(loaded, chunk, target_mode, batch_size=batch_size, predict=mode),
        cache,
        method,
        steps=steps,
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    keys = [example_key(ex) for ex in examples]
    from kdviz._version import __version__

    provenance = {
        "teacher": loaded.name,
        "method": method,
        "target_mode": target_mode,
        "predict": mode,
        "steps": settings["steps"],
        "rule": rule.describe(),
        "rule_config": dataclasses.asdict(rule),
        "kdviz_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    records = [
        to_record(done[key], ex, rule, provenance) for ex, key in zip(examples, keys, strict=True) if key in done
    ]
    if faithfulness and records and not cancelled:
        measured = measure_faithfulness(
            loaded, records, batch_size=batch_size, cache_dir=Path(cache_dir) / "faithfulness" if cache_dir else None,
            on_progress=on_faithfulness, should_stop=should_stop,
        )  # fmt: skip
        records = [dataclasses.replace(r, faithfulness=f) for r, f in zip(records, measured, strict=True)]
        cancelled = bool(should_stop and should_stop())
    return BuildResult(tuple(records), rationale_stats(records), cancelled, from_cache)


def reselect(records: Sequence[RationaleRecord], rule: SelectionRule) -> list[RationaleRecord]:
    """Returns the records with rationales chosen again by another rule (no model needed); statuses reset."""
    out = []
    for rec in records:
        chosen = select_rationale(rec, rule)
        out.append(
            dataclasses.replace(
                rec,
                rationale=tuple(chosen),
                rationale_text=" ".join(rec.words[i] for i in chosen),
                status="pending",
                provenance={**rec.provenance, "rule": rule.describe(), "rule_config": dataclasses.asdict(rule)},
            )
        )
    return out


BuildTargetMode = Literal["choice", "gold", "generate"]
BUILD_TARGET_MODES: tuple[BuildTargetMode, ...] = get_args(BuildTargetMode)


class WorkspaceBuild(NamedTuple):
    """What `build_into_workspace` made: the saved build's description (None when cancelled before any example
    was finished: nothing was saved) and the build's result."""

    info: BuildInfo | None
    result: BuildResult


def _spec_name(teacher: LoadedModel | ModelSpec | str) -> str:
    if isinstance(teacher, LoadedModel):
        return teacher.name
    return teacher.model_name_or_path if isinstance(teacher, ModelSpec) else teacher


def rationales_command(
    teacher: ModelSpec | str,
    source: str | Path,
    method: str,
    rule: SelectionRule,
    *,
    target_mode: str = "choice",
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    steps: int = 20,
    batch_size: int = 4,
    workspace: Workspace | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    faithfulness: bool = True,
    predict: str | None = None,
) -> str:
    """Returns the `kdviz rationales ...` command line that builds these rationales (into `workspace` as build
    `name`, and/or into the records file `out`)."""
    spec = teacher if isinstance(teacher, ModelSpec) else ModelSpec(str(teacher))
    threshold = {"top_k": "--top-k", "mass": "--mass", "z": "--z"}[rule.kind]
    return command_line(
        ["kdviz", "rationales"],
        [
            ("--teacher", spec.model_name_or_path),
            ("--device", None if spec.device == "auto" else spec.device),
            ("--no-chat", spec.chat is False),
            ("--trust-remote-code", spec.trust_remote_code),
            ("--data", str(source)),
            ("--columns", format_columns(columns)),
            ("--limit", limit),
            ("--method", method),
            ("--target-mode", target_mode),
            ("--predict", predict),
            (threshold, getattr(rule, rule.kind)),
            ("--span", None if rule.span == "all" else rule.span),
            ("--keep-stopwords", not rule.exclude_stopwords),
            ("--keep-punctuation", not rule.exclude_punctuation),
            ("--keep-letters", not rule.exclude_choice_letters),
            ("--keep-template", not rule.exclude_template),
            ("--steps", steps if method == "integrated_gradients" else None),
            ("--batch-size", batch_size),
            ("--no-faithfulness", not faithfulness),
            ("--workspace", str(workspace.root) if workspace else None),
            ("--name", name),
            ("--out", str(out) if out else None),
        ],
    )


def build_into_workspace(
    workspace: Workspace | str | Path | None,
    name: str | None,
    teacher: LoadedModel | ModelSpec | str,
    source: str | Path,
    method: str = "input_x_gradient",
    rule: SelectionRule | None = None,
    *,
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    target_mode: BuildTargetMode = "choice",
    steps: int = 20,
    batch_size: int = 4,
    cache_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    out: str | Path | None = None,
    faithfulness: bool = True,
    on_faithfulness: Progress | None = None,
    predict: str | None = None,
) -> WorkspaceBuild:
    """Builds rationales for the examples of `source` (a data file or hf:NAME[:SPLIT]) into a new build of the
    workspace, <workspace>/builds/<name> (records.jsonl + build.json), which the app opens and curates.

    Every setting is checked before the model loads. `name` defaults to "<data>-<method>-<time>". A cancelled build
    keeps the records finished so far (marked cancelled in build.json); its attributions are cached, so building
    again recomputes nothing. `out`, when given, only goes into the recorded command (the CLI also writes there).

    Raises:
        KdvizError: an unknown method or target mode, a bad setting, a taken or unsafe name, unreadable data,
            or example ids that are not unique (curation finds records by id).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    check_method(method)
    if target_mode not in BUILD_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, BUILD_TARGET_MODES)
    if predict is not None:
        check_predict_mode(predict)
    rule = rule or SelectionRule()
    spec = (_spec_name(teacher) or "").strip()
    if not spec:
        raise InputError("choose a teacher model (a spec, hub id or local path)")
    if (limit is not None and int(limit) < 1) or int(batch_size) < 1 or int(steps) < 1:
        raise InputError("the number of examples and the batch size must be at least 1")
    name = (name or "").strip() or ws.new_build_name(str(source), method)
    folder = ws.build_dir(name)
    if (folder / BUILD_RECORDS).exists():
        raise InputError(f"a build named {name!r} exists already; choose another name")
    examples = load_examples(source, limit=None if limit is None else int(limit), columns=columns)
    if len({ex.id for ex in examples}) != len(examples):
        raise InputError(f"{Path(str(source)).name}: example ids must be unique (map another column to id)")
    result = build_rationales(
        spec if isinstance(teacher, str) else teacher,
        examples,
        method,
        rule,
        target_mode=target_mode,
        steps=int(steps),
        batch_size=int(batch_size),
        cache_dir=cache_dir,
        on_progress=on_progress,
        should_stop=should_stop,
        faithfulness=faithfulness,
        on_faithfulness=on_faithfulness,
        predict=predict,
    )
    if not result.records:
        return WorkspaceBuild(None, result)
    command_teacher = teacher if isinstance(teacher, ModelSpec) else spec  # keeps its loading flags
    info = BuildInfo(
        name=name,
        source=str(source) if str(source).startswith("hf:") else Path(source).name,
        teacher=spec,
        method=method,
        target_mode=target_mode,
        rule=rule.describe(),
        columns=columns,
        examples=len(examples),
        cancelled=result.cancelled,
        command=rationales_command(
            command_teacher,
            source,
            method,
            rule,
            target_mode=target_mode,
            columns=columns,
            limit=limit,
            steps=steps,
            batch_size=batch_size,
            workspace=ws,
            name=name,
            out=out,
            faithfulness=faithfulness,
            predict=predict,
        ),  # fmt: skip
    )
    CurationStore.create(folder, result.records, info)
    return WorkspaceBuild(info, result)
