"""Save a rationale build into a `kdviz.workspace.Workspace`: the one path the app's Rationales panel and
`kdviz rationales --workspace` share, and the `kdviz rationales` command line that repeats a build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from kdviz.attribution.catalog import DEFAULT_STEPS, RATIONALE_METHOD, check_method
from kdviz.config import DTYPE_FLAGS, ModelSpec
from kdviz.data import format_columns, load_examples
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.models import LoadedModel
from kdviz.lm.prompts import check_predict_mode
from kdviz.workspace import BUILD_RECORDS, BuildInfo, Workspace, command_line

from .build import BuildResult, Progress, build_rationales
from .curation import CurationStore
from .parallel import is_main_process
from .select import SelectionRule

BuildTargetMode = Literal["choice", "gold", "generate"]
BUILD_TARGET_MODES: tuple[BuildTargetMode, ...] = get_args(BuildTargetMode)


class WorkspaceBuild(NamedTuple):
    """What `build_into_workspace` made: the saved build's description (None when cancelled before any example
    was finished, or in a data-parallel launch's other processes: nothing was saved) and the build's result."""

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
    steps: int = DEFAULT_STEPS,
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
    dtype_flag = {name: flag for flag, name in DTYPE_FLAGS.items()}.get(spec.dtype)
    threshold = {"top_k": "--top-k", "mass": "--mass", "z": "--z"}[rule.kind]
    return command_line(
        ["kdviz", "rationales"],
        [
            ("--teacher", spec.model_name_or_path),
            ("--device", None if spec.device == "auto" else spec.device),
            ("--no-chat", spec.chat is False),
            ("--trust-remote-code", spec.trust_remote_code),
            ("--dtype", dtype_flag),
            ("--device-map", spec.device_map),
            ("--load-in-4bit", spec.load_in_4bit),
            ("--data", str(source)),
            ("--columns", format_columns(columns)),
            ("--limit", limit),
            ("--method", method),
            ("--target-mode", target_mode),
            ("--predict", predict),
            (threshold, getattr(rule, rule.kind)),
            ("--span", rule.span),  # always: the command must outlive a change of default
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
    method: str = RATIONALE_METHOD,
    rule: SelectionRule | None = None,
    *,
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    target_mode: BuildTargetMode = "choice",
    steps: int = DEFAULT_STEPS,
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
    In a data-parallel launch (`kdviz.rationales.parallel`) every process builds its share and only the first saves.

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
    if not result.records or not is_main_process():
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
