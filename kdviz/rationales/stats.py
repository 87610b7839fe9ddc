"""Statistics of rationales against the ground truth and human rationales (definitions in `kdviz.rationales`)."""

from __future__ import annotations

from collections.abc import Sequence

from kdviz.records import Example, RationaleRecord

from .select import gold_overlap, plausibility


def overlap_of(words: Sequence[str], example: Example) -> dict:
    """Returns one example's overlap figures: with the gold answer, with each choice, and with the human rationale."""
    out: dict = {}
    if example.answer:
        out["gold_overlap"], out["gold_word_fraction"] = gold_overlap(words, example.answer)
    if example.choices:
        out["choice_overlap"] = [gold_overlap(words, c)[0] for c in example.choices]
        wrong = [hit for c, hit in zip(example.choices, out["choice_overlap"], strict=True) if c != example.answer]
        if example.answer in example.choices and wrong:
            out["distractor_overlap"] = sum(wrong) / len(wrong)
    if example.human_rationale:
        out["plausibility"] = plausibility(words, example.human_rationale).__dict__
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(items: Sequence[tuple[Sequence[str], Example, bool | None]]) -> dict:
    """Returns rates over (rationale words, example, model correct) triples, overall and by correctness."""

    def block(rows: list[dict]) -> dict:
        gold = [r for r in rows if "gold_overlap" in r]
        plaus = [r["plausibility"] for r in rows if "plausibility" in r]
        return {
            "n": len(rows),
            "gold_overlap": _mean([float(r["gold_overlap"]) for r in gold]),
            "gold_word_fraction": _mean([r["gold_word_fraction"] for r in gold]),
            "distractor_overlap": _mean([r["distractor_overlap"] for r in rows if "distractor_overlap" in r]),
            "plausibility": None
            if not plaus
            else {"n": len(plaus), **{k: _mean([p[k] for p in plaus]) for k in ("precision", "recall", "f1", "iou")}},
        }

    rows = [overlap_of(words, ex) for words, ex, _ in items]
    correct = [c for _, _, c in items if c is not None]
    summary = block(rows)
    summary["accuracy"] = _mean([float(c) for c in correct])
    summary["by_correctness"] = {
        "correct": block([r for r, (_, _, c) in zip(rows, items, strict=True) if c is True]),
        "incorrect": block([r for r, (_, _, c) in zip(rows, items, strict=True) if c is False]),
    }
    n_choices = max((len(ex.choices) for _, ex, _ in items), default=0)
    summary["choice_overlap_by_position"] = [
        _mean([float(r["choice_overlap"][k]) for r in rows if len(r.get("choice_overlap", ())) > k])
        for k in range(n_choices)
    ]
    return summary


def rationale_stats(records: Sequence[RationaleRecord]) -> dict:
    """Returns the statistics of a rationale build: gold overlap (the paper's 68% figure), gold word fraction,
    distractor overlap, plausibility against human rationales, and the teacher's accuracy, overall and split by
    whether the teacher was correct."""
    return summarize([(rec.rationale_words, rec.example, rec.correct) for rec in records])
