"""Run a teacher on prompts or dataset examples: pick the target (generated, predicted choice, gold, or given)
and attribute it to the input. This is the library face of the app's Teacher panel."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kdviz.config import ModelSpec
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.inference import generate_batch, score_choices_batch
from kdviz.lm.models import LoadedModel, load_model
from kdviz.lm.prompts import PromptFormat, answer_choices, render
from kdviz.records import SELECTABLE_TARGET_MODES, ChoiceScores, Example, Prediction, TargetMode, TokenAttribution

from .catalog import DEFAULT_METHOD, AttributionMethod
from .methods import AttributionRequest, attribute_requests, check_method

Progress = Callable[[int, int], None]


def _as_loaded(model: LoadedModel | ModelSpec | str) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def default_target_mode(example: Example, fmt: PromptFormat | None = None) -> TargetMode:
    """Returns "choice" for examples with answer choices, else "generate"."""
    return "choice" if answer_choices(example, fmt) else "generate"


def scoring_prompt(example: Example, fmt: PromptFormat | None = None) -> str:
    """Returns the prompt whose continuations are scored to predict a choice.

    Multiple-choice questions are scored without the list of choices: with the list in the prompt, small models
    tend to pick a position rather than an answer (measured on 100 CommonsenseQA questions: Gemma 3 270M 26% ->
    45%, SmolLM2-135M 24% -> 34%; see bench/README.md). Attribution still uses the prompt with the choices.
    """
    return render(example, "qa" if (fmt or example.task) == "mcqa" else fmt).text


def score_examples(
    loaded: LoadedModel,
    examples: Sequence[Example],
    fmt: PromptFormat | None = None,
    batch_size: int = 32,
    on_progress: Progress | None = None,
) -> list[ChoiceScores]:
    """Returns each example's choice scores; `.predicted` is the model's answer (examples need choices)."""
    return score_choices_batch(
        loaded,
        [scoring_prompt(ex, fmt) for ex in examples],
        [answer_choices(ex, fmt) for ex in examples],
        batch_size=batch_size,
        on_progress=on_progress,
    )


def build_requests(
    loaded: LoadedModel,
    examples: Sequence[Example],
    target_mode: TargetMode | None = None,
    fmt: PromptFormat | None = None,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    on_progress: Progress | None = None,
    targets: Sequence[str | None] | None = None,
) -> list[AttributionRequest]:
    """Returns an attribution request per example, running the model where the target is its own answer.

    `target_mode`: "choice" (the model's best-scoring choice), "generate" (its free completion) or "gold"
    (the example's answer); default: "choice" where the example has choices. A non-None entry of `targets`
    forces that example's target (mode "forced"); its choices are still scored for the request's Prediction.
    """
    if target_mode is not None and target_mode not in SELECTABLE_TARGET_MODES:
        raise UnknownNameError("target mode", target_mode, SELECTABLE_TARGET_MODES)
    rendered = [render(ex, fmt) for ex in examples]
    targets = list(targets) if targets is not None else [None] * len(examples)
    modes: list[TargetMode] = [
        "forced" if forced is not None else target_mode or default_target_mode(ex, fmt)
        for ex, forced in zip(examples, targets, strict=True)
    ]
    for ex, mode in zip(examples, modes, strict=True):  # check before any model work
        if mode == "choice" and not answer_choices(ex, fmt):
            raise InputError(f"example {ex.id!r} has no choices; use target mode 'generate' or 'gold'")
        if mode == "gold" and not ex.answer:
            raise InputError(f"example {ex.id!r} has no gold answer to attribute")
    scores: list[ChoiceScores | None] = [None] * len(examples)
    generated: list[str | None] = [None] * len(examples)
    scored = [i for i, ex in enumerate(examples) if answer_choices(ex, fmt)]
    if scored:  # score choices wherever there are some: the prediction and its correctness are worth keeping
        for i, cs in zip(
            scored,
            score_examples(loaded, [examples[i] for i in scored], fmt, batch_size * 4, on_progress),
            strict=True,
        ):
            scores[i] = cs
            if modes[i] == "choice":
                targets[i] = cs.predicted
    for i, mode in enumerate(modes):
        if mode == "gold":
            targets[i] = examples[i].answer
    to_generate = [i for i, m in enumerate(modes) if m == "generate"]
    if to_generate:
        for i, gen in zip(
            to_generate,
            generate_batch(
                loaded, [rendered[i].text for i in to_generate], max_new_tokens=max_new_tokens, batch_size=batch_size
            ),
            strict=True,
        ):
            if not gen.completion.strip():
                raise InputError(f"{loaded.name} generated an empty answer; use target mode 'choice' or 'gold'")
            targets[i] = generated[i] = gen.completion
    return [
        AttributionRequest(r.text, t, m, r.template_spans, ex.id, _prediction(ex, cs, g))
        for ex, r, t, m, cs, g in zip(examples, rendered, targets, modes, scores, generated, strict=True)
    ]


def _prediction(example: Example, scores: ChoiceScores | None, generated: str | None) -> Prediction | None:
    """Returns what is known of the model's answer to `example` (None when nothing is: no choices, gold or
    generation)."""
    if scores is None and generated is None and not example.answer:
        return None
    if scores is None:
        return Prediction(gold=example.answer or None, generated=generated)
    return Prediction(
        predicted=scores.predicted,
        correct=None if example.answer is None else scores.predicted == example.answer,
        gold=example.answer or None,
        choices=scores.choices,
        choice_scores=scores.scores,
        generated=generated,
    )


def attribute(
    model: LoadedModel | ModelSpec | str,
    prompt: str | Example,
    target: str | None = None,
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    target_mode: TargetMode | None = None,
    fmt: PromptFormat | None = None,
    steps: int = 20,
    max_new_tokens: int = 24,
) -> TokenAttribution:
    """Returns the attribution of the model's answer (or of `target`, when given) to the prompt's tokens and words.

    Args:
        model: a loaded model or a spec ("tiny", "embedded-teacher", a hub id, a path).
        prompt: free text (used as is) or an Example (rendered in its task's format, or `fmt`).
        target: a forced target string; None lets `target_mode` pick it.
        method: one of `list_attribution_methods()`.
    """
    check_method(method)
    loaded = _as_loaded(model)
    example = prompt if isinstance(prompt, Example) else Example(id="prompt", task="qa", question=prompt)
    fmt = fmt or ("raw" if isinstance(prompt, str) else None)
    (request,) = build_requests(loaded, [example], target_mode, fmt, max_new_tokens=max_new_tokens, targets=[target])
    return attribute_requests(loaded, [request], method, steps=steps)[0]


def attribute_examples(
    model: LoadedModel | ModelSpec | str,
    examples: Sequence[Example],
    method: AttributionMethod = DEFAULT_METHOD,
    *,
    target_mode: TargetMode | None = None,
    steps: int = 20,
    batch_size: int = 4,
    per_token: bool = True,
    on_progress: Progress | None = None,
) -> list[TokenAttribution]:
    """Returns attributions for many examples, batched; `on_progress(done, total)` follows the attribution."""
    check_method(method)
    loaded = _as_loaded(model)
    requests = build_requests(loaded, examples, target_mode, batch_size=batch_size)
    return attribute_requests(
        loaded, requests, method, steps=steps, batch_size=batch_size, per_token=per_token, on_progress=on_progress
    )
