"""The distillation methods: each `Method` owns what it needs from the data and the teacher, how it prompts the
student, which (prompt, target) pairs it trains on, and which loss parts it mixes.

Every other module asks a `Method` (found with `get_method`) rather than testing a method's name, so adding a
method means adding one definition here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.prompts import RenderedPrompt, render
from kdviz.records import TrainExample

MethodName = Literal["standard", "teacher_label", "rationale_input", "multitask", "logit_kd", "dpo", "gkd"]
Task = Literal["answer", "rationale"]
LABEL_PREFIX, RATIONALE_PREFIX = "[label] ", "[rationale] "  # task prefixes of Distilling step-by-step


@dataclass(frozen=True)
class Method:
    """A distillation method: what it needs from the data and the teacher, what it costs at test time, how the
    student is prompted and what it learns to produce."""

    name: MethodName
    summary: str
    needs_gold: bool = True  # trains on (or mixes in) the gold answer
    needs_teacher_answer: bool = False  # the target is the teacher's answer, not the gold one
    teacher_answer_first: bool = False  # the target is the teacher's answer where the data has one, else the gold one
    needs_rationale: bool = False
    needs_teacher_model: bool = False  # the teacher runs during training (its logits)
    rationale_in_prompt: bool = False  # the teacher's rationale words are part of the student's input
    rationale_task: bool = False  # a second task: generate the rationale words (multitask)
    via_trl: bool = False  # trained by TRL's trainer of the same name (`kdviz.distill.trl_methods`), not kdviz's loop
    own_settings: tuple[str, ...] = ()  # the TrainConfig fields only this method reads (alpha and teacher aside)

    @property
    def teacher_at_test_time(self) -> bool:
        """Whether a new input needs the teacher's rationale before the student can answer."""
        return self.rationale_in_prompt

    @property
    def uses_alpha(self) -> bool:
        """Whether the loss mixes two parts, α·answer + (1−α)·other (the rationale task or the logit divergence)."""
        return self.rationale_task or (self.needs_teacher_model and not self.via_trl)

    @property
    def settings(self) -> tuple[str, ...]:
        """Returns the TrainConfig fields the method reads beyond the common ones (alpha and teacher aside): its own,
        and the source of the teacher's rationales or answers where it trains on them."""
        reads_rationale = self.needs_rationale or "dpo_rationale" in self.own_settings
        reads_answer = self.needs_teacher_answer or self.teacher_answer_first
        return (
            *self.own_settings,
            *(("rationale_source",) if reads_rationale else ()),
            *(("label_source",) if reads_answer else ()),
        )

    @property
    def tasks(self) -> tuple[Task, ...]:
        return ("answer", "rationale") if self.rationale_task else ("answer",)

    def render(self, item: TrainExample, task: Task = "answer", base: RenderedPrompt | None = None) -> RenderedPrompt:
        """Returns the student's input for an example, with the spans that are format, not task.

        `base`: the example's prompt to build on (default its task's format, `render(item.example)`); evaluation
        gives the lettered NLI prompt of letter mode, and the method adds its rationale line or task prefix to it.
        """
        rendered = base or render(item.example)
        if self.rationale_in_prompt:
            if not item.rationale:
                raise InputError(f"example {item.example.id!r} has no teacher rationale, which {self.name} needs")
            return with_rationale_line(rendered, item.rationale)
        if self.rationale_task:
            prefix = RATIONALE_PREFIX if task == "rationale" else LABEL_PREFIX
            spans = ((0, len(prefix)), *((a + len(prefix), b + len(prefix)) for a, b in rendered.template_spans))
            return RenderedPrompt(prefix + rendered.text, spans)
        return rendered

    def prompt(self, item: TrainExample, task: Task = "answer") -> str:
        """Returns the student's input text for an example (see `render`)."""
        return self.render(item, task).text

    def target(self, item: TrainExample) -> str | None:
        """Returns the answer the student learns to give for an example (None: the data has none)."""
        if self.needs_teacher_answer or (self.teacher_answer_first and item.teacher_answer):
            return item.teacher_answer
        return item.example.answer

    def pairs(self, item: TrainExample) -> dict[Task, tuple[str, str]]:
        """Returns {task: (prompt, target)} for one example: "answer" always, "rationale" for the rationale task."""
        pairs: dict[Task, tuple[str, str]] = {"answer": (self.prompt(item), str(self.target(item)))}
        if self.rationale_task:
            pairs["rationale"] = (self.prompt(item, "rationale"), str(item.rationale))
        return pairs


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("standard", "input → gold answer: plain fine-tuning, the baseline"),
        Method(
            "teacher_label", "input → the teacher's answer (sequence-level KD)", needs_gold=False,
            needs_teacher_answer=True,
        ),
        Method(
            "rationale_input", "input + the teacher's rationale words → answer (Ballout et al., 2024)",
            needs_rationale=True, rationale_in_prompt=True,
        ),
        Method(
            "multitask",
            "[label] input → answer and [rationale] input → rationale words, α·answer + (1−α)·rationale "
            "(Distilling step-by-step, Hsieh et al., 2023)",
            needs_rationale=True, rationale_task=True,
        ),
        Method(
            "logit_kd",
            "gold answer loss mixed with KL (or JSD) to the teacher's token distributions; same vocabulary only",
            needs_teacher_model=True, own_settings=("kd_loss", "temperature"),
        ),
        Method(
            "dpo",
            "rank optimisation (DPO, Rafailov et al., 2023): raise the likelihood of the teacher's answer (or the "
            "gold one) over the student's own wrong answer, or a wrong choice, relative to the untrained student",
            needs_gold=False, teacher_answer_first=True, via_trl=True, own_settings=("dpo_beta", "dpo_rationale"),
        ),
        Method(
            "gkd",
            "on-policy generalised KD (GKD, Agarwal et al., 2024): on a share λ of steps the student answers for "
            "itself, and a generalised JSD (β) pulls its token distributions to the teacher's; same vocabulary only",
            needs_gold=False, teacher_answer_first=True, needs_teacher_model=True, via_trl=True,
            own_settings=("gkd_beta", "gkd_lmbda"),
        ),
    )
}  # fmt: skip
BASELINE = METHODS["standard"]


def get_method(name: str) -> Method:
    """Returns the method called `name`.

    Raises:
        UnknownNameError: not a method; the message lists them.
    """
    if name not in METHODS:
        raise UnknownNameError("distillation method", name, tuple(METHODS))
    return METHODS[name]


def with_rationale_line(rendered: RenderedPrompt, rationale: str) -> RenderedPrompt:
    """Returns the prompt with a "Rationale:" line just before its final "Answer:" cue.

    The inserted line counts as template: attribution shows it, but rationale selection and statistics only look
    at the task's own words.
    """
    cue, text = "\nAnswer:", rendered.text
    at = len(text) - len(cue) if text.endswith(cue) else len(text)
    line = f"\nRationale: {rationale.strip()}"
    spans = [(a, b) if b <= at else (a + len(line), b + len(line)) for a, b in rendered.template_spans]
    return RenderedPrompt(text[:at] + line + text[at:], tuple(sorted([*spans, (at, at + len(line))])))


def with_rationale(prompt: str, rationale: str) -> str:
    """Returns the prompt text with a "Rationale:" line just before its final "Answer:" cue."""
    return with_rationale_line(RenderedPrompt(prompt), rationale).text
