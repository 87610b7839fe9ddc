import dataclasses
import json

import pytest

from kdviz import ChoiceScores, Example, Generation, TokenAttribution, attribute, load_jsonl, save_jsonl
from kdviz.files import write_atomic
from kdviz.rationale_records import Provenance, RationaleRecord
from kdviz.records import DATA_EXTRAS, Prediction


def test_every_record_round_trips_through_jsonl(tmp_path, tiny):
    attr = attribute(tiny, Example("e1", "mcqa", "Where is milk kept cold?", ("fridge", "oven"), "fridge"))
    assert attr.prediction is not None and attr.prediction.choices == ("fridge", "oven")
    records = {
        Example: Example("e1", "mcqa", "q?", ("a", "b"), "a", None, "q"),
        Generation: Generation("tiny", "q?", "a", ("a",)),
        ChoiceScores: ChoiceScores("tiny", "q?", ("a", "b"), (-1.0, -2.0)),
        Prediction: Prediction("a", False, "b", ("a", "b"), (-0.5, -1.25), "a and b"),
        TokenAttribution: attr,
    }
    for cls, record in records.items():
        path = save_jsonl([record, record], tmp_path / f"{cls.__name__}.jsonl")
        assert load_jsonl(path, cls) == [record, record]
        assert cls.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    loaded = load_jsonl(tmp_path / "TokenAttribution.jsonl", TokenAttribution)[0]
    assert isinstance(loaded.prediction, Prediction) and loaded.prediction == attr.prediction


def test_attributions_saved_with_a_meta_dict_still_load(tiny):
    attr = attribute(tiny, Example("e1", "mcqa", "Where is milk kept cold?", ("fridge", "oven"), "fridge"))
    pred = attr.prediction
    old = {k: v for k, v in attr.to_dict().items() if k != "prediction"}  # the format before the Prediction record
    meta = {"gold": "fridge", "choices": ["fridge", "oven"], "choice_scores": list(pred.choice_scores)}
    meta |= {"predicted": pred.predicted, "correct": pred.correct}
    # written before prediction modes: the mode is unknown (None)
    assert TokenAttribution.from_dict({**old, "meta": meta}) == dataclasses.replace(
        attr, prediction=dataclasses.replace(pred, mode=None)
    )
    assert TokenAttribution.from_dict({**old, "meta": {}}).prediction is None
    assert TokenAttribution.from_dict(old).prediction is None


def test_prediction_rejects_scores_that_do_not_match_the_choices():
    with pytest.raises(ValueError, match="1 choice scores for 2 choices"):
        Prediction("a", None, None, ("a", "b"), (-1.0,))


def test_attribution_record_rejects_mismatched_shapes(tiny):
    attr = attribute(tiny, "the cat sat", target="mat")
    data = attr.to_dict()
    with pytest.raises(ValueError, match="input tokens"):
        TokenAttribution.from_dict({**data, "seq_scores": data["seq_scores"][:-1]})
    with pytest.raises(ValueError, match="token_scores"):
        TokenAttribution.from_dict({**data, "token_scores": data["token_scores"][:-1]})
    with pytest.raises(ValueError, match="target_mode"):
        TokenAttribution.from_dict({**data, "target_mode": "psychic"})


def test_choice_scores_predicts_the_best_choice():
    scores = ChoiceScores("m", "p", ("a", "b", "c"), (-3.0, -0.5, -2.0))
    assert (scores.predicted_index, scores.predicted) == (1, "b")
    with pytest.raises(ValueError):
        ChoiceScores("m", "p", ("a", "b"), (-1.0,))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = write_atomic(tmp_path / "out.jsonl", "old\n")

    class Boom:
        def to_dict(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_jsonl([Boom()], path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_record_log_appends_batches_and_skips_a_torn_last_line(tmp_path):
    from kdviz.records import RecordLog

    log = RecordLog(tmp_path / "sub" / "log.jsonl", Example, "example")
    a, b = Example("a", "qa", "first?"), Example("b", "qa", "second?")
    log.add([("k1", a)])
    log.add([("k2", b), ("k1", b)])  # a later line for a key wins
    with log.path.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "k3", "example": {"id": "c", "ta')  # a crash mid-write
    assert RecordLog(log.path, Example, "example").load() == {"k1": b, "k2": b}
    c = Example("c", "qa", "third?")
    log.add([("k3", c)])  # the next batch after a crash starts on a line of its own and is read back
    assert RecordLog(log.path, Example, "example").load() == {"k1": b, "k2": b, "k3": c}


def test_examples_keep_the_datas_teacher_outputs_and_old_files_still_load(tmp_path):
    ex = Example("s1", "qa", "q?", (), "( 84.0 / 2.0 )", teacher_rationale="84 / 2 = 42.", teacher_answer="84 / 2",
                 answer_value=42.0)  # fmt: skip
    assert load_jsonl(save_jsonl([ex], tmp_path / "ex.jsonl"), Example) == [ex]
    old = {
        "id": "e1",
        "task": "mcqa",
        "question": "q?",
        "choices": ["a", "b"],
        "answer": "a",
        "context": None,
        "human_rationale": None,
    }  # fmt: skip  (an Example written before the teacher fields)
    assert Example.from_dict(old) == Example("e1", "mcqa", "q?", ("a", "b"), "a")
    # caches key examples on their task alone: reading the teacher fields never invalidates an attribution
    assert ex.task_dict() == {k: v for k, v in ex.to_dict().items() if k not in DATA_EXTRAS}
    assert Example.from_dict(old).task_dict() == old


def test_rationale_records_with_an_old_provenance_dict_load_typed_and_round_trip(tmp_path):
    ex = Example("e1", "mcqa", "Where is milk kept?", ("fridge", "shelf"), "fridge")
    data = {
        "example": ex.to_dict(), "prompt": "Where is milk kept?", "target": "A", "target_mode": "choice",
        "predicted": "fridge", "correct": True, "words": ["Where", "is", "milk", "kept?"],
        "word_offsets": [[0, 5], [6, 8], [9, 13], [14, 19]], "word_scores": [0.1, 0.0, 0.9, 0.2],
        "word_is_template": [False] * 4, "rationale": [2], "rationale_text": "milk",
        # a comparison's record before the Provenance record: "model" is the answering model; "seed" is unknown
        "provenance": {"model": "student-1", "method": "saliency", "rule": "top-1 words", "trained_as": "qa",
                       "rule_config": {"top_k": 1}, "steps": 16, "seed": 3},
    }  # fmt: skip
    rec = RationaleRecord.from_dict(data)
    assert rec.provenance == Provenance(teacher="student-1", method="saliency", rule="top-1 words",
                                        rule_config={"top_k": 1}, steps=16, trained_as="qa")  # fmt: skip
    assert RationaleRecord.from_dict(rec.to_dict()) == rec
    assert load_jsonl(save_jsonl([rec], tmp_path / "r.jsonl"), RationaleRecord) == [rec]
    assert rec.to_dict()["provenance"]["teacher"] == "student-1" and rec.to_dict()["provenance"]["created"] is None
    assert RationaleRecord.from_dict({**data, "provenance": {}}).provenance == Provenance()  # an empty one too
    assert RationaleRecord.from_dict({k: v for k, v in data.items() if k != "provenance"}).provenance == Provenance()
