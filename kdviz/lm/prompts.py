"""Prompt formats (multiple-choice QA, NLI, free-form QA) and their encoding for a given model.

A rendered prompt remembers which characters are the format's own words ("Question:", "A)", ...), and an
encoded prompt remembers which token positions belong to the prompt text at all, so chat-template and special
tokens never receive attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from kdviz.data import has_visible_text
from kdviz.errors import InputError, UnknownNameError
from kdviz.records import PREDICT_MODES, Example, PredictMode  # the modes are defined beside Prediction, used here

SYSTEM_PROMPT = "Answer the question with the correct choice."  # short on purpose: models' default ones are long
LETTERS = "ABCDEFGHIJ"
NLI_LABELS = ("entailment", "neutral", "contradiction")
PromptFormat = Literal["raw", "qa", "mcqa", "nli"]  # raw: the text as is; the others follow the tasks
FORMATS: tuple[PromptFormat, ...] = get_args(PromptFormat)
MAX_PROMPT_CHARS = 4000  # about 1k tokens: beyond that attribution on a CPU takes minutes
# An answer, not a passage: every target token is one more attributed row (a 20,000-character target grew the app
# to 16 GB and stalled every session, issue #15).
MAX_TARGET_CHARS = 1000
# ... and in tokens: 1,000 characters of English are about 250 tokens, but a byte-level tokenizer or an unusual script
# makes several tokens of a character, and each token is one more attributed row.
MAX_TARGET_TOKENS = 512
# A prompt's bound in tokens, beside MAX_PROMPT_CHARS: 4,000 characters are about 1k tokens of English, but a
# byte-level tokenizer or another script can make several tokens of one character (attention grows with its square).
MAX_PROMPT_TOKENS = 2048


@dataclass(frozen=True)
class RenderedPrompt:
    """Prompt text plus the character spans that the format itself wrote."""

    text: str
    template_spans: tuple[tuple[int, int], ...] = ()


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int]] = []
        self.length = 0

    def add(self, text: str, template: bool) -> None:
        if template and text.strip():
            self.spans.append((self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)

    def build(self) -> RenderedPrompt:
        return RenderedPrompt("".join(self.parts), tuple(self.spans))


def render(example: Example | str, fmt: PromptFormat | None = None) -> RenderedPrompt:
    """Returns the prompt for an example in a format ("raw", "qa", "mcqa", "nli"; default: the example's task).

    Raises:
        InputError: the text is empty or too long, or the example lacks what the format needs.
    """
    return _render(example, fmt, lettered_labels=False)


def _render(example: Example | str, fmt: PromptFormat | None, lettered_labels: bool) -> RenderedPrompt:
    if isinstance(example, str):
        example = Example(id="prompt", task="qa", question=example)
    fmt = fmt or example.task
    if fmt not in FORMATS:
        raise UnknownNameError("prompt format", fmt, FORMATS)
    if not example.question.strip():
        raise InputError("the prompt is empty: type a question or pick an example")
    if not has_visible_text(example.question):
        raise InputError("the prompt has no visible characters (only zero-width, control or space characters)")
    b = _Builder()
    if fmt == "raw":
        b.add(example.question, template=False)
    elif fmt == "nli":
        if not example.context:
            raise InputError("an NLI prompt needs a premise (the example's context)")
        b.add("Premise: ", True), b.add(example.context, False)
        b.add("\nHypothesis: ", True), b.add(example.question, False)
        if lettered_labels:  # the labels are the format's words, lettered as in mcqa; they stay template
            b.add("\nDoes the premise entail the hypothesis?\nChoices:", True)
            for letter, label in zip(LETTERS, answer_choices(example, "nli"), strict=False):
                b.add(f"\n{letter}) {label}", True)
            b.add("\nAnswer:", True)
        else:
            b.add(
                "\nDoes the premise entail the hypothesis? Choices: entailment, neutral, contradiction\nAnswer:", True
            )
    else:
        if example.context:
            b.add("Context: ", True), b.add(example.context, False), b.add("\n", True)
        b.add("Question: ", True), b.add(example.question, False)
        if fmt == "mcqa":
            if len(example.choices) < 2:
                raise InputError("a multiple-choice prompt needs at least two choices")
            if len(example.choices) > len(LETTERS):
                raise InputError(f"at most {len(LETTERS)} choices are supported, got {len(example.choices)}")
            b.add("\nChoices:", True)
            for letter, choice in zip(LETTERS, example.choices, strict=False):
                b.add(f"\n{letter})", True), b.add(" ", False), b.add(choice, False)
        b.add("\nAnswer:", True)
    rendered = b.build()
    if len(rendered.text) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt has {len(rendered.text)} characters; the limit is {MAX_PROMPT_CHARS}")
    return rendered


def answer_choices(example: Example, fmt: PromptFormat | None = None) -> tuple[str, ...]:
    """Returns the candidate answers to score for an example (empty for free-form QA)."""
    if (fmt or example.task) == "nli":
        return example.choices or NLI_LABELS
    return example.choices if (fmt or example.task) == "mcqa" else ()


def default_predict_mode(loaded) -> PredictMode:
    """Returns the prediction mode a model (a `LoadedModel`) is strongest in: an embedded model's measured best
    mode, else "letter" for chat/instruct models (prompted through their chat template), "cloze" for base models.

    Measured on the first 200 CommonsenseQA questions (issue #12, bench/README.md): the embedded instruct teacher
    scores 63.5% by the next-token letter against 41.0% by cloze; small models pick a position more than an answer
    when the choices are listed (the 135M embedded student: 22.5% by letter, "B" two times in three; 33.0% by cloze).
    """
    from .embedded import EMBEDDED

    embedded = EMBEDDED.get(loaded.name)
    if embedded is not None and embedded.predict is not None:
        return embedded.predict
    return "letter" if loaded.chat else "cloze"


# What each prediction mode scores, as the CLI's help and the panels' selectors describe it.
PREDICT_MODE_HELP: dict[PredictMode, str] = {
    "letter": "the next-token letter after the lettered choices",
    "cloze": "each choice's text after the question alone",
    "choice-text": "each choice's text after the listed choices",
}
DEFAULT_PREDICT_HELP = (
    "the model's best measured mode (letter for chat models; cloze for base models and the embedded student)"
)


def predict_help(separator: str = " · ") -> str:
    """Returns the modes and the default described in one line, joined by `separator`."""
    return separator.join([*(f"{m}: {d}" for m, d in PREDICT_MODE_HELP.items()), f"default: {DEFAULT_PREDICT_HELP}"])


def check_predict_mode(mode: str) -> PredictMode:
    """Returns `mode` if it is a prediction mode.

    Raises:
        UnknownNameError: any other name (the message lists the modes).
    """
    if mode not in PREDICT_MODES:
        raise UnknownNameError("prediction mode", mode, PREDICT_MODES)
    return mode  # type: ignore[return-value]


def render_prediction(example: Example, mode: PredictMode, fmt: PromptFormat | None = None) -> RenderedPrompt:
    """Returns the prompt that prediction mode `mode` scores an example's choices on (`fmt`: default the task's).

    "letter": the choices listed under letters (mcqa format; an NLI prompt keeps its premise and hypothesis and
    letters the labels), scored by the next-token letter; "cloze": the question alone ("qa" format; NLI keeps its
    own format), each choice's text scored; "choice-text": the choices listed (mcqa or nli format), each choice's
    text scored. An example without choices in `fmt` (free-form QA, or a "raw"/"qa" format) is rendered in `fmt`.
    """
    check_predict_mode(mode)
    fmt = fmt or example.task  # type: ignore[assignment]
    if not answer_choices(example, fmt):
        return render(example, fmt)
    if mode == "letter":
        return _render(example, fmt, lettered_labels=True)
    if mode == "cloze" and fmt == "mcqa":
        return render(example, "qa")
    return render(example, fmt)


def prompt_example(
    text: str, choices: Sequence[str] = (), gold: str | None = None, fmt: PromptFormat | None = None
) -> tuple[Example, PromptFormat]:
    """Returns the Example that a typed prompt describes, and its format (default: mcqa with choices, else raw).

    For qa, mcqa and nli, text before the prompt's last blank line is the context (the NLI premise); see
    `prompt_text` for the inverse.

    Raises:
        InputError: empty or over-long prompt, a gold answer that is not a choice, too few choices for mcqa, an NLI
            prompt without a premise.
        UnknownNameError: unknown format.
    """
    choices = tuple(c.strip() for c in choices if c.strip())
    gold = (gold or "").strip() or None
    if gold and choices and gold not in choices:
        raise InputError(f"the gold answer {gold!r} is not one of the choices: {', '.join(choices)}")
    fmt = fmt or ("mcqa" if choices else "raw")
    if fmt not in FORMATS:
        raise UnknownNameError("prompt format", fmt, FORMATS)
    text, context = (text or "").strip(), None
    if fmt != "raw" and "\n\n" in text:
        context, text = (part.strip() for part in text.rsplit("\n\n", 1))
    example = Example("prompt", fmt if fmt in ("mcqa", "nli") else "qa", text, choices, gold, context or None)
    render(example, fmt)  # checks the prompt now, before any slow model load
    return example, fmt


def prompt_text(example: Example) -> str:
    """Returns the example as one typed prompt: its context, a blank line, its question (as `prompt_example` reads)."""
    return f"{example.context}\n\n{example.question}" if example.context else example.question


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of the full model input and where the prompt text's own tokens sit in it."""

    ids: tuple[int, ...]  # everything the model reads before the target (chat template included)
    content_positions: tuple[int, ...]  # indices into `ids` of the prompt text's tokens
    content_offsets: tuple[tuple[int, int], ...]  # their character spans in the prompt text
    target_prefix: str  # what separates the prompt from a target continuation (" " after "Answer:")


def encode(loaded, prompt: str) -> EncodedPrompt:
    """Returns the prompt encoded for `loaded` (a `LoadedModel`), through its chat template when it uses one."""
    tokenizer = loaded.tokenizer
    if loaded.chat:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        try:
            full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates (Gemma's) refuse a system turn
            full = tokenizer.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=True)
        start = full.rfind(prompt)
        add_special, target_prefix = False, ""
    else:
        full, start = prompt, 0
        add_special = True  # BOS for decoder-only models, </s> for T5-style encoders: as they were trained
        target_prefix = "" if loaded.is_encoder_decoder or prompt[-1:].isspace() else " "
    if start < 0:
        raise InputError("the chat template changed the prompt text; load the model with chat=False")
    ids, spans, special_mask = _tokenize_with_offsets(tokenizer, full, add_special)
    positions, offsets = [], []
    end = start + len(prompt)
    for i, ((a, b), special) in enumerate(zip(spans, special_mask, strict=False)):
        if special or b <= a or b <= start or a >= end:
            continue
        positions.append(i)
        offsets.append((max(a, start) - start, min(b, end) - start))
    if not positions:
        raise InputError("the prompt has no tokens to attribute")
    return EncodedPrompt(tuple(ids), tuple(positions), tuple(offsets), target_prefix)


def _tokenize_with_offsets(tokenizer, text: str, add_special: bool):
    if tokenizer.is_fast:
        enc = tokenizer(
            text, add_special_tokens=add_special, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        return list(enc["input_ids"]), enc["offset_mapping"], enc["special_tokens_mask"]
    # Slow tokenizers have no offset mapping: find each decoded piece in the text, left to right.
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    spans, cursor = [], 0
    for token_id, is_special in zip(ids, special, strict=False):
        piece = "" if is_special else tokenizer.decode([token_id]).strip()
        found = text.find(piece, cursor) if piece else -1
        spans.append((found, found + len(piece)) if found >= 0 else (cursor, cursor))
        cursor = found + len(piece) if found >= 0 else cursor
    return ids, spans, special


def check_target(target: str, what: str = "the target") -> None:
    """Refuses a target (or contrast) string that is empty, invisible or longer than MAX_TARGET_CHARS.

    Raises:
        InputError: the message names `what` and the limit.
    """
    if not target.strip():
        raise InputError(f"{what} to attribute is empty")
    if not has_visible_text(target):
        raise InputError(f"{what} to attribute has no visible characters")
    if len(target) > MAX_TARGET_CHARS:
        raise InputError(f"{what} has {len(target)} characters; the limit is {MAX_TARGET_CHARS}")


def check_target_tokens(ids: Sequence[int], what: str = "the target") -> None:
    """Refuses an encoded target (or contrast) longer than MAX_TARGET_TOKENS, the bound `check_target` sets in
    characters (training truncates its targets instead, so only attribution checks this).

    Raises:
        InputError: the message names `what`, its length in tokens and the limit.
    """
    if len(ids) > MAX_TARGET_TOKENS:
        raise InputError(f"{what} is {len(ids)} tokens long for this model; the limit is {MAX_TARGET_TOKENS} tokens")


def check_prompt_tokens(encoded: EncodedPrompt) -> None:
    """Refuses an encoded prompt longer than MAX_PROMPT_TOKENS (chat template included).

    Raises:
        InputError: the message gives its length in tokens and the limit.
    """
    if len(encoded.ids) > MAX_PROMPT_TOKENS:
        raise InputError(
            f"the prompt is {len(encoded.ids)} tokens long for this model; the limit is {MAX_PROMPT_TOKENS} tokens"
        )


def encode_target(loaded, encoded: EncodedPrompt, target: str) -> tuple[int, ...]:
    """Returns the token ids of a target continuation of an encoded prompt."""
    text = target if target[:1].isspace() else encoded.target_prefix + target
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputError("the target is empty")
    return tuple(ids)
