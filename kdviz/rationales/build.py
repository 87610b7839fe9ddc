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

from kdviz.attribution.catalog import DEFAULT_STEPS, RATIONALE_METHOD
from kdviz.attribution.methods import AttributionRequest, attribute_requests, check_method, default_tokens_per_pass
from kdviz.attribution.targets import attribute_one_pass, build_requests, one_pass_modes, predict_mode
from kdviz.config import ModelSpec
from kdviz.errors import is_out_of_memory, resource_errors
from kdviz.lm.embedded import cache_root
from kdviz.lm.models import LoadedModel, load_model
from kdviz.lm.prompts import encode, encode_target
from kdviz.rationale_records import Provenance, RationaleRecord
from kdviz.records import Example, Record, RecordLog, TokenAttribution

from .faithfulness import measure_faithfulness
from .parallel import Shard, current_shard, gather_counts, rank_spec
from .select import SelectionRule, select_rationale
from .stats import RationaleStats, rationale_stats

Progress = Callable[[int, int], None]


def example_key(example: Example) -> str:
    """Returns a stable hash of an example's task (id included): the cache key within one cache file."""
    return hashlib.sha1(json.dumps(example.task_dict(), sort_keys=True).encode()).hexdigest()[:20]


class AttributionCache(RecordLog[TokenAttribution]):
    """The attributions of one (teacher, method, settings) combination, by example key."""

    def __init__(self, root: str | Path, teacher: str, method: str, settings: dict):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher)[-60:]
        digest = hashlib.sha1(json.dumps([teacher, method, settings], sort_keys=True).encode()).hexdigest()[:12]
        super().__init__(Path(root) / f"{slug}__{method}__{digest}.jsonl", TokenAttribution, "attribution")


def cache_settings(method: str, target_mode: str | None, steps: int, predict: str) -> dict:
    """Returns the settings that key a build's attribution cache (`predict`: the resolved prediction mode)."""
    return {
        "target_mode": target_mode,
        "steps": steps if method == "integrated_gradients" else None,
        "predict": predict,
    }


def cached_attribution(
    loaded: LoadedModel,
    example: Example,
    method: str,
    target_mode: str | None,
    steps: int,
    predict: str,
    cache_dir: str | Path | None = None,
    *,
    per_token: bool = False,
) -> TokenAttribution | None:
    """Returns the attribution a build with these settings cached for `example` (None when none did): the app
    reuses it. Builds attribute the whole target only, so their records have no output-token rows; `per_token`
    asks for the record with them, which a cache holds only where the target is one token (a letter, without a
    contrast): that one row is the whole-target scores. Other cached records are None with `per_token`."""
    settings = cache_settings(method, target_mode, steps, predict)
    cache = AttributionCache(cache_dir or cache_root() / "attributions", loaded.name, method, settings)
    attr = cache.load().get(example_key(example)) if cache.path.exists() else None
    if attr is None or not per_token or attr.token_scores:
        return attr
    pred = attr.prediction
    if attr.contrast is not None or pred is None or pred.mode != "letter" or not pred.choices:
        return None  # build_requests scores a letter's first token only where choices were scored in letter mode
    first = encode_target(loaded, encode(loaded, attr.prompt), attr.target)[:1]
    return dataclasses.replace(
        attr,
        output_tokens=(loaded.tokenizer.decode(list(first)),),
        token_scores=(attr.seq_scores,),
        word_token_scores=(attr.word_scores,),
    )


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


def to_record(
    attr: TokenAttribution, example: Example, rule: SelectionRule, provenance: Provenance
) -> RationaleRecord:
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


# Attributes one batch of examples within a memory budget of tokens per pass (whole-target scores only).
AttributeChunk = Callable[[list[Example], int], list[TokenAttribution]]


def scored_then_attributed(
    loaded: LoadedModel,
    make_requests: Callable[[list[Example]], list[AttributionRequest]],
    method: str,
    steps: int = DEFAULT_STEPS,
) -> AttributeChunk:
    """Returns the AttributeChunk that makes each example's request (scoring its choices, or generating its answer)
    and then attributes the requests."""

    def run(chunk: list[Example], tokens: int) -> list[TokenAttribution]:
        requests = make_requests(chunk)
        return attribute_requests(
            loaded, requests, method, steps=steps, batch_size=len(requests), per_token=False, tokens_per_pass=tokens
        )

    return run


def attribute_cached(
    loaded: LoadedModel,
    examples: Sequence[Example],
    attribute_chunk: AttributeChunk,
    cache: AttributionCache,
    *,
    batch_size: int = 4,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    shard: Shard | None = None,
) -> tuple[dict[str, TokenAttribution], bool, int]:
    """Attributes the examples not yet in `cache`, a batch at a time (`attribute_chunk`), adding each finished batch
    to it.

    With a `shard` (one process of a data-parallel launch, `kdviz.rationales.parallel`), only the examples of its
    batches are attributed, counted and reported to `on_progress`.

    Returns (attributions by `example_key`, whether `should_stop` cancelled the run, how many came from the cache).
    """
    done = cache.load()
    keys = [example_key(ex) for ex in examples]
    owned = [i for i in range(len(examples)) if shard is None or shard.owns(i, batch_size)]
    todo = [i for i in owned if keys[i] not in done]
    from_cache, cancelled = len(owned) - len(todo), False
    if on_progress:
        on_progress(from_cache, len(owned))
    for start in range(0, len(todo), batch_size):
        if should_stop and should_stop():
            cancelled = True
            break
        chunk = todo[start : start + batch_size]
        attrs = _attribute_shrinking(attribute_chunk, [examples[i] for i in chunk], default_tokens_per_pass(loaded))
        cache.add(zip((keys[i] for i in chunk), attrs, strict=True))
        done.update(zip((keys[i] for i in chunk), attrs, strict=True))
        if on_progress:
            on_progress(from_cache + start + len(chunk), len(owned))
    return done, cancelled, from_cache


