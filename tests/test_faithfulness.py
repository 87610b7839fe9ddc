"""Faithfulness (ERASER comprehensiveness and sufficiency): prompt edits, known values through an injected scorer,
and the tiny teacher end to end (the prompts it scores, the cache)."""

import dataclasses
import math

import pytest

import kdviz.lm.inference
from kdviz.data import demo_path, load_examples
from kdviz.lm.inference import score_prompts
from kdviz.rationale_records import Faithfulness, Provenance, RationaleRecord
from kdviz.rationales.build import build_rationales
from kdviz.rationales.faithfulness import (
    FaithfulnessCache,
    edit_prompt,
    faithfulness_of,
    measure_faithfulness,
    probability,
    random_words,
)
from kdviz.rationales.select import SelectionRule, candidate_words
from kdviz.rationales.stats import current_faithfulness, rationale_stats
from kdviz.records import ChoiceScores, Example

PROMPT = "Question: Where would you keep milk cold?\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:"
#         0         1     2     3   4    5    6      7        8  9        10 11           12
TEMPLATE = {0, 7, 8, 10, 12}
EXAMPLE = Example("milk", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator"), "refrigerator")


def offsets(text: str) -> tuple[tuple[int, int], ...]:
    spans, at = [], 0
    for word in text.split():
        at = text.index(word, at)
        spans.append((at, at + len(word)))
        at += len(word)
    return tuple(spans)


def record(rationale=(5,), predicted="refrigerator", span="all", **provenance) -> RationaleRecord:
    words = PROMPT.split()
    rule = dataclasses.asdict(SelectionRule(top_k=len(rationale) or 1, span=span))
    return RationaleRecord(
        example=EXAMPLE,
        prompt=PROMPT,
        target=predicted or "",
        target_mode="choice",
        predicted=predicted,
        correct=predicted == EXAMPLE.answer,
        words=tuple(words),
        word_offsets=offsets(PROMPT),
        word_scores=(0.0,) * len(words),
        word_is_template=tuple(i in TEMPLATE for i in range(len(words))),
        rationale=tuple(rationale),
        rationale_text=" ".join(words[i] for i in rationale),
        provenance=Provenance(rule_config=rule, **provenance),
    )


class FakeScorer:
    """p(refrigerator) = 0.8 when the prompt holds "milk", else 0.2; remembers every call."""

    def __init__(self, word="milk", high=0.8, low=0.2):
        self.word, self.high, self.low, self.calls = word, high, low, []

    def __call__(self, prompts, choices, letters):
        self.calls.append((list(prompts), letters))
        out = []
        for prompt, options in zip(prompts, choices, strict=True):
            p = self.high if self.word in prompt.split() else self.low
            out.append(ChoiceScores("fake", prompt, options, (math.log(1 - p), math.log(p))))
        return out


def test_removing_words_keeps_line_breaks_and_takes_the_spaces_beside_them():
    everything = set(range(13))
    assert edit_prompt(PROMPT, offsets(PROMPT), everything) == PROMPT
    assert edit_prompt(PROMPT, offsets(PROMPT), everything - {1}) == (
        "Question: would you keep milk cold?\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:"
    )
    assert edit_prompt(PROMPT, offsets(PROMPT), everything - {5, 6}) == (
        "Question: Where would you keep\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:"
    )
    assert edit_prompt(PROMPT, offsets(PROMPT), TEMPLATE | {6}) == "Question: cold?\nChoices:\nA)\nB)\nAnswer:"
    assert edit_prompt(PROMPT, offsets(PROMPT), everything - {0}) == PROMPT[len("Question: ") :]  # first word
    text = "one two\nthree four\nfive"
    assert edit_prompt(text, offsets(text), {0, 3, 4}) == "one\nfour\nfive"  # a line's first word


def test_comprehensiveness_and_sufficiency_have_the_values_the_scorer_implies():
    score = FakeScorer()
    (f,) = faithfulness_of([record(rationale=(5,))], score)  # the rationale is "milk"
    assert f.p_full == pytest.approx(0.8)
    assert f.comprehensiveness == pytest.approx(0.6)  # without "milk": 0.8 -> 0.2
    assert f.sufficiency == pytest.approx(0.0)  # "milk" alone keeps 0.8
    assert f.rationale == (5,) and len(f.random) == 1
    drew_milk = f.random == (5,)
    assert f.random_comprehensiveness == pytest.approx(0.6 if drew_milk else 0.0)
    assert f.random_sufficiency == pytest.approx(0.0 if drew_milk else 0.6)
    (prompts, letters), *more = score.calls
    assert not more and not letters and len(prompts) == 5  # one batched call: full, -rationale, +rationale, random x2
    assert prompts[:3] == [
        PROMPT,
        "Question: Where would you keep cold?\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:",
        "Question: milk\nChoices:\nA)\nB)\nAnswer:",
    ]


def test_a_rationale_that_misses_the_decisive_word_scores_low_and_the_baseline_is_seeded():
    (f,) = faithfulness_of([record(rationale=(6,))], FakeScorer())  # "cold?": the prediction rests on "milk"
    assert f.comprehensiveness == pytest.approx(0.0) and f.sufficiency == pytest.approx(0.6)
    rec = record(rationale=(4, 6))
    rule = SelectionRule(top_k=2)
    draws = {seed: random_words(rec, rule, seed) for seed in range(8)}
    assert draws[3] == random_words(rec, rule, 3) and len(set(draws.values())) > 1  # seeded, not constant
    assert all(len(d) == 2 and set(d) <= set(candidate_words(rec, rule)) for d in draws.values())


def test_a_question_span_keeps_the_listed_choices_when_only_the_rationale_is_kept():
    score = FakeScorer(word="refrigerator")  # the prediction rests on seeing the choice listed
    (f,) = faithfulness_of([record(rationale=(5,), span="question")], score)
    assert score.calls[0][0][2] == "Question: milk\nChoices:\nA) cupboard\nB) refrigerator\nAnswer:"
    assert f.sufficiency == pytest.approx(0.0) and f.comprehensiveness == pytest.approx(0.0)
    assert all(i in (1, 2, 3, 4, 5, 6) for i in f.random)  # question words only (stopwords aside)


def test_letter_records_are_scored_by_letter_and_unmeasurable_ones_are_none():
    score = FakeScorer()
    records = [record(predict="letter"), record(), record(rationale=()), record(predicted=None)]
    out = faithfulness_of(records, score)
    assert [f is None for f in out] == [False, False, True, True]
    assert sorted(letters for _, letters in score.calls) == [False, True]  # one call per kind
    assert out[0] == out[1]  # the same fake scores either way
    forced = FakeScorer()
    faithfulness_of([record()], forced, predict="letter")  # the caller's mode overrides the record's
    assert [letters for _, letters in forced.calls] == [True]


def test_probability_is_the_softmax_over_the_choices():
    scores = ChoiceScores("m", "p", ("a", "b", "c"), (math.log(0.2), math.log(0.6), math.log(0.2)))
    assert probability(scores, 1) == pytest.approx(0.6)
    lengths = ChoiceScores("m", "p", ("a", "b"), (-1.0, -3.0))  # mean log-likelihoods need renormalising
    assert probability(lengths, 0) == pytest.approx(1 / (1 + math.exp(-2)))


def test_the_stats_average_the_measured_records_and_ignore_edited_ones():
    f = Faithfulness(0.8, 0.6, 0.0, 0.2, 0.4, rationale=(5,))
    measured = dataclasses.replace(record(rationale=(5,)), faithfulness=f)
    edited = dataclasses.replace(measured, rationale=(4, 5))  # a curator added a word since
    assert current_faithfulness(measured) == f and current_faithfulness(edited) is None
    stats = rationale_stats([measured, edited, record()])
    assert stats.faithfulness.n == 1 and stats.faithfulness.comprehensiveness == pytest.approx(0.6)
    assert stats.by_correctness.correct.faithfulness.random_sufficiency == pytest.approx(0.4)
    assert RationaleRecord.from_dict(measured.to_dict()) == measured  # the record round-trips with it


@pytest.fixture(scope="module", params=["letter", "cloze"])
def tiny_records(tiny, tmp_path_factory, request):
    examples = load_examples(demo_path(), limit=3)
    cache = tmp_path_factory.mktemp("attr")
    return build_rationales(
        tiny,
        examples,
        "saliency",
        SelectionRule(top_k=2, span="all"),
        cache_dir=cache,
        faithfulness=False,
        predict=request.param,
    )


def test_the_tiny_teacher_scores_the_edited_prompts_and_a_rerun_reads_the_cache(
    tiny, tiny_records, tmp_path, monkeypatch
):
    records = tiny_records.records
    assert all(r.faithfulness is None for r in records)  # built without it
    seen = []

    def spy(loaded, prompts, choices, letters, **kwargs):
        seen.extend(prompts)
        return score_prompts(loaded, prompts, choices, letters, **kwargs)

    monkeypatch.setattr(kdviz.lm.inference, "score_prompts", spy)
    progress = []
    out = measure_faithfulness(tiny, records, cache_dir=tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    assert progress[0] == (0, 3) and progress[-1] == (3, 3) and len(seen) == 15
    rec, f = records[0], out[0]
    everything = set(range(len(rec.words)))
    template = {i for i, t in enumerate(rec.word_is_template) if t}
    without = edit_prompt(rec.prompt, rec.word_offsets, everything - set(rec.rationale))
    only = edit_prompt(rec.prompt, rec.word_offsets, template | set(rec.rationale))
    assert seen[:3] == [rec.prompt, without, only]
    assert without.split() == [w for i, w in enumerate(rec.words) if i not in rec.rationale]
    assert only.split() == [w for i, w in enumerate(rec.words) if i in template or i in rec.rationale]
    assert only.startswith("Question:") and only.endswith("Answer:")  # the format stays
    assert ("\nA)" in only) == ("\nA)" in rec.prompt)  # with the choice letters where they are listed
    letters = rec.provenance.predict == "letter"  # scored as the prediction was made
    full, less, kept = score_prompts(tiny, [rec.prompt, without, only], [rec.example.choices] * 3, letters)
    index = rec.example.choices.index(rec.predicted)
    assert f.p_full == pytest.approx(probability(full, index), abs=1e-5)
    assert f.comprehensiveness == pytest.approx(f.p_full - probability(less, index), abs=1e-5)
    assert f.sufficiency == pytest.approx(f.p_full - probability(kept, index), abs=1e-5)
    seen.clear()
    assert measure_faithfulness(tiny, records, cache_dir=tmp_path) == out and seen == []  # all from the cache
    assert len(FaithfulnessCache(tmp_path, tiny.name).load()) == 3
    other_seed = measure_faithfulness(tiny, records, cache_dir=tmp_path, seed=1)
    assert len(seen) == 15 and [f.p_full for f in other_seed] == pytest.approx([f.p_full for f in out])
