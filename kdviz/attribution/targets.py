"""Run a teacher on prompts or dataset examples: pick the target (generated, predicted choice, gold, or given)
and attribute it to the input. This is the library face of the app's Teacher panel."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kdviz.answers import is_correct
from kdviz.config import ModelSpec
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.inference import generate_batch, score_prompts
from kdviz.lm.models import LoadedModel, load_model
from kdviz.lm.prompts import (
    LETTERS,
    PredictMode,
    PromptFormat,
    answer_choices,
    check_predict_mode,
    check_target,
    default_predict_mode,
    render,
    render_prediction,
)
from kdviz.records import (
    CONTRAST_MODES,
    SELECTABLE_TARGET_MODES,
    ChoiceScores,
    ContrastMode,
    Example,
    Prediction,
    ProgressEvent,
    TargetMode,
    TokenAttribution,
)

from .catalog import DEFAULT_METHOD, DEFAULT_STEPS, AttributionMethod, check_contrastive
from .decision import ONE_PASS_METHODS, attribute_letter_decisions
from .methods import AttributionRequest, attribute_requests, check_method

Progress = Callable[[int, int], None]
# What each contrast attributes: the prediction (against the runner-up), or the gold answer (against the prediction).
CONTRAST_TARGET_MODES: dict[str, TargetMode] = {"runner-up": "choice", "gold": "gold"}


def _as_loaded(model: LoadedModel | ModelSpec | str) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def default_target_mode(example: Example, fmt: PromptFormat | None = None) -> TargetMode:
    """Returns "choice" for examples with answer choices, else "generate"."""
    return "choice" if answer_choices(example, fmt) else "generate"


def predict_mode(loaded: LoadedModel, predict: str | None = None) -> PredictMode:
    """Returns the prediction mode to use: `predict` when given (checked), else the model's default."""
    return default_predict_mode(loaded) if predict is None else check_predict_mode(predict)


def scoring_prompt(example: Example, fmt: PromptFormat | None = None, predict: PredictMode = "cloze") -> str:
    """Returns the prompt whose continuations (or next-token letters, in "letter" mode) are scored to predict a
    choice (see `kdviz.lm.prompts.render_prediction`): the prompt that is also attributed."""
    return render_prediction(example, predict, fmt).text


def score_examples(
    loaded: LoadedModel,
    examples: Sequence[Example],
    fmt: PromptFormat | None = None,
    batch_size: int = 32,
    on_progress: Progress | None = None,
    *,
    predict: PredictMode | None = None,
) -> list[ChoiceScores]:
    """Returns each example's choice scores in prediction mode `predict` (default: the model's; see
    `default_predict_mode`); `.predicted` is the model's answer (examples need choices)."""
    mode = predict_mode(loaded, predict)
    return score_prompts(
        loaded,
        [scoring_prompt(ex, fmt, mode) for ex in examples],
        [answer_choices(ex, fmt) for ex in examples],
        letters=mode == "letter",
        batch_size=batch_size,
        on_progress=on_progress,
    )


def _check(example: Example, mode: TargetMode, fmt, predict: PredictMode, contrast: str | None) -> None:
    """Raises InputError when `example` cannot be attributed as asked (checked before any model work)."""
    choices = answer_choices(example, fmt)
    if mode == "choice" and not choices:
        raise InputError(f"example {example.id!r} has no choices; use target mode 'generate' or 'gold'")
    if mode == "gold" and not example.answer:
        raise InputError(f"example {example.id!r} has no gold answer to attribute")
    if contrast is not None and mode == "forced":
        raise InputError("a contrastive attribution picks its own two targets; give no target string")
    if contrast is not None and len(choices) < 2:
        raise InputError(f"example {example.id!r} has no two choices to contrast")
    if predict == "letter" and mode == "gold" and choices and example.answer not in choices:
        raise InputError(
            f"example {example.id!r}: the gold answer {example.answer!r} is not one of its choices, so it has no "
            "letter; use prediction mode 'cloze' or 'choice-text'"
        )


def target_modes(
    examples: Sequence[Example],
    target_mode: TargetMode | None,
    fmt: PromptFormat | None,
    targets: Sequence[str | None],
    *,
    predict: PredictMode,
    contrast: ContrastMode | None,
) -> list[TargetMode]:
    """Returns each example's target mode ("forced" where `targets` gives one), checked against the examples and
    options before any model work (see `build_requests`).

    Raises:
        InputError: an example lacks what its target needs, a conflicting target mode for a contrast.
        UnknownNameError: an unknown target mode or contrast.
    """
    if target_mode is not None and target_mode not in SELECTABLE_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, SELECTABLE_TARGET_MODES)
    if contrast is not None:
        if contrast not in CONTRAST_MODES:
            raise UnknownNameError("contrast", contrast, CONTRAST_MODES)
        implied = CONTRAST_TARGET_MODES[contrast]
        if target_mode not in (None, implied):
            raise InputError(f"the {contrast!r} contrast attributes target mode {implied!r}, not {target_mode!r}")
        target_mode = implied
    modes: list[TargetMode] = [
        "forced" if forced is not None else target_mode or default_target_mode(ex, fmt)
        for ex, forced in zip(examples, targets, strict=True)
    ]
    for ex, m in zip(examples, modes, strict=True):
        _check(ex, m, fmt, predict, contrast)
    return modes


