"""Turn a teacher's word attributions into rationales, and measure them against the gold answer and human rationales.

Definitions (used by the Rationales and Compare panels, and in docs):
- a rationale is a set of prompt words, kept in input order, chosen by top-k or by a threshold;
- its *span* is where the words may come from: "all" the prompt's words, "question" only the question's and the
  context's (not the listed choices, the choice letters or the format's words such as the answer cue);
- words are compared after normalisation: lower-cased, punctuation stripped from both ends;
- *gold overlap* (Ballout et al.'s 68% statistic): at least one rationale word occurs among the gold answer's words;
- *gold word fraction*: the share of rationale words that occur among the gold answer's words;
- *distractor overlap*: the same as gold overlap, against each wrong choice (a chance baseline for the statistic);
- *question overlap*: at least one rationale word occurs among the question's (and context's) words;
- *plausibility* (ERASER-style): word-set precision, recall, F1 and IoU of the rationale against the human
  rationale span (CoS-E's `human_rationale_extractive`), or the words of a human explanation where the data has
  only that (e-SNLI's and ANLI's `human_rationale_abstractive`: a looser measure, as explanations add words);
- *comprehensiveness* and *sufficiency* (ERASER, DeYoung et al. 2020; `kdviz.rationales.faithfulness`): how much
  the model's probability of its prediction drops when the rationale words are removed from the prompt, and when
  only they are kept; each beside the same figure for as many random candidate words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from kdviz.attribution.words import normalize_word
from kdviz.errors import InputError, UnknownNameError
from kdviz.lm.prompts import LETTERS
from kdviz.rationale_records import RationaleRecord
from kdviz.records import TokenAttribution

RuleKind = Literal["top_k", "mass", "z"]  # the SelectionRule field that holds the threshold
RULE_KINDS: tuple[RuleKind, ...] = get_args(RuleKind)
Span = Literal["question", "all"]  # where rationale words may come from (issue #12)
SPANS: tuple[Span, ...] = get_args(Span)
# The default selection (`kdviz rationales`, the Rationales panel, compare): chosen by the method study,
# docs/rationale_quality.md.
DEFAULT_TOP_K = 3
DEFAULT_SPAN: Span = "question"
WordRole = Literal["template", "question", "choice"]  # "question" covers the context (an NLI premise) too

# A small English stopword list: function words carry no rationale (kept short so content words are never lost).
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as into onto than then so such this that these those
    it its is are was were be been being am do does did done have has had having would could should will shall may
    might must can what which who whom whose where when why how there here you your yours he him his she her hers
    they them their we us our i me my not no nor very too also just only any some all each""".split()
)
_LETTER_WORDS = frozenset(f"{c}{s}" for c in LETTERS for s in (")", ".", ":", ""))
_LABEL = re.compile(rf"\(?[{LETTERS}][).:]?")  # a choice label of the format: "A)", "(B)", "C.", "D:"
_TYPED_LABEL = re.compile(rf"\(?[{LETTERS}]\)")  # one typed in the text: only "A)" or "(A)" ("I." ends sentences)


def normalize(word: str) -> str:
    """Returns the word lower-cased with punctuation stripped from both ends ("" for pure punctuation)."""
    return normalize_word(word)


def words_of(text: str | None) -> set[str]:
    """Returns the set of normalised words of a text."""
    return {w for w in (normalize(t) for t in (text or "").split()) if w}


@dataclass(frozen=True)
class SelectionRule:
    """How rationale words are chosen from a word attribution: top-k, or a threshold, after exclusions."""

    top_k: int | None = field(default=DEFAULT_TOP_K, metadata={"help": "keep the k best words"})
    mass: float | None = field(default=None, metadata={"help": "keep best words until this share of positive score"})
    z: float | None = field(default=None, metadata={"help": "keep words scoring above mean + z·std"})
    exclude_stopwords: bool = True  # function words ("the", "would") say nothing about the answer
    exclude_punctuation: bool = True  # "?" and "," are often ranked high by gradient methods
    exclude_choice_letters: bool = True  # "A)", "B" ... label the choices, they are not evidence
    exclude_template: bool = True  # the prompt format's words ("Question:", "Answer:")
    span: Span = field(default=DEFAULT_SPAN, metadata={"help": "question: only question and context words; all: any"})

    def __post_init__(self) -> None:
        if self.span not in SPANS:
            raise UnknownNameError("rationale span", self.span, SPANS)
        given = [v is not None for v in (self.top_k, self.mass, self.z)]
        if sum(given) != 1:
            raise InputError("give exactly one of top_k, mass (a fraction) or z (a number of std devs)")
        if self.top_k is not None and self.top_k < 1:
            raise InputError("top_k must be at least 1")
        if self.mass is not None and not 0 < self.mass <= 1:
            raise InputError("mass must be in (0, 1]")

    @classmethod
    def of(cls, kind: RuleKind, value: float | None, span: Span = DEFAULT_SPAN, **exclusions: bool) -> SelectionRule:
        """Returns the rule of one kind and its number, as a form gives them: "top_k" (value = k words), "mass"
        (value = share of the positive attribution) or "z" (value = std devs above the mean), over the words of
        `span`; `exclusions` are the `exclude_*` switches (the others keep their defaults).

        Raises:
            UnknownNameError: an unknown kind, span or switch.  InputError: no number, a fractional k, out of range.
        """
        if kind not in RULE_KINDS:
            raise UnknownNameError("selection rule", kind, RULE_KINDS)
        switches = [f.name for f in fields(cls) if f.name.startswith("exclude_")]
        for name in exclusions:
            if name not in switches:
                raise UnknownNameError("exclusion", name, switches)
        label = kind.replace("_", "-")
        if value is None or (kind == "top_k" and float(value) != int(value)):
            raise InputError(f"give the {label} rule a {'whole ' if kind == 'top_k' else ''}number")
        number = int(value) if kind == "top_k" else float(value)
        return cls(**{"top_k": None, kind: number}, span=span, **exclusions)

    @property
    def kind(self) -> RuleKind:
        return "top_k" if self.top_k is not None else "mass" if self.mass is not None else "z"

    def describe(self) -> str:
        rule = f"top-{self.top_k}" if self.top_k else (f"mass>={self.mass}" if self.mass else f"mean+{self.z}std")
        off = [
            n
            for n, on in [
                ("stopwords", self.exclude_stopwords),
                ("punctuation", self.exclude_punctuation),
                ("choice letters", self.exclude_choice_letters),
                ("template", self.exclude_template),
            ]
            if on
        ]
        scope = ", question words only" if self.span == "question" else ""
        return rule + scope + (f", excluding {', '.join(off)}" if off else "")


