"""The Rationales panel's build: the panel's settings made into `kdviz.rationales.build.build_into_workspace`, which
checks them, names the build and writes it to the workspace. `build_job` runs it in the background."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from kdviz.attribution.catalog import RATIONALE_METHOD as RATIONALE_METHOD  # the panel's default method
from kdviz.data import parse_columns
from kdviz.errors import UnknownNameError
from kdviz.rationales.select import DEFAULT_SPAN as DEFAULT_SPAN  # the panel's default span
from kdviz.rationales.select import DEFAULT_TOP_K, RuleKind, SelectionRule, Span
from kdviz.rationales.select import SPANS as SPANS  # the panel's span choices
from kdviz.rationales.workspace_build import BUILD_TARGET_MODES as BUILD_TARGET_MODES  # the panel's choices
from kdviz.rationales.workspace_build import build_into_workspace
from kdviz.records import PREDICT_MODES, ProgressEvent
from kdviz.workspace import Workspace

from .fields import number

RULES: dict[str, RuleKind] = {"top-k": "top_k", "mass": "mass", "z": "z"}  # the panel's labels -> rule kinds
RULE_DEFAULTS = {"top-k": DEFAULT_TOP_K, "mass": 0.5, "z": 1.0}  # the number a rule starts with when picked
LABELS = {"limit": "Examples (first N)", "batch_size": "Batch size"}  # whole numbers, at least 1 (see `fields`)
PREDICT_CHOICES = ("default", *PREDICT_MODES)  # default: the teacher's measured best mode
EXCLUSIONS = {  # the panel's labels -> SelectionRule switches
    "stopwords": "exclude_stopwords",
    "punctuation": "exclude_punctuation",
    "choice letters": "exclude_choice_letters",
    "template words": "exclude_template",
}


class BuildView(NamedTuple):
    """What the panel shows of a build: the build to open ("" while it runs, or when nothing was saved), a
    Markdown message, the equivalent command (Markdown), and, while it runs, where it stands."""

    build: str
    message: str
    command: str = ""
    progress: ProgressEvent | None = None
    running: bool = False


def selection_rule(
    rule: str, value: float | None, exclude: Sequence[str] = tuple(EXCLUSIONS), span: Span = DEFAULT_SPAN
) -> SelectionRule:
    """Returns the SelectionRule of the panel's labels: a rule ("top-k", "mass", "z"), its number, the names of
    the exclusions switched on (the others are off), and the span ("question" or "all")."""
    if rule not in RULES:
        raise UnknownNameError("selection rule", rule, RULES)
    for name in exclude:
        if name not in EXCLUSIONS:
            raise UnknownNameError("exclusion", name, EXCLUSIONS)
    switches = {field: name in exclude for name, field in EXCLUSIONS.items()}
    return SelectionRule.of(RULES[rule], value, span, **switches)


def rule_default(rule: str) -> float:
    """Returns the number a rule ("top-k", "mass", "z") starts with when picked."""
    if rule not in RULE_DEFAULTS:
        raise UnknownNameError("selection rule", rule, RULES)
    return RULE_DEFAULTS[rule]


def command_markdown(command: str | None) -> str:
    return f"**Same build from the command line:**\n```\n{command}\n```" if command else ""


def build(
    workspace: str | Path,
    model_spec: str,
    dataset: str,
    columns: str,
    limit: int,
    method: str,
    target_mode: str,
    rule: str,
    rule_value: float,
    exclude: Sequence[str],
    batch_size: int,
    name: str = "",
    span: Span = DEFAULT_SPAN,
    faithfulness: bool = True,
    predict: str = "default",
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_faithfulness: Callable[[int, int], None] | None = None,
) -> BuildView:
    """Builds rationales for the first `limit` examples of `dataset` into a new build of the workspace, over the
    words of `span`, then measures their faithfulness on the teacher unless `faithfulness` is off; the teacher
    predicts in mode `predict` ("default": its own, see `kdviz.lm.prompts.default_predict_mode`).

    Finished attributions are cached, so a cancelled build keeps the records done so far and a rerun recomputes
    nothing; cancelled before any example was finished, nothing is saved (the view's build is "").

    Raises:
        KdvizError: bad settings (checked before the model loads), a taken build name, unreadable data.
    """
    info, result = build_into_workspace(
        Workspace(workspace), name, model_spec or "", dataset, method, selection_rule(rule, rule_value, exclude, span),
        columns=parse_columns(columns), limit=number(limit, LABELS["limit"], whole=True, minimum=1),
        target_mode=target_mode, batch_size=number(batch_size, LABELS["batch_size"], whole=True, minimum=1),
        on_progress=on_progress, should_stop=should_stop,
        faithfulness=bool(faithfulness), on_faithfulness=on_faithfulness,
        predict=None if predict == "default" else predict,
    )  # fmt: skip
    if info is None:
        return BuildView("", "Cancelled before any example was finished: nothing was saved.")
    n = len(result.records)
    done = f"{n} of {info.examples} examples" if result.cancelled else f"{n} records"
    message = f"Build **{info.name}**: {done} ({result.from_cache} from the cache)."
    if result.cancelled:
        message = f"Cancelled. {message} Build again to resume: finished examples come from the cache."
    return BuildView(info.name, message, command_markdown(info.command))