def decision_targets(
    example: Example, prediction: Prediction, mode: TargetMode, contrast: ContrastMode | None
) -> tuple[str, str | None]:
    """Returns the choice attributed in target mode "choice" (the prediction) or "gold", and the choice it is
    contrasted with (the best other choice) when `contrast` is set."""
    answer = prediction.predicted if mode == "choice" else example.answer
    return answer, prediction.best_other(answer) if contrast is not None else None


def build_requests(
    loaded: LoadedModel,
    examples: Sequence[Example],
    target_mode: TargetMode | None = None,
    fmt: PromptFormat | None = None,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    on_progress: Progress | None = None,
    targets: Sequence[str | None] | None = None,
    *,
    predict: PredictMode | None = None,
    contrast: ContrastMode | None = None,
) -> list[AttributionRequest]:
    """Returns an attribution request per example, running the model where the target is its own answer.

    The request's prompt is the one the prediction scored (`render_prediction`) and its target is the thing scored:
    in "letter" mode the choice's letter (its first token only, as read off the next-token distribution), else the
    choice's text. A generated target is attributed on the prompt it was generated from (`render(ex, fmt)`).

    Args:
        target_mode: "choice" (the model's best-scoring choice), "generate" (its free completion) or "gold" (the
            example's answer); default: "choice" where the example has choices, else "generate".
        targets: a non-None entry forces that example's target (mode "forced"); its choices are still scored for
            the request's Prediction.
        predict: the prediction mode ("letter", "cloze", "choice-text"); None: `default_predict_mode(loaded)`.
        contrast: "runner-up" attributes log p(prediction) - log p(runner-up); "gold" attributes
            log p(gold) - log p(prediction) (against the runner-up where the prediction is the gold answer). It
            sets the target mode ("choice" and "gold"); another explicit one is an error.

    Raises:
        InputError: an example lacks what its target needs, a conflicting target mode for a contrast.
        UnknownNameError: an unknown target mode, prediction mode or contrast.
    """
    mode = predict_mode(loaded, predict)
    targets = list(targets) if targets is not None else [None] * len(examples)
    modes = target_modes(examples, target_mode, fmt, targets, predict=mode, contrast=contrast)
    rendered = [
        render(ex, fmt) if m == "generate" else render_prediction(ex, mode, fmt)
        for ex, m in zip(examples, modes, strict=True)
    ]
    scores: list[ChoiceScores | None] = [None] * len(examples)
    generated: list[str | None] = [None] * len(examples)
    scored = [i for i, ex in enumerate(examples) if answer_choices(ex, fmt)]
    if scored:  # score choices wherever there are some: the prediction and its correctness are worth keeping
        found = score_examples(loaded, [examples[i] for i in scored], fmt, batch_size * 4, on_progress, predict=mode)
        for i, cs in zip(scored, found, strict=True):
            scores[i] = cs
    to_generate = [i for i, m in enumerate(modes) if m == "generate"]
    if to_generate:
        prompts = [rendered[i].text for i in to_generate]
        for i, gen in zip(to_generate, generate_batch(loaded, prompts, max_new_tokens, batch_size), strict=True):
            if not gen.completion.strip():
                raise InputError(f"{loaded.name} generated an empty answer; use target mode 'choice' or 'gold'")
            targets[i] = generated[i] = gen.completion
    requests = []
    for i, (ex, r, m) in enumerate(zip(examples, rendered, modes, strict=True)):
        prediction = _prediction(ex, scores[i], generated[i], mode)
        target, foil, letters = targets[i], None, False
        if m in ("choice", "gold"):
            target, foil = decision_targets(ex, prediction, m, contrast)
            letters = mode == "letter" and scores[i] is not None
            if letters:  # what letter mode scored: the letters, read at the same position
                target, foil = _letter(prediction.choices, target), foil and _letter(prediction.choices, foil)
        requests.append(AttributionRequest(r.text, target, m, r.template_spans, ex.id, prediction, foil, letters))
    return requests


def one_pass_modes(
    examples: Sequence[Example],
    method: str,
    target_mode: TargetMode | None,
    fmt: PromptFormat | None = None,
    *,
    predict: PredictMode,
    contrast: ContrastMode | None = None,
) -> list[TargetMode] | None:
    """Returns the examples' target modes when one forward can predict every one of them and its backward attribute
    it (`attribute_one_pass`): letter mode, a one-pass method, choices, a choice or gold target. Else None: the
    choices are scored first and attributed after (`build_requests`, `attribute_requests`).

    Raises:
        InputError, UnknownNameError: as `target_modes`.
    """
    if predict != "letter" or method not in ONE_PASS_METHODS or not all(answer_choices(ex, fmt) for ex in examples):
        return None
    modes = target_modes(examples, target_mode, fmt, [None] * len(examples), predict=predict, contrast=contrast)
    return modes if all(m in ("choice", "gold") for m in modes) else None


