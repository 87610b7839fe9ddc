"""Compare a teacher and students on the same examples: answers, accuracy, agreement, paired tests, and which
words each model relied on. The library face of the Compare panel.

Every model's answers and attributions come as `RationaleRecord`s: the teacher's, and those of any model kdviz did
not train, through `build_rationales` (zero-shot choice scoring); a student trained by kdviz (a run folder) is
prompted exactly as it was trained (see `kdviz.distill.methods.Method.render`). So the overlap statistics of
the Rationales panel apply to students' own attributions too. On free-form data (SVAMP: no choices, arithmetic gold
answers) every model generates its answer greedily, graded by value (`kdviz.answers.is_correct`), and the attributed
target is its own generation ("generate") or the gold answer ("gold"). Attributions are cached like rationale builds: a
cancelled or repeated comparison recomputes nothing that was finished. The records a comparison is made of are in
`kdviz.compare.records` (also importable from here).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kdviz.answers import is_correct  # free-form answers by value where the gold is arithmetic (SVAMP)
from kdviz.attribution.catalog import RATIONALE_METHOD
from kdviz.attribution.methods import AttributionRequest, check_method
from kdviz.distill.evaluation import predict_answers
from kdviz.distill.methods import BASELINE, get_method
from kdviz.distill.runs import RunInfo, run_info
from kdviz.errors import InputError, UnknownNameError, resource_errors
from kdviz.lm.embedded import cache_root
from kdviz.lm.inference import generate_batch
from kdviz.lm.models import LoadedModel, checkpoint_meta, load_model
from kdviz.lm.prompts import answer_choices, render
from kdviz.rationale_records import Provenance, RationaleRecord
from kdviz.rationales.build import (
    AttributionCache,
    attribute_cached,
    build_rationales,
    example_key,
    scored_then_attributed,
    to_record,
)
from kdviz.rationales.faithfulness import measure_faithfulness
from kdviz.rationales.select import DEFAULT_TOP_K, SelectionRule
from kdviz.rationales.stats import current_faithfulness, summarize
from kdviz.records import SELECTABLE_TARGET_MODES, Example, Prediction, ProgressEvent, TargetMode, TrainExample
from kdviz.workspace import Workspace

from .records import (
    AttributionAgreement,
    Comparison,
    ComparisonSettings,
    ModelAnswers,
    ModelSummary,
    PairwiseTest,
    Role,
)
from .stats import agreement, align_words, attribution_agreement, bootstrap_ci, mcnemar, mean_of

Progress = Callable[[ProgressEvent], None]
STUDENT_RUN_STATUSES = ("completed", "cancelled")  # a failed or interrupted run's checkpoint may be half-written
# Free-form answers are generated greedily up to this many tokens: the bound `build_requests` and `predict_answers`
# generate with, so a model's answer is the same whichever target mode attributes it. Enough for a short answer
# ("The answer is (84 / 2)."), not for a chain of thought before it.
MAX_NEW_TOKENS = 24


def resolve_target_mode(examples: Sequence[Example], target_mode: str | None) -> TargetMode:
    """Returns the target mode a comparison attributes: `target_mode` when given (checked), else "choice" when every
    example has choices and "generate" otherwise (free-form answers: each model's own generation).

    Raises:
        UnknownNameError: not one of "choice", "generate", "gold".
        InputError: "choice" for examples without choices.
    """
    if target_mode is None:
        return "choice" if all(answer_choices(ex) for ex in examples) else "generate"
    if target_mode not in SELECTABLE_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, SELECTABLE_TARGET_MODES)
    free = [ex.id for ex in examples if not answer_choices(ex)]
    if target_mode == "choice" and free:
        raise InputError(
            f"{len(free)} of {len(examples)} examples have no choices (the first: {free[0]!r}); compare free-form "
            "answers with target mode 'generate' (each model's own answer) or 'gold'"
        )
    return target_mode  # type: ignore[return-value]


def _with_generations(
    loaded: LoadedModel, records: Sequence[RationaleRecord], batch_size: int
) -> list[RationaleRecord]:
    """Returns the records with each free-form example's answer generated and graded by value, where the attributed
    target was not the model's own answer (target mode "gold": a gold target says nothing of what the model says)."""
    todo = [i for i, r in enumerate(records) if r.predicted is None and not answer_choices(r.example)]
    out = list(records)
    prompts = [render(records[i].example).text for i in todo]  # the prompt "generate" mode answers
    for i, gen in zip(todo, generate_batch(loaded, prompts, MAX_NEW_TOKENS, batch_size), strict=True):
        out[i] = dataclasses.replace(out[i], predicted=gen.completion,
                                     correct=is_correct(gen.completion, out[i].example.answer))  # fmt: skip
    return out


def _identity(loaded: LoadedModel) -> str:
    """A cache identity that changes when a local checkpoint is rewritten (hub ids and tiny specs are stable)."""
    path = Path(loaded.name).expanduser()
    config = next((p for p in (path / "checkpoint" / "config.json", path / "config.json") if p.is_file()), None)
    return f"{path.resolve()}@{config.stat().st_mtime_ns}" if config else loaded.name


def _student(
    spec: str,
    examples: Sequence[Example],
    teacher: ModelAnswers,
    method: str,
    rule: SelectionRule,
    cache_dir: Path,
    batch_size: int,
    on_progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
    on_faithfulness: Callable[[int, int], None] | None = None,
    target_mode: TargetMode = "choice",
) -> ModelAnswers | None:
    """Returns a student's answers and attributions, or None if cancelled before it finished."""
    loaded = load_model(spec)
    meta = checkpoint_meta(spec)
    trained_as = get_method(meta.get("method", BASELINE.name))
    items = [
        TrainExample(ex, rec.predicted, rec.rationale_text or " ".join(rec.words[i] for i in rec.rationale))
        for ex, rec in zip(examples, teacher.records, strict=True)
    ]
    predicted = predict_answers(loaded, items, trained_as, batch_size=batch_size)
    no_rationale = predict_answers(loaded, items, BASELINE, batch_size) if trained_as.rationale_in_prompt else []
    by_id = {t.example.id: (t, p) for t, p in zip(items, predicted, strict=True)}

    def requests(chunk: list[Example]) -> list[AttributionRequest]:
        out = []
        for ex in chunk:
            item, answer = by_id[ex.id]
            rendered = trained_as.render(item)
            prediction = Prediction(answer, is_correct(answer, ex.answer), ex.answer)
            if target_mode == "gold":  # its answer is kept in the prediction; the gold answer is attributed
                out.append(AttributionRequest(rendered.text, ex.answer, "gold", rendered.template_spans, ex.id,
                                              prediction))  # fmt: skip
                continue
            mode = "choice" if answer_choices(ex) else "generate"
            out.append(AttributionRequest(rendered.text, answer, mode, rendered.template_spans, ex.id, prediction))
        return out

    settings = {
        "prompt": trained_as.name,
        "teacher_rationales": teacher.name if trained_as.rationale_in_prompt else None,
        **({"target_mode": "gold"} if target_mode == "gold" else {}),  # others keep the caches made before modes
    }
    cache = AttributionCache(cache_dir, _identity(loaded), method, settings)
    done, cancelled, _ = attribute_cached(
        loaded, examples, scored_then_attributed(loaded, requests, method), cache, batch_size=batch_size,
        on_progress=on_progress, should_stop=should_stop,
    )  # fmt: skip
    if cancelled:
        return None
    provenance = Provenance(teacher=loaded.name, method=method, rule=rule.describe(), trained_as=trained_as.name)
    records = tuple(to_record(done[example_key(ex)], ex, rule, provenance) for ex in examples)
    # How faithful the student's own rationales are to its own answers, scored as it answered (issue #12).
    measured = measure_faithfulness(loaded, records, rule=rule, batch_size=batch_size, model_id=_identity(loaded),
                                    cache_dir=cache_dir / "faithfulness", on_progress=on_faithfulness,
                                    should_stop=should_stop)  # fmt: skip
    if should_stop and should_stop():
        return None
    records = tuple(dataclasses.replace(r, faithfulness=f) for r, f in zip(records, measured, strict=True))
    return ModelAnswers(
        spec, "student", trained_as.name, bool(meta.get("teacher_at_test_time", False)), records, tuple(no_rationale)
    )


@resource_errors("comparing", "use a smaller batch size, fewer examples, or smaller models", kept=True)
def compare(
    teacher: str,
    students: Sequence[str],
    examples: Sequence[Example],
    *,
    method: str = RATIONALE_METHOD,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = 4,
    cache_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    predict: str | None = None,
    target_mode: str | None = None,
) -> Comparison:
    """Runs the teacher and each student on the examples and returns the comparison.

    Args:
        teacher, students: model specs; a student may be a training run folder (runs/<name>), which is then
            prompted as it was trained; a `rationale_input` student gets the teacher's rationale words.
        method: the attribution method for every model; `top_k`: words kept as each model's rationale.
        on_progress: called with a `ProgressEvent(stage="teacher" or "student", done, total, model=spec)` when a
            model starts (done: its examples already cached) and after each of its batches, then with
            stage="faithfulness" while its rationales' comprehensiveness and sufficiency are measured on it.
        should_stop: polled between batches; a cancelled comparison keeps the models that finished
            (`cancelled=True`), and a rerun resumes from the attribution cache.
        predict: how the teacher, and students kdviz did not train, predict a choice ("letter", "cloze",
            "choice-text"; None: each model's default, see `kdviz.lm.prompts.default_predict_mode`). Students
            trained by kdviz answer as they were trained.
        target_mode: what each model's attribution explains: "choice" (its predicted choice), "generate" (its own
            greedy answer, at most `MAX_NEW_TOKENS` tokens) or "gold" (the gold answer; free-form answers are still
            generated and graded); None: "choice" for data with choices, else "generate" (`resolve_target_mode`).
            Free-form answers are graded by value where the gold answer is arithmetic (`kdviz.answers.is_correct`).

    Raises:
        InputError: no examples, no students, examples without gold answers, duplicate model names, or target
            mode "choice" for examples without choices.
        UnknownNameError: an unknown target mode.
        ResourceError: out of memory or disk space; the message says what to reduce (the finished models stay
            cached, so a rerun continues from them).
    """
    check_method(method)
    if not examples:
        raise InputError("no examples to compare on")
    if not students:
        raise InputError("pick at least one student to compare with the teacher")
    if len({teacher, *students}) != len(students) + 1:
        raise InputError("each model can appear only once in a comparison")
    if len({ex.id for ex in examples}) != len(examples):
        raise InputError("example ids must be unique")
    if not any(ex.answer for ex in examples):
        raise InputError("no example has a gold answer (an 'answer' field); accuracy needs one")
    mode = resolve_target_mode(examples, target_mode)
    rule = SelectionRule(top_k=top_k)
    root = Path(cache_dir) if cache_dir else cache_root() / "attributions"

    def stage(role: Role, spec: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(ProgressEvent(role, done, total, spec))

    def measuring(spec: str) -> Callable[[int, int], None] | None:  # the faithfulness that follows an attribution
        if on_progress is None:
            return None
        return lambda done, total: on_progress(ProgressEvent("faithfulness", done, total, spec))

    def zero_shot(spec: str, chosen: Sequence[Example], role: Role) -> tuple[list[RationaleRecord], bool]:
        """Returns (the records of a model kdviz did not train, answering as the teacher does; whether cancelled)."""
        built = build_rationales(spec, chosen, method, rule, target_mode=mode, batch_size=batch_size, cache_dir=root,
                                 on_progress=stage(role, spec), should_stop=should_stop, predict=predict,
                                 on_faithfulness=measuring(spec))  # fmt: skip
        records = list(built.records)
        if mode == "gold" and records and not (built.cancelled and role == "student"):
            records = _with_generations(load_model(spec), records, batch_size)
        return records, built.cancelled

    records, cancelled = zero_shot(teacher, examples, "teacher")
    teacher_answers = ModelAnswers(teacher, "teacher", None, False, tuple(records))
    kept = [r.example for r in records]
    models = [teacher_answers]
    for spec in students if not cancelled else ():
        if checkpoint_meta(spec).get("method"):  # fine-tuned by kdviz: prompted exactly as it was trained
            answers = _student(spec, kept, teacher_answers, method, rule, root, batch_size, stage("student", spec),
                               should_stop, measuring(spec), mode)  # fmt: skip
        else:  # any other model answers zero-shot, the way the teacher does
            own, stopped = zero_shot(spec, kept, "student")
            answers = None if stopped else ModelAnswers(spec, "student", None, False, tuple(own))
        if answers is None:
            cancelled = True
            break
        models.append(answers)
    settings = ComparisonSettings(teacher, tuple(students), method, top_k, len(kept), predict=predict,
                                  target_mode=mode)  # fmt: skip
    summary, pairwise = summarize_models(models, kept, top_k)
    return Comparison(tuple(kept), tuple(models), settings, summary, tuple(pairwise), cancelled)


def summarize_models(
    models: Sequence[ModelAnswers], examples: Sequence[Example], top_k: int
) -> tuple[dict[str, ModelSummary], list[PairwiseTest]]:
    """Returns (the summary row of each model by name, McNemar's test of every pair of models)."""
    teacher = models[0]
    summary: dict[str, ModelSummary] = {}
    for m in models:
        graded = [c for c in m.correct if c is not None]
        ci = bootstrap_ci(graded)
        no_rationale = None
        if m.predicted_no_rationale:
            marks = [is_correct(p, ex.answer) for p, ex in zip(m.predicted_no_rationale, examples, strict=True)]
            no_rationale = mean_of([float(c) for c in marks if c is not None])
        vs_teacher = None
        if m is not teacher:
            per_example = [
                attribution_vs_teacher(t, s, top_k) for t, s in zip(teacher.records, m.records, strict=True)
            ]
            vs_teacher = AttributionAgreement(
                *(mean_of([getattr(p, k) for p in per_example]) for k in ("top_k_overlap", "spearman", "kendall"))
            )
        summary[m.name] = ModelSummary(
            role=m.role,
            method=m.method,
            teacher_at_test_time=m.teacher_at_test_time,
            n=len(m.records),
            accuracy=mean_of([float(c) for c in graded]),
            ci_low=ci[0] if ci else None,
            ci_high=ci[1] if ci else None,
            agreement_with_teacher=None if m is teacher else agreement(m.predicted, teacher.predicted),
            overlap=summarize(  # faithfulness: of the model's own rationales, where they were measured
                [(r.rationale_words, ex, r.correct) for r, ex in zip(m.records, examples, strict=True)],
                [current_faithfulness(r) for r in m.records],
            ),
            accuracy_no_rationale=no_rationale,
            attribution_vs_teacher=vs_teacher,
        )
    pairwise = []
    for a, b in itertools.combinations(models, 2):
        pairs = [(x, y) for x, y in zip(a.correct, b.correct, strict=True) if x is not None and y is not None]
        test = mcnemar([x for x, _ in pairs], [y for _, y in pairs])
        pairwise.append(PairwiseTest(a.name, b.name, test.a_only, test.b_only, test.n, test.p_value,
                                     agreement(a.predicted, b.predicted)))  # fmt: skip
    return summary, pairwise


def attribution_vs_teacher(teacher: RationaleRecord, student: RationaleRecord, top_k: int) -> AttributionAgreement:
    """Returns the agreement of two records' word attributions over the task words both prompts share."""
    pairs = align_words(teacher.words, teacher.word_is_template, student.words, student.word_is_template)
    return attribution_agreement(teacher.word_scores, student.word_scores, pairs, top_k)


def with_examples(comparison: Comparison, keep: Sequence[int]) -> Comparison:
    """Returns the comparison restricted to the examples at `keep` (e.g. a filtered view), statistics redone."""
    models = [dataclasses.replace(m, records=tuple(m.records[i] for i in keep),
                                  predicted_no_rationale=tuple(m.predicted_no_rationale[i] for i in keep)
                                  if m.predicted_no_rationale else ()) for m in comparison.models]  # fmt: skip
    examples = [comparison.examples[i] for i in keep]
    summary, pairwise = summarize_models(models, examples, comparison.settings.top_k)
    settings = dataclasses.replace(comparison.settings, n=len(examples))
    return dataclasses.replace(comparison, examples=tuple(examples), models=tuple(models), summary=summary,
                               pairwise=tuple(pairwise), settings=settings)  # fmt: skip


def with_names(comparison: Comparison, names: Mapping[str, str], **settings: object) -> Comparison:
    """Returns the comparison with each model under its shown name (`names`: spec -> name; others kept) and any
    further `settings` (data, limit, command) recorded, so a reopened report shows what ran as it was typed."""

    def name(spec: str) -> str:
        return names.get(spec, spec)

    models = tuple(dataclasses.replace(m, name=name(m.name)) for m in comparison.models)
    summary = {name(k): v for k, v in comparison.summary.items()}
    pairwise = tuple(dataclasses.replace(p, a=name(p.a), b=name(p.b)) for p in comparison.pairwise)
    shown = dataclasses.replace(comparison.settings, teacher=name(comparison.settings.teacher),
                                students=tuple(name(s) for s in comparison.settings.students), **settings)  # fmt: skip
    return dataclasses.replace(comparison, models=models, summary=summary, pairwise=pairwise, settings=shown)


def student_runs(workspace: Workspace) -> list[RunInfo]:
    """Returns the workspace's training runs that can be compared as students, newest first: finished or cancelled
    ones that saved a checkpoint."""
    infos = [run_info(folder) for folder in workspace.list_run_dirs()]
    return [info for info in infos if info.status in STUDENT_RUN_STATUSES and info.has_checkpoint]