def _attribute_shrinking(attribute_chunk: AttributeChunk, chunk: list[Example], tokens: int) -> list[TokenAttribution]:
    """Attributes one batch; out of memory, it retries the batch as two halves with half the token budget each, and a
    single example with one pass at a time (tokens_per_pass=1), before it gives up: a long prompt or a big teacher
    slows a build down instead of failing it. Scores are those of the whole batch, up to rounding."""
    try:
        return attribute_chunk(chunk, tokens)
    except Exception as exc:
        if not is_out_of_memory(exc) or (len(chunk) == 1 and tokens == 1):
            raise
    if len(chunk) == 1:
        return _attribute_shrinking(attribute_chunk, chunk, 1)
    half, tokens = len(chunk) // 2, max(1, tokens // 2)
    return _attribute_shrinking(attribute_chunk, chunk[:half], tokens) + _attribute_shrinking(
        attribute_chunk, chunk[half:], tokens
    )


@resource_errors(
    "building rationales",
    "use a smaller batch size, fewer integrated-gradients steps, or a smaller teacher",
    kept=True,
)
def build_rationales(
    teacher: LoadedModel | ModelSpec | str,
    examples: Sequence[Example],
    method: str = RATIONALE_METHOD,
    rule: SelectionRule | None = None,
    *,
    target_mode: str | None = "choice",
    steps: int = DEFAULT_STEPS,
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

    Under `accelerate launch` or `torchrun` (WORLD_SIZE > 1), each process attributes and measures its share of the
    examples (its own GPU when there are several: see `kdviz.rationales.parallel`), the first waits for all, and
    returns every record, as one process would have built them; the others return their share, for no one to save.

    Raises:
        ResourceError: out of memory or disk space; the message says what to reduce, and the finished batches
            stay cached, so a rerun continues from them.
    """
    check_method(method)
    rule = rule or SelectionRule()
    shard = current_shard()
    spec = ModelSpec(teacher) if isinstance(teacher, str) else teacher
    loaded = teacher if isinstance(teacher, LoadedModel) else load_model(rank_spec(spec, shard))
    mode = predict_mode(loaded, predict)
    settings = cache_settings(method, target_mode, steps, mode)
    cache = AttributionCache(cache_dir or cache_root() / "attributions", loaded.name, method, settings)
    # In letter mode the one-pass methods predict and attribute each batch in one forward and one backward.
    one_pass = one_pass_modes(examples, method, target_mode, predict=mode)
    if one_pass:
        one_mode = one_pass[0]  # one target mode for all: the build's, or "choice" for examples that all have choices

        def attribute_chunk(chunk: list[Example], tokens: int) -> list[TokenAttribution]:
            return attribute_one_pass(loaded, chunk, method, [one_mode] * len(chunk))

    else:
        attribute_chunk = scored_then_attributed(
            loaded, lambda chunk: build_requests(loaded, chunk, target_mode, batch_size=batch_size, predict=mode),
            method, steps,
        )  # fmt: skip
    done, cancelled, from_cache = attribute_cached(
        loaded,
        examples,
        attribute_chunk,
        cache,
        batch_size=batch_size,
        on_progress=on_progress,
        should_stop=should_stop,
        shard=shard,
    )
    keys = [example_key(ex) for ex in examples]
    from kdviz._version import __version__

    provenance = Provenance(
        teacher=loaded.name,
        method=method,
        target_mode=target_mode,
        predict=mode,
        steps=settings["steps"],
        rule=rule.describe(),
        rule_config=dataclasses.asdict(rule),
        kdviz_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )

    def measure(records: list[RationaleRecord], stop: Callable[[], bool] | None) -> list[RationaleRecord]:
        measured = measure_faithfulness(
            loaded, records, batch_size=batch_size, cache_dir=Path(cache_dir) / "faithfulness" if cache_dir else None,
            on_progress=on_faithfulness, should_stop=stop,
        )  # fmt: skip
        return [dataclasses.replace(r, faithfulness=f) for r, f in zip(records, measured, strict=True)]

    def finished(indices: Sequence[int]) -> list[RationaleRecord]:
        return [to_record(done[keys[i]], examples[i], rule, provenance) for i in indices if keys[i] in done]

    stop = should_stop
    if shard is not None:  # measure this process's share into the cache; then the first gathers everyone's
        share = finished([i for i in range(len(examples)) if shard.owns(i, batch_size)])
        if faithfulness and share and not cancelled:
            share = measure(share, should_stop)
            cancelled = bool(should_stop and should_stop())
        from_cache, n_cancelled = gather_counts(shard, [from_cache, int(cancelled)])
        if not shard.is_main:
            return BuildResult(tuple(share), rationale_stats(share), cancelled, from_cache)
        done.update(cache.load())
        cancelled = n_cancelled > 0
        stop = (lambda: True) if cancelled else should_stop  # measured shares come from the cache, no more
    records = finished(range(len(examples)))
    if faithfulness and records and (shard is not None or not cancelled):
        records = measure(records, stop)
        cancelled = cancelled or bool(should_stop and should_stop())
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
                provenance=dataclasses.replace(
                    rec.provenance, rule=rule.describe(), rule_config=dataclasses.asdict(rule)
                ),
            )
        )
    return out
