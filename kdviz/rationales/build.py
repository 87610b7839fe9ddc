"""Build rationale datasets: run the teacher over examples in batches, cache every finished attribution on disk,
select rationale words, and return records ready to curate (`kdviz.rationales.workspace_build` saves them as a
build of a workspace).

A rerun, or a run after a crash or a cancel, recomputes nothing that was finished: attributions are appended to a
JSONL cache keyed by (teacher, method, settings, example) as each batch completes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdviz.attribution.catalog import RATIONALE_METHOD
from kdviz.attribution.methods import AttributionRequest, attribute_requests, check_method
from kdviz.attribution.targets import build_requests, predict_mode
from kdviz.config import ModelSpec
from kdviz.lm.embedded import cache_root
from kdviz.lm.models import LoadedModel, load_model
from kdviz.records import Example, RationaleRecord, Record, RecordLog, TokenAttribution

from .faithfulness import measure_faithfulness
from .select import SelectionRule, select_rationale
from .stats import RationaleStats, rationale_stats

Progress = Callable[[int, int], None]


def example_key(example: Example) -> str:
    """Returns a stable hash of an example's content (id included): the cache key within one cache file."""
    return hashlib.sha1(json.dumps(example.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


class AttributionCache(RecordLog[TokenAttribution]):
    """The attributions of one (teacher, method, settings) combination, by example key."""

    def __init__(self, root: str | Path, teacher: str, method: str, settings: dict):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher)[-60:]
        digest = hashlib.sha1(json.dumps([teacher, method, settings], sort_keys=True).encode()).hexdigest()[:12]
        super().__init__(Path(root) / f"{slug}__{method}__{digest}.jsonl", TokenAttribution, "attribution")


@dataclass(frozen=True)
class BuildResult(Record):
    """The records built (in example order), their statistics, and how the run went."""

    records: tuple[RationaleRecord, ...]
    stats: RationaleStats
    cancelled: bool  # should_stop ended the build early: `records` holds the examples finished before
    from_cache: int  # examples whose attribution came from the cache

    def __post_init__(self) -> None:
        records = tuple(r if isinstance(r, RationaleRecord) else RationaleRecord.from_dict(r) for r in self.records)
        object.__setattr__(self, "records", records)
        if isinstance(self.stats, dict):
            object.__setattr__(self, "stats", RationaleStats.from_dict(self.stats))


def to_record(attr: TokenAttribution, example: Example, rule: SelectionRule, provenance: dict) -> RationaleRecord:
    """Returns the rationale record for one example's attribution, with the rule's words selected."""
    chosen = select_rationale(attr, rule)
    return RationaleRecord(
        example=example,
        prompt=attr.prompt,
        target=attr.target,
        target_mode=attr.target_mode,
        predicted=attr.predicted,
        correct=attr.prediction.correct if attr.prediction else None,
        words=attr.words,
        word_offsets=attr.word_offsets,
        word_scores=attr.word_scores,
        word_is_template=attr.word_is_template,
        rationale=tuple(chosen),
        rationale_text=" ".join(attr.words[i] for i in chosen),
        provenance=provenance,
    )


def attribute_cached(
    loaded: LoadedModel,
    examples: Sequence[Example],
    make_requests: Callable[[list[Example]], list[AttributionRequest]],
    cache: AttributionCache,
    method: str,
    *,
    steps: int = 20,
    batch_size: int = 4,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, TokenAttribution], bool, int]:
    """Attributes the examples not yet in `cache`, a batch at a time, adding each finished batch to it.

    Returns (attributions by `example_key`, whether `should_stop` cancelled the run, how many came from the cache).
    """
    done = cache.load()
    keys = [example_key(ex) for ex in examples]
    todo = [i for i, key in enumerate(keys) if key not in done]
    from_cache, cancelled = len(examples) - len(todo), False
    if on_progress:
        on_progress(from_cache, len(examples))
    for start in range(0, len(todo), batch_size):
        if should_stop and should_stop():
            cancelled = True
            break
        chunk = todo[start : start + batch_size]
        requests = make_requests([examples[i] for i in chunk])
        attrs = attribute_requests(loaded, requests, method, steps=steps, batch_size=batch_size, per_token=False)
        cache.add(zip((keys[i] for i in chunk), attrs, strict=True))
        done.update(zip((keys[i] for i in chunk), attrs, strict=True))
        if on_progress:
            on_progress(from_cache + start + len(chunk), len(examples))
    return done, cancelled, from_cache


