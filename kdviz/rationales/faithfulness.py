"""Faithfulness of rationales (ERASER, DeYoung et al. 2020): does the model's prediction rest on the rationale words?

For a record, with p(·) the model's probability of its predicted choice renormalised over the choices (the softmax of
its `ChoiceScores.scores`), scored on the record's prompt as the prediction was made (`score_prompts`):

- comprehensiveness = p(full prompt) − p(the prompt with the rationale words removed);
- sufficiency = p(full prompt) − p(the prompt keeping only the rationale words, the format's own words
  ("Question:", "A)", "Answer:") and, when the rule's span is "question", the listed choices' words too: a rationale
  that may not hold choice words is judged on whether it suffices to pick among the choices, not to recall them);
- both again for as many words drawn at random (seeded per record) from the words the selection rule could pick: the
  baseline a rationale has to beat.

The prediction is the model's predicted choice whatever target was attributed (with target mode "gold", a rationale
is still judged against what the model answered); records without a predicted choice, or without rationale words,
are not measured (None).

Editing works on the prompt text through the records' word offsets: a removed word's characters go, with the
spaces that separated it from a kept neighbour (a double space would be a rare token of its own, and measure the
model's surprise at it); line breaks and every other character stay. Each record costs five scored prompts (full,
two edits, two random edits), batched, and finished records are cached on disk like attributions, keyed by the
model, the record's content, its rationale, the seed, the prediction mode and the selection rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import NamedTuple

from kdviz.lm.prompts import answer_choices
from kdviz.rationale_records import Faithfulness, RationaleRecord
from kdviz.records import ChoiceScores, PredictMode, RecordLog

from .select import SelectionRule, candidate_words, rule_of, word_roles

# Scores already-rendered prompts as `kdviz.lm.inference.score_prompts` does: (prompts, choices, letters).
Scorer = Callable[[list[str], list[tuple[str, ...]], bool], list[ChoiceScores]]
Progress = Callable[[int, int], None]


def edit_prompt(prompt: str, word_offsets: Sequence[tuple[int, int]], keep: Collection[int]) -> str:
    """Returns the prompt with only the words at indices `keep` (word_offsets: character spans, in text order).

    A removed word takes the spaces before it along (after it, at the start of a line or of the text); line breaks
    and all the kept words' characters stay as they were.
    """
    pieces: list[str] = []
    end, drop_next_gap = 0, False
    for i, (a, b) in enumerate(word_offsets):
        gap = prompt[end:a]
        inline = "\n" not in gap
        if i in keep:
            pieces += [] if drop_next_gap and inline else [gap]
            pieces.append(prompt[a:b])
            drop_next_gap = False
        elif inline and "".join(pieces).strip():
            pass  # the word and the spaces before it go
        else:  # first word of a line (or of the text): keep the line break, drop the spaces after the word
            pieces += [] if drop_next_gap and inline else [gap]
            drop_next_gap = True
        end = b
    tail = prompt[end:]
    pieces += [] if drop_next_gap and "\n" not in tail else [tail]
    return "".join(pieces)


def predict_mode_of(rec: RationaleRecord) -> PredictMode | None:
    """Returns the prediction mode recorded in the record's provenance (None for records made before modes)."""
    return rec.provenance.predict


def random_words(rec: RationaleRecord, rule: SelectionRule, seed: int = 0) -> tuple[int, ...]:
    """Returns as many word indices as the rationale has, drawn at random from the rule's candidate words (all of
    them when there are fewer), in input order; the same for the same seed and record id."""
    candidates = candidate_words(rec, rule)
    rng = random.Random(f"{seed}:{rec.id}")
    return tuple(sorted(rng.sample(candidates, min(len(rec.rationale), len(candidates)))))


class _Plan(NamedTuple):
    prompts: tuple[str, str, str, str, str]  # full, without rationale, rationale only, without random, random only
    choices: tuple[str, ...]
    index: int  # of the predicted choice
    letters: bool
    random: tuple[int, ...]


def _plan(rec: RationaleRecord, seed: int, predict: PredictMode | None, rule: SelectionRule | None) -> _Plan | None:
    choices = answer_choices(rec.example)
    if not rec.rationale or rec.predicted is None or rec.predicted not in choices:
        return None  # nothing to measure: no rationale, or no choice predicted
    rule = rule or rule_of(rec)
    roles = word_roles(rec)
    frame = {i for i, r in enumerate(roles) if r == "template" or (rule.span == "question" and r == "choice")}
    everything = set(range(len(rec.words)))
    drawn = random_words(rec, rule, seed)

    def variants(chosen: Collection[int]) -> tuple[str, str]:
        return (
            edit_prompt(rec.prompt, rec.word_offsets, everything - set(chosen)),
            edit_prompt(rec.prompt, rec.word_offsets, frame | set(chosen)),
        )

    prompts = (rec.prompt, *variants(rec.rationale), *variants(drawn))
    if any(not p.strip() for p in prompts):
        return None  # an edit left nothing to score
    letters = (predict or predict_mode_of(rec)) == "letter"
    return _Plan(prompts, tuple(choices), choices.index(rec.predicted), letters, drawn)  # type: ignore[arg-type]


def model_scorer(loaded, batch_size: int = 32) -> Scorer:
    """Returns the `Scorer` that scores prompts on `loaded` (a `LoadedModel`), `batch_size` prompts a pass."""
    from kdviz.lm.inference import score_prompts

    def score(prompts: list[str], choices: list[tuple[str, ...]], letters: bool) -> list[ChoiceScores]:
        return score_prompts(loaded, prompts, choices, letters, batch_size=batch_size)

    return score