def rule_of(rec: RationaleRecord) -> SelectionRule:
    """Returns the selection rule the record was built with (its provenance), or the default rule."""
    return SelectionRule(**(rec.provenance.rule_config or {}))


def word_roles(attr: TokenAttribution | RationaleRecord) -> tuple[WordRole, ...]:
    """Returns the role of each word of the prompt: the format's own ("template"), a listed choice's ("choice"), or
    the question's and context's ("question").

    Read from the prompt alone, so it holds for any prompt format that labels its choices: a choice runs from a
    choice label ("A)", "(B)", "C." among the format's words, or "A)" typed in the text) to the next label or
    format word ("Answer:"); words outside every choice are the question's.
    """
    roles: list[WordRole] = []
    in_choice = False
    for word, template in zip(attr.words, attr.word_is_template, strict=True):
        label = (_LABEL if template else _TYPED_LABEL).fullmatch(word.strip()) is not None
        if template or label:
            in_choice = label
        roles.append("template" if template else "choice" if in_choice else "question")
    return tuple(roles)


def candidate_words(attr: TokenAttribution | RationaleRecord, rule: SelectionRule) -> list[int]:
    """Returns the indices of the words that may enter a rationale under the rule's span and exclusions."""
    roles = word_roles(attr) if rule.span == "question" else ()
    keep = []
    for i, word in enumerate(attr.words):
        norm = normalize(word)
        if roles and roles[i] != "question":
            continue
        if rule.exclude_template and attr.word_is_template[i]:
            continue
        if rule.exclude_punctuation and not norm:
            continue
        if rule.exclude_stopwords and norm in STOPWORDS:
            continue
        if rule.exclude_choice_letters and word.strip() in _LETTER_WORDS:
            continue
        keep.append(i)
    return keep


def select_rationale(attr: TokenAttribution | RationaleRecord, rule: SelectionRule) -> list[int]:
    """Returns the indices of the rationale's words, in input order.

    Words are ranked by score (highest first; only positive scores count toward `mass`).
    """
    candidates = candidate_words(attr, rule)
    ranked = sorted(candidates, key=lambda i: -attr.word_scores[i])
    if rule.top_k is not None:
        chosen = ranked[: rule.top_k]
    elif rule.mass is not None:
        total = sum(max(attr.word_scores[i], 0.0) for i in candidates)
        chosen, acc = [], 0.0
        for i in ranked:
            if attr.word_scores[i] <= 0 or (total and acc >= rule.mass * total):
                break
            chosen.append(i)
            acc += attr.word_scores[i]
    else:
        scores = [attr.word_scores[i] for i in candidates]
        mean = sum(scores) / len(scores) if scores else 0.0
        std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5 if scores else 0.0
        chosen = [i for i in ranked if attr.word_scores[i] > mean + rule.z * std]
    return sorted(chosen)


@dataclass(frozen=True)
class Plausibility:
    """Word-set agreement of a rationale with a human rationale."""

    precision: float
    recall: float
    f1: float
    iou: float


def plausibility(rationale_words: Sequence[str], human_rationale: str) -> Plausibility:
    """Returns precision, recall, F1 and IoU of the rationale's words against the human rationale's words."""
    ours = {w for w in map(normalize, rationale_words) if w}
    theirs = words_of(human_rationale)
    both = len(ours & theirs)
    precision = both / len(ours) if ours else 0.0
    recall = both / len(theirs) if theirs else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    union = len(ours | theirs)
    return Plausibility(precision, recall, f1, both / union if union else 0.0)


def gold_overlap(rationale_words: Sequence[str], answer: str) -> tuple[bool, float]:
    """Returns (at least one rationale word is in the answer, the fraction of rationale words in the answer)."""
    ours = [w for w in map(normalize, rationale_words) if w]
    answer_words = words_of(answer)
    hits = sum(w in answer_words for w in ours)
    return hits > 0, hits / len(ours) if ours else 0.0