def attribute_one_pass(
    loaded: LoadedModel,
    examples: Sequence[Example],
    method: str,
    modes: Sequence[TargetMode],
    fmt: PromptFormat | None = None,
    *,
    contrast: ContrastMode | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> list[TokenAttribution]:
    """Returns the examples' attributions, each predicted in letter mode and attributed in one forward and one
    backward (kdviz.attribution.decision), in one batch; `modes` from `one_pass_modes`."""

    def decide(ex: Example, mode: TargetMode, scores: ChoiceScores) -> tuple[Prediction, str, str | None]:
        prediction = _prediction(ex, scores, None, "letter")
        return (prediction, *decision_targets(ex, prediction, mode, contrast))

    return attribute_letter_decisions(loaded, examples, method, modes, decide, fmt, on_progress)


def _letter(choices: Sequence[str], choice: str) -> str:
    return LETTERS[list(choices).index(choice)]


def _prediction(
    example: Example, scores: ChoiceScores | None, generated: str | None, mode: PredictMode
) -> Prediction | None:
    """Returns what is known of the model's answer to `example` (None when nothing is: no choices, gold or
    generation)."""
    if scores is None and generated is None and not example.answer:
        return None
    if scores is None:  # free-form: a generation is graded as students are (by value for arithmetic answers)
        correct = is_correct(generated, example.answer) if generated is not None and example.answer else None
        return Prediction(gold=example.answer or None, generated=generated, correct=correct)
    return Prediction(
        predicted=scores.predicted,
        correct=None if example.answer is None else scores.predicted == example.answer,
        gold=example.answer or None,
        choices=scores.choices,
        choice_scores=scores.scores,
        generated=generated,
        mode=mode,
    )


def _check_options(method: str, predict: str | None, contrast: str | None) -> None:
    """Raises the errors of unknown or incompatible options before a slow model load."""
    check_method(method)
    if predict is not None:
        check_predict_mode(predict)
    if contrast is not None and contrast not in CONTRAST_MODES:
        raise UnknownNameError("contrast", contrast, CONTRAST_MODES)
    check_contrastive(method, contrast)


def attribute(
    model: LoadedModel | ModelSpec | str,
    prompt: str | Example,
    target: str | None = None,
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    target_mode: TargetMode | None = None,
    fmt: PromptFormat | None = None,
    steps: int = DEFAULT_STEPS,
    max_new_tokens: int = 24,
    predict: PredictMode | None = None,
    contrast: ContrastMode | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> TokenAttribution:
    """Returns the attribution of the model's answer (or of `target`, when given) to the prompt's tokens and words.

    Args:
        model: a loaded model or a spec ("tiny", "embedded-teacher", a hub id, a path).
        prompt: free text (used as is) or an Example (rendered in its task's format, or `fmt`).
        target: a forced target string; None lets `target_mode` pick it.
        method: one of `list_attribution_methods()`.
        predict: how choices are predicted ("letter", "cloze", "choice-text"; default: the model's, see
            `default_predict_mode`); the attributed prompt and target are the ones that mode scored.
        contrast: "runner-up" or "gold" for a contrastive attribution (see `build_requests`).
        on_progress: follows the attribution (not the prediction before it): see `attribute_requests`.
    """
    _check_options(method, predict, contrast)
    if target is not None:  # before a slow model load
        check_target(target)
    loaded = _as_loaded(model)
    example = prompt if isinstance(prompt, Example) else Example(id="prompt", task="qa", question=prompt)
    fmt = fmt or ("raw" if isinstance(prompt, str) else None)
    mode = predict_mode(loaded, predict)
    one_pass = target is None and one_pass_modes([example], method, target_mode, fmt, predict=mode, contrast=contrast)
    if one_pass:
        return attribute_one_pass(
            loaded, [example], method, one_pass, fmt, contrast=contrast, on_progress=on_progress
        )[0]
    (request,) = build_requests(
        loaded, [example], target_mode, fmt, max_new_tokens, targets=[target], predict=predict, contrast=contrast
    )
    return attribute_requests(loaded, [request], method, steps=steps, on_progress=on_progress)[0]


def attribute_examples(
    model: LoadedModel | ModelSpec | str,
    examples: Sequence[Example],
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    target_mode: TargetMode | None = None,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 4,
    per_token: bool = True,
    on_progress: Progress | None = None,
    predict: PredictMode | None = None,
    contrast: ContrastMode | None = None,
) -> list[TokenAttribution]:
    """Returns attributions for many examples, batched; `on_progress(done, total)` follows the attribution.
    `predict` and `contrast` as in `attribute`."""
    _check_options(method, predict, contrast)
    loaded = _as_loaded(model)
    requests = build_requests(loaded, examples, target_mode, batch_size=batch_size, predict=predict, contrast=contrast)

    def examples_done(event: ProgressEvent) -> None:
        if on_progress and event.stage == "examples" and event.done:
            on_progress(event.done, event.total)

    return attribute_requests(
        loaded, requests, method, steps=steps, batch_size=batch_size, per_token=per_token, on_progress=examples_done
    )