def probability(scores: ChoiceScores, index: int) -> float:
    """Returns the softmax of the choice scores at `index`: the probability renormalised over the choices."""
    top = max(scores.scores)
    weights = [math.exp(s - top) for s in scores.scores]
    return weights[index] / sum(weights)


def faithfulness_of(
    records: Sequence[RationaleRecord],
    score: Scorer,
    *,
    seed: int = 0,
    predict: PredictMode | None = None,
    rule: SelectionRule | None = None,
) -> list[Faithfulness | None]:
    """Returns each record's faithfulness (None where there is nothing to measure: no rationale, or no predicted
    choice), scoring every edited prompt through `score` in one call per prediction kind (letters or not).

    Args:
        score: scores rendered prompts, e.g. `lambda p, c, letters: score_prompts(loaded, p, c, letters)`.
        predict: the prediction mode to score with; None reads each record's provenance ("letter" scores the
            next-token letter, anything else each choice's text as the continuation).
        rule: the selection rule whose candidate words the random baseline draws from, and whose span decides
            whether sufficiency keeps the listed choices; None takes each record's own rule (its provenance).
    """
    plans = [_plan(rec, seed, predict, rule) for rec in records]
    probs: dict[tuple[int, int], float] = {}
    for letters in (False, True):
        todo = [(n, plan) for n, plan in enumerate(plans) if plan is not None and plan.letters == letters]
        if not todo:
            continue
        prompts = [prompt for _, plan in todo for prompt in plan.prompts]
        choices = [plan.choices for _, plan in todo for _ in plan.prompts]
        scored = iter(score(prompts, choices, letters))
        for n, plan in todo:
            for v in range(len(plan.prompts)):
                probs[n, v] = probability(next(scored), plan.index)
    out: list[Faithfulness | None] = []
    for n, (rec, plan) in enumerate(zip(records, plans, strict=True)):
        if plan is None:
            out.append(None)
            continue
        full = probs[n, 0]
        out.append(
            Faithfulness(
                p_full=full,
                comprehensiveness=full - probs[n, 1],
                sufficiency=full - probs[n, 2],
                random_comprehensiveness=full - probs[n, 3],
                random_sufficiency=full - probs[n, 4],
                rationale=rec.rationale,
                random=plan.random,
            )
        )
    return out


class FaithfulnessCache(RecordLog[Faithfulness]):
    """An append-only JSONL file of faithfulness measurements made on one model."""

    def __init__(self, root: str | Path, model: str):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[-60:]
        self.model = model
        super().__init__(
            Path(root) / f"{slug}__{hashlib.sha1(model.encode()).hexdigest()[:12]}.jsonl", Faithfulness, "faithfulness"
        )

    def key(self, rec: RationaleRecord, seed: int, predict: PredictMode | None, rule: SelectionRule | None) -> str:
        rule_config = rec.provenance.rule_config if rule is None else dataclasses.asdict(rule)
        content = [self.model, rec.prompt, rec.example.task_dict(), rec.predicted, rec.words, rec.word_offsets]
        parts = [
            *content,
            rec.word_is_template,
            list(rec.rationale),
            seed,
            predict or predict_mode_of(rec),
            rule_config,
        ]
        return hashlib.sha1(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()[:24]


def measure_faithfulness(
    loaded,
    records: Sequence[RationaleRecord],
    *,
    seed: int = 0,
    predict: PredictMode | None = None,
    rule: SelectionRule | None = None,
    batch_size: int = 8,
    cache_dir: str | Path | None = None,
    model_id: str | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    score: Scorer | None = None,
) -> list[Faithfulness | None]:
    """Returns each record's faithfulness on `loaded` (a `LoadedModel`), `batch_size` records at a time, each
    finished batch cached (see `faithfulness_of` for the arguments and the None entries).

    Args:
        cache_dir: where measurements are kept (default: kdviz's cache folder, "faithfulness").
        model_id: the model's identity in the cache (default: its name; give one that changes when a local
            checkpoint is rewritten).
        on_progress: called with (records done, total) when it starts (the cached ones done) and after each batch.
        should_stop: polled between batches; the records not measured when it returns True stay None.
        score: scores the prompts (default: `score_prompts` on `loaded`); a `kdviz.rationales.quality.ScoreMemo`
            shares scored prompts between calls.
    """
    from kdviz.lm.embedded import cache_root

    score = score or model_scorer(loaded, 4 * batch_size)

    cache = FaithfulnessCache(cache_dir or cache_root() / "faithfulness", model_id or loaded.name)
    done = cache.load()
    keys = [cache.key(rec, seed, predict, rule) for rec in records]
    out: list[Faithfulness | None] = [done.get(key) for key in keys]
    todo = [n for n, f in enumerate(out) if f is None]
    if on_progress:
        on_progress(len(records) - len(todo), len(records))
    for start in range(0, len(todo), batch_size):
        if should_stop and should_stop():
            break
        chunk = todo[start : start + batch_size]
        measured = faithfulness_of([records[n] for n in chunk], score, seed=seed, predict=predict, rule=rule)
        cache.add([(keys[n], f) for n, f in zip(chunk, measured, strict=True) if f is not None])
        for n, f in zip(chunk, measured, strict=True):
            out[n] = f
        if on_progress:
            on_progress(len(records) - len(todo) + start + len(chunk), len(records))
    return out