def build_rationales(
    teacher: LoadedModel | ModelSpec | str,
    examples: Sequence[Example],
    method: str = RATIONALE_METHOD,
    rule: SelectionRule | None = None,
    *,
    target_mode: str | None = "choice",
    steps: int = 20,
    batch_size: int = 4,
    cache_dir: str | Path | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    faithfulness: bool = True,
    on_faithfulness: Progress | None = None,
    predict: str | None = None,
) -> BuildResult:
    """Returns rationale records for the examples, attributing `batch_size` at a time, then (unless `faithfulness`
    is False) measuring each rationale's comprehensiveness and sufficiency on the teacher
    (`kdviz.rationales.faithfulness`: five more scored prompts per record, cached like the attributions).

    Args:
        target_mode: what is attributed: "choice" (the teacher's predicted choice, as in Ballout et al.),
            "gold" or "generate"; None picks "choice" for examples with choices.
        predict: how the teacher predicts ("letter", "cloze", "choice-text"; None: its default, see
            `kdviz.lm.prompts.default_predict_mode`); records keep the prompt and target that mode scored.
        cache_dir: where finished attributions are kept (default: kdviz's cache folder, "attributions"; the
            faithfulness measurements go to its "faithfulness" subfolder, by default kdviz's cache's).
        on_progress: called with (done, total) after each batch, cached examples counted as done.
        should_stop: polled between batches; when it returns True the build stops and returns what is done,
            with `cancelled=True` (the finished batches stay cached, so a rerun resumes). Stopped while
            faithfulness is measured, every record is returned, those not measured without faithfulness.
        on_faithfulness: as `on_progress`, for the faithfulness measurement that follows the attribution.
    """
    check_method(method)
    rule = rule or SelectionRule()
    loaded = teacher if isinstance(teacher, LoadedModel) else load_model(teacher)
    mode = predict_mode(loaded, predict)
    steps_used = steps if method == "integrated_gradients" else None
    settings = {"target_mode": target_mode, "steps": steps_used, "predict": mode}
    cache = AttributionCache(cache_dir or cache_root() / "attributions", loaded.name, method, settings)
    done, cancelled, from_cache = attribute_cached(
        loaded,
        examples,
        lambda chunk: build_requests(loaded, chunk, target_mode, batch_size=batch_size, predict=mode),
        cache,
        method,
        steps=steps,
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    keys = [example_key(ex) for ex in examples]
    from kdviz._version import __version__

    provenance = {
        "teacher": loaded.name,
        "method": method,
        "target_mode": target_mode,
        "predict": mode,
        "steps": settings["steps"],
        "rule": rule.describe(),
        "rule_config": dataclasses.asdict(rule),
        "kdviz_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    records = [
        to_record(done[key], ex, rule, provenance) for ex, key in zip(examples, keys, strict=True) if key in done
    ]
    if faithfulness and records and not cancelled:
        measured = measure_faithfulness(
            loaded, records, batch_size=batch_size, cache_dir=Path(cache_dir) / "faithfulness" if cache_dir else None,
            on_progress=on_faithfulness, should_stop=should_stop,
        )  # fmt: skip
        records = [dataclasses.replace(r, faithfulness=f) for r, f in zip(records, measured, strict=True)]
        cancelled = bool(should_stop and should_stop())
    return BuildResult(tuple(records), rationale_stats(records), cancelled, from_cache)


def reselect(records: Sequence[RationaleRecord], rule: SelectionRule) -> list[RationaleRecord]:
    """Returns the records with rationales chosen again by another rule (no model needed); statuses reset."""
    out = []
    for rec in records:
        chosen = select_rationale(rec, rule)
        out.append(
            dataclasses.replace(
                rec,
                rationale=tuple(chosen),
                rationale_text=" ".join(rec.words[i] for i in chosen),
                status="pending",
                provenance={**rec.provenance, "rule": rule.describe(), "rule_config": dataclasses.asdict(rule)},
            )
        )
    return out
